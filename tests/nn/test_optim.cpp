// Tests for nn/wengert/nn/optim.hpp: each update rule (SGD, momentum, Nesterov, Adam, AdamW,
// RMSprop) against numbers worked out by hand and
// against an independent reference loop (in double) over several steps on a quadratic; no
// allocation per step; aligned state; argument validation.
#include <wengert/nn/optim.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
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

// ---- AdamW, RMSprop ----------------------------------------------------------------------------

TYPED_TEST(OptimTest, AdamWMatchesDecoupledReference) {
  using T = TypeParam;
  const std::size_t n = 29;
  const double lr = 0.01, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1;
  Quadratic q(n);
  Parameter<T> p = make_param<T>(n, "p");
  std::vector<double> r(p.data(), p.data() + n), m(n, 0.0), v(n, 0.0);
  nn::AdamW<T> opt({&p}, nn::AdamWOptions{lr, b1, b2, eps, wd});
  for (int t = 1; t <= 4; ++t) {
    quadratic_grad(p, q.a, q.c);
    opt.step();
    for (std::size_t i = 0; i < n; ++i) {
      const double g = q.a[i] * (r[i] - q.c[i]);  // the gradient at the old point, no L2
      r[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      r[i] -= lr * mh / (std::sqrt(vh) + eps);
    }
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_NEAR(p.data()[i], r[i], 8 * tol<T>()) << "step " << t << " i " << i;
  }
  // Decoupled decay differs from Adam's L2 decay on the same problem.
  Parameter<T> a = make_param<T>(n, "a");
  Adam<T> l2({&a}, AdamOptions{lr, b1, b2, eps, wd});
  for (int t = 1; t <= 4; ++t) {
    quadratic_grad(a, q.a, q.c);
    l2.step();
  }
  double diff = 0;
  for (std::size_t i = 0; i < n; ++i)
    diff = std::max(diff, std::abs(double(a.data()[i] - p.data()[i])));
  EXPECT_GT(diff, 1e-4);
}

TYPED_TEST(OptimTest, RmspropMatchesReferenceInEveryMode) {
  using T = TypeParam;
  for (double mu : {0.0, 0.7})
    for (bool centered : {false, true}) {
      const std::size_t n = 21;
      const double lr = 0.01, alpha = 0.9, eps = 1e-8, wd = 0.05;
      Quadratic q(n);
      Parameter<T> p = make_param<T>(n, "p");
      std::vector<double> r(p.data(), p.data() + n), s(n, 0.0), b(n, 0.0), a(n, 0.0);
      nn::RMSprop<T> opt({&p}, nn::RMSpropOptions{lr, alpha, eps, wd, mu, centered});
      for (int t = 1; t <= 4; ++t) {
        quadratic_grad(p, q.a, q.c);
        opt.step();
        for (std::size_t i = 0; i < n; ++i) {
          const double g = q.a[i] * (r[i] - q.c[i]) + wd * r[i];
          s[i] = alpha * s[i] + (1 - alpha) * g * g;
          double d;
          if (centered) {
            a[i] = alpha * a[i] + (1 - alpha) * g;
            d = std::sqrt(s[i] - a[i] * a[i]) + eps;
          } else {
            d = std::sqrt(s[i]) + eps;
          }
          if (mu > 0) {
            b[i] = mu * b[i] + g / d;
            r[i] -= lr * b[i];
          } else {
            r[i] -= lr * g / d;
          }
        }
        for (std::size_t i = 0; i < n; ++i)
          ASSERT_NEAR(p.data()[i], r[i], 50 * tol<T>())
              << "mu " << mu << " centered " << centered << " step " << t << " i " << i;
      }
    }
  Parameter<T> p(Shape{2}, "p");
  EXPECT_THROW(nn::RMSprop<T>({&p}, nn::RMSpropOptions{0.01, 1.0}), ValueError);
  EXPECT_THROW(nn::RMSprop<T>({&p}, nn::RMSpropOptions{0.01, 0.9, -1.0}), ValueError);
}

// ---- clip_grad_norm ----------------------------------------------------------------------------

TYPED_TEST(OptimTest, ClipGradNormReturnsTheNormAndScales) {
  using T = TypeParam;
  // Two parameters, 10,007 and 3 elements: the global norm spans both and several blocks.
  Parameter<T> a(Shape{10007}, "a"), b(Shape{3}, "b");
  double sq = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    a.grad_data()[i] = T(std::sin(0.1 * double(i)));
    sq += double(a.grad_data()[i]) * double(a.grad_data()[i]);
  }
  const T bg[] = {T(3), T(-4), T(12)};
  for (int i = 0; i < 3; ++i) b.grad_data()[i] = bg[i], sq += double(bg[i]) * double(bg[i]);
  const double want = std::sqrt(sq);
  // Above the norm: nothing changes.
  std::vector<T> keep(a.grad_data(), a.grad_data() + a.size());
  EXPECT_NEAR(nn::clip_grad_norm<T>({&a, &b}, want * 2), want, want * 1e-6);
  EXPECT_EQ(std::memcmp(keep.data(), a.grad_data(), keep.size() * sizeof(T)), 0);
  // Below it: scaled to max_norm.
  const std::vector<Parameter<T>*> both{&a, &b};
  wengert::testing::AllocCounter count;
  const double got = nn::clip_grad_norm(both, 1.0);
  EXPECT_EQ(count.count(), 0u);
  EXPECT_NEAR(got, want, want * 1e-6);
  double after = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    after += double(a.grad_data()[i]) * double(a.grad_data()[i]);
  for (int i = 0; i < 3; ++i) after += double(b.grad_data()[i]) * double(b.grad_data()[i]);
  EXPECT_NEAR(std::sqrt(after), 1.0, 1e-5);
  EXPECT_NEAR(double(b.grad_data()[2]) / double(b.grad_data()[0]), 4.0, 1e-5);  // direction kept
  // A NaN or inf gradient: a ValueError naming the parameter, nothing scaled.
  b.grad_data()[1] = T(NAN);
  std::vector<T> before(a.grad_data(), a.grad_data() + a.size());
  try {
    nn::clip_grad_norm<T>({&a, &b}, 1e-3);
    ADD_FAILURE() << "a NaN gradient was clipped";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(std::memcmp(before.data(), a.grad_data(), before.size() * sizeof(T)), 0);
  EXPECT_THROW(nn::clip_grad_norm<T>({&a}, 0.0), ValueError);
  EXPECT_THROW(nn::clip_grad_norm<T>({&a}, -1.0), ValueError);
  // Exploding but finite: squares overflow T (and, for double, a double), yet the norm is
  // measured and the gradients clipped.
  const T big = std::numeric_limits<T>::max() / T(4);
  Parameter<T> e(Shape{3}, "e");
  e.grad_data()[0] = big, e.grad_data()[1] = -big, e.grad_data()[2] = T(1);
  const double norm = nn::clip_grad_norm<T>({&e}, 2.0);
  EXPECT_NEAR(norm / (double(big) * std::sqrt(2.0)), 1.0, 1e-12);
  EXPECT_NEAR(double(e.grad_data()[0]), std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(double(e.grad_data()[1]), -std::sqrt(2.0), 1e-6);
}

// ---- state save / restore ----------------------------------------------------------------------

// Six steps straight, or three steps, state saved, a new optimizer restored from it, and three
// more: every parameter bit and every state bit agree.
template <class T, class Make>
void check_resume_is_exact(Make make) {
  const std::size_t n = 37;
  Quadratic qa(n), qb(5);
  Parameter<T> a1 = make_param<T>(n, "a"), b1 = make_param<T>(5, "b", -0.5);
  Parameter<T> a2 = a1, b2 = b1;
  auto opt1 = make(std::vector<Parameter<T>*>{&a1, &b1});
  auto run = [&](auto& opt, Parameter<T>& a, Parameter<T>& b, int steps) {
    for (int s = 0; s < steps; ++s) {
      quadratic_grad(a, qa.a, qa.c);
      quadratic_grad(b, qb.a, qb.c);
      opt->set_lr(T(0.01 * (1 + s % 3)));
      opt->step();
    }
  };
  run(opt1, a1, b1, 6);
  {
    auto first = make(std::vector<Parameter<T>*>{&a2, &b2});
    run(first, a2, b2, 3);
    nn::StateDict sd;
    first->state_dict(sd);
    EXPECT_EQ(sd.get_u64("optimizer.step", "test"), 3u);
    auto second = make(std::vector<Parameter<T>*>{&a2, &b2});
    second->load_state_dict(sd);
    EXPECT_EQ(second->steps(), 3u);
    EXPECT_EQ(second->lr(), first->lr());
    run(second, a2, b2, 3);
    nn::StateDict s1, s2;
    opt1->state_dict(s1);
    second->state_dict(s2);
    ASSERT_EQ(s1.size(), s2.size());
    for (std::size_t i = 0; i < s1.size(); ++i) {
      const auto& e1 = s1.entries()[i];
      const auto& e2 = s2.entries()[i];
      EXPECT_EQ(e1.name, e2.name);
      EXPECT_TRUE(e1.values == e2.values) << e1.name;
    }
  }
  EXPECT_EQ(std::memcmp(a1.data(), a2.data(), n * sizeof(T)), 0);
  EXPECT_EQ(std::memcmp(b1.data(), b2.data(), 5 * sizeof(T)), 0);
}

TYPED_TEST(OptimTest, ResumedFromStateDictEveryOptimizerIsBitIdentical) {
  using T = TypeParam;
  using P = std::vector<Parameter<T>*>;
  check_resume_is_exact<T>([](const P& ps) {
    return std::make_unique<SGD<T>>(ps, SGDOptions{0.01, 0.9, true, 1e-3});
  });
  check_resume_is_exact<T>(
      [](const P& ps) { return std::make_unique<Adam<T>>(ps, AdamOptions{0.01}); });
  check_resume_is_exact<T>([](const P& ps) { return std::make_unique<nn::AdamW<T>>(ps); });
  check_resume_is_exact<T>([](const P& ps) {
    return std::make_unique<nn::RMSprop<T>>(ps, nn::RMSpropOptions{0.01, 0.9, 1e-8, 0, 0.5, true});
  });
}

// ---- the split step (begin_step + update over ranges), as data-parallel threads use it -----

// step() on one copy; begin_step() and update() over ranges cut at multiples of kAlign into
// each parameter, in shuffled order, on the other: bit for bit the same, step after step.
template <class T, class Make>
void check_split_step_is_exact(Make make) {
  const std::vector<std::size_t> sizes{37, 5, 100, 16, 1};
  std::vector<Parameter<T>> ps1, ps2;
  std::vector<Quadratic> qs;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ps1.push_back(make_param<T>(sizes[i], "p", 1.0 + double(i)));
    qs.emplace_back(sizes[i]);
  }
  ps2 = ps1;
  auto ps3 = ps1;
  std::vector<Parameter<T>*> l1, l2, l3;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    l1.push_back(&ps1[i]);
    l2.push_back(&ps2[i]);
    l3.push_back(&ps3[i]);
  }
  auto whole = make(l1), split = make(l2), pieces = make(l3);
  // pieces: update_parameter over blocks of kAlign elements of each parameter, shuffled.
  std::vector<std::array<std::size_t, 3>> blocks;
  for (std::size_t i = 0; i < sizes.size(); ++i)
    for (std::size_t lo = 0; lo < sizes[i]; lo += nn::Optimizer<T>::kAlign)
      blocks.push_back({i, lo, std::min(sizes[i], lo + nn::Optimizer<T>::kAlign)});
  ASSERT_EQ(split->numel(), 159u);
  // Cuts: every parameter start, plus aligned cuts inside the 37- and 100-element ones.
  const std::vector<std::size_t> cuts{0, 16, 32, 37, 42, 58, 74, 138, 142, 158, 159};
  std::mt19937 rng(5);
  for (int s = 0; s < 5; ++s) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      quadratic_grad(ps1[i], qs[i].a, qs[i].c);
      quadratic_grad(ps2[i], qs[i].a, qs[i].c);
      quadratic_grad(ps3[i], qs[i].a, qs[i].c);
    }
    whole->step();
    pieces->begin_step();
    std::shuffle(blocks.begin(), blocks.end(), rng);
    for (const auto& blk : blocks) pieces->update_parameter(blk[0], blk[1], blk[2]);
    split->begin_step();
    std::vector<std::size_t> order(cuts.size() - 1);
    for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t k : order) split->update(cuts[k], cuts[k + 1]);
    ASSERT_EQ(split->steps(), whole->steps());
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(std::memcmp(ps1[i].data(), ps2[i].data(), sizes[i] * sizeof(T)), 0) << "param " << i;
    EXPECT_EQ(std::memcmp(ps1[i].data(), ps3[i].data(), sizes[i] * sizeof(T)), 0) << "param " << i;
  }
  // A range outside the parameters, or reversed, is refused.
  EXPECT_THROW(split->update(150, 160), UsageError);
  EXPECT_THROW(split->update(10, 9), UsageError);
  split->update(159, 159);                                        // empty: nothing to do
  EXPECT_THROW(pieces->update_parameter(5, 0, 1), UsageError);    // no parameter 5
  EXPECT_THROW(pieces->update_parameter(1, 0, 6), UsageError);    // parameter 1 has 5 elements
  EXPECT_THROW(pieces->update_parameter(2, 20, 10), UsageError);  // reversed
  pieces->update_parameter(4, 1, 1);                              // empty: nothing to do
}

TYPED_TEST(OptimTest, SplitStepEqualsStepBitForBit) {
  using T = TypeParam;
  using P = std::vector<Parameter<T>*>;
  check_split_step_is_exact<T>([](const P& ps) { return std::make_unique<SGD<T>>(ps, T(0.05)); });
  check_split_step_is_exact<T>([](const P& ps) {
    return std::make_unique<SGD<T>>(ps, SGDOptions{0.01, 0.9, true, 1e-3});
  });
  check_split_step_is_exact<T>([](const P& ps) {
    return std::make_unique<SGD<T>>(ps, SGDOptions{0.01, 0.9, false, 1e-3});
  });
  check_split_step_is_exact<T>(
      [](const P& ps) { return std::make_unique<Adam<T>>(ps, AdamOptions{0.01}); });
  check_split_step_is_exact<T>([](const P& ps) { return std::make_unique<nn::AdamW<T>>(ps); });
  check_split_step_is_exact<T>([](const P& ps) {
    return std::make_unique<nn::RMSprop<T>>(ps, nn::RMSpropOptions{0.01, 0.9, 1e-8, 0, 0.5, true});
  });
}

TYPED_TEST(OptimTest, UpdateOfAResizedParameterIsRefused) {
  using T = TypeParam;
  Parameter<T> p = make_param<T>(8, "p");
  SGD<T> opt({&p}, T(0.1));
  opt.begin_step();
  p = Parameter<T>(Shape{4}, "p");  // assigned over: the optimizer's storage is orphaned
  EXPECT_THROW(opt.update(0, 8), UsageError);
  EXPECT_THROW(opt.update_parameter(0, 0, 4), UsageError);  // within the new size, still refused
}

TYPED_TEST(OptimTest, LoadStateDictRefusesWhatDoesNotFitAndKeepsItsState) {
  using T = TypeParam;
  Parameter<T> a = make_param<T>(7, "a"), b = make_param<T>(3, "b");
  Quadratic qa(7), qb(3);
  Adam<T> opt({&a, &b});
  quadratic_grad(a, qa.a, qa.c);
  quadratic_grad(b, qb.a, qb.c);
  opt.step();
  nn::StateDict good;
  opt.state_dict(good);
  EXPECT_TRUE(good.contains("optimizer.1.exp_avg_sq"));
  EXPECT_TRUE(good.contains("optimizer.beta2_power"));
  auto expect_refused = [&](const nn::StateDict& sd, const std::string& needle) {
    nn::StateDict before;
    opt.state_dict(before);
    try {
      opt.load_state_dict(sd);
      ADD_FAILURE() << "accepted a state with " << needle;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    nn::StateDict after;
    opt.state_dict(after);
    for (std::size_t i = 0; i < before.size(); ++i)
      EXPECT_TRUE(before.entries()[i].values == after.entries()[i].values);
  };
  nn::StateDict missing = good;
  missing.erase("optimizer.1.exp_avg");
  expect_refused(missing, "'optimizer.1.exp_avg' is missing");
  nn::StateDict shape = good;
  std::vector<T> z(8, T(0));
  shape.set("optimizer.0.exp_avg", Shape{8}, z.data());
  expect_refused(shape, "has shape [8], expected [7]");
  nn::StateDict extra = good;
  extra.set("optimizer.2.exp_avg", Shape{3}, z.data());
  expect_refused(extra, "'optimizer.2.exp_avg', which this Adam (with 2 parameters) does not keep");
  nn::StateDict slice = good;
  slice.set("optimizer.0.momentum_buffer", Shape{7}, z.data());
  expect_refused(slice, "'optimizer.0.momentum_buffer', which this Adam");
  // Another optimizer's state, or the same optimizer with other hyperparameters, is refused.
  nn::StateDict sgd;
  SGD<T>({&a, &b}, SGDOptions{0.1, 0.9}).state_dict(sgd);
  expect_refused(sgd, "the state is an SGD optimizer's, not Adam's");
  nn::StateDict adamw;
  nn::AdamW<T>({&a, &b}).state_dict(adamw);
  expect_refused(adamw, "the state is an AdamW optimizer's");
  nn::StateDict beta;
  Adam<T>({&a, &b}, AdamOptions{1e-3, 0.8}).state_dict(beta);
  expect_refused(beta, "saved with beta1 = 0.8");
  // And the other way round: Adam's state does not load into SGD or RMSprop either.
  SGD<T> plain({&a, &b}, T(0.1));
  EXPECT_THROW(plain.load_state_dict(good), ValueError);
  nn::RMSprop<T> rms({&a, &b});
  EXPECT_THROW(rms.load_state_dict(good), ValueError);
}

TYPED_TEST(OptimTest, NewOptimizersAllocateNothingPerStep) {
  using T = TypeParam;
  Parameter<T> a = make_param<T>(1000, "a"), b = make_param<T>(33, "b");
  Quadratic qa(1000), qb(33);
  nn::AdamW<T> adamw({&a, &b});
  nn::RMSprop<T> rms({&a, &b}, nn::RMSpropOptions{0.01, 0.99, 1e-8, 1e-4, 0.9, true});
  const std::vector<Parameter<T>*> ps{&a, &b};
  quadratic_grad(a, qa.a, qa.c);
  quadratic_grad(b, qb.a, qb.c);
  wengert::testing::AllocCounter count;
  for (int s = 0; s < 5; ++s) {
    nn::clip_grad_norm(ps, 0.5);
    adamw.step();
    rms.step();
  }
  EXPECT_EQ(count.count(), 0u);
}
