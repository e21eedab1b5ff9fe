// Seed 003 (MiniFlow's Linear node, explained): forward Z = X·W + b, and a backward that,
// for each outbound node n with grad_cost = n.gradients[self] (G below), accumulates
//   dX += np.dot(G, W.T)            dX = G·Wᵀ          [m,k] = [m,n]·[n,k]
//   dW += np.dot(X.T, G)            dW = Xᵀ·G          [k,n] = [k,m]·[m,n]
//   db += np.sum(G, axis=0)         db = Σ_rows G      [n]
// summed over the outbound nodes ("if a node has multiple outgoing nodes, you just sum up the
// gradients from each node"). Layout as in the seed: X [m,k] holds one example per row, W
// [k,n], b [n] broadcast over the rows. The seed's code has no slip; seed 000, which shows the
// same code, says of its scalar form z_il = Σ_j x_ij·w_jl + b_l that it is "the dot product of
// row i of X and column j of W" — it is column l (j is the summed feature index); the test
// follows the math.
//
// The reference is plain loops in double over the same (for float, float-rounded) inputs. Each
// element is compared against atol + rtol·Σ|terms| — the sum of the absolute values of the
// products it adds up — which bounds the round-off of any summation order (BLAS blocks, FMA):
// |error| ≤ k·ε·Σ|terms|, with k ≤ 65 here.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <xtensor/xarray.hpp>

#include "nn_test_util.hpp"

using namespace wengert;

namespace {

struct Dims {
  std::size_t m, k, n;  // X [m,k], W [k,n], b [n], G [m,n]
};

// 1×1 everything; X 1×k (one example); X m×1 (one feature); W 1×n; W k×1 (one output); and
// sizes that leave SIMD and GEMM-block remainders.
const std::vector<Dims> kDims = {{1, 1, 1}, {1, 7, 1}, {7, 1, 1},  {1, 1, 6},   {1, 6, 1},
                                 {6, 1, 6}, {3, 4, 5}, {8, 16, 3}, {33, 17, 9}, {64, 65, 2}};

std::string dims_name(const Dims& d) {
  return "X [" + std::to_string(d.m) + "," + std::to_string(d.k) + "], W [" + std::to_string(d.k) +
         "," + std::to_string(d.n) + "]";
}

struct Problem {
  xt::xarray<double> X, W, b, G;
};

// Values in [-1, 1) cast to T and back, so that the double reference sees the very numbers the
// engine sees.
template <class T>
Problem make_problem(const Dims& d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto r = [&](std::vector<std::size_t> s) {
    return nntest::cast<double>(nntest::cast<T>(nntest::random_array(s, rng)));
  };
  Problem p;
  p.X = r({d.m, d.k});
  p.W = r({d.k, d.n});
  p.b = r({d.n});
  p.G = r({d.m, d.n});
  return p;
}

// A value and the sum of |terms| that made it: the scale its round-off is measured against.
struct Ref {
  xt::xarray<double> v, mag;
};

// Seed 003's three formulas written out index by index, with no wengert op involved.
struct Expected {
  Ref Z, dX, dW, db;
};

Expected seed_formulas(const Problem& p, const std::vector<const xt::xarray<double>*>& Gs) {
  const std::size_t m = p.X.shape(0), k = p.X.shape(1), n = p.W.shape(1);
  Expected e;
  auto zeros = [](std::vector<std::size_t> s) {
    Ref r;
    r.v = xt::xarray<double>::from_shape(s);
    r.mag = xt::xarray<double>::from_shape(s);
    r.v.fill(0.0);
    r.mag.fill(0.0);
    return r;
  };
  e.Z = zeros({m, n});
  e.dX = zeros({m, k});
  e.dW = zeros({k, n});
  e.db = zeros({n});
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t l = 0; l < n; ++l) {  // z_il = Σ_j x_ij·w_jl + b_l
      double s = p.b(l), a = std::abs(p.b(l));
      for (std::size_t j = 0; j < k; ++j) {
        s += p.X(i, j) * p.W(j, l);
        a += std::abs(p.X(i, j) * p.W(j, l));
      }
      e.Z.v(i, l) = s;
      e.Z.mag(i, l) = a;
    }
  for (const xt::xarray<double>* Gp : Gs) {  // one pass per outbound node, summed
    const xt::xarray<double>& G = *Gp;
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < k; ++j)  // (G·Wᵀ)_ij = Σ_l G_il·W_jl
        for (std::size_t l = 0; l < n; ++l) {
          e.dX.v(i, j) += G(i, l) * p.W(j, l);
          e.dX.mag(i, j) += std::abs(G(i, l) * p.W(j, l));
        }
    for (std::size_t j = 0; j < k; ++j)
      for (std::size_t l = 0; l < n; ++l)  // (Xᵀ·G)_jl = Σ_i X_ij·G_il
        for (std::size_t i = 0; i < m; ++i) {
          e.dW.v(j, l) += p.X(i, j) * G(i, l);
          e.dW.mag(j, l) += std::abs(p.X(i, j) * G(i, l));
        }
    for (std::size_t l = 0; l < n; ++l)  // db_l = Σ_i G_il
      for (std::size_t i = 0; i < m; ++i) {
        e.db.v(l) += G(i, l);
        e.db.mag(l) += std::abs(G(i, l));
      }
  }
  return e;
}

template <class E>
::testing::AssertionResult matches(const E& got_expr, const Ref& want, double rtol,
                                   const char* what) {
  const xt::xarray<double> got = got_expr;
  if (got.shape() != want.v.shape())
    return ::testing::AssertionFailure() << what << ": shape differs";
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got.data()[i], w = want.v.data()[i];
    const double tol = 1e-300 + rtol * want.mag.data()[i];
    if (!(std::abs(g - w) <= tol))
      return ::testing::AssertionFailure()
             << what << " element " << i << ": engine " << g << ", seed formula " << w
             << " (|difference| " << std::abs(g - w) << " > " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}

template <class T>
double rtol() {
  // double: far below any real error, far above k·ε = 65·1.1e-16. float: 65·6e-8 = 3.9e-6.
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <class T>
class Seed003 : public ::testing::Test {};
using Scalars = ::testing::Types<double, float>;
TYPED_TEST_SUITE(Seed003, Scalars);

// X a tape variable (MiniFlow's Input), W and b Parameters (its trainables); y either the fused
// linear op or bias_add(matmul(x, W), b); backward seeded with G.
TYPED_TEST(Seed003, VjpWithRandomUpstreamGradientMatchesTheSeedsFormulas) {
  using T = TypeParam;
  for (bool fused : {true, false})
    for (std::size_t c = 0; c < kDims.size(); ++c) {
      const Dims d = kDims[c];
      SCOPED_TRACE(dims_name(d) + (fused ? ", linear" : ", bias_add(matmul)"));
      const Problem p = make_problem<T>(d, 3000 + c);
      const Expected e = seed_formulas(p, {&p.G});
      Parameter<T> W(nntest::cast<T>(p.W), "W"), b(nntest::cast<T>(p.b), "b");
      Tape<T> tape;
      auto x = tape.variable(nntest::cast<T>(p.X));
      auto Wv = tape.param(W), bv = tape.param(b);
      auto y = fused ? linear(x, Wv, bv) : bias_add(matmul(x, Wv), bv);
      const xt::xarray<T> G = nntest::cast<T>(p.G);
      tape.backward(y, G);
      EXPECT_TRUE(matches(y.value(), e.Z, rtol<T>(), "Z = X·W + b"));
      EXPECT_TRUE(matches(x.grad(), e.dX, rtol<T>(), "dX = G·Wᵀ"));
      EXPECT_TRUE(matches(W.grad(), e.dW, rtol<T>(), "dW = Xᵀ·G"));
      EXPECT_TRUE(matches(b.grad(), e.db, rtol<T>(), "db = Σ_rows G"));
    }
}

// All three inputs as tape variables, and only one of them asked for at a time (wrt): each
// gradient on its own equals its formula.
TYPED_TEST(Seed003, EachGradientAloneWithVariables) {
  using T = TypeParam;
  for (std::size_t c = 0; c < kDims.size(); ++c) {
    const Dims d = kDims[c];
    SCOPED_TRACE(dims_name(d));
    const Problem p = make_problem<T>(d, 4000 + c);
    const Expected e = seed_formulas(p, {&p.G});
    const xt::xarray<T> G = nntest::cast<T>(p.G);
    for (int which = 0; which < 3; ++which)
      for (bool fused : {true, false}) {
        Tape<T> tape;
        auto x = tape.variable(nntest::cast<T>(p.X));
        auto Wv = tape.variable(nntest::cast<T>(p.W));
        auto bv = tape.variable(nntest::cast<T>(p.b));
        auto y = fused ? linear(x, Wv, bv) : bias_add(matmul(x, Wv), bv);
        const Var<T>& chosen = which == 0 ? x : which == 1 ? Wv : bv;
        tape.backward(y, G, {chosen});
        if (which == 0) {
          EXPECT_TRUE(matches(x.grad(), e.dX, rtol<T>(), "dX alone"));
        }
        if (which == 1) {
          EXPECT_TRUE(matches(Wv.grad(), e.dW, rtol<T>(), "dW alone"));
        }
        if (which == 2) {
          EXPECT_TRUE(matches(bv.grad(), e.db, rtol<T>(), "db alone"));
        }
      }
  }
}

// Two outbound nodes: loss = Σ(y ∗ G1) + Σ(y ∗ G2), so the two consumers of y hand back G1 and
// G2. The seed's loop adds G1·Wᵀ and G2·Wᵀ (and so on) into the same partials.
TYPED_TEST(Seed003, TwoOutboundNodesSumTheirGradients) {
  using T = TypeParam;
  for (std::size_t c = 0; c < kDims.size(); ++c) {
    const Dims d = kDims[c];
    SCOPED_TRACE(dims_name(d));
    const Problem p = make_problem<T>(d, 5000 + c);
    std::mt19937_64 rng(6000 + c);
    const xt::xarray<double> G2 =
        nntest::cast<double>(nntest::cast<T>(nntest::random_array({d.m, d.n}, rng)));
    const Expected e = seed_formulas(p, {&p.G, &G2});
    for (bool fused : {true, false}) {
      Parameter<T> W(nntest::cast<T>(p.W)), b(nntest::cast<T>(p.b));
      Tape<T> tape;
      auto x = tape.variable(nntest::cast<T>(p.X));
      auto Wv = tape.param(W), bv = tape.param(b);
      auto y = fused ? linear(x, Wv, bv) : bias_add(matmul(x, Wv), bv);
      auto loss = sum(y * tape.constant(nntest::cast<T>(p.G))) +
                  sum(y * tape.constant(nntest::cast<T>(G2)));
      tape.backward(loss);
      EXPECT_TRUE(matches(x.grad(), e.dX, rtol<T>(), "dX = G1·Wᵀ + G2·Wᵀ"));
      EXPECT_TRUE(matches(W.grad(), e.dW, rtol<T>(), "dW = Xᵀ·G1 + Xᵀ·G2"));
      EXPECT_TRUE(matches(b.grad(), e.db, rtol<T>(), "db = Σ_rows G1 + Σ_rows G2"));
    }
  }
}

// A hand-sized case whose every number is exact in binary, compared with EXPECT_EQ:
// X = [[1, 2], [3, 4]], W = [[1, 0, −1], [2, 1, 0]], b = [0.5, −1, 2], G = [[1, −1, 2], [0, 3, 1]]
//   Z  = X·W + b = [[5.5, 1, 1], [11.5, 3, −1]]
//   dX = G·Wᵀ   = [[−1, 1], [−1, 3]]
//   dW = Xᵀ·G   = [[1, 8, 5], [2, 10, 8]]
//   db = Σ_rows G = [1, 2, 3]
TYPED_TEST(Seed003, SmallExactExample) {
  using T = TypeParam;
  for (bool fused : {true, false}) {
    Parameter<T> W(xt::xarray<T>{{1, 0, -1}, {2, 1, 0}}), b(xt::xarray<T>{0.5, -1, 2});
    Tape<T> tape;
    auto x = tape.variable(xt::xarray<T>{{1, 2}, {3, 4}});
    auto y = fused ? linear(x, tape.param(W), tape.param(b))
                   : bias_add(matmul(x, tape.param(W)), tape.param(b));
    tape.backward(y, xt::xarray<T>{{1, -1, 2}, {0, 3, 1}});
    EXPECT_EQ(xt::xarray<T>(y.value()), (xt::xarray<T>{{5.5, 1, 1}, {11.5, 3, -1}}));
    EXPECT_EQ(xt::xarray<T>(x.grad()), (xt::xarray<T>{{-1, 1}, {-1, 3}}));
    EXPECT_EQ(xt::xarray<T>(W.grad()), (xt::xarray<T>{{1, 8, 5}, {2, 10, 8}}));
    EXPECT_EQ(xt::xarray<T>(b.grad()), (xt::xarray<T>{1, 2, 3}));
  }
}

}  // namespace
