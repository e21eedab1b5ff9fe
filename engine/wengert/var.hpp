// wengert — Var<T>, the handle to one node of a tape.
//
// Part of the engine; include <wengert/tape.hpp>. A Var is 16 bytes: the tape, the node's
// index and the tape's generation when it was recorded. Tape::clear() bumps the generation, so
// a handle kept across a clear is detected as stale and throws UsageError instead of reading
// reused memory. Every read goes through node(), which makes that check.
#pragma once

#include <cstdint>
#include <string>

#include <wengert/node.hpp>

namespace wengert {

/// A light handle to one node of a tape: the result of an op, or a leaf.
template <class T>
class Var {
 public:
  using value_type = T;
  Var() = default;

  /// The tape this handle belongs to, to record on; throws UsageError if the handle is empty
  /// or stale, or if another thread owns the tape (checked first: that thread may be changing
  /// what the other checks read).
  Tape<T>& tape() const;
  bool valid() const;
  /// Why the handle cannot be used ("an empty handle (default-constructed Var)", "a stale
  /// handle to node #4: its tape was cleared after it was recorded"), or "" if it can.
  std::string invalid_reason() const;

  /// The shape, by value: a reference into the tape would dangle as soon as the next op is
  /// recorded (the node list grows), so `const Shape& s = x.shape();` before begin_op is safe.
  Shape shape() const;
  std::size_t size() const { return node().size; }
  std::size_t rank() const { return shape().rank(); }
  bool requires_grad() const { return node().flags & detail::kRequiresGrad; }
  const char* op_name() const { return node().name; }

  /// The value, as an xtensor view of tape-owned memory (no copy).
  TensorView<const T> value() const { return make_view(node().value, node().shape); }
  const T* data() const { return node().value; }
  /// The single element of a size-1 value.
  T item() const;

  /// The adjoint after backward(). Throws UsageError if this variable needs no gradient.
  TensorView<const T> grad() const;
  const T* grad_data() const;

  std::uint32_t index() const { return index_; }

  /// For ops, before they read anything through this handle: throws UsageError naming `op` if
  /// another thread owns the handle's tape (the check begin_op makes, done before the op reads
  /// shapes or values that the owner may be changing). Does nothing for an empty handle.
  void check_thread(const char* op) const;

 private:
  friend class Tape<T>;
  friend class OpBuilder<T>;
  Var(Tape<T>* t, std::uint32_t i, std::uint32_t g) : tape_(t), index_(i), gen_(g) {}
  const detail::Node<T>& node() const;
  [[noreturn, gnu::cold, gnu::noinline]] void throw_invalid() const;

  Tape<T>* tape_ = nullptr;
  std::uint32_t index_ = 0;
  std::uint32_t gen_ = 0;
};

// ---- inline definitions (templates: Tape<T> is complete wherever they are instantiated) -----

template <class T>
Tape<T>& Var<T>::tape() const {
  // Custom ops reach their tape through here: the checks stay inline, the messages out of line.
  if (tape_) tape_->check_not_foreign("tape");
  if (!valid()) throw_invalid();
  return *tape_;
}

template <class T>
void Var<T>::throw_invalid() const {
  throw UsageError("Var: " + invalid_reason());
}

template <class T>
std::string Var<T>::invalid_reason() const {
  if (!tape_) return "an empty handle (default-constructed Var)";
  if (valid()) return "";
  return "a stale handle to node #" + std::to_string(index_) +
         ": its tape was cleared after it was recorded";
}

template <class T>
void Var<T>::check_thread(const char* op) const {
  if (tape_) tape_->check_owner(op);
}

template <class T>
bool Var<T>::valid() const {
  return tape_ && gen_ == tape_->gen_ && index_ < tape_->nodes_.size();
}

template <class T>
const detail::Node<T>& Var<T>::node() const {
  // Reads (shape, value, grad) are allowed from any thread once the owner is done with them.
  if (!valid()) throw_invalid();
  return tape_->nodes_[index_];
}

template <class T>
Shape Var<T>::shape() const {
  return node().shape;
}

template <class T>
T Var<T>::item() const {
  const auto& n = node();
  if (n.size != 1)
    throw ShapeError(std::string("item: '") + n.name + "' output is " + n.shape.str() +
                     ", not a single element");
  return n.value[0];
}

template <class T>
TensorView<const T> Var<T>::grad() const {
  return make_view(grad_data(), node().shape);
}

template <class T>
const T* Var<T>::grad_data() const {
  const auto& n = node();
  // An empty Parameter's gradient storage is null yet it needs a gradient: zero elements.
  if (!n.grad && !(n.size == 0 && (n.flags & detail::kRequiresGrad)))
    throw UsageError(std::string("grad: node #") + std::to_string(index_) + " ('" + n.name +
                     "') needs no gradient (a constant, detached, or recorded under no-grad)");
  return n.grad;
}

}  // namespace wengert
