// Seed 002 (a worked backpropagation example): ŷ = w1·x² + w2·x + b, r = ŷ − y, loss = r²,
// at x = 1, y = 2, w1 = 1, w2 = 2, b = 2. Then ŷ = 5, loss = 9, and
//   ∂loss/∂w1 = 2r·x² = 6,  ∂loss/∂w2 = 2r·x = 6,  ∂loss/∂b = 2r = 6,
// all exact in floating point, so they are compared with EXPECT_EQ.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

using namespace wengert;

namespace {

template <class T>
class Seed002 : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Seed002, Scalars);

}  // namespace

TYPED_TEST(Seed002, SeparateParametersWithOperators) {
  using T = TypeParam;
  Parameter<T> w1(xt::xarray<T>{1}), w2(xt::xarray<T>{2}), b(xt::xarray<T>{2});
  Tape<T> tape;
  auto x = tape.constant(T(1)), y = tape.constant(T(2));
  auto yhat = tape.param(w1) * square(x) + tape.param(w2) * x + tape.param(b);
  auto loss = square(yhat - y);
  tape.backward(loss);
  EXPECT_EQ(yhat.item(), T(5));
  EXPECT_EQ(loss.item(), T(9));
  EXPECT_EQ(w1.grad()(0), T(6));
  EXPECT_EQ(w2.grad()(0), T(6));
  EXPECT_EQ(b.grad()(0), T(6));
}

TYPED_TEST(Seed002, ParameterVectorAsInTheTorchVersion) {
  // w = [w1, w2] as one Parameter, picked apart with masks and sums; x² via pow.
  using T = TypeParam;
  Parameter<T> w(xt::xarray<T>{1, 2}), b(xt::xarray<T>{2});
  Tape<T> tape;
  auto wv = tape.param(w);
  auto x = tape.constant(T(1)), y = tape.constant(T(2));
  auto w1 = sum(wv * tape.constant(xt::xarray<T>{1, 0}));
  auto w2 = sum(wv * tape.constant(xt::xarray<T>{0, 1}));
  auto yhat = add(add(mul(w1, pow(x, T(2))), mul(w2, x)), sum(tape.param(b)));
  auto loss = pow(sub(yhat, y), T(2));
  tape.backward(loss);
  EXPECT_EQ(loss.item(), T(9));
  EXPECT_EQ(w.grad()(0), T(6));
  EXPECT_EQ(w.grad()(1), T(6));
  EXPECT_EQ(b.grad()(0), T(6));
}

TYPED_TEST(Seed002, GradientsMatchTheClosedFormsAtOtherPoints) {
  // The seed's formulas, ∂loss/∂(w1, w2, b) = 2r·(x², x, 1), at a few other points, and a
  // second step accumulating into the parameters until zero_grad().
  using T = TypeParam;
  for (T xv : {T(-1.5), T(0.5), T(3)}) {
    Parameter<T> w1(xt::xarray<T>{T(0.5)}), w2(xt::xarray<T>{T(-1)}), b(xt::xarray<T>{T(0.25)});
    const T yv = T(2);
    const T r = w1.data()[0] * xv * xv + w2.data()[0] * xv + b.data()[0] - yv;
    for (int step = 1; step <= 2; ++step) {
      Tape<T> tape;
      auto x = tape.constant(xv);
      auto loss = square(tape.param(w1) * square(x) + tape.param(w2) * x + tape.param(b) - yv);
      tape.backward(loss);
      EXPECT_NEAR(loss.item(), r * r, T(1e-5) * (1 + r * r));
      EXPECT_NEAR(w1.grad()(0), step * 2 * r * xv * xv, T(1e-5) * (1 + std::abs(r * xv * xv)));
      EXPECT_NEAR(w2.grad()(0), step * 2 * r * xv, T(1e-5) * (1 + std::abs(r * xv)));
      EXPECT_NEAR(b.grad()(0), step * 2 * r, T(1e-5) * (1 + std::abs(r)));
    }
  }
}
