// Tests for ops/wengert/ops/reduce_axis.hpp: max, min (axis and whole tensor, keepdims, negative
// axes), argmax, argmin, logsumexp, var, norm — through the shared op-test helper, then the tie
// rule, NaN, the edges (empty axes, ±1e4 logits, zero slices) and the messages.
#include <wengert/ops/reduce_axis.hpp>

#include <wengert/ops/elementwise.hpp>
#include <wengert/ops/reduce.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "nn_test_util.hpp"
#include "op_test.hpp"

using namespace wengert;
using wengert::testing::op_test;
using wengert::testing::Values;
namespace shapes = wengert::testing::shapes;

namespace {

using Arr = xt::xarray<double>;

// f over each slice along `axis` (the whole tensor when axis < 0 and `all`), in long double:
// the output keeps the axis with size 1 when keepdims.
Arr reduce_ref(const Arr& x, int axis, bool keepdims,
               const std::function<long double(const std::vector<long double>&)>& f) {
  const std::size_t r = x.dimension();
  const std::size_t ax = std::size_t(axis < 0 ? axis + int(r) : axis);
  std::size_t outer = 1, inner = 1;
  std::vector<std::size_t> s;
  for (std::size_t d = 0; d < r; ++d) {
    if (d < ax) outer *= x.shape(d);
    if (d > ax) inner *= x.shape(d);
    if (d != ax)
      s.push_back(x.shape(d));
    else if (keepdims)
      s.push_back(1);
  }
  const std::size_t n = x.shape(ax);
  Arr y = Arr::from_shape(s);
  std::vector<long double> slice(n);
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t i = 0; i < inner; ++i) {
      for (std::size_t k = 0; k < n; ++k) slice[k] = x.data()[(o * n + k) * inner + i];
      y.data()[o * inner + i] = double(f(slice));
    }
  return y;
}

Arr all_ref(const Arr& x, const std::function<long double(const std::vector<long double>&)>& f) {
  std::vector<long double> v(x.begin(), x.end());
  return Arr(double(f(v)));
}

long double max_of(const std::vector<long double>& v) {
  long double m = v[0];
  for (long double e : v) m = std::max(m, e);
  return m;
}
long double min_of(const std::vector<long double>& v) {
  long double m = v[0];
  for (long double e : v) m = std::min(m, e);
  return m;
}
long double lse_of(const std::vector<long double>& v) {
  if (v.empty()) return -INFINITY;
  const long double m = max_of(v);
  long double s = 0;
  for (long double e : v) s += std::exp(e - m);
  return m + std::log(s);
}
long double var_of(const std::vector<long double>& v, int ddof) {
  long double mu = 0, s = 0;
  for (long double e : v) mu += e;
  mu /= v.size();
  for (long double e : v) s += (e - mu) * (e - mu);
  return s / (v.size() - ddof);
}
long double norm_of(const std::vector<long double>& v) {
  long double s = 0;
  for (long double e : v) s += e * e;
  return std::sqrt(s);
}

// Distinct values (no ties, kinks a finite difference cannot cross): a shuffled grid.
Values distinct(const wengert::testing::ShapeCase& c, std::mt19937_64& rng) {
  Values v;
  for (const auto& dims : c) {
    Arr a = Arr::from_shape(dims);
    for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = -2.0 + 0.0625 * double(i);
    std::shuffle(a.begin(), a.end(), rng);
    v.push_back(a);
  }
  return v;
}

const std::vector<wengert::testing::ShapeCase> kAxisCases = {{{2, 3}}, {{4}},       {{3, 1, 5}},
                                                             {{1, 7}}, {{2, 3, 4}}, {{17, 2}}};

}  // namespace

TEST(ReduceAxis, MaxAndMinThroughOpTest) {
  for (int axis : {0, -1}) {
    for (bool keep : {false, true}) {
      op_test<1>("max", [=](auto&& x) { return max(x, axis, keep); })
          .shapes(shapes::fixed(kAxisCases))
          .bad_shapes({{{}}})
          .values(distinct)
          .reference([=](const Values& v) { return reduce_ref(v[0], axis, keep, max_of); })
          .run();
      op_test<1>("min", [=](auto&& x) { return min(x, axis, keep); })
          .shapes(shapes::fixed(kAxisCases))
          .bad_shapes({{{}}})
          .values(distinct)
          .reference([=](const Values& v) { return reduce_ref(v[0], axis, keep, min_of); })
          .run();
    }
  }
  op_test<1>("max", [](auto&& x) { return max(x); })
      .shapes(shapes::fixed({{{}}, {{5}}, {{2, 3, 4}}, {{33}}}))
      .values(distinct)
      .skip(wengert::testing::Check::kShapeError, "every non-empty shape is valid")
      .reference([](const Values& v) { return all_ref(v[0], max_of); })
      .run();
  op_test<1>("min", [](auto&& x) { return min(x); })
      .shapes(shapes::fixed({{{}}, {{5}}, {{2, 3, 4}}}))
      .values(distinct)
      .skip(wengert::testing::Check::kShapeError, "every non-empty shape is valid")
      .reference([](const Values& v) { return all_ref(v[0], min_of); })
      .run();
}

TEST(ReduceAxis, LogsumexpVarNormThroughOpTest) {
  for (int axis : {1, -2}) {
    op_test<1>("logsumexp", [=](auto&& x) { return logsumexp(x, axis, axis > 0); })
        // (an empty slice gives −inf, where finite differences are NaN: checked on its own below)
        .shapes(shapes::fixed({{{2, 3}}, {{3, 4, 2}}, {{1, 17}}, {{2, 3, 0}}}))
        .bad_shapes({{{3}}, {{}}})
        .domain({-5.0, 5.0})
        .reference([=](const Values& v) { return reduce_ref(v[0], axis, axis > 0, lse_of); })
        .run();
    for (int ddof : {0, 1})
      op_test<1>("var", [=](auto&& x) { return var(x, axis, axis < 0, ddof); })
          .shapes(shapes::fixed({{{2, 3}}, {{3, 4, 2}}, {{2, 17}}, {{2, 3, 0}}}))
          .bad_shapes({{{3}}, {{}}})
          .reference([=](const Values& v) {
            return reduce_ref(v[0], axis, axis < 0, [=](auto& s) { return var_of(s, ddof); });
          })
          .run();
    op_test<1>("norm", [=](auto&& x) { return norm(x, axis, axis > 0); })
        .shapes(shapes::fixed({{{2, 3}}, {{3, 4, 2}}, {{1, 17}}, {{2, 0}}}))
        .bad_shapes({{{3}}, {{}}})
        .reference([=](const Values& v) { return reduce_ref(v[0], axis, axis > 0, norm_of); })
        .run();
  }
  op_test<1>("norm", [](auto&& x) { return norm(x); })
      .shapes(shapes::fixed({{{}}, {{5}}, {{2, 3, 4}}, {{0}}}))
      .skip(wengert::testing::Check::kShapeError, "every shape is valid")
      .reference([](const Values& v) { return all_ref(v[0], norm_of); })
      .run();
}

TEST(ReduceAxis, TiesGoToTheFirstExtremum) {
  Tape<double> tape;
  auto x = tape.variable(Arr{{3, 1, 3}, {2, 2, 0}});
  tape.backward(sum(max(x, 1)));
  EXPECT_EQ(Arr(x.grad()), (Arr{{1, 0, 0}, {1, 0, 0}}));
  tape.backward(sum(min(x, 0)));  // column 1: 1 < 2; column 0: 2 < 3; column 2: 0 < 3
  EXPECT_EQ(Arr(x.grad()), (Arr{{0, 1, 0}, {1, 0, 1}}));
  tape.backward(max(x));  // 3 at flat 0 and 2: the first
  EXPECT_EQ(Arr(x.grad()), (Arr{{1, 0, 0}, {0, 0, 0}}));
  EXPECT_EQ(argmax(x, 1), (xt::xarray<std::int64_t>{0, 0}));
  EXPECT_EQ(argmin(x, 0, true), (xt::xarray<std::int64_t>{{1, 0, 1}}));
  EXPECT_EQ(argmax(x), 0);
  EXPECT_EQ(argmin(x), 5);
  EXPECT_EQ(tape.size(), 6u);  // x, max, sum, min, sum, max: argmax/argmin record nothing
}

TEST(ReduceAxis, NanIsTheExtremumAndPropagates) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tape<double> tape;
  auto x = tape.variable(Arr{{1, nan, 5}, {4, 2, nan}});
  auto y = max(x, 1);
  EXPECT_TRUE(std::isnan(y.value()(0)) && std::isnan(y.value()(1)));
  EXPECT_EQ(argmax(x, 1), (xt::xarray<std::int64_t>{1, 2}));
  EXPECT_EQ(argmin(x, 1), (xt::xarray<std::int64_t>{1, 2}));
  EXPECT_TRUE(std::isnan(logsumexp(x, 1).value()(0)));
  EXPECT_TRUE(std::isnan(norm(x, 1).value()(1)));
}

TEST(ReduceAxis, LogsumexpIsStableAndItsEdgesAreDefined) {
  for (int axis : {0, 1}) {
    Tape<float> tape;
    const float inf = std::numeric_limits<float>::infinity();
    auto x = tape.variable(xt::xarray<float>{{1e4f, -inf}, {0.0f, -inf}});
    auto y = logsumexp(x, axis);
    if (axis == 1) {
      EXPECT_EQ(y.value()(0), 1e4f);
      EXPECT_EQ(y.value()(1), 0.0f);
    } else {
      EXPECT_EQ(y.value()(0), 1e4f);
      EXPECT_EQ(y.value()(1), -inf);  // a slice of only −inf
    }
    tape.backward(y, xt::xarray<float>{1.0f, 1.0f});
    for (float g : x.grad()) EXPECT_TRUE(std::isfinite(g));  // 0 for the −inf slice
  }
  Tape<double> tape;
  EXPECT_EQ(logsumexp(tape.constant(Arr::from_shape({2, 0})), 1).value()(0), -INFINITY);
}

TEST(ReduceAxis, NormAtZeroUsesTheZeroSubgradientAndScalesHugeValues) {
  Tape<float> tape;
  auto x = tape.variable(xt::xarray<float>{{0, 0}, {3e30f, 4e30f}});
  auto y = norm(x, 1);
  EXPECT_EQ(y.value()(0), 0.0f);
  EXPECT_NEAR(y.value()(1), 5e30f, 1e24f);  // Σx² would overflow float
  tape.backward(y, xt::xarray<float>{1, 1});
  EXPECT_EQ(x.grad()(0, 0), 0.0f);
  EXPECT_NEAR(x.grad()(1, 0), 0.6f, 1e-6f);
}

TEST(ReduceAxis, ErrorsNameTheOpTheAxisAndTheShape) {
  using nntest::message_of;
  Tape<double> tape;
  auto e = tape.variable(Arr::from_shape({2, 0}));
  auto x = tape.variable(Arr::from_shape({2, 3}));
  EXPECT_EQ(message_of<ValueError>([&] { max(e, 1); }),
            "max: axis 1 of x [2,0] has length 0; the max along it is undefined");
  EXPECT_EQ(message_of<ValueError>([&] { min(e); }),
            "min: x is [2,0], which has no elements; the min is undefined");
  EXPECT_EQ(message_of<ValueError>([&] { argmax(e, -1); }),
            "argmax: axis -1 of x [2,0] has length 0; the index along it is undefined");
  EXPECT_EQ(message_of<ValueError>([&] { var(x, 0, false, 2); }),
            "var: axis 0 of x [2,3] has length 2, not more than ddof = 2: the variance is "
            "undefined");
  EXPECT_EQ(message_of<ShapeError>([&] { logsumexp(x, 2); }),
            "logsumexp: axis 2 is out of range for x of shape [2,3] (valid axes are -2 to 1)");
  EXPECT_EQ(tape.size(), 2u);
  // An empty axis of an empty output is fine: nothing to reduce.
  EXPECT_EQ(max(tape.constant(Arr::from_shape({0, 0})), 1).shape(), Shape{0});
}
