// wengert — adding a bias row: bias_add(x, b) = x + b broadcast over rows.
//
// A bias is one value per column: x [m,n] (or any rank, [..., n]) with b [n]. Its gradient is
// the column sum of the output adjoint — the sum over the rows it was repeated along — done in
// one pass that gcc vectorises along the columns. linear (linear.hpp) fuses it with a matmul.
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// y[i,j] = x[i,j] + b[j].
///
/// Derivatives, with G the adjoint of y: dx += G; db[j] += Σᵢ G[i,j] (column sum).
///
/// @param x [m,n]; any rank ≥ 1 is accepted and read as rows of its last dimension n
/// @param b [n]
/// @return  the shape of x
/// @throws ShapeError if b is not 1-D of length n (x's last dimension)
template <class T>
Var<T> bias_add(const Var<T>& x, const Var<T>& b, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
