// The wengert CNN contender (see cnn_wengert.hpp).
#include "cnn_wengert.hpp"

#include <algorithm>

namespace wengert_bench {

using wengert::Parameter;
using wengert::Shape;
using wengert::Var;

WengertCNN::WengertCNN(const CnnProblem& p) : p_(&p) {
  const CnnShape& s = p.s;
  const Shape wshape[4] = {Shape{s.c1, 1, 3, 3}, Shape{s.c2, s.c1, 3, 3}, Shape{s.flat(), s.hidden},
                           Shape{s.hidden, s.classes}};
  std::vector<Parameter<float>*> params;
  for (int l = 0; l < 4; ++l) {
    W_[l] = std::make_unique<Parameter<float>>(wshape[l]);
    std::copy(p.W0[l].begin(), p.W0[l].end(), W_[l]->data());
    b_[l] = std::make_unique<Parameter<float>>(Shape{p.b0[l].size()});
    std::copy(p.b0[l].begin(), p.b0[l].end(), b_[l]->data());
    params.push_back(W_[l].get());
    params.push_back(b_[l].get());
  }
  opt_ = std::make_unique<wengert::nn::SGD<float>>(params, p.lr);
}

float WengertCNN::step() {
  using namespace wengert;
  const CnnShape& s = p_->s;
  tape_.clear();
  opt_->zero_grad();
  auto P = [&](int l) { return tape_.param(*W_[l]); };
  auto B = [&](int l) { return tape_.param(*b_[l]); };
  Var<float> x = tape_.constant_view(p_->x.data(), Shape{s.batch, 1, s.side, s.side});
  Var<float> h = max_pool2d(relu(conv2d(x, P(0), B(0), {1, 1, 1})), {2});
  h = max_pool2d(relu(conv2d(h, P(1), B(1), {1, 1, 1})), {2});
  h = relu(linear(flatten(h, 1), P(2), B(2)));
  Var<float> loss =
      softmax_cross_entropy(linear(h, P(3), B(3)), p_->labels.data(), p_->labels.size());
  tape_.backward(loss);
  opt_->step();
  return loss.item();
}

}  // namespace wengert_bench
