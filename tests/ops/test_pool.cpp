// Tests for ops/wengert/ops/pool.hpp: max_pool2d, avg_pool2d and global_avg_pool through the
// shared op-test helper (forward against direct loops in double, gradcheck, float32,
// constants, fan-out, shape errors, allocation-free replay) on stride 2, overlapping windows,
// padding, a window as large as the input, batch 1 and non-square images; then the messages
// (the computed output size), NaN in max pooling and the tie rule.
#include <wengert/ops/pool.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <xtensor/xbuilder.hpp>

#include "op_test.hpp"

using namespace wengert;
using wengert::testing::op_test;
using wengert::testing::ShapeCase;
using wengert::testing::Values;

namespace {

// Direct loops: the max or the mean (÷ k², padding counted as 0) of every window.
xt::xarray<double> pool_ref(const xt::xarray<double>& x, Pool2dOptions o, bool max) {
  const long k = long(o.kernel), s = long(o.stride ? o.stride : o.kernel), p = long(o.padding);
  const long N = long(x.shape(0)), C = long(x.shape(1)), H = long(x.shape(2)), W = long(x.shape(3));
  const long Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  xt::xarray<double> y =
      xt::zeros<double>({std::size_t(N), std::size_t(C), std::size_t(Ho), std::size_t(Wo)});
  for (long n = 0; n < N; ++n)
    for (long c = 0; c < C; ++c)
      for (long oh = 0; oh < Ho; ++oh)
        for (long ow = 0; ow < Wo; ++ow) {
          double acc = max ? -INFINITY : 0.0;
          for (long i = 0; i < k; ++i)
            for (long j = 0; j < k; ++j) {
              const long h = oh * s - p + i, w = ow * s - p + j;
              if (h < 0 || h >= H || w < 0 || w >= W) continue;
              acc = max ? std::max(acc, x(n, c, h, w)) : acc + x(n, c, h, w);
            }
          y(n, c, oh, ow) = max ? acc : acc / double(k * k);
        }
  return y;
}

// Distinct values at least 0.05 apart, shuffled: no two pixels of a window are within a
// finite-difference step of each other, so max pooling is smooth where gradcheck looks.
Values distinct(const ShapeCase& sc, std::mt19937_64& rng) {
  xt::xarray<double> x = xt::zeros<double>(sc[0]);
  std::vector<double> v(x.size());
  std::iota(v.begin(), v.end(), 0.0);
  std::shuffle(v.begin(), v.end(), rng);
  for (std::size_t i = 0; i < v.size(); ++i) x.data()[i] = 0.0625 * v[i] - 1.0;
  return {x};
}

const std::vector<ShapeCase> kBadImages = {{{2, 3, 4}}, {{4}}, {{1, 1, 0, 3}}};

void run_pool(const std::string& label, Pool2dOptions o, std::vector<ShapeCase> cases,
              std::vector<ShapeCase> bad = {}) {
  bad.insert(bad.end(), kBadImages.begin(), kBadImages.end());
  op_test<1>("max_pool2d " + label, [o](auto&& x) { return max_pool2d(x, o); })
      .shapes(wengert::testing::shapes::fixed(cases))
      .bad_shapes(bad)
      .values(distinct)
      .reference([o](const Values& v) { return pool_ref(v[0], o, true); })
      .error_token("max_pool2d")
      .run();
  op_test<1>("avg_pool2d " + label, [o](auto&& x) { return avg_pool2d(x, o); })
      .shapes(wengert::testing::shapes::fixed(cases))
      .bad_shapes(bad)
      .reference([o](const Values& v) { return pool_ref(v[0], o, false); })
      .error_token("avg_pool2d")
      .run();
}

}  // namespace

TEST(Pool2d, OpTestKernel2) {
  run_pool("2x2", {2, 0, 0},
           {{{1, 1, 4, 4}}, {{2, 3, 4, 6}}, {{1, 2, 5, 3}}, {{1, 1, 2, 2}}},  // odd sizes floor
           {{{1, 1, 1, 4}}});                                                 // 1 row < 2
}

TEST(Pool2d, OpTestOverlappingStrideAndPadding) {
  run_pool("3x3 stride 2 padding 1", {3, 2, 1}, {{{2, 2, 5, 5}}, {{1, 1, 4, 7}}, {{1, 1, 1, 1}}});
  run_pool("3x3 stride 1", {3, 1, 0}, {{{1, 2, 3, 5}}, {{2, 1, 3, 3}}},  // [3,3]: one window
           {{{1, 1, 2, 5}}});
}

TEST(GlobalAvgPool, OpTest) {
  op_test<1>("global_avg_pool", [](auto&& x) { return global_avg_pool(x); })
      .shapes(wengert::testing::shapes::fixed(
          {{{1, 1, 1, 1}}, {{2, 3, 4, 5}}, {{1, 2, 7, 1}}, {{0, 2, 3, 3}}}))
      .bad_shapes({{{2, 3}}, {{2, 3, 4}}, {{1, 2, 0, 3}}})
      .reference([](const Values& v) {
        const auto& x = v[0];
        xt::xarray<double> y = xt::zeros<double>({x.shape(0), x.shape(1)});
        for (std::size_t n = 0; n < x.shape(0); ++n)
          for (std::size_t c = 0; c < x.shape(1); ++c) {
            for (std::size_t h = 0; h < x.shape(2); ++h)
              for (std::size_t w = 0; w < x.shape(3); ++w) y(n, c) += x(n, c, h, w);
            y(n, c) /= double(x.shape(2) * x.shape(3));
          }
        return y;
      })
      .run();
}

TEST(Pool2d, ErrorsGiveTheComputedOutputSize) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>(xt::zeros<double>({1, 1, 2, 5})));
  std::string msg;
  try {
    max_pool2d(x, {3});
  } catch (const ShapeError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("max_pool2d: x is [1,1,2,5] with kernel 3, stride 3, padding 0: the output "
                     "height would be (2 + 2·0 − 3)/3 + 1 = 0.66"),
            std::string::npos)
      << msg;
  EXPECT_THROW(avg_pool2d(x, {0}), ValueError);        // no kernel
  EXPECT_THROW(max_pool2d(x, {2, 1, 2}), ValueError);  // padding 2 > 2 / 2
  EXPECT_EQ(max_pool2d(x, {3, 1, 1}).shape(), (Shape{1, 1, 2, 5}));
}

TEST(Pool2d, MaxPoolNanWinsAndTiesGoToTheFirst) {
  Tape<float> tape;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto x = tape.variable(xt::xarray<float>{{{{1, 3, 3, 0}, {2, nan, 3, 3}}}});
  auto y = max_pool2d(x, {2});
  EXPECT_TRUE(std::isnan(y.value()(0, 0, 0, 0)));
  EXPECT_EQ(y.value()(0, 0, 0, 1), 3.0f);
  tape.backward(y, xt::xarray<float>{{{{10, 20}}}});
  EXPECT_EQ(x.grad()(0, 0, 1, 1), 10.0f);  // the NaN pixel
  EXPECT_EQ(x.grad()(0, 0, 0, 2), 20.0f);  // the first of the four 3s, row-major
  EXPECT_EQ(x.grad()(0, 0, 1, 2), 0.0f);
  EXPECT_EQ(x.grad()(0, 0, 1, 3), 0.0f);
}
