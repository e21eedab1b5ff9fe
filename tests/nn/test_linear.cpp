// Tests for nn/wengert/nn/linear.hpp: initialisation statistics for each scheme, determinism
// for a seed, parameter naming and collection, and (forward) x·W + b against an independent
// loop, with gradients flowing into the layer's Parameters.
#include <wengert/nn/linear.hpp>

#include <wengert/io/batches.hpp>
#include <wengert/nn/optim.hpp>
#include <wengert/nn/serialize.hpp>
#include <wengert/ops/losses.hpp>

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include <xtensor/xarray.hpp>

#include "alloc_counter.hpp"

using namespace wengert;
using nn::Init;

namespace {

struct Stats {
  double mean = 0, var = 0, max_abs = 0, within_1sd = 0;
};

template <class T>
Stats stats(const Parameter<T>& p) {
  Stats s;
  const std::size_t n = p.size();
  for (std::size_t i = 0; i < n; ++i) s.mean += double(p.data()[i]);
  s.mean /= double(n);
  for (std::size_t i = 0; i < n; ++i) {
    double d = double(p.data()[i]) - s.mean;
    s.var += d * d;
    s.max_abs = std::max(s.max_abs, std::abs(double(p.data()[i])));
  }
  s.var /= double(n - 1);
  const double sd = std::sqrt(s.var);
  for (std::size_t i = 0; i < n; ++i)
    if (std::abs(double(p.data()[i]) - s.mean) <= sd) s.within_1sd += 1;
  s.within_1sd /= double(n);
  return s;
}

template <class T>
bool same_values(const Parameter<T>& a, const Parameter<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
class LinearTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LinearTest, Types);

}  // namespace

TYPED_TEST(LinearTest, ShapesNamesAndZeroBias) {
  using T = TypeParam;
  nn::Linear<T> l(5, 3, 42, Init::kXavierUniform, "enc");
  EXPECT_EQ(l.in_features(), 5u);
  EXPECT_EQ(l.out_features(), 3u);
  EXPECT_EQ(l.weight().shape(), (Shape{5, 3}));
  EXPECT_EQ(l.bias().shape(), (Shape{3}));
  EXPECT_EQ(l.weight().name(), "enc.weight");
  EXPECT_EQ(l.bias().name(), "enc.bias");
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(l.bias().data()[i], T(0));
  auto ps = l.parameters();
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0], &l.weight());
  EXPECT_EQ(ps[1], &l.bias());
  EXPECT_THROW(nn::Linear<T>(0, 3, 1), ShapeError);
  EXPECT_THROW(nn::Linear<T>(3, 0, 1), ShapeError);
}

TYPED_TEST(LinearTest, InitIsDeterministicForASeed) {
  using T = TypeParam;
  for (Init s : {Init::kXavierUniform, Init::kXavierNormal, Init::kHeUniform, Init::kHeNormal}) {
    nn::Linear<T> a(20, 30, 7, s), b(20, 30, 7, s), c(20, 30, 8, s);
    EXPECT_TRUE(same_values(a.weight(), b.weight())) << int(s);
    EXPECT_FALSE(same_values(a.weight(), c.weight())) << int(s);
  }
  // Drawing from a shared generator equals drawing from one seeded the same way.
  std::mt19937_64 rng(7);
  nn::Linear<T> d(20, 30, rng);
  EXPECT_TRUE(same_values(d.weight(), nn::Linear<T>(20, 30, 7).weight()));
  // The first draws of mt19937_64(7) are fixed by the standard, so the first weight is too:
  // a = √(6/50), w = a·(2u − 1) with u the top 53 bits of the first draw.
  std::mt19937_64 ref(7);
  const double u = double(ref() >> 11) * 0x1.0p-53;
  EXPECT_EQ(d.weight().data()[0], T(std::sqrt(6.0 / 50.0) * (2 * u - 1)));
}

TYPED_TEST(LinearTest, XavierUniformBoundAndVariance) {
  using T = TypeParam;
  const std::size_t in = 300, out = 200;
  nn::Linear<T> l(in, out, 123, Init::kXavierUniform);
  const double a = std::sqrt(6.0 / double(in + out));
  Stats s = stats(l.weight());
  EXPECT_LE(s.max_abs, a);
  EXPECT_GT(s.max_abs, 0.999 * a);     // the bound is reached, not a smaller one
  EXPECT_NEAR(s.mean, 0.0, 0.01 * a);  // sd of the mean ≈ a/√(3·60000) ≈ 0.0024a
  EXPECT_NEAR(s.var, a * a / 3, 0.02 * a * a / 3);      // U(−a, a) has variance a²/3
  EXPECT_NEAR(s.within_1sd, 1 / std::sqrt(3.0), 0.01);  // uniform: P(|w| ≤ a/√3) = 1/√3
}

TYPED_TEST(LinearTest, HeUniformBound) {
  using T = TypeParam;
  const std::size_t in = 250, out = 240;
  nn::Linear<T> l(in, out, 5, Init::kHeUniform);
  const double a = std::sqrt(6.0 / double(in));
  Stats s = stats(l.weight());
  EXPECT_LE(s.max_abs, a);
  EXPECT_GT(s.max_abs, 0.999 * a);
  EXPECT_NEAR(s.var, 2.0 / double(in), 0.02 * 2.0 / double(in));
}

TYPED_TEST(LinearTest, NormalSchemesHaveTheirStandardDeviation) {
  using T = TypeParam;
  const std::size_t in = 256, out = 256;
  for (auto [scheme, var] : {std::pair{Init::kHeNormal, 2.0 / double(in)},
                             std::pair{Init::kXavierNormal, 2.0 / double(in + out)}}) {
    nn::Linear<T> l(in, out, 99, scheme);
    Stats s = stats(l.weight());
    const double sd = std::sqrt(var);
    EXPECT_NEAR(s.mean, 0.0, 0.02 * sd);
    EXPECT_NEAR(s.var, var, 0.02 * var);
    EXPECT_NEAR(s.within_1sd, 0.6827, 0.01);  // normal, not uniform (which gives 0.577)
    EXPECT_GT(s.max_abs, 3.5 * sd);           // normal tails exist among 65536 draws
  }
}

TYPED_TEST(LinearTest, MlpLayersParametersAndInit) {
  using T = TypeParam;
  nn::MLP<T> m({784, 64, 32, 10}, nn::Activation::kRelu, 2024);
  EXPECT_EQ(m.in_features(), 784u);
  EXPECT_EQ(m.out_features(), 10u);
  ASSERT_EQ(m.layers().size(), 3u);
  auto ps = m.parameters();
  ASSERT_EQ(ps.size(), 6u);
  const char* names[] = {"fc0.weight", "fc0.bias",   "fc1.weight",
                         "fc1.bias",   "fc2.weight", "fc2.bias"};
  const Shape shapes[] = {{784, 64}, {64}, {64, 32}, {32}, {32, 10}, {10}};
  const auto named = m.named_parameters();
  ASSERT_EQ(named.size(), 6u);
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(ps[i]->name(), names[i]);
    EXPECT_EQ(named[i].first, names[i]);  // the module path equals the Parameter's own name
    EXPECT_EQ(named[i].second, ps[i]);
    EXPECT_EQ(ps[i]->shape(), shapes[i]);
  }
  // ReLU defaults to He uniform: every layer within √(6 / fan_in) and reaching it.
  for (auto& l : m.layers()) {
    const double a = std::sqrt(6.0 / double(l.in_features()));
    Stats s = stats(l.weight());
    EXPECT_LE(s.max_abs, a);
    EXPECT_GT(s.max_abs, 0.9 * a);
  }
  // Layers draw from one stream: layer 1 differs from a fresh layer with the same seed.
  nn::MLP<T> again({784, 64, 32, 10}, nn::Activation::kRelu, 2024);
  for (std::size_t i = 0; i < 6; ++i) EXPECT_TRUE(same_values(*ps[i], *again.parameters()[i]));
  nn::Linear<T> fresh(64, 32, 2024, Init::kHeUniform);
  EXPECT_FALSE(same_values(fresh.weight(), m.layers()[1].weight()));
  // tanh defaults to Xavier uniform.
  nn::MLP<T> t({30, 20}, nn::Activation::kTanh, 1);
  EXPECT_LE(stats(t.layers()[0].weight()).max_abs, std::sqrt(6.0 / 50));
  EXPECT_GT(stats(t.layers()[0].weight()).max_abs, 0.9 * std::sqrt(6.0 / 50));
  EXPECT_THROW(nn::MLP<T>({10}, nn::Activation::kTanh, 1), ShapeError);
}

// ---- forward ---------------------------------------------------------------------------------

namespace {

// Deterministic, varied values for test inputs.
template <class T>
xt::xarray<T> filled(std::size_t rows, std::size_t cols, double phase) {
  xt::xarray<T> a = xt::xarray<T>::from_shape({rows, cols});
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) a(i, j) = T(std::sin(phase + 1.3 * i + 0.7 * j));
  return a;
}

template <class T>
double fwd_tol() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

}  // namespace

TYPED_TEST(LinearTest, ForwardIsXWPlusBAndGradientsReachTheParameters) {
  using T = TypeParam;
  const std::size_t m = 4, in = 5, out = 3;
  nn::Linear<T> l(in, out, 3);
  for (std::size_t j = 0; j < out; ++j) l.bias().data()[j] = T(0.25 * (j + 1));
  const xt::xarray<T> xv = filled<T>(m, in, 0.1);
  const xt::xarray<T> seed = filled<T>(m, out, 2.0);
  const T* W = l.weight().data();
  const T* b = l.bias().data();

  Tape<T> tape;
  Var<T> x = tape.variable(xv);
  Var<T> y = l.forward(tape, x);
  ASSERT_EQ(y.shape(), (Shape{m, out}));
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < out; ++j) {
      double ref = double(b[j]);
      for (std::size_t k = 0; k < in; ++k) ref += double(xv(i, k)) * double(W[k * out + j]);
      EXPECT_NEAR(y.value()(i, j), ref, fwd_tol<T>()) << i << "," << j;
    }

  // VJP with seed S: dW = xᵀS, db = column sums of S, dx = S·Wᵀ.
  tape.backward(y, seed);
  for (std::size_t k = 0; k < in; ++k)
    for (std::size_t j = 0; j < out; ++j) {
      double ref = 0;
      for (std::size_t i = 0; i < m; ++i) ref += double(xv(i, k)) * double(seed(i, j));
      EXPECT_NEAR(l.weight().grad_data()[k * out + j], ref, fwd_tol<T>());
    }
  for (std::size_t j = 0; j < out; ++j) {
    double ref = 0;
    for (std::size_t i = 0; i < m; ++i) ref += double(seed(i, j));
    EXPECT_NEAR(l.bias().grad_data()[j], ref, fwd_tol<T>());
  }
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t k = 0; k < in; ++k) {
      double ref = 0;
      for (std::size_t j = 0; j < out; ++j) ref += double(seed(i, j)) * double(W[k * out + j]);
      EXPECT_NEAR(x.grad()(i, k), ref, fwd_tol<T>());
    }

  // A second backward on a fresh tape accumulates into the Parameters (until zero_grad).
  const T db0 = l.bias().grad_data()[0];
  tape.clear();
  tape.backward(l.forward(tape, tape.constant(xv)), seed);
  EXPECT_NEAR(l.bias().grad_data()[0], 2 * double(db0), fwd_tol<T>());

  // Wrong input width: the op's ShapeError.
  tape.clear();
  EXPECT_THROW(l.forward(tape, tape.constant(filled<T>(m, in + 1, 0.0))), ShapeError);
}

TYPED_TEST(LinearTest, MlpForwardMatchesAnIndependentLoop) {
  using T = TypeParam;
  for (nn::Activation act : {nn::Activation::kTanh, nn::Activation::kRelu}) {
    nn::MLP<T> mlp({6, 5, 4, 3}, act, 17);
    for (Parameter<T>* p : mlp.parameters())  // nonzero biases, so their use is checked
      if (p->shape().rank() == 1)
        for (std::size_t j = 0; j < p->size(); ++j) p->data()[j] = T(0.1 * j - 0.15);
    const std::size_t m = 7;
    const xt::xarray<T> xv = filled<T>(m, 6, 0.5);
    Tape<T> tape;
    Var<T> y = mlp.forward(tape, tape.constant(xv));
    ASSERT_EQ(y.shape(), (Shape{m, 3}));

    std::vector<double> h(xv.begin(), xv.end());
    std::size_t width = 6;
    for (std::size_t k = 0; k < mlp.layers().size(); ++k) {
      const auto& L = mlp.layers()[k];
      const std::size_t o = L.out_features();
      std::vector<double> next(m * o);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < o; ++j) {
          double z = double(L.bias().data()[j]);
          for (std::size_t q = 0; q < width; ++q)
            z += h[i * width + q] * double(L.weight().data()[q * o + j]);
          if (k + 1 < mlp.layers().size())
            z = act == nn::Activation::kTanh ? std::tanh(z) : std::max(z, 0.0);
          next[i * o + j] = z;
        }
      h = std::move(next);
      width = o;
    }
    for (std::size_t i = 0; i < m * 3; ++i)
      EXPECT_NEAR(y.data()[i], h[i], 4 * fwd_tol<T>()) << "activation " << int(act) << " " << i;
  }
}

namespace {

// Three classes of 2-D points: which third of the circle the angle falls in, at radius 0.5–1.
struct Spiral {
  std::vector<float> x;
  std::vector<std::int32_t> y;
  explicit Spiral(std::size_t n) {
    std::mt19937_64 g(11);
    for (std::size_t i = 0; i < n; ++i) {
      const double u = double(g() >> 11) * 0x1.0p-53, v = double(g() >> 11) * 0x1.0p-53;
      const double angle = 6.283185307179586 * u, r = 0.5 + 0.5 * v;
      x.push_back(float(r * std::cos(angle)));
      x.push_back(float(r * std::sin(angle)));
      y.push_back(static_cast<std::int32_t>(std::min(2.0, std::floor(3 * u))));
    }
  }
};

float accuracy(nn::MLP<float>& mlp, const Spiral& d) {
  Tape<float> tape;
  NoGradGuard no_grad;
  const std::size_t n = d.y.size();
  Var<float> z = mlp.forward(tape, tape.constant_view(d.x.data(), Shape{n, 2}));
  std::size_t right = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float* row = z.data() + 3 * i;
    right += std::max_element(row, row + 3) - row == d.y[i];
  }
  return float(right) / float(n);
}

}  // namespace

TEST(LinearTraining, MlpLearnsWithAdamAndBatchesThenRoundTripsThroughAFile) {
  const Spiral train(600), test(300);
  nn::MLP<float> mlp({2, 32, 32, 3}, nn::Activation::kTanh, 5);
  nn::Adam<float> opt(mlp.parameters(), nn::AdamOptions{0.01});
  io::Batcher<float> batches(train.x.data(), train.y.data(), 600, 2, 50, 99);
  Tape<float> tape;
  const float before = accuracy(mlp, test);
  float first_loss = 0, last_loss = 0;
  std::size_t steady_allocs = 0, steady_blas_allocs = 0;
  for (std::uint64_t epoch = 0; epoch < 60; ++epoch) {
    batches.start_epoch(epoch);
    while (batches.next()) {
      // After the first epoch every step replays the same shapes: no heap allocation at all.
      wengert::testing::AllocCounter count;
      tape.clear();
      Var<float> x = tape.constant_view(batches.features(), batches.shape());
      Var<float> loss =
          softmax_cross_entropy(mlp.forward(tape, x), batches.labels(), batches.size());
      opt.zero_grad();
      tape.backward(loss);
      opt.step();
      if (epoch > 0) {
        steady_allocs += count.count();
        steady_blas_allocs += count.blas_count();
      }
      if (epoch == 0 && batches.batch_index() == 0) first_loss = loss.item();
      last_loss = loss.item();
    }
  }
  const float after = accuracy(mlp, test);
  EXPECT_LT(before, 0.6f);
  EXPECT_GT(after, 0.95f) << "loss " << first_loss << " -> " << last_loss;
  EXPECT_LT(last_loss, 0.25f * first_loss);
  EXPECT_EQ(steady_allocs, 0u) << "a steady-state training step allocated";
  // Not wengert's: OpenBLAS's AVX-512 small no-transpose GEMM kernels malloc (alloc_counter.hpp).
  std::printf("steady-state steps: %zu allocations by wengert, %zu inside OpenBLAS's kernels\n",
              steady_allocs, steady_blas_allocs);

  // Save, load into a differently initialised model of the same architecture: same outputs.
  const auto dir = std::filesystem::temp_directory_path() /
                   ("wengert_test_linear_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "mlp.wgrt").string();
  nn::save(file, mlp.parameters());
  nn::MLP<float> other({2, 32, 32, 3}, nn::Activation::kTanh, 6);
  EXPECT_NE(accuracy(other, test), after);
  nn::load(file, other.parameters());
  EXPECT_EQ(accuracy(other, test), after);
  for (std::size_t i = 0; i < mlp.parameters().size(); ++i)
    EXPECT_EQ(std::memcmp(mlp.parameters()[i]->data(), other.parameters()[i]->data(),
                          mlp.parameters()[i]->size() * sizeof(float)),
              0);
  std::filesystem::remove_all(dir);
}
