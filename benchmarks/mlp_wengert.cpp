// The wengert contender (see mlp_wengert.hpp).
#include "mlp_wengert.hpp"

#include <algorithm>

namespace wengert_bench {

using wengert::Parameter;
using wengert::Shape;
using wengert::Var;

WengertMLP::WengertMLP(const Problem& p, bool replay) : p_(&p), replay_(replay) {
  const Workload& w = p.w;
  std::vector<Parameter<float>*> params;
  for (std::size_t l = 0; l < w.layers(); ++l) {
    const std::size_t in = w.sizes[l], out = w.sizes[l + 1];
    W_.push_back(std::make_unique<Parameter<float>>(Shape{in, out}));
    std::copy(p.W0[l].begin(), p.W0[l].end(), W_.back()->data());
    b_.push_back(std::make_unique<Parameter<float>>(Shape{out}));
    std::copy(p.b0[l].begin(), p.b0[l].end(), b_.back()->data());
    params.push_back(W_.back().get());
    params.push_back(b_.back().get());
  }
  opt_ = std::make_unique<wengert::nn::SGD<float>>(params, p.lr);
}

float WengertMLP::step() {
  if (replay_ && loss_.valid()) {
    opt_->zero_grad();
    tape_.replay();
    tape_.backward(loss_);
    opt_->step();
    return loss_.item();
  }
  const Workload& w = p_->w;
  const std::size_t L = w.layers();
  tape_.clear();
  opt_->zero_grad();
  Var<float> h = tape_.constant_view(p_->x.data(), Shape{w.batch, w.sizes.front()});
  for (std::size_t l = 0; l < L; ++l) {
    Var<float> z = wengert::linear(h, tape_.param(*W_[l]), tape_.param(*b_[l]));
    h = l + 1 < L ? wengert::tanh(z) : z;
  }
  Var<float> loss = w.loss == LossKind::kSoftmaxCrossEntropy
                        ? wengert::softmax_cross_entropy(h, p_->labels.data(), p_->labels.size())
                        : wengert::sigmoid_binary_cross_entropy(
                              h, tape_.constant_view(p_->targets.data(), Shape{w.batch, 1}));
  tape_.backward(loss);
  opt_->step();
  if (replay_) loss_ = loss;
  return loss.item();
}

WengertOpChain::WengertOpChain(std::size_t side, int ops, bool replay)
    : side_(side),
      ops_(ops),
      x0_(side * side, 0.5f),
      seed_(side * side, 1.0f),
      w_(Shape{side, side}),
      replay_(replay) {
  std::fill(w_.data(), w_.data() + w_.size(), kOpChainW);
}

float WengertOpChain::run() {
  if (replay_ && y_.valid()) {
    w_.zero_grad();
    tape_.replay();
    tape_.backward(y_, seed_.data(), nullptr, 0);
    return x_.grad_data()[0];
  }
  tape_.clear();
  w_.zero_grad();
  Var<float> x = tape_.variable(x0_.data(), Shape{side_, side_});
  Var<float> w = tape_.param(w_);
  Var<float> y = x;
  for (int i = 0; i < ops_; ++i) y = op_is_tanh(i) ? wengert::tanh(y) : y * w;
  tape_.backward(y, seed_.data(), nullptr, 0);
  if (replay_) {
    x_ = x;
    y_ = y;
  }
  return x.grad_data()[0];
}

}  // namespace wengert_bench
