// Hand-written baselines for bench_nn_ops (see nn_baseline.hpp). Raw cblas_sgemm calls and
// straightforward xsimd loops: full batches, then a scalar tail with <cmath>.
#include "nn_baseline.hpp"

#include <cblas.h>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>

extern "C" char* openblas_get_config();

namespace nn_baseline {

namespace {
using B = xsimd::batch<float>;
constexpr std::size_t kW = B::size;

float hmax(const B& b) {
  alignas(64) float buf[kW];
  b.store_aligned(buf);
  float m = buf[0];
  for (std::size_t k = 1; k < kW; ++k) m = std::max(m, buf[k]);
  return m;
}

float row_max(const float* z, std::size_t c) {
  std::size_t j = 0;
  float mx = z[0];
  if (c >= kW) {
    B bm = B::load_unaligned(z);
    for (j = kW; j + kW <= c; j += kW) bm = xsimd::max(bm, B::load_unaligned(z + j));
    mx = hmax(bm);
  }
  for (; j < c; ++j) mx = std::max(mx, z[j]);
  return mx;
}
}  // namespace

const char* blas_config() { return openblas_get_config(); }

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* A,
          std::size_t lda, const float* Bm, std::size_t ldb, float beta, float* C,
          std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m),
              int(n), int(k), 1.0f, A, int(lda), Bm, int(ldb), beta, C, int(ldc));
}

void bias_add_forward(const float* __restrict x, const float* __restrict b, float* __restrict y,
                      std::size_t m, std::size_t n) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) y[i * n + j] = x[i * n + j] + b[j];
}

void bias_add_backward(const float* __restrict G, float* __restrict dx, float* __restrict db,
                       std::size_t m, std::size_t n) {
  for (std::size_t i = 0; i < m * n; ++i) dx[i] += G[i];
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) db[j] += G[i * n + j];
}

void sigmoid_forward(const float* x, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + kW <= n; i += kW) {
    const B v = B::load_unaligned(x + i);
    const B e = xsimd::exp(-xsimd::abs(v));
    const B r = B(1.0f) / (B(1.0f) + e);
    xsimd::select(v >= B(0.0f), r, e * r).store_unaligned(y + i);
  }
  for (; i < n; ++i) {
    const float e = std::exp(-std::abs(x[i]));
    y[i] = x[i] >= 0 ? 1 / (1 + e) : e / (1 + e);
  }
}

void sigmoid_backward(const float* __restrict y, const float* __restrict g, float* __restrict dx,
                      std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dx[i] += g[i] * y[i] * (1.0f - y[i]);
}

void tanh_forward(const float* x, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + kW <= n; i += kW) xsimd::tanh(B::load_unaligned(x + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = std::tanh(x[i]);
}

void tanh_backward(const float* __restrict y, const float* __restrict g, float* __restrict dx,
                   std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dx[i] += g[i] * (1.0f - y[i] * y[i]);
}

float softmax_ce_forward(const float* z, const std::int32_t* labels, std::size_t m, std::size_t c,
                         float* stats) {
  float loss = 0;
  for (std::size_t r = 0; r < m; ++r, z += c) {
    const float mx = row_max(z, c);
    std::size_t j = 0;
    B acc(0.0f);
    const B bmx(mx);
    for (j = 0; j + kW <= c; j += kW) acc += xsimd::exp(B::load_unaligned(z + j) - bmx);
    float s = xsimd::hadd(acc);
    for (; j < c; ++j) s += std::exp(z[j] - mx);
    const float ls = std::log(s);
    stats[2 * r] = mx;
    stats[2 * r + 1] = ls;
    loss += ls - (z[labels[r]] - mx);
  }
  return loss / float(m);
}

void softmax_ce_backward(const float* z, const std::int32_t* labels, const float* stats,
                         std::size_t m, std::size_t c, float g, float* dz) {
  const float gm = g / float(m);
  const B bg(gm);
  for (std::size_t r = 0; r < m; ++r, z += c, dz += c) {
    const float mx = stats[2 * r], ls = stats[2 * r + 1];
    const B bmx(mx), bls(ls);
    std::size_t j = 0;
    for (; j + kW <= c; j += kW)
      (B::load_unaligned(dz + j) + bg * xsimd::exp((B::load_unaligned(z + j) - bmx) - bls))
          .store_unaligned(dz + j);
    for (; j < c; ++j) dz[j] += gm * std::exp((z[j] - mx) - ls);
    dz[labels[r]] -= gm;
  }
}

float sigmoid_bce_forward(const float* z, const float* y, std::size_t n) {
  B acc(0.0f);
  std::size_t i = 0;
  for (; i + kW <= n; i += kW) {
    const B v = B::load_unaligned(z + i);
    acc += xsimd::max(v, B(0.0f)) - v * B::load_unaligned(y + i) +
           xsimd::log1p(xsimd::exp(-xsimd::abs(v)));
  }
  float s = xsimd::hadd(acc);
  for (; i < n; ++i)
    s += std::max(z[i], 0.0f) - z[i] * y[i] + std::log1p(std::exp(-std::abs(z[i])));
  return s / float(n);
}

void sigmoid_bce_backward(const float* z, const float* y, std::size_t n, float g, float* dz) {
  const float gn = g / float(n);
  const B bg(gn), one(1.0f);
  std::size_t i = 0;
  for (; i + kW <= n; i += kW) {
    const B v = B::load_unaligned(z + i);
    const B e = xsimd::exp(-xsimd::abs(v));
    const B r = one / (one + e);
    const B sig = xsimd::select(v >= B(0.0f), r, e * r);
    (B::load_unaligned(dz + i) + bg * (sig - B::load_unaligned(y + i))).store_unaligned(dz + i);
  }
  for (; i < n; ++i) {
    const float e = std::exp(-std::abs(z[i]));
    dz[i] += gn * ((z[i] >= 0 ? 1 / (1 + e) : e / (1 + e)) - y[i]);
  }
}

float mse_forward(const float* p, const float* t, std::size_t n) {
  B acc(0.0f);
  std::size_t i = 0;
  for (; i + kW <= n; i += kW) {
    const B d = B::load_unaligned(p + i) - B::load_unaligned(t + i);
    acc += d * d;
  }
  float s = xsimd::hadd(acc);
  for (; i < n; ++i) s += (p[i] - t[i]) * (p[i] - t[i]);
  return s / float(n);
}

void mse_backward(const float* __restrict p, const float* __restrict t, std::size_t n, float g,
                  float* __restrict dp) {
  const float s = 2.0f * g / float(n);
  for (std::size_t i = 0; i < n; ++i) dp[i] += s * (p[i] - t[i]);
}

void softmax_forward(const float* x, float* y, std::size_t m, std::size_t c) {
  for (std::size_t r = 0; r < m; ++r, x += c, y += c) {
    const float mx = row_max(x, c);
    B acc(0.0f);
    const B bmx(mx);
    std::size_t j = 0;
    for (; j + kW <= c; j += kW) {
      const B e = xsimd::exp(B::load_unaligned(x + j) - bmx);
      e.store_unaligned(y + j);
      acc += e;
    }
    float s = xsimd::hadd(acc);
    for (; j < c; ++j) s += (y[j] = std::exp(x[j] - mx));
    const float inv = 1.0f / s;
    for (j = 0; j < c; ++j) y[j] *= inv;
  }
}

void softmax_backward(const float* y, const float* g, float* dx, std::size_t m, std::size_t c) {
  for (std::size_t r = 0; r < m; ++r, y += c, g += c, dx += c) {
    B acc(0.0f);
    std::size_t j = 0;
    for (; j + kW <= c; j += kW) acc += B::load_unaligned(g + j) * B::load_unaligned(y + j);
    float gy = xsimd::hadd(acc);
    for (; j < c; ++j) gy += g[j] * y[j];
    for (j = 0; j < c; ++j) dx[j] += y[j] * (g[j] - gy);
  }
}

}  // namespace nn_baseline
