// wengert — reading IDX files (the MNIST / Fashion-MNIST format).
//
// IDX layout (Y. LeCun's MNIST page): a 4-byte magic 0x00 0x00 <type> <rank>, then <rank>
// dimensions as big-endian uint32, then the elements row-major. Only type 0x08 (unsigned byte)
// is read here — it is what MNIST-like datasets use. Images files are rank 3 [n, rows, cols]
// (magic 0x00000803), label files rank 1 [n] (magic 0x00000801).
//
// Files may be gzip-compressed or not: zlib's gzopen/gzread reads both transparently, so
// "train-images-idx3-ubyte.gz" and its decompressed twin load the same way.
//
// Every failure is a wengert::ValueError whose message starts with the function and the file
// ("read_idx_images: '/data/train-images-idx3-ubyte.gz': ...") and says what is wrong: the file
// cannot be opened; wrong magic (not IDX, unsupported element type, or the wrong kind of file —
// labels where images were expected); truncated data; corrupt gzip data; bytes after the
// announced data; or, in load_mnist_like, image and label counts that differ, a label outside
// [0, classes) (the file and the label's index named: a stray 255 is a corrupt file, not a 256th
// class), or classes <= 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <wengert/arena.hpp>

namespace wengert::io {

/// A raw IDX array of unsigned bytes: its dimensions and its elements, row-major.
struct IdxArray {
  std::vector<std::size_t> dims;
  std::vector<std::uint8_t> data;
};

/// Reads any IDX file of unsigned bytes (any rank).
IdxArray read_idx(const std::string& path);

/// Images as a row-major [count, rows·cols] matrix, pixel bytes scaled to [0, 1] (b / 255),
/// 64-byte aligned (ready for Tape::constant_view).
template <class T = float>
struct Images {
  std::size_t count = 0, rows = 0, cols = 0;
  AlignedVector<T> pixels;

  std::size_t features() const { return rows * cols; }
  const T* image(std::size_t i) const { return pixels.data() + i * features(); }
};

/// Reads a rank-3 IDX images file (magic 0x00000803).
template <class T = float>
Images<T> read_idx_images(const std::string& path);

/// Reads a rank-1 IDX labels file (magic 0x00000801); labels are widened to int32.
std::vector<std::int32_t> read_idx_labels(const std::string& path);

/// One split of an MNIST-like dataset: images [size, features] and a label per image.
template <class T = float>
struct Dataset {
  Images<T> images;
  std::vector<std::int32_t> labels;
  std::int32_t num_classes = 0;  // the `classes` passed to load_mnist_like
  std::string images_path, labels_path;

  std::size_t size() const { return images.count; }
  std::size_t features() const { return images.features(); }
};

/// Loads split `split` ("train" or "t10k") of an MNIST-like dataset from directory `dir`:
/// "<dir>/<split>-images-idx3-ubyte[.gz]" and "<dir>/<split>-labels-idx1-ubyte[.gz]" (the
/// .gz file is used when both exist). Fashion-MNIST (Debian: dataset-fashion-mnist) lives in
/// /usr/share/datasets/fashion-mnist.
///
/// `classes` is the number of classes, given rather than inferred from the largest label so that
/// one corrupt label cannot silently add classes; MNIST, Fashion-MNIST and KMNIST have 10. It must
/// be > 0, and every label must lie in [0, classes): otherwise a ValueError naming the labels
/// file, the index of the first offending label, its value and the valid range.
template <class T = float>
Dataset<T> load_mnist_like(const std::string& dir, const std::string& split,
                           std::int32_t classes = 10);

extern template Images<float> read_idx_images<float>(const std::string&);
extern template Images<double> read_idx_images<double>(const std::string&);
extern template Dataset<float> load_mnist_like<float>(const std::string&, const std::string&,
                                                      std::int32_t);
extern template Dataset<double> load_mnist_like<double>(const std::string&, const std::string&,
                                                        std::int32_t);

}  // namespace wengert::io
