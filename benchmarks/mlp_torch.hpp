// MLP training-step benchmark: the libtorch contender (compiled only when find_package(Torch)
// succeeds; WENGERT_BENCH_HAVE_TORCH is then defined for bench_mlp.cpp).
//
// The same step as the floor (mlp_floor.hpp), written the way a libtorch user would: leaf
// tensors W [in, out] and b [out] with requires_grad, z = addmm(b, h, W), tanh, the loss
// function, loss.backward(), then plain SGD under NoGradGuard. Gradients are reset to undefined
// after the update (PyTorch 2's zero_grad(set_to_none=True) default), which lets the next
// backward hand its fresh gradient tensors straight to the parameters instead of adding into
// zeroed ones — the faster choice for libtorch.
//
// No torch header is included here: libtorch's headers are slow to compile and stay in
// mlp_torch.cpp.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "mlp_floor.hpp"

namespace wengert_bench {

/// Sets libtorch's intra-op thread count (at::set_num_threads); inter-op threads are set to 1
/// the first time.
void torch_set_threads(int n);
/// "libtorch 1.13.0, intra-op threads N" and its parallel backend.
std::string torch_info();

class TorchMLP {
 public:
  explicit TorchMLP(const Problem& p);
  ~TorchMLP();
  TorchMLP(const TorchMLP&) = delete;
  TorchMLP& operator=(const TorchMLP&) = delete;

  /// One step; returns the loss before the update.
  float step();
  /// For checks: keep the gradients of the next step (they are not reset after the update;
  /// a following step would then accumulate into them).
  void keep_grads(bool keep);
  std::vector<float> grad_weight(std::size_t l) const;
  std::vector<float> grad_bias(std::size_t l) const;
  std::vector<float> weight(std::size_t l) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The OP workload in libtorch: x and w [side, side] with requires_grad, `ops` ops alternating
/// y = tanh(y) and y = y·w, y.backward(ones); both gradients reset to undefined after each run.
class TorchOpChain {
 public:
  TorchOpChain(std::size_t side, int ops);
  ~TorchOpChain();
  /// One record + backward; returns x.grad[0].
  float run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wengert_bench
