// wengert — matrix product of 2-D tensors, forward and backward as BLAS GEMMs.
//
// C = op(A)·op(B), where op(X) is X or Xᵀ. The forward pass is one GEMM that writes straight
// into the tape-owned output. The backward pass is (at most) two GEMMs that accumulate into the
// inputs' adjoints in place (beta = 1), reading the stored operands through BLAS transpose
// flags: no transposed copy and no temporary is ever made. An input that needs no gradient in
// the sweep (a constant, or outside backward's `wrt`) skips its GEMM.
//
// Shapes, for A·B: A [m,k], B [k,n] → C [m,n]; the transposed forms read A as [k,m] (aᵀ) and B
// as [n,k] (bᵀ). Inputs of any other rank, or whose inner dimensions differ, throw ShapeError
// naming the op, the argument and both shapes. Row-major throughout, like every wengert tensor.
//
// The functions are templates on T = float or double, compiled once in the library (sgemm and
// dgemm of the BLAS wengert links, OpenBLAS).
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// C = op(a)·op(b), with op(x) = xᵀ when the matching flag is set.
///
/// Derivatives, with G the adjoint of C:
///   C = A·B    : dA += G·Bᵀ,    dB += Aᵀ·G
///   C = A·Bᵀ   : dA += G·B,     dB += Gᵀ·A
///   C = Aᵀ·B   : dA += B·Gᵀ,    dB += A·G
///   C = Aᵀ·Bᵀ  : dA += Bᵀ·Gᵀ,   dB += Gᵀ·Aᵀ
/// each one GEMM with beta = 1 into the adjoint.
///
/// @param a [m,k], or [k,m] when transpose_a
/// @param b [k,n], or [n,k] when transpose_b
/// @return  [m,n], recorded as "matmul", "matmul_nt", "matmul_tn" or "matmul_tt"
/// @throws ShapeError if a or b is not 2-D or the inner dimensions differ
template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b,
              SourceLoc loc = SourceLoc::current());

/// a·b: [m,k]·[k,n] → [m,n]. dA += G·bᵀ, dB += aᵀ·G.
template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current()) {
  return matmul(a, b, false, false, loc);
}

/// a·bᵀ: [m,k]·[n,k]ᵀ → [m,n]. dA += G·b, dB += Gᵀ·a.
template <class T>
Var<T> matmul_nt(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current()) {
  return matmul(a, b, false, true, loc);
}

/// aᵀ·b: [k,m]ᵀ·[k,n] → [m,n]. dA += b·Gᵀ, dB += a·G.
template <class T>
Var<T> matmul_tn(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current()) {
  return matmul(a, b, true, false, loc);
}

}  // namespace wengert
