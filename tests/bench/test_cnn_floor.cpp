// The CNN benchmark's hand-written OpenBLAS step (benchmarks/cnn_floor.cpp) must compute what
// wengert's step computes (benchmarks/cnn_wengert.cpp): the same loss, the same gradients of
// every weight and bias, the same updated weights and the same next loss, within float32
// tolerance — on the benchmark's own sizes and on a narrow variant. The floor is only a fair
// reference if it does the same work.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "../../benchmarks/cnn_floor.hpp"
#include "../../benchmarks/cnn_wengert.hpp"

using namespace wengert_bench;

namespace {

// max |a − b| / max |b|
double rel_err(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}

void expect_same_steps(const CnnShape& shape) {
  const CnnProblem p = make_cnn_problem(shape, 7);
  FloorCNN floor(p);
  WengertCNN weng(p);
  const float lf = floor.step(), lw = weng.step();
  EXPECT_NEAR(lw, lf, 1e-5 * std::fabs(lf));
  for (int l = 0; l < 4; ++l) {
    const std::size_t nW = floor.weight_size(l), nb = floor.bias_size(l);
    ASSERT_EQ(weng.weight(l).size(), nW);
    EXPECT_LT(rel_err(weng.weight(l).grad_data(), floor.grad_weight(l), nW), 1e-4) << "dW" << l;
    EXPECT_LT(rel_err(weng.bias(l).grad_data(), floor.grad_bias(l), nb), 1e-4) << "db" << l;
    EXPECT_LT(rel_err(weng.weight(l).data(), floor.weight(l), nW), 1e-5) << "W" << l;
    EXPECT_LT(rel_err(weng.bias(l).data(), floor.bias(l), nb), 1e-5) << "b" << l;
  }
  const float lf2 = floor.step(), lw2 = weng.step();
  EXPECT_NEAR(lw2, lf2, 1e-4 * std::fabs(lf2));
  EXPECT_NE(lf2, lf);  // the update changed something
}

}  // namespace

TEST(CnnFloor, ComputesWhatWengertComputes) {
  expect_same_steps(CnnShape{});                  // the benchmark: batch 64, 32/64 channels
  expect_same_steps(CnnShape{3, 8, 2, 4, 6, 5});  // narrow, 8×8 images
}
