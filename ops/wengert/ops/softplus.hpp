// wengert — softplus, a smooth relu (elementwise, any shape).
//
// softplus(x) = log(1 + eˣ) is computed as max(x, 0) + log1p(e^(−|x|)): e^(−|x|) lies in
// (0, 1], so nothing overflows for any x, and log1p keeps the small tail that log(1 + ·) would
// round away. Forward and backward are xsimd kernels over the whole tensor; backward reads the
// input only (nothing else is kept).
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// softplus(x) = log(1 + eˣ). ∂/∂x = σ(x) = 1 / (1 + e⁻ˣ).
/// Numerically stable for any x: softplus(1e4) = 1e4, softplus(−1e4) = e^(−1e4), which rounds
/// to 0 (never inf or nan), softplus(−30) = 9.36e-14 (not 0); the gradient σ(x) is computed
/// from e^(−|x|) as sigmoid is, 1 at x = 1e4 and 0 at x = −1e4. nan stays nan.
template <class T>
Var<T> softplus(const Var<T>& x, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
