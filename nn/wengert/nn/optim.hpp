// wengert — optimizers: SGD (momentum, Nesterov, weight decay), Adam, AdamW and RMSprop, and
// gradient clipping by global norm.
//
// Design in brief:
//
// * An optimizer is given the parameters it updates once, at construction, as pointers
//   (`std::vector<Parameter<T>*>`, e.g. from `model.parameters()`). It keeps each Parameter's
//   storage (parameter.hpp), not the pointer: the model may be moved, or its layers kept in a
//   std::vector that grows, and the optimizer still updates the memory its Parameters use.
//
// * step() updates each parameter's value in place from its gradient, then leaves the gradient
//   as it is: call zero_grad() before the next backward, since backward accumulates into
//   Parameter gradients.
//
// * State (momentum buffers, moments) lives in one 64-byte-aligned buffer allocated at
//   construction, one aligned slice per parameter and kind. step() never allocates; its loops
//   run over contiguous memory, vectorised (gcc at -O3 for the plain ones, xsimd where a square
//   root is involved, since a scalar std::sqrt loop is not vectorised while errno is on).
//
// * State is saved and restored by name: state_dict(sd, prefix) adds "<prefix>.kind" (which
//   optimizer: 1 SGD, 2 Adam, 3 AdamW, 4 RMSprop), its hyperparameters ("<prefix>.beta1", …),
//   "<prefix>.lr", "<prefix>.step", any scalars of the rule, and "<prefix>.<i>.<slice>" (the
//   parameter's shape) for parameter i's slices, e.g. "optimizer.0.exp_avg". load_state_dict
//   checks every entry first — the kind and hyperparameters must be this optimizer's, every
//   slice present with the parameter's shape, no "<prefix>." entry unknown — and writes only if
//   all fit (ValueError naming the entry otherwise). The learning rate is restored, not checked:
//   a schedule may have changed it.
//
// * The update rules follow PyTorch's conventions (weight decay in SGD, Adam and RMSprop is L2:
//   added to the gradient; AdamW's is decoupled; the first momentum step sets v = g). Each rule
//   is written out on its class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <wengert/nn/state.hpp>
#include <wengert/tape.hpp>

namespace wengert::nn {

/// Sets the gradient of every parameter in `params` to zero.
template <class T>
void zero_grad(const std::vector<Parameter<T>*>& params) {
  for (Parameter<T>* p : params) p->zero_grad();
}

/// Scales the gradients of `params` so that their global L2 norm (over all of them, as one
/// vector) is at most `max_norm`, and returns the norm before scaling. If the norm exceeds
/// max_norm, every gradient is multiplied by max_norm / (norm + 1e-6). A non-finite norm (an
/// inf or NaN in some gradient) is a ValueError naming the first such parameter; the gradients
/// are left untouched then. Vectorised, accumulated per block in double; allocates nothing.
template <class T>
double clip_grad_norm(const std::vector<Parameter<T>*>& params, double max_norm);

/// What all optimizers share: the parameters, the learning rate, the step count, the state
/// buffer and its saving and loading.
template <class T>
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// One update of every parameter from its current gradient. Allocates nothing.
  void step() {
    begin_step();
    update(0, numel_);
  }

  /// The step in two parts, for updates split over threads (dist::ThreadDataParallel::step
  /// uses it): begin_step() once — it checks the parameters and advances the step count (and
  /// Adam's β powers) — then update(b, e) for ranges of the parameters' elements taken as one
  /// flat vector [0, numel()) (parameter 0's elements first), each element in exactly one
  /// call, from any threads as long as their ranges are disjoint. Together they compute what
  /// step() computes, bit for bit when every cut falls a multiple of kAlign elements from the
  /// start of a parameter (elsewhere an element may move between a kernel's vector body and its
  /// scalar tail, which may round differently). Neither allocates.
  void begin_step();
  void update(std::size_t begin, std::size_t end);
  /// update() for elements [lo, hi) of parameter i alone, with O(1) checks (index, range, the
  /// parameter's size), for loops that walk the parameters themselves:
  /// ThreadDataParallel::step updates each cache-sized block of gradient right after reducing
  /// it. Bit-identical to step() when lo is a multiple of kAlign; throws UsageError otherwise
  /// as update() does.
  void update_parameter(std::size_t i, std::size_t lo, std::size_t hi);
  /// Elements of all parameters together (the flat range update() takes).
  std::size_t numel() const { return numel_; }
  /// See update(): cuts at multiples of kAlign elements into a parameter keep bit-identity.
  static constexpr std::size_t kAlign = 16;
  /// Zeroes the gradients of this optimizer's parameters.
  void zero_grad();

  T lr() const { return lr_; }
  /// Changes the learning rate (for schedules); must be finite and ≥ 0.
  void set_lr(T lr);
  /// Number of step() calls so far (restored by load_state_dict).
  std::uint64_t steps() const { return t_; }
  /// How many parameters this optimizer updates, and their storage (see parameter.hpp).
  std::size_t size() const { return params_.size(); }
  const ParameterStorage<T>& parameter(std::size_t i) const { return *params_[i]; }

  /// Adds this optimizer's state to `sd` under `prefix` (see the top of this header).
  void state_dict(StateDict& sd, const std::string& prefix = "optimizer") const;
  /// Restores what state_dict() saved: lr, step count, scalars and slices. Every entry is
  /// checked (present, dtype, shape = the parameter's) before anything is written.
  void load_state_dict(const StateDict& sd, const std::string& prefix = "optimizer");

 protected:
  /// Validates the list (no null, no duplicate) and lr; `who` names the optimizer in errors.
  Optimizer(const std::vector<Parameter<T>*>& params, T lr, const char* who);
  /// Throws UsageError if a parameter changed size since construction (its state would not fit).
  void check_sizes() const;
  /// What begin_step() does besides checking and counting (Adam: its β powers).
  virtual void prepare() {}
  /// The rule applied to elements [lo, hi) of parameter i.
  virtual void update_param(std::size_t i, std::size_t lo, std::size_t hi) = 0;
  /// Allocates one zeroed state slice per parameter for each name in `slices` (e.g.
  /// {"exp_avg", "exp_avg_sq"}), each 64-byte aligned; state(i, k) is slice k of parameter i.
  void allocate_state(std::vector<const char*> slices);
  T* state(std::size_t i, std::size_t k) { return state_.data() + offsets_[i] + k * strides_[i]; }
  const T* state(std::size_t i, std::size_t k) const {
    return state_.data() + offsets_[i] + k * strides_[i];
  }
  /// Scalars a rule keeps besides the step count (Adam's β powers), saved as float64.
  virtual std::vector<std::pair<const char*, double*>> scalars() { return {}; }
  /// The hyperparameters (besides lr) a restored state must agree with.
  virtual std::vector<std::pair<const char*, double>> hyper() const = 0;

  std::vector<std::shared_ptr<ParameterStorage<T>>> params_;
  std::vector<std::size_t> sizes_;  // parameter sizes at construction
  std::size_t numel_ = 0;           // their sum
  T lr_;
  std::uint64_t t_ = 0;
  const char* who_;

 private:
  AlignedVector<T> state_;
  std::vector<const char*> slices_;
  std::vector<std::size_t> offsets_;  // start of parameter i's state in state_
  std::vector<std::size_t> strides_;  // size of one slice for parameter i (rounded to 64 bytes)
};

/// Options of SGD. `momentum` = 0 gives plain SGD; `nesterov` requires momentum > 0.
struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
};

/// Stochastic gradient descent. With g = grad + weight_decay·p:
///   plain:     p ← p − lr·g
///   momentum:  v ← μ·v + g  (v starts at 0, so the first step sets v = g);  p ← p − lr·v
///   Nesterov:  v ← μ·v + g;  p ← p − lr·(g + μ·v)
/// State: "momentum_buffer" per parameter (with momentum).
template <class T>
class SGD final : public Optimizer<T> {
 public:
  SGD(const std::vector<Parameter<T>*>& params, T lr, T weight_decay = T(0))
      : SGD(params, SGDOptions{double(lr), 0.0, false, double(weight_decay)}) {}
  SGD(const std::vector<Parameter<T>*>& params, const SGDOptions& options);

  T momentum() const { return momentum_; }
  bool nesterov() const { return nesterov_; }
  T weight_decay() const { return weight_decay_; }
  /// Parameter i's momentum buffer v (null without momentum).
  const T* momentum_buffer(std::size_t i) const {
    return momentum_ != T(0) ? this->state(i, 0) : nullptr;
  }

 protected:
  void update_param(std::size_t i, std::size_t lo, std::size_t hi) override;
  std::vector<std::pair<const char*, double>> hyper() const override {
    return {{"momentum", double(momentum_)},
            {"nesterov", nesterov_ ? 1.0 : 0.0},
            {"weight_decay", double(weight_decay_)}};
  }

 private:
  T momentum_, weight_decay_;
  bool nesterov_;
};

/// Options of Adam (defaults from Kingma & Ba 2015).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  // L2, added to the gradient (AdamW decouples it)
};

/// Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", Algorithm 1). At step
/// t = 1, 2, … with g = grad + weight_decay·p:
///   m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
///   m̂ = m / (1 − β1ᵗ)              v̂ = v / (1 − β2ᵗ)
///   p ← p − lr · m̂ / (√v̂ + ε)
/// State: "exp_avg" (m) and "exp_avg_sq" (v) per parameter; β1ᵗ and β2ᵗ.
template <class T>
class Adam : public Optimizer<T> {
 public:
  Adam(const std::vector<Parameter<T>*>& params, const AdamOptions& options = {});
  Adam(const std::vector<Parameter<T>*>& params, T lr) : Adam(params, AdamOptions{double(lr)}) {}

  T beta1() const { return beta1_; }
  T beta2() const { return beta2_; }
  T eps() const { return eps_; }
  T weight_decay() const { return weight_decay_; }
  /// Parameter i's first and second moment estimates m and v.
  const T* first_moment(std::size_t i) const { return this->state(i, 0); }
  const T* second_moment(std::size_t i) const { return this->state(i, 1); }

 protected:
  Adam(const std::vector<Parameter<T>*>& params, const AdamOptions& options, const char* who,
       bool decoupled);
  void prepare() override;
  void update_param(std::size_t i, std::size_t lo, std::size_t hi) override;
  std::vector<std::pair<const char*, double*>> scalars() override {
    return {{"beta1_power", &beta1_pow_}, {"beta2_power", &beta2_pow_}};
  }
  std::vector<std::pair<const char*, double>> hyper() const override {
    return {{"beta1", double(beta1_)},
            {"beta2", double(beta2_)},
            {"eps", double(eps_)},
            {"weight_decay", double(weight_decay_)}};
  }

 private:
  T beta1_, beta2_, eps_, weight_decay_;
  bool decoupled_;
  double beta1_pow_ = 1, beta2_pow_ = 1;  // β1ᵗ, β2ᵗ, kept in double across steps
  T c1_ = 1, c2_ = 1;                     // 1/(1 − β1ᵗ), 1/(1 − β2ᵗ) of the current step
};

/// Options of AdamW: Adam's, with a decoupled weight decay of 0.01 by default.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

/// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"): the decay shrinks the
/// parameter directly instead of entering the moments. At step t, with g = grad:
///   p ← p · (1 − lr·weight_decay)
///   then Adam's update of p from g (m, v, bias corrections, as above, without L2)
/// State: as Adam's.
template <class T>
class AdamW final : public Adam<T> {
 public:
  AdamW(const std::vector<Parameter<T>*>& params, const AdamWOptions& o = {})
      : Adam<T>(params, AdamOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, "AdamW", true) {
  }
};

/// Options of RMSprop (PyTorch's defaults, with ε = 1e-8).
struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0;  // L2
  double momentum = 0;
  bool centered = false;
};

/// RMSprop (Hinton, Lecture 6e). With g = grad + weight_decay·p:
///   s ← α·s + (1 − α)·g²
///   centered:  a ← α·a + (1 − α)·g,  d = √(s − a²) + ε;   otherwise d = √s + ε
///   momentum μ > 0:  b ← μ·b + g/d,  p ← p − lr·b;        otherwise p ← p − lr·g/d
/// State: "square_avg" (s), "momentum_buffer" (b, with momentum), "grad_avg" (a, centered).
template <class T>
class RMSprop final : public Optimizer<T> {
 public:
  RMSprop(const std::vector<Parameter<T>*>& params, const RMSpropOptions& options = {});

  T alpha() const { return alpha_; }
  /// Parameter i's running average of g².
  const T* square_avg(std::size_t i) const { return this->state(i, 0); }

 protected:
  void update_param(std::size_t i, std::size_t lo, std::size_t hi) override;
  std::vector<std::pair<const char*, double>> hyper() const override {
    return {{"alpha", double(alpha_)},
            {"eps", double(eps_)},
            {"weight_decay", double(weight_decay_)},
            {"momentum", double(momentum_)},
            {"centered", centered_ ? 1.0 : 0.0}};
  }

 private:
  T alpha_, eps_, weight_decay_, momentum_;
  bool centered_;
};

extern template double clip_grad_norm<float>(const std::vector<Parameter<float>*>&, double);
extern template double clip_grad_norm<double>(const std::vector<Parameter<double>*>&, double);
extern template class Optimizer<float>;
extern template class Optimizer<double>;
extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;
extern template class RMSprop<float>;
extern template class RMSprop<double>;

}  // namespace wengert::nn
