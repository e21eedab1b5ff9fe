// wengert — reductions: sum and mean, over the whole tensor or along one axis.
//
// Whole-tensor forms return a scalar (shape []). Axis forms remove the axis, or keep it with
// size 1 when keepdims is true ([2,3,4] along axis 1 → [2,4], or [2,1,4]); a negative axis
// counts from the end (−1 is the last). An axis outside [−rank, rank) throws ShapeError naming
// the op, the argument and the shape.
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// Σᵢ xᵢ → shape []. ∂/∂xᵢ = 1.
template <class T>
Var<T> sum(const Var<T>& x, SourceLoc loc = SourceLoc::current());

/// Sum along `axis`. ∂y[.., ..]/∂x[.., k, ..] = 1 for every k along the axis.
template <class T>
Var<T> sum(const Var<T>& x, int axis, bool keepdims = false, SourceLoc loc = SourceLoc::current());

/// (Σᵢ xᵢ) / n → shape []. ∂/∂xᵢ = 1/n. Throws ValueError if x has no elements.
template <class T>
Var<T> mean(const Var<T>& x, SourceLoc loc = SourceLoc::current());

/// Mean along `axis` (of length n). ∂/∂x = 1/n along the axis. Throws ValueError if that axis
/// has length 0.
template <class T>
Var<T> mean(const Var<T>& x, int axis, bool keepdims = false, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
