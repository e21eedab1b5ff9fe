// Tests for ops/wengert/ops/softmax.hpp: softmax and log_softmax along the last axis — forward
// in closed form, gradients by finite differences and in closed form, extreme logits, shift
// invariance, constants, fan-out, shape errors, float32, replay without allocation.
#include <wengert/ops/softmax.hpp>

#include <wengert/gradcheck.hpp>
#include <wengert/ops/matmul.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "alloc_counter.hpp"
#include "nn_test_util.hpp"
#include "op_test.hpp"

using namespace wengert;
using nntest::all_close;
using nntest::random_array;

namespace {

// Reference softmax of each row of length c, in long double.
xt::xarray<double> ref_softmax(const xt::xarray<double>& x) {
  xt::xarray<double> y = x;
  const std::size_t c = x.shape().back(), rows = x.size() / c;
  for (std::size_t r = 0; r < rows; ++r) {
    long double m = -INFINITY, s = 0;
    for (std::size_t j = 0; j < c; ++j) m = std::max<long double>(m, x.data()[r * c + j]);
    for (std::size_t j = 0; j < c; ++j) s += std::exp((long double)x.data()[r * c + j] - m);
    for (std::size_t j = 0; j < c; ++j)
      y.data()[r * c + j] = double(std::exp((long double)x.data()[r * c + j] - m) / s);
  }
  return y;
}

xt::xarray<double> ref_log_softmax(const xt::xarray<double>& x) {
  xt::xarray<double> y = x;
  const std::size_t c = x.shape().back(), rows = x.size() / c;
  for (std::size_t r = 0; r < rows; ++r) {
    long double m = -INFINITY, s = 0;
    for (std::size_t j = 0; j < c; ++j) m = std::max<long double>(m, x.data()[r * c + j]);
    for (std::size_t j = 0; j < c; ++j) s += std::exp((long double)x.data()[r * c + j] - m);
    for (std::size_t j = 0; j < c; ++j)
      y.data()[r * c + j] = double(((long double)x.data()[r * c + j] - m) - std::log(s));
  }
  return y;
}

// Closed-form VJPs, per row: softmax: y∘(G − ⟨G,y⟩); log_softmax: G − softmax·ΣG.
xt::xarray<double> ref_softmax_vjp(const xt::xarray<double>& x, const xt::xarray<double>& G) {
  xt::xarray<double> y = ref_softmax(x), d = G;
  const std::size_t c = x.shape().back(), rows = x.size() / c;
  for (std::size_t r = 0; r < rows; ++r) {
    double gy = 0;
    for (std::size_t j = 0; j < c; ++j) gy += G.data()[r * c + j] * y.data()[r * c + j];
    for (std::size_t j = 0; j < c; ++j)
      d.data()[r * c + j] = y.data()[r * c + j] * (G.data()[r * c + j] - gy);
  }
  return d;
}

xt::xarray<double> ref_log_softmax_vjp(const xt::xarray<double>& x, const xt::xarray<double>& G) {
  xt::xarray<double> p = ref_softmax(x), d = G;
  const std::size_t c = x.shape().back(), rows = x.size() / c;
  for (std::size_t r = 0; r < rows; ++r) {
    double gs = 0;
    for (std::size_t j = 0; j < c; ++j) gs += G.data()[r * c + j];
    for (std::size_t j = 0; j < c; ++j)
      d.data()[r * c + j] = G.data()[r * c + j] - p.data()[r * c + j] * gs;
  }
  return d;
}

const std::vector<std::vector<std::size_t>> kShapes = {{1, 1},    {1, 7}, {6, 1}, {4, 5},
                                                       {2, 3, 4}, {9},    {3, 33}};

}  // namespace

TEST(Softmax, ForwardMatchesClosedForm) {
  Tape<double> tape;
  auto y = softmax(tape.constant(xt::xarray<double>{{1, 2, 3}, {0, 0, 0}}));
  const double s = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_TRUE(
      all_close(y.value(),
                xt::xarray<double>{{std::exp(1.0) / s, std::exp(2.0) / s, std::exp(3.0) / s},
                                   {1.0 / 3, 1.0 / 3, 1.0 / 3}},
                1e-15, 0));
  auto l = log_softmax(tape.constant(xt::xarray<double>{1, 2, 3}));
  EXPECT_TRUE(all_close(
      l.value(), xt::xarray<double>{1 - std::log(s), 2 - std::log(s), 3 - std::log(s)}, 1e-15, 0));
  EXPECT_STREQ(y.op_name(), "softmax");
  EXPECT_STREQ(l.op_name(), "log_softmax");
}

TEST(Softmax, ForwardOnRandomShapesAgainstLongDoubleReference) {
  std::mt19937_64 rng(21);
  for (const auto& s : kShapes) {
    auto X = random_array(s, rng, -5, 5);
    Tape<double> tape;
    auto x = tape.constant(X);
    EXPECT_TRUE(all_close(softmax(x).value(), ref_softmax(X), 1e-14, 1e-300)) << Shape(s).str();
    EXPECT_TRUE(all_close(log_softmax(x).value(), ref_log_softmax(X), 1e-14, 1e-14))
        << Shape(s).str();
  }
}

TEST(Softmax, GradcheckOnRandomShapes) {
  std::mt19937_64 rng(22);
  for (const auto& s : kShapes) {
    auto X = random_array(s, rng, -3, 3);
    auto r1 = gradcheck([](const std::vector<Var<double>>& v) { return softmax(v[0]); }, {X});
    EXPECT_TRUE(r1.ok) << "softmax " << Shape(s).str() << ": " << r1.message;
    auto r2 = gradcheck([](const std::vector<Var<double>>& v) { return log_softmax(v[0]); }, {X});
    EXPECT_TRUE(r2.ok) << "log_softmax " << Shape(s).str() << ": " << r2.message;
  }
}

TEST(Softmax, SeededBackwardMatchesClosedForm) {
  std::mt19937_64 rng(23);
  for (const auto& s : kShapes) {
    auto X = random_array(s, rng, -4, 4), G = random_array(s, rng);
    Tape<double> tape;
    auto x = tape.variable(X);
    tape.backward(softmax(x), G);
    EXPECT_TRUE(all_close(x.grad(), ref_softmax_vjp(X, G), 1e-12, 1e-15)) << Shape(s).str();
    tape.backward(log_softmax(x), G);
    EXPECT_TRUE(all_close(x.grad(), ref_log_softmax_vjp(X, G), 1e-12, 1e-15)) << Shape(s).str();
  }
}

template <class T>
class SoftmaxTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SoftmaxTyped, Scalars);

TYPED_TEST(SoftmaxTyped, ExtremeLogitsGiveFiniteExactResults) {
  using T = TypeParam;
  Tape<T> tape;
  // One huge logit per row, ±1e4 spreads, and a row of equal huge values.
  xt::xarray<double> X{{1e4, 0, -1e4}, {-1e4, -1e4, 1e4}, {1e4, 1e4, 1e4}};
  auto x = tape.variable(nntest::cast<T>(X));
  auto y = softmax(x);
  auto l = log_softmax(x);
  const xt::xarray<double> want_y{{1, 0, 0}, {0, 0, 1}, {1.0 / 3, 1.0 / 3, 1.0 / 3}};
  const xt::xarray<double> want_l{
      {0, -1e4, -2e4}, {-2e4, -2e4, 0}, {-std::log(3.0), -std::log(3.0), -std::log(3.0)}};
  EXPECT_TRUE(all_close(y.value(), want_y, 1e-6, 0));
  EXPECT_TRUE(all_close(l.value(), want_l, 1e-6, 0));
  std::mt19937_64 rng(24);
  auto G = random_array({3, 3}, rng);
  tape.backward(y, nntest::cast<T>(G));
  xt::xarray<double> gy = x.grad();
  for (double v : gy) EXPECT_TRUE(std::isfinite(v));
  EXPECT_TRUE(all_close(gy, ref_softmax_vjp(X, G), 1e-5, 1e-6));
  tape.backward(l, nntest::cast<T>(G));
  xt::xarray<double> gl = x.grad();
  for (double v : gl) EXPECT_TRUE(std::isfinite(v));
  EXPECT_TRUE(all_close(gl, ref_log_softmax_vjp(X, G), 1e-5, 1e-6));
}

TYPED_TEST(SoftmaxTyped, InvariantToAShiftOfTheRow) {
  using T = TypeParam;
  std::mt19937_64 rng(25);
  auto X = random_array({4, 19}, rng, -2, 2);
  Tape<T> tape;
  auto a = softmax(tape.constant(nntest::cast<T>(X)));
  auto b = softmax(tape.constant(nntest::cast<T>(xt::xarray<double>(X + 1000.0))));
  // x + 1000 is rounded in float, so allow the rounding of the input.
  EXPECT_TRUE(all_close(b.value(), a.value(), std::is_same_v<T, float> ? 1e-4 : 1e-11, 1e-12));
}

TEST(Softmax, Float32MatchesDouble) {
  std::mt19937_64 rng(26);
  auto X = random_array({7, 37}, rng, -6, 6), G = random_array({7, 37}, rng);
  Tape<float> tape;
  auto x = tape.variable(nntest::cast<float>(X));
  auto y = softmax(x);
  EXPECT_TRUE(all_close(y.value(), ref_softmax(X), 1e-5, 1e-7));
  tape.backward(y, nntest::cast<float>(G));
  EXPECT_TRUE(all_close(x.grad(), ref_softmax_vjp(X, G), 1e-4, 1e-6));
  auto l = log_softmax(x);
  EXPECT_TRUE(all_close(l.value(), ref_log_softmax(X), 1e-5, 1e-5));
  tape.backward(l, nntest::cast<float>(G));
  EXPECT_TRUE(all_close(x.grad(), ref_log_softmax_vjp(X, G), 1e-4, 1e-5));
}

TEST(Softmax, ConstantInputStaysGradientFree) {
  Tape<double> tape;
  auto x = tape.constant(xt::xarray<double>{{1, 2}, {3, 4}});
  EXPECT_FALSE(softmax(x).requires_grad());
  EXPECT_FALSE(log_softmax(x).requires_grad());
  EXPECT_THROW(tape.backward(softmax(x), xt::xarray<double>{{1, 0}, {0, 1}}), UsageError);
}

TEST(Softmax, FanOut) {
  // y = softmax(x) feeds both operands of y·yᵀ, and x feeds softmax and log_softmax.
  std::mt19937_64 rng(27);
  auto r = gradcheck(
      [](const std::vector<Var<double>>& v) {
        auto y = softmax(v[0]);
        return matmul(matmul_nt(y, y), log_softmax(v[0]));
      },
      {random_array({3, 4}, rng)});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Softmax, ShapeErrorForAScalar) {
  Tape<double> tape;
  auto s = tape.variable(1.0);
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { softmax(s); }),
            "softmax: x is [] (a scalar): softmax normalises along the last axis, so x needs at "
            "least one");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { log_softmax(s); }),
            "log_softmax: x is [] (a scalar): log_softmax normalises along the last axis, so x "
            "needs at least one");
}

TEST(Softmax, ReplayAllocatesNothing) {
  std::mt19937_64 rng(28);
  const xt::xarray<float> X = nntest::cast<float>(random_array({8, 10}, rng));
  const xt::xarray<float> G = nntest::cast<float>(random_array({8, 10}, rng));
  Parameter<float> p(X);
  Tape<float> tape;
  auto step = [&] {
    tape.clear();
    auto x = tape.param(p);
    auto y = log_softmax(softmax(x));
    tape.backward(y, G.data(), nullptr, 0);
    return y.data()[0];
  };
  const float first = step();
  wengert::testing::AllocCounter counter;
  float again = 0;
  for (int i = 0; i < 10; ++i) again = step();
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_EQ(first, again);
}

// ---- the shared op-test helper (tests/support/op_test.hpp) --------------------------------------

TEST(Softmax, BothThroughOpTest) {
  using wengert::testing::Values;
  // Rank ≥ 1 (a scalar is the wrong shape), empty rows and empty row counts included.
  auto rows_of = [](auto ref) {
    return [ref](const Values& v) { return v[0].size() ? ref(v[0]) : v[0]; };
  };
  wengert::testing::op_test<1>("softmax", [](auto&&... v) { return softmax(v...); })
      .shapes(wengert::testing::shapes::same(1, 1))
      .domain({-4.0, 4.0})
      .reference(rows_of(ref_softmax))
      .run();
  wengert::testing::op_test<1>("log_softmax", [](auto&&... v) { return log_softmax(v...); })
      .shapes(wengert::testing::shapes::same(1, 1))
      .domain({-4.0, 4.0})
      .reference(rows_of(ref_log_softmax))
      .run();
}

// ---- along any axis
// -------------------------------------------------------------------------------

namespace {

// f (softmax or log_softmax of a row) applied to every slice along `axis`.
xt::xarray<double> along(const xt::xarray<double>& x, int axis,
                         xt::xarray<double> (*f)(const xt::xarray<double>&)) {
  const std::size_t r = x.dimension(), ax = std::size_t(axis < 0 ? axis + int(r) : axis);
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < ax; ++d) outer *= x.shape(d);
  for (std::size_t d = ax + 1; d < r; ++d) inner *= x.shape(d);
  const std::size_t n = x.shape(ax);
  xt::xarray<double> y = x, row = xt::xarray<double>::from_shape({n});
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t i = 0; i < inner; ++i) {
      if (n == 0) continue;
      for (std::size_t k = 0; k < n; ++k) row(k) = x.data()[(o * n + k) * inner + i];
      const xt::xarray<double> s = f(row);
      for (std::size_t k = 0; k < n; ++k) y.data()[(o * n + k) * inner + i] = s(k);
    }
  return y;
}

}  // namespace

TEST(Softmax, AlongAnyAxisThroughOpTest) {
  using wengert::testing::Values;
  const std::vector<wengert::testing::ShapeCase> cases = {{{2, 3}},     {{3, 4, 2}}, {{1, 5, 1}},
                                                          {{2, 17, 3}}, {{0, 3, 2}}, {{2, 0, 3}}};
  for (int axis : {1, -2}) {
    wengert::testing::op_test<1>("softmax", [=](auto&& x) { return softmax(x, axis); })
        .shapes(wengert::testing::shapes::fixed(cases))
        .bad_shapes({{{}}, {{3}}})
        .domain({-4.0, 4.0})
        .reference([=](const Values& v) { return along(v[0], axis, ref_softmax); })
        .run();
    wengert::testing::op_test<1>("log_softmax", [=](auto&& x) { return log_softmax(x, axis); })
        .shapes(wengert::testing::shapes::fixed(cases))
        .bad_shapes({{{}}, {{3}}})
        .domain({-4.0, 4.0})
        .reference([=](const Values& v) { return along(v[0], axis, ref_log_softmax); })
        .run();
  }
  // The last axis, named either way, is the row forms: the same values.
  Tape<double> tape;
  std::mt19937_64 rng(29);
  auto x = tape.constant(random_array({3, 4}, rng));
  EXPECT_EQ(xt::xarray<double>(softmax(x, -1).value()), xt::xarray<double>(softmax(x).value()));
  EXPECT_EQ(xt::xarray<double>(log_softmax(x, 1).value()),
            xt::xarray<double>(log_softmax(x).value()));
  // Extreme values along axis 0: exact, finite.
  auto big = softmax(tape.constant(xt::xarray<double>{{1e4, 0}, {0, 1e4}, {-1e4, 0}}), 0);
  EXPECT_EQ(xt::xarray<double>(big.value()), (xt::xarray<double>{{1, 0}, {0, 1}, {0, 0}}));
}
