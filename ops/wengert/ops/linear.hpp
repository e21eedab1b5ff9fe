// wengert — the fully connected layer linear(x, W, b) = x·W + b, as one op.
//
// linear is matmul followed by bias_add recorded as one tape entry: the GEMM writes the output
// (beta = 0) and the bias is added in place, and backward reads the output adjoint directly, so
// there is no intermediate x·W tensor, no adjoint for it, and no pass that copies one adjoint
// into another. benchmarks/bench_nn_ops.cpp measures what that saves.
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// y = x·W + b: a fully connected layer as one op.
///
/// Derivatives, with G the adjoint of y [m,n]: dx += G·Wᵀ, dW += xᵀ·G (GEMMs with beta = 1,
/// transposes by flag), db[j] += Σᵢ G[i,j].
///
/// @param x [m,k]
/// @param W [k,n]
/// @param b [n]
/// @return  [m,n], recorded as "linear"
/// @throws ShapeError if x or W is not 2-D, the inner dimensions differ, or b is not [n]
template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& W, const Var<T>& b,
              SourceLoc loc = SourceLoc::current());

}  // namespace wengert
