// Tests for ops/wengert/ops/losses.hpp: softmax cross-entropy (class indices and target
// distributions), binary cross-entropy with logits and on probabilities, mean squared error —
// forward in closed form, gradients by finite differences and in closed form, extreme logits
// (±1e4, one huge logit per row), NaN and −inf logits, label validation, constants, fan-out,
// shape errors, float32, replay without allocation; and the one-sided exp guard the
// cross-entropies use (detail::safe_exp_nonpos) against the two-sided one.
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/losses.hpp>

#include <wengert/gradcheck.hpp>
#include <wengert/ops/elementwise.hpp>
#include <wengert/ops/matmul.hpp>

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "alloc_counter.hpp"
#include "nn_test_util.hpp"
#include "op_test.hpp"

using namespace wengert;
using nntest::all_close;
using nntest::random_array;

namespace {

std::vector<std::int32_t> random_labels(std::size_t m, std::size_t c, std::mt19937_64& rng) {
  std::vector<std::int32_t> l(m);
  std::uniform_int_distribution<std::int32_t> d(0, std::int32_t(c) - 1);
  for (auto& v : l) v = d(rng);
  return l;
}

// Independent references, in long double, straight from the definitions.
long double ref_lse(const xt::xarray<double>& z, std::size_t r) {
  const std::size_t c = z.shape(1);
  long double m = -INFINITY, s = 0;
  for (std::size_t j = 0; j < c; ++j) m = std::max<long double>(m, z(r, j));
  for (std::size_t j = 0; j < c; ++j) s += std::exp((long double)z(r, j) - m);
  return m + std::log(s);
}

double ref_ce_labels(const xt::xarray<double>& z, const std::vector<std::int32_t>& labels) {
  long double L = 0;
  for (std::size_t r = 0; r < z.shape(0); ++r) L += ref_lse(z, r) - z(r, labels[r]);
  return double(L / z.shape(0));
}

// (softmax − onehot)/m
xt::xarray<double> ref_ce_labels_grad(const xt::xarray<double>& z,
                                      const std::vector<std::int32_t>& labels) {
  const std::size_t m = z.shape(0), c = z.shape(1);
  xt::xarray<double> g = xt::xarray<double>::from_shape({m, c});
  for (std::size_t r = 0; r < m; ++r) {
    const long double lse = ref_lse(z, r);
    for (std::size_t j = 0; j < c; ++j)
      g(r, j) = double(
          (std::exp((long double)z(r, j) - lse) - (long double)(j == std::size_t(labels[r]))) / m);
  }
  return g;
}

double ref_ce_probs(const xt::xarray<double>& z, const xt::xarray<double>& y) {
  long double L = 0;
  for (std::size_t r = 0; r < z.shape(0); ++r) {
    const long double lse = ref_lse(z, r);
    for (std::size_t j = 0; j < z.shape(1); ++j) L -= y(r, j) * ((long double)z(r, j) - lse);
  }
  return double(L / z.shape(0));
}

long double ref_sigmoid(long double z) { return 1.0L / (1.0L + std::exp(-z)); }

double ref_sigmoid_bce(const xt::xarray<double>& z, const xt::xarray<double>& y) {
  long double L = 0;
  for (std::size_t i = 0; i < z.size(); ++i) {
    const long double zi = z.data()[i], yi = y.data()[i];
    // −[y log σ(z) + (1 − y) log(1 − σ(z))], with log σ(z) = −log1p(e^(−z)) and
    // log(1 − σ(z)) = −z − log1p(e^(−z)): moderate z only.
    L += yi * std::log1p(std::exp(-zi)) + (1 - yi) * (zi + std::log1p(std::exp(-zi)));
  }
  return double(L / z.size());
}

}  // namespace

// ---- softmax cross-entropy with class indices ------------------------------------------------

TEST(SoftmaxCrossEntropy, ForwardMatchesClosedForm) {
  Tape<double> tape;
  auto z = tape.constant(xt::xarray<double>{{1, 2, 3}, {1, 1, 1}});
  const std::vector<std::int32_t> labels{2, 0};
  auto L = softmax_cross_entropy(z, labels);
  EXPECT_EQ(L.shape(), Shape{});
  EXPECT_STREQ(L.op_name(), "softmax_cross_entropy");
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(L.item(), ((lse - 3) + std::log(3.0)) / 2, 1e-15);
}

TEST(SoftmaxCrossEntropy, LabelContainersAndPointerAgree) {
  std::mt19937_64 rng(31);
  auto Z = random_array({4, 5}, rng, -3, 3);
  Tape<double> tape;
  auto z = tape.constant(Z);
  const std::vector<std::int32_t> v{4, 0, 2, 2};
  const std::array<std::int32_t, 4> a{4, 0, 2, 2};
  const xt::xtensor<std::int32_t, 1> x{4, 0, 2, 2};
  const double want = ref_ce_labels(Z, v);
  EXPECT_NEAR(softmax_cross_entropy(z, v).item(), want, 1e-15);
  EXPECT_NEAR(softmax_cross_entropy(z, a).item(), want, 1e-15);
  EXPECT_NEAR(softmax_cross_entropy(z, x).item(), want, 1e-15);
  EXPECT_NEAR(softmax_cross_entropy(z, v.data(), v.size()).item(), want, 1e-15);
}

// int64 class indices (torch's convention) give exactly what int32 ones give, forward and
// backward, by pointer and by container; a label beyond int32's range is reported as it is.
TEST(SoftmaxCrossEntropy, Int64LabelsMatchInt32Labels) {
  std::mt19937_64 rng(37);
  auto Z = random_array({6, 7}, rng, -3, 3);
  const std::vector<std::int32_t> l32{6, 0, 3, 3, 1, 5};
  const std::vector<std::int64_t> l64(l32.begin(), l32.end());
  const xt::xtensor<std::int64_t, 1> x64{6, 0, 3, 3, 1, 5};
  Tape<double> tape;
  auto z32 = tape.variable(Z);
  auto z64 = tape.variable(Z);
  auto L32 = softmax_cross_entropy(z32, l32);
  auto L64 = softmax_cross_entropy(z64, l64);
  EXPECT_EQ(L64.item(), L32.item());
  EXPECT_EQ(softmax_cross_entropy(z64, x64).item(), L32.item());
  EXPECT_EQ(softmax_cross_entropy(z64, l64.data(), l64.size()).item(), L32.item());
  tape.backward(L32 + L64);
  for (std::size_t i = 0; i < z32.size(); ++i) EXPECT_EQ(z64.grad_data()[i], z32.grad_data()[i]);
  EXPECT_TRUE(all_close(z64.grad(), ref_ce_labels_grad(Z, l32), 1e-14, 1e-16));
  const std::size_t before = tape.size();
  const std::vector<std::int64_t> huge{0, 1, 2, std::int64_t(1) << 40, 3, 4};
  EXPECT_EQ(nntest::message_of<ValueError>([&] { softmax_cross_entropy(z64, huge); }),
            "softmax_cross_entropy: label 1099511627776 in row 3 is outside [0, 7)");
  EXPECT_EQ(tape.size(), before);
}

TEST(SoftmaxCrossEntropy, GradcheckOnRandomShapes) {
  std::mt19937_64 rng(32);
  const std::vector<std::pair<std::size_t, std::size_t>> sizes = {{1, 1}, {1, 6},  {5, 1},
                                                                  {4, 3}, {7, 10}, {2, 33}};
  for (auto [m, c] : sizes) {
    const auto labels = random_labels(m, c, rng);
    auto r = gradcheck(
        [&labels](const std::vector<Var<double>>& v) {
          return softmax_cross_entropy(v[0], labels);
        },
        {random_array({m, c}, rng, -3, 3)});
    EXPECT_TRUE(r.ok) << m << "x" << c << ": " << r.message;
  }
}

TEST(SoftmaxCrossEntropy, GradientIsSoftmaxMinusOnehotOverM) {
  std::mt19937_64 rng(33);
  for (auto [m, c] : {std::pair<std::size_t, std::size_t>{6, 4}, {3, 17}, {1, 40}}) {
    auto Z = random_array({m, c}, rng, -4, 4);
    const auto labels = random_labels(m, c, rng);
    Tape<double> tape;
    auto z = tape.variable(Z);
    auto L = softmax_cross_entropy(z, labels);
    EXPECT_NEAR(L.item(), ref_ce_labels(Z, labels), 1e-14);
    tape.backward(L, xt::xarray<double>(2.5));  // an upstream adjoint G = 2.5
    EXPECT_TRUE(all_close(z.grad(), 2.5 * ref_ce_labels_grad(Z, labels), 1e-13, 1e-16));
  }
}

TEST(SoftmaxCrossEntropy, LabelsAreKeptByTheOpNotByTheCaller) {
  std::mt19937_64 rng(34);
  auto Z = random_array({3, 4}, rng);
  std::vector<std::int32_t> labels{1, 3, 0};
  const auto original = labels;
  Tape<double> tape;
  auto z = tape.variable(Z);
  auto L = softmax_cross_entropy(z, labels);
  labels = {0, 0, 0};  // overwritten (or freed) before backward
  tape.backward(L);
  EXPECT_TRUE(all_close(z.grad(), ref_ce_labels_grad(Z, original), 1e-14, 1e-16));
}

TEST(SoftmaxCrossEntropy, LabelOutsideTheClassesThrowsValueErrorNamingRowAndValue) {
  Tape<double> tape;
  auto z = tape.variable(xt::xarray<double>::from_shape({5, 10}));
  const std::size_t before = tape.size();
  EXPECT_EQ(nntest::message_of<ValueError>([&] {
              softmax_cross_entropy(z, std::vector<std::int32_t>{0, 1, 2, 12, 3});
            }),
            "softmax_cross_entropy: label 12 in row 3 is outside [0, 10)");
  EXPECT_EQ(nntest::message_of<ValueError>([&] {
              softmax_cross_entropy(z, std::vector<std::int32_t>{-1, 1, 2, 3, 4});
            }),
            "softmax_cross_entropy: label -1 in row 0 is outside [0, 10)");
  EXPECT_EQ(nntest::message_of<ValueError>([&] {
              softmax_cross_entropy(z, std::vector<std::int32_t>{0, 1, 2, 3, 10});
            }),
            "softmax_cross_entropy: label 10 in row 4 is outside [0, 10)");
  EXPECT_EQ(tape.size(), before);  // nothing recorded
}

TEST(SoftmaxCrossEntropy, ShapeAndEmptyErrors) {
  Tape<double> tape;
  auto z = tape.variable(xt::xarray<double>::from_shape({4, 3}));
  EXPECT_EQ(nntest::message_of<ShapeError>([&] {
              softmax_cross_entropy(z, std::vector<std::int32_t>{0, 1, 2, 0, 1});
            }),
            "softmax_cross_entropy: logits is [4,3] but labels has 5 entries: expected one class "
            "index per row (4)");
  auto v = tape.variable(xt::xarray<double>::from_shape({3}));
  EXPECT_EQ(nntest::message_of<ShapeError>([&] {
              softmax_cross_entropy(v, std::vector<std::int32_t>{0, 1, 2});
            }),
            "softmax_cross_entropy: logits is [3]: expected 2-D [m,c], one row of class scores "
            "per example");
  auto e = tape.variable(xt::xarray<double>::from_shape({0, 3}));
  EXPECT_EQ(nntest::message_of<ValueError>(
                [&] { softmax_cross_entropy(e, std::vector<std::int32_t>{}); }),
            "softmax_cross_entropy: logits is [0,3], which has no elements: the mean of an "
            "empty loss is undefined");
  auto t = tape.variable(xt::xarray<double>::from_shape({4, 2}));
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { softmax_cross_entropy(z, t); }),
            "softmax_cross_entropy: logits is [4,3] but targets is [4,2]: target distributions "
            "must have the logits' shape");
}

TEST(SoftmaxCrossEntropy, ConstantLogitsStayGradientFree) {
  Tape<double> tape;
  auto L = softmax_cross_entropy(tape.constant(xt::xarray<double>{{1, 2}, {3, 4}}),
                                 std::vector<std::int32_t>{0, 1});
  EXPECT_FALSE(L.requires_grad());
  // Constant targets with variable logits: the targets get no gradient.
  auto z = tape.variable(xt::xarray<double>{{1, 2}, {3, 4}});
  auto y = tape.constant(xt::xarray<double>{{0.5, 0.5}, {1, 0}});
  tape.backward(softmax_cross_entropy(z, y));
  EXPECT_THROW(y.grad(), UsageError);
}

TEST(SoftmaxCrossEntropy, FanOut) {
  // The logits feed two losses and a matmul; the two loss forms are summed.
  std::mt19937_64 rng(35);
  const std::vector<std::int32_t> labels{2, 0, 1};
  auto r = gradcheck(
      [&labels](const std::vector<Var<double>>& v) {
        auto z = matmul(v[0], v[1]);
        return softmax_cross_entropy(z, labels) + softmax_cross_entropy(z, v[2]) +
               softmax_cross_entropy(matmul_nt(z, z), labels);
      },
      {random_array({3, 4}, rng), random_array({4, 3}, rng), random_array({3, 3}, rng, 0, 1)});
  EXPECT_TRUE(r.ok) << r.message;
}

template <class T>
class LossesTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LossesTyped, Scalars);

TYPED_TEST(LossesTyped, SoftmaxCrossEntropyExtremeLogits) {
  using T = TypeParam;
  // ±1e4 logits and rows with one huge logit: exact losses, finite exact gradients.
  const xt::xarray<double> Z{{1e4, -1e4, 0}, {1e4, -1e4, 0}, {0, 0, 1e4}, {-1e4, -1e4, -1e4}};
  const std::vector<std::int32_t> labels{0, 1, 1, 2};
  Tape<T> tape;
  auto z = tape.variable(nntest::cast<T>(Z));
  auto L = softmax_cross_entropy(z, labels);
  // Row losses: 0, 2e4, 1e4, log 3.
  const double want = (0 + 2e4 + 1e4 + std::log(3.0)) / 4;
  EXPECT_TRUE(std::isfinite(double(L.item())));
  EXPECT_NEAR(L.item(), want, want * (std::is_same_v<T, float> ? 1e-6 : 1e-14));
  tape.backward(L);
  const xt::xarray<double> g = z.grad();
  for (double v : g) EXPECT_TRUE(std::isfinite(v));
  const xt::xarray<double> want_g =
      xt::xarray<double>{{0, 0, 0}, {1, -1, 0}, {0, -1, 1}, {1.0 / 3, 1.0 / 3, -2.0 / 3}} / 4.0;
  EXPECT_TRUE(all_close(g, want_g, 1e-6, 1e-7));
  // The same through target distributions (one-hot rows).
  const xt::xarray<double> Y{{1, 0, 0}, {0, 1, 0}, {0, 1, 0}, {0, 0, 1}};
  auto z2 = tape.variable(nntest::cast<T>(Z));
  auto L2 = softmax_cross_entropy(z2, tape.constant(nntest::cast<T>(Y)));
  EXPECT_NEAR(L2.item(), want, want * (std::is_same_v<T, float> ? 1e-6 : 1e-14));
  tape.backward(L2);
  EXPECT_TRUE(all_close(z2.grad(), want_g, 1e-6, 1e-7));
}

// A NaN logit gives a NaN loss and a NaN gradient row, whatever its position (the first batch,
// which seeds the row max, or the tail); a −inf logit is a class of probability 0: a finite loss
// and a zero gradient. Rows are independent: the other rows' gradients stay finite. c = 37 has
// full batches and a tail for every SIMD width.
TYPED_TEST(LossesTyped, SoftmaxCrossEntropyNanAndMinusInfLogits) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  constexpr std::size_t m = 3, c = 37;
  for (std::size_t at : {std::size_t(1), c - 1}) {
    std::mt19937_64 rng(50 + at);
    xt::xarray<T> Z = nntest::cast<T>(random_array({m, c}, rng, -3, 3));
    const std::vector<std::int32_t> labels{2, 3, 4};
    Z(1, at) = nan;
    Z(0, at) = -inf;
    xt::xarray<T> Y = xt::zeros<T>({m, c});
    for (std::size_t r = 0; r < m; ++r) Y(r, std::size_t(labels[r])) = T(1);
    Tape<T> tape;
    auto z = tape.variable(Z);
    auto z2 = tape.variable(Z);
    auto L = softmax_cross_entropy(z, labels);
    auto L2 = softmax_cross_entropy(z2, tape.constant(Y));
    EXPECT_TRUE(std::isnan(double(L.item()))) << at;
    EXPECT_TRUE(std::isnan(double(L2.item()))) << at;
    // (each sweep zeroes the tape's other adjoints: read z's before sweeping L2)
    tape.backward(L);
    const xt::xarray<T> g1 = z.grad();
    tape.backward(L2);
    const xt::xarray<T> g2 = z2.grad();
    for (const xt::xarray<T>* g : {&g1, &g2}) {
      for (std::size_t j = 0; j < c; ++j) {
        EXPECT_TRUE(std::isnan(double((*g)(1, j)))) << at << " " << j;
        EXPECT_TRUE(std::isfinite(double((*g)(0, j)))) << at << " " << j;
        EXPECT_TRUE(std::isfinite(double((*g)(2, j)))) << at << " " << j;
      }
      EXPECT_EQ((*g)(0, at), T(0)) << at;
    }
  }
  // Without the NaN row, a −inf logit leaves the loss finite.
  Tape<T> tape;
  xt::xarray<T> Z{{T(-inf), T(0), T(1)}, {T(2), T(-inf), T(-inf)}};
  auto z = tape.variable(Z);
  auto L = softmax_cross_entropy(z, std::vector<std::int32_t>{1, 0});
  EXPECT_TRUE(std::isfinite(double(L.item())));
  EXPECT_NEAR(double(L.item()), std::log1p(std::exp(1.0)) / 2, 1e-6);
}

TYPED_TEST(LossesTyped, SigmoidBinaryCrossEntropyNanLogit) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  constexpr std::size_t n = 37;
  for (std::size_t at : {std::size_t(1), n - 1}) {
    xt::xarray<T> Z = xt::zeros<T>({n});
    Z(at) = nan;
    Tape<T> tape;
    auto z = tape.variable(Z);
    auto L = sigmoid_binary_cross_entropy(z, tape.constant(xt::xarray<T>(xt::zeros<T>({n}))));
    EXPECT_TRUE(std::isnan(double(L.item()))) << at;
    tape.backward(L);
    for (std::size_t j = 0; j < n; ++j)
      EXPECT_EQ(std::isnan(double(z.grad()(j))), j == at) << at << " " << j;
  }
}

// detail::safe_exp_nonpos (only the lower clamp) is safe_exp bit for bit wherever x ≤ 0 or NaN:
// zeros, subnormals, the edges where exp underflows and where the clamp starts, −inf, NaN.
template <class T>
void expect_nonpos_exp_matches_two_sided() {
  using B = detail::Batch<T>;
  const T inf = std::numeric_limits<T>::infinity();
  std::vector<T> xs{T(0),
                    -T(0),
                    -std::numeric_limits<T>::denorm_min(),
                    -std::numeric_limits<T>::min(),
                    T(-1e-30),
                    T(-0.5),
                    T(-1),
                    T(-20),
                    T(-87.3),
                    T(-88.37),
                    T(-88.38),
                    T(-89),
                    T(-103.97),
                    T(-104),
                    T(-104.03),
                    T(-708.3),
                    T(-708.4),
                    T(-745),
                    T(-746),
                    T(-746.2),
                    T(-1e19),
                    -std::numeric_limits<T>::max(),
                    -inf,
                    std::numeric_limits<T>::quiet_NaN()};
  std::mt19937_64 rng(53);
  std::uniform_real_distribution<double> d(-800, 0);
  for (int i = 0; i < 1000; ++i) xs.push_back(T(d(rng)));
  while (xs.size() % B::size) xs.push_back(T(-1));
  for (std::size_t i = 0; i < xs.size(); i += B::size) {
    const B x = B::load_unaligned(xs.data() + i);
    alignas(64) T one[B::size], two[B::size];
    detail::safe_exp_nonpos(x).store_aligned(one);
    detail::safe_exp(x).store_aligned(two);
    for (std::size_t k = 0; k < B::size; ++k) {
      const T v = xs[i + k];
      if (std::isnan(v)) {
        EXPECT_TRUE(std::isnan(one[k]));
        continue;
      }
      EXPECT_EQ(std::memcmp(&one[k], &two[k], sizeof(T)), 0)
          << v << ": " << one[k] << " vs " << two[k];
      EXPECT_NEAR(double(one[k]), std::exp(double(v)), 1e-6 * std::exp(double(v)) + 1e-37) << v;
    }
  }
}

TEST(Losses, OneSidedExpGuardMatchesTheTwoSidedOne) {
  expect_nonpos_exp_matches_two_sided<float>();
  expect_nonpos_exp_matches_two_sided<double>();
}

// ---- softmax cross-entropy with target distributions ----------------------------------------

TEST(SoftmaxCrossEntropyProbs, EqualsTheLabelFormForOneHotTargets) {
  std::mt19937_64 rng(36);
  auto Z = random_array({6, 5}, rng, -3, 3);
  const auto labels = random_labels(6, 5, rng);
  xt::xarray<double> Y = xt::zeros<double>({6, 5});
  for (std::size_t r = 0; r < 6; ++r) Y(r, labels[r]) = 1;
  Tape<double> tape;
  auto z1 = tape.variable(Z), z2 = tape.variable(Z);
  auto L1 = softmax_cross_entropy(z1, labels);
  auto L2 = softmax_cross_entropy(z2, tape.constant(Y));
  EXPECT_NEAR(L1.item(), L2.item(), 1e-15);
  tape.backward(L1);
  const xt::xarray<double> g1 = z1.grad();  // the next sweep re-zeroes every tape adjoint
  tape.backward(L2);
  EXPECT_TRUE(all_close(g1, z2.grad(), 1e-14, 1e-16));
}

TEST(SoftmaxCrossEntropyProbs, GradcheckBothInputsAndClosedForm) {
  std::mt19937_64 rng(37);
  for (auto [m, c] : {std::pair<std::size_t, std::size_t>{1, 1}, {1, 5}, {4, 1}, {5, 7}, {3, 20}}) {
    // Targets that are not normalised (soft, smoothed or masked rows): the gradient is exact.
    auto Z = random_array({m, c}, rng, -3, 3), Y = random_array({m, c}, rng, 0, 1);
    auto r = gradcheck(
        [](const std::vector<Var<double>>& v) { return softmax_cross_entropy(v[0], v[1]); },
        {Z, Y});
    EXPECT_TRUE(r.ok) << m << "x" << c << ": " << r.message;
    Tape<double> tape;
    auto z = tape.variable(Z), y = tape.variable(Y);
    auto L = softmax_cross_entropy(z, y);
    EXPECT_NEAR(L.item(), ref_ce_probs(Z, Y), 1e-13);
    tape.backward(L);
    // dz = (softmax·Σy − y)/m, dy = −log softmax / m
    xt::xarray<double> dz = xt::xarray<double>::from_shape({m, c}), dy = dz;
    for (std::size_t i = 0; i < m; ++i) {
      double sy = 0;
      for (std::size_t j = 0; j < c; ++j) sy += Y(i, j);
      const double lse = double(ref_lse(Z, i));
      for (std::size_t j = 0; j < c; ++j) {
        dz(i, j) = (std::exp(Z(i, j) - lse) * sy - Y(i, j)) / m;
        dy(i, j) = -(Z(i, j) - lse) / m;
      }
    }
    EXPECT_TRUE(all_close(z.grad(), dz, 1e-13, 1e-15));
    EXPECT_TRUE(all_close(y.grad(), dy, 1e-13, 1e-15));
  }
}

// ---- binary cross-entropy with logits --------------------------------------------------------

TEST(SigmoidBinaryCrossEntropy, ForwardMatchesTheDefinition) {
  std::mt19937_64 rng(38);
  auto Z = random_array({4, 3}, rng, -5, 5), Y = random_array({4, 3}, rng, 0, 1);
  Tape<double> tape;
  auto L = sigmoid_binary_cross_entropy(tape.constant(Z), tape.constant(Y));
  EXPECT_STREQ(L.op_name(), "sigmoid_binary_cross_entropy");
  EXPECT_NEAR(L.item(), ref_sigmoid_bce(Z, Y), 1e-15);
  // A single element: z = 0 gives log 2 whatever y is.
  EXPECT_NEAR(sigmoid_binary_cross_entropy(tape.constant(0.0), tape.constant(0.3)).item(),
              std::log(2.0), 1e-16);
}

TEST(SigmoidBinaryCrossEntropy, GradcheckAndClosedFormOnRandomShapes) {
  std::mt19937_64 rng(39);
  const std::vector<std::vector<std::size_t>> shapes = {{},     {1, 1}, {1, 6},
                                                        {5, 1}, {4, 7}, {2, 3, 4}};
  for (const auto& s : shapes) {
    auto Z = random_array(s, rng, -4, 4), Y = random_array(s, rng, 0, 1);
    auto r = gradcheck(
        [](const std::vector<Var<double>>& v) { return sigmoid_binary_cross_entropy(v[0], v[1]); },
        {Z, Y});
    EXPECT_TRUE(r.ok) << Shape(s).str() << ": " << r.message;
    Tape<double> tape;
    auto z = tape.variable(Z), y = tape.variable(Y);
    tape.backward(sigmoid_binary_cross_entropy(z, y));
    const double n = double(Z.size());
    xt::xarray<double> dz = Z, dy = Z;
    for (std::size_t i = 0; i < Z.size(); ++i) {
      dz.data()[i] = double((ref_sigmoid(Z.data()[i]) - Y.data()[i]) / n);  // (σ(z) − y)/n
      dy.data()[i] = -Z.data()[i] / n;                                      // −z/n
    }
    EXPECT_TRUE(all_close(z.grad(), dz, 1e-14, 1e-16)) << Shape(s).str();
    EXPECT_TRUE(all_close(y.grad(), dy, 1e-14, 1e-16)) << Shape(s).str();
  }
}

TYPED_TEST(LossesTyped, SigmoidBinaryCrossEntropyExtremeLogits) {
  using T = TypeParam;
  const xt::xarray<double> Z{1e4, 1e4, -1e4, -1e4, 0};
  const xt::xarray<double> Y{1, 0, 0, 1, 1};
  Tape<T> tape;
  auto z = tape.variable(nntest::cast<T>(Z));
  auto L = sigmoid_binary_cross_entropy(z, tape.constant(nntest::cast<T>(Y)));
  // Per element: 0, 1e4, 0, 1e4, log 2.
  const double want = (2e4 + std::log(2.0)) / 5;
  EXPECT_NEAR(L.item(), want, want * (std::is_same_v<T, float> ? 1e-6 : 1e-15));
  tape.backward(L);
  const xt::xarray<double> want_g = xt::xarray<double>{0, 1, 0, -1, -0.5} / 5.0;
  EXPECT_TRUE(all_close(z.grad(), want_g, 1e-6, 0));
}

// ---- binary cross-entropy on probabilities ---------------------------------------------------

TEST(BinaryCrossEntropy, ForwardMatchesTheDefinitionAndTheLogitForm) {
  std::mt19937_64 rng(40);
  auto Z = random_array({3, 5}, rng, -4, 4), Y = random_array({3, 5}, rng, 0, 1);
  xt::xarray<double> P = Z;
  long double want = 0;
  for (std::size_t i = 0; i < Z.size(); ++i) {
    P.data()[i] = double(ref_sigmoid(Z.data()[i]));
    want -= Y.data()[i] * std::log((long double)P.data()[i]) +
            (1 - Y.data()[i]) * std::log(1 - (long double)P.data()[i]);
  }
  Tape<double> tape;
  auto L = binary_cross_entropy(tape.constant(P), tape.constant(Y));
  EXPECT_STREQ(L.op_name(), "binary_cross_entropy");
  EXPECT_NEAR(L.item(), double(want / 15), 1e-15);
  EXPECT_NEAR(L.item(), sigmoid_binary_cross_entropy(tape.constant(Z), tape.constant(Y)).item(),
              1e-14);
}

TEST(BinaryCrossEntropy, GradcheckAndClosedForm) {
  std::mt19937_64 rng(41);
  for (const auto& s : std::vector<std::vector<std::size_t>>{{}, {1, 1}, {1, 4}, {6, 1}, {3, 5}}) {
    auto P = random_array(s, rng, 0.05, 0.95), Y = random_array(s, rng, 0, 1);
    auto r = gradcheck(
        [](const std::vector<Var<double>>& v) { return binary_cross_entropy(v[0], v[1]); }, {P, Y});
    EXPECT_TRUE(r.ok) << Shape(s).str() << ": " << r.message;
    Tape<double> tape;
    auto p = tape.variable(P), y = tape.variable(Y);
    tape.backward(binary_cross_entropy(p, y));
    const double n = double(P.size());
    xt::xarray<double> dp = P, dy = P;
    for (std::size_t i = 0; i < P.size(); ++i) {
      const double pi = P.data()[i], yi = Y.data()[i];
      dp.data()[i] = (pi - yi) / (pi * (1 - pi)) / n;        // −y/p + (1 − y)/(1 − p)
      dy.data()[i] = (std::log(1 - pi) - std::log(pi)) / n;  // −log p + log(1 − p)
    }
    EXPECT_TRUE(all_close(p.grad(), dp, 1e-13, 1e-16));
    EXPECT_TRUE(all_close(y.grad(), dy, 1e-13, 1e-16));
  }
}

TYPED_TEST(LossesTyped, BinaryCrossEntropyClampsSaturatedProbabilities) {
  using T = TypeParam;
  const T eps = binary_cross_entropy_eps<T>();
  EXPECT_EQ(eps, (std::is_same_v<T, float> ? T(1e-7) : T(1e-12)));
  // p exactly 0 or 1: finite loss −log ε where wrong, and a large finite gradient that pushes
  // back (evaluated at the clamped p̂), not 0 and not inf.
  Tape<T> tape;
  auto p = tape.variable(xt::xarray<T>{0, 1, 0, 1});
  auto y = tape.constant(xt::xarray<T>{1, 0, 0, 1});
  auto L = binary_cross_entropy(p, y);
  EXPECT_TRUE(std::isfinite(double(L.item())));
  const double lo = double(eps), hi = double(T(1) - eps);
  const double want = (-std::log(lo) - std::log(1 - hi) - std::log(1 - lo) - std::log(hi)) / 4;
  EXPECT_NEAR(L.item(), want, want * 1e-5);
  tape.backward(L);
  const xt::xarray<double> g = p.grad();
  for (double v : g) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(g(0), (lo - 1) / (lo * (1 - lo)) / 4, std::abs(g(0)) * 1e-5);  // pushes p up
  EXPECT_NEAR(g(1), hi / (hi * (1 - hi)) / 4, std::abs(g(1)) * 1e-5);        // pushes p down
  EXPECT_LT(g(0), 0);
  EXPECT_GT(g(1), 0);
  EXPECT_NEAR(g(2), lo / (lo * (1 - lo)) / 4, 1e-3);
  // A NaN probability stays NaN (the clamp does not hide it).
  auto Ln = binary_cross_entropy(
      tape.constant(xt::xarray<T>{T(0.5), std::numeric_limits<T>::quiet_NaN()}),
      tape.constant(xt::xarray<T>{1, 1}));
  EXPECT_TRUE(std::isnan(double(Ln.item())));
}

// ---- mse -------------------------------------------------------------------------------------

TEST(Mse, MiniFlowExample) {
  // MiniFlow's MSE example: y = [1, 2, 3], a = [4.5, 5, 10] → 23.4166666667.
  Tape<double> tape;
  auto L = mse(tape.constant(xt::xarray<double>{4.5, 5, 10}),
               tape.constant(xt::xarray<double>{1, 2, 3}));
  EXPECT_STREQ(L.op_name(), "mse");
  EXPECT_NEAR(L.item(), (3.5 * 3.5 + 3 * 3 + 7 * 7) / 3.0, 1e-14);
  EXPECT_NEAR(L.item(), 23.4166666667, 1e-9);
}

TEST(Mse, GradcheckAndClosedForm) {
  std::mt19937_64 rng(42);
  for (const auto& s :
       std::vector<std::vector<std::size_t>>{{}, {1, 1}, {1, 5}, {4, 1}, {3, 4}, {2, 2, 3}}) {
    auto P = random_array(s, rng), Tg = random_array(s, rng);
    auto r = gradcheck([](const std::vector<Var<double>>& v) { return mse(v[0], v[1]); }, {P, Tg});
    EXPECT_TRUE(r.ok) << Shape(s).str() << ": " << r.message;
    Tape<double> tape;
    auto p = tape.variable(P), t = tape.variable(Tg);
    tape.backward(mse(p, t));
    xt::xarray<double> d = 2.0 * (P - Tg) / double(P.size());
    EXPECT_TRUE(all_close(p.grad(), d, 1e-14, 1e-16));
    EXPECT_TRUE(all_close(t.grad(), xt::xarray<double>(-d), 1e-14, 1e-16));
  }
}

TEST(Mse, FanOutAndConstantTarget) {
  std::mt19937_64 rng(43);
  auto r = gradcheck(
      [](const std::vector<Var<double>>& v) { return mse(v[0], v[0] * v[0]) + mse(v[0], v[1]); },
      {random_array({2, 3}, rng), random_array({2, 3}, rng)});
  EXPECT_TRUE(r.ok) << r.message;
  Tape<double> tape;
  auto p = tape.variable(xt::xarray<double>{1, 2});
  auto t = tape.constant(xt::xarray<double>{0, 0});
  tape.backward(mse(p, t));
  EXPECT_EQ(xt::xarray<double>(p.grad()), (xt::xarray<double>{1, 2}));
  EXPECT_THROW(t.grad(), UsageError);
}

TEST(Losses, ElementwiseLossShapeAndEmptyErrors) {
  Tape<double> tape;
  auto a = tape.variable(xt::xarray<double>::from_shape({3, 4}));
  auto b = tape.variable(xt::xarray<double>::from_shape({4, 3}));
  auto e = tape.variable(xt::xarray<double>::from_shape({0}));
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { mse(a, b); }),
            "mse: prediction is [3,4] but target is [4,3]: they must have the same shape");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { sigmoid_binary_cross_entropy(a, b); }),
            "sigmoid_binary_cross_entropy: logits is [3,4] but targets is [4,3]: they must have "
            "the same shape");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { binary_cross_entropy(a, b); }),
            "binary_cross_entropy: probabilities is [3,4] but targets is [4,3]: they must have "
            "the same shape");
  EXPECT_EQ(nntest::message_of<ValueError>([&] { mse(e, e); }),
            "mse: prediction is [0], which has no elements: the mean of an empty loss is "
            "undefined");
}

TEST(Losses, Float32MatchesDouble) {
  std::mt19937_64 rng(44);
  auto Z = random_array({9, 21}, rng, -5, 5), Y = random_array({9, 21}, rng, 0, 1);
  const auto labels = random_labels(9, 21, rng);
  Tape<float> tape;
  auto z = tape.variable(nntest::cast<float>(Z));
  auto L = softmax_cross_entropy(z, labels);
  EXPECT_NEAR(L.item(), ref_ce_labels(Z, labels), 1e-5);
  tape.backward(L);
  EXPECT_TRUE(all_close(z.grad(), ref_ce_labels_grad(Z, labels), 1e-4, 1e-7));
  auto Lb = sigmoid_binary_cross_entropy(z, tape.constant(nntest::cast<float>(Y)));
  EXPECT_NEAR(Lb.item(), ref_sigmoid_bce(Z, Y), 1e-5);
  auto Lm = mse(z, tape.constant(nntest::cast<float>(Y)));
  long double want = 0;
  for (std::size_t i = 0; i < Z.size(); ++i)
    want += (Z.data()[i] - Y.data()[i]) * (Z.data()[i] - Y.data()[i]);
  EXPECT_NEAR(Lm.item(), double(want / Z.size()), 1e-5 * double(want / Z.size()));
}

TEST(Losses, ReplayAllocatesNothing) {
  std::mt19937_64 rng(45);
  const xt::xarray<float> X = nntest::cast<float>(random_array({16, 8}, rng));
  const xt::xarray<float> Y = nntest::cast<float>(random_array({16, 3}, rng, 0, 1));
  const auto labels = random_labels(16, 3, rng);
  Parameter<float> W(nntest::cast<float>(random_array({8, 3}, rng)));
  Tape<float> tape;
  auto step = [&] {
    tape.clear();
    auto z = matmul(tape.constant_view(X.data(), Shape{16, 8}), tape.param(W));
    auto y = tape.constant_view(Y.data(), Shape{16, 3});
    auto L = softmax_cross_entropy(z, labels.data(), labels.size()) + softmax_cross_entropy(z, y) +
             sigmoid_binary_cross_entropy(z, y) + binary_cross_entropy(y, y) + mse(z, y);
    tape.backward(L);
    return L.item();
  };
  const float first = step();
  wengert::testing::AllocCounter counter;
  float again = 0;
  for (int i = 0; i < 10; ++i) again = step();
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_EQ(first, again);
}

// ---- the shared op-test helper (tests/support/op_test.hpp) --------------------------------------

namespace {

xt::xarray<double> scalar_array(double v) {
  xt::xarray<double> r = xt::xarray<double>::from_shape(std::vector<std::size_t>{});
  r() = v;
  return r;
}

using wengert::testing::Domain;
using wengert::testing::op_test;
using wengert::testing::ShapeCase;
using wengert::testing::Values;
namespace op_shapes = wengert::testing::shapes;

const Domain kProbability{0.02, 0.98};  // inside [0, 1] with room for the finite differences

}  // namespace

TEST(SoftmaxCrossEntropy, ThroughOpTest) {
  // The labels are not a tensor input: the op captures them, and prepare() draws one per row
  // for each case's shape before anything is recorded (the replay reads them in place).
  std::vector<std::int32_t> labels;
  auto family =
      op_shapes::fixed({{{1, 1}}, {{1, 6}}, {{5, 1}}, {{4, 3}}, {{7, 10}}, {{2, 33}}, {{3, 17}}});
  family.random = [](std::mt19937_64& rng) {
    std::uniform_int_distribution<std::size_t> m(1, 6), c(1, 8);
    const std::size_t rows = m(rng);
    return ShapeCase{{rows, c(rng)}};
  };
  op_test<1>("softmax_cross_entropy",
             [&labels](auto&& z) { return softmax_cross_entropy(z, labels); })
      .shapes(family)
      .bad_shapes({{{5}}, {{}}, {{2, 3, 4}}})
      .domain({-3.0, 3.0})
      .prepare([&labels](const ShapeCase& s, std::mt19937_64& rng) {
        const bool matrix = s[0].size() == 2;
        labels = random_labels(matrix ? s[0][0] : 1, matrix ? s[0][1] : 1, rng);
      })
      .reference([&labels](const Values& v) { return scalar_array(ref_ce_labels(v[0], labels)); })
      .run();
}

TEST(SoftmaxCrossEntropyProbs, ThroughOpTest) {
  op_test<2>("softmax_cross_entropy", [](auto&&... v) { return softmax_cross_entropy(v...); })
      .shapes(op_shapes::same(2, 2, 2, false))
      .domain(0, {-3.0, 3.0})
      .domain(1, {0.0, 1.0})
      .reference([](const Values& v) { return scalar_array(ref_ce_probs(v[0], v[1])); })
      .run();
}

TEST(SigmoidBinaryCrossEntropy, ThroughOpTest) {
  op_test<2>("sigmoid_binary_cross_entropy",
             [](auto&&... v) { return sigmoid_binary_cross_entropy(v...); })
      .shapes(op_shapes::same(2, 0, 4, false))
      .domain(0, {-4.0, 4.0})
      .domain(1, kProbability)
      .reference([](const Values& v) { return scalar_array(ref_sigmoid_bce(v[0], v[1])); })
      .run();
}

TEST(BinaryCrossEntropy, ThroughOpTest) {
  op_test<2>("binary_cross_entropy", [](auto&&... v) { return binary_cross_entropy(v...); })
      .shapes(op_shapes::same(2, 0, 4, false))
      .domain(kProbability)
      .reference([](const Values& v) {
        long double L = 0;
        for (std::size_t i = 0; i < v[0].size(); ++i) {
          const long double p = v[0].data()[i], y = v[1].data()[i];
          L -= y * std::log(p) + (1 - y) * std::log1p(-p);
        }
        return scalar_array(double(L / v[0].size()));
      })
      .run();
}

TEST(Mse, ThroughOpTest) {
  op_test<2>("mse", [](auto&&... v) { return mse(v...); })
      .shapes(op_shapes::same(2, 0, 4, false))
      .reference([](const Values& v) {
        long double L = 0;
        for (std::size_t i = 0; i < v[0].size(); ++i) {
          const long double d = (long double)v[0].data()[i] - v[1].data()[i];
          L += d * d;
        }
        return scalar_array(double(L / v[0].size()));
      })
      .run();
}
