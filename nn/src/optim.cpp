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

template <class V, class T>
inline void rms_denominator(V& d, const V& s, const V* a, T eps) {
  using std::max;
  using std::sqrt;
  using xsimd::max;
  using xsimd::sqrt;
  // Centered: s − a² ≥ 0 in exact arithmetic; rounding can make it −0.0…1, so clamp at 0.
  d = (a ? sqrt(max(s - *a * *a, V(T(0)))) : sqrt(s)) + V(eps);
}

// One RMSprop element update (see optim.hpp); buf / avg are null when unused.
template <class V, class T>
inline void rms_update(V& p, const V& g0, V& s, V* buf, V* avg, T lr, T alpha, T eps, T wd, T mu) {
  V g = g0 + V(wd) * p;
  s = V(alpha) * s + V(T(1) - alpha) * g * g;
  if (avg) *avg = V(alpha) * *avg + V(T(1) - alpha) * g;
  V d;
  rms_denominator(d, s, avg, eps);
  if (buf) {
    *buf = V(mu) * *buf + g / d;
    p = p - V(lr) * *buf;
  } else {
    p = p - V(lr) * g / d;
  }
}

template <class T>
void rms_kernel(T* p, const T* g, T* s, T* buf, T* avg, std::size_t n, T lr, T alpha, T eps, T wd,
                T mu) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  std::size_t i = 0;
  for (; i + W <= n; i += W) {
    B bp = B::load_unaligned(p + i), bg = B::load_unaligned(g + i), bs = B::load_unaligned(s + i);
    B bb = buf ? B::load_unaligned(buf + i) : B(T(0));
    B ba = avg ? B::load_unaligned(avg + i) : B(T(0));
    rms_update(bp, bg, bs, buf ? &bb : nullptr, avg ? &ba : nullptr, lr, alpha, eps, wd, mu);
    bp.store_unaligned(p + i);
    bs.store_unaligned(s + i);
    if (buf) bb.store_unaligned(buf + i);
    if (avg) ba.store_unaligned(avg + i);
  }
  for (; i < n; ++i)
    rms_update(p[i], g[i], s[i], buf ? buf + i : nullptr, avg ? avg + i : nullptr, lr, alpha, eps,
               wd, mu);
}

// Σ x² over n values: float lanes within blocks of 4096 values (vectorised), blocks summed in
// double, so a million-element gradient loses no more than a block's float rounding.
template <class T>
double sum_squares(const T* x, std::size_t n) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  constexpr std::size_t kBlock = 4096;
  double total = 0;
  for (std::size_t start = 0; start < n; start += kBlock) {
    const std::size_t end = std::min(n, start + kBlock);
    B acc0(T(0)), acc1(T(0));
    std::size_t i = start;
    for (; i + 2 * W <= end; i += 2 * W) {
      B a = B::load_unaligned(x + i), b = B::load_unaligned(x + i + W);
      acc0 = xsimd::fma(a, a, acc0);
      acc1 = xsimd::fma(b, b, acc1);
    }
    T tail = T(0);
    for (; i < end; ++i) tail += x[i] * x[i];
    total += double(xsimd::hadd(acc0 + acc1)) + double(tail);
  }
  return total;
}

}  // namespace

// ---- clip_grad_norm ------------------------------------------------------------------------

template <class T>
double clip_grad_norm(const std::vector<Parameter<T>*>& params, double max_norm) {
  if (!(max_norm > 0) || !std::isfinite(max_norm))
    throw ValueError("clip_grad_norm: max_norm = " + std::to_string(max_norm) +
                     " must be finite and > 0");
  for (std::size_t i = 0; i < params.size(); ++i)
    if (!params[i]) throw UsageError("clip_grad_norm: parameter " + std::to_string(i) + " is null");
  // The norm as scale·√ssq (LAPACK's nrm2 form): the fast path sums squares directly (scale 1);
  // a parameter whose squares overflow (|g| beyond ~1e19 in float) is summed as (g / max|g|)²
  // with scale max|g|, so exploding but finite gradients are measured and clipped, not refused.
  double scale = 1, ssq = 0;
  auto add = [&](double s, double q) {  // adds s²·q to scale²·ssq
    if (q == 0) return;
    if (s > scale) {
      ssq = ssq * (scale / s) * (scale / s) + q;
      scale = s;
    } else {
      ssq += q * (s / scale) * (s / scale);
    }
  };
  for (std::size_t i = 0; i < params.size(); ++i) {
    const T* g = params[i]->grad_data();
    const std::size_t n = params[i]->size();
    const double q = sum_squares(g, n);
    if (std::isfinite(q)) {
      add(1.0, q);
      continue;
    }
    double m = 0;
    for (std::size_t k = 0; k < n; ++k) {
      if (!std::isfinite(g[k]))
        throw ValueError("clip_grad_norm: parameter " + std::to_string(i) + " ('" +
                         params[i]->name() + "') has a non-finite gradient (" +
                         std::to_string(double(g[k])) + " at element " + std::to_string(k) +
                         "); the gradients are left as they are");
      m = std::max(m, std::abs(double(g[k])));
    }
    double scaled = 0;
    for (std::size_t k = 0; k < n; ++k) scaled += (double(g[k]) / m) * (double(g[k]) / m);
    add(m, scaled);
  }
  const double norm = scale * std::sqrt(ssq);
  if (!std::isfinite(norm))
    throw ValueError(
        "clip_grad_norm: the gradient norm exceeds the largest double; the "
        "gradients are left as they are");
  if (norm > max_norm) {
    const T factor = T(max_norm / (norm + 1e-6));
    for (Parameter<T>* p : params) {
      T* g = p->grad_data();
      const std::size_t n = p->size();
      for (std::size_t k = 0; k < n; ++k) g[k] *= factor;
    }
  }
  return norm;
}

// ---- Optimizer ---------------------------------------------------------------------------

template <class T>
Optimizer<T>::Optimizer(const std::vector<Parameter<T>*>& params, T lr, const char* who)
    : lr_(lr), who_(who) {
  check_hyper(who_, "lr", double(lr));
  params_.reserve(params.size());
  sizes_.reserve(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!params[i])
      throw UsageError(std::string(who_) + ": parameter " + std::to_string(i) + " is null");
    if (!params[i]->valid())
      throw UsageError(std::string(who_) + ": parameter " + std::to_string(i) +
                       " was moved from; it holds nothing");
    for (std::size_t j = 0; j < i; ++j)
      if (params_[j] == params[i]->storage())
        throw UsageError(std::string(who_) + ": parameter " + std::to_string(i) + " ('" +
                         params[i]->name() + "') is listed twice (as " + std::to_string(j) +
                         " too); it would be updated twice per step");
    params_.push_back(params[i]->storage());
    sizes_.push_back(params[i]->size());
    numel_ += params[i]->size();
  }
}

template <class T>
void Optimizer<T>::zero_grad() {
  for (const auto& s : params_) std::fill(s->grad.begin(), s->grad.end(), T(0));
}

template <class T>
void Optimizer<T>::set_lr(T lr) {
  check_hyper(who_, "lr", double(lr));
  lr_ = lr;
}

template <class T>
void Optimizer<T>::begin_step() {
  check_sizes();
  ++t_;
  prepare();
}

template <class T>
void Optimizer<T>::update(std::size_t begin, std::size_t end) {
  if (begin > end || end > numel_)
    throw UsageError(std::string(who_) + ": update(" + std::to_string(begin) + ", " +
                     std::to_string(end) + ") is not a range of the " + std::to_string(numel_) +
                     " parameter elements");
  check_sizes();  // a parameter replaced or shrunk since construction: no write past its end
  std::size_t off = 0;
  for (std::size_t i = 0; i < params_.size() && off < end; ++i) {
    const std::size_t n = sizes_[i];
    const std::size_t lo = std::max(begin, off), hi = std::min(end, off + n);
    if (lo < hi) update_param(i, lo - off, hi - off);
    off += n;
  }
}

template <class T>
void Optimizer<T>::update_parameter(std::size_t i, std::size_t lo, std::size_t hi) {
  if (i >= params_.size() || lo > hi || hi > sizes_[i])
    throw UsageError(
        std::string(who_) + ": update_parameter(" + std::to_string(i) + ", " + std::to_string(lo) +
        ", " + std::to_string(hi) + ") is not a range of " +
        (i < params_.size()
             ? "parameter " + std::to_string(i) + "'s " + std::to_string(sizes_[i]) + " elements"
             : "one of the " + std::to_string(params_.size()) + " parameters"));
  if (!params_[i]->owned || params_[i]->value.size() != sizes_[i]) check_sizes();  // throws
  if (lo < hi) update_param(i, lo, hi);
}

template <class T>
void Optimizer<T>::check_sizes() const {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i]->owned)
      throw UsageError(std::string(who_) + ": parameter " + std::to_string(i) + " ('" +
                       params_[i]->name +
                       "') no longer belongs to any Parameter: its Parameter was destroyed or "
                       "assigned over (e.g. the model was replaced); build a new optimizer for "
                       "the new parameters");
    if (params_[i]->value.size() != sizes_[i])
      throw UsageError(std::string(who_) + ": parameter " + std::to_string(i) + " ('" +
                       params_[i]->name + "') has " + std::to_string(params_[i]->value.size()) +
                       " elements but had " + std::to_string(sizes_[i]) +
                       " when the optimizer was built; build a new optimizer after replacing "
                       "parameters");
  }
}

template <class T>
void Optimizer<T>::allocate_state(std::vector<const char*> slices) {
  slices_ = std::move(slices);
  offsets_.resize(params_.size());
  strides_.resize(params_.size());
  std::size_t total = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    strides_[i] = (sizes_[i] + kLine<T> - 1) / kLine<T> * kLine<T>;
    offsets_[i] = total;
    total += slices_.size() * strides_[i];
  }
  state_.assign(total, T(0));
}

// The kind codes of "<prefix>.kind", by the optimizer's name.
static std::uint64_t kind_code(const char* who) {
  const std::string w = who;
  return w == "SGD" ? 1 : w == "Adam" ? 2 : w == "AdamW" ? 3 : w == "RMSprop" ? 4 : 0;
}
static const char* kind_name(std::uint64_t code) {
  static const char* names[] = {"unknown", "SGD", "Adam", "AdamW", "RMSprop"};
  return code < 5 ? names[code] : "unknown";
}

template <class T>
void Optimizer<T>::state_dict(StateDict& sd, const std::string& prefix) const {
  check_sizes();
  sd.set(prefix + ".kind", kind_code(who_));
  for (auto& [name, value] : hyper()) sd.set(prefix + "." + name, value);
  sd.set(prefix + ".lr", double(lr_));
  sd.set(prefix + ".step", std::uint64_t{t_});
  for (auto& [name, value] : const_cast<Optimizer*>(this)->scalars())
    sd.set(prefix + "." + name, *value);
  for (std::size_t i = 0; i < params_.size(); ++i)
    for (std::size_t k = 0; k < slices_.size(); ++k)
      sd.set(prefix + "." + std::to_string(i) + "." + slices_[k], params_[i]->shape, state(i, k));
}

template <class T>
void Optimizer<T>::load_state_dict(const StateDict& sd, const std::string& prefix) {
  check_sizes();
  const std::string who = std::string(who_) + " load_state_dict";
  // Check everything first: any error leaves the optimizer as it was.
  std::vector<std::string> expected;
  auto key = [&](const std::string& name) {
    expected.push_back(prefix + "." + name);
    return expected.back();
  };
  const std::uint64_t kind = sd.get_u64(key("kind"), who);
  if (kind != kind_code(who_))
    throw ValueError(who + ": the state is an " + kind_name(kind) + " optimizer's, not " + who_ +
                     "'s");
  for (auto& [name, value] : hyper()) {
    const double saved = sd.get_f64(key(name), who);
    if (saved != value)
      throw ValueError(who + ": the state was saved with " + name + " = " + std::to_string(saved) +
                       " but this optimizer has " + name + " = " + std::to_string(value));
  }
  const double lr = sd.get_f64(key("lr"), who);
  if (!std::isfinite(lr) || lr < 0)
    throw ValueError(who + ": '" + prefix + ".lr' = " + std::to_string(lr) +
                     " is not a learning rate");
  const std::uint64_t t = sd.get_u64(key("step"), who);
  std::vector<double> values;
  for (auto& [name, value] : scalars()) values.push_back(sd.get_f64(key(name), who));
  std::vector<const T*> src;
  for (std::size_t i = 0; i < params_.size(); ++i)
    for (std::size_t k = 0; k < slices_.size(); ++k)
      src.push_back(sd.get<T>(key(std::to_string(i) + "." + slices_[k]), params_[i]->shape, who));
  // Nothing else under the prefix: a state for more parameters, or with slices this optimizer
  // does not keep, is another optimizer's.
  std::sort(expected.begin(), expected.end());
  const std::string pre = prefix + ".";
  for (const auto& e : sd.entries())
    if (e.name.compare(0, pre.size(), pre) == 0 &&
        !std::binary_search(expected.begin(), expected.end(), e.name))
      throw ValueError(who + ": the state has '" + e.name + "', which this " + who_ + " (with " +
                       std::to_string(params_.size()) + " parameters) does not keep");
  lr_ = T(lr);
  t_ = t;
  std::size_t s = 0;
  for (auto& [name, value] : scalars()) *value = values[s++];
  std::size_t j = 0;
  for (std::size_t i = 0; i < params_.size(); ++i)
    for (std::size_t k = 0; k < slices_.size(); ++k, ++j)
      std::copy(src[j], src[j] + sizes_[i], state(i, k));
}

// ---- SGD ---------------------------------------------------------------------------------

template <class T>
SGD<T>::SGD(const std::vector<Parameter<T>*>& params, const SGDOptions& o)
    : Optimizer<T>(params, T(o.lr), "SGD"),
      momentum_(T(o.momentum)),
      weight_decay_(T(o.weight_decay)),
      nesterov_(o.nesterov) {
  check_hyper("SGD", "momentum", o.momentum);
  check_hyper("SGD", "weight_decay", o.weight_decay);
  if (o.nesterov && o.momentum == 0) throw ValueError("SGD: nesterov = true needs momentum > 0");
  this->allocate_state(momentum_ != T(0) ? std::vector<const char*>{"momentum_buffer"}
                                         : std::vector<const char*>{});
}

template <class T>
void SGD<T>::update_param(std::size_t i, std::size_t lo, std::size_t hi) {
  ParameterStorage<T>& p = *this->params_[i];
  T* w = p.value.data() + lo;
  const T* g = p.grad.data() + lo;
  const std::size_t n = hi - lo;
  const T lr = this->lr_;
  if (momentum_ == T(0))
    sgd_kernel(w, g, n, lr, weight_decay_);
  else if (nesterov_)
    nesterov_kernel(w, g, this->state(i, 0) + lo, n, lr, momentum_, weight_decay_);
  else
    momentum_kernel(w, g, this->state(i, 0) + lo, n, lr, momentum_, weight_decay_);
}

// ---- Adam and AdamW ------------------------------------------------------------------------

template <class T>
Adam<T>::Adam(const std::vector<Parameter<T>*>& params, const AdamOptions& o)
    : Adam(params, o, "Adam", false) {}

template <class T>
Adam<T>::Adam(const std::vector<Parameter<T>*>& params, const AdamOptions& o, const char* who,
              bool decoupled)
    : Optimizer<T>(params, T(o.lr), who),
      beta1_(T(o.beta1)),
      beta2_(T(o.beta2)),
      eps_(T(o.eps)),
      weight_decay_(T(o.weight_decay)),
      decoupled_(decoupled) {
  for (auto [what, x] : {std::pair{"beta1", o.beta1}, std::pair{"beta2", o.beta2}})
    if (!(x >= 0 && x < 1))
      throw ValueError(std::string(who) + ": " + what + " = " + std::to_string(x) +
                       " must be in [0, 1)");
  check_hyper(who, "eps", o.eps);
  check_hyper(who, "weight_decay", o.weight_decay);
  this->allocate_state({"exp_avg", "exp_avg_sq"});
}

template <class T>
void Adam<T>::prepare() {
  // β^t in double: in float, 0.999^t loses digits long before training ends.
  beta1_pow_ *= double(beta1_);
  beta2_pow_ *= double(beta2_);
  c1_ = T(1.0 / (1.0 - beta1_pow_));
  c2_ = T(1.0 / (1.0 - beta2_pow_));
}

template <class T>
void Adam<T>::update_param(std::size_t i, std::size_t lo, std::size_t hi) {
  ParameterStorage<T>& p = *this->params_[i];
  const std::size_t n = hi - lo;
  const T lr = this->lr_;
  T* w = p.value.data() + lo;
  T* m = this->state(i, 0) + lo;
  T* v = this->state(i, 1) + lo;
  if (decoupled_) {
    // AdamW: shrink first (a loop gcc vectorises), then Adam without L2.
    const T shrink = T(1) - lr * weight_decay_;
    if (weight_decay_ != T(0))
      for (std::size_t k = 0; k < n; ++k) w[k] *= shrink;
    adam_kernel(w, p.grad.data() + lo, m, v, n, lr, beta1_, beta2_, eps_, T(0), c1_, c2_);
  } else {
    adam_kernel(w, p.grad.data() + lo, m, v, n, lr, beta1_, beta2_, eps_, weight_decay_, c1_, c2_);
  }
}

// ---- RMSprop -------------------------------------------------------------------------------

template <class T>
RMSprop<T>::RMSprop(const std::vector<Parameter<T>*>& params, const RMSpropOptions& o)
    : Optimizer<T>(params, T(o.lr), "RMSprop"),
      alpha_(T(o.alpha)),
      eps_(T(o.eps)),
      weight_decay_(T(o.weight_decay)),
      momentum_(T(o.momentum)),
      centered_(o.centered) {
  if (!(o.alpha >= 0 && o.alpha < 1))
    throw ValueError("RMSprop: alpha = " + std::to_string(o.alpha) + " must be in [0, 1)");
  check_hyper("RMSprop", "eps", o.eps);
  check_hyper("RMSprop", "weight_decay", o.weight_decay);
  check_hyper("RMSprop", "momentum", o.momentum);
  std::vector<const char*> slices{"square_avg"};
  if (momentum_ != T(0)) slices.push_back("momentum_buffer");
  if (centered_) slices.push_back("grad_avg");
  this->allocate_state(std::move(slices));
}

template <class T>
void RMSprop<T>::update_param(std::size_t i, std::size_t lo, std::size_t hi) {
  ParameterStorage<T>& p = *this->params_[i];
  const std::size_t k_avg = momentum_ != T(0) ? 2 : 1;
  rms_kernel(p.value.data() + lo, p.grad.data() + lo, this->state(i, 0) + lo,
             momentum_ != T(0) ? this->state(i, 1) + lo : nullptr,
             centered_ ? this->state(i, k_avg) + lo : nullptr, hi - lo, this->lr_, alpha_, eps_,
             weight_decay_, momentum_);
}

template double clip_grad_norm<float>(const std::vector<Parameter<float>*>&, double);
template double clip_grad_norm<double>(const std::vector<Parameter<double>*>&, double);
template class Optimizer<float>;
template class Optimizer<double>;
template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;
template class RMSprop<float>;
template class RMSprop<double>;

}  // namespace wengert::nn
