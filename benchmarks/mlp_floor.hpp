// MLP training-step benchmark: the workloads and the hand-written OpenBLAS "floor".
//
// Every contender (wengert, this floor, libtorch) runs the same step on the same data:
//   forward   Z_l = A_l·W_l + b_l,  A_{l+1} = tanh(Z_l) for hidden layers   (A_0 = X)
//   loss      softmax cross-entropy on integer labels, or sigmoid + binary cross-entropy on
//             0/1 targets (one output), averaged over the batch
//   backward  dW_l = A_lᵀ·dZ_l,  db_l = Σ_rows dZ_l,  dA_l = dZ_l·W_lᵀ,  dZ_{l-1} = dA_l ⊙ (1 −
//   A_l²) update    plain SGD of every weight and bias: p ← p − lr·dp
// float32, row-major: X [batch, in], W [in, out], b [out].
//
// The floor is what one would write by hand for exactly this network: buffers allocated once,
// GEMMs through cblas_sgemm with transpose flags (no transposed copies), bias add fused with
// tanh, and the other elementwise passes as xsimd loops. It is the reference the wengert/floor
// ratio is taken against. Only mlp_floor.cpp includes <cblas.h> (it cannot share a source file
// with xtensor-blas, which declares its own cblas_* functions), so this header is safe to
// include next to wengert.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wengert_bench {

enum class LossKind { kSoftmaxCrossEntropy, kSigmoidBinaryCrossEntropy };

/// One benchmark workload: batch size, layer sizes {in, hidden…, out}, loss.
struct Workload {
  const char* name;
  std::size_t batch;
  std::vector<std::size_t> sizes;
  LossKind loss;

  std::size_t layers() const { return sizes.size() - 1; }
  std::string describe() const;  // e.g. "batch 32, 64-64-64-10, softmax CE"
};

/// S0 (seed net), S1, S2, S3 — see benchmarks/RESULTS.md.
const std::vector<Workload>& workloads();
/// The workload named `name` ("S0".."S3"); throws std::invalid_argument otherwise.
const Workload& workload(const std::string& name);

/// Inputs and the initial parameters, generated deterministically from a seed so that every
/// contender starts from identical numbers.
struct Problem {
  Workload w;
  std::vector<float> x;                    // [batch, in]
  std::vector<std::int32_t> labels;        // [batch] class indices (softmax CE)
  std::vector<float> targets;              // [batch, 1] 0/1 (sigmoid BCE)
  std::vector<std::vector<float>> W0, b0;  // initial W_l [in, out] and b_l [out]
  float lr = 0.01f;
};
Problem make_problem(const Workload& w, std::uint64_t seed = 42);

/// The hand-written training step.
class FloorMLP {
 public:
  explicit FloorMLP(const Problem& p);
  FloorMLP(const FloorMLP&) = delete;
  FloorMLP& operator=(const FloorMLP&) = delete;
  ~FloorMLP();

  /// One step (forward, loss, backward, SGD) on the problem's batch; returns the loss of the
  /// forward pass (before the update). Allocates nothing.
  float step();

  std::size_t layers() const { return W_.size(); }
  const float* weight(std::size_t l) const { return W_[l]; }
  const float* bias(std::size_t l) const { return b_[l]; }
  /// Gradients of the last step (kept after the update).
  const float* grad_weight(std::size_t l) const { return dW_[l]; }
  const float* grad_bias(std::size_t l) const { return db_[l]; }

 private:
  float* buffer(std::size_t n);

  const Problem* p_;
  std::vector<float*> owned_;
  std::vector<float*> W_, b_, dW_, db_;  // per layer
  std::vector<float*> A_;                // A_[0] = X (not owned), A_[l+1] = tanh(Z_l); last: Z
  std::vector<float*> dZ_;               // per layer, [batch, out_l]
  float* dA_ = nullptr;                  // scratch [batch, max hidden]
  float* rowtmp_ = nullptr;              // scratch for the loss
};

/// The OP workload written as plain loops: `ops` elementwise ops alternating y = tanh(y) and
/// y = y·w (w a parameter of n values), every value kept; then the reverse pass from a seed of
/// ones, accumulating w's gradient into gw (zeroed first). tanh goes through the same xsimd
/// kernel as wengert's. `buf` holds (ops + 1)·n values, `g` and `gw` n values each.
/// Returns g[0], the gradient with respect to x[0].
float plain_op_chain(const float* x, const float* w, std::size_t n, int ops, float* buf, float* g,
                     float* gw);

/// The OP workload's multiplier: 1, so that the chain's values (≈ 0.05 after 500 tanh) and its
/// gradient (≈ 1e-3) stay normal floats. With w < 1 the values decay geometrically into the
/// range where tanh's polynomial squares to subnormals, and every op then pays the CPU's
/// microcode assists (measured: xsimd's float tanh 10 ns at 0.5, 44 ns at 1e-23) — a figure of
/// the FPU, not of the tape.
constexpr float kOpChainW = 1.0f;

/// The OP workload is the chain of 1,000 tanh ops (tanh iterated from 0.5 decays only
/// like √(3/2k), to ≈ 0.039 after 1,000: never subnormal). With kOpChainMixed every second op is
/// y·w instead (w a Parameter), which exercises a two-input op and a Parameter adjoint.
constexpr bool kOpChainMixed = false;
inline bool op_is_tanh(int i) { return !kOpChainMixed || i % 2 == 0; }

}  // namespace wengert_bench
