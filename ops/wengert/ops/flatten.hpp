// wengert — flatten: [N, d1, d2, …] → [N, d1·d2·…], the step from images to a linear layer.
//
// The values are the same, in the same row-major order; the op copies them into its output
// (tape memory) and its backward adds the adjoint back unchanged.
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// y = x read as [x.shape()[0], x.size() / x.shape()[0]] (the trailing axes merged; [n] becomes
/// [n,1]).   Derivative: dx += G (read in x's shape).
///
/// @param x any shape of rank ≥ 1
/// @return  [N, d1·d2·…], recorded as "flatten"
/// @throws ShapeError if x is a scalar
template <class T>
Var<T> flatten(const Var<T>& x, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
