// Tests for engine/wengert/tape.hpp: recording, the backward sweep, leaves and parameters,
// fan-out, deep chains, rewind without allocation, stale handles, no-grad, detach, VJPs,
// Jacobians, threads, closure lifetime, rollback and inspection.
//
// The ops used here are written in this file against the public record API only, so these
// tests exercise the engine independently of ops/.
#include <wengert/tape.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.hpp"

using namespace wengert;

namespace {

// y = a * b (same shapes).
template <class T>
Var<T> tmul(const Var<T>& a, const Var<T>& b) {
  auto op = a.tape().begin_op("tmul", {a, b}, a.shape());
  const T *pa = op.input_data(0), *pb = op.input_data(1);
  T* out = op.out_data();
  for (std::size_t i = 0; i < op.out_size(); ++i) out[i] = pa[i] * pb[i];
  return op.finish([](const BackwardContext<T>& c) {
    const T* g = c.out_grad_data();
    if (c.needs_grad(0))
      for (std::size_t i = 0; i < c.out_size(); ++i) c.grad_data(0)[i] += g[i] * c.input_data(1)[i];
    if (c.needs_grad(1))
      for (std::size_t i = 0; i < c.out_size(); ++i) c.grad_data(1)[i] += g[i] * c.input_data(0)[i];
  });
}

// y = a + b (same shapes).
template <class T>
Var<T> tadd(const Var<T>& a, const Var<T>& b) {
  auto op = a.tape().begin_op("tadd", {a, b}, a.shape());
  for (std::size_t i = 0; i < op.out_size(); ++i)
    op.out_data()[i] = op.input_data(0)[i] + op.input_data(1)[i];
  return op.finish([](const BackwardContext<T>& c) {
    for (std::size_t k = 0; k < 2; ++k)
      if (c.needs_grad(k))
        for (std::size_t i = 0; i < c.out_size(); ++i) c.grad_data(k)[i] += c.out_grad_data()[i];
  });
}

// y = tanh(x), keeping the output for backward.
template <class T>
Var<T> ttanh(const Var<T>& x) {
  auto op = x.tape().begin_op("ttanh", {x}, x.shape());
  for (std::size_t i = 0; i < op.out_size(); ++i) op.out_data()[i] = std::tanh(op.input_data(0)[i]);
  return op.finish([](const BackwardContext<T>& c) {
    for (std::size_t i = 0; i < c.out_size(); ++i) {
      T y = c.out_data()[i];
      c.grad_data(0)[i] += c.out_grad_data()[i] * (T(1) - y * y);
    }
  });
}

// y = sum(x) → scalar.
template <class T>
Var<T> tsum(const Var<T>& x) {
  auto op = x.tape().begin_op("tsum", {x}, Shape{});
  T s = 0;
  for (std::size_t i = 0; i < op.input_size(0); ++i) s += op.input_data(0)[i];
  op.out_data()[0] = s;
  return op.finish([](const BackwardContext<T>& c) {
    for (std::size_t i = 0; i < c.input_size(0); ++i) c.grad_data(0)[i] += c.out_grad_data()[0];
  });
}

template <class T>
class TapeTyped : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(TapeTyped, Scalars);

}  // namespace

TYPED_TEST(TapeTyped, RecordsOneEntryPerOpInEvaluationOrder) {
  using T = TypeParam;
  Tape<T> tape;
  auto x = tape.variable(xt::xarray<T>{1, 2, 3});
  auto c = tape.constant(xt::xarray<T>{4, 5, 6});
  auto y = tmul(x, c);
  auto s = tsum(y);
  EXPECT_EQ(tape.size(), 4u);
  EXPECT_EQ(y.index(), 2u);
  EXPECT_EQ(s.item(), T(32));
  EXPECT_EQ(y.shape(), (Shape{3}));
}

TYPED_TEST(TapeTyped, BackwardGivesProductRuleGradients) {
  using T = TypeParam;
  Tape<T> tape;
  auto x = tape.variable(xt::xarray<T>{1, 2, 3});
  auto w = tape.variable(xt::xarray<T>{4, 5, 6});
  tape.backward(tsum(tmul(x, w)));
  EXPECT_EQ(xt::xarray<T>(x.grad()), (xt::xarray<T>{4, 5, 6}));
  EXPECT_EQ(xt::xarray<T>(w.grad()), (xt::xarray<T>{1, 2, 3}));
}

TEST(Tape, FanOutSumsContributions) {
  // y = x*x + x: dy/dx = 2x + 1; x feeds three uses.
  Tape<double> tape;
  auto x = tape.variable(3.0);
  auto y = tadd(tmul(x, x), x);
  tape.backward(y);
  EXPECT_DOUBLE_EQ(y.item(), 12.0);
  EXPECT_DOUBLE_EQ(x.grad()(0), 7.0);
}

TEST(Tape, FanOutOfAnIntermediate) {
  // h = tanh(x); y = h*h + h → dy/dx = (2h + 1)(1 − h²).
  Tape<double> tape;
  auto x = tape.variable(0.3);
  auto h = ttanh(x);
  tape.backward(tadd(tmul(h, h), h));
  double hv = std::tanh(0.3);
  EXPECT_NEAR(x.grad()(0), (2 * hv + 1) * (1 - hv * hv), 1e-15);
}

TEST(Tape, MillionOpChainBackpropagatesWithoutRecursion) {
  // x → tanh → tanh → ... (10^6 times). Recursion would overflow the stack long before.
  Tape<double> tape;
  auto x = tape.variable(0.5);
  Var<double> y = x;
  for (int i = 0; i < 1000000; ++i) y = ttanh(y);
  tape.backward(y);
  // Independent check: the same chain rule in plain loops, multiplied from the output back
  // (the sweep's order, so the rounding is the same).
  std::vector<double> factor(1000000);
  double v = 0.5, d = 1.0;
  for (int i = 0; i < 1000000; ++i) {
    v = std::tanh(v);
    factor[i] = 1 - v * v;
  }
  for (int i = 1000000; i-- > 0;) d *= factor[i];
  EXPECT_EQ(tape.size(), 1000001u);
  EXPECT_DOUBLE_EQ(y.item(), v);
  EXPECT_DOUBLE_EQ(x.grad()(0), d);
}

void* volatile g_sink;  // keeps the allocations below from being optimised away

TEST(Tape, TheAllocationCounterSeesAllocations) {
  // Every "allocates nothing" test relies on this counter: it must see operator new and (in
  // builds that count malloc) the tape's own growth, and attribute none of it to OpenBLAS.
  wengert::testing::AllocCounter c;
  g_sink = ::operator new(64);
  ::operator delete(g_sink);
  EXPECT_EQ(c.count(), 1u);
#ifndef WENGERT_NO_MALLOC_COUNT
  c.reset();
  g_sink = std::malloc(32);
  std::free(g_sink);
  EXPECT_EQ(c.count(), 1u);
  c.reset();
  {
    Tape<float> tape;  // the first recording grows the node list and the arena
    auto x = tape.variable(1.0f);
    tape.backward(ttanh(x));
  }
  EXPECT_GE(c.count(), 2u);
#endif
  EXPECT_EQ(c.blas_count(), 0u);
}

TEST(Tape, RewindAndReplayAllocatesNothing) {
  Tape<float> tape;
  Parameter<float> w(xt::xarray<float>{{0.5f, -0.25f}, {1.0f, 2.0f}});
  xt::xarray<float> input{{1, 2}, {3, 4}};
  auto step = [&] {
    tape.clear();
    auto x = tape.constant_view(input.data(), Shape{2, 2});
    auto p = tape.param(w);
    auto h = ttanh(tmul(x, p));
    auto y = tsum(tadd(h, tmul(h, p)));  // fan-out of h and p
    tape.backward(y);
    return y.item();
  };
  float first = step();  // warm-up: the arena and lists grow here
  const std::size_t cap = tape.arena_capacity();
  wengert::testing::AllocCounter counter;
  float again = 0;
  for (int i = 0; i < 100; ++i) again = step();
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_EQ(tape.arena_capacity(), cap);
  EXPECT_EQ(first, again);
}

TEST(Tape, StaleHandleThrows) {
  Tape<double> tape;
  auto x = tape.variable(1.0);
  tape.clear();
  EXPECT_THROW(x.value(), UsageError);
  EXPECT_THROW(x.grad(), UsageError);
  EXPECT_FALSE(x.valid());
  auto z = tape.variable(2.0);  // the same slot, a new generation
  EXPECT_EQ(z.index(), x.index());
  try {
    ttanh(x);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("stale"), std::string::npos) << e.what();
  }
}

TEST(Tape, HandleFromAnotherTapeThrows) {
  Tape<double> a, b;
  auto x = a.variable(1.0);
  auto y = b.variable(2.0);
  try {
    tmul(y, x);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("another tape"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tmul"), std::string::npos) << e.what();
  }
  EXPECT_EQ(b.size(), 1u);  // nothing was recorded
  EXPECT_THROW(b.backward(x), UsageError);
}

TEST(Tape, EmptyHandleThrows) {
  Var<double> v;
  EXPECT_FALSE(v.valid());
  EXPECT_THROW(v.tape(), UsageError);
  EXPECT_THROW(v.value(), UsageError);
}

TEST(Tape, NoGradRecordsNoBackward) {
  Tape<double> tape;
  auto x = tape.variable(2.0);
  Var<double> y;
  {
    NoGradGuard guard;
    EXPECT_FALSE(grad_enabled());
    y = ttanh(x);
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_FALSE(y.requires_grad());
  EXPECT_DOUBLE_EQ(y.item(), std::tanh(2.0));
  EXPECT_THROW(tape.backward(y), UsageError);
  EXPECT_THROW(y.grad(), UsageError);
  // Mixed: z = x * y, y is a constant in the graph.
  auto z = tmul(x, y);
  tape.backward(z);
  EXPECT_DOUBLE_EQ(x.grad()(0), std::tanh(2.0));
}

TEST(Tape, DetachStopsGradientWithoutCopy) {
  Tape<double> tape;
  auto x = tape.variable(3.0);
  auto d = tape.detach(x);
  EXPECT_EQ(d.data(), x.data());  // aliases, no copy
  EXPECT_FALSE(d.requires_grad());
  auto y = tmul(x, d);  // dy/dx = d = 3, not 2x = 6
  tape.backward(y);
  EXPECT_DOUBLE_EQ(x.grad()(0), 3.0);
}

TEST(Tape, NonScalarBackwardNeedsSeed) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{1, 2});
  auto y = ttanh(x);
  try {
    tape.backward(y);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("[2]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tape.backward(y, xt::xarray<double>{1, 2, 3}), ShapeError);
}

TEST(Tape, SeededVectorJacobianProduct) {
  Tape<double> tape;
  xt::xarray<double> xv{0.1, -0.7, 1.3};
  auto x = tape.variable(xv);
  auto y = ttanh(x);
  xt::xarray<double> u{2.0, -1.0, 0.5};
  tape.backward(y, u);
  for (std::size_t i = 0; i < 3; ++i) {
    double t = std::tanh(xv(i));
    EXPECT_DOUBLE_EQ(x.grad()(i), u(i) * (1 - t * t));
  }
}

TEST(Tape, SeededBackwardAddsTheSeedInPlaceAndAllocatesNothing) {
  // The seed expression is accumulated straight into the output's adjoint: repeated seeded
  // sweeps on one recording neither allocate nor grow the arena, and a lazy expression works.
  Tape<double> tape;
  xt::xarray<double> xv{{0.1, -0.7, 1.3}, {0.4, 0.0, -2.0}};
  auto x = tape.variable(xv);
  auto y = ttanh(x);
  xt::xarray<double> u{{2.0, -1.0, 0.5}, {1.0, 3.0, -0.25}};
  tape.backward(y, u);  // warm-up (the sweep's marks grow once)
  const std::size_t cap = tape.arena_capacity();
  wengert::testing::AllocCounter counter;
  for (int i = 0; i < 1000; ++i) tape.backward(y, u);
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_EQ(tape.arena_capacity(), cap);
  tape.backward(y, 2.0 * u);  // an unevaluated expression
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j) {
      const double t = std::tanh(xv(i, j));
      EXPECT_DOUBLE_EQ(x.grad()(i, j), 2.0 * u(i, j) * (1 - t * t));
    }
  // A seed of the wrong shape is refused before anything is touched.
  const xt::xarray<double> before = x.grad();
  try {
    tape.backward(y, xt::xarray<double>{1.0, 2.0, 3.0});
    ADD_FAILURE() << "a [3] seed was accepted for a [2,3] output";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("backward: seed is [3] but the output is [2,3]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(xt::xarray<double>(x.grad()), before);
  EXPECT_EQ(tape.arena_capacity(), cap);
}

TEST(Tape, ASeedMayBeReadFromAnAdjointOfTheSameTape) {
  // Chained VJPs on one recording: y = Σ h², h = tanh(x). After backward(y), h's adjoint is
  // dy/dh = 2h; seeding backward(h) with that very adjoint (a view, an expression of it, or its
  // raw pointer) must give dy/dx again — the sweep's zeroing must not wipe the seed first.
  Tape<double> tape;
  xt::xarray<double> xv{0.3, -1.1, 0.8};
  auto x = tape.variable(xv);
  auto h = ttanh(x);
  auto y = tsum(tmul(h, h));
  tape.backward(y);
  const xt::xarray<double> dydx = x.grad();
  for (std::size_t i = 0; i < 3; ++i) {
    const double t = std::tanh(xv(i));
    EXPECT_DOUBLE_EQ(dydx(i), 2 * t * (1 - t * t));
  }
  tape.backward(h, h.grad());
  EXPECT_EQ(xt::xarray<double>(x.grad()), dydx);
  tape.backward(h, h.grad_data(), nullptr, 0);
  EXPECT_EQ(xt::xarray<double>(x.grad()), dydx);
  tape.backward(h, 0.5 * h.grad());  // h's adjoint is dy/dh again after the last sweep
  for (std::size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(x.grad()(i), 0.5 * dydx(i));
}

TEST(Tape, ChosenInputsTheOutputDoesNotDependOnReadZero) {
  // backward(y, {u}) where y does not depend on u: u's gradient is zero, not what an earlier
  // sweep left there.
  Tape<double> tape;
  auto x = tape.variable(0.5);
  auto u = tape.variable(2.0);
  auto z = tmul(u, u);
  tape.backward(z);
  EXPECT_DOUBLE_EQ(u.grad()(0), 4.0);
  auto y = ttanh(x);
  tape.backward(y, {u});
  EXPECT_DOUBLE_EQ(u.grad()(0), 0.0);
}

TEST(Tape, ViewsOfEveryRankAllocateNothing) {
  // value() and grad() hold their shape inline up to Shape::kMaxRank.
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>(xt::ones<double>({2, 1, 2, 1, 2, 1})));
  auto y = tsum(ttanh(x));
  tape.backward(y);
  wengert::testing::AllocCounter counter;
  double s = 0;
  for (int i = 0; i < 10; ++i) {
    auto v = x.value();
    auto g = x.grad();
    s += v(1, 0, 1, 0, 1, 0) + g(0, 0, 1, 0, 0, 0);
  }
  EXPECT_EQ(counter.count(), 0u);
  EXPECT_EQ(x.value().dimension(), 6u);
  EXPECT_DOUBLE_EQ(s, 10 * (1.0 + (1 - std::tanh(1.0) * std::tanh(1.0))));
}

TEST(Tape, DefaultParameterIsAnEmptyTensor) {
  Parameter<double> p;
  EXPECT_EQ(p.shape(), (Shape{0}));
  EXPECT_EQ(p.size(), 0u);
  Tape<double> tape;
  auto y = ttanh(tape.param(p));  // an op on zero elements, not a read of missing storage
  EXPECT_EQ(y.shape(), (Shape{0}));
  auto z = tsum(y);
  tape.backward(z);
  EXPECT_EQ(z.item(), 0.0);
}

TEST(Tape, BackwardWithRespectToChosenInputsOnly) {
  Tape<double> tape;
  Parameter<double> p(xt::xarray<double>{5.0});
  auto a = tape.variable(2.0);
  auto b = tape.variable(3.0);
  auto pv = tape.param(p);
  auto y = tmul(tmul(a, b), pv);
  tape.backward(y, {a});
  EXPECT_DOUBLE_EQ(a.grad()(0), 15.0);
  EXPECT_DOUBLE_EQ(p.grad()(0), 0.0);  // not chosen: untouched
  // b was not chosen: its adjoint holds nothing from this sweep.
  EXPECT_DOUBLE_EQ(b.grad()(0), 0.0);
  tape.backward(y, {pv});
  EXPECT_DOUBLE_EQ(p.grad()(0), 6.0);
}

TEST(Tape, JacobianByRepeatedVJPs) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{0.2, -0.4});
  auto w = tape.constant(xt::xarray<double>{3.0, 5.0});
  auto y = ttanh(tmul(x, w));  // diagonal Jacobian
  auto J = tape.jacobian(y, x);
  ASSERT_EQ(J.shape()[0], 2u);
  ASSERT_EQ(J.shape()[1], 2u);
  for (int i = 0; i < 2; ++i) {
    double t = std::tanh(x.value()(i) * w.value()(i));
    EXPECT_DOUBLE_EQ(J(i, i), w.value()(i) * (1 - t * t));
    EXPECT_DOUBLE_EQ(J(i, 1 - i), 0.0);
  }
  // y that does not depend on a variable x: zeros.
  auto x2 = tape.variable(xt::xarray<double>{1.0});
  EXPECT_EQ(tape.jacobian(y, x2), xt::zeros<double>({2, 1}));
}

// jacobian(y, c) for a constant c used to return zeros quietly. It is refused now, like a node
// that needs no gradient in backward's wrt (which used to be ignored quietly too).
TEST(Tape, DerivativesWithRespectToANodeThatNeedsNoGradientAreRefused) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{0.2, -0.4});
  auto w = tape.constant(xt::xarray<double>{3.0, 5.0});
  auto y = ttanh(tmul(x, w));
  auto d = tape.detach(x);
  Var<double> ng;
  {
    NoGradGuard no_grad;
    ng = tape.variable(1.0);
  }
  auto expect = [&](const std::function<void()>& f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "accepted: " << what;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("needs no gradient"), std::string::npos) << e.what();
    }
  };
  expect([&] { tape.jacobian(y, w); }, "jacobian: argument 1 (node #1, 'constant' [2])");
  expect([&] { tape.jacobian(y, d); }, "jacobian: argument 1 (node #4, 'detach' [2])");
  expect([&] { tape.jacobian(y, ng); }, "jacobian: argument 1 (node #5, 'variable' [])");
  auto loss = tsum(y);
  expect([&] { tape.backward(loss, {x, w}); }, "backward: argument 2 (node #1, 'constant' [2])");
  expect([&] { tape.backward(loss, {d}); }, "backward: argument 1 (node #4, 'detach' [2])");
  EXPECT_EQ(tape.size(), 7u);
  tape.backward(loss, {x});  // still fine
  EXPECT_NE(x.grad()(0), 0.0);
}

TEST(Tape, ParameterGradientAccumulatesAcrossTapesUntilZeroed) {
  Parameter<double> p(xt::xarray<double>{2.0, -1.0});
  for (int round = 0; round < 3; ++round) {
    Tape<double> tape;
    auto w = tape.param(p);
    tape.backward(tsum(tmul(w, w)));  // d/dw = 2w
  }
  EXPECT_DOUBLE_EQ(p.grad()(0), 12.0);
  EXPECT_DOUBLE_EQ(p.grad()(1), -6.0);
  p.zero_grad();
  EXPECT_DOUBLE_EQ(p.grad()(0), 0.0);
}

TEST(Tape, BackwardTwiceRecomputesTapeAdjointsAndAccumulatesParameters) {
  Parameter<double> p(xt::xarray<double>{3.0});
  Tape<double> tape;
  auto x = tape.variable(2.0);
  auto y = tmul(x, tape.param(p));
  tape.backward(y);
  tape.backward(y);
  EXPECT_DOUBLE_EQ(x.grad()(0), 3.0);  // tape adjoints restart from zero each sweep
  EXPECT_DOUBLE_EQ(p.grad()(0), 4.0);  // parameter adjoints accumulate
}

TEST(Tape, NodesRecordedAfterTheOutputReadZeroNotAnEarlierSweep) {
  Tape<double> tape;
  auto x = tape.variable(2.0);
  auto y1 = tmul(x, x);   // recorded first
  auto y2 = tmul(y1, x);  // recorded after y1: x³
  tape.backward(y2);
  EXPECT_DOUBLE_EQ(x.grad()(0), 12.0);
  EXPECT_DOUBLE_EQ(y2.grad()(0), 1.0);
  tape.backward(y1);  // y2 lies after y1: not walked, and its adjoint restarts from zero
  EXPECT_DOUBLE_EQ(x.grad()(0), 4.0);
  EXPECT_DOUBLE_EQ(y1.grad()(0), 1.0);
  EXPECT_DOUBLE_EQ(y2.grad()(0), 0.0);
}

TEST(Tape, AnEmptyParameterHasAnEmptyGradient) {
  Parameter<double> p(Shape{0});
  Tape<double> tape;
  auto v = tape.param(p);
  EXPECT_TRUE(v.requires_grad());
  EXPECT_EQ(v.grad().size(), 0u);  // found by the fuzzer: it threw "needs no gradient"
  auto c = tape.constant(xt::xarray<double>{1.0});
  EXPECT_THROW(c.grad(), UsageError);  // a constant still has none
}

TEST(Tape, ClosuresAreDestroyedOnClearAndDestruction) {
  auto token = std::make_shared<int>(7);
  {
    Tape<double> tape;
    auto x = tape.variable(1.0);
    auto op = tape.begin_op("holds", {x}, x.shape());
    op.out_data()[0] = 1.0;
    op.finish([token](const BackwardContext<double>&) {});
    EXPECT_EQ(token.use_count(), 2);
    tape.clear();
    EXPECT_EQ(token.use_count(), 1);
    auto x2 = tape.variable(1.0);
    auto op2 = tape.begin_op("holds", {x2}, x2.shape());
    op2.finish([token](const BackwardContext<double>&) {});
    EXPECT_EQ(token.use_count(), 2);
  }
  EXPECT_EQ(token.use_count(), 1);
}

TEST(Tape, ThrowingForwardRollsTheTapeBack) {
  Tape<double> tape;
  auto x = tape.variable(1.0);
  const std::size_t before = tape.size();
  EXPECT_THROW(
      {
        auto op = tape.begin_op("fails", {x}, Shape{1000});
        throw ValueError("fails: forward refused");
      },
      ValueError);
  EXPECT_EQ(tape.size(), before);
  auto y = ttanh(x);  // the tape is usable and the next node takes the freed slot
  EXPECT_EQ(y.index(), before);
  tape.backward(y);
}

TEST(Tape, NestedBeginOpIsRejected) {
  Tape<double> tape;
  auto x = tape.variable(1.0);
  auto op = tape.begin_op("outer", {x}, x.shape());
  EXPECT_THROW(tape.begin_op("inner", {x}, x.shape()), UsageError);
  op.out_data()[0] = 0;
  op.finish([](const BackwardContext<double>&) {});
}

TEST(Tape, LeavesCannotBeRecordedInsideAnOp) {
  // The op's node must stay the last one while it is built: a leaf recorded between begin_op
  // and finish is refused, naming the op, and the tape is left as it was.
  Tape<double> tape;
  Parameter<double> p(xt::xarray<double>{1.0});
  auto x = tape.variable(1.0);
  auto op = tape.begin_op("outer", {x}, x.shape());
  const std::size_t size = tape.size();
  for (auto record : std::vector<std::function<void()>>{
           [&] { tape.constant(2.0); }, [&] { tape.variable(2.0); }, [&] { tape.param(p); },
           [&] { tape.detach(x); }, [&] { tape.constant_view(x.data(), Shape{}); }}) {
    try {
      record();
      ADD_FAILURE() << "a leaf was recorded inside op 'outer'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("while op 'outer' is being recorded"), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(tape.size(), size);
  }
  op.out_data()[0] = 3.0;
  auto y = op.finish([](const BackwardContext<double>&) {});
  EXPECT_EQ(y.index(), size - 1);
  EXPECT_EQ(y.item(), 3.0);
}

TEST(Tape, BackwardClosuresCannotRecordSweepOrClear) {
  // A closure that recorded would move the nodes the sweep walks; one that cleared would free
  // them. Each is a UsageError, the sweep ends cleanly, and the tape works afterwards.
  for (int what = 0; what < 4; ++what) {
    Tape<double> tape;
    auto x = tape.variable(2.0);
    auto op = tape.begin_op("meddles", {x}, x.shape());
    op.out_data()[0] = 2.0;
    Tape<double>* t = &tape;
    Var<double> xx = x;
    auto y = op.finish([t, xx, what](const BackwardContext<double>& c) {
      if (what == 0) t->constant(1.0);
      if (what == 1) ttanh(xx);
      if (what == 2) t->backward(xx);
      if (what == 3) t->clear();
      c.grad_data(0)[0] += 1.0;
    });
    try {
      tape.backward(y);
      ADD_FAILURE() << "closure " << what << " was allowed";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("during backward"), std::string::npos) << e.what();
    }
    EXPECT_EQ(tape.size(), 2u) << what;
    auto z = ttanh(x);  // recording works again
    tape.backward(z);
    EXPECT_NEAR(x.grad()(0), 1.0 - std::tanh(2.0) * std::tanh(2.0), 1e-15);
  }
}

TEST(Tape, AnotherThreadCannotRecordWhileOneOwnsTheTape) {
  Tape<double> tape;
  auto x = tape.variable(1.0);
  bool threw = false;
  std::thread t([&] {
    try {
      ttanh(x);
    } catch (const UsageError&) {
      threw = true;
    }
  });
  t.join();
  EXPECT_TRUE(threw);
  // After clear() the tape may move to another thread.
  tape.clear();
  double got = 0;
  std::thread t2([&] {
    auto v = tape.variable(0.5);
    auto y = ttanh(v);
    tape.backward(y);
    got = v.grad()(0);
  });
  t2.join();
  EXPECT_DOUBLE_EQ(got, 1 - std::tanh(0.5) * std::tanh(0.5));
}

TEST(Tape, ClearBetweenBeginOpAndFinishIsRefused) {
  Tape<double> tape;
  auto x = tape.variable(1.0);
  auto op = tape.begin_op("pending", {x}, x.shape());
  try {
    tape.clear();
    ADD_FAILURE() << "clear() freed the nodes of an op being recorded";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("while op 'pending' is being recorded"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(tape.size(), 2u);
  op.out_data()[0] = 5.0;
  auto y = op.finish([](const BackwardContext<double>& c) { c.grad_data(0)[0] += 1.0; });
  EXPECT_EQ(y.item(), 5.0);
  tape.backward(y);
  EXPECT_EQ(x.grad()(0), 1.0);
  tape.clear();  // fine once the op is finished
  EXPECT_EQ(tape.size(), 0u);
}

TEST(Tape, ReachingAnotherThreadsTapeThroughAHandleIsRefused) {
  // x.tape() — how a custom op starts — checks the owner before reading anything that the
  // owner may be changing. Reading values and gradients is allowed once the owner is done.
  Tape<double> tape;
  auto x = tape.variable(0.5);
  auto y = ttanh(x);
  tape.backward(y);
  bool threw = false;
  double read = 0, grad = 0;
  std::thread t([&] {
    try {
      x.tape();
    } catch (const UsageError& e) {
      threw = std::string(e.what()).find("does not own this tape") != std::string::npos;
    }
    read = y.item();
    grad = x.grad()(0);
  });
  t.join();
  EXPECT_TRUE(threw);
  EXPECT_DOUBLE_EQ(read, std::tanh(0.5));
  EXPECT_DOUBLE_EQ(grad, 1 - std::tanh(0.5) * std::tanh(0.5));
  EXPECT_EQ(&x.tape(), &tape);  // the owner itself may
}

TEST(Tape, ThreadsRecordOnTheirOwnTapesConcurrently) {
  std::vector<double> grads(4);
  std::vector<std::thread> ts;
  for (int k = 0; k < 4; ++k)
    ts.emplace_back([k, &grads] {
      Tape<double> tape;
      double g = 0;
      for (int rep = 0; rep < 200; ++rep) {
        tape.clear();
        auto x = tape.variable(0.1 * k);
        Var<double> y = x;
        for (int i = 0; i < 50; ++i) y = ttanh(y);
        tape.backward(y);
        g = x.grad()(0);
      }
      grads[k] = g;
    });
  for (auto& t : ts) t.join();
  for (int k = 0; k < 4; ++k) {
    double v = 0.1 * k, d = 1;
    std::vector<double> factor(50);
    for (int i = 0; i < 50; ++i) {
      v = std::tanh(v);
      factor[i] = 1 - v * v;
    }
    for (int i = 50; i-- > 0;) d *= factor[i];
    EXPECT_DOUBLE_EQ(grads[k], d);
  }
}

// clear() from a thread that does not own a busy tape used to take the tape over, freeing the
// nodes its owner was recording on (a data race that showed up only as spurious stale-handle
// errors). Now it is refused and touches nothing; only the owner's clear() releases the tape.
TEST(TapeThreads, ClearFromAThreadThatDoesNotOwnTheTapeIsRefused) {
  Tape<double> tape;
  auto x = tape.variable(0.5);
  auto y = ttanh(x);
  std::string msg;
  std::thread t([&] {
    try {
      tape.clear();
    } catch (const UsageError& e) {
      msg = e.what();
    }
  });
  t.join();
  EXPECT_NE(msg.find("tape: clear() from a thread that does not own this tape"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("only its owner may clear it"), std::string::npos) << msg;
  EXPECT_EQ(tape.size(), 2u);  // untouched: the owner's handles still work
  tape.backward(y);
  EXPECT_DOUBLE_EQ(x.grad()(0), 1 - std::tanh(0.5) * std::tanh(0.5));

  // After the owner's clear() nobody owns the tape: clear() from any thread is a harmless no-op
  // and any thread may record on it (the tape moves between threads).
  tape.clear();
  double got = 0;
  std::thread t2([&] {
    tape.clear();
    auto v = tape.variable(0.25);
    tape.backward(ttanh(v));
    got = v.grad()(0);
    tape.clear();  // its owner now: releases it
  });
  t2.join();
  EXPECT_DOUBLE_EQ(got, 1 - std::tanh(0.25) * std::tanh(0.25));
  auto z = tape.variable(1.0);  // back on this thread
  EXPECT_EQ(tape.size(), 1u);
  (void)z;
}

// The hostile tester's scenario: one thread trains on a tape while another keeps calling
// clear() on it. The owner must see no error at all (before the fix: hundreds of spurious
// stale-handle errors), and under ThreadSanitizer there must be no data race.
TEST(TapeConcurrent, ForeignClearsDuringStepsAreRefusedAndHarmless) {
  Tape<double> tape;
  // First, deterministically: while this thread owns a busy tape, another thread's clear() is
  // refused and changes nothing.
  {
    auto x0 = tape.variable(0.5);
    bool refused_once = false;
    std::thread([&] {
      try {
        tape.clear();
      } catch (const UsageError&) {
        refused_once = true;
      }
    }).join();
    EXPECT_TRUE(refused_once);
    EXPECT_EQ(tape.size(), 1u);
    EXPECT_EQ(x0.item(), 0.5);
    tape.clear();
  }
  // Then the race itself. How often the other thread lands inside a step depends on
  // scheduling (under valgrind, which runs one thread at a time, perhaps never); what must
  // hold whatever the interleaving is that the owner never sees an error or a wrong gradient.
  std::atomic<bool> done{false};
  std::atomic<long> refused{0}, returned{0};
  std::thread clearer([&] {
    while (!done.load()) {
      try {
        tape.clear();
        returned.fetch_add(1);
      } catch (const UsageError&) {
        refused.fetch_add(1);
      }
    }
  });
  long steps = 0, errors = 0, wrong = 0;
  std::string first_error;
  // At least 2000 steps, and until the clearer has been refused a few times (bounded).
  for (; steps < 2000 || (refused.load() < 10 && steps < 20000); ++steps) {
    try {
      const double v = 0.001 * static_cast<double>(steps % 1000);
      auto x = tape.variable(v);
      Var<double> h = x;
      for (int i = 0; i < 4; ++i) h = ttanh(h);
      tape.backward(tsum(h));
      double d = 1, a = v;
      for (int i = 0; i < 4; ++i) {
        a = std::tanh(a);
        d *= 1 - a * a;
      }
      if (std::abs(x.grad()(0) - d) > 1e-14) ++wrong;
      tape.clear();
    } catch (const Error& e) {
      if (!errors++) first_error = e.what();
    }
  }
  done.store(true);
  clearer.join();
  EXPECT_EQ(errors, 0) << "first: " << first_error;
  EXPECT_EQ(wrong, 0);
  std::printf("%ld steps: the other thread's clear() was refused %ld times, accepted %ld times\n",
              steps, refused.load(), returned.load());
}

// Two threads share one tape by taking turns: a thread's first op claims the tape (or fails,
// touching nothing, while the other owns it) and its clear() hands it back. Synchronised by the
// tape's owner field alone, which ThreadSanitizer checks.
TEST(TapeConcurrent, TwoThreadsHandTheTapeOverThroughClear) {
  Tape<double> tape;
  std::atomic<long> mid_step_errors{0}, wrong{0};
  auto worker = [&](double seed, long* completed) {
    for (long attempts = 0; *completed < 300 && attempts < 5000000; ++attempts) {
      Var<double> x;
      try {
        x = tape.variable(seed);  // claims the tape, or throws without touching it
      } catch (const UsageError&) {
        std::this_thread::yield();
        continue;
      }
      try {
        auto y = tsum(ttanh(x));
        tape.backward(y);
        const double t = std::tanh(seed);
        if (x.grad()(0) != 1 - t * t) wrong.fetch_add(1);
        tape.clear();
        ++*completed;
      } catch (const Error&) {
        mid_step_errors.fetch_add(1);
        return;
      }
      std::this_thread::yield();
    }
  };
  long ca = 0, cb = 0;
  std::thread a(worker, 0.3, &ca), b(worker, 0.7, &cb);
  a.join();
  b.join();
  EXPECT_EQ(mid_step_errors.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(ca, 300);
  EXPECT_EQ(cb, 300);
}

TEST(Tape, PrintsListingAndDot) {
  Tape<double> tape;
  Parameter<double> p(xt::xarray<double>{1.0, 2.0});
  auto x = tape.constant(xt::xarray<double>{3.0, 4.0});
  auto y = tsum(tmul(x, tape.param(p)));
  (void)y;
  std::string s = tape.str();
  EXPECT_NE(s.find("#0 constant [2]"), std::string::npos) << s;
  EXPECT_NE(s.find("#1 param [2]"), std::string::npos) << s;
  EXPECT_NE(s.find("#2 tmul [2] <- #0 [2], #1 [2]"), std::string::npos) << s;
  EXPECT_NE(s.find("#3 tsum []"), std::string::npos) << s;
  std::ostringstream dot;
  tape.to_dot(dot);
  EXPECT_NE(dot.str().find("digraph"), std::string::npos);
  EXPECT_NE(dot.str().find("n2 -> n3"), std::string::npos) << dot.str();
}

TEST(Tape, AnomalyModeNamesOpAndRecordSite) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{1.0, 0.0});
  auto z = tape.constant(xt::xarray<double>{0.0, 0.0});
  auto bad = [&] {  // 1/0 → inf in the forward output
    auto op = tape.begin_op("recip", {x}, x.shape());
    for (std::size_t i = 0; i < 2; ++i) op.out_data()[i] = 1.0 / op.input_data(0)[i];
    return op.finish([](const BackwardContext<double>&) {});
  };
  EXPECT_NO_THROW(bad());  // off by default
  AnomalyModeGuard on;
  try {
    bad();
    FAIL();
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("recip"), std::string::npos) << m;
    EXPECT_NE(m.find("test_tape.cpp"), std::string::npos) << m;
    EXPECT_NE(m.find("element 1"), std::string::npos) << m;
  }
  (void)z;
}

TEST(Tape, ShapeBroadcasting) {
  EXPECT_EQ(broadcast_shapes("op", Shape{3, 1}, Shape{4}), (Shape{3, 4}));
  EXPECT_EQ(broadcast_shapes("op", Shape{}, Shape{2, 2}), (Shape{2, 2}));
  EXPECT_EQ(broadcast_shapes("op", Shape{5, 1, 2}, Shape{3, 1}), (Shape{5, 3, 2}));
  try {
    broadcast_shapes("add", Shape{3, 4}, Shape{5, 4});
    FAIL();
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("add: a is [3,4] but b is [5,4]"), std::string::npos)
        << e.what();
  }
}
