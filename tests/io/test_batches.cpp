// Tests for io/wengert/io/batches.hpp: reproducible shuffles, every row once per epoch, the
// last partial batch (kept or dropped), correct gathering, no allocation per batch, and an
// unbiased shuffle.
#include <wengert/io/batches.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "alloc_counter.hpp"

using namespace wengert;
using io::Batcher;
using io::LastBatch;

namespace {

// n rows of dim features: row i = (i·10, i·10 + 1, …), label i % 7.
struct Toy {
  std::size_t n, dim;
  std::vector<float> x;
  std::vector<std::int32_t> y;
  Toy(std::size_t n_, std::size_t dim_) : n(n_), dim(dim_) {
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t k = 0; k < dim; ++k) x.push_back(float(i * 10 + k));
      y.push_back(static_cast<std::int32_t>(i % 7));
    }
  }
};

// The rows of one epoch, batch after batch, checking each batch's contents on the way.
std::vector<std::size_t> run_epoch(Batcher<float>& b, const Toy& t, std::uint64_t epoch,
                                   std::vector<std::size_t>* sizes = nullptr) {
  b.start_epoch(epoch);
  std::vector<std::size_t> seen;
  std::size_t k = 0;
  while (b.next()) {
    EXPECT_EQ(b.batch_index(), k++);
    EXPECT_EQ(b.shape(), (Shape{b.size(), t.dim}));
    for (std::size_t r = 0; r < b.size(); ++r) {
      const std::size_t i = b.indices()[r];
      for (std::size_t d = 0; d < t.dim; ++d)
        EXPECT_EQ(b.features()[r * t.dim + d], t.x[i * t.dim + d]) << "row " << r << " index " << i;
      EXPECT_EQ(b.labels()[r], t.y[i]);
      seen.push_back(i);
    }
    if (sizes) sizes->push_back(b.size());
  }
  EXPECT_EQ(b.size(), 0u);
  EXPECT_FALSE(b.next()) << "an ended epoch stays ended";
  return seen;
}

}  // namespace

TEST(Batches, SameSeedSameOrder) {
  Toy t(23, 3);
  Batcher<float> a(t.x.data(), t.y.data(), t.n, t.dim, 5, 1234);
  Batcher<float> b(t.x.data(), t.y.data(), t.n, t.dim, 5, 1234);
  for (std::uint64_t e = 0; e < 4; ++e) EXPECT_EQ(run_epoch(a, t, e), run_epoch(b, t, e)) << e;
  Batcher<float> c(t.x.data(), t.y.data(), t.n, t.dim, 5, 1235);
  EXPECT_NE(run_epoch(a, t, 0), run_epoch(c, t, 0)) << "a different seed gives a different order";
}

TEST(Batches, EpochsDifferAndResumeAnywhere) {
  Toy t(40, 2);
  Batcher<float> a(t.x.data(), t.y.data(), t.n, t.dim, 8, 7);
  std::vector<std::vector<std::size_t>> orders;
  for (std::uint64_t e = 0; e < 6; ++e) orders.push_back(run_epoch(a, t, e));
  for (std::size_t e = 1; e < orders.size(); ++e)
    EXPECT_NE(orders[e], orders[e - 1]) << "epoch " << e << " repeats the previous order";
  std::vector<std::size_t> identity(t.n);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(orders[0], identity) << "epoch 0 is shuffled too";
  // A fresh Batcher that jumps straight to epoch 4 sees what the first one saw there.
  Batcher<float> b(t.x.data(), t.y.data(), t.n, t.dim, 8, 7);
  EXPECT_EQ(run_epoch(b, t, 4), orders[4]);
  // start_epoch rewinds: replaying epoch 2 mid-way gives epoch 2 again.
  a.start_epoch(2);
  a.next();
  EXPECT_EQ(run_epoch(a, t, 2), orders[2]);
}

TEST(Batches, EveryIndexOncePerEpochLastBatchKept) {
  Toy t(10, 3);
  Batcher<float> b(t.x.data(), t.y.data(), t.n, t.dim, 4, 99);  // kKeep is the default
  EXPECT_EQ(b.batches_per_epoch(), 3u);
  for (std::uint64_t e = 0; e < 3; ++e) {
    std::vector<std::size_t> sizes;
    auto seen = run_epoch(b, t, e, &sizes);
    EXPECT_EQ(sizes, (std::vector<std::size_t>{4, 4, 2}));
    std::sort(seen.begin(), seen.end());
    std::vector<std::size_t> all(t.n);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(seen, all) << "epoch " << e;
  }
}

TEST(Batches, LastBatchDropped) {
  Toy t(10, 3);
  Batcher<float> b(t.x.data(), t.y.data(), t.n, t.dim, 4, 99, LastBatch::kDrop);
  EXPECT_EQ(b.batches_per_epoch(), 2u);
  Batcher<float> keep(t.x.data(), t.y.data(), t.n, t.dim, 4, 99);
  for (std::uint64_t e = 0; e < 3; ++e) {
    std::vector<std::size_t> sizes;
    auto seen = run_epoch(b, t, e, &sizes);
    EXPECT_EQ(sizes, (std::vector<std::size_t>{4, 4}));
    // The same shuffle as with kKeep, minus the tail.
    auto kept = run_epoch(keep, t, e);
    EXPECT_EQ(seen, std::vector<std::size_t>(kept.begin(), kept.begin() + 8));
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "no repeats";
  }
  // Fewer rows than one batch: nothing to yield when dropping, one short batch when keeping.
  Batcher<float> tiny_drop(t.x.data(), t.y.data(), 3, t.dim, 4, 1, LastBatch::kDrop);
  EXPECT_FALSE(tiny_drop.next());
  Batcher<float> tiny_keep(t.x.data(), t.y.data(), 3, t.dim, 4, 1);
  ASSERT_TRUE(tiny_keep.next());
  EXPECT_EQ(tiny_keep.size(), 3u);
  EXPECT_FALSE(tiny_keep.next());
}

TEST(Batches, ExactMultipleHasNoShortBatch) {
  Toy t(12, 1);
  for (LastBatch lb : {LastBatch::kKeep, LastBatch::kDrop}) {
    Batcher<float> b(t.x.data(), t.y.data(), t.n, t.dim, 4, 5, lb);
    EXPECT_EQ(b.batches_per_epoch(), 3u);
    std::vector<std::size_t> sizes;
    run_epoch(b, t, 0, &sizes);
    EXPECT_EQ(sizes, (std::vector<std::size_t>{4, 4, 4}));
  }
}

TEST(Batches, IteratingAllocatesNothing) {
  Toy t(1000, 16);
  Batcher<float> b(t.x.data(), t.y.data(), t.n, t.dim, 64, 3);
  wengert::testing::AllocCounter count;
  std::size_t rows = 0;
  float checksum = 0;
  for (std::uint64_t e = 0; e < 3; ++e) {
    b.start_epoch(e);
    while (b.next()) {
      rows += b.size();
      checksum += b.features()[0];
    }
  }
  EXPECT_EQ(count.count(), 0u);
  EXPECT_EQ(rows, 3000u);
  EXPECT_GT(checksum, 0.0f);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.features()) % 64, 0u);
}

TEST(Batches, ShuffleIsUnbiased) {
  // Over many epochs each row lands in each position about equally often. A classic off-by-one
  // (drawing j from [0, n) for every i) or a modulo-biased draw fails this χ² test.
  const std::size_t n = 5, epochs = 20000;
  Toy t(n, 1);
  Batcher<float> b(t.x.data(), t.y.data(), n, 1, n, 2024);
  std::vector<double> counts(n * n, 0.0);
  for (std::uint64_t e = 0; e < epochs; ++e) {
    b.start_epoch(e);
    for (std::size_t pos = 0; pos < n; ++pos) counts[b.order()[pos] * n + pos] += 1;
  }
  const double expected = double(epochs) / n;
  double chi2 = 0;
  for (double c : counts) chi2 += (c - expected) * (c - expected) / expected;
  // 25 cells, (n−1)² = 16 degrees of freedom: P(χ² > 39.25) ≈ 0.001.
  EXPECT_LT(chi2, 39.25);
}

TEST(Batches, FromADatasetAndWithoutLabels) {
  io::Dataset<double> ds;
  ds.images.count = 6;
  ds.images.rows = 1;
  ds.images.cols = 2;
  for (int i = 0; i < 12; ++i) ds.images.pixels.push_back(i);
  ds.labels = {0, 1, 2, 3, 4, 5};
  Batcher<double> b(ds, 4, 11);
  ASSERT_TRUE(b.next());
  for (std::size_t r = 0; r < b.size(); ++r) {
    EXPECT_EQ(b.labels()[r], static_cast<std::int32_t>(b.indices()[r]));
    EXPECT_EQ(b.features()[2 * r + 1], double(2 * b.indices()[r] + 1));
  }
  Batcher<double> nolabels(ds.images.pixels.data(), nullptr, 6, 2, 4, 11);
  ASSERT_TRUE(nolabels.next());
  EXPECT_EQ(nolabels.labels(), nullptr);
  EXPECT_EQ(nolabels.indices()[0], b.indices()[0]);
}

TEST(Batches, RejectsBadArguments) {
  Toy t(4, 2);
  EXPECT_THROW(Batcher<float>(t.x.data(), t.y.data(), t.n, t.dim, 0, 1), ValueError);
  EXPECT_THROW(Batcher<float>(nullptr, t.y.data(), t.n, t.dim, 2, 1), UsageError);
  Batcher<float> empty(nullptr, nullptr, 0, 3, 2, 1);
  EXPECT_EQ(empty.batches_per_epoch(), 0u);
  EXPECT_FALSE(empty.next());
}

// advance() + gather() in pieces, out of order: the same batches as next(); a range outside the
// batch is refused.
TEST(Batches, AdvanceThenGatherInPiecesEqualsNext) {
  Toy t(29, 5);
  Batcher<float> whole(t.x.data(), t.y.data(), t.n, t.dim, 8, 3);
  Batcher<float> split(t.x.data(), t.y.data(), t.n, t.dim, 8, 3);
  for (std::uint64_t epoch = 0; epoch < 2; ++epoch) {
    whole.start_epoch(epoch);
    split.start_epoch(epoch);
    while (whole.next()) {
      ASSERT_TRUE(split.advance());
      ASSERT_EQ(split.size(), whole.size());
      const std::size_t m = split.size(), half = m / 2;
      split.gather(half, m);
      split.gather(0, half);
      for (std::size_t r = 0; r < m; ++r) {
        EXPECT_EQ(split.indices()[r], whole.indices()[r]);
        EXPECT_EQ(split.labels()[r], whole.labels()[r]);
      }
      for (std::size_t k = 0; k < m * t.dim; ++k)
        ASSERT_EQ(split.features()[k], whole.features()[k]) << "element " << k;
      EXPECT_THROW(split.gather(0, m + 1), UsageError);
      EXPECT_THROW(split.gather(3, 2), UsageError);
    }
    EXPECT_FALSE(split.advance());
  }
}
