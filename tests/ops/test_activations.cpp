// Tests for ops/wengert/ops/activations.hpp: sigmoid, tanh, relu.
//
// Forward values against std:: reference formulas; gradients against the closed forms in
// terms of the output (y(1 − y), 1 − y², [x > 0]) and through the public gradcheck; large |x|,
// constants, fan-out, float32, errors and allocation-free replay.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xio.hpp>
#include <xtensor/xmath.hpp>

#include "alloc_counter.hpp"
#include "op_test.hpp"

using namespace wengert;

namespace {

using Dims = std::vector<std::size_t>;

// N(0, scale²) values; with `away` > 0, |v| ≥ away (relu's kink stays out of the
// finite-difference stencil).
xt::xarray<double> randn(const Dims& shape, std::mt19937_64& rng, double scale = 1,
                         double away = 0) {
  xt::xarray<double> a = xt::xarray<double>::from_shape(shape);
  std::normal_distribution<double> N(0.0, scale);
  for (auto& v : a) {
    v = N(rng);
    if (away > 0) v = (v < 0 ? -1 : 1) * (away + std::abs(v));
  }
  return a;
}

// Edge shapes (scalar, 1s, one SIMD tail, several batches) plus seeded random ones of rank ≤ 4.
const std::vector<Dims>& shapes() {
  static const std::vector<Dims> s = [] {
    std::vector<Dims> v = {{}, {1}, {1, 1}, {7}, {1, 5}, {5, 1}, {3, 4}, {2, 3, 4}, {40}};
    std::mt19937_64 rng(0x5a9e5);
    std::uniform_int_distribution<std::size_t> rank(0, 4), dim(1, 6);
    for (int c = 0; c < 10; ++c) {
      Dims d(rank(rng));
      for (auto& x : d) x = dim(rng);
      v.push_back(d);
    }
    return v;
  }();
  return s;
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

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

using UnaryFn = Var<double> (*)(const Var<double>&, SourceLoc);

}  // namespace

TEST(Activations, SigmoidForwardAndOutputBasedBackward) {
  Tape<double> tape;
  xt::xarray<double> xv{{-3.0, -0.5, 0.0}, {0.25, 2.0, 8.0}};
  auto x = tape.variable(xv);
  auto y = sigmoid(x);
  EXPECT_STREQ(y.op_name(), "sigmoid");
  for (std::size_t i = 0; i < xv.size(); ++i)
    EXPECT_NEAR(y.data()[i], sigmoid_ref(xv.data()[i]), 1e-16) << xv.data()[i];
  EXPECT_EQ(y.value()(0, 2), 0.5);
  xt::xarray<double> g{{1.0, -2.0, 0.5}, {3.0, 1.0, -1.0}};
  tape.backward(y, g);
  for (std::size_t i = 0; i < xv.size(); ++i) {
    const double yi = y.data()[i];
    EXPECT_EQ(x.grad_data()[i], g.data()[i] * yi * (1 - yi));  // exactly y(1 − y)·g
  }
}

TEST(Activations, SigmoidIsStableForLargeMagnitudes) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{-1000.0, -745.0, -40.0, 40.0, 745.0, 1000.0});
  auto y = sigmoid(x);
  EXPECT_EQ(y.value()(0), 0.0);
  EXPECT_EQ(y.value()(5), 1.0);
  EXPECT_NEAR(y.value()(2), std::exp(-40.0), 1e-30);  // the tiny tail is kept, not rounded to 0
  EXPECT_EQ(y.value()(3), 1.0);
  tape.backward(y, xt::xarray<double>(xt::ones<double>({6})));
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_TRUE(std::isfinite(y.value()(i))) << i;
    EXPECT_TRUE(std::isfinite(x.grad()(i))) << i;
    EXPECT_GE(x.grad()(i), 0.0);
  }
  // float: e^(−x) overflows for x < −88; the stable form must not care.
  Tape<float> tf;
  auto xf = tf.variable(xt::xarray<float>{-200.0f, -89.0f, 89.0f, 200.0f});
  auto yf = sigmoid(xf);
  EXPECT_EQ(yf.value()(0), 0.0f);
  EXPECT_EQ(yf.value()(3), 1.0f);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_FALSE(std::isnan(yf.value()(i))) << i;
}

TEST(Activations, TanhForwardAndOutputBasedBackward) {
  Tape<double> tape;
  xt::xarray<double> xv{-20.0, -1.0, -1e-8, 0.0, 0.3, 1.5, 20.0};
  auto x = tape.variable(xv);
  auto y = tanh(x);
  EXPECT_STREQ(y.op_name(), "tanh");
  for (std::size_t i = 0; i < xv.size(); ++i)
    EXPECT_NEAR(y.data()[i], std::tanh(xv(i)), 2e-16 * std::max(1e-8, std::abs(std::tanh(xv(i)))))
        << xv(i);
  EXPECT_EQ(y.value()(0), -1.0);
  EXPECT_EQ(y.value()(3), 0.0);
  xt::xarray<double> g = xt::linspace<double>(-1.0, 2.0, xv.size());
  tape.backward(y, g);
  for (std::size_t i = 0; i < xv.size(); ++i) {
    // Exactly (1 − y²)·g, with 1 − y² rounded once (a fused multiply-add, as the vectorised
    // kernel may compute it) or twice (as this file's own arithmetic may, depending on the
    // optimisation level it is compiled at).
    const double yi = y.data()[i];
    const double twice = g(i) * (1 - yi * yi), fused = g(i) * std::fma(-yi, yi, 1.0);
    EXPECT_TRUE(x.grad()(i) == twice || x.grad()(i) == fused)
        << x.grad()(i) << " vs " << twice << " or " << fused;
  }
}

TEST(Activations, ReluForwardAndBackward) {
  Tape<double> tape;
  xt::xarray<double> xv{-2.0, -0.0, 0.0, 1e-300, 3.5};
  auto x = tape.variable(xv);
  auto y = relu(x);
  EXPECT_STREQ(y.op_name(), "relu");
  EXPECT_EQ(xt::xarray<double>(y.value()), (xt::xarray<double>{0.0, 0.0, 0.0, 1e-300, 3.5}));
  tape.backward(y, xt::xarray<double>{1.0, 2.0, 3.0, 4.0, 5.0});
  // 1 where x > 0; 0 at the kink.
  EXPECT_EQ(xt::xarray<double>(x.grad()), (xt::xarray<double>{0.0, 0.0, 0.0, 4.0, 5.0}));
  auto n = relu(tape.constant(std::nan("")));
  EXPECT_TRUE(std::isnan(n.item()));  // nan is not hidden as 0
}

TEST(Activations, GradcheckOnManyShapes) {
  std::mt19937_64 rng(11);
  struct Case {
    const char* name;
    UnaryFn f;
    double away;
  };
  for (const Case& c : {Case{"sigmoid", &sigmoid<double>, 0.0}, Case{"tanh", &tanh<double>, 0.0},
                        Case{"relu", &relu<double>, 0.05}})
    for (const Dims& d : shapes()) {
      UnaryFn f = c.f;
      GradcheckResult r = gradcheck([f](const auto& in) { return f(in[0], SourceLoc{}); },
                                    {randn(d, rng, 2.0, c.away)});
      EXPECT_TRUE(r.ok) << c.name << " " << Shape(d).str() << ": " << r.message;
    }
}

TEST(Activations, ConstantInputsStayGradientFree) {
  Tape<double> tape;
  auto c = tape.constant(xt::xarray<double>{0.5, -0.5});
  auto x = tape.variable(xt::xarray<double>{1.0, 2.0});
  for (auto y : {sigmoid(c), tanh(c), relu(c)}) EXPECT_FALSE(y.requires_grad());
  auto z = mul(tanh(c), sigmoid(x));  // constant branch, variable branch
  tape.backward(z, xt::xarray<double>{1.0, 1.0});
  EXPECT_THROW(c.grad(), UsageError);
  for (std::size_t i = 0; i < 2; ++i) {
    const double s = sigmoid_ref(x.value()(i));
    EXPECT_NEAR(x.grad()(i), std::tanh(c.value()(i)) * s * (1 - s), 1e-15);
  }
}

TEST(Activations, FanOut) {
  // y = tanh(x)·sigmoid(x) + relu(x): x feeds three activations.
  std::mt19937_64 rng(12);
  GradcheckResult r =
      gradcheck([](const auto& in) { return tanh(in[0]) * sigmoid(in[0]) + relu(in[0]); },
                {randn({3, 2}, rng, 1.5, 0.05)});
  EXPECT_TRUE(r.ok) << r.message;
  // An activation output used twice: h = tanh(x), y = h·h → dy/dx = 2h(1 − h²).
  Tape<double> tape;
  auto x = tape.variable(0.7);
  auto h = tanh(x);
  tape.backward(h * h);
  const double hv = std::tanh(0.7);
  EXPECT_NEAR(x.grad()(0), 2 * hv * (1 - hv * hv), 1e-15);
}

TEST(Activations, Float32MatchesFloat64) {
  std::mt19937_64 rng(13);
  xt::xarray<double> xv = randn({37}, rng, 3.0, 0.01);  // 37: two full float batches and a tail
  auto run = [&](auto tag) {
    using T = decltype(tag);
    Tape<T> tape;
    auto x = tape.variable(xt::xarray<T>(xt::cast<T>(xv)));
    auto y = sigmoid(x) * tanh(x) + relu(x);
    tape.backward(y, xt::xarray<T>(xt::ones<T>({37})));
    return std::vector<xt::xarray<double>>{xt::cast<double>(y.value()), xt::cast<double>(x.grad())};
  };
  auto f = run(float{});
  auto d = run(double{});
  for (std::size_t k = 0; k < 2; ++k)
    EXPECT_TRUE(xt::allclose(f[k], d[k], 1e-5, 1e-6)) << f[k] << "\n" << d[k];
}

TEST(Activations, ResultsDoNotDependOnPositionOrTensorSize) {
  // The SIMD tail and the full batches compute the same function: an element's value is the
  // same whether it sits in a [1] tensor or anywhere in a long one.
  std::mt19937_64 rng(14);
  xt::xarray<float> xv = xt::cast<float>(randn({53}, rng, 4.0));
  Tape<float> tape;
  auto all_s = sigmoid(tape.constant(xv));
  auto all_t = tanh(tape.constant(xv));
  for (std::size_t i = 0; i < xv.size(); ++i) {
    auto one = tape.constant(xt::xarray<float>{xv(i)});
    EXPECT_EQ(sigmoid(one).item(), all_s.data()[i]) << i;
    EXPECT_EQ(tanh(one).item(), all_t.data()[i]) << i;
  }
}

TEST(Activations, InvalidHandlesNameTheOp) {
  Tape<double> tape;
  auto x = tape.variable(1.0);
  tape.clear();
  for (auto [name, f] : {std::pair<const char*, UnaryFn>{"sigmoid", &sigmoid<double>},
                         {"tanh", &tanh<double>},
                         {"relu", &relu<double>}}) {
    std::string msg = error_of([&, f = f] { f(x, SourceLoc{}); });
    EXPECT_NE(msg.find(std::string(name) + ": argument x"), std::string::npos) << msg;
    EXPECT_NE(msg.find("stale"), std::string::npos) << msg;
  }
  Var<double> empty;
  EXPECT_THROW(tanh(empty), UsageError);
}

TEST(Activations, RewoundReplayAllocatesNothing) {
  Tape<float> tape;
  Parameter<float> w(xt::xarray<float>{{0.5f, -1.0f, 2.0f}, {1.5f, 0.25f, -0.75f}});
  xt::xarray<float> input = xt::cast<float>(xt::linspace<double>(-2.0, 2.0, 6));
  input.reshape({2, 3});
  auto step = [&] {
    tape.clear();
    auto x = tape.constant_view(input.data(), Shape{2, 3});
    auto h = x * tape.param(w);
    auto y = sum(sigmoid(h) + tanh(h) * relu(h));
    tape.backward(y);
    return y.item();
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

TEST(Activations, SigmoidThroughOpTest) {
  wengert::testing::op_test<1>("sigmoid", [](auto&&... v) { return sigmoid(v...); })
      .domain({-6.0, 6.0})
      .elementwise_reference(sigmoid_ref)
      .run();
}

TEST(Activations, TanhThroughOpTest) {
  wengert::testing::op_test<1>("tanh", [](auto&&... v) { return tanh(v...); })
      .domain({-4.0, 4.0})
      .elementwise_reference([](double x) { return std::tanh(x); })
      .run();
}

TEST(Activations, ReluThroughOpTest) {
  // Inputs at least 0.05 from the kink, which the finite-difference stencil must not cross.
  wengert::testing::op_test<1>("relu", [](auto&&... v) { return relu(v...); })
      .domain({-3.0, 3.0, 0.05})
      .elementwise_reference([](double x) { return x > 0 ? x : 0.0; })
      .run();
}
