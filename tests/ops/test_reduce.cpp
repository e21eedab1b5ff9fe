// Tests for ops/wengert/ops/reduce.hpp: sum and mean, whole-tensor and along an axis.
//
// Forward values against xtensor's reducers; gradients in closed form (ones, 1/n, spread along
// the axis) and through the public gradcheck for every axis (positive and negative) of seeded
// random shapes, with and without keepdims; errors, constants, fan-out, float32, rewind.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xio.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xreducer.hpp>

#include "alloc_counter.hpp"
#include "op_test.hpp"

using namespace wengert;

namespace {

using Dims = std::vector<std::size_t>;

xt::xarray<double> randn(const Dims& shape, std::mt19937_64& rng) {
  xt::xarray<double> a = xt::xarray<double>::from_shape(shape);
  std::normal_distribution<double> N(0.0, 1.0);
  for (auto& v : a) v = N(rng);
  return a;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

// Shapes with 1×n, n×1, rank 3 and long rows (several SIMD batches plus a tail).
const std::vector<Dims>& shapes() {
  static const std::vector<Dims> s = {{1},    {5},       {1, 6},    {6, 1},
                                      {3, 4}, {2, 3, 4}, {2, 1, 3}, {3, 37}};
  return s;
}

Dims reduced(const Dims& d, std::size_t ax, bool keep) {
  Dims r;
  for (std::size_t i = 0; i < d.size(); ++i)
    if (i != ax)
      r.push_back(d[i]);
    else if (keep)
      r.push_back(1);
  return r;
}

}  // namespace

TEST(Reduce, WholeTensorForwardAndBackward) {
  Tape<double> tape;
  xt::xarray<double> xv{{1.0, 2.0, 3.5}, {-4.0, 0.5, 8.0}};
  auto x = tape.variable(xv);
  auto s = sum(x);
  auto m = mean(x);
  EXPECT_EQ(s.shape(), Shape{});
  EXPECT_EQ(m.shape(), Shape{});
  EXPECT_EQ(s.item(), 11.0);
  EXPECT_EQ(m.item(), 11.0 / 6.0);
  EXPECT_STREQ(s.op_name(), "sum");
  EXPECT_STREQ(m.op_name(), "mean");
  tape.backward(s);
  EXPECT_EQ(xt::xarray<double>(x.grad()), xt::ones_like(xv));
  tape.backward(m);
  EXPECT_EQ(xt::xarray<double>(x.grad()), xt::ones_like(xv) / 6.0);
  // Scalars and long arrays (several SIMD batches plus a tail) against xtensor.
  std::mt19937_64 rng(21);
  for (const Dims& d : {Dims{}, Dims{1}, Dims{1000}, Dims{7, 13}}) {
    xt::xarray<double> v = randn(d, rng);
    auto c = tape.constant(v);
    EXPECT_NEAR(sum(c).item(), xt::sum(v)(), 1e-12);
    EXPECT_NEAR(mean(c).item(), xt::mean(v)(), 1e-14);
  }
}

TEST(Reduce, AxisForwardMatchesXtensorForEveryAxisAndKeepdims) {
  std::mt19937_64 rng(22);
  for (const Dims& d : shapes()) {
    xt::xarray<double> v = randn(d, rng);
    Tape<double> tape;
    auto x = tape.constant(v);
    const int r = static_cast<int>(d.size());
    for (int axis = -r; axis < r; ++axis) {
      const std::size_t ax = static_cast<std::size_t>(axis < 0 ? axis + r : axis);
      for (bool keep : {false, true}) {
        xt::xarray<double> es = xt::sum(v, {ax}), em = xt::mean(v, {ax});
        es.reshape(reduced(d, ax, keep));
        em.reshape(reduced(d, ax, keep));
        auto s = sum(x, axis, keep);
        auto m = mean(x, axis, keep);
        const std::string what =
            Shape(d).str() + " axis " + std::to_string(axis) + (keep ? " keepdims" : "");
        ASSERT_EQ(s.shape(), Shape(reduced(d, ax, keep))) << what;
        ASSERT_EQ(m.shape(), Shape(reduced(d, ax, keep))) << what;
        EXPECT_TRUE(xt::allclose(s.value(), es, 1e-14, 1e-14)) << what << s.value() << es;
        EXPECT_TRUE(xt::allclose(m.value(), em, 1e-14, 1e-14)) << what << m.value() << em;
      }
    }
  }
}

TEST(Reduce, AxisBackwardSpreadsTheAdjointAlongTheAxis) {
  Tape<double> tape;
  auto x = tape.variable(xt::zeros<double>({2, 3, 4}));
  xt::xarray<double> g{{1.0, 2.0, 3.0, 4.0}, {5.0, 6.0, 7.0, 8.0}};  // [2,4]: axis 1 removed
  tape.backward(sum(x, 1), g);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t k = 0; k < 3; ++k)
      for (std::size_t j = 0; j < 4; ++j) EXPECT_EQ(x.grad()(i, k, j), g(i, j));
  tape.backward(mean(x, -1, true), xt::xarray<double>(xt::ones<double>({2, 3, 1})));
  EXPECT_EQ(xt::xarray<double>(x.grad()), xt::xarray<double>(xt::ones<double>({2, 3, 4}) / 4.0));
}

TEST(Reduce, GradcheckEveryAxis) {
  std::mt19937_64 rng(23);
  for (const Dims& d : shapes()) {
    const int r = static_cast<int>(d.size());
    for (int axis = -r; axis < r; ++axis)
      for (bool keep : {false, true}) {
        const std::string what = Shape(d).str() + " axis " + std::to_string(axis);
        auto rs =
            gradcheck([=](const auto& in) { return sum(in[0], axis, keep); }, {randn(d, rng)});
        EXPECT_TRUE(rs.ok) << "sum " << what << ": " << rs.message;
        auto rm =
            gradcheck([=](const auto& in) { return mean(in[0], axis, keep); }, {randn(d, rng)});
        EXPECT_TRUE(rm.ok) << "mean " << what << ": " << rm.message;
      }
    for (auto f : {+[](const std::vector<Var<double>>& in) { return sum(in[0]); },
                   +[](const std::vector<Var<double>>& in) { return mean(in[0]); }}) {
      auto res = gradcheck(f, {randn(d, rng)});
      EXPECT_TRUE(res.ok) << Shape(d).str() << ": " << res.message;
    }
  }
  auto res = gradcheck([](const auto& in) { return mean(in[0]); }, {randn({}, rng)});
  EXPECT_TRUE(res.ok) << res.message;
}

TEST(Reduce, BadAxisNamesOpArgumentAndShape) {
  Tape<double> tape;
  auto x = tape.variable(xt::zeros<double>({2, 3}));
  for (int axis : {2, -3, 100}) {
    std::string msg = error_of([&] { sum(x, axis); });
    EXPECT_NE(msg.find("sum: axis " + std::to_string(axis)), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2,3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("-2 to 1"), std::string::npos) << msg;
    EXPECT_THROW(mean(x, axis, true), ShapeError);
  }
  std::string msg = error_of([&] { mean(tape.variable(1.0), 0); });
  EXPECT_NE(msg.find("mean: axis 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[]"), std::string::npos) << msg;
}

TEST(Reduce, EmptyTensors) {
  Tape<double> tape;
  auto e = tape.variable(xt::zeros<double>({0, 3}));
  EXPECT_EQ(sum(e).item(), 0.0);
  EXPECT_EQ(sum(e, 0).shape(), Shape{3});
  EXPECT_EQ(sum(e, 0).value()(2), 0.0);
  EXPECT_EQ(mean(e, 1).shape(), Shape{0});  // no output elements: nothing undefined
  std::string msg = error_of([&] { mean(e); });
  EXPECT_NE(msg.find("mean"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[0,3]"), std::string::npos) << msg;
  EXPECT_THROW(mean(e), ValueError);
  EXPECT_THROW(mean(e, 0), ValueError);
}

TEST(Reduce, ConstantsAndFanOut) {
  Tape<double> tape;
  auto c = tape.constant(xt::xarray<double>{1.0, 2.0, 3.0});
  EXPECT_FALSE(sum(c).requires_grad());
  EXPECT_FALSE(mean(c, 0).requires_grad());
  // y = sum(x)·x − mean(x): ∂y_j/∂x_i = δ_ij·sum + x_j − 1/n; seeded with ones:
  // ∂/∂x_i = sum + Σ_j x_j − 1 = 2·sum − 1.
  auto x = tape.variable(xt::xarray<double>{1.0, 2.0, 4.0});
  auto y = sum(x) * x - mean(x);
  tape.backward(y, xt::xarray<double>{1.0, 1.0, 1.0});
  EXPECT_EQ(xt::xarray<double>(x.grad()), (xt::xarray<double>{13.0, 13.0, 13.0}));
  EXPECT_THROW(c.grad(), UsageError);
  std::mt19937_64 rng(24);
  auto r = gradcheck(
      [](const auto& in) { return mean(in[0], 0, true) * sum(in[0], -1, true) + sum(in[0]); },
      {randn({3, 4}, rng)});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Reduce, Float32MatchesFloat64) {
  std::mt19937_64 rng(25);
  xt::xarray<double> v = randn({5, 33}, rng);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    Tape<T> tape;
    auto x = tape.variable(xt::xarray<T>(xt::cast<T>(v)));
    // [5,1]·[1,33] → [5,33], every reduction form once.
    auto z = sum(sum(x, 1, true) * mean(x, 0, true)) + mean(x) * sum(sum(x, -2)) + sum(mean(x, -1));
    tape.backward(z);
    return std::vector<xt::xarray<double>>{xt::cast<double>(z.value()), xt::cast<double>(x.grad())};
  };
  auto f = run(float{});
  auto d = run(double{});
  for (std::size_t k = 0; k < 2; ++k)
    EXPECT_TRUE(xt::allclose(f[k], d[k], 1e-5, 1e-5)) << f[k] << "\n" << d[k];
}

TEST(Reduce, RewoundReplayAllocatesNothing) {
  Tape<float> tape;
  Parameter<float> w(xt::xarray<float>(xt::ones<float>({4, 3}) * 0.5f));
  xt::xarray<float> input = xt::cast<float>(xt::linspace<double>(-1.0, 1.0, 12));
  input.reshape({4, 3});
  auto step = [&] {
    tape.clear();
    auto x = tape.constant_view(input.data(), Shape{4, 3}) * tape.param(w);
    auto y = mean(sum(x, 0) * mean(x, -2, false)) + sum(mean(x, 1, true)) + sum(x, 1, true) * 2.0f;
    tape.backward(sum(y));
    return sum(y).item();
  };
  const float first = step();
  const std::size_t cap = tape.arena_capacity();
  wengert::testing::AllocCounter counter;
  float again = 0;
  for (int i = 0; i < 50; ++i) again = step();
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_EQ(tape.arena_capacity(), cap);
  EXPECT_EQ(first, again);
}

// ---- the shared op-test helper (tests/support/op_test.hpp) --------------------------------------

namespace {

// Sum or mean of x along `axis` (or of everything when axis is absent), by plain loops over
// x viewed as [outer, n, inner].
xt::xarray<double> ref_reduce(const xt::xarray<double>& x, bool mean, bool whole, int axis = 0,
                              bool keepdims = false) {
  if (whole) {
    double s = 0;
    for (double v : x) s += v;
    xt::xarray<double> r = xt::xarray<double>::from_shape(Dims{});
    r() = mean ? s / double(x.size()) : s;
    return r;
  }
  const Dims d(x.shape().begin(), x.shape().end());
  const std::size_t ax = axis < 0 ? std::size_t(axis + int(d.size())) : std::size_t(axis);
  std::size_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < ax; ++i) outer *= d[i];
  for (std::size_t i = ax + 1; i < d.size(); ++i) inner *= d[i];
  const std::size_t n = d[ax];
  xt::xarray<double> r = xt::xarray<double>::from_shape(reduced(d, ax, keepdims));
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t i = 0; i < inner; ++i) {
      double s = 0;
      for (std::size_t k = 0; k < n; ++k) s += x.data()[(o * n + k) * inner + i];
      r.data()[o * inner + i] = mean ? s / double(n) : s;
    }
  return r;
}

}  // namespace

TEST(Reduce, WholeTensorThroughOpTest) {
  using wengert::testing::op_test;
  using wengert::testing::Values;
  op_test<1>("sum", [](auto&& x) {
    return sum(x);
  }).reference([](const Values& v) {
      return ref_reduce(v[0], false, true);
    }).run();
  // The mean of nothing is a ValueError: no empty shapes.
  op_test<1>("mean", [](auto&& x) { return mean(x); })
      .shapes(wengert::testing::shapes::same(1, 0, 4, false))
      .reference([](const Values& v) { return ref_reduce(v[0], true, true); })
      .run();
}

TEST(Reduce, AxisFormsThroughOpTest) {
  using wengert::testing::op_test;
  using wengert::testing::Values;
  for (int axis : {0, 1, 2, -1, -2})
    for (bool keep : {false, true})
      for (bool is_mean : {false, true}) {
        // Needs rank > axis (axis ≥ 0) or rank ≥ −axis; a lower rank is the wrong shape. A mean
        // along an empty axis is a ValueError: no empty shapes for mean.
        const std::size_t min_rank = axis >= 0 ? std::size_t(axis) + 1 : std::size_t(-axis);
        const std::string name = std::string(is_mean ? "mean" : "sum") + "(axis " +
                                 std::to_string(axis) + (keep ? ", keepdims)" : ")");
        auto op = [axis, keep, is_mean](auto&& x) {
          return is_mean ? mean(x, axis, keep) : sum(x, axis, keep);
        };
        op_test<1>(name, op)
            .shapes(wengert::testing::shapes::same(1, min_rank, 4, !is_mean))
            .reference(
                [=](const Values& v) { return ref_reduce(v[0], is_mean, false, axis, keep); })
            .run();
      }
}
