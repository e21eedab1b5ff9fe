// Tests for nn/wengert/nn/schedule.hpp: each scheduler's learning rates at the points its
// formula pins down, against an independent evaluation; step() driving an optimizer; state
// saved and restored, and a resumed run refused when its schedule differs.
#include <wengert/nn/schedule.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

using namespace wengert;

namespace {
constexpr double kPi = 3.141592653589793;
}

TEST(Schedule, ConstantAndStep) {
  nn::ConstantLR c(0.3);
  EXPECT_EQ(c.lr_at(0), 0.3);
  EXPECT_EQ(c.lr_at(123456), 0.3);
  nn::StepLR s(0.1, 10, 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(9), 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 0.05);
  EXPECT_DOUBLE_EQ(s.lr_at(25), 0.025);
  EXPECT_THROW(nn::StepLR(0.1, 0), ValueError);
  EXPECT_THROW(nn::StepLR(-0.1, 3), ValueError);
  EXPECT_THROW(nn::ConstantLR(NAN), ValueError);
}

TEST(Schedule, CosineWithWarmup) {
  nn::CosineWarmup w(1e-3, 4, 20, 1e-5);
  EXPECT_DOUBLE_EQ(w.lr_at(0), 0.25e-3);  // linear ramp: (t + 1) / warmup
  EXPECT_DOUBLE_EQ(w.lr_at(3), 1e-3);
  EXPECT_DOUBLE_EQ(w.lr_at(4), 1e-3);                           // the cosine starts at its top
  EXPECT_NEAR(w.lr_at(12), 1e-5 + (1e-3 - 1e-5) * 0.5, 1e-15);  // halfway
  EXPECT_DOUBLE_EQ(w.lr_at(20), 1e-5);
  EXPECT_DOUBLE_EQ(w.lr_at(1000), 1e-5);
  for (std::uint64_t t = 5; t < 20; ++t) EXPECT_LT(w.lr_at(t), w.lr_at(t - 1)) << t;
  // warmup = 0, min_lr = 0: exactly wengert-train's original schedule, lr·½(1 + cos(π t / T)).
  nn::CosineWarmup plain(2e-3, 0, 937);
  for (std::uint64_t t = 0; t < 937; ++t)  // every step of the run, bit for bit
    ASSERT_EQ(plain.lr_at(t), 2e-3 * 0.5 * (1 + std::cos(kPi * double(t) / 937.0))) << t;
  EXPECT_THROW(nn::CosineWarmup(1e-3, 30, 20), ValueError);
  EXPECT_THROW(nn::CosineWarmup(1e-3, 0, 0), ValueError);
  EXPECT_THROW(nn::CosineWarmup(1e-3, 0, 10, 1e-2), ValueError);
}

TEST(Schedule, OneCycle) {
  // PyTorch's OneCycleLR(max_lr=0.1, total_steps=101, pct_start=0.3): the first phase ends at
  // step 0.3·101 − 1 = 29.3, the second at step 100; lr = end + (start − end)·½(1 + cos(π·pct)).
  nn::OneCycle o(0.1, 101, 0.3, 25, 1e4);
  const double initial = 0.1 / 25, last = initial / 1e4, p1 = 0.3 * 101 - 1;
  auto torch = [&](double t) {
    if (t <= p1) return 0.1 + (initial - 0.1) / 2 * (std::cos(kPi * t / p1) + 1);
    return last + (0.1 - last) / 2 * (std::cos(kPi * (t - p1) / (100 - p1)) + 1);
  };
  for (std::uint64_t t : {0u, 1u, 10u, 29u, 30u, 50u, 99u, 100u})
    EXPECT_NEAR(o.lr_at(t), torch(double(t)), 1e-15) << t;
  EXPECT_DOUBLE_EQ(o.lr_at(0), initial);
  EXPECT_DOUBLE_EQ(o.lr_at(100), last);
  EXPECT_DOUBLE_EQ(o.lr_at(500), last);
  for (std::uint64_t t = 1; t <= 29; ++t) EXPECT_GT(o.lr_at(t), o.lr_at(t - 1)) << t;
  for (std::uint64_t t = 31; t <= 100; ++t) EXPECT_LT(o.lr_at(t), o.lr_at(t - 1)) << t;
  EXPECT_GT(o.lr_at(29), 0.0999);
  EXPECT_GT(o.lr_at(30), 0.0999);
  EXPECT_THROW(nn::OneCycle(0.1, 1), ValueError);
  EXPECT_THROW(nn::OneCycle(0.1, 10, 1.0), ValueError);
  EXPECT_THROW(nn::OneCycle(0.1, 3, 0.3), ValueError);  // the peak would come before step 0
}

TEST(Schedule, StepSetsTheOptimizersRateAndStateRoundTrips) {
  Parameter<float> p(Shape{3}, "p");
  nn::SGD<float> sgd({&p}, 1.0f);
  nn::StepLR s(0.5, 2, 0.1);
  std::vector<float> seen;
  for (int k = 0; k < 5; ++k) {
    s.step(sgd);
    seen.push_back(sgd.lr());
  }
  EXPECT_EQ(seen, (std::vector<float>{0.5f, 0.5f, 0.05f, 0.05f, float(0.5 * 0.1 * 0.1)}));
  EXPECT_EQ(s.steps(), 5u);
  nn::StateDict sd;
  s.state_dict(sd);
  EXPECT_EQ(sd.get_u64("scheduler.step", "test"), 5u);
  nn::StepLR r(0.5, 2, 0.1);
  r.load_state_dict(sd);
  EXPECT_EQ(r.steps(), 5u);
  EXPECT_EQ(r.current_lr(), s.current_lr());
  // A resumed run whose schedule differs is refused, naming the hyperparameter.
  nn::StepLR other(0.5, 3, 0.1);
  try {
    other.load_state_dict(sd);
    ADD_FAILURE() << "a different schedule was resumed";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("step_size"), std::string::npos) << e.what();
  }
  EXPECT_EQ(other.steps(), 0u);
  nn::CosineWarmup cos(0.5, 0, 10);
  try {  // StepLR's state has no "scheduler.warmup" (nor the other cosine hyperparameters)
    cos.load_state_dict(sd);
    ADD_FAILURE() << "a StepLR state was loaded into a CosineWarmup";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'scheduler.warmup' is missing"), std::string::npos)
        << e.what();
  }
}
