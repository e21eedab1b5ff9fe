// wengert — what a tape entry is: the node record, and views of tape-owned memory.
//
// Part of the engine; include <wengert/tape.hpp>, which includes this and opens with the design.
// A detail::Node is one entry of the flat list a Tape keeps: where the value and the adjoint
// live (arena or Parameter memory), the shape, which inputs it read (a range of the tape's
// input-index list), and the backward closure. Nothing in it is owned: clear() rewinds it all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include <xtensor/xadapt.hpp>

#include <wengert/errors.hpp>
#include <wengert/grad_mode.hpp>
#include <wengert/shape.hpp>

namespace wengert {

template <class T>
class Tape;
template <class T>
class Var;
template <class T>
class Parameter;
template <class T>
class BackwardContext;
template <class T>
class ForwardContext;
template <class T>
class OpBuilder;

/// A non-owning xtensor view of tape- or parameter-owned memory (no copy).
/// Its shape is held inline for every rank a Shape allows, so making one never allocates.
template <class T>
using TensorView =
    decltype(xt::adapt(std::declval<T*>(), std::size_t{}, xt::no_ownership(),
                       std::declval<const xt::svector<std::size_t, Shape::kMaxRank>&>()));

/// Builds a TensorView over `n = shape.size()` elements at `p`.
template <class T>
TensorView<T> make_view(T* p, const Shape& shape) {
  xt::svector<std::size_t, Shape::kMaxRank> sh(shape.begin(), shape.end());
  return xt::adapt(std::move(p), shape.size(), xt::no_ownership(), sh);
}

namespace detail {

enum NodeFlags : std::uint8_t {
  kRequiresGrad = 1,  // an adjoint buffer exists and gradients flow into this node
  kExternalGrad = 2,  // adjoint belongs to a Parameter: accumulate, never zero
  kLeaf = 4,          // constant, variable or parameter
  kAliased = 8,       // a leaf whose value is not tape memory: constant_view, detach, param
  kParam = 16,        // a Parameter leaf; its closure field holds the ParameterStorage
  kReplayable = 32,   // an op with a forward kernel: its closure begins with a ForwardThunk
};

/// The first member of a replayable op's closure: calls its forward kernel.
template <class T>
using ForwardThunk = void (*)(void* closure, const ForwardContext<T>& ctx);

// One tape entry: exactly two cache lines, and the node list is 64-byte aligned. The first
// line holds what the backward sweep, replay and most closures read (value, adjoint, size, the
// closure and its two entry points, inputs, flags); the second holds the shape and what only
// messages and listings read (the op's name and where it was recorded). A Node is built in place by
// its constructor: no zeroing of the whole record first, and no record assembled on the stack and
// then copied.
template <class T>
struct alignas(64) Node {
  Node(const T* v, T* g, std::size_t n, const Shape& s, std::uint32_t first_input,
       std::uint32_t inputs, std::uint8_t f, const char* op, const SourceLoc& at)
      : value(v),
        grad(g),
        size(n),
        backward(nullptr),
        closure(nullptr),
        in_begin(first_input),
        in_count(inputs),
        flags(f),
        line(at.line),
        file(at.file),
        shape(s),
        name(op) {}

  const T* value;
  T* grad;  // null unless kRequiresGrad
  std::size_t size;
  void (*backward)(void* closure, const BackwardContext<T>& ctx);
  // The op's closure (a Parameter leaf: its ParameterStorage). With kReplayable it begins with
  // a ForwardThunk<T>, the entry point of its forward kernel for Tape::replay().
  void* closure;
  std::uint32_t in_begin;
  std::uint32_t in_count;
  std::uint8_t flags;
  unsigned line;  // the op's SourceLoc, split to keep the node at 128 bytes
  const char* file;
  // ---- second cache line
  Shape shape;
  const char* name;
};
static_assert(sizeof(Node<float>) == 128 && sizeof(Node<double>) == 128,
              "a tape node is two cache lines");

// Marks used during one backward sweep.
enum SweepMarks : std::uint8_t { kActive = 1, kReached = 2, kOnPath = 4 };

// The calling thread's identity for a tape's owner check: the address of a thread_local,
// distinct for every running thread and computed with one add from the thread pointer, where
// std::this_thread::get_id() is a call into the C library (made three times per recorded op
// before this). As with std::thread::id, a thread that has exited may share it with a later one.
inline const void* this_thread_token() {
  thread_local const char token = 0;
  return &token;
}

inline std::uint32_t next_tape_generation_base() {
  // Per-thread counter: distinct tapes start far apart, so a handle from one tape is very
  // unlikely to match another tape's generation even at the same address.
  thread_local std::uint32_t counter = 0;
  return (++counter) * 0x9E3779B9u;
}

}  // namespace detail

}  // namespace wengert
