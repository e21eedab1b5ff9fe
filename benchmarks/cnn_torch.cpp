// The libtorch CNN contender (see cnn_torch.hpp).
#include "cnn_torch.hpp"

#include <torch/torch.h>

namespace wengert_bench {

namespace F = torch::nn::functional;

struct TorchCNN::Impl {
  const CnnProblem* p;
  torch::Tensor x, labels;
  torch::Tensor W[4], b[4];
  bool keep = false;
};

namespace {
torch::Tensor leaf(const std::vector<float>& v, std::vector<std::int64_t> shape) {
  return torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32)
      .clone()
      .set_requires_grad(true);
}
std::vector<float> to_vector(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
}  // namespace

TorchCNN::TorchCNN(const CnnProblem& p) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.p = &p;
  const CnnShape& s = p.s;
  const auto B = std::int64_t(s.batch), S = std::int64_t(s.side);
  m.x = torch::from_blob(const_cast<float*>(p.x.data()), {B, 1, S, S}, torch::kFloat32).clone();
  m.labels = torch::from_blob(const_cast<std::int32_t*>(p.labels.data()), {B}, torch::kInt32)
                 .to(torch::kInt64);
  const auto c1 = std::int64_t(s.c1), c2 = std::int64_t(s.c2), h = std::int64_t(s.hidden);
  m.W[0] = leaf(p.W0[0], {c1, 1, 3, 3});
  m.W[1] = leaf(p.W0[1], {c2, c1, 3, 3});
  m.W[2] = leaf(p.W0[2], {std::int64_t(s.flat()), h});
  m.W[3] = leaf(p.W0[3], {h, std::int64_t(s.classes)});
  for (int l = 0; l < 4; ++l) m.b[l] = leaf(p.b0[l], {std::int64_t(p.b0[l].size())});
}

TorchCNN::~TorchCNN() = default;

float TorchCNN::step() {
  Impl& m = *impl_;
  auto opts = F::MaxPool2dFuncOptions(2);
  torch::Tensor h = F::max_pool2d(torch::relu(torch::conv2d(m.x, m.W[0], m.b[0], 1, 1)), opts);
  h = F::max_pool2d(torch::relu(torch::conv2d(h, m.W[1], m.b[1], 1, 1)), opts);
  h = torch::relu(torch::addmm(m.b[2], h.flatten(1), m.W[2]));
  torch::Tensor loss = F::cross_entropy(torch::addmm(m.b[3], h, m.W[3]), m.labels);
  loss.backward();
  const float lr = m.p->lr;
  {
    torch::NoGradGuard no_grad;
    for (int l = 0; l < 4; ++l)
      for (torch::Tensor* t : {&m.W[l], &m.b[l]}) {
        t->add_(t->grad(), -lr);
        if (!m.keep) t->mutable_grad().reset();
      }
  }
  return loss.item<float>();
}

void TorchCNN::keep_grads(bool keep) { impl_->keep = keep; }
std::vector<float> TorchCNN::grad_weight(int l) const { return to_vector(impl_->W[l].grad()); }
std::vector<float> TorchCNN::grad_bias(int l) const { return to_vector(impl_->b[l].grad()); }
std::vector<float> TorchCNN::weight(int l) const { return to_vector(impl_->W[l].detach()); }

}  // namespace wengert_bench

#include <torch/version.h>

namespace wengert_bench {

void cnn_torch_set_threads(int n) {
  static bool interop_set = false;
  if (!interop_set) {
    at::set_num_interop_threads(1);
    interop_set = true;
  }
  at::set_num_threads(n);
}

std::string cnn_torch_info() {
  return std::string("libtorch ") + TORCH_VERSION + ", intra-op threads " +
         std::to_string(at::get_num_threads()) + ", mkldnn " +
         (at::hasMKLDNN() ? "built" : "not built") + " (" +
         (at::globalContext().userEnabledMkldnn() ? "enabled" : "off") + ")";
}

}  // namespace wengert_bench
