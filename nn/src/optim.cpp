// Optimizer update kernels (see wengert/nn/optim.hpp for the rules and the design).
#include <wengert/nn/optim.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include <xsimd/xsimd.hpp>

namespace wengert::nn {

namespace {

// Elements per 64-byte line: state slices start on a cache line, like Parameter storage.
template <class T>
constexpr std::size_t kLine = 64 / sizeof(T);

void check_hyper(const char* who, const char* what, double x, bool positive = false) {
  if (!std::isfinite(x) || x < 0 || (positive && x == 0))
    throw ValueError(std::string(who) + ": " + what + " = " + std::to_string(x) + " must be " +
                     (positive ? "finite and > 0" : "finite and >= 0"));
}

// ---- kernels: contiguous arrays, no aliasing between the arrays of one call -----------------

template <class T>
void sgd_kernel(T* __restrict p, const T* __restrict g, std::size_t n, T lr, T wd) {
  for (std::size_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
}

template <class T>
void momentum_kernel(T* __restrict p, const T* __restrict g, T* __restrict v, std::size_t n, T lr,
                     T mu, T wd) {
  for (std::size_t i = 0; i < n; ++i) {
    T gi = g[i] + wd * p[i];
    v[i] = mu * v[i] + gi;
    p[i] -= lr * v[i];
  }
}

template <class T>
void nesterov_kernel(T* __restrict p, const T* __restrict g, T* __restrict v, std::size_t n, T lr,
                     T mu, T wd) {
  for (std::size_t i = 0; i < n; ++i) {
    T gi = g[i] + wd * p[i];
    v[i] = mu * v[i] + gi;
    p[i] -= lr * (gi + mu * v[i]);
  }
}

// One Adam element update; c1 = 1/(1 − β1ᵗ), c2 = 1/(1 − β2ᵗ). Written once for scalars and
// xsimd batches so the vector body and the tail compute the same thing.
template <class V, class T>
inline void adam_update(V& p, const V& g0, V& m, V& v, T lr, T b1, T b2, T eps, T wd, T c1, T c2) {
  V g = g0 + V(wd) * p;
  m = V(b1) * m + V(T(1) - b1) * g;
  v = V(b2) * v + V(T(1) - b2) * g * g;
  V m_hat = m * V(c1);
  V v_hat = v * V(c2);
  using std::sqrt;
  using xsimd::sqrt;
  p = p - V(lr) * m_hat / (sqrt(v_hat) + V(eps));
}

template <class T>
void adam_kernel(T* p, const T* g, T* m, T* v, std::size_t n, T lr, T b1, T b2, T eps, T wd, T c1,
                 T c2) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  std::size_t i = 0;
  for (; i + W <= n; i += W) {
    B bp = B::load_unaligned(p + i), bg = B::load_unaligned(g + i);
    B bm = B::load_unaligned(m + i), bv = B::load_unaligned(v + i);
    adam_update(bp, bg, bm, bv, lr, b1, b2, eps, wd, c1, c2);
    bp.store_unaligned(p + i);
    bm.store_unaligned(m + i);
    bv.store_unaligned(v + i);
  }
  for (; i < n; ++i) adam_update(p[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, c1, c2);
}

}  // namespace

// ---- Optimizer ---------------------------------------------------------------------------

template <class T>
Optimizer<T>::Optimizer(std::vector<Parameter<T>*> params, T lr, const char* who)
    : params_(std::move(params)), lr_(lr), who_(who) {
  check_hyper(who_, "lr", double(lr));
  sizes_.reserve(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i])
      throw UsageError(std::string(who_) + ": parameter " + std::to_string(i) + " is null");
    for (std::size_t j = 0; j < i; ++j)
      if (params_[j] == params_[i])
        throw UsageError(std::string(who_) + ": parameter " + std::to_string(i) + " ('" +
                         params_[i]->name() + "') is listed twice (as " + std::to_string(j) +
                         " too); it would be updated twice per step");
    sizes_.push_back(params_[i]->size());
  }
}

template <class T>
void Optimizer<T>::set_lr(T lr) {
  check_hyper(who_, "lr", double(lr));
  lr_ = lr;
}

template <class T>
void Optimizer<T>::check_sizes() const {
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (params_[i]->size() != sizes_[i])
      throw UsageError(std::string(who_) + ": parameter " + std::to_string(i) + " ('" +
                       params_[i]->name() + "') has " + std::to_string(params_[i]->size()) +
                       " elements but had " + std::to_string(sizes_[i]) +
                       " when the optimizer was built; build a new optimizer after replacing "
                       "parameters");
}

template <class T>
void Optimizer<T>::allocate_state(std::size_t per_param) {
  offsets_.resize(params_.size());
  strides_.resize(params_.size());
  std::size_t total = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    strides_[i] = (sizes_[i] + kLine<T> - 1) / kLine<T> * kLine<T>;
    offsets_[i] = total;
    total += per_param * strides_[i];
  }
  state_.assign(total, T(0));
}

// ---- SGD ---------------------------------------------------------------------------------

template <class T>
SGD<T>::SGD(std::vector<Parameter<T>*> params, const SGDOptions& o)
    : Optimizer<T>(std::move(params), T(o.lr), "SGD"),
      momentum_(T(o.momentum)),
      weight_decay_(T(o.weight_decay)),
      nesterov_(o.nesterov) {
  check_hyper("SGD", "momentum", o.momentum);
  check_hyper("SGD", "weight_decay", o.weight_decay);
  if (o.nesterov && o.momentum == 0) throw ValueError("SGD: nesterov = true needs momentum > 0");
  if (momentum_ != T(0)) this->allocate_state(1);
}

template <class T>
void SGD<T>::step() {
  this->check_sizes();
  const T lr = this->lr_;
  for (std::size_t i = 0; i < this->params_.size(); ++i) {
    Parameter<T>& p = *this->params_[i];
    if (momentum_ == T(0))
      sgd_kernel(p.data(), p.grad_data(), p.size(), lr, weight_decay_);
    else if (nesterov_)
      nesterov_kernel(p.data(), p.grad_data(), this->state(i, 0), p.size(), lr, momentum_,
                      weight_decay_);
    else
      momentum_kernel(p.data(), p.grad_data(), this->state(i, 0), p.size(), lr, momentum_,
                      weight_decay_);
  }
}

// ---- Adam --------------------------------------------------------------------------------

template <class T>
Adam<T>::Adam(std::vector<Parameter<T>*> params, const AdamOptions& o)
    : Optimizer<T>(std::move(params), T(o.lr), "Adam"),
      beta1_(T(o.beta1)),
      beta2_(T(o.beta2)),
      eps_(T(o.eps)),
      weight_decay_(T(o.weight_decay)) {
  for (auto [what, x] : {std::pair{"beta1", o.beta1}, std::pair{"beta2", o.beta2}})
    if (!(x >= 0 && x < 1))
      throw ValueError(std::string("Adam: ") + what + " = " + std::to_string(x) +
                       " must be in [0, 1)");
  check_hyper("Adam", "eps", o.eps);
  check_hyper("Adam", "weight_decay", o.weight_decay);
  this->allocate_state(2);  // m, v
}

template <class T>
void Adam<T>::step() {
  this->check_sizes();
  ++t_;
  // β^t in double: in float, 0.999^t loses digits long before training ends.
  beta1_pow_ *= double(beta1_);
  beta2_pow_ *= double(beta2_);
  const T c1 = T(1.0 / (1.0 - beta1_pow_));
  const T c2 = T(1.0 / (1.0 - beta2_pow_));
  for (std::size_t i = 0; i < this->params_.size(); ++i) {
    Parameter<T>& p = *this->params_[i];
    adam_kernel(p.data(), p.grad_data(), this->state(i, 0), this->state(i, 1), p.size(), this->lr_,
                beta1_, beta2_, eps_, weight_decay_, c1, c2);
  }
}

template class Optimizer<float>;
template class Optimizer<double>;
template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;

}  // namespace wengert::nn
