// CNN training-step benchmark: the libtorch contender (compiled only when find_package(Torch)
// succeeds; WENGERT_BENCH_HAVE_TORCH is then defined for bench_cnn.cpp). The same step as
// cnn_floor.hpp written the way a libtorch user would: leaf tensors with requires_grad,
// torch::conv2d (libtorch picks its own convolution kernel: on this CPU build mkldnn/oneDNN or
// its im2col "slow_conv2d"), relu, max_pool2d, flatten, addmm, cross_entropy, backward, SGD
// under NoGradGuard, gradients reset to undefined after the update. No torch header here.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cnn_floor.hpp"

namespace wengert_bench {

class TorchCNN {
 public:
  explicit TorchCNN(const CnnProblem& p);
  ~TorchCNN();
  TorchCNN(const TorchCNN&) = delete;
  TorchCNN& operator=(const TorchCNN&) = delete;

  float step();
  /// For checks: keep the next step's gradients (not reset after the update).
  void keep_grads(bool keep);
  std::vector<float> grad_weight(int l) const;
  std::vector<float> grad_bias(int l) const;
  std::vector<float> weight(int l) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wengert_bench

namespace wengert_bench {
/// libtorch's intra-op threads (inter-op threads 1), and "libtorch 1.13.1, intra-op threads N".
void cnn_torch_set_threads(int n);
std::string cnn_torch_info();
}  // namespace wengert_bench
