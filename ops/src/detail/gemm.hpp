// wengert — the one GEMM wrapper of the ops sources (matmul, linear).
//
// Calls CBLAS directly: OpenBLAS's <cblas.h> cannot share a translation unit with xtensor-blas
// (which declares its own cblas_* prototypes), so only sources that do not include xtensor-blas
// may include this header. Raw pointers with leading dimensions are exactly what a tape-owned
// row-major buffer is.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <type_traits>

namespace wengert::detail {

/// Largest dimension a GEMM accepts (CBLAS takes int sizes).
constexpr std::size_t kMaxGemmDim = std::size_t(INT_MAX);

/// C[m,n] = op(A)·op(B) + beta·C, all row-major; op(A) is [m,k], op(B) is [k,n], and op(X) = Xᵀ
/// when its flag is set. The leading dimension of an operand is the column count of the stored
/// (untransposed) matrix. As in BLAS, C need not be initialised when beta is 0 (its old values,
/// NaN included, are overwritten, not scaled). Degenerate sizes are handled here (BLAS rejects
/// leading dimensions of 0): nothing to do when m or n is 0, and C = beta·C when k is 0
/// (op(A)·op(B) is then a zero matrix).
template <class T>
inline void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* A,
                 std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == T(1)) return;
    for (std::size_t r = 0; r < m; ++r) {
      T* c = C + r * ldc;
      if (beta == T(0))
        std::fill(c, c + n, T(0));
      else
        for (std::size_t j = 0; j < n; ++j) c[j] *= beta;
    }
    return;
  }
  const CBLAS_TRANSPOSE fa = ta ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE fb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, fa, fb, int(m), int(n), int(k), 1.0f, A, int(lda), B, int(ldb), beta,
                C, int(ldc));
  else
    cblas_dgemm(CblasRowMajor, fa, fb, int(m), int(n), int(k), 1.0, A, int(lda), B, int(ldb), beta,
                C, int(ldc));
}

}  // namespace wengert::detail
