// Tests for ops/wengert/ops/bias_add.hpp: bias_add (a bias row broadcast over rows; its gradient
// a column sum) and the fused linear(x, W, b) = x·W + b — forward in closed form, gradients by
// finite differences and in closed form, constants, fan-out, shape errors, float32, replay
// without allocation, and linear ≡ bias_add(matmul(x, W), b).
#include <wengert/ops/bias_add.hpp>
#include <wengert/ops/linear.hpp>

#include <wengert/gradcheck.hpp>
#include <wengert/ops/elementwise.hpp>
#include <wengert/ops/matmul.hpp>
#include <wengert/ops/reduce.hpp>

#include <gtest/gtest.h>

#include <random>
#include <tuple>

#include <xtensor/xbuilder.hpp>

#include "alloc_counter.hpp"
#include "nn_test_util.hpp"
#include "op_test.hpp"

using namespace wengert;
using nntest::all_close;
using nntest::naive_matmul;
using nntest::random_array;

namespace {

// Σ over rows of a [m,n] array → [n].
xt::xarray<double> column_sums(const xt::xarray<double>& G) {
  xt::xarray<double> s = xt::zeros<double>({G.shape(1)});
  for (std::size_t i = 0; i < G.shape(0); ++i)
    for (std::size_t j = 0; j < G.shape(1); ++j) s(j) += G(i, j);
  return s;
}

}  // namespace

// ---- bias_add --------------------------------------------------------------------------------

TEST(BiasAdd, ForwardAddsTheBiasToEveryRow) {
  Tape<double> tape;
  auto x = tape.constant(xt::xarray<double>{{1, 2, 3}, {4, 5, 6}});
  auto b = tape.constant(xt::xarray<double>{10, 20, 30});
  auto y = bias_add(x, b);
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(xt::xarray<double>(y.value()), (xt::xarray<double>{{11, 22, 33}, {14, 25, 36}}));
  EXPECT_STREQ(y.op_name(), "bias_add");
  // Any rank: rows of the last dimension.
  auto z = bias_add(tape.constant(xt::xarray<double>{{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}),
                    tape.constant(xt::xarray<double>{100, 200}));
  EXPECT_EQ(xt::xarray<double>(z.value()),
            (xt::xarray<double>{{{101, 202}, {103, 204}}, {{105, 206}, {107, 208}}}));
}

TEST(BiasAdd, GradcheckOnRandomShapes) {
  std::mt19937_64 rng(11);
  const std::vector<std::vector<std::size_t>> shapes = {{1, 1}, {1, 7},    {6, 1},
                                                        {5, 4}, {2, 3, 4}, {9}};
  for (const auto& s : shapes) {
    auto r = gradcheck([](const std::vector<Var<double>>& v) { return bias_add(v[0], v[1]); },
                       {random_array(s, rng), random_array({s.back()}, rng)});
    EXPECT_TRUE(r.ok) << Shape(s).str() << ": " << r.message;
  }
}

TEST(BiasAdd, SeededBackwardGivesIdentityAndColumnSums) {
  std::mt19937_64 rng(12);
  auto X = random_array({6, 5}, rng), B = random_array({5}, rng), G = random_array({6, 5}, rng);
  Tape<double> tape;
  auto x = tape.variable(X), b = tape.variable(B);
  tape.backward(bias_add(x, b), G);
  EXPECT_EQ(xt::xarray<double>(x.grad()), G);
  EXPECT_TRUE(all_close(b.grad(), column_sums(G), 1e-15, 1e-15));
}

TEST(BiasAdd, ConstantInputsStayGradientFree) {
  std::mt19937_64 rng(13);
  auto G = random_array({3, 4}, rng);
  {
    Tape<double> tape;
    auto x = tape.constant(random_array({3, 4}, rng));
    auto b = tape.variable(random_array({4}, rng));
    tape.backward(bias_add(x, b), G);
    EXPECT_THROW(x.grad(), UsageError);
    EXPECT_TRUE(all_close(b.grad(), column_sums(G), 1e-15, 1e-15));
  }
  {
    Tape<double> tape;
    auto x = tape.variable(random_array({3, 4}, rng));
    auto b = tape.constant(random_array({4}, rng));
    tape.backward(bias_add(x, b), G);
    EXPECT_THROW(b.grad(), UsageError);
    EXPECT_EQ(xt::xarray<double>(x.grad()), G);
  }
  Tape<double> tape;
  auto y =
      bias_add(tape.constant(random_array({3, 4}, rng)), tape.constant(random_array({4}, rng)));
  EXPECT_FALSE(y.requires_grad());
}

TEST(BiasAdd, FanOutOfTheBiasSumsBothUses) {
  // y = bias_add(bias_add(x, b), b): db = 2·colsum(G).
  std::mt19937_64 rng(14);
  auto G = random_array({4, 3}, rng);
  Tape<double> tape;
  auto x = tape.variable(random_array({4, 3}, rng));
  auto b = tape.variable(random_array({3}, rng));
  tape.backward(bias_add(bias_add(x, b), b), G);
  EXPECT_TRUE(all_close(b.grad(), 2.0 * column_sums(G), 1e-15, 1e-15));
  EXPECT_EQ(xt::xarray<double>(x.grad()), G);
  auto r = gradcheck(
      [](const std::vector<Var<double>>& v) {
        auto h = bias_add(v[0], v[1]);
        return bias_add(matmul(h, h), v[1]);  // h feeds both operands of the product
      },
      {random_array({3, 3}, rng), random_array({3}, rng)});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(BiasAdd, ShapeErrorsNameTheOpTheArgumentsAndBothShapes) {
  Tape<double> tape;
  auto x = tape.variable(xt::zeros<double>({3, 4}));
  const std::size_t before = tape.size();
  EXPECT_EQ(
      nntest::message_of<ShapeError>([&] { bias_add(x, tape.variable(xt::zeros<double>({5}))); }),
      "bias_add: x is [3,4] but b is [5]: b must be [4] (one bias per column of x)");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] {
              bias_add(x, tape.variable(xt::zeros<double>({1, 4})));
            }),
            "bias_add: x is [3,4] but b is [1,4]: b must be [4] (one bias per column of x)");
  EXPECT_EQ(
      nntest::message_of<ShapeError>([&] { bias_add(tape.variable(2.0), tape.variable(2.0)); }),
      "bias_add: x is [] (a scalar) and b is []: x needs at least one axis, [m,n] with b [n]");
  EXPECT_EQ(tape.size(), before + 4);  // only the four variables made above were recorded
}

TEST(BiasAdd, Float32) {
  std::mt19937_64 rng(15);
  auto X = random_array({33, 17}, rng), B = random_array({17}, rng),
       G = random_array({33, 17}, rng);
  Tape<float> tape;
  auto x = tape.variable(nntest::cast<float>(X)), b = tape.variable(nntest::cast<float>(B));
  auto y = bias_add(x, b);
  tape.backward(y, nntest::cast<float>(G));
  xt::xarray<double> want = X;
  for (std::size_t i = 0; i < 33; ++i)
    for (std::size_t j = 0; j < 17; ++j) want(i, j) += B(j);
  EXPECT_TRUE(all_close(y.value(), want, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(b.grad(), column_sums(G), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(x.grad(), G, 1e-7, 0));
}

// ---- linear ----------------------------------------------------------------------------------

TEST(Linear, ForwardIsXTimesWPlusB) {
  Tape<double> tape;
  auto x = tape.constant(xt::xarray<double>{{1, 2}, {3, 4}, {5, 6}});
  auto W = tape.constant(xt::xarray<double>{{1, 0, -1}, {2, 1, 0}});
  auto b = tape.constant(xt::xarray<double>{0.5, -0.5, 1});
  auto y = linear(x, W, b);
  EXPECT_STREQ(y.op_name(), "linear");
  EXPECT_EQ(xt::xarray<double>(y.value()),
            (xt::xarray<double>{{5.5, 1.5, 0}, {11.5, 3.5, -2}, {17.5, 5.5, -4}}));
}

TEST(Linear, GradcheckOnRandomShapes) {
  std::mt19937_64 rng(16);
  const std::vector<std::tuple<std::size_t, std::size_t, std::size_t>> sizes = {
      {1, 1, 1}, {1, 6, 1}, {1, 1, 5}, {5, 1, 1}, {4, 3, 2}, {7, 5, 6}};
  for (auto [m, k, n] : sizes) {
    auto r =
        gradcheck([](const std::vector<Var<double>>& v) { return linear(v[0], v[1], v[2]); },
                  {random_array({m, k}, rng), random_array({k, n}, rng), random_array({n}, rng)});
    EXPECT_TRUE(r.ok) << m << "x" << k << "x" << n << ": " << r.message;
  }
}

TEST(Linear, EqualsMatmulThenBiasAddForwardAndBackward) {
  std::mt19937_64 rng(17);
  auto X = random_array({6, 5}, rng), W = random_array({5, 4}, rng), B = random_array({4}, rng);
  auto G = random_array({6, 4}, rng);
  Tape<double> t1, t2;
  auto x1 = t1.variable(X), w1 = t1.variable(W), b1 = t1.variable(B);
  auto x2 = t2.variable(X), w2 = t2.variable(W), b2 = t2.variable(B);
  auto y1 = linear(x1, w1, b1);
  auto y2 = bias_add(matmul(x2, w2), b2);
  t1.backward(y1, G);
  t2.backward(y2, G);
  EXPECT_TRUE(all_close(y1.value(), y2.value(), 1e-15, 1e-15));
  EXPECT_TRUE(all_close(x1.grad(), x2.grad(), 1e-15, 1e-15));
  EXPECT_TRUE(all_close(w1.grad(), w2.grad(), 1e-15, 1e-15));
  EXPECT_TRUE(all_close(b1.grad(), b2.grad(), 1e-15, 1e-15));
  // And the closed forms: dX = G·Wᵀ, dW = Xᵀ·G, db = Σ_rows G.
  EXPECT_TRUE(all_close(x1.grad(), naive_matmul(G, W, false, true), 1e-14, 1e-14));
  EXPECT_TRUE(all_close(w1.grad(), naive_matmul(X, G, true, false), 1e-14, 1e-14));
  EXPECT_TRUE(all_close(b1.grad(), column_sums(G), 1e-14, 1e-14));
}

TEST(Linear, MiniFlowOutboundGradientsAreSummed) {
  // Seeds 000 and 003 (MiniFlow's Linear node): when the output feeds several outbound nodes,
  // backward sums their gradients G = Σₙ Gₙ, then dX = G·Wᵀ, dW = Xᵀ·G, db = Σ_rows G.
  // Here y feeds mul by a constant C (G₁ = C) and square (G₂ = 2y) before one sum.
  std::mt19937_64 rng(19);
  auto X = random_array({4, 3}, rng), W = random_array({3, 2}, rng), B = random_array({2}, rng);
  auto C = random_array({4, 2}, rng);
  Tape<double> tape;
  auto x = tape.variable(X), w = tape.variable(W), b = tape.variable(B);
  auto y = linear(x, w, b);
  tape.backward(sum(y * tape.constant(C) + square(y)));
  const xt::xarray<double> G = C + 2.0 * xt::xarray<double>(y.value());
  EXPECT_TRUE(all_close(y.grad(), G, 1e-14, 1e-14));
  EXPECT_TRUE(all_close(x.grad(), naive_matmul(G, W, false, true), 1e-14, 1e-14));
  EXPECT_TRUE(all_close(w.grad(), naive_matmul(X, G, true, false), 1e-14, 1e-14));
  EXPECT_TRUE(all_close(b.grad(), column_sums(G), 1e-14, 1e-14));
}

TEST(Linear, ConstantInputAndParametersOutsideWrtAreSkipped) {
  std::mt19937_64 rng(18);
  Parameter<double> W(random_array({4, 3}, rng), "W"), b(random_array({3}, rng), "b");
  auto X = random_array({5, 4}, rng), G = random_array({5, 3}, rng);
  Tape<double> tape;
  auto x = tape.constant(X);
  auto w = tape.param(W), bv = tape.param(b);
  auto y = linear(x, w, bv);
  tape.backward(y, G, {bv});  // only b
  for (double g : W.grad()) EXPECT_EQ(g, 0.0);
  EXPECT_TRUE(all_close(b.grad(), column_sums(G), 1e-15, 1e-15));
  tape.backward(y, G, {w});  // only W
  EXPECT_TRUE(all_close(W.grad(), naive_matmul(X, G, true, false), 1e-14, 1e-14));
  EXPECT_TRUE(all_close(b.grad(), column_sums(G), 1e-15, 1e-15));  // unchanged
  EXPECT_THROW(x.grad(), UsageError);
}

TEST(Linear, EmptyInnerDimensionGivesTheBias) {
  Tape<double> tape;
  auto y =
      linear(tape.variable(xt::zeros<double>({3, 0})), tape.variable(xt::zeros<double>({0, 2})),
             tape.variable(xt::xarray<double>{7, 8}));
  EXPECT_EQ(xt::xarray<double>(y.value()), (xt::xarray<double>{{7, 8}, {7, 8}, {7, 8}}));
}

TEST(Linear, ShapeErrorsNameTheOpTheArgumentsAndBothShapes) {
  Tape<double> tape;
  auto x = tape.variable(xt::zeros<double>({3, 4}));
  auto W = tape.variable(xt::zeros<double>({5, 2}));
  auto W42 = tape.variable(xt::zeros<double>({4, 2}));
  auto b2 = tape.variable(xt::zeros<double>({2}));
  auto b3 = tape.variable(xt::zeros<double>({3}));
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { linear(x, W, b2); }),
            "linear: x is [3,4] but W is [5,2]: inner dimensions 4 and 5 differ");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { linear(x, W42, b3); }),
            "linear: W is [4,2] but b is [3]: b must be [2] (one bias per column of x·W)");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { linear(b3, W42, b2); }),
            "linear: x is [3] and W is [4,2]: x is not 2-D; linear is x [m,k]·W [k,n] + b [n]");
}

TEST(Linear, Float32AndReplayWithoutAllocation) {
  std::mt19937_64 rng(19);
  auto X = random_array({8, 16}, rng), Wd = random_array({16, 4}, rng), Bd = random_array({4}, rng);
  auto G = random_array({8, 4}, rng);
  Parameter<float> W(nntest::cast<float>(Wd)), b(nntest::cast<float>(Bd));
  const xt::xarray<float> Xf = nntest::cast<float>(X), Gf = nntest::cast<float>(G);
  Tape<float> tape;
  auto step = [&] {
    tape.clear();
    W.zero_grad();
    b.zero_grad();
    auto x = tape.constant_view(Xf.data(), Shape{8, 16});
    auto y = linear(x, tape.param(W), tape.param(b));
    tape.backward(y, Gf.data(), nullptr, 0);
    return y.data()[5];
  };
  const float first = step();
  wengert::testing::AllocCounter counter;
  float again = 0;
  for (int i = 0; i < 10; ++i) again = step();
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_EQ(first, again);
  xt::xarray<double> want = naive_matmul(X, Wd);
  for (std::size_t i = 0; i < 8; ++i)
    for (std::size_t j = 0; j < 4; ++j) want(i, j) += Bd(j);
  EXPECT_NEAR(first, want(1, 1), 1e-5);
  EXPECT_TRUE(all_close(W.grad(), naive_matmul(X, G, true, false), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(b.grad(), column_sums(G), 1e-5, 1e-5));
}

// ---- the shared op-test helper (tests/support/op_test.hpp) --------------------------------------

TEST(BiasAdd, ThroughOpTest) {
  using wengert::testing::Dims;
  using wengert::testing::ShapeCase;
  using wengert::testing::Values;
  // x [..., n] with b [n]: rows of 1, 7 and 17 (SIMD tails), rank 1 to 3 (a rank-1 x and its
  // bias can be one variable), no rows, empty rows.
  auto family = wengert::testing::shapes::fixed({{{2, 3}, {3}},
                                                 {{1, 1}, {1}},
                                                 {{1, 7}, {7}},
                                                 {{6, 1}, {1}},
                                                 {{2, 3, 4}, {4}},
                                                 {{9}, {9}},
                                                 {{4, 17}, {17}},
                                                 {{0, 3}, {3}},
                                                 {{2, 0}, {0}}});
  family.random = [](std::mt19937_64& rng) {
    std::uniform_int_distribution<std::size_t> rank(1, 3), d(1, 5);
    Dims x(rank(rng));
    for (auto& v : x) v = d(rng);
    return ShapeCase{x, {x.back()}};
  };
  wengert::testing::op_test<2>("bias_add", [](auto&&... v) { return bias_add(v...); })
      .shapes(family)
      .bad_shapes({{{3, 4}, {3}}, {{3, 4}, {1, 4}}, {{3, 4}, {}}, {{}, {1}}})
      .reference([](const Values& v) { return xt::xarray<double>(v[0] + v[1]); })
      .run();
}

TEST(Linear, ThroughOpTest) {
  using wengert::testing::ShapeCase;
  using wengert::testing::Values;
  auto shapes = [](std::size_t m, std::size_t k, std::size_t n) {
    return ShapeCase{{m, k}, {k, n}, {n}};
  };
  const auto family = wengert::testing::shapes::product("linear", shapes);
  wengert::testing::op_test<3>("linear", [](auto&&... v) { return linear(v...); })
      .shapes(family)
      .bad_shapes({{{3, 4}, {5, 2}, {2}},
                   {{3, 4}, {4, 2}, {3}},
                   {{3}, {4, 2}, {2}},
                   {{3, 4}, {4}, {1}},
                   {{3, 4}, {4, 2}, {1, 2}}})
      .reference(
          [](const Values& v) { return xt::xarray<double>(naive_matmul(v[0], v[1]) + v[2]); })
      .run();
}
