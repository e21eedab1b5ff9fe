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
};

template <class T>
struct Node {
  const T* value;
  T* grad;  // null unless kRequiresGrad
  Shape shape;
  std::size_t size;
  std::uint32_t in_begin;
  std::uint32_t in_count;
  const char* name;
  void (*backward)(void* closure, const BackwardContext<T>& ctx);
  void* closure;
  void (*destroy)(void* closure);
  SourceLoc loc;
  std::uint8_t flags;
};

// Marks used during one backward sweep.
enum SweepMarks : std::uint8_t { kActive = 1, kReached = 2, kOnPath = 4 };

inline std::uint32_t next_tape_generation_base() {
  // Per-thread counter: distinct tapes start far apart, so a handle from one tape is very
  // unlikely to match another tape's generation even at the same address.
  thread_local std::uint32_t counter = 0;
  return (++counter) * 0x9E3779B9u;
}

}  // namespace detail

}  // namespace wengert
