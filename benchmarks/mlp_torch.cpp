// The libtorch contender (see mlp_torch.hpp).
#include "mlp_torch.hpp"

#include <torch/torch.h>
#include <torch/version.h>

namespace wengert_bench {

namespace F = torch::nn::functional;

void torch_set_threads(int n) {
  static bool interop_set = false;
  if (!interop_set) {
    at::set_num_interop_threads(1);
    interop_set = true;
  }
  at::set_num_threads(n);
}

std::string torch_info() {
  return std::string("libtorch ") + TORCH_VERSION + ", intra-op threads " +
         std::to_string(at::get_num_threads());
}

namespace {
torch::Tensor from(const std::vector<float>& v, std::vector<std::int64_t> shape,
                   bool requires_grad) {
  auto t = torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32).clone();
  return t.set_requires_grad(requires_grad);
}
std::vector<float> to_vector(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
}  // namespace

struct TorchMLP::Impl {
  const Problem* p;
  torch::Tensor x, labels, targets;
  std::vector<torch::Tensor> W, b;
  bool keep = false;
};

TorchMLP::TorchMLP(const Problem& p) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.p = &p;
  const Workload& w = p.w;
  const auto B = std::int64_t(w.batch);
  m.x = from(p.x, {B, std::int64_t(w.sizes.front())}, false);
  m.labels = torch::from_blob(const_cast<std::int32_t*>(p.labels.data()), {B}, torch::kInt32)
                 .to(torch::kInt64);  // cross_entropy wants int64 class indices
  m.targets = from(p.targets, {B, 1}, false);
  for (std::size_t l = 0; l < w.layers(); ++l) {
    m.W.push_back(from(p.W0[l], {std::int64_t(w.sizes[l]), std::int64_t(w.sizes[l + 1])}, true));
    m.b.push_back(from(p.b0[l], {std::int64_t(w.sizes[l + 1])}, true));
  }
}

TorchMLP::~TorchMLP() = default;

float TorchMLP::step() {
  Impl& m = *impl_;
  const std::size_t L = m.W.size();
  torch::Tensor h = m.x;
  for (std::size_t l = 0; l < L; ++l) {
    torch::Tensor z = torch::addmm(m.b[l], h, m.W[l]);
    h = l + 1 < L ? torch::tanh(z) : z;
  }
  torch::Tensor loss = m.p->w.loss == LossKind::kSoftmaxCrossEntropy
                           ? F::cross_entropy(h, m.labels)
                           : F::binary_cross_entropy_with_logits(h, m.targets);
  loss.backward();
  const float lr = m.p->lr;
  {
    torch::NoGradGuard no_grad;
    for (std::size_t l = 0; l < L; ++l) {
      for (torch::Tensor* t : {&m.W[l], &m.b[l]}) {
        t->add_(t->grad(), -lr);
        if (!m.keep) t->mutable_grad().reset();
      }
    }
  }
  return loss.item<float>();
}

void TorchMLP::keep_grads(bool keep) { impl_->keep = keep; }
std::vector<float> TorchMLP::grad_weight(std::size_t l) const {
  return to_vector(impl_->W[l].grad());
}
std::vector<float> TorchMLP::grad_bias(std::size_t l) const {
  return to_vector(impl_->b[l].grad());
}
std::vector<float> TorchMLP::weight(std::size_t l) const { return to_vector(impl_->W[l].detach()); }

struct TorchOpChain::Impl {
  torch::Tensor x, w, seed;
  int ops;
};

TorchOpChain::TorchOpChain(std::size_t side, int ops) : impl_(std::make_unique<Impl>()) {
  const auto s = std::int64_t(side);
  impl_->x = torch::full({s, s}, 0.5f, torch::kFloat32).set_requires_grad(true);
  impl_->w = torch::full({s, s}, kOpChainW, torch::kFloat32).set_requires_grad(true);
  impl_->seed = torch::ones({s, s}, torch::kFloat32);
  impl_->ops = ops;
}

TorchOpChain::~TorchOpChain() = default;

float TorchOpChain::run() {
  Impl& m = *impl_;
  torch::Tensor y = m.x;
  for (int i = 0; i < m.ops; ++i) y = op_is_tanh(i) ? torch::tanh(y) : y * m.w;
  y.backward(m.seed);
  const float g = m.x.grad().data_ptr<float>()[0];
  m.x.mutable_grad().reset();
  m.w.mutable_grad().reset();
  return g;
}

}  // namespace wengert_bench
