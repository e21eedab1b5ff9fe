// Tests for ops/wengert/ops/softplus.hpp: softplus through the shared op-test helper (forward
// against log(1 + eˣ), gradcheck, float32, constants, fan-out, allocation-free replay), then
// its edges: ±1e4 and ±inf without overflow or nan, nan propagation, the derivative equal to
// the library's sigmoid, results independent of an element's position, and a stale handle.
#include <wengert/ops/activations.hpp>
#include <wengert/ops/softplus.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <xtensor/xbuilder.hpp>

#include "op_test.hpp"

using namespace wengert;
using wengert::testing::Domain;
using wengert::testing::op_test;

namespace {

// log(1 + eˣ) in long double, stable form: the reference.
double softplus_ref(double x) {
  const long double v = x;
  return static_cast<double>(std::max(v, 0.0L) + std::log1p(std::exp(-std::fabs(v))));
}

}  // namespace

TEST(Softplus, OpTest) {
  op_test<1>("softplus", [](auto&&... v) { return softplus(v...); })
      .domain(Domain{-6.0, 6.0})
      .elementwise_reference(softplus_ref)
      .run();
  // Far into both tails, where log(1 + eˣ) would overflow (x > 88 in float) or round to 0.
  op_test<1>("softplus (tails)", [](auto&&... v) { return softplus(v...); })
      .domain(Domain{-60.0, 60.0, 20.0})
      .elementwise_reference(softplus_ref)
      .run();
}

template <class T>
void expect_stable_at_the_edges() {
  const T big = T(1e4);
  Tape<T> tape;
  auto x = tape.variable(
      xt::xarray<T>{-big, T(-1000), T(-100), T(-30), T(0), T(30), T(100), T(1000), big});
  auto y = softplus(x);
  EXPECT_STREQ(y.op_name(), "softplus");
  EXPECT_EQ(y.value()(8), big);   // 1e4 + log1p(e^−1e4) = 1e4 exactly
  EXPECT_EQ(y.value()(0), T(0));  // e^−1e4 underflows to 0: no nan, no inf
  EXPECT_EQ(y.value()(4), T(std::log(2.0)));
  EXPECT_NEAR(y.value()(3), std::exp(-30.0), 1e-6 * std::exp(-30.0));  // the tail is kept
  tape.backward(y, xt::xarray<T>(xt::ones<T>({9})));
  EXPECT_EQ(x.grad()(8), T(1));  // σ(1e4)
  EXPECT_EQ(x.grad()(0), T(0));  // σ(−1e4)
  EXPECT_EQ(x.grad()(4), T(0.5));
  for (std::size_t i = 0; i < 9; ++i) {
    EXPECT_TRUE(std::isfinite(y.value()(i))) << i;
    EXPECT_GE(y.value()(i), T(0)) << i;
    EXPECT_TRUE(std::isfinite(x.grad()(i))) << i;
    EXPECT_GE(x.grad()(i), T(0)) << i;
    EXPECT_LE(x.grad()(i), T(1)) << i;
  }
}

TEST(Softplus, StableAtPlusMinus1e4) {
  expect_stable_at_the_edges<float>();
  expect_stable_at_the_edges<double>();
}

template <class T>
void expect_nan_and_inf_propagate() {
  const T inf = std::numeric_limits<T>::infinity();
  // nan alone (the SIMD tail), and at a full batch's lane and in the tail of a longer tensor.
  for (std::size_t len : {1, 20, 37}) {
    xt::xarray<T> v = xt::zeros<T>({len});
    v(len - 1) = std::numeric_limits<T>::quiet_NaN();
    if (len > 1) v(1) = std::numeric_limits<T>::quiet_NaN();
    Tape<T> tape;
    auto x = tape.variable(v);
    auto y = softplus(x);
    tape.backward(y, xt::xarray<T>(xt::ones<T>({len})));
    for (std::size_t i = 0; i < len; ++i) {
      const bool nan_in = std::isnan(v(i));
      EXPECT_EQ(std::isnan(y.value()(i)), nan_in) << len << " " << i;
      EXPECT_EQ(std::isnan(x.grad()(i)), nan_in) << len << " " << i;
      if (!nan_in) {
        EXPECT_EQ(y.value()(i), T(std::log(2.0))) << len << " " << i;
        EXPECT_EQ(x.grad()(i), T(0.5)) << len << " " << i;
      }
    }
  }
  Tape<T> tape;
  auto x = tape.variable(xt::xarray<T>{-inf, inf});
  auto y = softplus(x);
  EXPECT_EQ(y.value()(0), T(0));
  EXPECT_EQ(y.value()(1), inf);
  tape.backward(y, xt::xarray<T>{T(1), T(1)});
  EXPECT_EQ(x.grad()(0), T(0));
  EXPECT_EQ(x.grad()(1), T(1));
}

TEST(Softplus, NanPropagatesAndInfinitiesAreExact) {
  expect_nan_and_inf_propagate<float>();
  expect_nan_and_inf_propagate<double>();
}

TEST(Softplus, DerivativeIsTheLibrarysSigmoid) {
  Tape<double> tape;
  xt::xarray<double> xv = xt::linspace<double>(-40.0, 40.0, 81);
  auto x = tape.variable(xv);
  tape.backward(softplus(x), xt::xarray<double>(xt::ones<double>({81})));
  auto s = sigmoid(tape.constant(xv));
  for (std::size_t i = 0; i < 81; ++i)
    EXPECT_NEAR(x.grad()(i), s.value()(i), 1e-16 * std::max(1e-300, s.value()(i)) + 1e-300)
        << xv(i);
}

TEST(Softplus, ResultsDoNotDependOnPositionOrTensorSize) {
  // The tail (a [1] tensor) and the whole batches compute the same function; up to 2 ulps,
  // as the compiler may contract a·b + c into an FMA differently in the two (kernels.hpp).
  xt::xarray<float> xv = xt::linspace<float>(-20.0f, 20.0f, 53);
  Tape<float> tape;
  auto all = softplus(tape.constant(xv));
  for (std::size_t i = 0; i < xv.size(); ++i) {
    const float one = softplus(tape.constant(xt::xarray<float>{xv(i)})).item();
    EXPECT_NEAR(one, all.data()[i], 2 * std::numeric_limits<float>::epsilon() * all.data()[i]) << i;
  }
}

TEST(Softplus, InvalidHandlesNameTheOp) {
  Tape<double> tape;
  auto x = tape.variable(1.0);
  tape.clear();
  std::string msg;
  try {
    softplus(x);
  } catch (const UsageError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("softplus: argument x"), std::string::npos) << msg;
  EXPECT_NE(msg.find("stale"), std::string::npos) << msg;
  EXPECT_THROW(softplus(Var<double>()), UsageError);
}
