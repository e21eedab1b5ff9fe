// Tests for nn/wengert/nn/optim.hpp: each update rule against numbers worked out by hand and
// against an independent reference loop (in double) over several steps on a quadratic; no
// allocation per step; aligned state; argument validation.
#include <wengert/nn/optim.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "alloc_counter.hpp"

using namespace wengert;
using wengert::nn::Adam;
using wengert::nn::AdamOptions;
using wengert::nn::SGD;
using wengert::nn::SGDOptions;

namespace {

template <class T>
class OptimTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(OptimTest, Types);

// Tolerance for comparing a T computation with the double reference.
template <class T>
double tol() {
  return std::is_same_v<T, float> ? 2e-6 : 1e-13;
}

// f(p) = ½ Σ a_i (p_i − c_i)²  ⇒  ∇f = a ⊙ (p − c). Writes the gradient into p's grad.
template <class T>
void quadratic_grad(Parameter<T>& p, const std::vector<double>& a, const std::vector<double>& c) {
  for (std::size_t i = 0; i < p.size(); ++i)
    p.grad_data()[i] = T(a[i] * (double(p.data()[i]) - c[i]));
}

// A parameter of n elements with deterministic, varied values (not a multiple of any SIMD width).
template <class T>
Parameter<T> make_param(std::size_t n, const char* name, double scale = 1.0) {
  Parameter<T> p(Shape{n}, name);
  for (std::size_t i = 0; i < n; ++i)
    p.data()[i] = T(scale * std::sin(0.7 * double(i) + 0.3) * 2.0);
  return p;
}

struct Quadratic {
  std::vector<double> a, c;
  explicit Quadratic(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      a.push_back(0.5 + 0.1 * double(i % 7));
      c.push_back(0.25 * std::cos(double(i)));
    }
  }
};

}  // namespace

// ---- SGD -------------------------------------------------------------------------------------

TYPED_TEST(OptimTest, SgdOneStepMatchesHandComputedUpdate) {
  using T = TypeParam;
  // f = ½(1·p0² + 2·p1² + 0.5·p2²), p = (1, −2, 3): ∇f = (1, −4, 1.5); lr = 0.1.
  Parameter<T> p(Shape{3}, "p");
  p.data()[0] = T(1), p.data()[1] = T(-2), p.data()[2] = T(3);
  quadratic_grad(p, {1, 2, 0.5}, {0, 0, 0});
  SGD<T> opt({&p}, T(0.1));
  opt.step();
  EXPECT_NEAR(p.data()[0], 0.9, tol<T>());
  EXPECT_NEAR(p.data()[1], -1.6, tol<T>());
  EXPECT_NEAR(p.data()[2], 2.85, tol<T>());
  // step() leaves the gradient alone.
  EXPECT_EQ(p.grad_data()[1], T(-4));
}

TYPED_TEST(OptimTest, SgdWeightDecayAddsL2Gradient) {
  using T = TypeParam;
  // Same problem with weight_decay 0.01: g = (1.01, −4.02, 1.53).
  Parameter<T> p(Shape{3}, "p");
  p.data()[0] = T(1), p.data()[1] = T(-2), p.data()[2] = T(3);
  quadratic_grad(p, {1, 2, 0.5}, {0, 0, 0});
  SGD<T> opt({&p}, T(0.1), T(0.01));
  opt.step();
  EXPECT_NEAR(p.data()[0], 0.899, tol<T>());
  EXPECT_NEAR(p.data()[1], -1.598, tol<T>());
  EXPECT_NEAR(p.data()[2], 2.847, tol<T>());
}

TYPED_TEST(OptimTest, MomentumThreeStepsMatchHandComputedValues) {
  using T = TypeParam;
  // f = ½p², p0 = 1, lr = 0.1, μ = 0.9:
  //   g=1      v=1     p=0.9
  //   g=0.9    v=1.8   p=0.72
  //   g=0.72   v=2.34  p=0.486
  Parameter<T> p(Shape{1}, "p");
  p.data()[0] = T(1);
  SGD<T> opt({&p}, SGDOptions{0.1, 0.9});
  const double want[] = {0.9, 0.72, 0.486};
  const double want_v[] = {1, 1.8, 2.34};
  for (int s = 0; s < 3; ++s) {
    quadratic_grad(p, {1}, {0});
    opt.step();
    EXPECT_NEAR(p.data()[0], want[s], tol<T>()) << "step " << s + 1;
    EXPECT_NEAR(opt.momentum_buffer(0)[0], want_v[s], tol<T>()) << "step " << s + 1;
  }
}

TYPED_TEST(OptimTest, NesterovThreeStepsMatchHandComputedValues) {
  using T = TypeParam;
  // f = ½p², p0 = 1, lr = 0.1, μ = 0.9, p ← p − lr(g + μv):
  //   g=1       v=1       p = 1 − 0.1(1 + 0.9)           = 0.81
  //   g=0.81    v=1.71    p = 0.81 − 0.1(0.81 + 1.539)   = 0.5751
  //   g=0.5751  v=2.1141  p = 0.5751 − 0.1(0.5751 + 1.90269) = 0.327321
  Parameter<T> p(Shape{1}, "p");
  p.data()[0] = T(1);
  SGD<T> opt({&p}, SGDOptions{0.1, 0.9, true});
  const double want[] = {0.81, 0.5751, 0.327321};
  for (int s = 0; s < 3; ++s) {
    quadratic_grad(p, {1}, {0});
    opt.step();
    EXPECT_NEAR(p.data()[0], want[s], tol<T>()) << "step " << s + 1;
  }
}

TYPED_TEST(OptimTest, MomentumAndNesterovMatchReferenceOnVectors) {
  using T = TypeParam;
  for (bool nesterov : {false, true}) {
    const std::size_t n = 37;
    const double lr = 0.05, mu = 0.8, wd = 0.02;
    Quadratic q(n);
    Parameter<T> p1 = make_param<T>(n, "p1"), p2 = make_param<T>(5, "p2", -0.5);
    Quadratic q2(5);
    // Reference, in double, written from the update rule.
    std::vector<double> r1(p1.data(), p1.data() + n), r2(p2.data(), p2.data() + 5);
    std::vector<double> v1(n, 0.0), v2(5, 0.0);
    auto ref_step = [&](std::vector<double>& r, std::vector<double>& v, const Quadratic& qq) {
      for (std::size_t i = 0; i < r.size(); ++i) {
        double g = qq.a[i] * (r[i] - qq.c[i]) + wd * r[i];
        v[i] = mu * v[i] + g;
        r[i] -= lr * (nesterov ? g + mu * v[i] : v[i]);
      }
    };
    SGD<T> opt({&p1, &p2}, SGDOptions{lr, mu, nesterov, wd});
    for (int s = 0; s < 3; ++s) {
      quadratic_grad(p1, q.a, q.c);
      quadratic_grad(p2, q2.a, q2.c);
      opt.step();
      ref_step(r1, v1, q);
      ref_step(r2, v2, q2);
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_NEAR(p1.data()[i], r1[i], 4 * tol<T>())
            << "nesterov " << nesterov << " step " << s << " i " << i;
      for (std::size_t i = 0; i < 5; ++i)
        ASSERT_NEAR(p2.data()[i], r2[i], 4 * tol<T>()) << "nesterov " << nesterov << " step " << s;
    }
  }
}

// ---- Adam ------------------------------------------------------------------------------------

TYPED_TEST(OptimTest, AdamFirstStepIsLrTimesSignOfGradient) {
  using T = TypeParam;
  // At t = 1, m̂ = g and v̂ = g², so Δp = −lr · g / (|g| + ε).
  Parameter<T> p(Shape{4}, "p");
  const double p0[] = {1, -2, 3, 0.5}, g[] = {0.5, -3, 1e-3, 0};
  for (int i = 0; i < 4; ++i) p.data()[i] = T(p0[i]), p.grad_data()[i] = T(g[i]);
  Adam<T> opt({&p}, AdamOptions{0.01});
  opt.step();
  EXPECT_EQ(opt.steps(), 1u);
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(p.data()[i], p0[i] - 0.01 * g[i] / (std::abs(g[i]) + 1e-8), 4 * tol<T>()) << i;
}

TYPED_TEST(OptimTest, AdamThreeStepsMatchKingmaBaAlgorithm1) {
  using T = TypeParam;
  const std::size_t n = 37;  // exercises both the SIMD body and the scalar tail
  const double lr = 0.02, b1 = 0.8, b2 = 0.95, eps = 1e-6;
  Quadratic q(n);
  Parameter<T> p = make_param<T>(n, "p");
  std::vector<double> r(p.data(), p.data() + n), m(n, 0.0), v(n, 0.0);
  Adam<T> opt({&p}, AdamOptions{lr, b1, b2, eps});
  for (int t = 1; t <= 3; ++t) {
    quadratic_grad(p, q.a, q.c);
    opt.step();
    // Kingma & Ba (2015), Algorithm 1, with the bias-corrected estimates written as published.
    for (std::size_t i = 0; i < n; ++i) {
      double g = q.a[i] * (r[i] - q.c[i]);
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      double m_hat = m[i] / (1 - std::pow(b1, t));
      double v_hat = v[i] / (1 - std::pow(b2, t));
      r[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(p.data()[i], r[i], 8 * tol<T>()) << "t " << t << " i " << i;
      ASSERT_NEAR(opt.first_moment(0)[i], m[i], 8 * tol<T>() * (1 + std::abs(m[i])));
      ASSERT_NEAR(opt.second_moment(0)[i], v[i], 8 * tol<T>() * (1 + std::abs(v[i])));
    }
  }
  EXPECT_EQ(opt.steps(), 3u);
}

TYPED_TEST(OptimTest, AdamWeightDecayAndConvergence) {
  using T = TypeParam;
  // With L2 decay λ the minimiser of ½a(p − c)² + ½λp² is p* = a·c / (a + λ).
  const std::size_t n = 19;
  Quadratic q(n);
  Parameter<T> p = make_param<T>(n, "p");
  const double wd = 0.3;
  Adam<T> opt({&p}, AdamOptions{0.05, 0.9, 0.999, 1e-8, wd});
  for (int s = 0; s < 3000; ++s) {
    quadratic_grad(p, q.a, q.c);
    opt.step();
    if (s == 2000) opt.set_lr(T(0.005));  // settle: Adam's steps scale with lr, not |g|
  }
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_NEAR(p.data()[i], q.a[i] * q.c[i] / (q.a[i] + wd), 2e-3) << i;
}

// ---- shared behaviour ------------------------------------------------------------------------

TYPED_TEST(OptimTest, StepAllocatesNothing) {
  using T = TypeParam;
  Parameter<T> a = make_param<T>(1000, "a"), b = make_param<T>(33, "b");
  Quadratic qa(1000), qb(33);
  SGD<T> sgd({&a, &b}, T(0.01), T(1e-4));
  SGD<T> mom({&a, &b}, SGDOptions{0.01, 0.9, false, 1e-4});
  SGD<T> nes({&a, &b}, SGDOptions{0.01, 0.9, true});
  Adam<T> adam({&a, &b});
  quadratic_grad(a, qa.a, qa.c);
  quadratic_grad(b, qb.a, qb.c);
  wengert::testing::AllocCounter count;
  for (int s = 0; s < 5; ++s) {
    sgd.step();
    mom.step();
    nes.step();
    adam.step();
    adam.set_lr(T(0.001));
  }
  adam.zero_grad();
  nn::zero_grad(std::vector<Parameter<T>*>{});  // (empty list: no allocation either)
  EXPECT_EQ(count.count(), 0u);
  // Sanity: the steps did move the parameters and zero_grad zeroed the gradients.
  for (std::size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b.grad_data()[i], T(0));
}

TYPED_TEST(OptimTest, StateIsAlignedPerParameter) {
  using T = TypeParam;
  Parameter<T> a = make_param<T>(3, "a"), b = make_param<T>(17, "b"), c = make_param<T>(1, "c");
  SGD<T> mom({&a, &b, &c}, SGDOptions{0.1, 0.5});
  Adam<T> adam({&a, &b, &c});
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(mom.momentum_buffer(i)) % 64, 0u) << i;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(adam.first_moment(i)) % 64, 0u) << i;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(adam.second_moment(i)) % 64, 0u) << i;
    EXPECT_NE(adam.first_moment(i), adam.second_moment(i));
  }
  SGD<T> plain({&a}, T(0.1));
  EXPECT_EQ(plain.momentum_buffer(0), nullptr);
}

TYPED_TEST(OptimTest, ZeroGradOverAList) {
  using T = TypeParam;
  Parameter<T> a(Shape{2, 3}, "a"), b(Shape{4}, "b");
  for (std::size_t i = 0; i < a.size(); ++i) a.grad_data()[i] = T(i + 1);
  for (std::size_t i = 0; i < b.size(); ++i) b.grad_data()[i] = T(-1);
  nn::zero_grad(std::vector<Parameter<T>*>{&a, &b});
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a.grad_data()[i], T(0));
  for (std::size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b.grad_data()[i], T(0));
}

TYPED_TEST(OptimTest, SetLrChangesTheStep) {
  using T = TypeParam;
  Parameter<T> p(Shape{1}, "p");
  p.data()[0] = T(1);
  p.grad_data()[0] = T(2);
  SGD<T> opt({&p}, T(0.1));
  opt.set_lr(T(0.25));
  EXPECT_EQ(opt.lr(), T(0.25));
  opt.step();
  EXPECT_NEAR(p.data()[0], 0.5, tol<T>());
  EXPECT_THROW(opt.set_lr(T(-1)), ValueError);
  EXPECT_THROW(opt.set_lr(T(NAN)), ValueError);
}

TYPED_TEST(OptimTest, RejectsBadArguments) {
  using T = TypeParam;
  Parameter<T> p(Shape{2}, "p"), q(Shape{2}, "q");
  EXPECT_THROW(SGD<T>({&p}, T(-0.1)), ValueError);
  EXPECT_THROW(SGD<T>({&p}, T(INFINITY)), ValueError);
  EXPECT_THROW(SGD<T>({&p}, T(0.1), T(-1)), ValueError);
  EXPECT_THROW(SGD<T>({&p}, SGDOptions{0.1, -0.5}), ValueError);
  EXPECT_THROW(SGD<T>({&p}, SGDOptions{0.1, 0.0, true}), ValueError);  // Nesterov needs μ > 0
  EXPECT_THROW(Adam<T>({&p}, AdamOptions{0.1, 1.0}), ValueError);
  EXPECT_THROW(Adam<T>({&p}, AdamOptions{0.1, 0.9, -0.1}), ValueError);
  EXPECT_THROW(Adam<T>({&p}, AdamOptions{0.1, 0.9, 0.999, -1e-8}), ValueError);
  EXPECT_THROW(SGD<T>({&p, nullptr}, T(0.1)), UsageError);
  try {
    SGD<T>({&p, &q, &p}, T(0.1));
    ADD_FAILURE() << "duplicate parameter accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'p'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("twice"), std::string::npos) << e.what();
  }
}

TYPED_TEST(OptimTest, ReplacedParameterOfAnotherSizeIsAUsageError) {
  using T = TypeParam;
  Parameter<T> p(Shape{4}, "p");
  Adam<T> opt({&p});
  p = Parameter<T>(Shape{40}, "p");  // the optimizer's state is for 4 elements
  EXPECT_THROW(opt.step(), UsageError);
}
