// CNN training-step benchmark: the workload and the hand-written OpenBLAS "floor".
//
// Every contender (wengert, this floor, libtorch) runs the same step on the same data: the CNN
// of `wengert-train --model cnn`, float32, NCHW, batch 64 of 28×28 grey images:
//   conv1 3×3, 1 → 32 channels, padding 1 → relu → max pool 2×2       [64,32,14,14]
//   conv2 3×3, 32 → 64 channels, padding 1 → relu → max pool 2×2      [64,64,7,7]
//   flatten → linear 3136 → 128 → relu → linear 128 → 10 → softmax cross-entropy (mean)
//   backward through all of it (no gradient for the images), then plain SGD on every weight.
//
// The floor is what one would write by hand for exactly this network: every buffer allocated
// once; convolution as im2col + cblas_sgemm per image (W [O,K]·col [K,P], no transposed copies:
// transpose flags), dW accumulated by beta = 1 GEMMs, dx by a GEMM and col2im; bias and relu
// fused into the pass over each GEMM's output; max pooling keeps argmax indices; the linear
// layers are GEMMs with the bias added in place. Its buffers come from the allocator wengert's
// tape and parameters use (64-byte aligned, 2 MiB and more on transparent huge pages), so that
// neither contender has a TLB advantage. Only cnn_floor.cpp includes <cblas.h>, so this header
// is safe to include next to wengert.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <wengert/arena.hpp>  // AlignedVector: the buffers wengert's tape and parameters use

namespace wengert_bench {

/// The CNN's sizes; the defaults are wengert-train's --model cnn on Fashion-MNIST.
struct CnnShape {
  std::size_t batch = 64, side = 28, c1 = 32, c2 = 64, hidden = 128, classes = 10;
  std::size_t flat() const { return c2 * (side / 4) * (side / 4); }
};

/// Inputs and initial parameters, deterministic from a seed, identical for every contender.
/// Weights: conv1 W [c1,1,3,3], conv2 W [c2,c1,3,3], fc1 W [flat, hidden], fc2 W [hidden,
/// classes] (He / Xavier uniform), biases small and nonzero (so that their gradients matter).
struct CnnProblem {
  CnnShape s;
  std::vector<float> x;              // [batch, 1, side, side]
  std::vector<std::int32_t> labels;  // [batch]
  std::vector<float> W0[4], b0[4];   // conv1, conv2, fc1, fc2
  float lr = 0.01f;
};
CnnProblem make_cnn_problem(const CnnShape& s = {}, std::uint64_t seed = 42);

/// The hand-written step.
class FloorCNN {
 public:
  explicit FloorCNN(const CnnProblem& p);
  FloorCNN(const FloorCNN&) = delete;
  FloorCNN& operator=(const FloorCNN&) = delete;

  /// One step (forward, loss, backward, SGD); returns the loss before the update. Allocates
  /// nothing.
  float step();

  const float* weight(int l) const { return W_[l].data(); }
  const float* bias(int l) const { return b_[l].data(); }
  const float* grad_weight(int l) const { return dW_[l].data(); }
  const float* grad_bias(int l) const { return db_[l].data(); }
  std::size_t weight_size(int l) const { return W_[l].size(); }
  std::size_t bias_size(int l) const { return b_[l].size(); }

 private:
  const CnnProblem* p_;
  using Buf = wengert::AlignedVector<float>;
  Buf W_[4], b_[4], dW_[4], db_[4];
  Buf col1_, a1_, p1_, col2_, a2_, p2_, a3_, z4_;      // forward
  wengert::AlignedVector<std::uint32_t> arg1_, arg2_;  // max-pool winners
  Buf dz4_, dz3_, dp2_, da2_, dcol_, dp1_, da1_;       // backward
};

/// One hand-written convolution layer, 3×3 kernel, padding 1, stride 1 (bench_nn_ops's conv2d
/// baseline): N images x [C,S,S], W [O,C,3,3], y [N,O,S,S] = W·im2col(x_n) + b per image, with
/// every image's im2col matrix kept in col [N, C·9, S·S] for backward.
void conv3x3_forward(const float* x, const float* W, const float* b, std::size_t N, std::size_t C,
                     std::size_t S, std::size_t O, float* col, float* y);
/// Its backward, accumulating: dW += Σ_n G_n·col_nᵀ, db += Σ G, dx_n += col2im(Wᵀ·G_n) (dcol
/// is one image's [C·9, S·S] scratch).
void conv3x3_backward(const float* G, const float* col, const float* W, std::size_t N,
                      std::size_t C, std::size_t S, std::size_t O, float* dW, float* db, float* dx,
                      float* dcol);

}  // namespace wengert_bench
