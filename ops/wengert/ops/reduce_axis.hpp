// wengert — reductions beyond sum and mean: max, min, argmax, argmin, logsumexp, var, norm.
//
// The axis forms remove the axis, or keep it with size 1 when keepdims is true ([2,3,4] along
// axis 1 → [2,4] or [2,1,4]); a negative axis counts from the end. The whole-tensor forms of
// max, min and norm return a scalar (shape []). An axis outside [−rank, rank) throws ShapeError
// naming the op, the argument and the shape.
//
// max and min: the gradient of each slice goes to one element, its arg-extremum. Tie rule: the
// FIRST extremal element along the axis (the lowest index; for the whole-tensor forms the lowest
// flat index) gets all of it, as numpy's argmax picks it; the others get 0. A NaN in a slice is
// its extremum (the result is NaN, and the gradient goes to the first NaN). A slice of length 0
// has no extremum: ValueError. argmax and argmin use the same rule and return integer tensors
// (std::int64_t), not Vars: they are not differentiable and are not recorded on the tape.
#pragma once

#include <cstdint>

#include <xtensor/xarray.hpp>

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// maxᵢ xᵢ → []. ∂/∂xᵢ = 1 for the first maximal element, 0 for the others.
/// @throws ValueError if x has no elements
template <class T>
Var<T> max(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// Max along `axis`; the gradient goes to the first maximal element of each slice.
/// @throws ValueError if the axis has length 0 (and the output is not empty)
template <class T>
Var<T> max(const Var<T>& x, int axis, bool keepdims = false, SourceLoc loc = SourceLoc::current());
/// minᵢ xᵢ → []; the gradient goes to the first minimal element.
template <class T>
Var<T> min(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// Min along `axis`; the gradient goes to the first minimal element of each slice.
template <class T>
Var<T> min(const Var<T>& x, int axis, bool keepdims = false, SourceLoc loc = SourceLoc::current());

/// Index of the first maximal element along `axis`, for each slice (shape of max(x, axis,
/// keepdims)). Not recorded. @throws ValueError if the axis has length 0
template <class T>
xt::xarray<std::int64_t> argmax(const Var<T>& x, int axis, bool keepdims = false);
/// Flat (row-major) index of the first maximal element. @throws ValueError if x is empty
template <class T>
std::int64_t argmax(const Var<T>& x);
template <class T>
xt::xarray<std::int64_t> argmin(const Var<T>& x, int axis, bool keepdims = false);
template <class T>
std::int64_t argmin(const Var<T>& x);

/// log Σₖ exp(xₖ) along `axis`, computed as M + log Σₖ exp(xₖ − M) with M the slice's max, so
/// nothing overflows (logsumexp([1e4, 0]) = 1e4) or underflows to −inf needlessly.
/// Derivative: ∂y/∂xₖ = exp(xₖ − y) = softmax(x)ₖ. An empty slice gives −inf (the log of an
/// empty sum), as in numpy; a slice of only −inf gives −inf and a gradient of 0.
template <class T>
Var<T> logsumexp(const Var<T>& x, int axis, bool keepdims = false,
                 SourceLoc loc = SourceLoc::current());

/// Variance along `axis`: Σₖ (xₖ − μ)² / (n − ddof), μ the slice's mean (ddof = 0: the
/// population variance, numpy's default; 1: the unbiased estimate, torch's default).
/// Derivative: ∂y/∂xₖ = 2 (xₖ − μ) / (n − ddof). The means are kept for backward.
/// @throws ValueError if n ≤ ddof (and the output is not empty)
template <class T>
Var<T> var(const Var<T>& x, int axis, bool keepdims = false, int ddof = 0,
           SourceLoc loc = SourceLoc::current());

/// L2 norm along `axis`: √(Σₖ xₖ²), computed as m·√(Σₖ (xₖ/m)²) with m = maxₖ |xₖ| so that it
/// neither overflows nor underflows. Derivative: ∂y/∂xₖ = xₖ / y; at y = 0 (a zero slice,
/// where the norm has a kink) the subgradient 0 is used, as torch does.
template <class T>
Var<T> norm(const Var<T>& x, int axis, bool keepdims = false, SourceLoc loc = SourceLoc::current());
/// L2 norm of all elements → [] (the same derivative and subgradient).
template <class T>
Var<T> norm(const Var<T>& x, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
