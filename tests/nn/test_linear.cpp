// Tests for ops/wengert/nn/linear.hpp: initialisation statistics for each scheme, determinism
// for a seed, parameter naming and collection, and (forward) x·W + b against an independent
// loop, with gradients flowing into the layer's Parameters.
#include <wengert/nn/linear.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

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
  EXPECT_EQ(l.weight().name(), "enc.W");
  EXPECT_EQ(l.bias().name(), "enc.b");
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
  EXPECT_GT(s.max_abs, 0.999 * a);              // the bound is reached, not a smaller one
  EXPECT_NEAR(s.mean, 0.0, 0.01 * a);           // sd of the mean ≈ a/√(3·60000) ≈ 0.0024a
  EXPECT_NEAR(s.var, a * a / 3, 0.02 * a * a / 3);  // U(−a, a) has variance a²/3
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
    EXPECT_GT(s.max_abs, 3.5 * sd);            // normal tails exist among 65536 draws
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
  const char* names[] = {"fc0.W", "fc0.b", "fc1.W", "fc1.b", "fc2.W", "fc2.b"};
  const Shape shapes[] = {{784, 64}, {64}, {64, 32}, {32}, {32, 10}, {10}};
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(ps[i]->name(), names[i]);
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
