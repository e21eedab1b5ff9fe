// Tests for engine/wengert/gradcheck.hpp: it passes correct gradients and catches wrong ones.
#include <wengert/gradcheck.hpp>

#include <gtest/gtest.h>

#include <cmath>

using namespace wengert;

namespace {
// y_i = sin(x_i) * scale, with a backward that can be made wrong on purpose.
Var<double> scaled_sin(const Var<double>& x, double scale, double grad_bug) {
  auto op = x.tape().begin_op("scaled_sin", {x}, x.shape());
  for (std::size_t i = 0; i < op.out_size(); ++i)
    op.out_data()[i] = scale * std::sin(op.input_data(0)[i]);
  return op.finish([scale, grad_bug](const BackwardContext<double>& c) {
    if (!c.needs_grad(0)) return;
    for (std::size_t i = 0; i < c.out_size(); ++i)
      c.grad_data(0)[i] += c.out_grad_data()[i] * (scale * std::cos(c.input_data(0)[i]) + grad_bug);
  });
}
}  // namespace

TEST(Gradcheck, PassesACorrectGradient) {
  auto r = gradcheck([](const std::vector<Var<double>>& x) { return scaled_sin(x[0], 2.0, 0.0); },
                     {xt::xarray<double>{{0.3, -1.2, 2.0}, {0.1, 0.5, -0.7}}});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_LE(r.worst_ratio, 1.0);
}

TEST(Gradcheck, ReportsTheWorstElementOfAWrongGradient) {
  auto r = gradcheck([](const std::vector<Var<double>>& x) { return scaled_sin(x[0], 2.0, 1e-3); },
                     {xt::xarray<double>{0.3, -1.2, 2.0}});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("analytic"), std::string::npos) << r.message;
  EXPECT_NEAR(r.analytic - r.numeric, 1e-3, 1e-7);
  EXPECT_NE(r.message.find("dot-product"), std::string::npos) << r.message;
}

TEST(Gradcheck, CatchesAGradientThatIsWrongForOneInputOnly) {
  // Two inputs; the bug only affects the second.
  auto f = [](const std::vector<Var<double>>& x) {
    auto& tape = x[0].tape();
    auto op = tape.begin_op("prod", {x[0], x[1]}, x[0].shape());
    for (std::size_t i = 0; i < op.out_size(); ++i)
      op.out_data()[i] = op.input_data(0)[i] * op.input_data(1)[i];
    return op.finish([](const BackwardContext<double>& c) {
      for (std::size_t i = 0; i < c.out_size(); ++i) {
        if (c.needs_grad(0)) c.grad_data(0)[i] += c.out_grad_data()[i] * c.input_data(1)[i];
        if (c.needs_grad(1)) c.grad_data(1)[i] += c.out_grad_data()[i] * c.input_data(1)[i];  // bug
      }
    });
  };
  auto r = gradcheck(f, {xt::xarray<double>{1.0, 2.0}, xt::xarray<double>{3.0, -4.0}});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.input, 1u);
}

TEST(Gradcheck, NamesTheWorstElementByItsIndex) {
  // y = 3x on a [2,3] input, with a wrong derivative at element [1,1] only (flat index 4).
  auto f = [](const std::vector<Var<double>>& x) {
    auto op = x[0].tape().begin_op("triple", {x[0]}, x[0].shape());
    for (std::size_t i = 0; i < op.out_size(); ++i) op.out_data()[i] = 3 * op.input_data(0)[i];
    return op.finish([](const BackwardContext<double>& c) {
      for (std::size_t i = 0; i < c.out_size(); ++i)
        c.grad_data(0)[i] += c.out_grad_data()[i] * (i == 4 ? 2.5 : 3.0);
    });
  };
  auto r = gradcheck(f, {xt::xarray<double>{{1, 2, 3}, {4, 5, 6}}});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.input, 0u);
  EXPECT_EQ(r.input_index, 4u);
  EXPECT_EQ(r.output_index, 4u);
  EXPECT_DOUBLE_EQ(r.analytic, 2.5);
  EXPECT_NEAR(r.numeric, 3.0, 1e-8);
  EXPECT_NE(r.message.find("element 4 (index [1,1] of [2,3]), output element 4 (index [1,1] of "
                           "[2,3])"),
            std::string::npos)
      << r.message;
}
