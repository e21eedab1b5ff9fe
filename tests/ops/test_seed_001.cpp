// Seed 001 (backpropagation by the chain rule): one neuron with two inputs x1, x2, weights w1,
// w2 and bias b, z = w1·x1 + w2·x2 + b, a = σ(z). The post splits ∂C/∂w into
//   forward pass:  ∂z/∂w1 = x1, ∂z/∂w2 = x2 (the neuron's input: the raw data 1 and −1 for the
//                  input layer, the previous sigmoid output a for a later layer);
//   backward pass: ∂C/∂z = σ'(z)·∂C/∂a, and since a feeds two neurons z' = w3·a + … and
//                  z'' = w4·a + …, ∂C/∂a = w3·∂C/∂z' + w4·∂C/∂z'', so
//                  ∂C/∂z = σ'(z)·[w3·∂C/∂z' + w4·∂C/∂z''],
// with σ'(z) = σ(z)(1 − σ(z)) known from the forward pass; then ∂C/∂w1 = x1·∂C/∂z.
//
// The post's only numbers in its text are the inputs, 1 and −1 (its weights, loss and figures
// were images that did not survive). So the tests use x = (1, −1) and weights of our choosing,
// plus seeded random points. The post leaves C generic; here the two next neurons are sigmoid
// outputs a' = σ(z'), a'' = σ(z'') with C = (a' − t')² + (a'' − t'')². Every expected value is
// the post's chain rule written out in double with std::exp, independent of wengert.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <type_traits>

#include <xtensor/xarray.hpp>

using namespace wengert;

namespace {

double sigma(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// The post's network: the neuron (x1, x2; w1, w2, b) and the two neurons its output feeds,
// z' = w3·a + b3 and z'' = w4·a + b4, with targets t3, t4 for their sigmoid outputs.
struct Point {
  double x1, x2, w1, w2, b, w3, b3, w4, b4, t3, t4;
};

// The post's point: inputs 1 and −1; w = (1, −2), b = 1 give z = 4 (our choice).
constexpr Point kPostPoint = {1, -1, 1, -2, 1, 0.5, -0.25, -1.5, 0.75, 1, 0};

Point random_point(std::mt19937_64& rng) {
  std::normal_distribution<double> N(0, 1.5);
  std::uniform_real_distribution<double> U(0, 1);
  return {N(rng), N(rng), N(rng), N(rng), N(rng), N(rng), N(rng), N(rng), N(rng), U(rng), U(rng)};
}

// The same point with every number rounded to T (the reference then works on what the engine
// sees).
template <class T>
Point rounded(Point p) {
  for (double* v : {&p.x1, &p.x2, &p.w1, &p.w2, &p.b, &p.w3, &p.b3, &p.w4, &p.b4, &p.t3, &p.t4})
    *v = double(T(*v));
  return p;
}

// The chain rule exactly as the post writes it.
struct Chain {
  double z, a, z3, a3, z4, a4, C;
  double dC_dz3, dC_dz4, dC_da, dC_dz;
  double dw1, dw2, db, dw3, db3, dw4, db4, dx1, dx2;
};

Chain chain_rule(const Point& p) {
  Chain c;
  c.z = p.w1 * p.x1 + p.w2 * p.x2 + p.b;
  c.a = sigma(c.z);
  c.z3 = p.w3 * c.a + p.b3;
  c.a3 = sigma(c.z3);
  c.z4 = p.w4 * c.a + p.b4;
  c.a4 = sigma(c.z4);
  c.C = (c.a3 - p.t3) * (c.a3 - p.t3) + (c.a4 - p.t4) * (c.a4 - p.t4);
  // Output layer: everything is known after the forward pass.
  c.dC_dz3 = c.a3 * (1 - c.a3) * 2 * (c.a3 - p.t3);
  c.dC_dz4 = c.a4 * (1 - c.a4) * 2 * (c.a4 - p.t4);
  // The "backward neuron": inputs ∂C/∂z', ∂C/∂z'', weights w3, w4, times the constant σ'(z).
  c.dC_da = p.w3 * c.dC_dz3 + p.w4 * c.dC_dz4;
  c.dC_dz = c.a * (1 - c.a) * c.dC_da;
  // ∂C/∂w = (∂z/∂w from the forward pass) · (∂C/∂z from the backward pass).
  c.dw1 = p.x1 * c.dC_dz;
  c.dw2 = p.x2 * c.dC_dz;
  c.db = c.dC_dz;
  c.dw3 = c.a * c.dC_dz3;  // a later layer's "input data" is the previous sigmoid output
  c.db3 = c.dC_dz3;
  c.dw4 = c.a * c.dC_dz4;
  c.db4 = c.dC_dz4;
  c.dx1 = p.w1 * c.dC_dz;
  c.dx2 = p.w2 * c.dC_dz;
  return c;
}

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 2e-6 : 1e-14;
}

template <class T>
struct Recorded {
  Parameter<T> w1, w2, b, w3, b3, w4, b4;
  Tape<T> tape;
  Var<T> x1, x2, z, a, z3, z4, C;
  explicit Recorded(const Point& p)
      : w1(xt::xarray<T>{T(p.w1)}),
        w2(xt::xarray<T>{T(p.w2)}),
        b(xt::xarray<T>{T(p.b)}),
        w3(xt::xarray<T>{T(p.w3)}),
        b3(xt::xarray<T>{T(p.b3)}),
        w4(xt::xarray<T>{T(p.w4)}),
        b4(xt::xarray<T>{T(p.b4)}) {
    x1 = tape.variable(xt::xarray<T>{T(p.x1)});
    x2 = tape.variable(xt::xarray<T>{T(p.x2)});
    z = tape.param(w1) * x1 + tape.param(w2) * x2 + tape.param(b);
    a = sigmoid(z);
    z3 = tape.param(w3) * a + tape.param(b3);
    z4 = tape.param(w4) * a + tape.param(b4);
    C = square(sigmoid(z3) - T(p.t3)) + square(sigmoid(z4) - T(p.t4));
  }
};

template <class T>
void expect_chain_rule(const Point& p0, const std::string& where) {
  SCOPED_TRACE(where);
  const Point p = rounded<T>(p0);
  const Chain c = chain_rule(p);
  Recorded<T> r(p);
  r.tape.backward(r.C);
  // Absolute tolerances on values of order one; each scaled by the size of what it checks.
  auto near = [&](double got, double want, const char* what) {
    EXPECT_NEAR(got, want, tol<T>() * (1 + std::abs(want))) << what;
  };
  near(r.z.item(), c.z, "z");
  near(r.a.item(), c.a, "a = σ(z)");
  near(r.C.item(), c.C, "C");
  near(r.z3.grad()(0), c.dC_dz3, "∂C/∂z'");
  near(r.z4.grad()(0), c.dC_dz4, "∂C/∂z''");
  near(r.a.grad()(0), c.dC_da, "∂C/∂a = w3·∂C/∂z' + w4·∂C/∂z''");
  near(r.z.grad()(0), c.dC_dz, "∂C/∂z = σ'(z)·[w3·∂C/∂z' + w4·∂C/∂z'']");
  near(r.w1.grad()(0), c.dw1, "∂C/∂w1 = x1·∂C/∂z");
  near(r.w2.grad()(0), c.dw2, "∂C/∂w2 = x2·∂C/∂z");
  near(r.b.grad()(0), c.db, "∂C/∂b = ∂C/∂z");
  near(r.w3.grad()(0), c.dw3, "∂C/∂w3 = a·∂C/∂z'");
  near(r.b3.grad()(0), c.db3, "∂C/∂b' = ∂C/∂z'");
  near(r.w4.grad()(0), c.dw4, "∂C/∂w4 = a·∂C/∂z''");
  near(r.b4.grad()(0), c.db4, "∂C/∂b'' = ∂C/∂z''");
  near(r.x1.grad()(0), c.dx1, "∂C/∂x1 = w1·∂C/∂z");
  near(r.x2.grad()(0), c.dx2, "∂C/∂x2 = w2·∂C/∂z");
}

template <class T>
class Seed001 : public ::testing::Test {};
using Scalars = ::testing::Types<double, float>;
TYPED_TEST_SUITE(Seed001, Scalars);

// The post's forward pass: ∂z/∂w is the input — 1 and −1 for its raw data — and 1 for b;
// for the next layer, ∂z'/∂w3 is the sigmoid output a. Its backward pass: ∂z'/∂a = w3,
// ∂z''/∂a = w4. The first five are exact numbers, compared with EXPECT_EQ.
TYPED_TEST(Seed001, ForwardPassPartialsAreTheInputs) {
  using T = TypeParam;
  const Point& p = kPostPoint;
  {
    Recorded<T> r(p);
    r.tape.backward(r.z);         // seed ∂z/∂z = 1
    EXPECT_EQ(r.z.item(), T(4));  // 1·1 + (−2)·(−1) + 1
    EXPECT_EQ(r.w1.grad()(0), T(1));
    EXPECT_EQ(r.w2.grad()(0), T(-1));
    EXPECT_EQ(r.b.grad()(0), T(1));
    EXPECT_EQ(r.x1.grad()(0), T(p.w1));
  }
  {
    Recorded<T> r(p);
    r.tape.backward(r.z3);
    const double a = sigma(4.0);  // 0.98201379003790845
    EXPECT_NEAR(r.a.item(), a, tol<T>());
    EXPECT_NEAR(r.w3.grad()(0), a, tol<T>()) << "∂z'/∂w3 = a";
    EXPECT_EQ(r.a.grad()(0), T(p.w3)) << "∂z'/∂a = w3";
    EXPECT_NEAR(r.z.grad()(0), p.w3 * a * (1 - a), tol<T>()) << "∂z'/∂z = w3·σ'(z)";
    EXPECT_EQ(r.w1.grad()(0), r.z.grad()(0) * T(p.x1)) << "∂z'/∂w1 = x1·∂z'/∂z";
    EXPECT_EQ(r.w2.grad()(0), r.z.grad()(0) * T(p.x2)) << "∂z'/∂w2 = x2·∂z'/∂z";
  }
  {
    Recorded<T> r(p);
    r.tape.backward(r.z4);
    EXPECT_EQ(r.a.grad()(0), T(p.w4)) << "∂z''/∂a = w4";
  }
}

TYPED_TEST(Seed001, ChainRuleAtThePostsInputs) {
  using T = TypeParam;
  expect_chain_rule<T>(kPostPoint, "x = (1, −1), w = (1, −2), b = 1");
}

TYPED_TEST(Seed001, ChainRuleAtRandomPoints) {
  using T = TypeParam;
  std::mt19937_64 rng(1001);
  for (int i = 0; i < 50; ++i)
    expect_chain_rule<T>(random_point(rng), "point " + std::to_string(i));
}

// The same neuron in matrix form, as MiniFlow writes a layer: x [1,2] · W [2,1] + b [1], then
// σ, then a [1,1] · [w3, w4] + [b3, b4] — the two next neurons as one layer — σ, and C as the
// sum of squared errors. The gradients are the same chain-rule numbers.
TYPED_TEST(Seed001, MatrixFormGivesTheSameGradients) {
  using T = TypeParam;
  std::mt19937_64 rng(1002);
  for (int i = 0; i < 20; ++i) {
    const Point p = rounded<T>(i == 0 ? kPostPoint : random_point(rng));
    SCOPED_TRACE("point " + std::to_string(i));
    const Chain c = chain_rule(p);
    xt::xarray<T> w12 = xt::xarray<T>::from_shape({2, 1});  // [[w1], [w2]]
    w12(0, 0) = T(p.w1);
    w12(1, 0) = T(p.w2);
    Parameter<T> W1(w12), b1(xt::xarray<T>{T(p.b)});
    Parameter<T> W2(xt::xarray<T>{{T(p.w3), T(p.w4)}}), b2(xt::xarray<T>{T(p.b3), T(p.b4)});
    Tape<T> tape;
    auto x = tape.constant(xt::xarray<T>{{T(p.x1), T(p.x2)}});
    auto a = sigmoid(linear(x, tape.param(W1), tape.param(b1)));
    auto out = sigmoid(linear(a, tape.param(W2), tape.param(b2)));
    auto C = sum(square(out - tape.constant(xt::xarray<T>{{T(p.t3), T(p.t4)}})));
    tape.backward(C);
    const double t = tol<T>();
    EXPECT_NEAR(C.item(), c.C, t * (1 + c.C));
    EXPECT_NEAR(W1.grad()(0, 0), c.dw1, t * (1 + std::abs(c.dw1)));
    EXPECT_NEAR(W1.grad()(1, 0), c.dw2, t * (1 + std::abs(c.dw2)));
    EXPECT_NEAR(b1.grad()(0), c.db, t * (1 + std::abs(c.db)));
    EXPECT_NEAR(W2.grad()(0, 0), c.dw3, t * (1 + std::abs(c.dw3)));
    EXPECT_NEAR(W2.grad()(0, 1), c.dw4, t * (1 + std::abs(c.dw4)));
    EXPECT_NEAR(b2.grad()(0), c.db3, t * (1 + std::abs(c.db3)));
    EXPECT_NEAR(b2.grad()(1), c.db4, t * (1 + std::abs(c.db4)));
  }
}

}  // namespace
