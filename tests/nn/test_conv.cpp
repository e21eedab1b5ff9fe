// Tests for nn/wengert/nn/conv.hpp: Conv2d and BatchNorm2d as modules — parameter names and
// shapes, initialisation, forward equal to the ops, gradients reaching the Parameters, batch
// norm's running statistics as buffers (in the state dict, not in parameters(), updated in
// training mode only, restored by load_state_dict), and a small CNN whose steady-state training
// step (and eval forward) allocates nothing.
#include <wengert/nn/conv.hpp>

#include <wengert/nn/optim.hpp>
#include <wengert/ops.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "alloc_counter.hpp"

using namespace wengert;

namespace {

// conv1 (1→4, 3×3, pad 1) → batch norm → relu → max pool 2 → flatten → linear 10: every layer
// of the image path, on 8×8 images.
struct TinyCnn : nn::Module<float> {
  nn::Conv2d<float> conv{1, 4, 3, 3, {1, 1, 1}, std::uint64_t{1}, nn::Init::kHeUniform, "conv"};
  nn::BatchNorm2d<float> bn{4, 0.1, 1e-5, "bn"};
  nn::Linear<float> fc{4 * 4 * 4, 10, std::uint64_t{2}, nn::Init::kXavierUniform, "fc"};
  Var<float> forward(Tape<float>& tape, const Var<float>& x) {
    Var<float> h = max_pool2d(relu(bn.forward(tape, conv.forward(tape, x))), {2});
    return fc.forward(tape, flatten(h, 1));
  }
  void visit(nn::ModuleVisitor<float>& v) override {
    v.module("conv", conv);
    v.module("bn", bn);
    v.module("fc", fc);
  }
};

}  // namespace

TEST(Conv2dModule, NamesShapesAndInit) {
  nn::Conv2d<double> c(3, 5, 3, 2, {2, 1, 1}, std::uint64_t{7}, nn::Init::kHeUniform, "c1");
  EXPECT_EQ(c.weight().shape(), (Shape{5, 3, 3, 2}));
  EXPECT_EQ(c.bias().shape(), (Shape{5}));
  EXPECT_EQ(c.weight().name(), "c1.weight");
  const auto named = c.named_parameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "weight");
  const double bound = std::sqrt(6.0 / (3 * 3 * 2));  // He uniform, fan_in = C·kh·kw
  double max_abs = 0;
  for (std::size_t i = 0; i < c.weight().size(); ++i)
    max_abs = std::max(max_abs, std::abs(c.weight().data()[i]));
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.5 * bound);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(c.bias().data()[i], 0.0);
  EXPECT_THROW(nn::Conv2d<float>(0, 2, 3, 3, {}, std::uint64_t{1}), ShapeError);
}

TEST(Conv2dModule, ForwardIsTheOpAndGradientsReachTheParameters) {
  nn::Conv2d<double> c(2, 3, 3, 3, {1, 1, 1}, std::uint64_t{3});
  Tape<double> tape;
  xt::xarray<double> xv = xt::xarray<double>::from_shape({2, 2, 5, 4});
  std::mt19937_64 rng(1);
  for (auto& v : xv) v = std::uniform_real_distribution<double>(-1, 1)(rng);
  auto x = tape.constant(xv);
  auto y = c.forward(tape, x);
  auto z = conv2d(x, tape.constant(xt::xarray<double>(c.weight().value())),
                  tape.constant(xt::xarray<double>(c.bias().value())), {1, 1, 1});
  ASSERT_EQ(y.shape(), (Shape{2, 3, 5, 4}));
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], z.data()[i]);
  tape.backward(sum(y));
  double gb = 0;
  for (std::size_t i = 0; i < 3; ++i) gb += c.bias().grad_data()[i];
  EXPECT_DOUBLE_EQ(gb, double(y.size()));  // d Σy / db[o] = N·Ho·Wo for each o
  Tape<double> other;
  EXPECT_THROW(c.forward(other, x), UsageError);  // x lives on `tape`
}

TEST(BatchNorm2dModule, RunningStatisticsAreBuffersUpdatedInTrainingOnly) {
  nn::BatchNorm2d<float> bn(2, 0.5, 1e-5, "bn");
  EXPECT_EQ(bn.parameters().size(), 2u);  // γ and β: the optimizer never sees the buffers
  const auto buffers = bn.named_buffers();
  ASSERT_EQ(buffers.size(), 2u);
  EXPECT_EQ(buffers[0].first, "running_mean");
  EXPECT_EQ(buffers[1].first, "running_var");
  nn::StateDict sd = bn.state_dict();
  EXPECT_TRUE(sd.contains("weight") && sd.contains("bias") && sd.contains("running_mean") &&
              sd.contains("running_var"));

  Tape<float> tape;
  xt::xarray<float> xv = {{{{2, 4}}, {{1, 1}}}};  // channel 0: mean 3, unbiased var 2
  bn.forward(tape, tape.constant(xv));
  EXPECT_FLOAT_EQ(bn.running_mean().data()[0], 1.5f);
  EXPECT_FLOAT_EQ(bn.running_var().data()[0], 0.5f + 0.5f * 2.0f);
  bn.eval();
  const float before = bn.running_mean().data()[0];
  auto y = bn.forward(tape, tape.constant(xv));
  EXPECT_EQ(bn.running_mean().data()[0], before);
  EXPECT_NEAR(y.value()(0, 0, 0, 1), (4 - 1.5) / std::sqrt(1.5 + 1e-5), 1e-5);

  nn::BatchNorm2d<float> fresh(2);
  fresh.load_state_dict(bn.state_dict());  // buffers come back with the parameters
  EXPECT_EQ(fresh.running_mean().data()[0], bn.running_mean().data()[0]);
  EXPECT_EQ(fresh.running_var().data()[0], bn.running_var().data()[0]);
  nn::StateDict partial = bn.state_dict();
  partial.erase("running_var");
  EXPECT_THROW(fresh.load_state_dict(partial), ValueError);  // a missing buffer is an error
}

TEST(CnnModules, SteadyStateTrainingStepAndEvalAllocateNothing) {
  TinyCnn net;
  nn::SGD<float> sgd(net.parameters(), 0.05f);
  Tape<float> tape;
  std::vector<float, AlignedAllocator<float>> x(16 * 64);
  std::vector<std::int32_t> labels(16);
  std::mt19937 rng(3);
  for (auto& v : x) v = std::uniform_real_distribution<float>(0, 1)(rng);
  for (auto& l : labels) l = std::int32_t(rng() % 10);
  float first = 0, last = 0;
  auto step = [&] {
    tape.clear();
    auto loss = softmax_cross_entropy(
        net.forward(tape, tape.constant_view(x.data(), Shape{16, 1, 8, 8})), labels);
    tape.backward(loss);
    sgd.step();
    sgd.zero_grad();
    return loss.item();
  };
  first = step();
  step();
  wengert::testing::AllocCounter counter;
  for (int i = 0; i < 30; ++i) last = step();
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_LT(last, first);  // it learns the 16 examples
  net.eval();
  auto eval_forward = [&] {
    tape.clear();
    NoGradGuard ng;
    return net.forward(tape, tape.constant_view(x.data(), Shape{16, 1, 8, 8})).size();
  };
  eval_forward();
  counter.reset();
  EXPECT_EQ(eval_forward(), 160u);
  EXPECT_EQ(counter.count(), 0u);
}
