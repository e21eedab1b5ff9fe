// Tests for ops/wengert/ops/pointwise.hpp: abs, sqrt, rsqrt, clamp, sin, cos, leaky_relu, elu,
// gelu, silu, maximum, minimum, where — through the shared op-test helper (values kept off the
// kinks), then each documented kink and domain edge: which subgradient, which error.
#include <wengert/ops/pointwise.hpp>

#include <wengert/ops/reduce.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include <xtensor/xtensor.hpp>

#include "nn_test_util.hpp"
#include "op_test.hpp"

using namespace wengert;
using wengert::testing::Domain;
using wengert::testing::op_test;
using wengert::testing::Values;
namespace shapes = wengert::testing::shapes;

namespace {

using Arr = xt::xarray<double>;

long double phi(long double x) { return 0.5L * std::erfc(-x / std::sqrt(2.0L)); }

// numpy.where(mask, a, b) by broadcasting all three to the output shape.
Arr where_ref(const xt::xarray<int>& m, const Arr& a, const Arr& b) {
  return Arr(xt::where(xt::not_equal(m, 0), a, b));
}

}  // namespace

TEST(Pointwise, OneTensorOpsThroughOpTest) {
  op_test<1>("abs", [](auto&& x) { return abs(x); })
      .domain(Domain{-3, 3, 0.05})
      .elementwise_reference([](double x) { return std::abs(x); })
      .run();
  op_test<1>("sqrt", [](auto&& x) { return sqrt(x); })
      .domain(Domain{0.1, 4})
      .elementwise_reference([](double x) { return std::sqrt(x); })
      .run();
  op_test<1>("rsqrt", [](auto&& x) { return rsqrt(x); })
      .domain(Domain{0.1, 4})
      .elementwise_reference([](double x) { return 1 / std::sqrt(x); })
      .forward_tolerance(1e-15, 1e-15)
      .run();
  // Values on both sides of both bounds, none within a finite-difference step of them.
  op_test<1>("clamp", [](auto&& x) { return clamp(x, -0.5, 1.25); })
      .values([](const wengert::testing::ShapeCase& c, std::mt19937_64& rng) {
        Values v;
        std::uniform_int_distribution<int> k(0, 3);
        for (const auto& d : c) {
          Arr a = Arr::from_shape(d);
          for (double& e : a) e = std::array<double, 4>{-2, -0.25, 1.0, 3}[std::size_t(k(rng))];
          v.push_back(a);
        }
        return v;
      })
      .elementwise_reference([](double x) { return std::clamp(x, -0.5, 1.25); })
      .run();
  op_test<1>("sin", [](auto&& x) { return sin(x); })
      .domain(Domain{-7, 7})
      .elementwise_reference([](double x) { return std::sin(x); })
      .run();
  op_test<1>("cos", [](auto&& x) { return cos(x); })
      .domain(Domain{-7, 7})
      .elementwise_reference([](double x) { return std::cos(x); })
      .run();
  op_test<1>("leaky_relu", [](auto&& x) { return leaky_relu(x, 0.2); })
      .domain(Domain{-3, 3, 0.05})
      .elementwise_reference([](double x) { return x > 0 ? x : 0.2 * x; })
      .run();
  op_test<1>("elu", [](auto&& x) { return elu(x, 0.7); })
      .domain(Domain{-4, 3, 0.05})
      .elementwise_reference([](double x) { return x > 0 ? x : 0.7 * std::expm1(x); })
      .run();
  op_test<1>("gelu", [](auto&& x) { return gelu(x); })
      .domain(Domain{-6, 6})
      .elementwise_reference([](double x) { return double(x * phi(x)); })
      .run();
  op_test<1>("silu", [](auto&& x) { return silu(x); })
      .domain(Domain{-8, 8})
      .elementwise_reference([](double x) { return double(x / (1 + std::exp(-(long double)x))); })
      .run();
}

TEST(Pointwise, MaximumMinimumWhereThroughOpTest) {
  op_test<2>("maximum", [](auto&& a, auto&& b) { return maximum(a, b); })
      .shapes(shapes::broadcast())
      .reference([](const Values& v) { return Arr(xt::maximum(v[0], v[1])); })
      .run();
  op_test<2>("minimum", [](auto&& a, auto&& b) { return minimum(a, b); })
      .shapes(shapes::broadcast())
      .reference([](const Values& v) { return Arr(xt::minimum(v[0], v[1])); })
      .run();
  // A mask [3] broadcast against a and b (a bool mask), and a [2,1] int64 mask. Qualified:
  // with an xtensor mask, argument-dependent lookup also finds xt::where.
  static const xt::xarray<bool> m3{true, false, true};
  op_test<2>("where", [](auto&& a, auto&& b) { return wengert::where(m3, a, b); })
      .shapes(shapes::fixed({{{3}, {3}}, {{2, 3}, {1}}, {{}, {4, 1, 3}}, {{0, 3}, {3}}}))
      .bad_shapes({{{2}, {3}}, {{4}, {4}}})
      .reference([](const Values& v) {
        return where_ref(xt::xarray<int>{1, 0, 1}, v[0], v[1]);
      })
      .run();
  static const xt::xtensor<std::int64_t, 2> m21{{0}, {5}};
  op_test<2>("where", [](auto&& a, auto&& b) { return wengert::where(m21, a, b); })
      .shapes(shapes::fixed({{{2, 3}, {2, 3}}, {{3}, {}}, {{2, 1}, {1, 2}}}))
      .bad_shapes({{{3, 3}, {3}}})
      .reference([](const Values& v) {
        return where_ref(xt::xarray<int>(xt::xtensor<int, 2>{{0}, {1}}), v[0], v[1]);
      })
      .run();
}

TEST(Pointwise, KinksUseTheDocumentedSubgradients) {
  Tape<double> tape;
  auto x = tape.variable(Arr{-1, 0, 2});
  auto grad_of = [&](Var<double> y) {
    tape.backward(sum(y));
    return Arr(x.grad());
  };
  EXPECT_EQ(grad_of(abs(x)), (Arr{-1, 0, 1}));                           // 0 at 0
  EXPECT_EQ(grad_of(leaky_relu(x, 0.25)), (Arr{0.25, 0.25, 1}));         // slope at 0
  EXPECT_EQ(grad_of(elu(x, 0.5)), (Arr{0.5 * std::exp(-1.0), 0.5, 1}));  // α at 0
  EXPECT_EQ(grad_of(clamp(x, 0, 2)), (Arr{0, 1, 1}));                    // both bounds included
  auto y = tape.variable(Arr{0, 3, 2});
  tape.backward(sum(maximum(x, y)));
  EXPECT_EQ(Arr(x.grad()), (Arr{0, 0, 0.5}));  // a tie (2, 2) splits in half
  EXPECT_EQ(Arr(y.grad()), (Arr{1, 1, 0.5}));
  tape.backward(sum(minimum(x, y)));
  EXPECT_EQ(Arr(x.grad()), (Arr{1, 1, 0.5}));
}

TEST(Pointwise, DomainEdgesAndErrors) {
  using nntest::message_of;
  Tape<double> tape;
  auto x = tape.variable(Arr{4, -0.5, 1});
  EXPECT_EQ(message_of<ValueError>([&] { sqrt(x); }),
            "sqrt: x[1] = -0.5 is negative; sqrt is defined for x >= 0 (x is [3])");
  EXPECT_EQ(message_of<ValueError>([&] { rsqrt(x); }),
            "rsqrt: x[1] = -0.5 is negative; rsqrt is defined for x >= 0 (x is [3])");
  EXPECT_EQ(message_of<ValueError>([&] { clamp(x, 1, 0); }),
            "clamp: lo = 1 and hi = 0: lo must not be above hi, nor either NaN (x is [3])");
  EXPECT_EQ(message_of<ValueError>([&] { leaky_relu(x, INFINITY); }),
            "leaky_relu: slope must be finite, got inf (x is [3])");
  EXPECT_EQ(message_of<ShapeError>([&] {
              maximum(x, tape.variable(Arr{1, 2}));
            }),
            "maximum: a is [3] but b is [2]: dimension 0 (3 vs 2) cannot be broadcast");
  EXPECT_EQ(message_of<ShapeError>([&] {
              wengert::where(xt::xarray<bool>{true, false}, x, tape.variable(Arr{1, 2, 3}));
            }),
            "where: mask is [2] but a and b broadcast to [3] (a is [3], b is [3]); the three must "
            "broadcast together");
  EXPECT_EQ(tape.size(), 3u);
  // sqrt and rsqrt at 0: +inf derivative, and rsqrt(0) = +inf.
  auto z = tape.variable(Arr{0.0});
  tape.backward(sum(sqrt(z)));
  EXPECT_EQ(z.grad()(0), INFINITY);
  EXPECT_EQ(rsqrt(z).value()(0), INFINITY);
  // gelu is the erf form: gelu(1) = Φ(1) = 0.8413447460685429, and exact far into the tails.
  auto g = gelu(tape.constant(Arr{1, -30, 30}));
  EXPECT_NEAR(g.value()(0), 0.8413447460685429, 2e-16);
  const double tail = -30 * 0.5 * std::erfc(30 / std::sqrt(2.0));  // −1.47e-196, not 0
  EXPECT_NEAR(g.value()(1), tail, 1e-12 * -tail);  // erfc amplifies its argument's rounding
  EXPECT_EQ(g.value()(2), 30);
}
