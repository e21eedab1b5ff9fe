// CNN training-step benchmark: the wengert contender — the step of cnn_floor.hpp written the
// way a wengert user writes it: Parameters, one tape cleared and reused each step, the ops
// conv2d, relu, max_pool2d, flatten, linear and softmax_cross_entropy, backward, nn::SGD.
// After the first step the tape's arena is warm and a step allocates nothing.
#pragma once

#include <memory>
#include <vector>

#include <wengert/nn/optim.hpp>
#include <wengert/wengert.hpp>

#include "cnn_floor.hpp"

namespace wengert_bench {

class WengertCNN {
 public:
  explicit WengertCNN(const CnnProblem& p);
  WengertCNN(const WengertCNN&) = delete;
  WengertCNN& operator=(const WengertCNN&) = delete;

  /// One step (zero_grad, forward, loss, backward, SGD); returns the loss before the update.
  float step();

  const wengert::Parameter<float>& weight(int l) const { return *W_[l]; }
  const wengert::Parameter<float>& bias(int l) const { return *b_[l]; }

 private:
  const CnnProblem* p_;
  std::unique_ptr<wengert::Parameter<float>> W_[4], b_[4];
  std::unique_ptr<wengert::nn::SGD<float>> opt_;
  wengert::Tape<float> tape_;
};

}  // namespace wengert_bench
