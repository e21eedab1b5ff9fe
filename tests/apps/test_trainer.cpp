// Tests for apps/train/trainer.hpp: the main job's training core.
#include "trainer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "alloc_counter.hpp"

using namespace wengert;

namespace {
const char* kFashion = "/usr/share/datasets/fashion-mnist";

// The first n examples of a split.
io::Dataset<float> head(io::Dataset<float> d, std::size_t n) {
  d.images.count = n;
  d.images.pixels.resize(n * d.features());
  d.labels.resize(n);
  return d;
}
}  // namespace

TEST(Trainer, OneEpochOnFiveThousandExamplesReachesSeventyFivePercent) {
  if (!std::filesystem::exists(kFashion)) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  io::Dataset<float> train = head(io::load_mnist_like<float>(kFashion, "train"), 5000);
  io::Dataset<float> test = io::load_mnist_like<float>(kFashion, "t10k");
  // Two seeds: the bound must hold for either, not for one lucky draw.
  for (std::uint64_t seed : {1u, 7u}) {
    train::Classifier clf({784, 128, 10}, nn::Activation::kRelu, seed, 1e-3);
    io::Dataset<float> tr = train, te = test;
    clf.fit_input_norm(tr);
    clf.normalize(tr);
    clf.normalize(te);
    io::Batcher<float> batches(tr, 64, seed);
    float first = 0, last = 0;
    while (batches.next()) {
      last = clf.train_step(batches.features(), batches.labels(), batches.size());
      if (batches.batch_index() == 0) first = last;
    }
    const double acc = clf.evaluate(te);
    EXPECT_GE(acc, 0.75) << "seed " << seed;
    EXPECT_LT(last, first) << "seed " << seed;
  }
}

TEST(Trainer, TrainingStepAllocatesNothingAfterWarmUp) {
  train::Classifier clf({784, 256, 128, 10}, nn::Activation::kTanh, 3, 1e-3);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> U(0, 1);
  std::vector<float, AlignedAllocator<float>> x(128 * 784);
  std::vector<std::int32_t> y(128);
  for (auto& v : x) v = U(rng);
  for (auto& v : y) v = std::int32_t(rng() % 10);
  std::size_t correct = 0;
  clf.train_step(x.data(), y.data(), 128, &correct);  // warm-up: tape arena and lists grow
  clf.train_step(x.data(), y.data(), 128, &correct);
  wengert::testing::AllocCounter counter;
  float loss = 0;
  for (int i = 0; i < 20; ++i) loss = clf.train_step(x.data(), y.data(), 128, &correct);
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_TRUE(std::isfinite(loss));
}

// The step on a Batcher whose rows each thread gathers itself: with one thread the plain step
// bit for bit; with two threads the same training within float rounding, and the same test
// predictions from the thread-sharded evaluation; nothing allocated per step either way.
TEST(Trainer, BatcherStepsGatherPerThreadAndMatchThePlainStep) {
  const std::size_t n = 300, in = 20;
  std::mt19937 rng(11);
  std::normal_distribution<float> N(0, 1);
  io::Dataset<float> d;
  d.images.count = n;
  d.images.rows = 4;
  d.images.cols = 5;
  for (std::size_t i = 0; i < n * in; ++i) d.images.pixels.push_back(N(rng));
  for (std::size_t i = 0; i < n; ++i)
    d.labels.push_back(std::int32_t(d.images.pixels[i * in] > 0) +
                       2 * (d.images.pixels[i * in + 1] > 0));
  auto run = [&](std::size_t threads, bool lazy, std::vector<float>& params, double& acc,
                 std::size_t& allocs) {
    train::Classifier clf({in, 16, 4}, nn::Activation::kTanh, 5, 1e-2);
    clf.set_threads(threads);
    io::Batcher<float> batches(d, 32, 9);
    allocs = 0;
    for (std::uint64_t epoch = 0; epoch < 3; ++epoch) {
      batches.start_epoch(epoch);
      while (lazy ? batches.advance() : batches.next()) {
        wengert::testing::AllocCounter counter;
        if (lazy)
          clf.train_step(batches);
        else
          clf.train_step(batches.features(), batches.labels(), batches.size());
        if (epoch > 0) allocs += counter.count();
      }
    }
    params.clear();
    for (Parameter<float>* p : clf.model().parameters())
      params.insert(params.end(), p->data(), p->data() + p->size());
    acc = clf.evaluate(d);
  };
  std::vector<float> plain, one, two;
  double acc_plain = 0, acc_one = 0, acc_two = 0;
  std::size_t a0 = 0, a1 = 0, a2 = 0;
  run(1, false, plain, acc_plain, a0);
  run(1, true, one, acc_one, a1);
  run(2, true, two, acc_two, a2);
  EXPECT_EQ(one, plain);
  EXPECT_EQ(acc_one, acc_plain);
  ASSERT_EQ(two.size(), plain.size());
  for (std::size_t i = 0; i < two.size(); ++i)
    EXPECT_NEAR(two[i], plain[i], 1e-4f * (1 + std::abs(plain[i]))) << i;
  EXPECT_NEAR(acc_two, acc_plain, 2.0 / double(n));
  EXPECT_GT(acc_plain, 0.5);  // it learned: the comparison is not between two untrained nets
  EXPECT_EQ(a1, 0u);
  EXPECT_EQ(a2, 0u);
}

TEST(Trainer, EvaluateBuildsAConfusionMatrixThatAddsUp) {
  train::Classifier clf({4, 3}, nn::Activation::kRelu, 1, 1e-3);
  io::Dataset<float> d;
  d.images.count = 5;
  d.images.rows = 2;
  d.images.cols = 2;
  d.images.pixels.assign(20, 0.5f);
  d.labels = {0, 1, 2, 1, 0};
  std::vector<std::size_t> cm;
  const double acc = clf.evaluate(d, &cm);
  ASSERT_EQ(cm.size(), 9u);
  std::size_t total = 0, diag = 0;
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 3; ++j) {
      total += cm[i * 3 + j];
      if (i == j) diag += cm[i * 3 + j];
    }
  EXPECT_EQ(total, 5u);
  EXPECT_DOUBLE_EQ(acc, diag / 5.0);
}

TEST(Trainer, XorIsLearned) {
  std::vector<float> x{0, 0, 0, 1, 1, 0, 1, 1}, y{0, 1, 1, 0};
  auto run = train::train_binary({2, 4, 1}, x, y, 2000, 1.0, 1, 200, [](std::size_t, double) {});
  EXPECT_EQ(run.accuracy, 1.0);
  EXPECT_LT(run.final_loss, 0.05);
  EXPECT_LT(run.losses.back(), run.losses.front());
}

TEST(Trainer, Seed004NetworkLearnsTheSphere) {
  std::vector<float> x, y;
  train::make_seed004_data(400, 1, x, y);
  double positives = 0;
  for (float v : y) positives += v;
  EXPECT_GT(positives, 150);  // the threshold balances the classes
  EXPECT_LT(positives, 250);
  auto run = train::train_binary({3, 4, 3, 1}, x, y, 3000, 0.5, 1, 300, [](std::size_t, double) {});
  EXPECT_GE(run.accuracy, 0.9);
  EXPECT_LT(run.final_loss, 0.5 * run.losses.front());
}

TEST(Trainer, CnnTrainingStepAllocatesNothingAfterWarmUp) {
  // A narrow CNN (4 and 8 channels) keeps the test fast; the code path is --model cnn's.
  train::Classifier clf(train::Architecture{{784, 4, 8, 16, 10}, nn::Activation::kRelu, true}, 3,
                        1e-3);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> U(0, 1);
  std::vector<float, AlignedAllocator<float>> x(32 * 784);
  std::vector<std::int32_t> y(32);
  for (auto& v : x) v = U(rng);
  for (auto& v : y) v = std::int32_t(rng() % 10);
  clf.train_step(x.data(), y.data(), 32);  // warm-up: tape arena and lists grow
  clf.train_step(x.data(), y.data(), 32);
  wengert::testing::AllocCounter counter;
  float loss = 0;
  for (int i = 0; i < 5; ++i) loss = clf.train_step(x.data(), y.data(), 32);
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_TRUE(std::isfinite(loss));
}

TEST(Trainer, CnnWeightsFileDescribesItsModel) {
  const train::Architecture arch{{784, 4, 8, 16, 10}, nn::Activation::kRelu, true};
  train::Classifier clf(arch, 1, 1e-3);
  const std::string path =
      (std::filesystem::temp_directory_path() / "wengert_test_cnn_weights.wgrt").string();
  nn::save_state(path, clf.weights());
  const train::Architecture back = train::read_architecture(path);
  EXPECT_TRUE(back.cnn);
  EXPECT_EQ(back.sizes, arch.sizes);
  train::Classifier again(back, 99, 1e-3);  // another seed: the weights come from the file
  again.load_weights(path);
  const nn::StateDict want = clf.model().state_dict(), got = again.model().state_dict();
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(got.contains("conv1.weight") && got.contains("fc2.bias"));
  for (const auto& e : want.entries())
    EXPECT_EQ(got.find(e.name)->as<float>(), e.as<float>()) << e.name;
  std::filesystem::remove(path);
}
