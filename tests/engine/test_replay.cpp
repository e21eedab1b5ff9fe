// Tape::replay and Tape::set_input: a step recorded once and replayed against new inputs and
// parameter values gives the losses and gradients of a fresh recording of the same step, bit
// for bit; shape changes, unreplayable ops, moved parameters, refilled labels out of range and
// misuse (wrong thread, inside a closure) are clear errors; a replayed step allocates nothing.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.hpp"

namespace {

using namespace wengert;

template <class T>
void fill_random(T* p, std::size_t n, std::mt19937_64& rng, T lo = T(-1), T hi = T(1)) {
  std::uniform_real_distribution<double> u(lo, hi);
  for (std::size_t i = 0; i < n; ++i) p[i] = T(u(rng));
}

template <class T>
bool same_bits(const T* a, const T* b, std::size_t n) {
  return std::memcmp(a, b, n * sizeof(T)) == 0;
}

// A step touching every replayable op family: linear, matmul (transposed), bias_add, tanh,
// sigmoid, relu, broadcasting mul/add/sub, a scalar multiple, sum/mean (whole and along an
// axis), a reshape view, softmax cross-entropy on labels, sigmoid BCE, BCE on probabilities
// and mse, plus a variable leaf (its gradient is compared too).
template <class T>
struct Model {
  static constexpr std::size_t kBatch = 8, kIn = 5, kHidden = 6, kClasses = 4;
  Parameter<T> W1{Shape{kIn, kHidden}}, b1{Shape{kHidden}};
  Parameter<T> W2{Shape{kClasses, kHidden}}, b2{Shape{kClasses}}, scale{Shape{kClasses}};
  std::vector<T> batch = std::vector<T>(kBatch * kIn);
  std::vector<T> shift = std::vector<T>(kHidden);
  std::vector<T> targets = std::vector<T>(kBatch * kClasses);
  std::vector<std::int32_t> labels = std::vector<std::int32_t>(kBatch);

  explicit Model(std::mt19937_64& rng) {
    for (Parameter<T>* p : params()) fill_random(p->data(), p->size(), rng, T(-0.5), T(0.5));
    refill(rng);
  }
  std::vector<Parameter<T>*> params() { return {&W1, &b1, &W2, &b2, &scale}; }
  void refill(std::mt19937_64& rng) {
    fill_random(batch.data(), batch.size(), rng);
    fill_random(shift.data(), shift.size(), rng);
    fill_random(targets.data(), targets.size(), rng, T(0), T(1));
    for (auto& l : labels) l = std::int32_t(rng() % kClasses);
  }

  struct Handles {
    Var<T> x, s, loss;
  };
  Handles record(Tape<T>& tape) {
    Var<T> x = tape.constant_view(batch.data(), Shape{kBatch, kIn});
    Var<T> s = tape.variable(shift.data(), Shape{kHidden});
    Var<T> h = tanh(linear(x, tape.param(W1), tape.param(b1)) - s);
    Var<T> z = bias_add(matmul(h, tape.param(W2), false, true), tape.param(b2));
    Var<T> zs = z * tape.param(scale) + T(0.25) * z;
    Var<T> flat = reshape(zs, Shape{kBatch * kClasses});
    Var<T> ce = softmax_cross_entropy(zs, labels.data(), labels.size());
    Var<T> y = tape.constant_view(targets.data(), Shape{kBatch, kClasses});
    Var<T> bce = sigmoid_binary_cross_entropy(zs, y);
    Var<T> pbce = binary_cross_entropy(sigmoid(zs), y);
    Var<T> sq = mse(relu(zs), y);
    Var<T> r = mean(sum(h, 1)) * T(0.01) + sum(flat) * T(0.001);
    return {x, s, ce + bce + pbce + sq + r};
  }
};

template <class T>
void replay_matches_fresh_recording() {
  std::mt19937_64 rng(7);
  Model<T> m(rng);
  Tape<T> replayed, fresh;
  const auto rec = m.record(replayed);
  replayed.backward(rec.loss);  // the recording's own step
  for (Parameter<T>* p : m.params()) p->zero_grad();

  for (int step = 0; step < 4; ++step) {
    m.refill(rng);  // new batch, shift, targets and labels in the same memory
    replayed.set_input(rec.s, m.shift.data(), Shape{Model<T>::kHidden});  // a copied leaf
    replayed.replay();
    replayed.backward(rec.loss);
    std::vector<std::vector<T>> grads;
    for (Parameter<T>* p : m.params()) {
      grads.emplace_back(p->grad_data(), p->grad_data() + p->size());
      p->zero_grad();
    }
    const std::vector<T> shift_grad(rec.s.grad_data(), rec.s.grad_data() + Model<T>::kHidden);

    fresh.clear();
    const auto ref = m.record(fresh);
    fresh.backward(ref.loss);
    const T l1 = rec.loss.item(), l2 = ref.loss.item();
    ASSERT_TRUE(same_bits(&l1, &l2, 1)) << "step " << step << ": " << l1 << " vs " << l2;
    ASSERT_TRUE(same_bits(shift_grad.data(), ref.s.grad_data(), Model<T>::kHidden));
    const auto ps = m.params();
    for (std::size_t k = 0; k < ps.size(); ++k) {
      ASSERT_TRUE(same_bits(grads[k].data(), ps[k]->grad_data(), ps[k]->size()))
          << "step " << step << ", parameter " << k;
      // An SGD update, read by the next replay from the Parameter's memory.
      for (std::size_t i = 0; i < ps[k]->size(); ++i) ps[k]->data()[i] -= T(0.1) * grads[k][i];
      ps[k]->zero_grad();
    }
  }
}

TEST(Replay, MatchesAFreshRecordingBitForBitFloat) { replay_matches_fresh_recording<float>(); }
TEST(Replay, MatchesAFreshRecordingBitForBitDouble) { replay_matches_fresh_recording<double>(); }

// A CNN-shaped step through the ops ported after those of Model: conv2d, batch_norm2d (training,
// with running statistics), max_pool2d, avg_pool2d, global_avg_pool, softplus, concat, a copied
// slice, layer_norm, transpose, index_select on refilled indices, where on a refilled mask,
// sqrt, log_softmax, softmax along an axis, logsumexp, max, var, norm and bmm.
template <class T>
struct Cnn {
  Parameter<T> W{Shape{3, 2, 3, 3}}, b{Shape{3}}, gamma{Shape{3}}, beta{Shape{3}};
  Parameter<T> lg{Shape{6}}, lb{Shape{6}}, M{Shape{3, 6, 2}};
  std::vector<T> rm = std::vector<T>(3, T(0)), rv = std::vector<T>(3, T(1));
  std::vector<T> images = std::vector<T>(2 * 2 * 6 * 6);
  std::vector<std::int64_t> pick = std::vector<std::int64_t>(4);
  std::vector<std::uint8_t> mask = std::vector<std::uint8_t>(2 * 6);

  explicit Cnn(std::mt19937_64& rng) {
    for (Parameter<T>* p : params()) fill_random(p->data(), p->size(), rng, T(-0.5), T(0.5));
    refill(rng);
  }
  std::vector<Parameter<T>*> params() { return {&W, &b, &gamma, &beta, &lg, &lb, &M}; }
  void refill(std::mt19937_64& rng) {
    fill_random(images.data(), images.size(), rng);
    for (auto& k : pick) k = std::int64_t(rng() % 6);
    for (auto& m : mask) m = std::uint8_t(rng() % 2);
  }
  Var<T> record(Tape<T>& tape) {
    Var<T> x = tape.constant_view(images.data(), Shape{2, 2, 6, 6});
    BatchNormOptions<T> bn;
    bn.running_mean = rm.data();
    bn.running_var = rv.data();
    Conv2dOptions co;
    co.padding = 1;
    Var<T> h = batch_norm2d(conv2d(x, tape.param(W), tape.param(b), co), tape.param(gamma),
                            tape.param(beta), bn);    // [2,3,6,6]
    Var<T> p = reshape(max_pool2d(h), Shape{2, 27});  // [2,3,3,3]
    Var<T> q = reshape(avg_pool2d(h, Pool2dOptions{3, 3, 0}), Shape{2, 12});
    Var<T> g = global_avg_pool(softplus(h));                                      // [2,3]
    Var<T> cat = concat({p, q, g}, 1);                                            // [2,42]
    Var<T> ln = layer_norm(slice(cat, 1, 3, 9), tape.param(lg), tape.param(lb));  // [2,6]
    Var<T> sel = index_select(transpose(ln), 0, pick.data(), Shape{4});           // [4,2]
    Var<T> w = where(mask.data(), Shape{2, 6}, ln, sqrt(ln * ln + T(1)));
    Var<T> bm = bmm(ln, tape.param(M));  // [2,6] with [3,6,2]: [3,2,2]
    return sum(log_softmax(ln) * softmax(w, 0)) + mean(logsumexp(cat, 1)) + sum(max(sel, 0)) +
           sum(var(w, 1)) + norm(bm);
  }
};

template <class T>
void cnn_replay_matches_fresh_recording() {
  // Two copies of one model: `a` recorded once and replayed, `b` recorded afresh every step.
  std::mt19937_64 ra(5), rb(5);
  Cnn<T> a(ra), b(rb);
  Tape<T> replayed, fresh;
  const Var<T> loss = a.record(replayed);
  replayed.backward(loss);
  {
    const Var<T> l = b.record(fresh);
    fresh.backward(l);
  }
  for (int step = 0; step < 3; ++step) {
    for (Cnn<T>* m : {&a, &b})
      for (Parameter<T>* p : m->params()) {  // the same SGD step on both
        for (std::size_t i = 0; i < p->size(); ++i) p->data()[i] -= T(0.1) * p->grad_data()[i];
        p->zero_grad();
      }
    a.refill(ra);
    b.refill(rb);
    replayed.replay();
    replayed.backward(loss);
    fresh.clear();
    const Var<T> l = b.record(fresh);
    fresh.backward(l);
    const T l1 = loss.item(), l2 = l.item();
    ASSERT_TRUE(same_bits(&l1, &l2, 1)) << "step " << step << ": " << l1 << " vs " << l2;
    const auto pa = a.params(), pb = b.params();
    for (std::size_t k = 0; k < pa.size(); ++k)
      ASSERT_TRUE(same_bits(pa[k]->grad_data(), pb[k]->grad_data(), pa[k]->size()))
          << "step " << step << ", parameter " << k;
    // The running statistics moved once per replay, as once per fresh recording.
    ASSERT_TRUE(same_bits(a.rm.data(), b.rm.data(), 3)) << "step " << step;
    ASSERT_TRUE(same_bits(a.rv.data(), b.rv.data(), 3)) << "step " << step;
  }
  EXPECT_NE(a.rm[0], T(0));
}

TEST(Replay, CnnStepMatchesAFreshRecordingFloat) { cnn_replay_matches_fresh_recording<float>(); }
TEST(Replay, CnnStepMatchesAFreshRecordingDouble) { cnn_replay_matches_fresh_recording<double>(); }

TEST(Replay, RefilledIndicesAndNegativeSqrtAreCheckedAgain) {
  Tape<double> tape;
  std::vector<double> data{1, 2, 3, 4, 5, 6};
  std::vector<std::int32_t> ids{2, 0};
  Var<double> x = tape.constant_view(data.data(), Shape{3, 2});
  Var<double> e = embedding(x, ids.data(), Shape{2});
  Var<double> s = index_select(x, 1, ids.data() + 1, Shape{1});
  EXPECT_EQ(e.data()[0], 5.0);
  ids[1] = 3;  // out of range for the table's 3 rows: the recording's own ValueError
  try {
    tape.replay();
    FAIL() << "no ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("embedding: ids[1] = 3 is out of range for axis 0 of "
                                         "the table [3,2], of length 3"),
              std::string::npos)
        << e.what();
  }
  ids = {1, 1};   // in range for both (same memory: assigned, not reallocated)
  tape.replay();  // the tape is usable after the refused replay
  EXPECT_EQ(e.data()[0], 3.0);
  EXPECT_EQ(s.data()[0], 2.0);  // x[0, 1]

  Tape<double> t2;
  Var<double> y = t2.constant_view(data.data(), Shape{6});
  Var<double> r = sum(sqrt(y));
  data[4] = -1;
  EXPECT_THROW(t2.replay(), ValueError);
  data[4] = 5;
  t2.replay();
  (void)r;
}

TEST(Replay, ValuesFollowNewInputs) {
  // The loss actually changes with the inputs: a replay that recomputed nothing would fail.
  std::mt19937_64 rng(3);
  Model<double> m(rng);
  Tape<double> tape;
  const auto rec = m.record(tape);
  const double before = rec.loss.item();
  m.refill(rng);
  tape.replay();
  EXPECT_NE(rec.loss.item(), before);
}

TEST(Replay, ConstantViewRebindAndViewsOfIt) {
  Tape<double> tape;
  std::vector<double> a{1, 2, 3, 4, 5, 6}, b{10, 20, 30, 40, 50, 60};
  Var<double> x = tape.constant_view(a.data(), Shape{2, 3});
  Var<double> v = reshape(x, Shape{3, 2});  // a view: aliases x's memory
  Var<double> y = sum(v * v);
  EXPECT_EQ(y.item(), 91.0);
  tape.set_input(x, b.data(), Shape{2, 3});  // now aliases b; a is left alone
  tape.replay();
  EXPECT_EQ(y.item(), 9100.0);
  EXPECT_EQ(v.data(), b.data());
  EXPECT_EQ(a[0], 1.0);
}

TEST(Replay, ShapeChangesAreErrors) {
  Tape<float> tape;
  std::vector<float> data(12, 1.0f);
  Var<float> x = tape.constant(data.data(), Shape{3, 4});
  Var<float> y = sum(tanh(x));
  try {
    tape.set_input(x, data.data(), Shape{4, 3});
    FAIL() << "no ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("recorded as [3,4] but the new value is [4,3]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(tape.set_input(y, data.data(), Shape{}), UsageError);  // an op's output

  // A Parameter move-assigned over (model = MLP(...)) while an optimizer still holds its old
  // block: the recorded block is orphaned. (Without an optimizer the block is freed, and using
  // the tape at all — backward or replay — breaks the rule that Parameters outlive the tapes
  // that recorded them.)
  Parameter<float> w(Shape{2, 2});
  nn::SGD<float> keeps_the_block({&w}, 0.1f);
  Tape<float> t2;
  Var<float> l = sum(t2.param(w) * t2.param(w));
  EXPECT_THROW(t2.set_input(t2.param(w), data.data(), Shape{2, 2}), UsageError);
  w = Parameter<float>(Shape{3, 3});
  try {
    t2.replay();
    FAIL() << "no error";
  } catch (const UsageError& e) {  // move-assigned over: the recorded block is orphaned
    EXPECT_NE(std::string(e.what()).find("replaced"), std::string::npos) << e.what();
  }
  (void)l;
  Parameter<float> u(Shape{2});
  Tape<float> t3;
  Var<float> l3 = sum(t3.param(u));
  Parameter<float> bigger(Shape{5});
  u = bigger;  // copy-assigned: same block, new size
  try {
    t3.replay();
    FAIL() << "no ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("was [2] when recorded and is [5] now"), std::string::npos)
        << e.what();
  }
  (void)l3;
}

TEST(Replay, AnOpWithoutAForwardKernelIsNamedAndNothingChanges) {
  Tape<double> tape;
  std::vector<double> data{0.5, -0.5};
  Var<double> x = tape.variable(data.data(), Shape{2});
  Var<double> y = tanh(x);
  auto op = tape.begin_op("my_square", {y}, Shape{2});
  for (int i = 0; i < 2; ++i) op.out_data()[i] = op.input_data(0)[i] * op.input_data(0)[i];
  Var<double> z = op.finish([](const BackwardContext<double>& c) {
    for (int i = 0; i < 2; ++i) c.grad_data(0)[i] += 2 * c.input_data(0)[i] * c.out_grad_data()[i];
  });
  const double y0 = y.data()[0];
  tape.set_input(x, std::vector<double>{2.0, 3.0}.data(), Shape{2});
  try {
    tape.replay();
    FAIL() << "no UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'my_square' (node #2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(y.data()[0], y0);  // refused before any value changed
  (void)z;

  // dropout, the one built-in op without a forward kernel: its mask is drawn anew per step.
  std::mt19937_64 gen(1);
  Tape<double> t2;
  Var<double> d = dropout(t2.variable(data.data(), Shape{2}), 0.5, true, gen);
  EXPECT_THROW(t2.replay(), UsageError);
  (void)d;
}

TEST(Replay, ACustomOpWithAForwardKernelReplays) {
  Tape<double> tape;
  std::vector<double> data{0.5, -0.5};
  Var<double> x = tape.variable(data.data(), Shape{2});
  auto op = tape.begin_op("my_square", {x}, Shape{2});
  Var<double> z = op.finish(  // finish runs the forward kernel
      [](const ForwardContext<double>& c) {
        for (int i = 0; i < 2; ++i) c.out_data()[i] = c.input_data(0)[i] * c.input_data(0)[i];
      },
      [](const BackwardContext<double>& c) {
        for (int i = 0; i < 2; ++i)
          c.grad_data(0)[i] += 2 * c.input_data(0)[i] * c.out_grad_data()[i];
      });
  EXPECT_EQ(z.data()[1], 0.25);
  Var<double> l = sum(z);
  tape.set_input(x, std::vector<double>{2.0, 3.0}.data(), Shape{2});
  tape.replay();
  EXPECT_EQ(l.item(), 13.0);
  tape.backward(l);
  EXPECT_EQ(x.grad_data()[0], 4.0);
  EXPECT_EQ(x.grad_data()[1], 6.0);
}

TEST(Replay, RefilledArgumentsAreCheckedAgain) {
  Tape<float> tape;
  std::vector<float> logits{1, 2, 3, 4, 5, 6};
  std::vector<std::int32_t> labels{0, 2};
  Var<float> z = tape.variable(logits.data(), Shape{2, 3});
  Var<float> ce = softmax_cross_entropy(z, labels.data(), labels.size());
  labels[1] = 3;  // out of range for 3 classes
  try {
    tape.replay();
    FAIL() << "no ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("label 3 in row 1"), std::string::npos) << e.what();
  }
  try {  // the tape is half replayed: backward refuses it
    tape.backward(ce);
    FAIL() << "no UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("the last replay() threw at op 'softmax_cross_entropy'"),
              std::string::npos)
        << e.what();
  }
  labels[1] = 1;
  tape.replay();  // the tape is usable after the refused replay
  tape.backward(ce);
  EXPECT_TRUE(std::isfinite(ce.item()));

  std::vector<float> targets{0, 1, 1, 0, 0.5f, 1};
  Var<float> y = tape.constant_view(targets.data(), Shape{2, 3});
  Var<float> bce = sigmoid_binary_cross_entropy(z, y);
  targets[4] = 1.5f;
  EXPECT_THROW(tape.replay(), ValueError);
  (void)bce;
}

TEST(Replay, MisuseIsAnError) {
  Tape<double> tape;
  std::vector<double> data{1, 2};
  Var<double> x = tape.variable(data.data(), Shape{2});
  Var<double> y = sum(tanh(x));
  std::string other;
  std::thread([&] {
    try {
      tape.replay();
    } catch (const UsageError& e) {
      other = e.what();
    }
  }).join();
  EXPECT_NE(other.find("does not own this tape"), std::string::npos) << other;

  // From inside a backward closure.
  auto op = tape.begin_op("replays_in_backward", {y}, Shape{});
  op.out_data()[0] = op.input_data(0)[0];
  Tape<double>* t = &tape;
  Var<double> z = op.finish([t](const BackwardContext<double>&) { t->replay(); });
  EXPECT_THROW(tape.backward(z), UsageError);
}

TEST(Replay, ReplayedStepsAllocateNothing) {
  std::mt19937_64 rng(11);
  Model<float> m(rng);
  Tape<float> tape;
  const auto rec = m.record(tape);
  tape.backward(rec.loss);
  tape.replay();
  tape.backward(rec.loss);  // warm
  const std::vector<Parameter<float>*> params = m.params();
  wengert::testing::AllocCounter c;
  for (int i = 0; i < 3; ++i) {
    m.refill(rng);
    tape.set_input(rec.s, m.shift.data(), Shape{Model<float>::kHidden});
    tape.replay();
    tape.backward(rec.loss);
    for (Parameter<float>* p : params) p->zero_grad();
  }
  EXPECT_EQ(c.count(), 0u);
}

TEST(Replay, AnomalyModeChecksReplayedValues) {
  Tape<double> tape;
  std::vector<double> data{1, 2};
  Var<double> x = tape.constant_view(data.data(), Shape{2});
  Var<double> y = sum(x * x);
  AnomalyModeGuard on;
  data[1] = std::numeric_limits<double>::infinity();
  try {
    tape.replay();
    FAIL() << "no anomaly";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("anomaly: op 'mul'"), std::string::npos) << e.what();
  }
  (void)y;
}

}  // namespace

namespace {

TEST(Replay, AForwardKernelThatThrowsRollsTheOpBack) {
  // finish runs the forward kernel; if it throws, the op is undone as if never begun — its
  // closure too, even one that must be destroyed (this one owns heap memory: ASan would report
  // a leak or a double destruction at clear()).
  Tape<double> tape;
  std::vector<double> data{1, 2};
  Var<double> x = tape.variable(data.data(), Shape{2});
  const std::size_t before = tape.size();
  std::vector<double> owned(100, 1.0);
  {
    auto op = tape.begin_op("throws_in_forward", {x}, Shape{2});
    EXPECT_THROW(
        op.finish(
            [owned](const ForwardContext<double>&) { throw ValueError("throws_in_forward: no"); },
            [owned](const BackwardContext<double>&) {}),
        ValueError);
  }  // the builder, unfinished, rolls the op back here
  EXPECT_EQ(tape.size(), before);
  Var<double> y = sum(tanh(x));  // the tape records on as before
  tape.backward(y);
  tape.replay();
  tape.clear();
}

}  // namespace

namespace {

TEST(Replay, AForwardKernelMayNotRecord) {
  // A kernel that records (here only once replayed, so that its recording succeeds) is refused
  // with a message saying where, and the tape is left refusing backward until a good replay.
  Tape<double> tape;
  std::vector<double> data{1, 2};
  Var<double> x = tape.variable(data.data(), Shape{2});
  bool record_inside = false;
  Tape<double>* t = &tape;
  auto op = tape.begin_op("records_in_forward", {x}, Shape{2});
  Var<double> y = op.finish(
      [t, &record_inside](const ForwardContext<double>& c) {
        if (record_inside) t->constant(1.0);
        for (int i = 0; i < 2; ++i) c.out_data()[i] = c.input_data(0)[i];
      },
      [](const BackwardContext<double>& c) {
        for (int i = 0; i < 2; ++i) c.grad_data(0)[i] += c.out_grad_data()[i];
      });
  Var<double> l = sum(y);
  record_inside = true;
  try {
    tape.replay();
    FAIL() << "no UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("during replay (from inside a forward kernel)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(tape.backward(l), UsageError);
  record_inside = false;
  tape.replay();
  tape.backward(l);
  EXPECT_EQ(x.grad_data()[1], 1.0);
}

}  // namespace
