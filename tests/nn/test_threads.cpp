// Two threads, each training its own small MLP with Adam on its own tape at the same time:
// both must train (the loss falls), and each must end bit-identical to the same training run
// done on one thread — the threads share nothing, so they cannot change each other's numbers.
// The tsan preset runs this (its test filter matches "Concurrent"), so ThreadSanitizer checks
// that the concurrent runs are free of data races.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

namespace {

using namespace wengert;

struct RunResult {
  std::vector<float> losses;   // every step's loss
  std::vector<float> weights;  // every parameter, flattened, after the last step
};

/// Trains an 8-16-16-2 tanh MLP with Adam for `steps` steps of batch 16 on a data set drawn
/// from `seed`, on a tape local to this call.
RunResult train(std::uint64_t seed, int steps) {
  constexpr std::size_t kIn = 8, kBatch = 16, kExamples = 128;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> N(0, 1);
  std::vector<float> features(kExamples * kIn);
  std::vector<std::int32_t> labels(kExamples);
  for (std::size_t i = 0; i < kExamples; ++i) {
    float* x = &features[i * kIn];
    for (std::size_t j = 0; j < kIn; ++j) x[j] = N(rng);
    labels[i] = x[0] - x[1] + 0.5f * x[2] * x[3] > 0 ? 1 : 0;
  }
  nn::MLP<float> model({kIn, 16, 16, 2}, nn::Activation::kTanh, seed);
  nn::Adam<float> adam(model.parameters(), nn::AdamOptions{1e-2});
  Tape<float> tape;
  RunResult r;
  r.losses.reserve(std::size_t(steps));
  for (int s = 0; s < steps; ++s) {
    const std::size_t row = (std::size_t(s) * kBatch) % kExamples;
    tape.clear();
    auto x = tape.constant_view(&features[row * kIn], Shape{kBatch, kIn});
    auto loss = softmax_cross_entropy(model.forward(tape, x), &labels[row], kBatch);
    tape.backward(loss);
    adam.step();
    adam.zero_grad();
    r.losses.push_back(loss.item());
  }
  for (Parameter<float>* p : model.parameters())
    r.weights.insert(r.weights.end(), p->data(), p->data() + p->size());
  return r;
}

double mean(const std::vector<float>& v, std::size_t begin, std::size_t end) {
  double s = 0;
  for (std::size_t i = begin; i < end; ++i) s += v[i];
  return s / double(end - begin);
}

TEST(ConcurrentTraining, TwoThreadsTrainTheirOwnMLPsWithAdamOnTheirOwnTapes) {
  constexpr int kSteps = 400;
  const std::uint64_t seeds[2] = {11, 12};
  RunResult concurrent[2];
  {
    std::thread a([&] { concurrent[0] = train(seeds[0], kSteps); });
    std::thread b([&] { concurrent[1] = train(seeds[1], kSteps); });
    a.join();
    b.join();
  }
  for (int k = 0; k < 2; ++k) {
    const RunResult alone = train(seeds[k], kSteps);
    const RunResult& c = concurrent[k];
    ASSERT_EQ(c.losses.size(), std::size_t(kSteps));
    // It trained: the last 40 steps' mean loss is well below the first 40's.
    const double first = mean(c.losses, 0, 40), last = mean(c.losses, kSteps - 40, kSteps);
    EXPECT_LT(last, 0.6 * first) << "thread " << k << ": loss " << first << " -> " << last;
    EXPECT_TRUE(std::isfinite(last));
    // And exactly as on one thread.
    EXPECT_EQ(c.losses, alone.losses) << "thread " << k;
    EXPECT_EQ(c.weights, alone.weights) << "thread " << k;
  }
  EXPECT_NE(concurrent[0].weights, concurrent[1].weights);  // two different runs
}

}  // namespace
