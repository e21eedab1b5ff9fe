// wengert — shuffled mini-batches with a fixed seed.
//
// A Batcher walks a dataset ([n, dim] row-major features and n int32 labels, not copied) in
// mini-batches. Each epoch visits the rows in a fresh random order; the order of epoch e is a
// pure function of (seed, e) — the generator is re-seeded from both at start_epoch(e) and the
// permutation is rebuilt from the identity — so a run is reproducible and can resume at any
// epoch. The shuffle is Fisher–Yates driven by std::mt19937_64 with an unbiased bounded draw of
// our own (std::uniform_int_distribution and std::shuffle differ between standard libraries),
// so the order is the same with any compiler.
//
// The last batch: with n = q·batch_size + r and r > 0, LastBatch::kKeep (the default) yields a
// final batch of r rows, so every row is seen exactly once per epoch; LastBatch::kDrop drops
// those r rows (different ones each epoch), so every batch has exactly batch_size rows.
//
// next() gathers the batch's rows into buffers allocated once at construction: iterating
// allocates nothing. features() stays valid (and is overwritten) until the next call to next();
// it is 64-byte aligned and can be put on a tape without a copy:
//
//   io::Batcher<float> batches(train, 128, /*seed=*/42);
//   for (std::uint64_t epoch = 0; epoch < epochs; ++epoch) {
//     batches.start_epoch(epoch);
//     while (batches.next()) {
//       Var<float> x = tape.constant_view(batches.features(), batches.shape());
//       ... batches.labels() ...
//     }
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <wengert/arena.hpp>
#include <wengert/errors.hpp>
#include <wengert/io/idx.hpp>
#include <wengert/shape.hpp>

namespace wengert::io {

/// What to do with the final batch of an epoch when batch_size does not divide n.
enum class LastBatch { kKeep, kDrop };

template <class T>
class Batcher {
 public:
  /// `features`: n rows of `dim` values; `labels`: n labels, or null for none. Neither is
  /// copied: both must outlive the Batcher. Starts at epoch 0 (start_epoch(0) is implied).
  Batcher(const T* features, const std::int32_t* labels, std::size_t n, std::size_t dim,
          std::size_t batch_size, std::uint64_t seed, LastBatch last = LastBatch::kKeep)
      : features_(features),
        labels_(labels),
        n_(n),
        dim_(dim),
        batch_(batch_size),
        seed_(seed),
        last_(last) {
    if (batch_size == 0) throw ValueError("Batcher: batch_size must be > 0");
    if (n > 0 && dim > 0 && !features)
      throw UsageError("Batcher: features is null but n = " + std::to_string(n));
    order_.resize(n_);
    x_.resize(batch_ * dim_);
    y_.resize(labels_ ? batch_ : 0);
    idx_.resize(batch_);
    start_epoch(0);
  }
  /// Batches of an MNIST-like dataset split (images as features).
  Batcher(const Dataset<T>& ds, std::size_t batch_size, std::uint64_t seed,
          LastBatch last = LastBatch::kKeep)
      : Batcher(ds.images.pixels.data(), ds.labels.data(), ds.size(), ds.features(), batch_size,
                seed, last) {}

  /// Shuffles for epoch `epoch` and rewinds to its first batch. Allocates nothing.
  void start_epoch(std::uint64_t epoch) {
    epoch_ = epoch;
    pos_ = 0;
    cur_ = 0;
    batch_index_ = static_cast<std::size_t>(-1);
    rng_.seed(mix(seed_, epoch));
    for (std::size_t i = 0; i < n_; ++i) order_[i] = i;
    for (std::size_t i = n_; i > 1; --i) {  // Fisher–Yates: swap i−1 with a draw in [0, i)
      std::size_t j = static_cast<std::size_t>(bounded(rng_, i));
      std::swap(order_[i - 1], order_[j]);
    }
  }

  /// Skips the next `batches` batches of this epoch without gathering them (a resumed run
  /// continuing mid-epoch: start_epoch(e), then skip(the batches already trained)). Skipping
  /// past the end leaves the epoch over. Allocates nothing.
  void skip(std::size_t batches) {
    for (std::size_t k = 0; k < batches; ++k) {
      const std::size_t rows = n_ - pos_ < batch_ ? n_ - pos_ : batch_;
      if (rows == 0 || (rows < batch_ && last_ == LastBatch::kDrop)) {
        pos_ = n_;
        break;
      }
      pos_ += rows;
      ++batch_index_;
    }
    cur_ = 0;
  }

  /// Gathers the next batch of this epoch; false (and an empty batch) when the epoch is over.
  bool next() {
    if (!advance()) return false;
    gather(0, cur_);
    return true;
  }

  /// next() in two parts, so that the rows can be gathered where they are used (each thread or
  /// rank its own shard, in parallel): advance() moves to the next batch — indices() and
  /// labels() are then set, features() not yet — and gather(begin, end) copies the batch's
  /// rows [begin, end) into features(). Calls on disjoint ranges may run on different threads
  /// at once. false (and an empty batch) when the epoch is over.
  bool advance() {
    std::size_t rows = n_ - pos_ < batch_ ? n_ - pos_ : batch_;
    if (rows == 0 || (rows < batch_ && last_ == LastBatch::kDrop)) {
      cur_ = 0;
      pos_ = n_;
      return false;
    }
    for (std::size_t r = 0; r < rows; ++r) {
      std::size_t i = order_[pos_ + r];
      idx_[r] = i;
      if (labels_) y_[r] = labels_[i];
    }
    pos_ += rows;
    cur_ = rows;
    ++batch_index_;
    return true;
  }
  void gather(std::size_t begin, std::size_t end) {
    if (begin > end || end > cur_)
      throw UsageError("Batcher::gather: rows [" + std::to_string(begin) + ", " +
                       std::to_string(end) + ") are not in the current batch of " +
                       std::to_string(cur_) + " rows");
    if (dim_)
      for (std::size_t r = begin; r < end; ++r)
        std::memcpy(x_.data() + r * dim_, features_ + idx_[r] * dim_, dim_ * sizeof(T));
  }

  /// Rows in the current batch (batch_size, or fewer for a kept last batch).
  std::size_t size() const { return cur_; }
  /// The current batch's features, [size(), dim] row-major.
  const T* features() const { return x_.data(); }
  /// The current batch's labels, size() of them (null if the Batcher has no labels).
  const std::int32_t* labels() const { return labels_ ? y_.data() : nullptr; }
  /// Which dataset rows the current batch holds, in batch order.
  const std::size_t* indices() const { return idx_.data(); }
  /// [size(), dim]: the shape of features().
  Shape shape() const { return Shape{cur_, dim_}; }

  std::size_t batches_per_epoch() const {
    return last_ == LastBatch::kKeep ? (n_ + batch_ - 1) / batch_ : n_ / batch_;
  }
  std::uint64_t epoch() const { return epoch_; }
  /// 0-based index of the current batch within the epoch.
  std::size_t batch_index() const { return batch_index_; }
  /// This epoch's permutation of [0, n).
  const std::vector<std::size_t>& order() const { return order_; }
  std::size_t batch_size() const { return batch_; }
  std::size_t dim() const { return dim_; }
  std::size_t dataset_size() const { return n_; }

 private:
  // splitmix64 finaliser: decorrelates nearby (seed, epoch) pairs before seeding the engine.
  static std::uint64_t mix(std::uint64_t seed, std::uint64_t epoch) {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (epoch + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound) without modulo bias: reject the top partial range.
  static std::uint64_t bounded(std::mt19937_64& g, std::uint64_t bound) {
    const std::uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
    for (;;) {
      std::uint64_t r = g();
      if (r >= threshold) return r % bound;
    }
  }

  const T* features_;
  const std::int32_t* labels_;
  std::size_t n_, dim_, batch_;
  std::uint64_t seed_;
  LastBatch last_;
  std::mt19937_64 rng_;
  std::vector<std::size_t> order_;
  AlignedVector<T> x_;
  std::vector<std::int32_t> y_;
  std::vector<std::size_t> idx_;
  std::uint64_t epoch_ = 0;
  std::size_t pos_ = 0, cur_ = 0, batch_index_ = 0;
};

}  // namespace wengert::io
