// wengert::dist::ThreadDataParallel: N threads training one model on shards of each batch must
// give the parameters of one thread training on the whole batch (rtol 1e-5 in float32, 1e-12 in
// float64) — for SGD and Adam, equal and unequal shards — allocate nothing per step, and turn a
// failing shard into an error of the caller without a hang; the fused step (the optimizer's
// update split over the threads) equals backward + step bit for bit. The tsan preset runs every
// test here (its filter matches "Thread").
#include <wengert/dist/threads.hpp>
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>
#include <alloc_counter.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "classify_data.hpp"

namespace {

using namespace wengert;

template <class T>
using Data = wengert::testing::ClassifyData<T>;

// The mean softmax cross-entropy of rows [b, e) of batch `step` (each step its own rows).
template <class T>
Var<T> shard_loss(nn::MLP<T>& m, Tape<T>& tape, const Data<T>& d, std::size_t rows,
                  std::size_t step, std::size_t b, std::size_t e) {
  const std::size_t first = step * rows + b;
  auto x = tape.constant_view(&d.x[first * Data<T>::kIn], Shape{e - b, Data<T>::kIn});
  return softmax_cross_entropy(m.forward(tape, x), &d.y[first], e - b);
}

template <class T>
std::vector<T> flat(nn::MLP<T>& m) {
  std::vector<T> v;
  for (Parameter<T>* p : m.parameters()) v.insert(v.end(), p->data(), p->data() + p->size());
  return v;
}

enum class Opt { kSGD, kAdam };

template <class T>
std::unique_ptr<nn::Optimizer<T>> make_opt(nn::MLP<T>& m, Opt o) {
  if (o == Opt::kSGD) return std::make_unique<nn::SGD<T>>(m.parameters(), nn::SGDOptions{0.5});
  return std::make_unique<nn::Adam<T>>(m.parameters(), nn::AdamOptions{0.05});
}

// Trains `steps` steps of `rows` rows with `threads` threads (0: plain tape, no dist at all);
// returns the parameters and writes each step's loss.
template <class T>
std::vector<T> train(std::size_t threads, Opt o, std::size_t rows, std::size_t steps,
                     std::vector<T>* losses = nullptr) {
  Data<T> d(rows * steps, 7);
  nn::MLP<T> model({Data<T>::kIn, 16, 16, Data<T>::kClasses}, nn::Activation::kTanh, 3);
  auto opt = make_opt(model, o);
  if (threads == 0) {
    Tape<T> tape;
    for (std::size_t s = 0; s < steps; ++s) {
      tape.clear();
      Var<T> l = shard_loss(model, tape, d, rows, s, 0, rows);
      tape.backward(l);
      opt->step();
      opt->zero_grad();
      if (losses) losses->push_back(l.item());
    }
    return flat(model);
  }
  dist::ThreadDataParallel<T, nn::MLP<T>> dp(model, threads);
  for (std::size_t s = 0; s < steps; ++s) {
    T l = dp.backward(rows, [&](nn::MLP<T>& m, Tape<T>& t, std::size_t b, std::size_t e) {
      return shard_loss(m, t, d, rows, s, b, e);
    });
    opt->step();
    opt->zero_grad();
    if (losses) losses->push_back(l);
  }
  return flat(model);
}

template <class T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double rtol) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0;  // the parameters' RMS: the tolerance of entries near zero
  for (T w : want) scale += double(w) * double(w);
  scale = std::sqrt(scale / double(want.size()));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (std::abs(double(got[i]) - double(want[i])) > rtol * (std::abs(double(want[i])) + scale) &&
        bad++ < 5)
      ADD_FAILURE() << "parameter element " << i << ": " << got[i] << " vs " << want[i];
  EXPECT_EQ(bad, 0u);
}

template <class T>
void check_equivalence(std::size_t threads, Opt o, std::size_t rows, double rtol) {
  std::vector<T> l1, ln;
  const std::vector<T> init = train<T>(0, o, rows, 0);
  const std::vector<T> one = train<T>(0, o, rows, 5, &l1);
  const std::vector<T> many = train<T>(threads, o, rows, 5, &ln);
  expect_close(many, one, rtol);
  for (std::size_t s = 0; s < l1.size(); ++s)
    EXPECT_NEAR(double(ln[s]), double(l1[s]), rtol * std::abs(double(l1[s]))) << "step " << s;
  // Training moved the parameters by far more than the tolerance: the check has teeth (a
  // gradient summed instead of averaged, or a shard dropped, lands far outside it).
  double moved = 0;
  for (std::size_t i = 0; i < init.size(); ++i)
    moved = std::max(moved, std::abs(double(one[i]) - double(init[i])));
  EXPECT_GT(moved, 1e3 * rtol);
}

TEST(DistThread, TwoThreadsSGDFloatEqualsOneThread) {
  check_equivalence<float>(2, Opt::kSGD, 16, 1e-5);
}
TEST(DistThread, TwoThreadsAdamFloatEqualsOneThread) {
  check_equivalence<float>(2, Opt::kAdam, 16, 1e-5);
}
TEST(DistThread, TwoThreadsSGDDoubleEqualsOneThread) {
  check_equivalence<double>(2, Opt::kSGD, 16, 1e-12);
}
TEST(DistThread, TwoThreadsAdamDoubleEqualsOneThread) {
  check_equivalence<double>(2, Opt::kAdam, 16, 1e-12);
}
// 13 rows over 2 threads (7 + 6) and 10 over 3 (4 + 3 + 3): shards weigh by their rows.
TEST(DistThread, UnequalShardsSGDDouble) { check_equivalence<double>(2, Opt::kSGD, 13, 1e-12); }
TEST(DistThread, UnequalShardsAdamFloatThreeThreads) {
  check_equivalence<float>(3, Opt::kAdam, 10, 1e-5);
}

// One thread is the plain training step, bit for bit.
TEST(DistThread, OneThreadIsBitIdenticalToPlainTraining) {
  std::vector<float> l0, l1;
  const auto plain = train<float>(0, Opt::kAdam, 16, 5, &l0);
  const auto one = train<float>(1, Opt::kAdam, 16, 5, &l1);
  EXPECT_EQ(plain, one);
  EXPECT_EQ(l0, l1);
}

TEST(DistThread, ShardsCoverTheBatch) {
  EXPECT_EQ(dist::shard_begin(13, 2, 0), 0u);
  EXPECT_EQ(dist::shard_begin(13, 2, 1), 7u);
  EXPECT_EQ(dist::shard_begin(13, 2, 2), 13u);
  EXPECT_EQ(dist::shard_begin(10, 3, 1), 4u);
  EXPECT_EQ(dist::shard_begin(10, 3, 2), 7u);
}

// step(rows, loss, optimizer) — the update split over the threads — equals backward() followed
// by optimizer.step() and zero_grad(), bit for bit, for every optimizer rule.
template <class T>
void check_fused_step(std::size_t threads, std::size_t rows, int rule) {
  constexpr std::size_t steps = 4;
  Data<T> d(rows * steps, 11);
  auto make = [&](nn::MLP<T>& m) -> std::unique_ptr<nn::Optimizer<T>> {
    switch (rule) {
      case 0:
        return std::make_unique<nn::SGD<T>>(m.parameters(), nn::SGDOptions{0.3, 0.9, true});
      case 1:
        return std::make_unique<nn::Adam<T>>(m.parameters(), nn::AdamOptions{0.05});
      case 2:
        return std::make_unique<nn::AdamW<T>>(m.parameters(),
                                              nn::AdamWOptions{0.05, 0.9, 0.99, 1e-8, 0.1});
      default:
        return std::make_unique<nn::RMSprop<T>>(
            m.parameters(), nn::RMSpropOptions{0.01, 0.9, 1e-8, 0.01, 0.5, true});
    }
  };
  // 37 and 61 hidden units: parameters whose sizes are not multiples of the vector width, and
  // one (37×61 = 2257 elements) that spans several of the reduction's 1024-element blocks.
  nn::MLP<T> a({Data<T>::kIn, 37, 61, Data<T>::kClasses}, nn::Activation::kTanh, 9);
  nn::MLP<T> b = a;
  auto oa = make(a), ob = make(b);
  dist::ThreadDataParallel<T, nn::MLP<T>> da(a, threads), db(b, threads);
  for (std::size_t s = 0; s < steps; ++s) {
    auto fn = [&](nn::MLP<T>& m, Tape<T>& t, std::size_t lo, std::size_t hi) {
      return shard_loss(m, t, d, rows, s, lo, hi);
    };
    const T la = da.backward(rows, fn);
    oa->step();
    oa->zero_grad();
    const T lb = db.step(rows, fn, *ob);
    ASSERT_EQ(la, lb) << "step " << s;
  }
  EXPECT_EQ(flat(a), flat(b)) << "rule " << rule << ", " << threads << " threads";
  for (Parameter<T>* p : b.parameters())
    for (std::size_t i = 0; i < p->size(); ++i) ASSERT_EQ(p->grad_data()[i], T(0));
}

TEST(DistThread, FusedStepEqualsBackwardThenStepBitForBit) {
  for (int rule = 0; rule < 4; ++rule) {
    check_fused_step<float>(2, 16, rule);
    check_fused_step<double>(3, 13, rule);
  }
}

TEST(DistThread, FusedStepRefusesAnOptimizerOfOtherParameters) {
  Data<float> d(8, 2);
  nn::MLP<float> model({Data<float>::kIn, 8, Data<float>::kClasses}, nn::Activation::kTanh, 4);
  nn::MLP<float> other = model;
  dist::ThreadDataParallel<float, nn::MLP<float>> dp(model, 2);
  auto fn = [&](nn::MLP<float>& m, Tape<float>& t, std::size_t b, std::size_t e) {
    return shard_loss(m, t, d, 8, 0, b, e);
  };
  nn::SGD<float> wrong(other.parameters(), 0.1f);
  EXPECT_THROW(dp.step(8, fn, wrong), UsageError);
  auto ps = model.parameters();
  std::swap(ps[0], ps[1]);
  nn::SGD<float> reordered(ps, 0.1f);
  EXPECT_THROW(dp.step(8, fn, reordered), UsageError);
  ps.pop_back();
  nn::SGD<float> fewer(ps, 0.1f);
  EXPECT_THROW(dp.step(8, fn, fewer), UsageError);
  for (Parameter<float>* p : model.parameters())  // refused before any shard ran
    for (std::size_t i = 0; i < p->size(); ++i) ASSERT_EQ(p->grad_data()[i], 0.0f);
}

TEST(DistThread, NoAllocationPerStep) {
  constexpr std::size_t rows = 32, steps = 8;
  Data<float> d(rows * steps, 5);
  nn::MLP<float> model({Data<float>::kIn, 32, Data<float>::kClasses}, nn::Activation::kRelu, 1);
  nn::Adam<float> adam(model.parameters(), nn::AdamOptions{1e-2});
  dist::ThreadDataParallel<float, nn::MLP<float>> dp(model, 2);
  std::size_t s = 0;
  auto fn = [&](nn::MLP<float>& m, Tape<float>& t, std::size_t b, std::size_t e) {
    return shard_loss(m, t, d, rows, s, b, e);
  };
  auto step = [&] {
    dp.backward(rows, fn);
    adam.step();
    adam.zero_grad();
  };
  for (; s < 2; ++s) step();  // the tapes grow to their size
  wengert::testing::AllocCounter c;
  for (; s < steps; ++s) step();
  EXPECT_EQ(c.count(), 0u);
  // The fused step: reduction, update and zeroing on every thread.
  s = 0;
  for (; s < 2; ++s) dp.step(rows, fn, adam);
  wengert::testing::AllocCounter c2;
  for (; s < steps; ++s) dp.step(rows, fn, adam);
  EXPECT_EQ(c2.count(), 0u);
}

TEST(DistThread, FailingShardThrowsToTheCallerAndZeroesTheGradients) {
  constexpr std::size_t rows = 8;
  Data<float> d(rows, 2);
  nn::MLP<float> model({Data<float>::kIn, 8, Data<float>::kClasses}, nn::Activation::kTanh, 4);
  dist::ThreadDataParallel<float, nn::MLP<float>> dp(model, 2);
  bool fail = true;
  auto fn = [&](nn::MLP<float>& m, Tape<float>& t, std::size_t b, std::size_t e) {
    if (fail && b > 0) throw std::runtime_error("disk on fire");
    return shard_loss(m, t, d, rows, 0, b, e);
  };
  // Gradients held before the call: shard 0 adds into them before shard 1 fails, so the
  // documented outcome is zero, not a partial sum.
  for (Parameter<float>* p : model.parameters()) p->grad() = xt::ones<float>(p->grad().shape());
  try {
    dp.backward(rows, fn);
    FAIL() << "no exception";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("shard 1 of 2 (rows 4..8"), std::string::npos) << what;
    EXPECT_NE(what.find("disk on fire"), std::string::npos) << what;
    EXPECT_NE(what.find("gradients zeroed"), std::string::npos) << what;
  }
  for (Parameter<float>* p : model.parameters())
    for (std::size_t i = 0; i < p->size(); ++i) ASSERT_EQ(p->grad_data()[i], 0.0f) << p->name();
  // Still usable, and the failed step left nothing behind in the replicas' gradients.
  fail = false;
  const float l = dp.backward(rows, fn);
  nn::MLP<float> ref = model;
  for (Parameter<float>* p : ref.parameters()) p->zero_grad();
  Tape<float> tape;
  Var<float> lr = shard_loss(ref, tape, d, rows, 0, 0, rows);
  tape.backward(lr);
  EXPECT_NEAR(l, lr.item(), 1e-5f);
  auto got = model.parameters(), want = ref.parameters();
  for (std::size_t k = 0; k < got.size(); ++k)
    for (std::size_t i = 0; i < got[k]->size(); ++i)
      EXPECT_NEAR(got[k]->grad_data()[i], want[k]->grad_data()[i], 1e-5f);
}

TEST(DistThread, FailingShardInStepLeavesValuesAndOptimizerAlone) {
  constexpr std::size_t rows = 9;
  Data<double> d(rows, 2);
  nn::MLP<double> model({Data<double>::kIn, 8, Data<double>::kClasses}, nn::Activation::kTanh, 4);
  nn::Adam<double> adam(model.parameters(), nn::AdamOptions{0.1});
  dist::ThreadDataParallel<double, nn::MLP<double>> dp(model, 3);
  bool fail = false;
  auto fn = [&](nn::MLP<double>& m, Tape<double>& t, std::size_t b, std::size_t e) {
    if (fail && b == 3) throw ValueError("bad row");
    return shard_loss(m, t, d, rows, 0, b, e);
  };
  dp.step(rows, fn, adam);
  const std::vector<double> before = flat(model);
  nn::StateDict sd_before, sd_after;
  adam.state_dict(sd_before);
  fail = true;
  try {
    dp.step(rows, fn, adam);
    FAIL() << "no exception";
  } catch (const ValueError& e) {  // the shard's exception type is kept
    EXPECT_NE(std::string(e.what()).find("shard 1 of 3 (rows 3..6"), std::string::npos) << e.what();
  }
  EXPECT_EQ(flat(model), before);
  EXPECT_EQ(adam.steps(), 1u);
  adam.state_dict(sd_after);
  for (std::size_t i = 0; i < adam.size(); ++i) {
    const std::string key = "optimizer." + std::to_string(i) + ".exp_avg";
    ASSERT_TRUE(sd_before.find(key) && sd_after.find(key)) << key;
    EXPECT_EQ(sd_before.find(key)->as<double>(), sd_after.find(key)->as<double>()) << key;
  }
  for (Parameter<double>* p : model.parameters())
    for (std::size_t i = 0; i < p->size(); ++i) ASSERT_EQ(p->grad_data()[i], 0.0);
}

// for_each_shard: each thread evaluates its shard with the master's current values (replicas
// refreshed after an update), under its own no-grad guard; errors reach the caller.
TEST(DistThread, ForEachShardEvaluatesWithTheMastersValues) {
  constexpr std::size_t rows = 11;
  Data<double> d(rows, 3);
  nn::MLP<double> model({Data<double>::kIn, 8, Data<double>::kClasses}, nn::Activation::kTanh, 4);
  dist::ThreadDataParallel<double, nn::MLP<double>> dp(model, 3);
  for (Parameter<double>* p : model.parameters()) p->data()[0] += 0.5;  // after the replicas
  std::vector<double> got(rows * Data<double>::kClasses, -1.0);
  std::vector<int> thread_of(rows, -1);
  auto eval = [&](nn::MLP<double>& m, Tape<double>& t, std::size_t b, std::size_t e) {
    NoGradGuard no_grad;
    auto x = t.constant_view(&d.x[b * Data<double>::kIn], Shape{e - b, Data<double>::kIn});
    Var<double> z = m.forward(t, x);
    std::copy(z.data(), z.data() + z.size(),
              got.begin() + std::ptrdiff_t(b * Data<double>::kClasses));
    for (std::size_t i = b; i < e; ++i)
      thread_of[i] = int(&t == &dp.tape(1)) + 2 * int(&t == &dp.tape(2));
  };
  dp.for_each_shard(rows, eval);
  Tape<double> tape;
  Var<double> want =
      model.forward(tape, tape.constant_view(d.x.data(), Shape{rows, Data<double>::kIn}));
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want.data()[i]) << i;
  EXPECT_EQ(thread_of, (std::vector<int>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2}));
  for (Parameter<double>* p : model.parameters())
    for (std::size_t i = 0; i < p->size(); ++i) ASSERT_EQ(p->grad_data()[i], 0.0);
  auto bad = [&](nn::MLP<double>&, Tape<double>&, std::size_t b, std::size_t) {
    if (b == 8) throw ShapeError("odd shard");
  };
  try {
    dp.for_each_shard(rows, bad);
    FAIL() << "no exception";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("shard 2 of 3 (rows 8..11"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(dp.for_each_shard(2, eval), UsageError);
}

TEST(DistThread, NonScalarLossAndTooSmallBatchAreUsageErrors) {
  Data<float> d(4, 2);
  nn::MLP<float> model({Data<float>::kIn, 4, Data<float>::kClasses}, nn::Activation::kTanh, 4);
  dist::ThreadDataParallel<float, nn::MLP<float>> dp(model, 3);
  auto logits = [&](nn::MLP<float>& m, Tape<float>& t, std::size_t b, std::size_t e) {
    return m.forward(t,
                     t.constant_view(&d.x[b * Data<float>::kIn], Shape{e - b, Data<float>::kIn}));
  };
  EXPECT_THROW(dp.backward(3, logits), UsageError);
  EXPECT_THROW(dp.backward(2, logits), UsageError);
  EXPECT_THROW((dist::ThreadDataParallel<float, nn::MLP<float>>(model, 0)), UsageError);
}

}  // namespace

namespace {

// A model with batch norm: conv 3×3 (1→3) → batch norm → relu → linear, on 4×4 images.
struct BnNet : nn::Module<double> {
  nn::Conv2d<double> conv{1, 3, 3, 3, {1, 1, 1}, std::uint64_t{5}, nn::Init::kHeUniform, "conv"};
  nn::BatchNorm2d<double> bn{3, 0.25, 1e-5, "bn"};
  nn::Linear<double> fc{3 * 4 * 4, 2, std::uint64_t{6}, nn::Init::kXavierUniform, "fc"};
  Var<double> forward(Tape<double>& tape, const Var<double>& x) {
    return fc.forward(tape, flatten(relu(bn.forward(tape, conv.forward(tape, x))), 1));
  }
  void visit(nn::ModuleVisitor<double>& v) override {
    v.module("conv", conv);
    v.module("bn", bn);
    v.module("fc", fc);
  }
};

}  // namespace

// Replicas follow the master's buffers (batch norm's running statistics) and modes: the
// master's running statistics come from shard 0's rows alone (a replica's own updates are
// dropped), and after master.eval() every shard evaluates with the master's statistics in
// eval mode, giving exactly the master's own outputs (without the mirroring, replica 1 would
// evaluate in training mode, or with the statistics of its own rows).
TEST(DistThread, ReplicasFollowTheMastersBuffersAndModes) {
  constexpr std::size_t rows = 10, steps = 3;
  std::vector<double> x(rows * steps * 16);
  std::vector<std::int32_t> y(rows * steps);
  std::mt19937 rng(3);
  std::normal_distribution<double> N(0.5, 2.0);
  for (double& v : x) v = N(rng);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = std::int32_t(i % 3 == 0);
  BnNet model;
  BnNet plain = model;  // sees shard 0's rows of each step, with the master's parameters
  dist::ThreadDataParallel<double, BnNet> dp(model, 2);
  nn::SGD<double> opt(model.parameters(), 0.1);
  const std::size_t half = dist::shard_begin(rows, 2, 1);
  auto image = [&](Tape<double>& t, std::size_t first, std::size_t n) {
    return t.constant_view(&x[first * 16], Shape{n, 1, 4, 4});
  };
  Tape<double> plain_tape;
  for (std::size_t s = 0; s < steps; ++s) {
    const auto mp = model.parameters(), pp = plain.parameters();
    for (std::size_t i = 0; i < mp.size(); ++i)
      std::copy(mp[i]->data(), mp[i]->data() + mp[i]->size(), pp[i]->data());
    {
      NoGradGuard no_grad;
      plain_tape.clear();
      plain.forward(plain_tape, image(plain_tape, s * rows, half));
    }
    dp.step(
        rows,
        [&](BnNet& m, Tape<double>& t, std::size_t b, std::size_t e) {
          return softmax_cross_entropy(m.forward(t, image(t, s * rows + b, e - b)),
                                       &y[s * rows + b], e - b);
        },
        opt);
  }
  const Parameter<double>* mine[2] = {&model.bn.running_mean(), &model.bn.running_var()};
  const Parameter<double>* want_stats[2] = {&plain.bn.running_mean(), &plain.bn.running_var()};
  for (int k = 0; k < 2; ++k)
    for (std::size_t c = 0; c < 3; ++c) {
      EXPECT_EQ(mine[k]->data()[c], want_stats[k]->data()[c]) << k << " " << c;
      EXPECT_NE(mine[k]->data()[c], double(k)) << "running statistics did not move";
    }
  model.eval();
  std::vector<double> got(rows * 2, -1.0);
  dp.for_each_shard(rows, [&](BnNet& m, Tape<double>& t, std::size_t b, std::size_t e) {
    NoGradGuard no_grad;
    Var<double> z = m.forward(t, image(t, b, e - b));
    std::copy(z.data(), z.data() + z.size(), &got[b * 2]);
  });
  EXPECT_FALSE(model.training());
  Tape<double> tape;
  Var<double> want = model.forward(tape, image(tape, 0, rows));
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want.data()[i]) << i;
}
