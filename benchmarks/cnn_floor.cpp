// The hand-written CNN step (see cnn_floor.hpp). Includes <cblas.h>, so no wengert header.
#include "cnn_floor.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace wengert_bench {

namespace {

// C [m,n] = op(A)·op(B) + beta·C, row-major.
void sgemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* A,
           std::size_t lda, const float* B, std::size_t ldb, float beta, float* C,
           std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m),
              int(n), int(k), 1.0f, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// im2col of a [C,S,S] image for a 3×3 kernel, padding 1, stride 1: col [C·9, S·S].
void im2col3(const float* x, std::size_t C, std::size_t S, float* col) {
  const std::size_t P = S * S;
  for (std::size_t c = 0; c < C; ++c)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        float* row = col + ((c * 3 + std::size_t(i)) * 3 + std::size_t(j)) * P;
        for (std::size_t oh = 0; oh < S; ++oh, row += S) {
          const long ih = long(oh) + i - 1;
          if (ih < 0 || ih >= long(S)) {
            std::fill(row, row + S, 0.0f);
            continue;
          }
          const float* xr = x + (c * S + std::size_t(ih)) * S;
          // ow + j − 1 in [0, S): ow from (j == 0 ? 1 : 0) to (j == 2 ? S − 1 : S)
          const std::size_t lo = j == 0 ? 1 : 0, hi = j == 2 ? S - 1 : S;
          if (lo) row[0] = 0.0f;
          std::memcpy(row + lo, xr + lo + std::size_t(j) - 1, (hi - lo) * sizeof(float));
          if (hi < S) row[S - 1] = 0.0f;
        }
      }
}

// dx [C,S,S] += col2im(dcol), the reverse of im2col3.
void col2im3(const float* dcol, std::size_t C, std::size_t S, float* dx) {
  const std::size_t P = S * S;
  for (std::size_t c = 0; c < C; ++c)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        const float* row = dcol + ((c * 3 + std::size_t(i)) * 3 + std::size_t(j)) * P;
        for (std::size_t oh = 0; oh < S; ++oh, row += S) {
          const long ih = long(oh) + i - 1;
          if (ih < 0 || ih >= long(S)) continue;
          float* xr = dx + (c * S + std::size_t(ih)) * S + std::size_t(j) - 1;
          const std::size_t lo = j == 0 ? 1 : 0, hi = j == 2 ? S - 1 : S;
          for (std::size_t ow = lo; ow < hi; ++ow) xr[ow] += row[ow];
        }
      }
}

// y [O,P] += b per row, then relu, in place.
void bias_relu(float* y, const float* b, std::size_t O, std::size_t P) {
  for (std::size_t o = 0; o < O; ++o, y += P) {
    const float bo = b[o];
    for (std::size_t q = 0; q < P; ++q) y[q] = std::max(y[q] + bo, 0.0f);
  }
}

// 2×2 max pooling of `planes` planes [S,S] → [S/2,S/2], winners' indices kept.
void maxpool2(const float* x, std::size_t planes, std::size_t S, float* y, std::uint32_t* arg) {
  const std::size_t H = S / 2;
  for (std::size_t pl = 0; pl < planes; ++pl, x += S * S, y += H * H, arg += H * H)
    for (std::size_t oh = 0; oh < H; ++oh) {
      const float* r0 = x + 2 * oh * S;
      const float* r1 = r0 + S;
      for (std::size_t ow = 0; ow < H; ++ow) {
        // Branch-free (vmaxss, setcc): the winner is a coin toss, a branch would mispredict.
        // Ties go to the first pixel in row-major order. (No NaN handling: the floor's inputs
        // are finite.)
        const std::size_t c = 2 * ow;
        const float a = r0[c], b = r0[c + 1], d = r1[c], e = r1[c + 1];
        const std::size_t top = b > a, bottom = e > d;
        const float m0 = std::max(a, b), m1 = std::max(d, e);
        const std::size_t down = m0 < m1;
        const float m = std::max(m0, m1);
        const std::size_t best = 2 * oh * S + c + top + down * (S + bottom - top);
        y[oh * H + ow] = m;
        arg[oh * H + ow] = std::uint32_t(best);
      }
    }
}

// dx (zeroed here, `planes` planes [S,S]) = the pooled gradient scattered to the winners, then
// masked by relu': dx = 0 where the forward's post-relu value a is 0.
void unpool_relu(const float* g, const std::uint32_t* arg, const float* a, std::size_t planes,
                 std::size_t S, float* dx) {
  const std::size_t H = S / 2, P = S * S;
  std::fill(dx, dx + planes * P, 0.0f);
  for (std::size_t pl = 0; pl < planes; ++pl) {
    float* d = dx + pl * P;
    const float* ap = a + pl * P;
    for (std::size_t q = 0; q < H * H; ++q) {
      const std::uint32_t w = arg[pl * H * H + q];
      if (ap[w] > 0.0f) d[w] += g[pl * H * H + q];
    }
  }
}

void row_sums_into(const float* G, std::size_t rows, std::size_t n, float* db) {
  for (std::size_t r = 0; r < rows; ++r, G += n)
    for (std::size_t j = 0; j < n; ++j) db[j] += G[j];
}

}  // namespace

CnnProblem make_cnn_problem(const CnnShape& s, std::uint64_t seed) {
  CnnProblem p;
  p.s = s;
  std::mt19937_64 rng(seed);
  auto u = [&rng](float a) { return float(a * (2.0 * double(rng() >> 11) * 0x1.0p-53 - 1.0)); };
  p.x.resize(s.batch * s.side * s.side);
  for (float& v : p.x) v = u(1.5f);
  p.labels.resize(s.batch);
  for (auto& l : p.labels) l = std::int32_t(rng() % s.classes);
  const std::size_t in[4] = {9, s.c1 * 9, s.flat(), s.hidden};
  const std::size_t out[4] = {s.c1, s.c2, s.hidden, s.classes};
  for (int l = 0; l < 4; ++l) {
    p.W0[l].resize(in[l] * out[l]);
    const float a = float(std::sqrt(6.0 / double(in[l])));
    for (float& v : p.W0[l]) v = u(a);
    p.b0[l].resize(out[l]);
    for (float& v : p.b0[l]) v = u(0.05f);
  }
  return p;
}

FloorCNN::FloorCNN(const CnnProblem& p) : p_(&p) {
  const CnnShape& s = p.s;
  for (int l = 0; l < 4; ++l) {
    W_[l].assign(p.W0[l].begin(), p.W0[l].end());
    b_[l].assign(p.b0[l].begin(), p.b0[l].end());
    dW_[l].assign(W_[l].size(), 0.0f);
    db_[l].assign(b_[l].size(), 0.0f);
  }
  const std::size_t B = s.batch, S = s.side, P1 = S * S, P2 = P1 / 4, H2 = S / 4;
  col1_.resize(B * 9 * P1);
  a1_.resize(B * s.c1 * P1);
  p1_.resize(B * s.c1 * P2);
  arg1_.resize(B * s.c1 * P2);
  col2_.resize(B * s.c1 * 9 * P2);
  a2_.resize(B * s.c2 * P2);
  p2_.resize(B * s.flat());
  arg2_.resize(B * s.c2 * H2 * H2);
  a3_.resize(B * s.hidden);
  z4_.resize(B * s.classes);
  dz4_.resize(B * s.classes);
  dz3_.resize(B * s.hidden);
  dp2_.resize(B * s.flat());
  da2_.resize(B * s.c2 * P2);
  dcol_.resize(s.c1 * 9 * P2);
  dp1_.resize(B * s.c1 * P2);
  da1_.resize(B * s.c1 * P1);
}

float FloorCNN::step() {
  const CnnShape& s = p_->s;
  const std::size_t B = s.batch, S = s.side, S2 = S / 2, P1 = S * S, P2 = S2 * S2;
  const std::size_t K1 = 9, K2 = s.c1 * 9, F = s.flat(), Hd = s.hidden, C = s.classes;
  // ---- forward ----
  for (std::size_t n = 0; n < B; ++n) {  // conv1 + bias + relu: a1_n [c1,P1] = W1 [c1,9]·col1_n
    float* col = col1_.data() + n * K1 * P1;
    im2col3(p_->x.data() + n * P1, 1, S, col);
    float* a = a1_.data() + n * s.c1 * P1;
    sgemm(false, false, s.c1, P1, K1, W_[0].data(), K1, col, P1, 0.0f, a, P1);
    bias_relu(a, b_[0].data(), s.c1, P1);
  }
  maxpool2(a1_.data(), B * s.c1, S, p1_.data(), arg1_.data());
  for (std::size_t n = 0; n < B; ++n) {  // conv2 + bias + relu: a2_n [c2,P2] = W2 [c2,K2]·col2_n
    float* col = col2_.data() + n * K2 * P2;
    im2col3(p1_.data() + n * s.c1 * P2, s.c1, S2, col);
    float* a = a2_.data() + n * s.c2 * P2;
    sgemm(false, false, s.c2, P2, K2, W_[1].data(), K2, col, P2, 0.0f, a, P2);
    bias_relu(a, b_[1].data(), s.c2, P2);
  }
  maxpool2(a2_.data(), B * s.c2, S2, p2_.data(), arg2_.data());  // p2 [B, F] is the flattening
  // fc1 + bias + relu: a3 [B,Hd] = p2 [B,F]·W3 [F,Hd]; fc2: z4 [B,C] = a3·W4 (bias in the loss)
  sgemm(false, false, B, Hd, F, p2_.data(), F, W_[2].data(), Hd, 0.0f, a3_.data(), Hd);
  for (std::size_t r = 0; r < B; ++r)
    for (std::size_t j = 0; j < Hd; ++j)
      a3_[r * Hd + j] = std::max(a3_[r * Hd + j] + b_[2][j], 0.0f);
  sgemm(false, false, B, C, Hd, a3_.data(), Hd, W_[3].data(), C, 0.0f, z4_.data(), C);
  // ---- loss: mean softmax cross-entropy; dz4 = (softmax − onehot) / B ----
  double loss = 0;
  for (std::size_t r = 0; r < B; ++r) {
    float* z = z4_.data() + r * C;
    float* d = dz4_.data() + r * C;
    float m = -INFINITY;
    for (std::size_t j = 0; j < C; ++j) m = std::max(m, z[j] += b_[3][j]);
    float sum = 0;
    for (std::size_t j = 0; j < C; ++j) sum += d[j] = std::exp(z[j] - m);
    const std::size_t y = std::size_t(p_->labels[r]);
    loss += double(std::log(sum) - (z[y] - m));
    const float inv = 1.0f / (sum * float(B));
    for (std::size_t j = 0; j < C; ++j) d[j] *= inv;
    d[y] -= 1.0f / float(B);
  }
  // ---- backward ----
  sgemm(true, false, Hd, C, B, a3_.data(), Hd, dz4_.data(), C, 0.0f, dW_[3].data(), C);
  std::fill(db_[3].begin(), db_[3].end(), 0.0f);
  row_sums_into(dz4_.data(), B, C, db_[3].data());
  sgemm(false, true, B, Hd, C, dz4_.data(), C, W_[3].data(), C, 0.0f, dz3_.data(), Hd);
  for (std::size_t i = 0; i < B * Hd; ++i)
    if (a3_[i] <= 0.0f) dz3_[i] = 0.0f;
  sgemm(true, false, F, Hd, B, p2_.data(), F, dz3_.data(), Hd, 0.0f, dW_[2].data(), Hd);
  std::fill(db_[2].begin(), db_[2].end(), 0.0f);
  row_sums_into(dz3_.data(), B, Hd, db_[2].data());
  sgemm(false, true, B, F, Hd, dz3_.data(), Hd, W_[2].data(), Hd, 0.0f, dp2_.data(), F);
  unpool_relu(dp2_.data(), arg2_.data(), a2_.data(), B * s.c2, S2, da2_.data());
  std::fill(db_[1].begin(), db_[1].end(), 0.0f);
  std::fill(dp1_.begin(), dp1_.end(), 0.0f);
  for (std::size_t n = 0; n < B; ++n) {
    const float* g = da2_.data() + n * s.c2 * P2;  // [c2,P2]
    // dW2 [c2,K2] (+)= g · col2_nᵀ; db2 += row sums; dcol = W2ᵀ·g; dp1_n += col2im(dcol)
    sgemm(false, true, s.c2, K2, P2, g, P2, col2_.data() + n * K2 * P2, P2, n ? 1.0f : 0.0f,
          dW_[1].data(), K2);
    for (std::size_t o = 0; o < s.c2; ++o) {
      float t = 0;
      for (std::size_t q = 0; q < P2; ++q) t += g[o * P2 + q];
      db_[1][o] += t;
    }
    sgemm(true, false, K2, P2, s.c2, W_[1].data(), K2, g, P2, 0.0f, dcol_.data(), P2);
    col2im3(dcol_.data(), s.c1, S2, dp1_.data() + n * s.c1 * P2);
  }
  unpool_relu(dp1_.data(), arg1_.data(), a1_.data(), B * s.c1, S, da1_.data());
  std::fill(db_[0].begin(), db_[0].end(), 0.0f);
  for (std::size_t n = 0; n < B; ++n) {  // dW1 [c1,9] (+)= g · col1_nᵀ (no gradient for x)
    const float* g = da1_.data() + n * s.c1 * P1;
    sgemm(false, true, s.c1, K1, P1, g, P1, col1_.data() + n * K1 * P1, P1, n ? 1.0f : 0.0f,
          dW_[0].data(), K1);
    for (std::size_t o = 0; o < s.c1; ++o) {
      float t = 0;
      for (std::size_t q = 0; q < P1; ++q) t += g[o * P1 + q];
      db_[0][o] += t;
    }
  }
  // ---- SGD ----
  const float lr = p_->lr;
  for (int l = 0; l < 4; ++l) {
    for (std::size_t i = 0; i < W_[l].size(); ++i) W_[l][i] -= lr * dW_[l][i];
    for (std::size_t i = 0; i < b_[l].size(); ++i) b_[l][i] -= lr * db_[l][i];
  }
  return float(loss / double(B));
}

void conv3x3_forward(const float* x, const float* W, const float* b, std::size_t N, std::size_t C,
                     std::size_t S, std::size_t O, float* col, float* y) {
  const std::size_t K = C * 9, P = S * S;
  for (std::size_t n = 0; n < N; ++n) {
    float* cn = col + n * K * P;
    im2col3(x + n * C * P, C, S, cn);
    float* yn = y + n * O * P;
    sgemm(false, false, O, P, K, W, K, cn, P, 0.0f, yn, P);
    for (std::size_t o = 0; o < O; ++o)
      for (std::size_t q = 0; q < P; ++q) yn[o * P + q] += b[o];
  }
}

void conv3x3_backward(const float* G, const float* col, const float* W, std::size_t N,
                      std::size_t C, std::size_t S, std::size_t O, float* dW, float* db, float* dx,
                      float* dcol) {
  const std::size_t K = C * 9, P = S * S;
  for (std::size_t n = 0; n < N; ++n) {
    const float* g = G + n * O * P;
    sgemm(false, true, O, K, P, g, P, col + n * K * P, P, 1.0f, dW, K);
    for (std::size_t o = 0; o < O; ++o) {
      float t = 0;
      for (std::size_t q = 0; q < P; ++q) t += g[o * P + q];
      db[o] += t;
    }
    sgemm(true, false, K, P, O, W, K, g, P, 0.0f, dcol, P);
    col2im3(dcol, C, S, dx + n * C * P);
  }
}

}  // namespace wengert_bench
