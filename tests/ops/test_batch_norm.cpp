// Tests for ops/wengert/ops/batch_norm.hpp: batch_norm2d in training mode (batch statistics)
// and in eval mode (running statistics) through the shared op-test helper (forward against the
// formula in double, gradcheck, float32, constants, fan-out, shape errors, allocation-free
// replay), on batch 1, non-square images and 1×1 images; then the running statistics'
// momentum update, eval mode's lack of an update, and the option errors.
#include <wengert/ops/batch_norm.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <xtensor/xbuilder.hpp>

#include "op_test.hpp"

using namespace wengert;
using wengert::testing::op_test;
using wengert::testing::ShapeCase;
using wengert::testing::Values;

namespace {

constexpr double kEps = 1e-5;

// y = γ·(x − μ)/√(σ² + ε) + β per channel; μ, σ² the batch's (biased) or the given ones.
xt::xarray<double> bn_ref(const Values& v, const double* rmean, const double* rvar) {
  const auto& x = v[0];
  const std::size_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  xt::xarray<double> y = xt::zeros<double>(x.shape());
  for (std::size_t c = 0; c < C; ++c) {
    double mu = 0, var = 0;
    if (rmean) {
      mu = rmean[c], var = rvar[c];
    } else {
      const double M = double(N * H * W);
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t h = 0; h < H; ++h)
          for (std::size_t w = 0; w < W; ++w) mu += x(n, c, h, w) / M;
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t h = 0; h < H; ++h)
          for (std::size_t w = 0; w < W; ++w)
            var += (x(n, c, h, w) - mu) * (x(n, c, h, w) - mu) / M;
    }
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t h = 0; h < H; ++h)
        for (std::size_t w = 0; w < W; ++w)
          y(n, c, h, w) = v[1](c) * (x(n, c, h, w) - mu) / std::sqrt(var + kEps) + v[2](c);
  }
  return y;
}

const std::vector<ShapeCase> kCases = {{{2, 3, 2, 3}, {3}, {3}},   // non-square
                                       {{1, 2, 3, 3}, {2}, {2}},   // batch 1
                                       {{4, 2, 1, 1}, {2}, {2}}};  // 1×1 images
const std::vector<ShapeCase> kBad = {
    {{2, 3, 2, 2}, {2}, {3}}, {{2, 3, 2, 2}, {3}, {4}}, {{2, 3, 4}, {3}, {3}}};

// Running statistics for eval mode (up to 3 channels), as both element types.
const double kMean[3] = {0.25, -0.5, 1.0}, kVar[3] = {0.5, 2.0, 0.75};
float kMeanF[3] = {0.25f, -0.5f, 1.0f}, kVarF[3] = {0.5f, 2.0f, 0.75f};
double kMeanD[3] = {0.25, -0.5, 1.0}, kVarD[3] = {0.5, 2.0, 0.75};

}  // namespace

TEST(BatchNorm2d, OpTestTraining) {
  op_test<3>("batch_norm2d (training)",
             [](auto&& x, auto&& g, auto&& b) { return batch_norm2d(x, g, b); })
      .shapes(wengert::testing::shapes::fixed(kCases))
      .bad_shapes(kBad)
      .reference([](const Values& v) { return bn_ref(v, nullptr, nullptr); })
      .forward_tolerance(1e-10, 1e-11)
      .float_tolerance(2e-3, 2e-4)  // x̂ divides by a batch σ that float rounds
      .error_token("batch_norm2d")
      .run();
}

TEST(BatchNorm2d, OpTestEval) {
  op_test<3>("batch_norm2d (eval)",
             [](auto&& x, auto&& g, auto&& b) {
               using T = typename std::decay_t<decltype(x)>::value_type;
               BatchNormOptions<T> o;
               o.training = false;
               if constexpr (std::is_same_v<T, float>)
                 o.running_mean = kMeanF, o.running_var = kVarF;
               else
                 o.running_mean = kMeanD, o.running_var = kVarD;
               return batch_norm2d(x, g, b, o);
             })
      .shapes(wengert::testing::shapes::fixed(kCases))
      .bad_shapes(kBad)
      .reference([](const Values& v) { return bn_ref(v, kMean, kVar); })
      .error_token("batch_norm2d")
      .run();
}

TEST(BatchNorm2d, RunningStatisticsMoveByMomentumInTrainingOnly) {
  Tape<double> tape;
  // Channel 0 holds 1, 2, 3, 4 (mean 2.5, unbiased variance 5/3); channel 1 holds 0s.
  auto x = tape.variable(xt::xarray<double>{{{{1, 2}}, {{0, 0}}}, {{{3, 4}}, {{0, 0}}}});
  auto g = tape.variable(xt::xarray<double>{1, 1});
  auto b = tape.variable(xt::xarray<double>{0, 0});
  double rm[2] = {0, 1}, rv[2] = {1, 1};
  BatchNormOptions<double> o;
  o.running_mean = rm;
  o.running_var = rv;
  o.momentum = 0.25;
  auto y = batch_norm2d(x, g, b, o);
  EXPECT_DOUBLE_EQ(rm[0], 0.25 * 2.5);
  EXPECT_DOUBLE_EQ(rv[0], 0.75 + 0.25 * 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(rm[1], 0.75);
  EXPECT_DOUBLE_EQ(rv[1], 0.75);
  EXPECT_NEAR(y.value()(0, 0, 0, 0), -1.5 / std::sqrt(1.25 + 1e-5), 1e-12);
  o.training = false;  // eval: reads the running statistics, changes nothing
  const double rm0 = rm[0], rv0 = rv[0];
  auto z = batch_norm2d(x, g, b, o);
  EXPECT_EQ(rm[0], rm0);
  EXPECT_EQ(rv[0], rv0);
  EXPECT_NEAR(z.value()(1, 0, 0, 1), (4 - rm0) / std::sqrt(rv0 + 1e-5), 1e-12);
}

TEST(BatchNorm2d, OptionErrorsNameTheOp) {
  Tape<float> tape;
  auto x = tape.variable(xt::xarray<float>(xt::ones<float>({2, 2, 2, 2})));
  auto g = tape.variable(xt::xarray<float>{1, 1});
  auto b = tape.variable(xt::xarray<float>{0, 0});
  float rm[2] = {0, 0}, rv[2] = {1, 1};
  auto expect_value_error = [&](BatchNormOptions<float> o, const char* what) {
    std::string msg;
    try {
      batch_norm2d(x, g, b, o);
    } catch (const ValueError& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("batch_norm2d: "), std::string::npos) << what << ": " << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  };
  BatchNormOptions<float> o;
  o.training = false;
  expect_value_error(o, "eval mode");
  o.running_mean = rm;
  expect_value_error(o, "together");
  o.running_var = rv;
  o.momentum = 1.5;
  expect_value_error(o, "momentum");
  o.momentum = 0.1;
  o.eps = 0;
  expect_value_error(o, "eps");
  auto empty = tape.variable(xt::xarray<float>(xt::ones<float>({0, 2, 2, 2})));
  EXPECT_THROW(batch_norm2d(empty, g, b), ShapeError);  // training needs values per channel
}
