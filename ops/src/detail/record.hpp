// wengert — helpers shared by the built-in ops' sources: the argument check and the recording
// skeleton of a one-input elementwise op. Everything here goes through the public custom-op
// API of tape.hpp (begin_op → out_data → finish).
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>

#include <wengert/tape.hpp>

namespace wengert::detail {

[[noreturn]] inline void throw_bad_handle(const char* op, const char* arg, const std::string& why) {
  throw UsageError(std::string(op) + ": argument " + arg + " is " + why);
}

/// Throws UsageError naming `op` and the argument `arg` (its name in the op's signature, e.g.
/// "b") if `v` is empty or stale: "matmul: argument b is a stale handle to node #3: ...". Done
/// before any shape is read, so that the message names the op and not only the handle.
template <class T>
inline void check_handle(const char* op, const char* arg, const Var<T>& v) {
  v.check_thread(op);  // before any read of the tape, which another thread may own
  if (!v.valid()) throw_bad_handle(op, arg, v.invalid_reason());
}

/// No argument check on replay (record_unary's default).
struct NoReplayCheck {
  template <class T>
  void operator()(const T*, const Shape&) const {}
};

/// Records y = f(x) elementwise. `forward(in, out, n)` fills the output; `dydx(g, x, y)` gives
/// one element's contribution g·f'(x) to x's adjoint, from the output adjoint g, the input x
/// and the output y. dydx is stored in the closure, so it must be trivially destructible
/// (a lambda capturing scalars by value). Messages name the input "x", as every one-input op's
/// signature does. `replay_check(in, shape)`, if given, checks x's values before the forward
/// kernel runs (sqrt's x ≥ 0): at recording and on every replay, since finish runs the kernel.
template <class T, class Forward, class Dydx, class ReplayCheck = NoReplayCheck>
Var<T> record_unary(const char* name, const Var<T>& x, SourceLoc loc, Forward&& forward, Dydx dydx,
                    ReplayCheck replay_check = {}) {
  static_assert(std::is_trivially_destructible_v<Dydx>,
                "the backward of a built-in op captures only trivially destructible values");
  check_handle(name, "x", x);
  // The pointer form of begin_op reads the handle in place; {x} would copy it with one 16-byte
  // load right after the caller stored it as two 8-byte halves (a store-forwarding stall).
  auto op = x.tape().begin_op(name, &x, 1, x.shape(), loc);
  return op.finish(
      [forward, replay_check](const ForwardContext<T>& c) {  // replay
        replay_check(c.input_data(0), c.input_shape(0));
        forward(c.input_data(0), c.out_data(), c.out_size());
      },
      [dydx](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const std::size_t n = c.out_size();
        T* __restrict gx = c.grad_data(0);
        const T* __restrict g = c.out_grad_data();
        const T* __restrict xv = c.input_data(0);
        const T* __restrict yv = c.out_data();
        for (std::size_t i = 0; i < n; ++i) gx[i] += dydx(g[i], xv[i], yv[i]);
      });
}

}  // namespace wengert::detail
