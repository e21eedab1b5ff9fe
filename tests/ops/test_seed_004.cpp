// Seed 004 (a shallow network worked by hand): 3-4-3-1, tanh, tanh, sigmoid output, binary
// cross-entropy J = −(1/m) Σ [y log a + (1 − y) log(1 − a)], in the seed's column layout:
//   X [n_x, m], W[i] [L_i, L_{i−1}], b[i] [L_i, 1], Z[i] = W[i]·A[i−1] + b[i].
// Its hand-derived gradients, which wengert's tape must reproduce:
//   dZ3 = A3 − Y                      dW3 = dZ3·A2ᵀ / m     db3 = Σ_columns dZ3 / m
//   dZ2 = W3ᵀ·dZ3 ∗ (1 − A2²)         dW2 = dZ2·A1ᵀ / m     db2 = Σ_columns dZ2 / m
//   dZ1 = W2ᵀ·dZ2 ∗ (1 − A1²)         dW1 = dZ1·Xᵀ / m      db1 = Σ_columns dZ1 / m
// (The seed's code writes dW2 = dZ2·Xᵀ/m, a slip: its formulas and its shapes say A1ᵀ.)
// The seed's dZ is the adjoint of Z times m (J averages over m): the tape's Z3 adjoint is
// (A3 − Y)/m. The reference below is plain loops in double, written from the formulas.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include <xtensor/xarray.hpp>

using namespace wengert;

namespace {

using Mat = std::vector<std::vector<double>>;  // row-major [rows][cols]

Mat zeros(std::size_t r, std::size_t c) { return Mat(r, std::vector<double>(c, 0.0)); }

Mat random_mat(std::size_t r, std::size_t c, std::mt19937_64& rng, double scale) {
  std::normal_distribution<double> N(0.0, scale);
  Mat m = zeros(r, c);
  for (auto& row : m)
    for (auto& v : row) v = N(rng);
  return m;
}

// A·B, or Aᵀ·B, or A·Bᵀ.
Mat mul(const Mat& A, const Mat& B, bool ta = false, bool tb = false) {
  const std::size_t n = ta ? A[0].size() : A.size(), k = ta ? A.size() : A[0].size();
  const std::size_t p = tb ? B.size() : B[0].size();
  Mat C = zeros(n, p);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < p; ++j)
      for (std::size_t l = 0; l < k; ++l)
        C[i][j] += (ta ? A[l][i] : A[i][l]) * (tb ? B[j][l] : B[l][j]);
  return C;
}

xt::xarray<double> to_xt(const Mat& m) {
  xt::xarray<double> a = xt::xarray<double>::from_shape({m.size(), m[0].size()});
  for (std::size_t i = 0; i < m.size(); ++i)
    for (std::size_t j = 0; j < m[0].size(); ++j) a(i, j) = m[i][j];
  return a;
}

struct Seed004 {
  static constexpr std::size_t kM = 5;
  std::vector<std::size_t> L = {3, 4, 3, 1};
  Mat X, Y;
  std::vector<Mat> W, b;  // W[i], b[i] for layers 1..3 at index i−1
  explicit Seed004(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    X = random_mat(3, kM, rng, 1.0);
    Y = zeros(1, kM);
    for (std::size_t j = 0; j < kM; ++j) Y[0][j] = double(j % 2);
    for (std::size_t i = 1; i <= 3; ++i) {
      W.push_back(random_mat(L[i], L[i - 1], rng, 0.8));  // the seed uses ·0.01; larger
      b.push_back(random_mat(L[i], 1, rng, 0.5));         // values make the check sharper
    }
  }
};

struct Reference {
  double J = 0;
  Mat dZ3;
  std::vector<Mat> dW, db;
};

Reference hand_derived(const Seed004& s) {
  const double m = double(Seed004::kM);
  std::vector<Mat> A = {s.X};
  for (std::size_t i = 0; i < 3; ++i) {
    Mat Z = mul(s.W[i], A.back());
    for (std::size_t r = 0; r < Z.size(); ++r)
      for (std::size_t c = 0; c < Z[0].size(); ++c) {
        Z[r][c] += s.b[i][r][0];
        Z[r][c] = i < 2 ? std::tanh(Z[r][c]) : 1.0 / (1.0 + std::exp(-Z[r][c]));
      }
    A.push_back(Z);
  }
  Reference ref;
  for (std::size_t j = 0; j < Seed004::kM; ++j) {
    const double a = A[3][0][j], y = s.Y[0][j];
    ref.J -= (y * std::log(a) + (1 - y) * std::log(1 - a)) / m;
  }
  ref.dW.resize(3);
  ref.db.resize(3);
  Mat dZ = zeros(1, Seed004::kM);  // dZ3 = A3 − Y
  for (std::size_t j = 0; j < Seed004::kM; ++j) dZ[0][j] = A[3][0][j] - s.Y[0][j];
  ref.dZ3 = dZ;
  for (std::size_t i = 3; i-- > 0;) {
    ref.dW[i] = mul(dZ, A[i], false, true);  // dW = dZ·A[i−1]ᵀ / m
    ref.db[i] = zeros(dZ.size(), 1);         // db = Σ_columns dZ / m
    for (std::size_t r = 0; r < dZ.size(); ++r) {
      for (auto& v : ref.dW[i][r]) v /= m;
      for (double v : dZ[r]) ref.db[i][r][0] += v / m;
    }
    if (i == 0) break;
    Mat next = mul(s.W[i], dZ, true, false);  // dZ[i−1] = W[i]ᵀ·dZ ∗ (1 − A[i−1]²)
    for (std::size_t r = 0; r < next.size(); ++r)
      for (std::size_t c = 0; c < next[0].size(); ++c) next[r][c] *= 1 - A[i][r][c] * A[i][r][c];
    dZ = next;
  }
  return ref;
}

void expect_near(const xt::xarray<double>& got, const Mat& want, double tol, const char* what) {
  ASSERT_EQ(got.shape()[0], want.size()) << what;
  ASSERT_EQ(got.shape()[1], want[0].size()) << what;
  for (std::size_t r = 0; r < want.size(); ++r)
    for (std::size_t c = 0; c < want[0].size(); ++c)
      EXPECT_NEAR(got(r, c), want[r][c], tol) << what << "(" << r << "," << c << ")";
}

// Records the network on `tape`; fused: sigmoid folded into the loss, else sigmoid then
// binary_cross_entropy as the seed writes it. Returns (J, Z3).
std::pair<Var<double>, Var<double>> record(Tape<double>& tape, const Seed004& s,
                                           std::vector<Parameter<double>>& W,
                                           std::vector<Parameter<double>>& b, bool fused) {
  Var<double> A = tape.constant(to_xt(s.X));
  Var<double> Z;
  for (std::size_t i = 0; i < 3; ++i) {
    Z = matmul(tape.param(W[i]), A) + tape.param(b[i]);  // [L_i, m] + [L_i, 1] broadcast
    if (i < 2) A = tanh(Z);
  }
  Var<double> Y = tape.constant(to_xt(s.Y));
  Var<double> J = fused ? sigmoid_binary_cross_entropy(Z, Y) : binary_cross_entropy(sigmoid(Z), Y);
  return {J, Z};
}

TEST(Seed004, TapeReproducesTheHandDerivedGradients) {
  for (std::uint64_t seed : {1u, 2u, 3u})
    for (bool fused : {false, true}) {
      const Seed004 s(seed);
      const Reference ref = hand_derived(s);
      std::vector<Parameter<double>> W, b;
      for (std::size_t i = 0; i < 3; ++i) {
        W.emplace_back(to_xt(s.W[i]), "W" + std::to_string(i + 1));
        b.emplace_back(to_xt(s.b[i]), "b" + std::to_string(i + 1));
      }
      Tape<double> tape;
      auto [J, Z3] = record(tape, s, W, b, fused);
      tape.backward(J);
      SCOPED_TRACE(std::string("seed ") + std::to_string(seed) + (fused ? " fused" : " unfused"));
      EXPECT_NEAR(J.item(), ref.J, 1e-12);
      // The tape's Z3 adjoint is the seed's dZ3 = A3 − Y, over m.
      Mat dz3 = ref.dZ3;
      for (auto& v : dz3[0]) v /= double(Seed004::kM);
      expect_near(Z3.grad(), dz3, 1e-12, "dZ3/m");
      for (std::size_t i = 0; i < 3; ++i) {
        expect_near(W[i].grad(), ref.dW[i], 1e-12, W[i].name().c_str());
        expect_near(b[i].grad(), ref.db[i], 1e-12, b[i].name().c_str());
      }
    }
}

TEST(Seed004, GradientDescentStepsLowerTheCost) {
  // The seed trains this net by plain gradient descent; a few steps with the tape's gradients
  // lower J monotonically at a small learning rate.
  const Seed004 s(7);
  std::vector<Parameter<double>> W, b;
  for (std::size_t i = 0; i < 3; ++i) {
    W.emplace_back(to_xt(s.W[i]));
    b.emplace_back(to_xt(s.b[i]));
  }
  Tape<double> tape;
  double last = INFINITY;
  for (int step = 0; step < 20; ++step) {
    tape.clear();
    for (auto* ps : {&W, &b})
      for (auto& p : *ps) p.zero_grad();
    auto J = record(tape, s, W, b, false).first;
    tape.backward(J);
    EXPECT_LT(J.item(), last) << "step " << step;
    last = J.item();
    for (auto* ps : {&W, &b})
      for (auto& p : *ps)
        for (std::size_t k = 0; k < p.size(); ++k) p.data()[k] -= 0.1 * p.grad_data()[k];
  }
}

}  // namespace
