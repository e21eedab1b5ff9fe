// wengert — the Wengert tape.
//
// Design in brief (see README "How it works" for the long form):
//
// * A Tape<T> is a flat list of nodes in evaluation order. Every op appends exactly one node
//   (its output) and, if the output needs a gradient, a backward closure. Because the list is
//   in evaluation order it already is a topological order: backward() walks it from the output
//   down to node 0 in one loop — no graph sort, no recursion, so a million-op chain is fine.
//
// * Values, adjoints and closures live in the tape's Arena: blocks that are rewound, not freed,
//   by clear(). The node and input lists are std::vectors that keep their capacity. Replaying
//   the same forward + backward after clear() therefore allocates nothing.
//
// * A Var<T> is a 16-byte handle (tape, index, generation). clear() bumps the generation, so
//   a handle recorded before the clear throws UsageError instead of reading reused memory.
//
// * Leaves: constants (no gradient; copied into the arena, or aliased with constant_view),
//   tape variables (gradient lives on the tape), and Parameters (value and gradient live in the
//   Parameter and outlive tapes; backward accumulates into them until zero_grad()).
//
// * Ops are recorded with begin_op() → compute into out() → finish(backward closure). Every
//   built-in op uses exactly this API (see ops/). The closure receives a BackwardContext and
//   accumulates (+=) into the inputs that need_grad(). Whatever it captures is destroyed by
//   clear() or by the tape's destructor.
//
// * One tape is used by one thread at a time: the first thread that records after a clear owns
//   the tape until its own next clear(); any other thread that records, sweeps or clears it
//   gets a UsageError. After the owner's clear() any thread may take the tape over.
//   Many threads may each use their own tape concurrently: wengert has no shared mutable state.
//
// The engine, one concept a header (read them in this order):
//   shape.hpp, errors.hpp, grad_mode.hpp  Shape; the error types; no-grad and anomaly modes
//   arena.hpp                             the bump allocator behind values, adjoints, closures
//   node.hpp                              one tape entry (detail::Node) and TensorView
//   var.hpp                               Var<T>, the 16-byte handle
//   parameter.hpp                         Parameter<T>, persistent value + gradient
//   op_builder.hpp                        OpBuilder<T> and BackwardContext<T>: the custom-op API
//   tape.hpp (this file)                  Tape<T>: leaves, begin_op, the backward sweep
//   gradcheck.hpp                         finite-difference checks of any op
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iosfwd>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xnoalias.hpp>

#include <wengert/arena.hpp>
#include <wengert/errors.hpp>
#include <wengert/grad_mode.hpp>
#include <wengert/node.hpp>
#include <wengert/op_builder.hpp>
#include <wengert/parameter.hpp>
#include <wengert/shape.hpp>
#include <wengert/var.hpp>

namespace wengert {

template <class T>
class Tape {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "wengert tapes hold float or double");

 public:
  using value_type = T;

  Tape() : gen_(detail::next_tape_generation_base()) {}
  ~Tape() { destroy_closures(); }
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // ---- leaves ---------------------------------------------------------------------------

  /// A constant (no gradient), copied into tape memory.
  template <class E>
  Var<T> constant(const xt::xexpression<E>& e) {
    const auto& ex = e.derived_cast();
    Shape s(ex.shape());
    check_owner("constant");
    std::uint32_t i = push_leaf("constant", s, nullptr, 0);
    xt::noalias(make_view(const_cast<T*>(nodes_[i].value), s)) = ex;
    return handle(i);
  }
  Var<T> constant(T scalar) { return constant_from(&scalar, Shape{}, "constant"); }
  /// A constant copied from `data` (shape.size() elements).
  Var<T> constant(const T* data, const Shape& shape) {
    return constant_from(data, shape, "constant");
  }
  /// A constant that aliases caller memory without copying; the memory must stay valid and
  /// unchanged until the tape is cleared.
  Var<T> constant_view(const T* data, const Shape& shape) {
    check_owner("constant_view");
    return handle(push_leaf("constant", shape, data, detail::kAliased));
  }

  /// A leaf that needs a gradient, owned by the tape (read it with .grad() after backward).
  template <class E>
  Var<T> variable(const xt::xexpression<E>& e) {
    const auto& ex = e.derived_cast();
    Shape s(ex.shape());
    check_owner("variable");
    std::uint32_t i = push_leaf("variable", s, nullptr, grad_flag());
    xt::noalias(make_view(const_cast<T*>(nodes_[i].value), s)) = ex;
    return handle(i);
  }
  Var<T> variable(T scalar) { return variable(const_cast<const T*>(&scalar), Shape{}); }
  Var<T> variable(const T* data, const Shape& shape) {
    check_owner("variable");
    std::uint32_t i = push_leaf("variable", shape, nullptr, grad_flag());
    std::copy(data, data + shape.size(), const_cast<T*>(nodes_[i].value));
    return handle(i);
  }

  /// A persistent parameter: no copy; backward accumulates into p's gradient.
  Var<T> param(Parameter<T>& p);

  /// The same value as x, cut from the graph: no gradient flows through it. No copy.
  Var<T> detach(const Var<T>& x) {
    check_owner("detach");
    check_input(x, "detach", 0);
    const detail::Node<T>& n = nodes_[x.index_];
    views_.push_back({static_cast<std::uint32_t>(nodes_.size()), x.index_, 0});  // for replay
    try {
      return handle(push_leaf("detach", n.shape, n.value, detail::kAliased));
    } catch (...) {
      views_.pop_back();
      throw;
    }
  }

  // ---- recording ops (the custom-op API) -------------------------------------------------

  /// Starts recording op `name` (a string literal: it is stored, not copied) with `inputs`
  /// and an output of shape `out`. Validates the inputs (same tape, not stale, this thread).
  OpBuilder<T> begin_op(const char* name, std::initializer_list<Var<T>> inputs, const Shape& out,
                        SourceLoc loc = SourceLoc::current()) {
    return begin_op(name, inputs.begin(), inputs.size(), out, loc);
  }
  OpBuilder<T> begin_op(const char* name, const Var<T>* inputs, std::size_t n_inputs,
                        const Shape& out, SourceLoc loc = SourceLoc::current()) {
    return begin_op_impl(name, inputs, n_inputs, out, loc, nullptr, 0);
  }
  /// As begin_op with the one input x, but the output is a view: its value is x's memory from
  /// element `offset` on (out.size() elements; a UsageError if they do not fit), not a copy.
  /// Only the adjoint is allocated. The op must not write out_data(). For ops that only
  /// re-read memory (reshape, squeeze, a slice of contiguous rows): like detach, the view shows
  /// x's memory as it is when read, so a Parameter's view follows the Parameter.
  OpBuilder<T> begin_view_op(const char* name, const Var<T>& x, const Shape& out,
                             std::size_t offset = 0, SourceLoc loc = SourceLoc::current()) {
    return begin_op_impl(name, &x, 1, out, loc, &x, offset);
  }

  // ---- replay ----------------------------------------------------------------------------
  //
  // A training step whose ops and shapes do not change can be recorded once and replayed:
  //
  //   Var<float> x = tape.constant_view(batch.data(), {128, 784});   // record once
  //   Var<float> loss = model(x, labels.data());
  //   for (...) {
  //     fill(batch, labels);     // new values in the same memory (or tape.set_input(x, p, s))
  //     tape.replay();           // every op's value recomputed, nothing validated or allocated
  //     tape.backward(loss);     // the recorded closures, as after a fresh recording
  //     opt.step();  opt.zero_grad();
  //   }
  //
  // The gradients are those of a fresh recording of the same step, bit for bit. Handles stay
  // valid (loss.item() reads the new loss). Every op must have been recorded with a forward
  // kernel (OpBuilder::finish(forward, backward)); all built-in ops but dropout are.

  /// Recomputes every recorded op's value, in recording order, from the leaves' current values:
  /// Parameters as the optimizer left them, constant_view memory as the caller refilled it,
  /// leaves given new values with set_input. Allocates nothing and runs no validation beyond
  /// O(1) per leaf. Throws UsageError if an op was recorded without a forward kernel (naming it)
  /// or a Parameter's storage changed size since it was recorded (ShapeError), before any value
  /// changes. Arrays an op read through a pointer (labels, indices, masks) are read again from
  /// the same address: they must still be valid; their values are checked again as the replay
  /// reaches the op (ValueError), and after such a throw backward() refuses the half-replayed
  /// tape (UsageError) until a replay succeeds or the tape is cleared.
  void replay();

  /// Gives leaf x (a constant or variable, copied or constant_view) new values for replay():
  /// a copied leaf copies `data`, a constant_view aliases `data` from now on. `shape` must be the
  /// recorded one (ShapeError otherwise: a replay cannot change shapes; record the step again).
  /// UsageError if x is not such a leaf (an op output, a Parameter, a detached value).
  void set_input(const Var<T>& x, const T* data, const Shape& shape);

  // ---- backward --------------------------------------------------------------------------

  /// Backpropagates from a scalar (size-1) output y with seed 1.
  void backward(const Var<T>& y) { sweep(y, Seed{}, nullptr, 0, "backward"); }
  /// Vector–Jacobian product: backpropagates seed (any xtensor expression of y's shape) from
  /// y. The seed is added straight into y's adjoint: nothing is copied or allocated.
  template <class E>
  void backward(const Var<T>& y, const xt::xexpression<E>& seed) {
    sweep(y, expression_seed(seed), nullptr, 0, "backward");
  }
  /// As backward(y), but computes gradients only of the chosen variables `wrt`: parameters
  /// not chosen are left untouched; the tape's other adjoints are zeroed, not computed.
  /// A node in `wrt` that needs no gradient (a constant, detached, or recorded under no-grad)
  /// is a UsageError, as for jacobian's x.
  void backward(const Var<T>& y, std::initializer_list<Var<T>> wrt) {
    sweep(y, Seed{}, wrt.begin(), wrt.size(), "backward");
  }
  template <class E>
  void backward(const Var<T>& y, const xt::xexpression<E>& seed,
                std::initializer_list<Var<T>> wrt) {
    sweep(y, expression_seed(seed), wrt.begin(), wrt.size(), "backward");
  }
  /// General form: seed (y.size() contiguous values) may be null (y must then be scalar); wrt
  /// may be empty (all).
  void backward(const Var<T>& y, const T* seed, const Var<T>* wrt, std::size_t n_wrt) {
    sweep(y, Seed::values(seed), wrt, n_wrt, "backward");
  }

  /// The Jacobian dy/dx as a [y.size(), x.size()] array, by one VJP per element of y.
  /// Parameter gradients are left as they were. x must need a gradient (UsageError otherwise,
  /// as in backward's wrt); a y that does not depend on x gives zeros.
  xt::xarray<T> jacobian(const Var<T>& y, const Var<T>& x);

  // ---- lifetime and inspection -----------------------------------------------------------

  /// Forgets every node, destroys every closure, keeps all capacity. Handles recorded before
  /// become stale. Releases thread ownership: afterwards any thread may record (the tape moves
  /// between threads this way).
  /// Only the owner may clear a busy tape — one that a thread owns, i.e. has recorded on since
  /// the last clear: from any other thread clear() throws UsageError and touches nothing (it
  /// would free the nodes the owner is using). On a tape that no thread owns (new, or just
  /// cleared) there is nothing to clear, and clear() from any thread returns without touching
  /// the tape, so it cannot race with a thread that starts recording at that moment.
  /// Throws UsageError between begin_op and finish, and from inside a backward closure.
  void clear() {
    const void* cur = owner_.load(std::memory_order_acquire);
    if (cur != detail::this_thread_token()) {
      if (!cur) return;  // unowned: no nodes, closures or arena in use
      throw_foreign_clear();
    }
    check_idle("clear");
    destroy_closures();
    nodes_.clear();
    inputs_.clear();
    views_.clear();
    arena_.reset();
    zeroed_ = 0;
    first_unreplayable_ = ~std::size_t{0};
    failed_replay_ = ~std::size_t{0};
    ++gen_;
    // Release: the thread that claims the tape next (check_owner's acquiring CAS) sees it
    // cleared, with no other synchronisation between the two threads.
    owner_.store(nullptr, std::memory_order_release);
  }

  /// Number of nodes (leaves and ops) recorded since the last clear.
  std::size_t size() const { return nodes_.size(); }
  /// Bytes of arena memory held (reused across clears).
  std::size_t arena_capacity() const { return arena_.capacity(); }

  /// Text listing: one line per node — index, op, shape, inputs, gradient flag.
  void print(std::ostream& os) const;
  std::string str() const;
  /// Graphviz DOT of the recorded graph.
  void to_dot(std::ostream& os) const;

 private:
  friend class Var<T>;
  friend class OpBuilder<T>;
  [[noreturn, gnu::cold, gnu::noinline]] void throw_unreplayable() const;
  [[noreturn, gnu::cold, gnu::noinline]] void throw_failed_replay(const char* what) const;
  [[noreturn, gnu::cold, gnu::noinline]] void throw_param_moved(std::size_t i) const;

  struct RollbackPoint {
    std::size_t nodes;
    std::size_t inputs;
    std::size_t views;
    detail::Arena::Mark arena;
  };

  Var<T> handle(std::uint32_t i) { return Var<T>(this, i, gen_); }
  static std::uint8_t grad_flag() { return grad_enabled() ? detail::kRequiresGrad : 0; }

  template <class U>
  U* arena_alloc(std::size_t n) {
    if (n > (~std::size_t{0} >> 1) / sizeof(U)) detail::throw_no_memory(~std::size_t{0});
    return static_cast<U*>(arena_.allocate(n * sizeof(U), 64));  // cache line, SIMD-friendly
  }
  // A node's value (unless `value_too` is false: a view) and, if `grad`, its adjoint, in one
  // arena request: the adjoint follows the value. A buffer of 64 bytes or more starts on a cache
  // line; a smaller one on 16 bytes, so that a chain of scalar ops packs several nodes' values
  // and adjoints into one line instead of taking two lines per node. The adjoint is zeroed by
  // the sweep (or by replay), not here: a forward that is never backpropagated does not pay it.
  void alloc_node_memory(std::size_t n, bool value_too, bool grad, T*& value, T*& adjoint) {
    if (n > (~std::size_t{0} >> 3) / sizeof(T)) detail::throw_no_memory(~std::size_t{0});
    const std::size_t bytes = n * sizeof(T);
    const std::size_t align = bytes >= 64 ? 64 : 16;
    const std::size_t stride = value_too ? (bytes + align - 1) & ~(align - 1) : 0;
    if (!value_too && !grad) return;
    auto* p = static_cast<std::byte*>(arena_.allocate(stride + (grad ? bytes : 0), align));
    if (value_too) value = reinterpret_cast<T*>(p);
    if (grad) adjoint = reinterpret_cast<T*>(p + stride);
  }
  // Zeroes a tape-owned adjoint; a small one inline (a memset call costs more than the stores).
  static void zero_adjoint(detail::Node<T>& nd) {
    if (nd.size <= 16)
      for (std::size_t k = 0; k < nd.size; ++k) nd.grad[k] = T(0);
    else
      std::memset(nd.grad, 0, nd.size * sizeof(T));
  }
  // An output (and its adjoint, if `grad`) that the arena could not allocate: the arena is
  // rewound to `m` and a ResourceError names the op, the shape and the bytes.
  [[noreturn, gnu::cold, gnu::noinline]] void throw_no_memory(const char* what, const Shape& s,
                                                              bool grad, detail::Arena::Mark m,
                                                              const ResourceError& e);

  void check_owner(const char* what) {
    const void* me = detail::this_thread_token();
    const void* cur = owner_.load(std::memory_order_relaxed);
    if (cur == me) return;
    if (!cur) {
      const void* none = nullptr;
      if (owner_.compare_exchange_strong(none, me, std::memory_order_acq_rel)) return;
    }
    throw_foreign(what);
  }

  [[noreturn]] void throw_bad_handle(const Var<T>& v, const char* op, std::size_t arg) const;
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_foreign(const char* what);
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_foreign_clear();
  [[noreturn, gnu::cold, gnu::noinline]] void throw_no_grad_wrt(const char* what, const Var<T>& v,
                                                                std::size_t arg) const;

  // Throws if another thread owns the tape; unlike check_owner, does not claim it.
  void check_not_foreign(const char* what) const {
    const void* cur = owner_.load(std::memory_order_relaxed);
    if (cur && cur != detail::this_thread_token()) throw_foreign(what);
  }
  [[noreturn, gnu::cold, gnu::noinline]] void throw_busy(const char* what) const;

  // Nothing may be recorded, swept or cleared while an op is being built (its node must stay
  // the last one, and the builder's shape references must stay valid) or while backward runs
  // (a closure that did any of it would move or free the nodes the sweep is walking).
  void check_idle(const char* what) const {
    if (building_ | sweeping_ | replaying_) throw_busy(what);
  }

  OpBuilder<T> begin_op_impl(const char* name, const Var<T>* inputs, std::size_t n_inputs,
                             const Shape& out, const SourceLoc& loc, const Var<T>* view_of,
                             std::size_t offset);
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_bad_view(const char* name,
                                                                    const detail::Node<T>& x,
                                                                    const Shape& out,
                                                                    std::size_t offset) {
    throw UsageError(std::string(name) + ": a view of " + out.str() + " from element " +
                     std::to_string(offset) + " does not fit in its input " + x.shape.str());
  }

  void check_input(const Var<T>& v, const char* op, std::size_t arg) const {
    if (v.tape_ != this || v.gen_ != gen_ || v.index_ >= nodes_.size())
      throw_bad_handle(v, op, arg);
  }

  std::uint32_t push_leaf(const char* name, const Shape& s, const T* external, std::uint8_t flags) {
    check_idle(name);
    const std::size_t n = s.size();
    const detail::Arena::Mark m = arena_.mark();
    T* value = const_cast<T*>(external);
    T* grad = nullptr;
    try {
      alloc_node_memory(n, !external, flags & detail::kRequiresGrad, value, grad);
    } catch (const ResourceError& e) {
      throw_no_memory(name, s, flags & detail::kRequiresGrad, m, e);
    }
    emplace_node(value, grad, n, s, static_cast<std::uint32_t>(inputs_.size()), 0,
                 flags | detail::kLeaf, name, SourceLoc{});
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }

  Var<T> constant_from(const T* data, const Shape& shape, const char* name) {
    check_owner(name);
    std::uint32_t i = push_leaf(name, shape, nullptr, 0);
    std::copy(data, data + shape.size(), const_cast<T*>(nodes_[i].value));
    return handle(i);
  }

  // A backward sweep's seed: none (y is a scalar, seed 1), y.size() contiguous values, or an
  // xtensor expression that `add` writes into y's adjoint.
  struct Seed {
    const T* data = nullptr;
    const void* expr = nullptr;
    void (*add)(const void* expr, T* grad, const Shape& shape, bool accumulate) = nullptr;
    Shape shape;  // the expression's shape, checked against y's before anything is touched
    static Seed values(const T* p) {
      Seed s;
      s.data = p;
      return s;
    }
    bool present() const { return data || add; }
  };
  template <class E>
  static Seed expression_seed(const xt::xexpression<E>& seed) {
    Seed s;
    s.expr = &seed.derived_cast();
    s.add = [](const void* e, T* grad, const Shape& shape, bool accumulate) {
      // Element i of the seed is read before element i of grad is written, so a seed that is
      // (an expression of) this very adjoint is fine.
      auto g = make_view(grad, shape);
      if (accumulate)
        xt::noalias(g) += *static_cast<const E*>(e);
      else
        xt::noalias(g) = *static_cast<const E*>(e);
    };
    s.shape = Shape(seed.derived_cast().shape());
    return s;
  }

  void rollback(const RollbackPoint& rb) {
    nodes_.erase(nodes_.begin() + static_cast<std::ptrdiff_t>(rb.nodes), nodes_.end());
    inputs_.resize(rb.inputs);
    views_.resize(rb.views);
    if (zeroed_ > rb.nodes) zeroed_ = rb.nodes;
    arena_.rewind(rb.arena);
    building_ = false;
  }

  // Appends a node built in place. `s` may be a shape inside nodes_ (an input's, or detach's
  // source): it is copied first when the list is about to move.
  void emplace_node(const T* value, T* grad, std::size_t n, const Shape& s, std::uint32_t in_begin,
                    std::uint32_t in_count, std::uint8_t flags, const char* name,
                    const SourceLoc& loc) {
    if (nodes_.size() == nodes_.capacity()) {
      const Shape copy = s;
      nodes_.emplace_back(value, grad, n, copy, in_begin, in_count, flags, name, loc);
    } else {
      nodes_.emplace_back(value, grad, n, s, in_begin, in_count, flags, name, loc);
    }
  }

  void destroy_closures() {
    for (const Destructor& d : destructors_) d.destroy(d.closure);
    destructors_.clear();
  }

  void sweep(const Var<T>& y, const Seed& seed, const Var<T>* wrt, std::size_t n_wrt,
             const char* what);
  [[noreturn]] void throw_anomaly(const detail::Node<T>& n, const char* where, std::size_t elem,
                                  T value) const;
  void check_finite_output(const detail::Node<T>& n) const {
    for (std::size_t k = 0; k < n.size; ++k)
      if (!std::isfinite(n.value[k])) throw_anomaly(n, "forward output", k, n.value[k]);
  }

  // A closure that is not trivially destructible, to destroy on clear() (in recording order).
  struct Destructor {
    void* closure;
    void (*destroy)(void* closure);
  };

  std::vector<detail::Node<T>, AlignedAllocator<detail::Node<T>>> nodes_;  // 64-byte aligned
  std::vector<std::uint32_t> inputs_;
  std::vector<std::uint8_t> marks_;
  std::vector<Destructor> destructors_;
  // Nodes whose value aliases another node's (view ops, detach), in recording order: replay
  // re-derives their value pointers, since a constant_view's memory may have been moved.
  struct ViewRecord {
    std::uint32_t node;
    std::uint32_t source;
    std::size_t offset;
  };
  std::vector<ViewRecord> views_;
  std::size_t first_unreplayable_ = ~std::size_t{0};  // first op without a forward kernel
  std::size_t failed_replay_ = ~std::size_t{0};       // the op whose forward threw in replay()
  detail::Arena arena_;
  // The tape-owned adjoints of nodes [0, zeroed_) are known to be zero: replay() zeroes them as
  // it recomputes the values (beside them in memory), so the sweep after it need not.
  std::size_t zeroed_ = 0;
  std::uint32_t gen_;
  bool building_ = false;   // between begin_op and finish (or the builder's rollback)
  bool sweeping_ = false;   // inside backward, while closures run
  bool replaying_ = false;  // inside replay, while forward kernels run
  std::atomic<const void*> owner_{nullptr};  // detail::this_thread_token() of the owner
};

// ---- inline definitions ----------------------------------------------------------------------

template <class T>
Var<T> Tape<T>::param(Parameter<T>& p) {
  check_owner("param");
  check_idle("param");
  // Read first: a moved-from Parameter throws here, before the tape changes.
  ParameterStorage<T>& st = *p.storage();
  const bool g = grad_enabled();
  emplace_node(st.value.data(), g ? st.grad.data() : nullptr, st.value.size(), st.shape,
               static_cast<std::uint32_t>(inputs_.size()), 0,
               detail::kLeaf | detail::kAliased | detail::kParam |
                   (g ? (detail::kRequiresGrad | detail::kExternalGrad) : 0),
               "param", SourceLoc{});
  nodes_.back().closure = &st;  // for replay's check that the storage is where it was
  return handle(static_cast<std::uint32_t>(nodes_.size() - 1));
}

template <class T>
OpBuilder<T> Tape<T>::begin_op_impl(const char* name, const Var<T>* inputs, std::size_t n_inputs,
                                    const Shape& out, const SourceLoc& loc, const Var<T>* view_of,
                                    std::size_t offset) {
  check_owner(name);
  check_idle(name);
  std::uint8_t flags = 0;
  for (std::size_t k = 0; k < n_inputs; ++k) {
    check_input(inputs[k], name, k);
    flags |= nodes_[inputs[k].index_].flags;
  }
  const bool needs = (flags & detail::kRequiresGrad) && grad_enabled();

  const RollbackPoint rb{nodes_.size(), inputs_.size(), views_.size(), arena_.mark()};
  const std::size_t size = out.size();
  T* value = nullptr;
  T* grad = nullptr;
  if (view_of) {
    const detail::Node<T>& src = nodes_[view_of->index_];
    if (offset > src.size || size > src.size - offset) throw_bad_view(name, src, out, offset);
    value = const_cast<T*>(src.value) + (src.size ? offset : 0);
  }
  try {
    alloc_node_memory(size, !view_of, needs, value, grad);
  } catch (const ResourceError& e) {
    throw_no_memory(name, out, needs, rb.arena, e);
  }
  try {
    for (std::size_t k = 0; k < n_inputs; ++k) inputs_.push_back(inputs[k].index_);
    if (view_of)  // replay points the view at its input's memory again
      views_.push_back({static_cast<std::uint32_t>(rb.nodes), view_of->index_,
                        static_cast<std::size_t>(value - nodes_[view_of->index_].value)});
    // `out` is read before the list can move (it may be an input's shape).
    emplace_node(value, grad, size, out, static_cast<std::uint32_t>(rb.inputs),
                 static_cast<std::uint32_t>(n_inputs), needs ? detail::kRequiresGrad : 0, name,
                 loc);
  } catch (...) {
    rollback(rb);  // a list could not grow: the tape stays as it was
    throw;
  }
  building_ = true;
  return OpBuilder<T>(this, static_cast<std::uint32_t>(rb.nodes), rb);
}

template <class T>
void Tape<T>::sweep(const Var<T>& y, const Seed& seed, const Var<T>* wrt, std::size_t n_wrt,
                    const char* what) {
  check_owner(what);  // first: another thread must not read nodes_ while it changes
  check_input(y, what, 0);
  check_idle(what);
  if (failed_replay_ != ~std::size_t{0}) throw_failed_replay(what);
  const std::size_t yi = y.index_;
  detail::Node<T>& out = nodes_[yi];
  if (seed.add && seed.shape != out.shape)
    throw ShapeError(std::string(what) + ": seed is " + seed.shape.str() + " but the output is " +
                     out.shape.str() + " ('" + out.name + "')");
  if (!seed.present() && out.size != 1)
    throw UsageError(std::string("backward: output '") + out.name + "' is " + out.shape.str() +
                     ", not a scalar; pass a seed gradient of that shape (vector-Jacobian "
                     "product)");
  if (!(out.flags & detail::kRequiresGrad))
    throw UsageError(std::string("backward: output '") + out.name +
                     "' needs no gradient (it depends on no variable or parameter, or was "
                     "recorded under no-grad)");

  const std::size_t n = yi + 1;  // nodes after y cannot contribute to it
  if (n_wrt) {
    marks_.assign(n, 0);
    for (std::size_t k = 0; k < n_wrt; ++k) {
      check_input(wrt[k], what, k + 1);
      // As jacobian's x: a node that needs no gradient has none to compute (UsageError).
      if (!(nodes_[wrt[k].index_].flags & detail::kRequiresGrad))
        throw_no_grad_wrt(what, wrt[k], k + 1);
      if (wrt[k].index_ < n) marks_[wrt[k].index_] = detail::kOnPath;
    }
    // A node is active if it needs a gradient and lies on a path from a chosen variable.
    for (std::size_t i = 0; i < n; ++i) {
      const detail::Node<T>& nd = nodes_[i];
      std::uint8_t m = marks_[i];
      for (std::uint32_t k = 0; k < nd.in_count && !(m & detail::kOnPath); ++k)
        m |= marks_[inputs_[nd.in_begin + k]] & detail::kOnPath;
      if ((m & detail::kOnPath) && (nd.flags & detail::kRequiresGrad)) m |= detail::kActive;
      marks_[i] = m;
    }
  } else {
    static_assert(int{detail::kActive} == int{detail::kRequiresGrad});
    marks_.resize(n);
    const detail::Node<T>* nodes = nodes_.data();
    std::uint8_t* marks = marks_.data();
    for (std::size_t i = 0; i < n; ++i) marks[i] = nodes[i].flags & detail::kRequiresGrad;
  }
  const bool active = marks_[yi] & detail::kActive;  // false: y depends on no chosen variable

  // The seed is written into y's adjoint before the other adjoints are zeroed: it may be read
  // from an adjoint of this very tape (chained VJPs: backward(h, h.grad())), which the zeroing
  // would wipe first. A tape-owned adjoint is assigned, a Parameter's accumulates.
  if (active) {
    const bool accumulate = out.flags & detail::kExternalGrad;
    if (seed.add)
      seed.add(seed.expr, out.grad, out.shape, accumulate);
    else if (seed.data && accumulate)
      for (std::size_t k = 0; k < out.size; ++k) out.grad[k] += seed.data[k];
    else if (seed.data)
      std::memmove(out.grad, seed.data, out.size * sizeof(T));
    else
      out.grad[0] = accumulate ? out.grad[0] + T(1) : T(1);
  }
  // Tape-owned adjoints start from zero on every sweep — also those outside `wrt`, which would
  // otherwise hold uninitialised arena memory or a previous sweep's values, and those of nodes
  // recorded after y, which this sweep does not reach (y's adjoint does not depend on them, but
  // reading theirs must not show an earlier sweep's); parameter adjoints accumulate. Those a
  // replay just zeroed, nodes [0, zeroed_), are skipped.
  for (std::size_t i = zeroed_; i < nodes_.size(); ++i) {
    detail::Node<T>& nd = nodes_[i];
    if ((nd.flags & detail::kRequiresGrad) && !(nd.flags & detail::kExternalGrad) &&
        !(active && i == yi))
      zero_adjoint(nd);
  }
  zeroed_ = 0;  // this sweep writes them
  if (!active) return;
  marks_[yi] |= detail::kReached;

  const bool anomaly = anomaly_mode();
  struct Sweeping {  // reset on every exit, including a closure's or anomaly mode's throw
    bool& flag;
    explicit Sweeping(bool& f) : flag(f) { flag = true; }
    ~Sweeping() { flag = false; }
  } sweeping(sweeping_);
  detail::Node<T>* nodes = nodes_.data();
  const std::uint32_t* ins = inputs_.data();
  std::uint8_t* marks = marks_.data();
  for (std::size_t i = n; i-- > 0;) {
    const detail::Node<T>& nd = nodes[i];
    if ((marks[i] & (detail::kActive | detail::kReached)) != (detail::kActive | detail::kReached) ||
        !nd.backward)
      continue;
    const std::uint32_t* in = ins + nd.in_begin;
    nd.backward(nd.closure, BackwardContext<T>(nodes, &nd, in, marks));
    for (std::uint32_t k = 0; k < nd.in_count; ++k) marks[in[k]] |= detail::kReached;
    if (anomaly) {
      for (std::uint32_t k = 0; k < nd.in_count; ++k) {
        const detail::Node<T>& src = nodes[in[k]];
        if (!(marks[in[k]] & detail::kActive)) continue;
        for (std::size_t e = 0; e < src.size; ++e)
          if (!std::isfinite(src.grad[e]))
            throw_anomaly(nd, ("backward, adjoint of input " + std::to_string(k)).c_str(), e,
                          src.grad[e]);
      }
    }
  }
}

extern template class Tape<float>;
extern template class Tape<double>;

}  // namespace wengert
