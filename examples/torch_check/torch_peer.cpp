// The libtorch side of the check (see torch_peer.hpp).
#include "torch_peer.hpp"

#include <torch/torch.h>

#include <cmath>

namespace torch_peer {
namespace {

torch::Tensor param(const std::vector<double>& v, std::vector<std::int64_t> shape) {
  auto t = torch::from_blob(const_cast<double*>(v.data()), shape, torch::kFloat64).clone();
  return t.set_requires_grad(true);
}

torch::Tensor ids(const std::vector<std::int32_t>& v) {
  std::vector<std::int64_t> w(v.begin(), v.end());
  return torch::tensor(w, torch::kInt64);
}

template <class F>
Losses step(std::vector<torch::Tensor> ps, double lr, F loss) {
  torch::optim::Adam opt(ps, torch::optim::AdamOptions(lr));
  auto l0 = loss();
  opt.zero_grad();
  l0.backward();
  opt.step();
  torch::NoGradGuard no_grad;
  return {l0.template item<double>(), loss().template item<double>()};
}

}  // namespace

Losses attention(const std::vector<std::vector<double>>& p, std::size_t V, std::size_t L,
                 std::size_t d, std::size_t B, const std::vector<std::int32_t>& x,
                 const std::vector<std::int32_t>& y, double lr) {
  const std::int64_t v = V, l = L, D = d, f = 4 * d, b = B;
  // tok, pos, g1, b1, Wq, Wk, Wv, Wo, g2, b2, W1, c1, W2, c2, g3, b3, Wout
  std::vector<torch::Tensor> t = {param(p[0], {v, D}),  param(p[1], {l, D}),  param(p[2], {D}),
                                  param(p[3], {D}),     param(p[4], {D, D}),  param(p[5], {D, D}),
                                  param(p[6], {D, D}),  param(p[7], {D, D}),  param(p[8], {D}),
                                  param(p[9], {D}),     param(p[10], {D, f}), param(p[11], {f}),
                                  param(p[12], {f, D}), param(p[13], {D}),    param(p[14], {D}),
                                  param(p[15], {D}),    param(p[16], {D, v})};
  const auto xi = ids(x), yi = ids(y);
  const auto causal = torch::tril(torch::ones({l, l}, torch::kBool));
  auto loss = [&] {
    auto h = t[0].index_select(0, xi).view({b, l, D}) + t[1];
    auto n1 = torch::layer_norm(h, {D}, t[2], t[3], 1e-5);
    auto q = torch::matmul(n1, t[4]), k = torch::matmul(n1, t[5]), vv = torch::matmul(n1, t[6]);
    auto scores = torch::matmul(q, k.transpose(1, 2)) * (1.0 / std::sqrt(double(d)));
    scores = torch::where(causal, scores, torch::full({}, -1e9, torch::kFloat64));
    h = h + torch::matmul(torch::matmul(torch::softmax(scores, -1), vv), t[7]);
    auto n2 = torch::layer_norm(h, {D}, t[8], t[9], 1e-5);
    auto hidden = torch::gelu(torch::matmul(n2, t[10]) + t[11]);
    h = h + (torch::matmul(hidden, t[12]) + t[13]);
    auto logits = torch::matmul(torch::layer_norm(h, {D}, t[14], t[15], 1e-5), t[16]);
    return torch::nn::functional::cross_entropy(logits.view({b * l, v}), yi);
  };
  return step(t, lr, loss);
}

Losses lstm(const std::vector<std::vector<double>>& p, std::size_t V, std::size_t E, std::size_t H,
            std::size_t L, std::size_t B, const std::vector<std::int32_t>& x,
            const std::vector<std::int32_t>& y, double lr) {
  const std::int64_t v = V, e = E, h4 = 4 * H, hh = H, b = B;
  // table, Wx, b, Wh, Wo, bo
  std::vector<torch::Tensor> t = {param(p[0], {v, e}),   param(p[1], {e, h4}), param(p[2], {h4}),
                                  param(p[3], {hh, h4}), param(p[4], {hh, v}), param(p[5], {v})};
  const auto xi = ids(x), yi = ids(y);
  auto loss = [&] {
    auto xw = torch::matmul(t[0].index_select(0, xi), t[1]) + t[2];  // [L·B, 4H]
    auto h = torch::zeros({b, hh}, torch::kFloat64), c = torch::zeros({b, hh}, torch::kFloat64);
    std::vector<torch::Tensor> hs;
    for (std::int64_t s = 0; s < std::int64_t(L); ++s) {
      auto g = (xw.slice(0, s * b, (s + 1) * b) + torch::matmul(h, t[3])).chunk(4, 1);
      c = torch::sigmoid(g[1]) * c + torch::sigmoid(g[0]) * torch::tanh(g[2]);
      h = torch::sigmoid(g[3]) * torch::tanh(c);
      hs.push_back(h);
    }
    auto logits = torch::matmul(torch::cat(hs, 0), t[4]) + t[5];
    return torch::nn::functional::cross_entropy(logits, yi);
  };
  return step(t, lr, loss);
}

}  // namespace torch_peer
