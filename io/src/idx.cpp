// IDX reader (format and errors: wengert/io/idx.hpp).
#include <wengert/io/idx.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>

#include <zlib.h>

#include <wengert/errors.hpp>

namespace wengert::io {

namespace {

constexpr std::uint8_t kTypeUByte = 0x08;

std::string prefix(const char* who, const std::string& path) {
  return std::string(who) + ": '" + path + "': ";
}

std::string hex32(std::uint32_t v) {
  char b[11];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

// gzFile with RAII and error messages that name the caller and the file.
class GzReader {
 public:
  GzReader(const char* who, const std::string& path) : who_(who), path_(path) {
    errno = 0;
    f_ = gzopen(path.c_str(), "rb");
    if (!f_)
      throw ValueError(prefix(who_, path_) + "cannot open it (" +
                       (errno ? std::strerror(errno) : "out of memory") + ")");
    gzbuffer(f_, 1 << 17);
  }
  ~GzReader() { gzclose_r(f_); }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  /// Reads up to n bytes; returns how many (fewer only at the end of the data).
  std::size_t read_some(void* dst, std::size_t n) {
    std::size_t done = 0;
    auto* p = static_cast<unsigned char*>(dst);
    while (done < n) {
      unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      int got = gzread(f_, p + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(f_, &code);
        throw ValueError(prefix(who_, path_) +
                         (code == Z_BUF_ERROR ? "the file is truncated (" : "corrupt gzip data (") +
                         "zlib: " + msg + ")");
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

  /// Reads exactly n bytes of `what`; a short read is a truncated file.
  void read_exact(void* dst, std::size_t n, const std::string& what) {
    std::size_t got = read_some(dst, n);
    if (got != n)
      throw ValueError(prefix(who_, path_) + "the file is truncated: " + what + " needs " +
                       std::to_string(n) + " bytes but only " + std::to_string(got) + " remain");
  }

  const char* who() const { return who_; }
  const std::string& path() const { return path_; }

 private:
  const char* who_;
  std::string path_;
  gzFile f_ = nullptr;
};

// Reads an IDX file of unsigned bytes; `want_rank` = 0 accepts any rank.
IdxArray read_ubyte_idx(const char* who, const std::string& path, std::uint8_t want_rank) {
  GzReader in(who, path);
  unsigned char m[4];
  std::size_t got = in.read_some(m, 4);
  const std::uint32_t magic = got == 4 ? std::uint32_t{m[0]} << 24 | std::uint32_t{m[1]} << 16 |
                                             std::uint32_t{m[2]} << 8 | m[3]
                                       : 0;
  if (got < 4)
    throw ValueError(prefix(who, path) + "the file is truncated: " + std::to_string(got) +
                     " bytes, shorter than the 4-byte IDX magic");
  if (m[0] != 0 || m[1] != 0)
    throw ValueError(prefix(who, path) + "not an IDX file: magic " + hex32(magic) +
                     " does not start with two zero bytes");
  if (m[2] != kTypeUByte)
    throw ValueError(prefix(who, path) + "magic " + hex32(magic) + ": element type 0x" +
                     hex32(m[2]).substr(8) + " is not supported; only unsigned bytes (0x08)");
  if (want_rank && m[3] != want_rank)
    throw ValueError(prefix(who, path) + "magic " + hex32(magic) + " is a rank-" +
                     std::to_string(m[3]) + " IDX file; expected rank " +
                     std::to_string(want_rank) + " (magic " + hex32(0x800u | want_rank) + ", " +
                     (want_rank == 3   ? "images"
                      : want_rank == 1 ? "labels"
                                       : "data") +
                     ")");
  if (m[3] == 0)
    throw ValueError(prefix(who, path) + "magic " + hex32(magic) + " announces rank 0");

  IdxArray a;
  a.dims.resize(m[3]);
  std::uint64_t total = 1;
  for (std::size_t d = 0; d < a.dims.size(); ++d) {
    unsigned char b[4];
    in.read_exact(b, 4, "dimension " + std::to_string(d));
    a.dims[d] =
        std::uint32_t{b[0]} << 24 | std::uint32_t{b[1]} << 16 | std::uint32_t{b[2]} << 8 | b[3];
    if (a.dims[d] != 0 && total > (std::uint64_t{1} << 62) / a.dims[d])
      throw ValueError(prefix(who, path) + "the header announces an implausibly large array");
    total *= a.dims[d];
  }

  // Read in chunks rather than trusting the header with one huge allocation: a corrupt header
  // then ends as "truncated" instead of bad_alloc.
  constexpr std::size_t kChunk = std::size_t{1} << 22;
  a.data.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(total, kChunk)));
  while (a.data.size() < total) {
    std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(total - a.data.size(), kChunk));
    std::size_t at = a.data.size();
    a.data.resize(at + want);
    std::size_t n = in.read_some(a.data.data() + at, want);
    if (n != want) {
      std::string shape;
      for (std::size_t d : a.dims) shape += (shape.empty() ? "" : ",") + std::to_string(d);
      throw ValueError(prefix(who, path) + "the file is truncated: the header announces [" + shape +
                       "] = " + std::to_string(total) + " bytes of data but only " +
                       std::to_string(at + n) + " follow");
    }
  }
  unsigned char extra;
  if (in.read_some(&extra, 1) != 0)
    throw ValueError(prefix(who, path) + "the file has bytes after the " + std::to_string(total) +
                     " bytes of data its header announces; it is corrupt "
                     "or not the file it seems");
  return a;
}

std::string pick_file(const std::string& dir, const std::string& base) {
  namespace fs = std::filesystem;
  const fs::path gz = fs::path(dir) / (base + ".gz");
  const fs::path plain = fs::path(dir) / base;
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz.string();
  if (fs::exists(plain, ec)) return plain.string();
  throw ValueError("load_mnist_like: '" + dir + "': has neither '" + base + ".gz' nor '" + base +
                   "'");
}

}  // namespace

IdxArray read_idx(const std::string& path) { return read_ubyte_idx("read_idx", path, 0); }

template <class T>
Images<T> read_idx_images(const std::string& path) {
  IdxArray a = read_ubyte_idx("read_idx_images", path, 3);
  Images<T> im;
  im.count = a.dims[0];
  im.rows = a.dims[1];
  im.cols = a.dims[2];
  std::array<T, 256> scale;
  for (int b = 0; b < 256; ++b) scale[b] = T(b) / T(255);
  im.pixels.resize(a.data.size());
  for (std::size_t i = 0; i < a.data.size(); ++i) im.pixels[i] = scale[a.data[i]];
  return im;
}

std::vector<std::int32_t> read_idx_labels(const std::string& path) {
  IdxArray a = read_ubyte_idx("read_idx_labels", path, 1);
  return std::vector<std::int32_t>(a.data.begin(), a.data.end());
}

template <class T>
Dataset<T> load_mnist_like(const std::string& dir, const std::string& split, std::int32_t classes) {
  // Checked before any file is read: the argument is wrong whatever the files hold.
  if (classes <= 0)
    throw ValueError("load_mnist_like: '" + dir + "': classes must be > 0, got " +
                     std::to_string(classes));
  Dataset<T> ds;
  ds.images_path = pick_file(dir, split + "-images-idx3-ubyte");
  ds.labels_path = pick_file(dir, split + "-labels-idx1-ubyte");
  ds.images = read_idx_images<T>(ds.images_path);
  ds.labels = read_idx_labels(ds.labels_path);
  if (ds.labels.size() != ds.images.count)
    throw ValueError("load_mnist_like: '" + ds.images_path + "' holds " +
                     std::to_string(ds.images.count) + " images but '" + ds.labels_path +
                     "' holds " + std::to_string(ds.labels.size()) + " labels");
  // The class count is given, not max label + 1: a stray byte such as 255 would otherwise make
  // 256 classes, and its example would be scored against a class no model predicts.
  for (std::size_t i = 0; i < ds.labels.size(); ++i)
    if (ds.labels[i] < 0 || ds.labels[i] >= classes)
      throw ValueError(prefix("load_mnist_like", ds.labels_path) + "label " +
                       std::to_string(ds.labels[i]) + " at index " + std::to_string(i) +
                       " is outside [0, " + std::to_string(classes) + ")");
  ds.num_classes = classes;
  return ds;
}

template Images<float> read_idx_images<float>(const std::string&);
template Images<double> read_idx_images<double>(const std::string&);
template Dataset<float> load_mnist_like<float>(const std::string&, const std::string&,
                                               std::int32_t);
template Dataset<double> load_mnist_like<double>(const std::string&, const std::string&,
                                                 std::int32_t);

}  // namespace wengert::io
