// Tests for ops/wengert/ops/elementwise.hpp: add, sub, mul, div (with broadcasting), the
// scalar-operand forms, neg, square, pow, exp, log and the operators.
//
// Forward values are checked against xtensor's own broadcasting arithmetic or std:: functions;
// gradients against closed forms and through the public gradcheck (float64 central differences
// plus the dot-product test) on broadcasting edge cases and seeded random shape pairs.
#include <wengert/wengert.hpp>
#include "detail/broadcast.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xio.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "alloc_counter.hpp"
#include "op_test.hpp"

using namespace wengert;

namespace {

using Dims = std::vector<std::size_t>;

// N(0,1) values; with `away` > 0, |v| ≥ away (same sign), for inputs that must avoid 0.
xt::xarray<double> randn(const Dims& shape, std::mt19937_64& rng, double away = 0) {
  xt::xarray<double> a = xt::xarray<double>::from_shape(shape);
  std::normal_distribution<double> N(0.0, 1.0);
  for (auto& v : a) {
    v = N(rng);
    if (away > 0) v = (v < 0 ? -1 : 1) * (away + std::abs(v));
  }
  return a;
}

xt::xarray<double> positive(const Dims& shape, std::mt19937_64& rng) {
  xt::xarray<double> a = randn(shape, rng);
  for (auto& v : a) v = 0.2 + std::abs(v);
  return a;
}

// An [n,1] column (xtensor's {{1.0}, {2.0}} initializer is ambiguous).
template <class T>
xt::xarray<T> column(std::initializer_list<T> v) {
  xt::xarray<T> a = xt::xarray<T>::from_shape({v.size(), 1});
  std::copy(v.begin(), v.end(), a.begin());
  return a;
}

std::string dims_str(const Dims& d) { return Shape(d).str(); }

// Broadcasting edge cases: column with row vector, scalar with matrix, rank 3 with rank 2,
// [1] with [1,1], 1×n with n×1, plus equal shapes and shapes that differ only by 1s.
std::vector<std::pair<Dims, Dims>> edge_cases() {
  return {{{3, 1}, {4}},
          {{}, {2, 3}},
          {{2, 3}, {}},
          {{2, 1, 3}, {4, 1}},
          {{4, 1}, {2, 1, 3}},
          {{1}, {1, 1}},
          {{1, 4}, {4, 1}},
          {{4, 1}, {1, 4}},
          {{1, 5}, {5}},
          {{5, 1}, {5, 1}},
          {{2, 3}, {2, 3}},
          {{1, 3}, {3}},
          {{}, {}},
          {{3}, {2, 1}}};
}

// Seeded random pairs that broadcast: a common output shape of rank ≤ 3, each input taking
// its trailing dimensions with some set to 1.
std::vector<std::pair<Dims, Dims>> random_cases(int count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> rank(0, 3), dim(1, 4), coin(0, 2);
  std::vector<std::pair<Dims, Dims>> out;
  for (int c = 0; c < count; ++c) {
    std::size_t ra = rank(rng), rb = rank(rng), r = std::max(ra, rb);
    Dims o(r);
    for (auto& d : o) d = dim(rng);
    auto take = [&](std::size_t k) {
      Dims s(o.end() - k, o.end());
      for (auto& d : s)
        if (coin(rng) == 0) d = 1;
      return s;
    };
    out.emplace_back(take(ra), take(rb));
  }
  return out;
}

std::vector<std::pair<Dims, Dims>> all_cases() {
  auto v = edge_cases();
  for (auto& p : random_cases(12, 0xb40adca57)) v.push_back(p);
  return v;
}

void expect_gradcheck(const GradcheckFn& f, const std::vector<xt::xarray<double>>& in,
                      const std::string& what) {
  GradcheckResult r = gradcheck(f, in);
  EXPECT_TRUE(r.ok) << what << ": " << r.message;
}

template <class T>
xt::xarray<T> to(const xt::xarray<double>& a) {
  xt::xarray<T> r = xt::xarray<T>::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) r.data()[i] = T(a.data()[i]);
  return r;
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

void expect_contains(const std::string& msg, std::initializer_list<const char*> parts) {
  for (const char* p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

using BinaryFn = Var<double> (*)(const Var<double>&, const Var<double>&, SourceLoc);
struct BinaryCase {
  const char* name;
  BinaryFn op;
  std::function<xt::xarray<double>(const xt::xarray<double>&, const xt::xarray<double>&)> ref;
  bool b_nonzero;  // keep b away from 0 (division)
};

std::vector<BinaryCase> binary_ops() {
  return {
      {"add", &add<double>, [](const auto& a, const auto& b) { return xt::xarray<double>(a + b); },
       false},
      {"sub", &sub<double>, [](const auto& a, const auto& b) { return xt::xarray<double>(a - b); },
       false},
      {"mul", &mul<double>, [](const auto& a, const auto& b) { return xt::xarray<double>(a * b); },
       false},
      {"div", &div<double>, [](const auto& a, const auto& b) { return xt::xarray<double>(a / b); },
       true},
  };
}

}  // namespace

// ---- the broadcast walk ------------------------------------------------------------------------

TEST(BroadcastMap, MergesContiguousDimensionsAndDropsOnes) {
  auto m = detail::make_broadcast_map(Shape{2, 3}, Shape{2, 3}, Shape{2, 3});
  EXPECT_EQ(m.rank, 1u);
  EXPECT_EQ(m.dims[0], 6u);
  m = detail::make_broadcast_map(Shape{4, 5}, Shape{4, 5}, Shape{});
  ASSERT_EQ(m.rank, 1u);
  EXPECT_EQ(m.stride[0][0], 1u);
  EXPECT_EQ(m.stride[1][0], 0u);
  m = detail::make_broadcast_map(Shape{3, 4}, Shape{3, 1}, Shape{4});
  ASSERT_EQ(m.rank, 2u);
  EXPECT_EQ(m.stride[0][0], 1u);  // a walks down its column
  EXPECT_EQ(m.stride[0][1], 0u);
  EXPECT_EQ(m.stride[1][0], 0u);  // b repeats for every row
  EXPECT_EQ(m.stride[1][1], 1u);
  m = detail::make_broadcast_map(Shape{1, 1}, Shape{1}, Shape{1, 1});
  EXPECT_EQ(m.rank, 0u);
  EXPECT_TRUE(detail::make_broadcast_map(Shape{0, 3}, Shape{0, 3}, Shape{3}).empty);
}

TEST(BroadcastMap, VisitsEveryOutputElementWithTheNumpyInputOffsets) {
  // Against an independent index computation for [2,1,3] with [4,1] → [2,4,3].
  Shape a{2, 1, 3}, b{4, 1}, out{2, 4, 3};
  auto m = detail::make_broadcast_map(out, a, b);
  std::vector<std::size_t> seen;
  detail::for_each_broadcast(m, [&](std::size_t o, std::size_t i, std::size_t j) {
    const std::size_t p = o / 12, q = (o / 3) % 4, r = o % 3;
    EXPECT_EQ(i, p * 3 + r) << "o=" << o;
    EXPECT_EQ(j, q) << "o=" << o;
    seen.push_back(o);
  });
  ASSERT_EQ(seen.size(), 24u);
  for (std::size_t k = 0; k < 24; ++k) EXPECT_EQ(seen[k], k);
}

// ---- two-tensor ops ----------------------------------------------------------------------------

TEST(Elementwise, BinaryForwardMatchesXtensorBroadcasting) {
  std::mt19937_64 rng(1);
  for (const auto& op : binary_ops())
    for (const auto& [sa, sb] : all_cases()) {
      auto av = randn(sa, rng), bv = randn(sb, rng, op.b_nonzero ? 0.5 : 0.0);
      Tape<double> tape;
      auto y = op.op(tape.constant(av), tape.constant(bv), SourceLoc{});
      xt::xarray<double> expect = op.ref(av, bv);
      ASSERT_EQ(y.shape(), Shape(expect.shape())) << op.name << " " << dims_str(sa) << dims_str(sb);
      EXPECT_EQ(xt::xarray<double>(y.value()), expect)
          << op.name << " " << dims_str(sa) << dims_str(sb);
      EXPECT_STREQ(y.op_name(), op.name);
    }
}

TEST(Elementwise, BinaryGradcheckOnBroadcastingShapes) {
  std::mt19937_64 rng(2);
  for (const auto& op : binary_ops())
    for (const auto& [sa, sb] : all_cases()) {
      BinaryFn f = op.op;
      expect_gradcheck(
          [f](const std::vector<Var<double>>& in) { return f(in[0], in[1], SourceLoc{}); },
          {randn(sa, rng), randn(sb, rng, op.b_nonzero ? 0.5 : 0.0)},
          std::string(op.name) + " " + dims_str(sa) + " with " + dims_str(sb));
    }
}

TEST(Elementwise, BroadcastingWhileTheNodeListGrows) {
  // Recording an op can grow (move) the tape's node list; the broadcast walk must not read the
  // inputs' shapes through references taken before that. Every power-of-two node count is
  // crossed here, with the list never reserved ahead. (Run under valgrind or ASan to see reads
  // of moved memory; without them this checks the values.)
  Tape<double> tape;
  xt::xarray<double> cv = column<double>({1.0, 2.0, 3.0}), rv{10.0, 20.0, 30.0, 40.0};
  auto col = tape.variable(cv);
  auto row = tape.variable(rv);
  xt::xarray<double> expect = cv + rv;
  for (int k = 0; k < 300; ++k) {
    auto y = k % 2 ? add(col, row) : add(row, col);
    ASSERT_EQ(y.shape(), (Shape{3, 4})) << k;
    ASSERT_EQ(xt::xarray<double>(y.value()), expect) << k;
  }
}

TEST(Elementwise, BroadcastAdjointsAreSummedOverRepeatedAxes) {
  // [3,1] op [4] → [3,4], seed all ones: a's adjoint sums 4 elements, b's sums 3.
  Tape<double> tape;
  xt::xarray<double> av = column<double>({1.0, 2.0, 3.0}), bv{1.0, 2.0, 4.0, 8.0};
  auto a = tape.variable(av);
  auto b = tape.variable(bv);
  xt::xarray<double> ones = xt::ones<double>({3, 4});

  tape.backward(add(a, b), ones);
  EXPECT_EQ(xt::xarray<double>(a.grad()), xt::xarray<double>(4.0 * xt::ones<double>({3, 1})));
  EXPECT_EQ(xt::xarray<double>(b.grad()), (xt::xarray<double>{3.0, 3.0, 3.0, 3.0}));

  tape.backward(sub(a, b), ones);
  EXPECT_EQ(xt::xarray<double>(b.grad()), (xt::xarray<double>{-3.0, -3.0, -3.0, -3.0}));

  tape.backward(mul(a, b), ones);  // ∂/∂a_i = Σ_j b_j = 15, ∂/∂b_j = Σ_i a_i = 6
  EXPECT_EQ(xt::xarray<double>(a.grad()), xt::xarray<double>(15.0 * xt::ones<double>({3, 1})));
  EXPECT_EQ(xt::xarray<double>(b.grad()), (xt::xarray<double>{6.0, 6.0, 6.0, 6.0}));

  tape.backward(div(a, b), ones);  // ∂/∂a_i = Σ_j 1/b_j, ∂/∂b_j = −Σ_i a_i / b_j²
  EXPECT_DOUBLE_EQ(a.grad()(0, 0), 1.0 + 0.5 + 0.25 + 0.125);
  EXPECT_DOUBLE_EQ(b.grad()(3), -6.0 / 64.0);
}

TEST(Elementwise, ShapeErrorsNameTheOpAndBothShapes) {
  Tape<double> tape;
  auto a = tape.variable(xt::zeros<double>({3, 4}));
  auto b = tape.variable(xt::zeros<double>({5, 4}));
  for (const auto& op : binary_ops()) {
    const std::size_t before = tape.size();
    std::string msg = error_of([&] { op.op(a, b, SourceLoc{}); });
    expect_contains(msg, {op.name, "[3,4]", "[5,4]"});
    EXPECT_THROW(op.op(a, b, SourceLoc{}), ShapeError);
    EXPECT_EQ(tape.size(), before);  // nothing recorded
  }
  EXPECT_THROW(a + b, ShapeError);
  EXPECT_THROW(a * tape.constant(xt::xarray<double>{1.0, 2.0}), ShapeError);
  expect_contains(error_of([&] { a / b; }), {"div", "[3,4]", "[5,4]"});
}

TEST(Elementwise, InvalidHandlesAreReportedWithTheOpName) {
  Tape<double> tape, other;
  auto a = tape.variable(1.0);
  Var<double> empty;
  expect_contains(error_of([&] { mul(a, empty); }), {"mul", "argument b", "empty"});
  auto stale = tape.variable(2.0);
  tape.clear();
  auto c = tape.variable(3.0);
  expect_contains(error_of([&] { add(stale, c); }), {"add", "argument a", "stale"});
  expect_contains(error_of([&] { exp(stale); }), {"exp", "argument x", "stale"});
  auto o = other.variable(1.0);
  expect_contains(error_of([&] { sub(c, o); }), {"sub", "another tape"});
  EXPECT_THROW(mul(c, o), UsageError);
}

TEST(Elementwise, ConstantInputsStayGradientFree) {
  Tape<double> tape;
  xt::xarray<double> cv{2.0, -3.0};
  auto x = tape.variable(xt::xarray<double>{0.5, 4.0});
  auto c = tape.constant(cv);
  auto y = mul(x, c);
  EXPECT_TRUE(y.requires_grad());
  tape.backward(y, xt::xarray<double>{1.0, 1.0});
  EXPECT_EQ(xt::xarray<double>(x.grad()), cv);
  EXPECT_FALSE(c.requires_grad());
  EXPECT_THROW(c.grad(), UsageError);
  // Only constants in: the output needs no gradient either, and backward refuses it.
  auto z = div(c, add(c, 1.0));
  EXPECT_FALSE(z.requires_grad());
  EXPECT_THROW(tape.backward(sum(z)), UsageError);
  // A variable outside `wrt` is skipped: its adjoint stays zero.
  auto w = tape.variable(xt::xarray<double>{3.0, 5.0});
  tape.backward(mul(x, w), xt::xarray<double>{1.0, 1.0}, {x});
  EXPECT_EQ(xt::xarray<double>(x.grad()), (xt::xarray<double>{3.0, 5.0}));
  EXPECT_EQ(xt::xarray<double>(w.grad()), (xt::xarray<double>{0.0, 0.0}));
}

TEST(Elementwise, FanOutSumsEveryUse) {
  // y = x·x + x − x/2: dy/dx = 2x + 1/2, with x feeding four uses (mul gets it twice).
  Tape<double> tape;
  auto x = tape.variable(3.0);
  auto y = add(mul(x, x), sub(x, div(x, 2.0)));
  tape.backward(y);
  EXPECT_EQ(y.item(), 10.5);
  EXPECT_EQ(x.grad()(0), 6.5);
  // Fan-out through broadcasting: x [1,3] is used both broadcast and as is.
  std::mt19937_64 rng(3);
  xt::xarray<double> c = randn({2, 1}, rng);
  expect_gradcheck(
      [c](const std::vector<Var<double>>& in) {
        auto& t = in[0].tape();
        auto h = add(in[0], t.constant(c));  // [2,3]
        return mul(h, in[0]) / (in[0] * in[0] + 1.0);
      },
      {randn({1, 3}, rng)}, "broadcast fan-out");
}

// ---- scalar operands ---------------------------------------------------------------------------

TEST(Elementwise, ScalarOperandFormsForwardAndBackward) {
  Tape<double> tape;
  xt::xarray<double> xv{{1.0, -2.0, 4.0}};
  auto x = tape.variable(xv);
  const double s = 2.5;
  struct Case {
    Var<double> y;
    xt::xarray<double> value, dydx;
    const char* name;
  };
  std::vector<Case> cases = {
      {add(x, s), xv + s, xt::ones_like(xv), "add_scalar"},
      {add(s, x), s + xv, xt::ones_like(xv), "add_scalar"},
      {sub(x, s), xv - s, xt::ones_like(xv), "sub_scalar"},
      {sub(s, x), s - xv, -xt::ones_like(xv), "rsub_scalar"},
      {mul(x, s), xv * s, s * xt::ones_like(xv), "mul_scalar"},
      {mul(s, x), s * xv, s * xt::ones_like(xv), "mul_scalar"},
      {div(x, s), xv / s, xt::ones_like(xv) / s, "div_scalar"},
      {div(s, x), s / xv, -s / (xv * xv), "rdiv_scalar"},
  };
  xt::xarray<double> seed = xt::ones_like(xv);
  for (auto& c : cases) {
    EXPECT_STREQ(c.y.op_name(), c.name);
    EXPECT_EQ(xt::xarray<double>(c.y.value()), c.value) << c.name;
    tape.backward(c.y, seed);
    EXPECT_TRUE(xt::allclose(x.grad(), c.dydx, 1e-15, 0)) << c.name << ": " << x.grad();
  }
  std::mt19937_64 rng(4);
  for (double sv : {-1.5, 0.75, 3.0}) {
    std::vector<std::pair<std::string, GradcheckFn>> fs = {
        {"x+s", [sv](const auto& in) { return in[0] + sv; }},
        {"s+x", [sv](const auto& in) { return sv + in[0]; }},
        {"x-s", [sv](const auto& in) { return in[0] - sv; }},
        {"s-x", [sv](const auto& in) { return sv - in[0]; }},
        {"x*s", [sv](const auto& in) { return in[0] * sv; }},
        {"s*x", [sv](const auto& in) { return sv * in[0]; }},
        {"x/s", [sv](const auto& in) { return in[0] / sv; }},
        {"s/x", [sv](const auto& in) { return sv / in[0]; }},
    };
    for (auto& [name, f] : fs)
      for (const Dims& d : {Dims{}, Dims{1}, Dims{3, 1}, Dims{1, 4}, Dims{2, 3, 2}})
        expect_gradcheck(f, {randn(d, rng, 0.3)}, name + " " + dims_str(d));
  }
}

// ---- one-tensor ops ----------------------------------------------------------------------------

TEST(Elementwise, UnaryAndScalarFormsGradcheckOnSeededRandomShapes) {
  // Every one-tensor op and scalar-operand form, on random shapes of rank ≤ 4; inputs kept where
  // the op is smooth (log, fractional powers and s/x on values ≥ 0.2 or away from 0).
  std::mt19937_64 rng(0xe1e3e47);
  std::uniform_int_distribution<std::size_t> rank(0, 4), dim(1, 5);
  using F = std::function<Var<double>(const Var<double>&)>;
  struct Case {
    const char* name;
    F f;
    bool positive;  // inputs ≥ 0.2
  };
  const std::vector<Case> cases = {
      {"neg", [](const Var<double>& x) { return neg(x); }, false},
      {"-x", [](const Var<double>& x) { return -x; }, false},
      {"square", [](const Var<double>& x) { return square(x); }, false},
      {"pow 3", [](const Var<double>& x) { return pow(x, 3.0); }, false},
      {"pow -2", [](const Var<double>& x) { return pow(x, -2.0); }, true},
      {"pow 0.5", [](const Var<double>& x) { return pow(x, 0.5); }, true},
      {"pow 1.7", [](const Var<double>& x) { return pow(x, 1.7); }, true},
      {"exp", [](const Var<double>& x) { return exp(x); }, false},
      {"log", [](const Var<double>& x) { return log(x); }, true},
      {"x + s", [](const Var<double>& x) { return x + 1.5; }, false},
      {"s - x", [](const Var<double>& x) { return 1.5 - x; }, false},
      {"x * s", [](const Var<double>& x) { return x * -2.5; }, false},
      {"s * x", [](const Var<double>& x) { return 0.5 * x; }, false},
      {"x / s", [](const Var<double>& x) { return x / 4.0; }, false},
      {"s / x", [](const Var<double>& x) { return 3.0 / x; }, true},
  };
  for (int k = 0; k < 8; ++k) {
    Dims d(rank(rng));
    for (auto& x : d) x = dim(rng);
    for (const Case& c : cases) {
      F f = c.f;
      expect_gradcheck([f](const std::vector<Var<double>>& in) { return f(in[0]); },
                       {c.positive ? positive(d, rng) : randn(d, rng)},
                       std::string(c.name) + " on " + dims_str(d));
    }
  }
}

TEST(Elementwise, NegAndSquare) {
  Tape<double> tape;
  xt::xarray<double> xv{{-1.5, 0.0}, {2.0, 3.0}};
  auto x = tape.variable(xv);
  auto n = neg(x);
  auto q = square(x);
  EXPECT_EQ(xt::xarray<double>(n.value()), -xv);
  EXPECT_EQ(xt::xarray<double>((-x).value()), -xv);
  EXPECT_EQ(xt::xarray<double>(q.value()), xv * xv);
  tape.backward(q, xt::ones_like(xv));
  EXPECT_EQ(xt::xarray<double>(x.grad()), 2.0 * xv);
  tape.backward(n, xt::ones_like(xv));
  EXPECT_EQ(xt::xarray<double>(x.grad()), -xt::ones_like(xv));
  std::mt19937_64 rng(5);
  for (const Dims& d : {Dims{}, Dims{1, 1}, Dims{5}, Dims{2, 1, 3}}) {
    expect_gradcheck([](const auto& in) { return neg(in[0]); }, {randn(d, rng)}, "neg");
    expect_gradcheck([](const auto& in) { return square(in[0]); }, {randn(d, rng)}, "square");
  }
}

TEST(Elementwise, PowForwardIsExactOnFastPathsAndIntegerPowers) {
  Tape<double> tape;
  xt::xarray<double> xv{0.0, 1.0, 2.0, 3.0, 9.0};
  auto x = tape.constant(xv);
  EXPECT_EQ(xt::xarray<double>(pow(x, 0.0).value()), xt::ones_like(xv));  // 0^0 = 1
  EXPECT_EQ(xt::xarray<double>(pow(x, 1.0).value()), xv);
  EXPECT_EQ(xt::xarray<double>(pow(x, 2.0).value()), (xt::xarray<double>{0, 1, 4, 9, 81}));
  EXPECT_EQ(xt::xarray<double>(pow(x, 3.0).value()), (xt::xarray<double>{0, 1, 8, 27, 729}));
  EXPECT_EQ(xt::xarray<double>(pow(x, 0.5).value()),
            (xt::xarray<double>{0, 1, std::sqrt(2.0), std::sqrt(3.0), 3}));
  EXPECT_EQ(pow(x, -1.0).value()(0), std::numeric_limits<double>::infinity());  // 1/0
  EXPECT_EQ(pow(x, -2.0).value()(0), std::numeric_limits<double>::infinity());  // 0^-2
  EXPECT_EQ(pow(x, -1.0).value()(2), 0.5);
  // Negative bases with integer exponents keep their sign.
  auto m = tape.constant(xt::xarray<double>{-2.0, -3.0});
  EXPECT_EQ(xt::xarray<double>(pow(m, 3.0).value()), (xt::xarray<double>{-8.0, -27.0}));
  EXPECT_EQ(xt::xarray<double>(pow(m, -1.0).value()), (xt::xarray<double>{-0.5, -1.0 / 3.0}));
  for (double p : {-2.5, -0.5, 1.5, 2.7})
    for (std::size_t i = 1; i < xv.size(); ++i)
      EXPECT_DOUBLE_EQ(pow(x, p).value()(i), std::pow(xv(i), p)) << "p=" << p;
}

TEST(Elementwise, PowGradients) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{0.5, 2.0});
  for (double p : {0.0, 1.0, 2.0, 3.0, 0.5, -1.0, -2.0, 2.5}) {
    tape.backward(pow(x, p), xt::xarray<double>{1.0, 1.0});
    for (std::size_t i = 0; i < 2; ++i) {
      const double xi = x.value()(i);
      EXPECT_NEAR(x.grad()(i), p == 0 ? 0.0 : p * std::pow(xi, p - 1), 1e-14) << "p=" << p;
    }
  }
  std::mt19937_64 rng(6);
  for (double p : {0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 4.0})  // integer: any sign of base
    for (const Dims& d : {Dims{}, Dims{3}, Dims{2, 1, 2}})
      expect_gradcheck([p](const auto& in) { return pow(in[0], p); }, {randn(d, rng, 0.3)},
                       "pow " + std::to_string(p));
  for (double p : {0.5, -0.5, 1.5, 2.5, -1.3})  // non-integer: positive base
    for (const Dims& d : {Dims{}, Dims{3}, Dims{2, 1, 2}})
      expect_gradcheck([p](const auto& in) { return pow(in[0], p); }, {positive(d, rng)},
                       "pow " + std::to_string(p));
}

TEST(Elementwise, PowRejectsBadExponentsAndNegativeBases) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{1.0, -2.0, 3.0});
  const std::size_t before = tape.size();
  std::string msg = error_of([&] { pow(x, 0.5); });
  expect_contains(msg, {"pow", "x[1]", "-2", "0.5", "[3]"});
  EXPECT_THROW(pow(x, 0.5), ValueError);
  EXPECT_THROW(pow(x, std::nan("")), ValueError);
  expect_contains(error_of([&] { pow(x, std::numeric_limits<double>::infinity()); }),
                  {"pow", "exponent", "inf"});
  EXPECT_EQ(tape.size(), before);
  EXPECT_NO_THROW(pow(x, 2.0));  // integer exponents take negative bases
}

TEST(Elementwise, ExpAndLog) {
  Tape<double> tape;
  xt::xarray<double> xv{{0.0, 1.0, -3.5}, {20.0, 1e-3, 7.25}};
  auto x = tape.variable(xv);
  auto e = exp(x);
  auto l = log(x * x + 1.0);
  for (std::size_t i = 0; i < xv.size(); ++i) {
    EXPECT_NEAR(e.data()[i], std::exp(xv.data()[i]), 2e-16 * std::exp(xv.data()[i]));
    const double u = xv.data()[i] * xv.data()[i] + 1.0;
    EXPECT_NEAR(l.data()[i], std::log(u), 4e-16 * std::max(1.0, std::abs(std::log(u))));
  }
  EXPECT_EQ(e.data()[0], 1.0);
  // exp keeps its output: the adjoint is g·y exactly.
  tape.backward(e, xt::ones_like(xv));
  EXPECT_EQ(xt::xarray<double>(x.grad()), xt::xarray<double>(e.value()));
  xt::xarray<double> nz{-2.0, 0.25, 3.0};
  auto v = tape.variable(nz);
  auto l2 = log(v * v);  // ∂/∂v log(v²) = 2/v
  tape.backward(l2, xt::ones_like(nz));
  EXPECT_TRUE(xt::allclose(v.grad(), 2.0 / nz, 1e-15, 0)) << v.grad();
  EXPECT_EQ(log(tape.constant(0.0)).item(), -std::numeric_limits<double>::infinity());
  std::mt19937_64 rng(7);
  for (const Dims& d : {Dims{}, Dims{1}, Dims{4, 1}, Dims{2, 3, 2}}) {
    expect_gradcheck([](const auto& in) { return exp(in[0]); }, {randn(d, rng)}, "exp");
    expect_gradcheck([](const auto& in) { return log(in[0]); }, {positive(d, rng)}, "log");
  }
}

TEST(Elementwise, LogAndExpAtTheDomainEdges) {
  // Subnormal inputs to log (xsimd 8's double log was off by up to 33 there), and exp of
  // -inf, +inf, NaN and huge values (undefined behaviour inside xsimd's exp before the guard).
  Tape<double> td;
  const xt::xarray<double> xd{4.9406564584124654e-324, 1e-310, 2.2250738585072014e-308, 0.0};
  auto ld = log(td.constant(xd));
  for (std::size_t i = 0; i < 3; ++i) EXPECT_NEAR(ld.value()(i), std::log(xd(i)), 1e-12) << i;
  EXPECT_EQ(ld.value()(3), -std::numeric_limits<double>::infinity());
  Tape<float> tf;
  const xt::xarray<float> xf{1e-40f, 1.4e-45f, 1.1754944e-38f};
  auto lf = log(tf.constant(xf));
  for (std::size_t i = 0; i < 3; ++i) EXPECT_NEAR(lf.value()(i), std::log(xf(i)), 1e-4f) << i;
  const double inf = std::numeric_limits<double>::infinity();
  auto e = exp(td.constant(xt::xarray<double>{-inf, inf, 1e300, -1e300, 709.0, -745.0}));
  EXPECT_EQ(e.value()(0), 0.0);
  EXPECT_EQ(e.value()(1), inf);
  EXPECT_EQ(e.value()(2), inf);
  EXPECT_EQ(e.value()(3), 0.0);
  EXPECT_NEAR(e.value()(4), std::exp(709.0), 1e-12 * std::exp(709.0));
  EXPECT_NEAR(e.value()(5), std::exp(-745.0), 5e-324);  // xsimd may flush this subnormal to 0
  // NaN stays NaN (the guard's first form compared x != x, which AVX-512's ordered compare
  // answers false for NaN, and returned exp(clamped) = 1), and so does tanh's.
  for (std::size_t len : {1, 20}) {
    xt::xarray<double> v = xt::zeros<double>({len});
    v(len - 1) = std::nan("");
    EXPECT_TRUE(std::isnan(exp(td.constant(v)).value()(len - 1))) << len;
    EXPECT_TRUE(std::isnan(tanh(td.constant(v)).value()(len - 1))) << len;
    xt::xarray<float> w = xt::zeros<float>({len});
    w(len - 1) = std::nanf("");
    EXPECT_TRUE(std::isnan(exp(tf.constant(w)).value()(len - 1))) << len;
    EXPECT_TRUE(std::isnan(tanh(tf.constant(w)).value()(len - 1))) << len;
  }
}

TEST(Elementwise, LogRejectsNegativeInputs) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{{1.0, 2.0}, {-0.5, 3.0}});
  std::string msg = error_of([&] { log(x); });
  expect_contains(msg, {"log", "x[2]", "-0.5", "[2,2]"});
  EXPECT_THROW(log(x), ValueError);
}

TEST(Elementwise, AnomalyModeNamesTheOpAndRecordSite) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{1.0, 0.0});
  AnomalyModeGuard on;
  std::string msg = error_of([&] { log(x); });
  expect_contains(msg, {"log", "test_elementwise.cpp", "element 1"});
}

TEST(Elementwise, NamedOpsRecordTheirCallSiteAndOperatorsNone) {
  Tape<double> tape;
  auto x = tape.variable(2.0);
  auto y = mul(x, x);
  auto z = y * x;
  (void)z;
  const std::string listing = tape.str();
  expect_contains(listing, {"#1 mul [] <- #0 [], #0 []", "test_elementwise.cpp:"});
  EXPECT_EQ(listing.find("test_elementwise.cpp", listing.find("#2 mul")), std::string::npos)
      << listing;
}

// ---- float32 -----------------------------------------------------------------------------------

TEST(Elementwise, Float32MatchesFloat64) {
  std::mt19937_64 rng(8);
  xt::xarray<double> av = randn({3, 1}, rng, 0.4), bv = randn({4}, rng, 0.4);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    Tape<T> tape;
    auto a = tape.variable(to<T>(av));
    auto b = tape.variable(to<T>(bv));
    // Every op of this file once; scalars of the other precision convert.
    auto h = (a + b) * (a - b) / (b * b + 1.0);
    auto y = exp(neg(square(h)) * T(0.5)) + log(pow(a, 2.0) + 1) - pow(square(b) + 1.0, 0.5) +
             2.0 / a - b / 3 + (1 - a) * (b - 1.5);
    tape.backward(y, xt::xarray<T>(xt::ones<T>({3, 4})));
    return std::vector<xt::xarray<double>>{xt::cast<double>(y.value()), xt::cast<double>(a.grad()),
                                           xt::cast<double>(b.grad())};
  };
  auto f = run(float{});
  auto d = run(double{});
  for (std::size_t k = 0; k < 3; ++k) {
    ASSERT_EQ(f[k].shape(), d[k].shape());
    EXPECT_TRUE(xt::allclose(f[k], d[k], 1e-5, 1e-5)) << k << "\n" << f[k] << "\n" << d[k];
  }
}

// ---- rewind ------------------------------------------------------------------------------------

TEST(Elementwise, RewoundReplayAllocatesNothing) {
  Tape<float> tape;
  Parameter<float> w(xt::xarray<float>{{0.5f, -1.0f, 2.0f}});
  Parameter<float> b(column<float>({0.1f, 0.2f}));
  xt::xarray<float> input{{1.0f, 2.0f, 3.0f}, {4.0f, 5.0f, 6.0f}};
  auto step = [&] {
    tape.clear();
    auto x = tape.constant_view(input.data(), Shape{2, 3});
    auto wv = tape.param(w), bv = tape.param(b);
    auto h = x * wv + bv;  // [2,3] * [1,3] + [2,1]
    auto y = exp(neg(square(h / 4.0f))) - log(square(h) + 1.0f) + pow(h * h + 1.0f, 1.5f);
    auto z = (y - 2.0f) / (wv * wv + 1.0f) + 3.0f / (bv * bv + 1.0f);
    tape.backward(z, input);
    return z.data()[0];
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

using wengert::testing::Domain;
using wengert::testing::op_test;
using wengert::testing::Values;
namespace op_shapes = wengert::testing::shapes;

}  // namespace

TEST(Elementwise, BroadcastingOpsThroughOpTest) {
  auto check = [](const char* name, auto f, auto ref, Domain b = {}) {
    op_test<2>(name, f)
        .shapes(op_shapes::broadcast())
        .domain(1, b)
        .reference([ref](const Values& v) { return xt::xarray<double>(ref(v[0], v[1])); })
        .run();
  };
  auto plus = [](const auto& a, const auto& b) { return a + b; };
  auto minus = [](const auto& a, const auto& b) { return a - b; };
  auto times = [](const auto& a, const auto& b) { return a * b; };
  auto over = [](const auto& a, const auto& b) { return a / b; };
  const Domain nonzero{-2.0, 2.0, 0.5};  // divisors
  check(
      "add", [](auto&&... v) { return add(v...); }, plus);
  check(
      "sub", [](auto&&... v) { return sub(v...); }, minus);
  check(
      "mul", [](auto&&... v) { return mul(v...); }, times);
  check(
      "div", [](auto&&... v) { return div(v...); }, over, nonzero);
  // The operators record the same ops (without a call site).
  check("add (operator +)", plus, plus);
  check("sub (operator -)", minus, minus);
  check("mul (operator *)", times, times);
  check("div (operator /)", over, over, nonzero);
}

TEST(Elementwise, ScalarOperandFormsThroughOpTest) {
  const double s = 2.5;
  auto check = [](const char* name, auto f, double (*ref)(double), Domain d = {}) {
    op_test<1>(name, f).domain(d).elementwise_reference(ref).run();
  };
  const Domain nonzero{-2.0, 2.0, 0.3};
  check(
      "add_scalar (x + s)", [s](auto&& x) { return add(x, s); }, [](double x) { return x + 2.5; });
  check(
      "add_scalar (s + x)", [s](auto&& x) { return add(s, x); }, [](double x) { return 2.5 + x; });
  check(
      "sub_scalar (x - s)", [s](auto&& x) { return sub(x, s); }, [](double x) { return x - 2.5; });
  check(
      "rsub_scalar (s - x)", [s](auto&& x) { return sub(s, x); }, [](double x) { return 2.5 - x; });
  check(
      "mul_scalar (x * s)", [s](auto&& x) { return mul(x, s); }, [](double x) { return x * 2.5; });
  check(
      "mul_scalar (s * x)", [s](auto&& x) { return mul(s, x); }, [](double x) { return 2.5 * x; });
  check(
      "div_scalar (x / s)", [s](auto&& x) { return div(x, s); }, [](double x) { return x / 2.5; });
  check(
      "rdiv_scalar (s / x)", [s](auto&& x) { return div(s, x); }, [](double x) { return 2.5 / x; },
      nonzero);
}

TEST(Elementwise, UnaryOpsThroughOpTest) {
  op_test<1>("neg", [](auto&&... v) {
    return neg(v...);
  }).elementwise_reference([](double x) {
      return -x;
    }).run();
  op_test<1>("square", [](auto&&... v) {
    return square(v...);
  }).elementwise_reference([](double x) {
      return x * x;
    }).run();
  op_test<1>("exp", [](auto&&... v) { return exp(v...); })
      .domain({-3.0, 3.0})
      .elementwise_reference([](double x) { return std::exp(x); })
      .run();
  op_test<1>("log", [](auto&&... v) { return log(v...); })
      .domain({0.2, 4.0})
      .elementwise_reference([](double x) { return std::log(x); })
      .run();
}

TEST(Elementwise, PowThroughOpTest) {
  // Integer exponents take any base (kept 0.3 from 0, where negative powers have a pole);
  // the others positive bases.
  for (double p : {0.0, 1.0, 2.0, 3.0, 0.5, -1.0, -2.0, 1.7, -0.5}) {
    const bool integer = p == std::floor(p);
    char name[32];
    std::snprintf(name, sizeof name, "pow %g", p);
    op_test<1>(name, [p](auto&& x) { return pow(x, p); })
        .domain(integer ? Domain{-2.0, 2.0, 0.3} : Domain{0.2, 3.0})
        .elementwise_reference([p](double x) { return std::pow(x, p); })
        .run();
  }
}
