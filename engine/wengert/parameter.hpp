// wengert — Parameter<T>, a persistent tensor with a gradient.
//
// Part of the engine; include <wengert/tape.hpp>. A Parameter outlives tapes: Tape::param(p)
// records a leaf that aliases its value and gradient (no copy), and every backward accumulates
// into p.grad() until zero_grad(). Optimizers (nn/) update it in place.
//
// Stable storage. The value, gradient, shape and name live in a heap block (ParameterStorage)
// that the Parameter object points to, and optimizers share that block (storage()). So a
// Parameter — and a layer or model holding Parameters — may be moved freely after an optimizer
// was built from it: put nn::Linear layers in a std::vector, build Adam, grow the vector, sort
// it, erase from it, and Adam still updates the memory the layers' Parameters use. The rules:
//   * moving a Parameter (construction or assignment) moves its block: the optimizer follows
//     the values wherever they go;
//   * copying a Parameter makes a new block (an independent copy, not seen by the optimizer);
//   * copy-assigning into a Parameter replaces the contents of its own block, so its optimizer
//     sees the new values (and throws UsageError at its next step if the size changed: its
//     state was sized for the old one);
//   * a block whose Parameter is destroyed, or move-assigned over, is orphaned: an optimizer
//     still holding it throws UsageError at its next step (it would otherwise train memory that
//     no model reads) — e.g. after `model = MLP(...)` replaced the model it was built for;
//   * a moved-from Parameter has no block: any use of it other than assigning to it or
//     destroying it throws UsageError.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xnoalias.hpp>

#include <wengert/arena.hpp>
#include <wengert/node.hpp>

namespace wengert {

/// What a Parameter owns, in one heap block shared with the optimizers that update it.
/// value and grad hold shape.size() elements each, 64-byte aligned.
template <class T>
struct ParameterStorage {
  Shape shape{0};
  AlignedVector<T> value;
  AlignedVector<T> grad;
  std::string name;
  /// False once no Parameter owns this block (see "Stable storage" above).
  bool owned = true;
};

/// A persistent tensor with a gradient: its value and gradient outlive any tape, and backward
/// accumulates into the gradient until zero_grad(). See the top of this header for how its
/// storage stays put when the Parameter object moves.
template <class T>
class Parameter {
 public:
  /// An empty parameter, shape [0].
  Parameter() : s_(std::make_shared<ParameterStorage<T>>()) {}
  /// Zero value and gradient of `shape`. Throws ResourceError (naming the parameter, its shape
  /// and the bytes) if they cannot be allocated.
  explicit Parameter(const Shape& shape, std::string name = {}) : Parameter() {
    s_->shape = shape;
    s_->name = std::move(name);
    try {
      s_->value.assign(shape.size(), T(0));
      s_->grad.assign(shape.size(), T(0));
    } catch (const ResourceError& e) {
      throw ResourceError("Parameter" + (s_->name.empty() ? std::string() : " '" + s_->name + "'") +
                          " of shape " + shape.str() + ": its value and gradient need " +
                          std::to_string(shape.size() * sizeof(T)) + " bytes each: " + e.what());
    }
  }
  template <class E>
  explicit Parameter(const xt::xexpression<E>& init, std::string name = {})
      : Parameter(Shape(init.derived_cast().shape()), std::move(name)) {
    xt::noalias(value()) = init.derived_cast();
  }

  /// A deep copy: a new block with the same shape, name, value and gradient.
  Parameter(const Parameter& o) : s_(std::make_shared<ParameterStorage<T>>(o.s())) {}
  /// Takes o's block (and with it every optimizer's view of it); o is left moved-from.
  Parameter(Parameter&& o) noexcept : s_(std::move(o.s_)) {}
  /// Copies o's shape, name, value and gradient into this Parameter's own block.
  Parameter& operator=(const Parameter& o) {
    if (this != &o) {
      ParameterStorage<T> copy(o.s());  // may throw: this Parameter is unchanged then
      adopt(std::move(copy));
    }
    return *this;
  }
  /// Takes o's block (its optimizers follow it); this Parameter's old block is orphaned and o
  /// is left moved-from.
  Parameter& operator=(Parameter&& o) {
    if (this != &o) {
      o.s();  // a moved-from source is a UsageError, and this Parameter stays as it was
      release();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  ~Parameter() { release(); }

  const Shape& shape() const { return s().shape; }
  std::size_t size() const { return s().value.size(); }
  const std::string& name() const { return s().name; }
  void set_name(std::string n) { s().name = std::move(n); }

  T* data() { return s().value.data(); }
  const T* data() const { return s().value.data(); }
  T* grad_data() { return s().grad.data(); }
  const T* grad_data() const { return s().grad.data(); }

  TensorView<T> value() { return make_view(data(), shape()); }
  TensorView<const T> value() const { return make_view(data(), shape()); }
  TensorView<T> grad() { return make_view(grad_data(), shape()); }
  TensorView<const T> grad() const { return make_view(grad_data(), shape()); }

  void zero_grad() {
    auto& g = s().grad;
    std::fill(g.begin(), g.end(), T(0));
  }

  /// The block this Parameter's value and gradient live in, shared: optimizers hold it, so they
  /// keep updating the right memory however the Parameter object moves (and keep it alive).
  const std::shared_ptr<ParameterStorage<T>>& storage() const {
    s();
    return s_;
  }
  /// False once moved from.
  bool valid() const { return s_ != nullptr; }

 private:
  ParameterStorage<T>& s() const {
    if (!s_)
      throw UsageError(
          "Parameter: this Parameter was moved from; it holds nothing until it is assigned to");
    return *s_;
  }
  void adopt(ParameterStorage<T>&& from) {
    if (!s_) s_ = std::make_shared<ParameterStorage<T>>();
    from.owned = true;
    *s_ = std::move(from);
  }
  void release() noexcept {
    if (s_) s_->owned = false;
    s_.reset();
  }

  std::shared_ptr<ParameterStorage<T>> s_;
};

}  // namespace wengert
