// wengert — softmax and log_softmax along the last axis.
//
// A tensor of shape [..., c] is read as rows of c values; each row is normalised on its own.
// Both are max-subtracted: with M = maxⱼ xⱼ, softmax = exp(x − M) / Σⱼ exp(xⱼ − M) and
// log_softmax = (x − M) − log Σⱼ exp(xⱼ − M), so no exp ever overflows and a row like
// [1e4, 0, −1e4] gives exact zeros and ones rather than inf/inf. A row holding NaN or +inf
// gives NaN (as in numpy), which anomaly mode reports.
//
// Both keep only their output for backward: softmax's Jacobian is a function of y alone, and
// log_softmax recomputes softmax = exp(y) there. Kernels are xsimd over each row.
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// yᵢ = exp(xᵢ) / Σⱼ exp(xⱼ) over the last axis.
///
/// Derivative (per row, G the adjoint of y): ∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ), so
///   dx += y ∘ (G − Σⱼ Gⱼ yⱼ).
///
/// @param x any shape of rank ≥ 1, [..., c]
/// @return  the shape of x; every row sums to 1
/// @throws ShapeError if x is a scalar
template <class T>
Var<T> softmax(const Var<T>& x, SourceLoc loc = SourceLoc::current());

/// yᵢ = xᵢ − log Σⱼ exp(xⱼ) over the last axis (computed as (xᵢ − M) − log Σⱼ exp(xⱼ − M)).
///
/// Derivative (per row, G the adjoint of y): ∂yᵢ/∂xⱼ = δᵢⱼ − softmax(x)ⱼ, so
///   dx += G − exp(y) · Σⱼ Gⱼ.
///
/// @param x any shape of rank ≥ 1, [..., c]
/// @return  the shape of x
/// @throws ShapeError if x is a scalar
template <class T>
Var<T> log_softmax(const Var<T>& x, SourceLoc loc = SourceLoc::current());

// ---- along any axis ----------------------------------------------------------------------------

/// softmax along `axis` (negative counts from the end; −1 is the forms above). Each slice along
/// the axis is normalised on its own, max-subtracted as above; the same derivative per slice:
/// dx += y ∘ (G − Σₖ Gₖ yₖ). @throws ShapeError if x is a scalar or the axis is out of range
template <class T>
Var<T> softmax(const Var<T>& x, int axis, SourceLoc loc = SourceLoc::current());

/// log_softmax along `axis`; per slice dx += G − exp(y) · Σₖ Gₖ.
template <class T>
Var<T> log_softmax(const Var<T>& x, int axis, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
