// wengert — Parameter<T>, a persistent tensor with a gradient.
//
// Part of the engine; include <wengert/tape.hpp>. A Parameter outlives tapes: Tape::param(p)
// records a leaf that aliases its value and gradient (no copy), and every backward accumulates
// into p.grad() until zero_grad(). Optimizers (nn/) update it in place.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xnoalias.hpp>

#include <wengert/arena.hpp>
#include <wengert/node.hpp>

namespace wengert {

/// A persistent tensor with a gradient: its value and gradient live here, outlive any tape, and
/// backward accumulates into the gradient until zero_grad(). Storage is 64-byte aligned and
/// is not reallocated except by assigning another Parameter to this one, so optimizers hold
/// pointers to it and update it in place.
template <class T>
class Parameter {
 public:
  /// An empty parameter, shape [0].
  Parameter() : shape_{0} {}
  /// Zero value and gradient of `shape`. Throws ResourceError (naming the parameter, its shape
  /// and the bytes) if they cannot be allocated.
  explicit Parameter(const Shape& shape, std::string name = {})
      : shape_(shape), name_(std::move(name)) {
    try {
      value_.assign(shape.size(), T(0));
      grad_.assign(shape.size(), T(0));
    } catch (const ResourceError& e) {
      throw ResourceError("Parameter" + (name_.empty() ? std::string() : " '" + name_ + "'") +
                          " of shape " + shape.str() + ": its value and gradient need " +
                          std::to_string(shape.size() * sizeof(T)) + " bytes each: " + e.what());
    }
  }
  template <class E>
  explicit Parameter(const xt::xexpression<E>& init, std::string name = {})
      : Parameter(Shape(init.derived_cast().shape()), std::move(name)) {
    xt::noalias(value()) = init.derived_cast();
  }

  const Shape& shape() const { return shape_; }
  std::size_t size() const { return value_.size(); }
  const std::string& name() const { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }

  T* data() { return value_.data(); }
  const T* data() const { return value_.data(); }
  T* grad_data() { return grad_.data(); }
  const T* grad_data() const { return grad_.data(); }

  TensorView<T> value() { return make_view(value_.data(), shape_); }
  TensorView<const T> value() const { return make_view(value_.data(), shape_); }
  TensorView<T> grad() { return make_view(grad_.data(), shape_); }
  TensorView<const T> grad() const { return make_view(grad_.data(), shape_); }

  void zero_grad() { std::fill(grad_.begin(), grad_.end(), T(0)); }

 private:
  Shape shape_;
  AlignedVector<T> value_;
  AlignedVector<T> grad_;
  std::string name_;
};

}  // namespace wengert
