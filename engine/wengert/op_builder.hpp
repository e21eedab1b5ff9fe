// wengert — the custom-op API: OpBuilder<T> records an op, BackwardContext<T> runs its backward.
//
// Part of the engine; include <wengert/tape.hpp>. Every built-in op is written with exactly
// these two classes, as a user's op is (examples/custom_op):
//
//   auto op = x.tape().begin_op("my_op", {x}, out_shape);   // validates, reserves the output
//   ... compute op.out_data() from op.input_data(0) ...
//   return op.finish([](const BackwardContext<T>& c) {       // the backward, right below
//     if (c.needs_grad(0)) ... c.grad_data(0)[i] += ...;       // accumulate, skip if not needed
//   });
//
// An OpBuilder destroyed without finish() (the forward threw) rolls the tape back to exactly
// where it was: nodes, input list and arena.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include <wengert/arena.hpp>
#include <wengert/node.hpp>
#include <wengert/var.hpp>

namespace wengert {

/// What an op's backward closure sees: the output's value and adjoint, the inputs' values and
/// (for those that need one) their adjoints, into which it accumulates with +=.
template <class T>
class BackwardContext {
 public:
  std::size_t num_inputs() const { return node_->in_count; }
  /// Whether input i needs a gradient in this sweep. Skip the work when it does not.
  bool needs_grad(std::size_t i) const { return marks_[inputs_[i]] & detail::kActive; }

  const Shape& out_shape() const { return node_->shape; }
  std::size_t out_size() const { return node_->size; }
  const T* out_data() const { return node_->value; }
  const T* out_grad_data() const { return node_->grad; }
  TensorView<const T> out_value() const { return make_view(node_->value, node_->shape); }
  TensorView<const T> out_grad() const {
    return make_view(static_cast<const T*>(node_->grad), node_->shape);
  }

  const Shape& input_shape(std::size_t i) const { return in(i).shape; }
  std::size_t input_size(std::size_t i) const { return in(i).size; }
  const T* input_data(std::size_t i) const { return in(i).value; }
  TensorView<const T> input(std::size_t i) const { return make_view(in(i).value, in(i).shape); }
  /// Adjoint of input i (only valid when needs_grad(i)).
  T* grad_data(std::size_t i) const { return in(i).grad; }
  TensorView<T> grad(std::size_t i) const { return make_view(in(i).grad, in(i).shape); }

 private:
  friend class Tape<T>;
  BackwardContext(const detail::Node<T>* nodes, const detail::Node<T>* node,
                  const std::uint32_t* inputs, const std::uint8_t* marks)
      : nodes_(nodes), node_(node), inputs_(inputs), marks_(marks) {}
  const detail::Node<T>& in(std::size_t i) const { return nodes_[inputs_[i]]; }

  const detail::Node<T>* nodes_;
  const detail::Node<T>* node_;
  const std::uint32_t* inputs_;
  const std::uint8_t* marks_;
};

/// What an op's forward kernel sees when Tape::replay() runs it again: the inputs' current
/// values and the output's memory, the same addresses as when the op was recorded.
template <class T>
class ForwardContext {
 public:
  std::size_t num_inputs() const { return node_->in_count; }
  const Shape& input_shape(std::size_t i) const { return in(i).shape; }
  std::size_t input_size(std::size_t i) const { return in(i).size; }
  const T* input_data(std::size_t i) const { return in(i).value; }
  TensorView<const T> input(std::size_t i) const { return make_view(in(i).value, in(i).shape); }

  const Shape& out_shape() const { return node_->shape; }
  std::size_t out_size() const { return node_->size; }
  T* out_data() const { return const_cast<T*>(node_->value); }
  TensorView<T> out() const { return make_view(out_data(), node_->shape); }

 private:
  friend class Tape<T>;
  friend class OpBuilder<T>;
  ForwardContext(const detail::Node<T>* nodes, const detail::Node<T>* node,
                 const std::uint32_t* inputs)
      : nodes_(nodes), node_(node), inputs_(inputs) {}
  const detail::Node<T>& in(std::size_t i) const { return nodes_[inputs_[i]]; }

  const detail::Node<T>* nodes_;
  const detail::Node<T>* node_;
  const std::uint32_t* inputs_;
};

/// Records one op. Obtained from Tape::begin_op; write the forward value into out(), then call
/// finish() with the backward closure. If the builder is destroyed without finish() (e.g. the
/// forward computation threw), the tape is rolled back to exactly where it was.
template <class T>
class OpBuilder {
 public:
  OpBuilder(const OpBuilder&) = delete;
  OpBuilder& operator=(const OpBuilder&) = delete;
  ~OpBuilder() {
    if (!done_) tape_->rollback(rollback_);
  }

  /// Whether the output needs a gradient (grad mode on and some input needs one). When false,
  /// finish() discards the closure: there is nothing to do in backward.
  bool requires_grad() const { return node().flags & detail::kRequiresGrad; }

  const Shape& out_shape() const { return node().shape; }
  std::size_t out_size() const { return node().size; }
  T* out_data() const { return const_cast<T*>(node().value); }
  TensorView<T> out() const { return make_view(out_data(), node().shape); }

  std::size_t num_inputs() const { return node().in_count; }
  const Shape& input_shape(std::size_t i) const { return in(i).shape; }
  std::size_t input_size(std::size_t i) const { return in(i).size; }
  const T* input_data(std::size_t i) const { return in(i).value; }
  TensorView<const T> input(std::size_t i) const { return make_view(in(i).value, in(i).shape); }

  /// Allocates `n` elements of scratch memory on the tape (e.g. a softmax kept for backward),
  /// 64-byte aligned, valid until the tape is cleared. Not zeroed.
  T* scratch(std::size_t n) { return tape_->template arena_alloc<T>(n); }
  /// The same for another trivial type U (indices, a mask of bytes).
  template <class U>
  U* scratch_as(std::size_t n) {
    static_assert(std::is_trivially_destructible_v<U> && alignof(U) <= 64);
    return tape_->template arena_alloc<U>(n);
  }

  /// Completes the op. `backward` is called as backward(const BackwardContext<T>&) during the
  /// sweep; it must accumulate (+=) into ctx.grad(i) for the inputs with ctx.needs_grad(i).
  template <class F>
  Var<T> finish(F&& backward);

  /// As finish(backward), for an op whose forward is a kernel: `forward`, called as
  /// forward(const ForwardContext<T>&), computes ctx.out_data() (and any scratch the backward
  /// reads, captured by pointer) from the inputs' values, with no validation or allocation.
  /// finish runs it — do not compute the output before — and Tape::replay() runs it again: the
  /// same machine code both times, so a replay gives a fresh recording's bits. (An op that
  /// computed its output itself and also handed over a copy of that code could differ in the
  /// last bit: a compiler contracts a·b + c into one FMA or not depending on where the code was
  /// inlined.) It is kept even when no gradient is needed, since replay recomputes every value.
  /// Whatever it reads besides the inputs (a pointer the caller passed) must still be valid
  /// whenever the tape is replayed. If it throws, the op is rolled back as if never begun.
  template <class Fw, class Bw>
  Var<T> finish(Fw&& forward, Bw&& backward);

 private:
  template <class Fn>
  std::decay_t<Fn>* store_closure(void* mem, Fn&& fn);
  friend class Tape<T>;
  OpBuilder(Tape<T>* tape, std::uint32_t index, typename Tape<T>::RollbackPoint rb)
      : tape_(tape), index_(index), rollback_(rb) {}
  const detail::Node<T>& node() const { return tape_->nodes_[index_]; }
  const detail::Node<T>& in(std::size_t i) const {
    return tape_->nodes_[tape_->inputs_[node().in_begin + i]];
  }

  Tape<T>* tape_;
  std::uint32_t index_;
  typename Tape<T>::RollbackPoint rollback_;
  bool done_ = false;
};

// ---- inline definitions ----------------------------------------------------------------------

template <class T>
template <class Fn>
std::decay_t<Fn>* OpBuilder<T>::store_closure(void* mem, Fn&& fn) {
  using F = std::decay_t<Fn>;
  if constexpr (std::is_trivially_destructible_v<F>) {
    return new (mem) F(std::forward<Fn>(fn));
  } else {
    // Registered for clear() before it exists (the list may fail to grow; the builder's
    // rollback then undoes the op), withdrawn if its construction throws.
    auto& list = tape_->destructors_;
    list.push_back({mem, [](void* c) { static_cast<F*>(c)->~F(); }});
    try {
      return new (mem) F(std::forward<Fn>(fn));
    } catch (...) {
      list.pop_back();
      throw;
    }
  }
}

template <class T>
template <class F>
Var<T> OpBuilder<T>::finish(F&& backward) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn&, const BackwardContext<T>&>,
                "backward closure must be callable as f(const BackwardContext<T>&)");
  static_assert(alignof(Fn) <= detail::Arena::kBlockAlign,
                "a backward closure may not need more than 64-byte alignment");
  detail::Node<T>& n = tape_->nodes_[index_];
  if (anomaly_mode()) tape_->check_finite_output(n);
  if (n.flags & detail::kRequiresGrad) {
    void* mem = tape_->arena_.allocate(sizeof(Fn), alignof(Fn));
    n.closure = store_closure(mem, std::forward<F>(backward));
    n.backward = [](void* c, const BackwardContext<T>& ctx) { (*static_cast<Fn*>(c))(ctx); };
  }
  // A view op (begin_view_op) has nothing to recompute: replay points it at its input again.
  const auto& views = tape_->views_;
  const bool view = !views.empty() && views.back().node == index_;
  if (!view && tape_->first_unreplayable_ > index_) tape_->first_unreplayable_ = index_;
  done_ = true;
  tape_->building_ = false;
  return tape_->handle(index_);
}

template <class T>
template <class Fw, class Bw>
Var<T> OpBuilder<T>::finish(Fw&& forward, Bw&& backward) {
  using F = std::decay_t<Fw>;
  using B = std::decay_t<Bw>;
  static_assert(std::is_invocable_v<F&, const ForwardContext<T>&>,
                "forward kernel must be callable as f(const ForwardContext<T>&)");
  static_assert(std::is_invocable_v<B&, const BackwardContext<T>&>,
                "backward closure must be callable as f(const BackwardContext<T>&)");
  struct Both {
    detail::ForwardThunk<T> thunk;  // first: replay reads it from the closure's address
    F f;
    B b;
  };
  static_assert(alignof(Both) <= detail::Arena::kBlockAlign,
                "a closure may not need more than 64-byte alignment");
  detail::Node<T>& n = tape_->nodes_[index_];
  void* mem = tape_->arena_.allocate(sizeof(Both), alignof(Both));
  Both* both = store_closure(
      mem, Both{[](void* c, const ForwardContext<T>& ctx) { static_cast<Both*>(c)->f(ctx); },
                std::forward<Fw>(forward), std::forward<Bw>(backward)});
  try {  // the forward, through the entry point replay uses (see above)
    both->thunk(both,
                ForwardContext<T>(tape_->nodes_.data(), &n, tape_->inputs_.data() + n.in_begin));
    if (anomaly_mode()) tape_->check_finite_output(n);
  } catch (...) {
    if constexpr (!std::is_trivially_destructible_v<Both>) {
      tape_->destructors_.pop_back();  // registered last, by store_closure
      both->~Both();
    }
    throw;  // the builder's destructor rolls the op back
  }
  n.closure = both;
  n.flags |= detail::kReplayable;
  if (n.flags & detail::kRequiresGrad)
    n.backward = [](void* c, const BackwardContext<T>& ctx) { static_cast<Both*>(c)->b(ctx); };
  done_ = true;
  tape_->building_ = false;
  return tape_->handle(index_);
}

}  // namespace wengert
