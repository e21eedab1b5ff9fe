// Hand-written baselines for bench_nn_ops: raw OpenBLAS calls with transpose flags, and plain
// vectorised loops (xsimd), float32, with no tape. Each function is what one would write by
// hand for that op's forward or backward; wengert's op is timed beside it in the same binary.
//
// nn_baseline.cpp includes the system <cblas.h>, so it includes no wengert header (xtensor-blas
// declares its own cblas_* functions); this header includes nothing heavy.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nn_baseline {

/// C[m,n] = op(A)·op(B) + beta·C (row-major; lda, ldb = stored column counts): cblas_sgemm.
void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* A,
          std::size_t lda, const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc);

/// y[i,j] = x[i,j] + b[j].
void bias_add_forward(const float* x, const float* b, float* y, std::size_t m, std::size_t n);
/// dx += G; db[j] += Σᵢ G[i,j].
void bias_add_backward(const float* G, float* dx, float* db, std::size_t m, std::size_t n);

/// y = σ(x), stable both ways; dx += g·y(1 − y).
void sigmoid_forward(const float* x, float* y, std::size_t n);
void sigmoid_backward(const float* y, const float* g, float* dx, std::size_t n);
/// y = tanh(x); dx += g·(1 − y²).
void tanh_forward(const float* x, float* y, std::size_t n);
void tanh_backward(const float* y, const float* g, float* dx, std::size_t n);

/// Softmax cross-entropy against labels, mean over m rows; keeps each row's max and log-sum
/// (2m floats) in `stats` for backward. Returns the loss.
float softmax_ce_forward(const float* z, const std::int32_t* labels, std::size_t m, std::size_t c,
                         float* stats);
/// dz += g·(softmax − onehot)/m from the kept stats.
void softmax_ce_backward(const float* z, const std::int32_t* labels, const float* stats,
                         std::size_t m, std::size_t c, float g, float* dz);

/// Binary cross-entropy with logits, mean over n: max(z,0) − z·y + log1p(e^−|z|).
float sigmoid_bce_forward(const float* z, const float* y, std::size_t n);
/// dz += g·(σ(z) − y)/n.
void sigmoid_bce_backward(const float* z, const float* y, std::size_t n, float g, float* dz);

/// Mean squared error; dp += g·2(p − t)/n.
float mse_forward(const float* p, const float* t, std::size_t n);
void mse_backward(const float* p, const float* t, std::size_t n, float g, float* dp);

/// One row-wise softmax; dx += y∘(g − ⟨g,y⟩).
void softmax_forward(const float* x, float* y, std::size_t m, std::size_t c);
void softmax_backward(const float* y, const float* g, float* dx, std::size_t m, std::size_t c);

/// The BLAS configuration string (openblas_get_config).
const char* blas_config();

}  // namespace nn_baseline
