// Tests for ops/wengert/ops/matmul.hpp: matmul and its transposed forms — forward against plain
// loops, gradients by finite differences and in closed form, skipped GEMMs for inputs that need
// no gradient, fan-out, degenerate sizes, shape errors, float32, and no allocation on replay.
#include <wengert/ops/matmul.hpp>

#include <wengert/gradcheck.hpp>

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

// Stored shapes of a and b for op(a) [m,k] · op(b) [k,n].
std::vector<std::size_t> a_shape(std::size_t m, std::size_t k, bool ta) {
  return ta ? std::vector<std::size_t>{k, m} : std::vector<std::size_t>{m, k};
}
std::vector<std::size_t> b_shape(std::size_t k, std::size_t n, bool tb) {
  return tb ? std::vector<std::size_t>{n, k} : std::vector<std::size_t>{k, n};
}

}  // namespace

TEST(Matmul, ForwardMatchesHandComputedProduct) {
  Tape<double> tape;
  auto a = tape.constant(xt::xarray<double>{{1, 2, 3}, {4, 5, 6}});
  auto b = tape.constant(xt::xarray<double>{{7, 8}, {9, 10}, {11, 12}});
  auto c = matmul(a, b);
  EXPECT_EQ(c.shape(), (Shape{2, 2}));
  EXPECT_EQ(xt::xarray<double>(c.value()), (xt::xarray<double>{{58, 64}, {139, 154}}));
  EXPECT_STREQ(c.op_name(), "matmul");
  EXPECT_FALSE(c.requires_grad());
}

TEST(Matmul, AllTransposeFormsMatchPlainLoops) {
  std::mt19937_64 rng(1);
  const std::size_t m = 5, k = 7, n = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      auto A = random_array(a_shape(m, k, ta), rng), B = random_array(b_shape(k, n, tb), rng);
      Tape<double> tape;
      auto c = matmul(tape.constant(A), tape.constant(B), ta, tb);
      EXPECT_EQ(c.shape(), (Shape{m, n}));
      EXPECT_TRUE(all_close(c.value(), naive_matmul(A, B, ta, tb), 1e-14, 1e-14))
          << "ta=" << ta << " tb=" << tb;
    }
  // The named forms record the same products under their own names.
  auto A = random_array({4, 6}, rng), B = random_array({5, 6}, rng), C = random_array({4, 5}, rng);
  Tape<double> tape;
  auto nt = matmul_nt(tape.constant(A), tape.constant(B));
  auto tn = matmul_tn(tape.constant(A), tape.constant(C));
  EXPECT_STREQ(nt.op_name(), "matmul_nt");
  EXPECT_STREQ(tn.op_name(), "matmul_tn");
  EXPECT_TRUE(all_close(nt.value(), naive_matmul(A, B, false, true), 1e-14, 1e-14));
  EXPECT_TRUE(all_close(tn.value(), naive_matmul(A, C, true, false), 1e-14, 1e-14));
}

TEST(Matmul, GradcheckOnRandomShapesAndAllTransposeForms) {
  std::mt19937_64 rng(2);
  // (m, k, n), including 1×1, 1×n and n×1 operands.
  const std::vector<std::tuple<std::size_t, std::size_t, std::size_t>> sizes = {
      {1, 1, 1}, {1, 5, 1}, {1, 1, 6}, {6, 1, 1}, {1, 4, 3}, {4, 3, 1}, {3, 4, 5}, {7, 2, 6}};
  for (auto [m, k, n] : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        auto f = [ta = ta, tb = tb](const std::vector<Var<double>>& v) {
          return matmul(v[0], v[1], ta, tb);
        };
        auto r = gradcheck(
            f, {random_array(a_shape(m, k, ta), rng), random_array(b_shape(k, n, tb), rng)});
        EXPECT_TRUE(r.ok) << "m=" << m << " k=" << k << " n=" << n << " ta=" << ta << " tb=" << tb
                          << ": " << r.message;
      }
}

TEST(Matmul, SeededBackwardGivesClosedFormAdjoints) {
  // dA = G·op(B)ᵀ read back into A's layout, dB likewise — computed here by plain loops.
  std::mt19937_64 rng(3);
  const std::size_t m = 4, k = 6, n = 5;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      auto A = random_array(a_shape(m, k, ta), rng), B = random_array(b_shape(k, n, tb), rng);
      auto G = random_array({m, n}, rng);
      Tape<double> tape;
      auto a = tape.variable(A), b = tape.variable(B);
      tape.backward(matmul(a, b, ta, tb), G);
      // d op(A) = G·op(B)ᵀ [m,k]; d op(B) = op(A)ᵀ·G [k,n]; transpose back where read transposed.
      auto dopA = naive_matmul(G, B, false, !tb);
      auto dopB = naive_matmul(A, G, !ta, false);
      auto dA = ta ? nntest::transposed(dopA) : dopA;
      auto dB = tb ? nntest::transposed(dopB) : dopB;
      EXPECT_TRUE(all_close(a.grad(), dA, 1e-13, 1e-13)) << "ta=" << ta << " tb=" << tb;
      EXPECT_TRUE(all_close(b.grad(), dB, 1e-13, 1e-13)) << "ta=" << ta << " tb=" << tb;
    }
}

TEST(Matmul, ConstantInputStaysGradientFree) {
  std::mt19937_64 rng(4);
  auto A = random_array({3, 4}, rng), B = random_array({4, 2}, rng);
  Tape<double> tape;
  auto a = tape.constant(A);
  auto b = tape.variable(B);
  auto c = matmul(a, b);
  EXPECT_TRUE(c.requires_grad());
  tape.backward(c, xt::xarray<double>(xt::ones<double>({3, 2})));
  EXPECT_THROW(a.grad(), UsageError);
  // d sum(A·B)/dB[p,j] = Σ_i A[i,p]
  xt::xarray<double> want = xt::xarray<double>::from_shape({4, 2});
  for (std::size_t p = 0; p < 4; ++p)
    for (std::size_t j = 0; j < 2; ++j) want(p, j) = A(0, p) + A(1, p) + A(2, p);
  EXPECT_TRUE(all_close(b.grad(), want, 1e-14, 1e-14));
}

TEST(Matmul, InputOutsideWrtSkipsItsGemm) {
  // A parameter outside backward's wrt list needs no gradient in this sweep: its GEMM is
  // skipped, so its gradient stays exactly zero, while the chosen input gets its gradient.
  std::mt19937_64 rng(5);
  Parameter<double> p(random_array({3, 4}, rng));
  auto B = random_array({4, 5}, rng);
  Tape<double> tape;
  auto b = tape.variable(B);
  auto pv = tape.param(p);
  auto c = matmul(pv, b);
  const xt::xarray<double> G = random_array({3, 5}, rng);
  tape.backward(c, G, {b});
  for (double g : p.grad()) EXPECT_EQ(g, 0.0);
  EXPECT_NE(b.grad()(0, 0), 0.0);
  // And the other way round: b's GEMM is skipped, so its (re-zeroed) adjoint stays zero.
  tape.backward(c, G, {pv});
  EXPECT_TRUE(all_close(p.grad(), nntest::naive_matmul(G, B, false, true), 1e-14, 1e-14));
  for (double g : b.grad()) EXPECT_EQ(g, 0.0);
}

TEST(Matmul, ParameterGradientsAccumulateInPlace) {
  // beta = 1: the GEMMs add to a parameter's gradient rather than overwrite it.
  std::mt19937_64 rng(6);
  Parameter<double> w(random_array({4, 3}, rng));
  auto X = random_array({5, 4}, rng);
  Tape<double> tape;
  auto y = matmul(tape.constant(X), tape.param(w));
  const xt::xarray<double> G = random_array({5, 3}, rng);
  tape.backward(y, G);
  xt::xarray<double> once = w.grad();
  tape.backward(y, G);
  EXPECT_TRUE(all_close(w.grad(), 2.0 * once, 1e-15, 0));
}

TEST(Matmul, FanOutSumsBothOperandGradients) {
  // Y = X·X: X feeds both operands; with Y's adjoint G, dX = G·Xᵀ + Xᵀ·G.
  std::mt19937_64 rng(7);
  auto X = random_array({4, 4}, rng), G = random_array({4, 4}, rng);
  Tape<double> tape;
  auto x = tape.variable(X);
  tape.backward(matmul(x, x), G);
  xt::xarray<double> want = naive_matmul(G, X, false, true) + naive_matmul(X, G, true, false);
  EXPECT_TRUE(all_close(x.grad(), want, 1e-14, 1e-14));
  // X·Xᵀ and an intermediate used twice, through gradcheck.
  auto r = gradcheck(
      [](const std::vector<Var<double>>& v) {
        auto c = matmul_nt(v[0], v[0]);
        return matmul(c, c);
      },
      {random_array({3, 5}, rng)});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Matmul, DegenerateSizes) {
  Tape<double> tape;
  // Inner dimension 0: the product is all zeros (an empty sum), and backward is a no-op.
  auto a = tape.variable(xt::zeros<double>({2, 0}));
  auto b = tape.variable(xt::zeros<double>({0, 3}));
  auto c = matmul(a, b);
  EXPECT_EQ(c.shape(), (Shape{2, 3}));
  for (double v : c.value()) EXPECT_EQ(v, 0.0);
  tape.backward(c, xt::xarray<double>(xt::ones<double>({2, 3})));
  EXPECT_EQ(a.grad().size(), 0u);
  // No rows.
  auto d =
      matmul(tape.variable(xt::zeros<double>({0, 4})), tape.variable(xt::ones<double>({4, 2})));
  EXPECT_EQ(d.shape(), (Shape{0, 2}));
}

TEST(Matmul, ShapeErrorsNameTheOpTheArgumentsAndBothShapes) {
  Tape<double> tape;
  auto a = tape.variable(xt::zeros<double>({3, 4}));
  auto b = tape.variable(xt::zeros<double>({5, 2}));
  auto v = tape.variable(xt::zeros<double>({3}));
  const std::size_t before = tape.size();
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { matmul(a, b); }),
            "matmul: a is [3,4] but b is [5,2]: inner dimensions 4 and 5 differ");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { matmul_nt(a, b); }),
            "matmul_nt: a is [3,4] but b is [5,2] (transposed: [2,5]): inner dimensions 4 and "
            "2 differ");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { matmul_tn(a, b); }),
            "matmul_tn: a is [3,4] (transposed: [4,3]) but b is [5,2]: inner dimensions 3 and "
            "5 differ");
  EXPECT_EQ(nntest::message_of<ShapeError>([&] { matmul(a, v); }),
            "matmul: a is [3,4] and b is [3]: b is not 2-D; matmul multiplies matrices, "
            "[m,k]·[k,n]");
  EXPECT_EQ(tape.size(), before);  // nothing recorded
  // A stale handle: the message names the op and the argument.
  Var<double> stale = tape.variable(1.0);
  tape.clear();
  auto x = tape.variable(xt::zeros<double>({2, 2}));
  const std::string msg = nntest::message_of<UsageError>([&] { matmul(x, stale); });
  EXPECT_NE(msg.find("matmul: argument b is a stale handle"), std::string::npos) << msg;
  EXPECT_NE(msg.find("stale"), std::string::npos) << msg;
}

TEST(Matmul, Float32MatchesDoubleReference) {
  std::mt19937_64 rng(8);
  const std::size_t m = 33, k = 70, n = 17;  // odd sizes: BLAS edge kernels
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      auto A = random_array(a_shape(m, k, ta), rng), B = random_array(b_shape(k, n, tb), rng);
      auto G = random_array({m, n}, rng);
      Tape<float> tape;
      auto a = tape.variable(nntest::cast<float>(A)), b = tape.variable(nntest::cast<float>(B));
      auto c = matmul(a, b, ta, tb);
      tape.backward(c, nntest::cast<float>(G));
      EXPECT_TRUE(all_close(c.value(), naive_matmul(A, B, ta, tb), 1e-5, 1e-5));
      auto dopA = naive_matmul(G, B, false, !tb), dopB = naive_matmul(A, G, !ta, false);
      EXPECT_TRUE(all_close(a.grad(), ta ? nntest::transposed(dopA) : dopA, 1e-5, 1e-5));
      EXPECT_TRUE(all_close(b.grad(), tb ? nntest::transposed(dopB) : dopB, 1e-5, 1e-5));
    }
}

TEST(Matmul, ReplayAllocatesNothing) {
  std::mt19937_64 rng(9);
  Parameter<float> w(nntest::cast<float>(random_array({16, 8}, rng)));
  xt::xarray<float> X = nntest::cast<float>(random_array({4, 16}, rng));
  xt::xarray<float> G = nntest::cast<float>(random_array({8, 8}, rng));
  Tape<float> tape;
  auto step = [&] {
    tape.clear();
    auto x = tape.constant_view(X.data(), Shape{4, 16});
    auto h = matmul(x, tape.param(w));
    auto y = matmul_tn(h, h);  // h feeds both operands
    tape.backward(y, G.data(), nullptr, 0);
    return y.data()[3];
  };
  const float first = step();
  wengert::testing::AllocCounter counter;
  float again = 0;
  for (int i = 0; i < 20; ++i) again = step();
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_EQ(first, again);
}

// ---- the shared op-test helper (tests/support/op_test.hpp) --------------------------------------

namespace {

// op(a) [m,k] · op(b) [k,n] as stored shapes: edge sizes (1s, a square product whose operands
// can be one variable, empty m, k and n, a SIMD-sized k) and seeded random ones.
wengert::testing::ShapeFamily matmul_shapes(bool ta, bool tb) {
  using wengert::testing::ShapeCase;
  auto stored = [ta, tb](std::size_t m, std::size_t k, std::size_t n) {
    return ShapeCase{a_shape(m, k, ta), b_shape(k, n, tb)};
  };
  wengert::testing::ShapeFamily f = wengert::testing::shapes::product("matmul", stored);
  // Inner dimensions that differ in every transpose form, and operands that are not 2-D.
  f.bad = {{{3, 4}, {5, 2}}, {{3}, {3, 4}}, {{3, 4}, {4}}, {{}, {}}, {{2, 3, 4}, {4, 2}}};
  return f;
}

}  // namespace

TEST(Matmul, AllFormsThroughOpTest) {
  using wengert::testing::op_test;
  using wengert::testing::Values;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const char* name = ta ? (tb ? "matmul_tt" : "matmul_tn") : (tb ? "matmul_nt" : "matmul");
      op_test<2>(name, [ta, tb](auto&& a, auto&& b) { return matmul(a, b, ta, tb); })
          .shapes(matmul_shapes(ta, tb))
          .reference([ta, tb](const Values& v) { return naive_matmul(v[0], v[1], ta, tb); })
          .run();
    }
  // The named forms are the same op.
  op_test<2>("matmul_nt", [](auto&&... v) { return matmul_nt(v...); })
      .shapes(matmul_shapes(false, true))
      .reference([](const Values& v) { return naive_matmul(v[0], v[1], false, true); })
      .run();
  op_test<2>("matmul_tn", [](auto&&... v) { return matmul_tn(v...); })
      .shapes(matmul_shapes(true, false))
      .reference([](const Values& v) { return naive_matmul(v[0], v[1], true, false); })
      .run();
}
