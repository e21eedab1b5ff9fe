// MLP training-step benchmark: the wengert contender.
//
// The step of mlp_floor.hpp written the way a wengert user writes it: Parameters for W and b,
// one tape reused across steps (clear() keeps its capacity), linear (the fused x·W + b layer)
// and tanh for each layer, the loss op, backward, then nn::SGD. After the first step the tape's
// arena, node list and the optimizer are all warm, so a step allocates nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include <wengert/nn/optim.hpp>
#include <wengert/wengert.hpp>

#include "mlp_floor.hpp"

namespace wengert_bench {

class WengertMLP {
 public:
  /// With `replay`, the first step records and every later one replays that recording
  /// (Tape::replay: the batch and labels are read from the same memory, the parameters as SGD
  /// left them), then backward and SGD as usual.
  explicit WengertMLP(const Problem& p, bool replay = false);
  WengertMLP(const WengertMLP&) = delete;
  WengertMLP& operator=(const WengertMLP&) = delete;

  /// One step (zero_grad, forward, loss, backward, SGD); returns the loss before the update.
  float step();

  std::size_t layers() const { return W_.size(); }
  const wengert::Parameter<float>& weight(std::size_t l) const { return *W_[l]; }
  const wengert::Parameter<float>& bias(std::size_t l) const { return *b_[l]; }
  const wengert::Tape<float>& tape() const { return tape_; }

 private:
  const Problem* p_;
  std::vector<std::unique_ptr<wengert::Parameter<float>>> W_, b_;
  std::unique_ptr<wengert::nn::SGD<float>> opt_;
  wengert::Tape<float> tape_;
  bool replay_;
  wengert::Var<float> loss_;  // the recorded loss, when replaying
};

/// The OP workload on a wengert tape: x [side, side] a variable, `ops` ops y = tanh(y) (or, with
/// kOpChainMixed, alternating with y = y·w, w a Parameter), backward from a seed of ones; the
/// tape is cleared and reused every run, w's gradient zeroed.
class WengertOpChain {
 public:
  /// With `replay`, the chain is recorded once and every run replays it.
  WengertOpChain(std::size_t side, int ops, bool replay = false);
  /// One record (or replay) + backward; returns dx[0].
  float run();

 private:
  std::size_t side_;
  int ops_;
  std::vector<float> x0_, seed_;
  wengert::Parameter<float> w_;
  wengert::Tape<float> tape_;
  bool replay_;
  wengert::Var<float> x_, y_;  // when replaying
};

}  // namespace wengert_bench
