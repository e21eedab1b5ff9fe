// The hand-written OpenBLAS training step (see mlp_floor.hpp for the math and the shapes).
//
// This file talks to OpenBLAS through the system <cblas.h> and must therefore not include any
// xtensor-blas header (which declares its own cblas_* functions); it uses xsimd directly for
// the elementwise passes, with the same -march flags as wengert.
#include "mlp_floor.hpp"

#include <cblas.h>

#include <xsimd/xsimd.hpp>

#include <wengert/arena.hpp>  // buffer_alloc only: no xtensor-blas in this file (see above)

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <stdexcept>

namespace wengert_bench {

// ---- workloads and data ----------------------------------------------------------------------

std::string Workload::describe() const {
  std::string s = "batch " + std::to_string(batch) + ", ";
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? "-" : "") + std::to_string(sizes[i]);
  s += loss == LossKind::kSoftmaxCrossEntropy ? ", tanh, softmax CE" : ", tanh, sigmoid BCE";
  return s;
}

const std::vector<Workload>& workloads() {
  static const std::vector<Workload> w = {
      {"S0", 64, {3, 4, 3, 1}, LossKind::kSigmoidBinaryCrossEntropy},
      {"S1", 32, {64, 64, 64, 10}, LossKind::kSoftmaxCrossEntropy},
      {"S2", 128, {784, 256, 256, 10}, LossKind::kSoftmaxCrossEntropy},
      {"S3", 256, {1024, 1024, 1024, 10}, LossKind::kSoftmaxCrossEntropy},
  };
  return w;
}

const Workload& workload(const std::string& name) {
  for (const Workload& w : workloads())
    if (name == w.name) return w;
  throw std::invalid_argument("unknown workload '" + name + "' (S0, S1, S2, S3)");
}

Problem make_problem(const Workload& w, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  // Our own transform of the engine's bits: identical on every standard library.
  auto uniform = [&rng](double lo, double hi) {
    return float(lo + (hi - lo) * (double(rng() >> 11) * 0x1.0p-53));
  };
  Problem p;
  p.w = w;
  const std::size_t in = w.sizes.front(), out = w.sizes.back();
  p.x.resize(w.batch * in);
  for (float& v : p.x) v = uniform(-1, 1);
  p.labels.resize(w.batch);
  for (auto& y : p.labels) y = std::int32_t(rng() % out);
  p.targets.resize(w.batch);
  for (float& t : p.targets) t = float(rng() & 1);
  for (std::size_t l = 0; l < w.layers(); ++l) {
    const std::size_t fi = w.sizes[l], fo = w.sizes[l + 1];
    const double a = std::sqrt(6.0 / double(fi + fo));  // Xavier uniform, as for tanh
    std::vector<float> W(fi * fo), b(fo);
    for (float& v : W) v = uniform(-a, a);
    for (float& v : b) v = uniform(-0.1, 0.1);  // non-zero, so the bias path is exercised
    p.W0.push_back(std::move(W));
    p.b0.push_back(std::move(b));
  }
  return p;
}

// ---- xsimd helpers ---------------------------------------------------------------------------

namespace {

using B = xsimd::batch<float>;
constexpr std::size_t kW = B::size;

// The partial last batch: lanes [0, r) (r < kW) loaded/stored with a mask where AVX-512 has
// one, else through a small stack buffer.
inline B load_tail(const float* p, std::size_t r) {
#if defined(__AVX512F__)
  if constexpr (kW == 16) return B(_mm512_maskz_loadu_ps(__mmask16((1u << r) - 1), p));
#endif
  alignas(64) float buf[kW] = {};
  std::copy(p, p + r, buf);
  return B::load_aligned(buf);
}
inline void store_tail(const B& v, float* p, std::size_t r) {
#if defined(__AVX512F__)
  if constexpr (kW == 16) {
    _mm512_mask_storeu_ps(p, __mmask16((1u << r) - 1), v);
    return;
  }
#endif
  alignas(64) float buf[kW];
  v.store_aligned(buf);
  std::copy(buf, buf + r, p);
}

// out[i] = f(a[i]) over n elements (out may be a).
template <class F>
inline void map1(const float* a, float* out, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + kW <= n; i += kW) f(B::load_unaligned(a + i)).store_unaligned(out + i);
  if (i < n) store_tail(f(load_tail(a + i, n - i)), out + i, n - i);
}
// out[i] = f(a[i], b[i]) over n elements (out may be a or b).
template <class F>
inline void map2(const float* a, const float* b, float* out, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + kW <= n; i += kW)
    f(B::load_unaligned(a + i), B::load_unaligned(b + i)).store_unaligned(out + i);
  if (i < n) store_tail(f(load_tail(a + i, n - i), load_tail(b + i, n - i)), out + i, n - i);
}

// Z ← tanh(Z + b) row by row, Z [rows, cols]. Narrow layers add the bias with a plain loop and
// then run tanh over the whole contiguous block (a per-row masked batch would waste most lanes).
void bias_tanh(float* z, const float* b, std::size_t rows, std::size_t cols) {
  if (cols >= kW) {
    for (std::size_t r = 0; r < rows; ++r) {
      float* row = z + r * cols;
      map2(row, b, row, cols, [](B v, B bb) { return xsimd::tanh(v + bb); });
    }
    return;
  }
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < cols; ++j) z[r * cols + j] += b[j];
  map1(z, z, rows * cols, [](B v) { return xsimd::tanh(v); });
}

void bias_add(float* __restrict z, const float* __restrict b, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < cols; ++j) z[r * cols + j] += b[j];
}

// db[j] = Σ_r dz[r, j].
void column_sums(const float* __restrict dz, float* __restrict db, std::size_t rows,
                 std::size_t cols) {
  std::copy(dz, dz + cols, db);
  for (std::size_t r = 1; r < rows; ++r)
    for (std::size_t j = 0; j < cols; ++j) db[j] += dz[r * cols + j];
}

void sgd(float* __restrict p, const float* __restrict g, std::size_t n, float lr) {
  for (std::size_t i = 0; i < n; ++i) p[i] -= lr * g[i];
}

// Softmax cross-entropy averaged over rows: returns the loss, writes dZ = (softmax − onehot)/rows.
float softmax_ce(const float* z, const std::int32_t* labels, float* dz, std::size_t rows,
                 std::size_t cols) {
  const float inv = 1.0f / float(rows);
  double total = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* zr = z + r * cols;
    float* dr = dz + r * cols;
    const float m = *std::max_element(zr, zr + cols);
    map1(zr, dr, cols, [m](B v) { return xsimd::exp(v - B(m)); });
    float s = 0;
    for (std::size_t j = 0; j < cols; ++j) s += dr[j];
    const float scale = inv / s;
    for (std::size_t j = 0; j < cols; ++j) dr[j] *= scale;
    const std::size_t y = std::size_t(labels[r]);
    dr[y] -= inv;
    total += double(std::log(s) + m - zr[y]);
  }
  return float(total / double(rows));
}

// Sigmoid + binary cross-entropy on logits z [n] and 0/1 targets t, averaged: returns the loss,
// writes dZ = (σ(z) − t)/n. Stable form: ℓ = max(z,0) − z·t + log1p(e^(−|z|)).
float sigmoid_bce(const float* z, const float* t, float* dz, float* tmp, std::size_t n) {
  const B inv(1.0f / float(n));
  map2(z, t, tmp, n, [](B v, B y) {
    return xsimd::max(v, B(0.0f)) - v * y + xsimd::log1p(xsimd::exp(-xsimd::abs(v)));
  });
  map2(z, t, dz, n, [inv](B v, B y) {
    const B e = xsimd::exp(-xsimd::abs(v));
    const B one(1.0f);
    const B sig = xsimd::select(v >= B(0.0f), one / (one + e), e / (one + e));
    return (sig - y) * inv;
  });
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) total += tmp[i];
  return float(total / double(n));
}

}  // namespace

// ---- FloorMLP --------------------------------------------------------------------------------

// The same allocation as wengert's parameters and arena blocks (64-byte aligned; 2 MiB and more
// aligned to 2 MiB and advised as huge pages), so that neither step has a TLB advantage.
float* FloorMLP::buffer(std::size_t n) {
  std::size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~std::size_t{63};
  float* p = static_cast<float*>(wengert::detail::buffer_alloc(bytes));
  std::fill(p, p + n, 0.0f);  // touch every page now, not in the first step
  owned_.push_back(p);
  return p;
}

FloorMLP::FloorMLP(const Problem& p) : p_(&p) {
  const Workload& w = p.w;
  const std::size_t L = w.layers(), B_ = w.batch;
  std::size_t widest = 0;
  A_.push_back(const_cast<float*>(p.x.data()));
  for (std::size_t l = 0; l < L; ++l) {
    const std::size_t in = w.sizes[l], out = w.sizes[l + 1];
    W_.push_back(buffer(in * out));
    std::copy(p.W0[l].begin(), p.W0[l].end(), W_.back());
    b_.push_back(buffer(out));
    std::copy(p.b0[l].begin(), p.b0[l].end(), b_.back());
    dW_.push_back(buffer(in * out));
    db_.push_back(buffer(out));
    A_.push_back(buffer(B_ * out));
    dZ_.push_back(buffer(B_ * out));
    widest = std::max(widest, out);
  }
  dA_ = buffer(B_ * widest);
  rowtmp_ = buffer(B_ * widest);
}

FloorMLP::~FloorMLP() {
  for (float* p : owned_) std::free(p);
}

float FloorMLP::step() {
  const Workload& w = p_->w;
  const std::size_t L = w.layers(), Bt = w.batch;
  const int bi = int(Bt);

  // Forward: Z_l = A_l·W_l (GEMM), then bias and tanh fused in one pass (the last layer keeps Z).
  for (std::size_t l = 0; l < L; ++l) {
    const int in = int(w.sizes[l]), out = int(w.sizes[l + 1]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi, out, in, 1.0f, A_[l], in, W_[l], out,
                0.0f, A_[l + 1], out);
    if (l + 1 < L)
      bias_tanh(A_[l + 1], b_[l], Bt, std::size_t(out));
    else
      bias_add(A_[l + 1], b_[l], Bt, std::size_t(out));
  }

  // Loss and its gradient with respect to the logits.
  const std::size_t C = w.sizes.back();
  const float loss = w.loss == LossKind::kSoftmaxCrossEntropy
                         ? softmax_ce(A_[L], p_->labels.data(), dZ_[L - 1], Bt, C)
                         : sigmoid_bce(A_[L], p_->targets.data(), dZ_[L - 1], rowtmp_, Bt * C);

  // Backward: dW = Aᵀ·dZ and dA = dZ·Wᵀ as GEMMs with transpose flags; dA lands directly in the
  // previous layer's dZ buffer and is multiplied in place by tanh' = 1 − A².
  for (std::size_t l = L; l-- > 0;) {
    const int in = int(w.sizes[l]), out = int(w.sizes[l + 1]);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, out, bi, 1.0f, A_[l], in, dZ_[l], out,
                0.0f, dW_[l], out);
    column_sums(dZ_[l], db_[l], Bt, std::size_t(out));
    if (l == 0) break;  // X needs no gradient
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, in, out, 1.0f, dZ_[l], out, W_[l], out,
                0.0f, dZ_[l - 1], in);
    map2(dZ_[l - 1], A_[l], dZ_[l - 1], Bt * std::size_t(in),
         [](B g, B a) { return g * (B(1.0f) - a * a); });
  }

  // Plain SGD.
  for (std::size_t l = 0; l < L; ++l) {
    sgd(W_[l], dW_[l], w.sizes[l] * w.sizes[l + 1], p_->lr);
    sgd(b_[l], db_[l], w.sizes[l + 1], p_->lr);
  }
  return loss;
}

float plain_op_chain(const float* x, const float* w, std::size_t n, int ops, float* buf, float* g,
                     float* gw) {
  std::copy(x, x + n, buf);
  for (int i = 0; i < ops; ++i) {
    const float* in = buf + std::size_t(i) * n;
    float* out = buf + std::size_t(i + 1) * n;
    if (op_is_tanh(i))
      map1(in, out, n, [](B v) { return xsimd::tanh(v); });
    else
      map2(in, w, out, n, [](B v, B ww) { return v * ww; });
  }
  std::fill(g, g + n, 1.0f);
  std::fill(gw, gw + n, 0.0f);
  for (int i = ops; i-- > 0;) {
    const float* in = buf + std::size_t(i) * n;
    if (op_is_tanh(i)) {
      map2(g, in + n, g, n, [](B d, B y) { return d * (B(1.0f) - y * y); });  // y = out
    } else {
      for (std::size_t k = 0; k < n; ++k) {
        gw[k] += g[k] * in[k];
        g[k] *= w[k];
      }
    }
  }
  return g[0];
}

}  // namespace wengert_bench
