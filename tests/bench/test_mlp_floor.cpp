// The benchmark's hand-written OpenBLAS step (benchmarks/mlp_floor.cpp) and wengert's step
// (benchmarks/mlp_wengert.cpp) must compute the same thing, or the wengert/floor ratios of
// benchmarks/RESULTS.md compare different work. Both are checked against each other on every
// workload, and on the small ones against an independent double-precision reference written
// as naive loops. Needs no libtorch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../../benchmarks/mlp_floor.hpp"
#include "../../benchmarks/mlp_wengert.hpp"
#include "alloc_counter.hpp"

namespace {

using namespace wengert_bench;

// max |a − b| / max |ref|.
template <class A, class B>
double rel_err(const A* a, const B* ref, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(ref[i])));
    den = std::max(den, std::fabs(double(ref[i])));
  }
  return den > 0 ? num / den : num;
}

// One forward + backward in double with naive loops: the loss and dW, db per layer.
struct Reference {
  double loss = 0;
  std::vector<std::vector<double>> dW, db;
};

Reference reference(const Problem& p) {
  const Workload& w = p.w;
  const std::size_t L = w.layers(), B = w.batch;
  std::vector<std::vector<double>> A(L + 1);  // A[0] = X, A[l+1] = tanh(Z_l), A[L] = logits
  A[0].assign(p.x.begin(), p.x.end());
  for (std::size_t l = 0; l < L; ++l) {
    const std::size_t in = w.sizes[l], out = w.sizes[l + 1];
    A[l + 1].assign(B * out, 0.0);
    for (std::size_t r = 0; r < B; ++r)
      for (std::size_t j = 0; j < out; ++j) {
        double z = p.b0[l][j];
        for (std::size_t k = 0; k < in; ++k) z += A[l][r * in + k] * double(p.W0[l][k * out + j]);
        A[l + 1][r * out + j] = l + 1 < L ? std::tanh(z) : z;
      }
  }
  Reference ref;
  const std::size_t C = w.sizes.back();
  std::vector<double> dZ(B * C);
  for (std::size_t r = 0; r < B; ++r) {
    const double* z = &A[L][r * C];
    if (w.loss == LossKind::kSoftmaxCrossEntropy) {
      const double m = *std::max_element(z, z + C);
      double s = 0;
      for (std::size_t j = 0; j < C; ++j) s += std::exp(z[j] - m);
      ref.loss += std::log(s) + m - z[p.labels[r]];
      for (std::size_t j = 0; j < C; ++j)
        dZ[r * C + j] = (std::exp(z[j] - m) / s - (int(j) == p.labels[r] ? 1.0 : 0.0)) / double(B);
    } else {  // −[y log σ + (1 − y) log(1 − σ)], one output
      const double sig = 1.0 / (1.0 + std::exp(-z[0])), y = p.targets[r];
      ref.loss += -(y * std::log(sig) + (1 - y) * std::log(1 - sig));
      dZ[r] = (sig - y) / double(B);
    }
  }
  ref.loss /= double(B);
  ref.dW.resize(L);
  ref.db.resize(L);
  for (std::size_t l = L; l-- > 0;) {
    const std::size_t in = w.sizes[l], out = w.sizes[l + 1];
    ref.dW[l].assign(in * out, 0.0);
    ref.db[l].assign(out, 0.0);
    for (std::size_t r = 0; r < B; ++r)
      for (std::size_t j = 0; j < out; ++j) {
        ref.db[l][j] += dZ[r * out + j];
        for (std::size_t k = 0; k < in; ++k)
          ref.dW[l][k * out + j] += A[l][r * in + k] * dZ[r * out + j];
      }
    if (l == 0) break;
    std::vector<double> prev(B * in, 0.0);  // dZ_{l-1} = (dZ_l·W_lᵀ) ⊙ (1 − A_l²)
    for (std::size_t r = 0; r < B; ++r)
      for (std::size_t k = 0; k < in; ++k) {
        double g = 0;
        for (std::size_t j = 0; j < out; ++j) g += dZ[r * out + j] * double(p.W0[l][k * out + j]);
        const double a = A[l][r * in + k];
        prev[r * in + k] = g * (1 - a * a);
      }
    dZ.swap(prev);
  }
  return ref;
}

class MlpFloor : public ::testing::TestWithParam<const char*> {};

TEST_P(MlpFloor, MatchesWengertLossGradientsAndUpdate) {
  const Problem p = make_problem(workload(GetParam()));
  FloorMLP floor(p);
  WengertMLP weng(p);
  const float lf = floor.step(), lw = weng.step();
  EXPECT_NEAR(lw, lf, 1e-5 * std::fabs(lf)) << "loss";
  for (std::size_t l = 0; l < p.w.layers(); ++l) {
    const std::size_t nW = p.w.sizes[l] * p.w.sizes[l + 1], nb = p.w.sizes[l + 1];
    EXPECT_LT(rel_err(weng.weight(l).grad_data(), floor.grad_weight(l), nW), 1e-4) << "dW" << l;
    EXPECT_LT(rel_err(weng.bias(l).grad_data(), floor.grad_bias(l), nb), 1e-4) << "db" << l;
    EXPECT_LT(rel_err(weng.weight(l).data(), floor.weight(l), nW), 1e-5)
        << "W" << l << " after SGD";
    EXPECT_LT(rel_err(weng.bias(l).data(), floor.bias(l), nb), 1e-5) << "b" << l << " after SGD";
  }
  // The second step starts from the updated parameters: equal losses mean equal updates.
  const float lf2 = floor.step(), lw2 = weng.step();
  EXPECT_NEAR(lw2, lf2, 1e-5 * std::fabs(lf2)) << "step-2 loss";
  EXPECT_LT(lf2, lf) << "SGD should lower the loss on a fixed batch";
}

// S3 is left out: its naive double loops take over 10 s.
class MlpFloorReference : public ::testing::TestWithParam<const char*> {};

TEST_P(MlpFloorReference, MatchesDoubleReference) {
  const Problem p = make_problem(workload(GetParam()));
  const Reference ref = reference(p);
  FloorMLP floor(p);
  const float lf = floor.step();
  EXPECT_NEAR(lf, ref.loss, 1e-5 * std::fabs(ref.loss));
  for (std::size_t l = 0; l < p.w.layers(); ++l) {
    const std::size_t nW = p.w.sizes[l] * p.w.sizes[l + 1], nb = p.w.sizes[l + 1];
    EXPECT_LT(rel_err(floor.grad_weight(l), ref.dW[l].data(), nW), 1e-4) << "dW" << l;
    EXPECT_LT(rel_err(floor.grad_bias(l), ref.db[l].data(), nb), 1e-4) << "db" << l;
  }
}

TEST_P(MlpFloor, SteadyStateStepsAllocateNothing) {
  const Problem p = make_problem(workload(GetParam()));
  FloorMLP floor(p);
  WengertMLP weng(p);
  floor.step();
  weng.step();
  weng.step();
  wengert::testing::AllocCounter c;
  floor.step();
  EXPECT_EQ(c.count(), 0u) << "floor";
  c.reset();
  weng.step();
  EXPECT_EQ(c.count(), 0u) << "wengert";
}

INSTANTIATE_TEST_SUITE_P(Workloads, MlpFloor, ::testing::Values("S0", "S1", "S2", "S3"),
                         [](const auto& info) { return std::string(info.param); });
INSTANTIATE_TEST_SUITE_P(Workloads, MlpFloorReference, ::testing::Values("S0", "S1", "S2"),
                         [](const auto& info) { return std::string(info.param); });

TEST(MlpOpChain, PlainLoopMatchesWengertAndChainRule) {
  for (std::size_t side : {1, 8}) {
    const std::size_t n = side * side;
    std::vector<float> x(n, 0.5f), w(n, kOpChainW), buf(1001 * n), g(n), gw(n);
    const float gp = plain_op_chain(x.data(), w.data(), n, 1000, buf.data(), g.data(), gw.data());
    WengertOpChain chain(side, 1000);
    EXPECT_NEAR(chain.run(), gp, 1e-6 * std::fabs(gp)) << side;
    EXPECT_NEAR(chain.run(), gp, 1e-6 * std::fabs(gp)) << side << " (reused tape)";
    // d/dx of the chain (1,000 tanh, or tanh and ·w alternating) at 0.5, by the chain rule in
    // double; and d/dw, the sum over the uses of w of (gradient above the use)·(value below).
    double y = 0.5, d = 1;
    std::vector<double> vals;
    for (int i = 0; i < 1000; ++i) {
      if (op_is_tanh(i)) {
        y = std::tanh(y);
        d *= 1 - y * y;
      } else {
        vals.push_back(y);
        y *= kOpChainW;
        d *= kOpChainW;
      }
    }
    EXPECT_NEAR(gp, d, 1e-4 * d) << side;
    double above = 1, dw = 0;  // walk back down: above = d(out)/d(value after op i)
    y = 0.5;
    std::vector<double> fwd(1001);
    fwd[0] = y;
    for (int i = 0; i < 1000; ++i)
      fwd[i + 1] = op_is_tanh(i) ? std::tanh(fwd[i]) : fwd[i] * kOpChainW;
    for (int i = 1000; i-- > 0;) {
      if (op_is_tanh(i)) {
        above *= 1 - fwd[i + 1] * fwd[i + 1];
      } else {
        dw += above * fwd[i];
        above *= kOpChainW;
      }
    }
    EXPECT_NEAR(gw[0], dw, 1e-4 * dw) << side;
    EXPECT_GT(fwd[1000], 0.03);  // normal floats all the way (see kOpChainW, kOpChainMixed)
  }
}

}  // namespace
