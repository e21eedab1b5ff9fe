// wengert — batched matrix product of rank-3 tensors, with a rank-2 operand broadcast over the
// batch.
//
// C[i] = op(A[i])·op(B[i]) for each batch index i < b, op(X) = X or Xᵀ. A rank-2 operand is the
// same matrix for every i. BLAS underneath: one GEMM per batch element, forward and backward
// (OpenBLAS 0.3.21 has no batched GEMM); when A is [b,m,k] read untransposed and B is a
// rank-2 matrix, the whole product is one GEMM of [b·m, k]·op(B), and so is each backward
// product. Backward accumulates into the adjoints in place (beta = 1): a broadcast operand's
// adjoint receives the sum over the batch, one GEMM after the other, with no temporary.
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// C = op(a)·op(b) batched: [b,m,k]·[b,k,n] → [b,m,n]; either operand may instead be rank 2
/// ([m,k] or [k,n]), the same matrix for every batch element (at least one must be rank 3).
/// With transpose_a, a is read as [b,k,m] (or [k,m]); with transpose_b, b as [b,n,k] (or [n,k]).
///
/// Derivatives, per batch element i (G the adjoint of C), as matmul's:
///   dA[i] += G[i]·op(B[i])ᵀ (or its transpose when transpose_a), dB[i] += op(A[i])ᵀ·G[i] (or
///   its transpose when transpose_b); for a rank-2 operand the sum over i.
/// @throws ShapeError if a rank is not 2 or 3, both are 2, the batch sizes differ or the inner
///         dimensions differ (the message names both shapes)
template <class T>
Var<T> bmm(const Var<T>& a, const Var<T>& b, bool transpose_a = false, bool transpose_b = false,
           SourceLoc loc = SourceLoc::current());

}  // namespace wengert
