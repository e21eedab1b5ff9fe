// Tests for ops/wengert/ops/bmm.hpp (batched matmul) and ops/wengert/ops/nn_ops.hpp (dropout,
// layer_norm), through the shared op-test helper, then what the helper cannot see: dropout's
// statistics, its eval mode recording nothing, and the messages.
#include <wengert/ops/bmm.hpp>
#include <wengert/ops/nn_ops.hpp>

#include <wengert/ops/reduce.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "nn_test_util.hpp"
#include "op_test.hpp"

using namespace wengert;
using wengert::testing::op_test;
using wengert::testing::ShapeCase;
using wengert::testing::Values;
namespace shapes = wengert::testing::shapes;

namespace {

using Arr = xt::xarray<double>;

// Matrix i of a batch [b,r,c] (or the matrix itself when rank 2), as a 2-D array.
Arr mat(const Arr& x, std::size_t i) {
  if (x.dimension() == 2) return x;
  const std::size_t r = x.shape(1), c = x.shape(2);
  Arr m = Arr::from_shape({r, c});
  std::copy(x.data() + i * r * c, x.data() + (i + 1) * r * c, m.data());
  return m;
}

Arr bmm_ref(const Arr& a, const Arr& b, bool ta, bool tb) {
  const std::size_t batch = a.dimension() == 3 ? a.shape(0) : b.shape(0);
  std::vector<Arr> cs;
  for (std::size_t i = 0; i < batch; ++i)
    cs.push_back(nntest::naive_matmul(mat(a, i), mat(b, i), ta, tb));
  const std::size_t m = ta ? a.shape(a.dimension() - 1) : a.shape(a.dimension() - 2);
  const std::size_t n = tb ? b.shape(b.dimension() - 2) : b.shape(b.dimension() - 1);
  Arr c = Arr::from_shape({batch, m, n});
  for (std::size_t i = 0; i < batch; ++i)
    std::copy(cs[i].begin(), cs[i].end(), c.data() + i * m * n);
  return c;
}

// [b,m,k]·[b,k,n] in every transpose form and with either operand rank 2.
ShapeCase bmm_case(std::size_t b, std::size_t m, std::size_t k, std::size_t n, bool ta, bool tb,
                   int broadcast) {
  std::vector<std::size_t> A = ta ? std::vector<std::size_t>{k, m} : std::vector<std::size_t>{m, k};
  std::vector<std::size_t> B = tb ? std::vector<std::size_t>{n, k} : std::vector<std::size_t>{k, n};
  if (broadcast != 0) A.insert(A.begin(), b);
  if (broadcast != 1) B.insert(B.begin(), b);
  return {A, B};
}

Arr layer_norm_ref(const Arr& x, const Arr& g, const Arr& b, double eps) {
  const std::size_t d = x.shape().back(), rows = d ? x.size() / d : 0;
  Arr y = x;
  for (std::size_t r = 0; r < rows; ++r) {
    long double mu = 0, v = 0;
    for (std::size_t j = 0; j < d; ++j) mu += x.data()[r * d + j];
    mu /= d;
    for (std::size_t j = 0; j < d; ++j)
      v += (x.data()[r * d + j] - mu) * (x.data()[r * d + j] - mu);
    const long double rstd = 1 / std::sqrt(v / d + eps);
    for (std::size_t j = 0; j < d; ++j)
      y.data()[r * d + j] = double((x.data()[r * d + j] - mu) * rstd * g(j) + b(j));
  }
  return y;
}

}  // namespace

TEST(NnOps, BmmThroughOpTest) {
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    std::vector<ShapeCase> cases;
    for (int broadcast : {-1, 0, 1}) {  // both batched, a shared, b shared
      cases.push_back(bmm_case(2, 3, 4, 5, ta, tb, broadcast));
      cases.push_back(bmm_case(3, 1, 17, 2, ta, tb, broadcast));
      cases.push_back(bmm_case(1, 2, 0, 3, ta, tb, broadcast));  // k = 0: C = 0
      cases.push_back(bmm_case(0, 2, 3, 2, ta, tb, broadcast));  // no batch
    }
    op_test<2>("bmm", [=](auto&& a, auto&& b) { return bmm(a, b, ta, tb); })
        .shapes(shapes::fixed(cases))
        .bad_shapes({{{2, 3, 4}, {3, 4, 5}},  // batch sizes differ
                     {{2, 3, 4}, {2, 5, 6}},  // inner dimensions differ (untransposed)
                     {{3, 4}, {4, 5}},        // neither batched
                     {{2, 2, 3, 4}, {4, 5}},  // rank 4
                     {{4}, {2, 4, 5}}})
        .reference([=](const Values& v) { return bmm_ref(v[0], v[1], ta, tb); })
        .forward_tolerance(1e-13, 1e-14)
        .run();
  }
}

TEST(NnOps, LayerNormThroughOpTest) {
  for (double eps : {1e-5, 0.5}) {
    op_test<3>("layer_norm", [=](auto&& x, auto&& g, auto&& b) { return layer_norm(x, g, b, eps); })
        .shapes(shapes::fixed({{{2, 5}, {5}, {5}},
                               {{4}, {4}, {4}},
                               {{2, 3, 17}, {17}, {17}},
                               {{3, 1}, {1}, {1}},
                               {{0, 3}, {3}, {3}},
                               {{2, 0}, {0}, {0}}}))
        .bad_shapes({{{2, 5}, {4}, {5}}, {{2, 5}, {5}, {5, 1}}, {{}, {1}, {1}}})
        .reference([=](const Values& v) { return layer_norm_ref(v[0], v[1], v[2], eps); })
        .forward_tolerance(1e-12, 1e-12)
        .run();
  }
}

TEST(NnOps, DropoutThroughOpTest) {
  // A fixed generator per call: the same mask every time, so dropout is a function of x.
  op_test<1>("dropout",
             [](auto&& x) {
               std::mt19937_64 gen(42);
               return dropout(x, 0.3, true, gen);
             })
      .values([](const ShapeCase& c, std::mt19937_64& rng) {
        std::uniform_real_distribution<double> U(-2, 2);
        Values v;
        for (const auto& d : c) {
          Arr a = Arr::from_shape(d);
          for (double& e : a) e = U(rng);
          v.push_back(a);
        }
        return v;
      })
      .reference([](const Values& v) {
        std::mt19937_64 gen(42);
        Arr y = v[0];
        for (double& e : y) e = double(gen() >> 11) * 0x1p-53 >= 0.3 ? e / 0.7 : 0.0;
        return y;
      })
      .forward_tolerance(1e-15, 1e-15)
      .cannot_replay("dropout draws a new mask per step; Tape::replay refuses it")
      .run();
}

TEST(NnOps, DropoutKeepsAboutOneMinusPAndScales) {
  std::mt19937_64 gen(1);
  Tape<float> tape;
  auto x = tape.variable(xt::xarray<float>(xt::ones<float>({100, 100})));
  auto y = dropout(x, 0.25, true, gen);
  std::size_t kept = 0;
  for (float v : y.value()) {
    EXPECT_TRUE(v == 0.0f || std::abs(v - 1.0f / 0.75f) < 1e-6f);
    kept += v != 0.0f;
  }
  EXPECT_NEAR(double(kept) / 10000, 0.75, 0.02);
  tape.backward(sum(y));
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_EQ(x.grad().data()[i], y.data()[i]);
  // A new draw for a new call, the same one for the same seed.
  std::mt19937_64 a(5), b(5);
  auto y1 = dropout(x, 0.5, true, a);
  auto y2 = dropout(x, 0.5, true, b);
  auto y3 = dropout(x, 0.5, true, a);
  EXPECT_EQ(xt::xarray<float>(y1.value()), xt::xarray<float>(y2.value()));
  EXPECT_NE(xt::xarray<float>(y1.value()), xt::xarray<float>(y3.value()));
  // p = 1 drops everything.
  EXPECT_EQ(sum(dropout(x, 1.0, true, a)).item(), 0.0f);
}

TEST(NnOps, DropoutInEvalModeIsTheIdentityAndRecordsNothing) {
  std::mt19937_64 gen(3);
  const auto state = gen;
  Tape<double> tape;
  auto x = tape.variable(Arr{1, 2, 3});
  const std::size_t before = tape.size();
  auto y = dropout(x, 0.5, false, gen);
  EXPECT_EQ(y.index(), x.index());
  EXPECT_EQ(dropout(x, 0.0, true, gen).index(), x.index());
  EXPECT_EQ(tape.size(), before);
  EXPECT_EQ(gen, state);  // nothing drawn
}

TEST(NnOps, ErrorsNameTheOpTheArgumentsAndTheShapes) {
  using nntest::message_of;
  Tape<double> tape;
  std::mt19937_64 gen(0);
  auto x = tape.variable(Arr::from_shape({2, 3, 4}));
  auto w = tape.variable(Arr::from_shape({5, 6}));
  auto g = tape.variable(Arr::from_shape({4}));
  EXPECT_EQ(message_of<ShapeError>([&] { bmm(x, w); }),
            "bmm: a is [2,3,4] and b is [5,6]: inner dimensions 4 and 5 differ");
  EXPECT_EQ(message_of<ShapeError>([&] { bmm(x, w, false, true); }),
            "bmm: a is [2,3,4] and b is [5,6] (transposed): inner dimensions 4 and 6 differ");
  EXPECT_EQ(message_of<ShapeError>([&] { bmm(w, w); }),
            "bmm: a is [5,6] and b is [5,6]: neither is batched; use matmul for two matrices");
  EXPECT_EQ(message_of<ShapeError>([&] { layer_norm(x, g, w); }),
            "layer_norm: x is [2,3,4] but gamma is [4] and beta is [5,6]; both must be [4], the "
            "last dimension of x");
  EXPECT_EQ(message_of<ValueError>([&] { layer_norm(x, g, g, 0.0); }),
            "layer_norm: eps = 0 must be a positive finite number");
  EXPECT_EQ(message_of<ValueError>([&] { dropout(x, 1.5, true, gen); }),
            "dropout: p = 1.5 is not a probability in [0, 1] (x is [2,3,4])");
  EXPECT_EQ(tape.size(), 3u);
}
