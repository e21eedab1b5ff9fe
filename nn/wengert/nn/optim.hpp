// wengert — optimizers: SGD (with optional momentum, Nesterov, weight decay) and Adam.
//
// Design in brief:
//
// * An optimizer is given the parameters it updates once, at construction, as pointers
//   (`std::vector<Parameter<T>*>`, e.g. from `model.parameters()`). The Parameters must outlive
//   the optimizer and stay where they are (do not move the model after building it).
//
// * step() updates each Parameter's value in place from its gradient (`grad_data()`), then
//   leaves the gradient as it is: call zero_grad() before the next backward, since backward
//   accumulates into Parameter gradients.
//
// * State (momentum buffer, Adam's first and second moments) lives in one 64-byte-aligned
//   buffer allocated at construction, one aligned slice per parameter. step() therefore never
//   allocates; its loops are plain element loops over contiguous memory that gcc vectorises at
//   -O3 -march=native (Adam's square root goes through xsimd, because a scalar std::sqrt loop is
//   not vectorised while errno semantics are on).
//
// * The update rules follow PyTorch's conventions (weight decay is L2: added to the gradient;
//   the first momentum step sets v = g). Each rule is written out on its class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <wengert/tape.hpp>

namespace wengert::nn {

/// Sets the gradient of every parameter in `params` to zero.
template <class T>
void zero_grad(const std::vector<Parameter<T>*>& params) {
  for (Parameter<T>* p : params) p->zero_grad();
}

/// What all optimizers share: the parameter list, the learning rate and zero_grad().
template <class T>
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// One update of every parameter from its current gradient. Allocates nothing.
  virtual void step() = 0;
  /// Zeroes the gradients of this optimizer's parameters.
  void zero_grad() { nn::zero_grad(params_); }

  T lr() const { return lr_; }
  /// Changes the learning rate (for schedules); must be finite and ≥ 0.
  void set_lr(T lr);
  const std::vector<Parameter<T>*>& parameters() const { return params_; }

 protected:
  /// Validates the list (no null, no duplicate) and lr; `who` names the optimizer in errors.
  Optimizer(std::vector<Parameter<T>*> params, T lr, const char* who);
  /// Throws UsageError if a parameter changed size since construction (its state would not fit).
  void check_sizes() const;
  /// Allocates `per_param` zeroed state slices per parameter, each 64-byte aligned.
  void allocate_state(std::size_t per_param);
  /// Slice `k` (0 ≤ k < per_param) of parameter i's state.
  T* state(std::size_t i, std::size_t k) { return state_.data() + offsets_[i] + k * strides_[i]; }
  const T* state(std::size_t i, std::size_t k) const {
    return state_.data() + offsets_[i] + k * strides_[i];
  }

  std::vector<Parameter<T>*> params_;
  std::vector<std::size_t> sizes_;  // parameter sizes at construction
  T lr_;
  const char* who_;

 private:
  AlignedVector<T> state_;
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
template <class T>
class SGD final : public Optimizer<T> {
 public:
  SGD(std::vector<Parameter<T>*> params, T lr, T weight_decay = T(0))
      : SGD(std::move(params), SGDOptions{double(lr), 0.0, false, double(weight_decay)}) {}
  SGD(std::vector<Parameter<T>*> params, const SGDOptions& options);

  void step() override;

  T momentum() const { return momentum_; }
  bool nesterov() const { return nesterov_; }
  T weight_decay() const { return weight_decay_; }
  /// Parameter i's momentum buffer v (null without momentum).
  const T* momentum_buffer(std::size_t i) const {
    return momentum_ != T(0) ? this->state(i, 0) : nullptr;
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
  double weight_decay = 0;  // L2, added to the gradient (not AdamW's decoupled decay)
};

/// Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", Algorithm 1). At step
/// t = 1, 2, … with g = grad + weight_decay·p:
///   m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
///   m̂ = m / (1 − β1ᵗ)              v̂ = v / (1 − β2ᵗ)
///   p ← p − lr · m̂ / (√v̂ + ε)
template <class T>
class Adam final : public Optimizer<T> {
 public:
  Adam(std::vector<Parameter<T>*> params, const AdamOptions& options = {});
  Adam(std::vector<Parameter<T>*> params, T lr)
      : Adam(std::move(params), AdamOptions{double(lr)}) {}

  void step() override;

  /// Number of steps taken (t after the last step).
  std::uint64_t steps() const { return t_; }
  T beta1() const { return beta1_; }
  T beta2() const { return beta2_; }
  T eps() const { return eps_; }
  /// Parameter i's first and second moment estimates m and v.
  const T* first_moment(std::size_t i) const { return this->state(i, 0); }
  const T* second_moment(std::size_t i) const { return this->state(i, 1); }

 private:
  T beta1_, beta2_, eps_, weight_decay_;
  std::uint64_t t_ = 0;
  double beta1_pow_ = 1, beta2_pow_ = 1;  // β1ᵗ, β2ᵗ, kept in double across steps
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;
extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;

}  // namespace wengert::nn
