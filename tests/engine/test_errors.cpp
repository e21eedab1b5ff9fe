// Every misuse and bad input gets one readable error, and costs nothing else.
//
// For every public op (every entry of the op registry, tests/support/op_registry.hpp, in every
// spelling; and nn::Linear, nn::MLP) and for the tape API, these tests feed bad handles (empty,
// stale, from another tape, from another thread), bad shapes and bad values, and check
//   * the exception type (ShapeError, ValueError or UsageError, all wengert::Error),
//   * that the one-line message names the op, the argument and the shapes or values,
//   * that every tape involved is exactly as it was: same node count, same listing, same arena
//     capacity, and the arena cursor where it was (the next allocation lands at the same
//     address).
// Then the defined semantics of repeated backward sweeps, and anomaly mode on real ops: the
// message names the op and this file's line where it was recorded, in forward and backward.
#include <wengert/nn/linear.hpp>
#include <wengert/ops.hpp>
#include <wengert/tape.hpp>

#include <gtest/gtest.h>

#include <xtensor/xmath.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "op_registry.hpp"

using namespace wengert;
using wengert::testing::op_examples;
using wengert::testing::op_registry;
using wengert::testing::OpDomain;
using wengert::testing::OpEntry;
using wengert::testing::OpExample;
using wengert::testing::output_shape;

namespace {

using V = Var<double>;
using Arr = xt::xarray<double>;

// ---- tape snapshots --------------------------------------------------------------------------

/// What a failed call must leave unchanged.
struct Snapshot {
  std::size_t size;
  std::size_t capacity;
  std::string listing;
  const void* next;  // where the arena would place the next allocation
  bool operator==(const Snapshot& o) const {
    return size == o.size && capacity == o.capacity && listing == o.listing && next == o.next;
  }
};

std::ostream& operator<<(std::ostream& os, const Snapshot& s) {
  return os << "{size " << s.size << ", arena " << s.capacity << " bytes, next allocation at "
            << s.next << ", listing:\n"
            << s.listing << "}";
}

/// Takes a snapshot. The arena cursor is found by beginning an op and abandoning it: the
/// builder rolls the tape back, so taking a snapshot changes nothing either.
template <class T>
Snapshot snapshot(Tape<T>& t) {
  const void* next;
  {
    auto probe = t.begin_op("probe", nullptr, 0, Shape{1});
    next = probe.out_data();
  }
  return {t.size(), t.arena_capacity(), t.str(), next};
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

/// Runs `f`, which must throw exactly `Ex` (a wengert::Error) with a one-line message holding
/// every needle, and leave every tape in `tapes` unchanged.
template <class Ex, class T = double>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles,
                  const std::vector<Tape<T>*>& tapes) {
  static_assert(std::is_base_of_v<Error, Ex>, "wengert errors derive from wengert::Error");
  static_assert(std::is_base_of_v<std::exception, Error>, "wengert::Error is a std::exception");
  std::vector<Snapshot> before;
  for (Tape<T>* t : tapes) before.push_back(snapshot(*t));
  try {
    f();
    ADD_FAILURE() << "no exception thrown";
  } catch (const Ex& e) {
    const std::string m = e.what();
    EXPECT_FALSE(m.empty());
    EXPECT_FALSE(contains(m, "\n")) << "not one line: " << m;
    for (const std::string& n : needles)
      EXPECT_TRUE(contains(m, n)) << "the message lacks \"" << n << "\":\n  " << m;
  } catch (const Error& e) {
    ADD_FAILURE() << "wrong wengert::Error subtype: " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a wengert::Error: " << e.what();
  }
  for (std::size_t i = 0; i < tapes.size(); ++i)
    EXPECT_EQ(snapshot(*tapes[i]), before[i]) << "tape " << i << " changed";
}

#define EXPECT_ERROR(Ex, tape, call, ...)                              \
  do {                                                                 \
    SCOPED_TRACE(#call);                                               \
    expect_error<Ex>([&] { (void)(call); }, {__VA_ARGS__}, {&(tape)}); \
  } while (0)

/// Values in [lo, hi), seeded.
Arr values(const Shape& s, double lo = 0.2, double hi = 0.8, std::uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  Arr a = Arr::from_shape(std::vector<std::size_t>(s.begin(), s.end()));
  for (auto& v : a) v = d(rng);
  return a;
}

// ---- every public op, as a table ---------------------------------------------------------------

/// One public op: the name its messages use, valid input shapes and the range of their values,
/// and a call.
struct OpSpec {
  std::string name;
  std::string what;  // for SCOPED_TRACE: the call and its shapes
  std::vector<Shape> shapes;
  std::vector<OpDomain> domains;  // of each input's values
  std::function<V(Tape<double>&, const std::vector<V>&)> call;
  bool takes_tape = false;      // nn layers: the tape is an argument, not implied by the input
  std::optional<Shape> output;  // what the op's shape rule predicts
};

/// Every op of the registry (tests/support/op_registry.hpp) in every spelling and form of its
/// parameters, then the nn layers, which record their Parameters and a "linear" node.
std::vector<OpSpec> all_ops() {
  std::vector<OpSpec> specs;
  for (const OpEntry& op : op_registry())
    for (const OpExample& ex : op_examples(op)) {
      OpSpec spec;
      spec.name = op.node_name(ex.args);
      spec.what = ex.str;
      spec.shapes = ex.shapes;
      for (int k = 0; k < op.arity; ++k) spec.domains.push_back(op.input_domain(k, ex.args));
      spec.call = [&op, args = ex.args](Tape<double>&, const std::vector<V>& v) {
        return op.record(v.data(), args);
      };
      spec.output = output_shape(op, ex.shapes, ex.args);
      specs.push_back(std::move(spec));
    }
  auto layer = std::make_shared<nn::Linear<double>>(3, 4, 1, nn::Init::kXavierUniform, "fc");
  auto mlp = std::make_shared<nn::MLP<double>>(std::vector<std::size_t>{3, 5, 2},
                                               nn::Activation::kTanh, 2);
  specs.push_back(
      {"linear",
       "nn::Linear",
       {{2, 3}},
       {OpDomain{}},
       [=](Tape<double>& tape, const std::vector<V>& v) { return layer->forward(tape, v[0]); },
       true,
       Shape{2, 4}});
  specs.push_back(
      {"linear",
       "nn::MLP",
       {{2, 3}},
       {OpDomain{}},
       [=](Tape<double>& tape, const std::vector<V>& v) { return mlp->forward(tape, v[0]); },
       true,
       Shape{2, 2}});
  return specs;
}

/// Valid leaves for `spec` on `tape`, alternating variables and constants: values in [0.2, 0.8]
/// and in the input's domain.
std::vector<V> leaves(Tape<double>& tape, const OpSpec& spec) {
  std::vector<V> v;
  for (std::size_t k = 0; k < spec.shapes.size(); ++k) {
    const OpDomain& d = spec.domains[k];
    const double lo = std::max({0.2, d.lo, d.min_abs}), hi = std::min(0.8, d.hi);
    Arr a = values(spec.shapes[k], lo, hi, k);
    v.push_back(k % 2 ? tape.constant(a) : tape.variable(a));
  }
  return v;
}

}  // namespace

// ---- the hierarchy ---------------------------------------------------------------------------

TEST(Errors, OneHierarchyRootedInStdException) {
  static_assert(std::is_base_of_v<std::exception, Error>);
  static_assert(std::is_base_of_v<Error, ShapeError>);
  static_assert(std::is_base_of_v<Error, ValueError>);
  static_assert(std::is_base_of_v<Error, UsageError>);
  static_assert(!std::is_base_of_v<ShapeError, ValueError> &&
                !std::is_base_of_v<ShapeError, UsageError> &&
                !std::is_base_of_v<ValueError, UsageError>);
  Tape<double> tape;
  try {
    add(tape.variable(Arr{1, 2}), tape.variable(Arr{1, 2, 3}));
    FAIL();
  } catch (const std::exception& e) {  // one catch suffices for callers that want one
    EXPECT_NE(dynamic_cast<const ShapeError*>(&e), nullptr);
  }
}

// ---- the op registry
// -----------------------------------------------------------------------------

TEST(OpRegistry, EntriesAreWellFormed) {
  // What the consumers rely on (tests/support/op_registry.hpp): unique labels, a call for float
  // and double, the arity of the shape rule, a spelling, domains only for inputs that exist,
  // and at least one example whose shapes the rule accepts.
  std::set<std::string> labels;
  for (const OpEntry& op : op_registry()) {
    SCOPED_TRACE(op.label());
    EXPECT_TRUE(labels.insert(op.label()).second) << "two entries with one label";
    EXPECT_NE(op.record_float, nullptr);
    EXPECT_NE(op.record_double, nullptr);
    EXPECT_EQ(op.arity, wengert::testing::arity_of(op.rule));
    EXPECT_FALSE(op.spellings.empty());
    EXPECT_LE(op.min_rank, op.max_rank);
    for (int k = op.arity; k < 3; ++k) EXPECT_TRUE(op.domains[k] == OpDomain{}) << "input " << k;
    EXPECT_TRUE(!op.reference || op.rule == wengert::testing::ShapeRule::kElementwise);
    EXPECT_TRUE(!op.reference2 || op.rule == wengert::testing::ShapeRule::kBroadcast);
    const std::vector<OpExample> examples = op_examples(op);
    EXPECT_FALSE(examples.empty());
    for (const OpExample& ex : examples)
      EXPECT_TRUE(output_shape(op, ex.shapes, ex.args).has_value()) << ex.str;
  }
  const OpEntry& sum_axis = wengert::testing::find_op("sum(axis)");
  EXPECT_EQ(sum_axis.name, "sum");
  EXPECT_EQ(sum_axis.rule, wengert::testing::ShapeRule::kReduceAxis);
  EXPECT_THROW(wengert::testing::find_op("no such op"), std::out_of_range);
}

// ---- bad handles, for every op and every argument ---------------------------------------------

TEST(Errors, EveryOpAcceptsItsValidInputs) {
  // The table itself is right: each op runs on its valid leaves (so the failures below come
  // from the one bad argument), records one node (a layer also its Parameters), named as its
  // messages name it, of the shape the registry's shape rule predicts.
  const std::vector<OpSpec> specs = all_ops();
  EXPECT_GE(specs.size(), op_registry().size() + 2);
  for (const OpSpec& spec : specs) {
    SCOPED_TRACE(spec.what);
    Tape<double> tape;
    std::vector<V> in = leaves(tape, spec);
    const std::size_t before = tape.size();
    V y = spec.call(tape, in);
    EXPECT_EQ(y.op_name(), spec.name);
    if (spec.takes_tape)
      EXPECT_GE(tape.size(), before + 1);
    else
      EXPECT_EQ(tape.size(), before + 1);
    ASSERT_TRUE(spec.output.has_value()) << "the shape rule refuses the example's shapes";
    EXPECT_EQ(y.shape(), *spec.output);
  }
  std::size_t arguments = 0;
  for (const OpSpec& spec : specs) arguments += spec.shapes.size();
  std::cout << "[ every op ] " << op_registry().size()
            << " registry ops and 2 nn layers: " << specs.size() << " calls, " << arguments
            << " arguments\n";
}

TEST(Errors, EveryOpRejectsAnEmptyHandleInEveryArgument) {
  for (const OpSpec& spec : all_ops())
    for (std::size_t k = 0; k < spec.shapes.size(); ++k) {
      SCOPED_TRACE(spec.what + ", argument " + std::to_string(k));
      Tape<double> tape;
      std::vector<V> in = leaves(tape, spec);
      in[k] = V{};
      expect_error<UsageError>([&] { spec.call(tape, in); }, {spec.name + ": ", "empty handle"},
                               {&tape});
    }
}

TEST(Errors, EveryOpRejectsAStaleHandleInEveryArgument) {
  for (const OpSpec& spec : all_ops())
    for (std::size_t k = 0; k < spec.shapes.size(); ++k) {
      SCOPED_TRACE(spec.what + ", argument " + std::to_string(k));
      Tape<double> tape;
      std::vector<V> old = leaves(tape, spec);
      tape.clear();  // every handle in `old` is now stale; new leaves reuse their slots
      std::vector<V> in = leaves(tape, spec);
      in[k] = old[k];
      expect_error<UsageError>([&] { spec.call(tape, in); }, {spec.name + ": ", "stale handle"},
                               {&tape});
    }
}

TEST(Errors, EveryOpRejectsAHandleFromAnotherTapeInEveryArgument) {
  // An op of one tensor records on that tensor's tape: "another tape" needs two operands, or
  // a layer's explicit tape.
  for (const OpSpec& spec : all_ops())
    for (std::size_t k = 0; k < spec.shapes.size() && (spec.shapes.size() > 1 || spec.takes_tape);
         ++k) {
      SCOPED_TRACE(spec.what + ", argument " + std::to_string(k));
      Tape<double> tape, other;
      std::vector<V> in = leaves(tape, spec);
      in[k] = leaves(other, spec)[k];  // the right shape, on the wrong tape
      expect_error<UsageError>([&] { spec.call(tape, in); }, {spec.name + ": ", "another tape"},
                               {&tape, &other});
    }
}

TEST(Errors, EveryOpRejectsAThreadThatDoesNotOwnTheTape) {
  for (const OpSpec& spec : all_ops()) {
    SCOPED_TRACE(spec.what);
    Tape<double> tape;
    std::vector<V> in = leaves(tape, spec);  // this thread owns the tape from here on
    const Snapshot before = snapshot(tape);
    std::string message;
    bool other_error = false;
    std::thread t([&] {
      try {
        spec.call(tape, in);
      } catch (const UsageError& e) {
        message = e.what();
      } catch (...) {
        other_error = true;
      }
    });
    t.join();
    EXPECT_FALSE(other_error);
    EXPECT_TRUE(contains(message, spec.name)) << message;
    EXPECT_TRUE(contains(message, "does not own")) << message;
    EXPECT_EQ(snapshot(tape), before);
  }
}

// ---- shapes and values, op by op ---------------------------------------------------------------

TEST(Errors, BinaryElementwiseOpsNameBothShapes) {
  Tape<double> tape;
  V a = tape.variable(values({2, 3}));
  V b = tape.variable(values({4, 3}));
  V c = tape.constant(values({2}));
  V d = tape.variable(values({3, 2, 4}));
  V e = tape.variable(values({3, 4}));
  EXPECT_ERROR(ShapeError, tape, add(a, b), "add: a is [2,3] but b is [4,3]", "dimension 0",
               "cannot be broadcast");
  EXPECT_ERROR(ShapeError, tape, sub(a, c), "sub: a is [2,3] but b is [2]", "(3 vs 2)");
  EXPECT_ERROR(ShapeError, tape, mul(c, a), "mul: a is [2] but b is [2,3]");
  EXPECT_ERROR(ShapeError, tape, div(d, e), "div: a is [3,2,4] but b is [3,4]", "(2 vs 3)");
  EXPECT_ERROR(ShapeError, tape, a + b, "add: a is [2,3] but b is [4,3]");
  EXPECT_ERROR(ShapeError, tape, a - c, "sub: a is [2,3] but b is [2]");
  EXPECT_ERROR(ShapeError, tape, a * b, "mul: a is [2,3] but b is [4,3]");
  EXPECT_ERROR(ShapeError, tape, e / d, "div: a is [3,4] but b is [3,2,4]");
}

TEST(Errors, PowRefusesNonFiniteExponentsAndNegativeBasesOfFractionalPowers) {
  Tape<double> tape;
  V x = tape.variable(Arr{0.5, -0.5, 2.0});
  EXPECT_ERROR(ValueError, tape, pow(x, std::numeric_limits<double>::infinity()),
               "pow: the exponent must be finite, got inf", "[3]");
  EXPECT_ERROR(ValueError, tape, pow(x, std::nan("")), "pow: the exponent must be finite", "nan",
               "[3]");
  EXPECT_ERROR(ValueError, tape, pow(x, 1.5), "pow: x[1] = -0.5 is negative",
               "exponent 1.5 is not an integer", "[3]");
  EXPECT_ERROR(ValueError, tape, pow(x, 0.5), "pow: x[1] = -0.5", "0.5", "[3]");
  EXPECT_NO_THROW(pow(x, 3.0));  // integer powers of negatives are defined
  EXPECT_NO_THROW(pow(x, -2.0));
}

TEST(Errors, LogRefusesNegativeValuesNamingTheFirst) {
  Tape<double> tape;
  V x = tape.variable(Arr{{0.5, 2.0}, {-3.0, -1.0}});
  EXPECT_ERROR(ValueError, tape, log(x), "log: x[2] = -3 is negative", "[2,2]");
  Tape<float> tf;
  auto xf = tf.variable(xt::xarray<float>{1.0f, -0.25f});
  expect_error<ValueError, float>([&] { log(xf); }, {"log: x[1] = -0.25", "[2]"}, {&tf});
  EXPECT_NO_THROW(log(tape.variable(Arr{0.0, 1.0})));  // log(0) = −inf is IEEE, not an error
}

TEST(Errors, ReductionsNameTheAxisAndTheShape) {
  Tape<double> tape;
  V x = tape.variable(values({2, 3}));
  V s = tape.variable(1.0);
  EXPECT_ERROR(ShapeError, tape, sum(x, 2), "sum: axis 2 is out of range for x of shape [2,3]",
               "valid axes are -2 to 1");
  EXPECT_ERROR(ShapeError, tape, mean(x, -3, true), "mean: axis -3", "[2,3]");
  EXPECT_ERROR(ShapeError, tape, sum(s, 0), "sum: axis 0", "[]", "a scalar has no axes");
  V empty = tape.variable(Arr::from_shape({0}));
  V empty_axis = tape.variable(Arr::from_shape({2, 0}));
  EXPECT_ERROR(ValueError, tape, mean(empty), "mean: x is [0], which has no elements");
  EXPECT_ERROR(ValueError, tape, mean(empty_axis, 1), "mean: axis 1 of x [2,0] has length 0");
  EXPECT_ERROR(ValueError, tape, mean(empty_axis, -1), "mean: axis -1 of x [2,0]");
  EXPECT_NO_THROW(sum(empty));           // an empty sum is 0
  EXPECT_NO_THROW(mean(empty_axis, 0));  // [0] elements out: nothing is undefined
}

TEST(Errors, MatmulNamesOperandsTheirTransposesAndTheInnerDimensions) {
  Tape<double> tape;
  V a = tape.variable(values({2, 3}));
  V b = tape.variable(values({4, 5}));
  V v = tape.variable(values({3}));
  V t = tape.variable(values({3, 2, 1}));
  V c = tape.variable(values({3, 2}));
  EXPECT_ERROR(ShapeError, tape, matmul(a, b), "matmul: a is [2,3] but b is [4,5]",
               "inner dimensions 3 and 4 differ");
  EXPECT_ERROR(ShapeError, tape, matmul(v, c), "matmul: a is [3] and b is [3,2]", "a is not 2-D");
  EXPECT_ERROR(ShapeError, tape, matmul(a, t), "matmul: a is [2,3] and b is [3,2,1]",
               "b is not 2-D");
  EXPECT_ERROR(ShapeError, tape, matmul_nt(a, c),
               "matmul_nt: a is [2,3] but b is [3,2] (transposed: [2,3])",
               "inner dimensions 3 and 2 differ");
  EXPECT_ERROR(ShapeError, tape, matmul_tn(a, c),
               "matmul_tn: a is [2,3] (transposed: [3,2]) but b is [3,2]",
               "inner dimensions 2 and 3 differ");
  EXPECT_ERROR(ShapeError, tape, matmul(a, b, true, true), "matmul_tt: a is [2,3] (transposed",
               "b is [4,5] (transposed: [5,4])");
}

TEST(Errors, BiasAddAndLinearNameEveryOperand) {
  Tape<double> tape;
  V x = tape.variable(values({2, 3}));
  V s = tape.variable(1.0);
  V b4 = tape.variable(values({4}));
  V b13 = tape.variable(values({1, 3}));
  V W = tape.variable(values({3, 4}));
  V W45 = tape.variable(values({4, 5}));
  V v3 = tape.variable(values({3}));
  EXPECT_ERROR(ShapeError, tape, bias_add(s, v3), "bias_add: x is [] (a scalar) and b is [3]");
  EXPECT_ERROR(ShapeError, tape, bias_add(x, b4), "bias_add: x is [2,3] but b is [4]",
               "b must be [3]");
  EXPECT_ERROR(ShapeError, tape, bias_add(x, b13), "bias_add: x is [2,3] but b is [1,3]");
  EXPECT_ERROR(ShapeError, tape, bias_add(x, s), "bias_add: x is [2,3] but b is []");
  EXPECT_ERROR(ShapeError, tape, linear(x, W45, b4), "linear: x is [2,3] but W is [4,5]",
               "inner dimensions 3 and 4 differ");
  EXPECT_ERROR(ShapeError, tape, linear(v3, W, b4), "linear: x is [3] and W is [3,4]",
               "x is not 2-D");
  EXPECT_ERROR(ShapeError, tape, linear(x, v3, b4), "linear: x is [2,3] and W is [3]",
               "W is not 2-D");
  EXPECT_ERROR(ShapeError, tape, linear(x, W, v3), "linear: W is [3,4] but b is [3]",
               "b must be [4]");
}

TEST(Errors, LayersValidateTheirInputBeforeRecordingTheirParameters) {
  // nn::Linear and nn::MLP record W and b as leaves: a bad x must not leave them behind.
  Tape<double> tape, other;
  nn::Linear<double> layer(3, 4, 1, nn::Init::kXavierUniform, "fc");
  nn::MLP<double> mlp({3, 5, 2}, nn::Activation::kRelu, 2);
  V x25 = tape.variable(values({2, 5}));
  V x3 = tape.variable(values({3}));
  V xo = other.variable(values({2, 3}));
  EXPECT_ERROR(ShapeError, tape, layer.forward(tape, x25), "linear: x is [2,5]",
               "W ('fc.weight') is [3,4]", "x must be [m,3]");
  EXPECT_ERROR(ShapeError, tape, layer.forward(tape, x3), "linear: x is [3]");
  EXPECT_ERROR(ShapeError, tape, mlp.forward(tape, x25), "linear: x is [2,5]",
               "W ('fc0.weight') is [3,5]");
  expect_error<UsageError>([&] { layer.forward(tape, xo); }, {"linear", "another tape"},
                           {&tape, &other});
  expect_error<UsageError>(
      [&] {
        mlp.forward(other, tape.variable(values({2, 3})));
      },
      {"linear", "another tape"}, {&other});
}

TEST(Errors, SoftmaxNeedsAnAxis) {
  Tape<double> tape;
  V s = tape.variable(2.0);
  EXPECT_ERROR(ShapeError, tape, softmax(s), "softmax: x is [] (a scalar)", "last axis");
  EXPECT_ERROR(ShapeError, tape, log_softmax(s), "log_softmax: x is [] (a scalar)");
}

TEST(Errors, SoftmaxCrossEntropyWithLabelsNamesRowsAndClasses) {
  Tape<double> tape;
  V z = tape.variable(values({2, 3}));
  V z1 = tape.variable(values({3}));
  V z0 = tape.variable(Arr::from_shape({0, 3}));
  V zc = tape.variable(Arr::from_shape({2, 0}));
  const std::vector<std::int32_t> ok{0, 2}, three{0, 1, 2}, high{0, 3}, neg{-1, 0};
  EXPECT_ERROR(ShapeError, tape, softmax_cross_entropy(z1, three),
               "softmax_cross_entropy: logits is [3]", "expected 2-D [m,c]");
  EXPECT_ERROR(ShapeError, tape, softmax_cross_entropy(z, three),
               "softmax_cross_entropy: logits is [2,3] but labels has 3 entries", "(2)");
  EXPECT_ERROR(ValueError, tape, softmax_cross_entropy(z, high),
               "softmax_cross_entropy: label 3 in row 1 is outside [0, 3)");
  EXPECT_ERROR(ValueError, tape, softmax_cross_entropy(z, neg),
               "softmax_cross_entropy: label -1 in row 0 is outside [0, 3)");
  EXPECT_ERROR(UsageError, tape,
               softmax_cross_entropy(z, static_cast<const std::int32_t*>(nullptr), 2),
               "softmax_cross_entropy: labels is a null pointer");
  EXPECT_ERROR(ValueError, tape, softmax_cross_entropy(z0, ok.data(), 0),
               "softmax_cross_entropy: logits is [0,3], which has no elements");
  EXPECT_ERROR(ValueError, tape, softmax_cross_entropy(zc, ok),
               "softmax_cross_entropy: logits is [2,0]");
}

TEST(Errors, LossesOnTwoTensorsNameBothShapes) {
  Tape<double> tape;
  V a = tape.variable(values({2, 3}));
  V b = tape.variable(values({2, 4}));
  V t = tape.variable(values({3, 2}));
  V a3 = tape.variable(values({2, 3, 1}));
  V p = tape.variable(values({4}));
  V p41 = tape.variable(values({4, 1}));
  V e = tape.variable(Arr::from_shape({0, 2}));
  V e2 = tape.variable(Arr::from_shape({0, 2}));
  EXPECT_ERROR(ShapeError, tape, softmax_cross_entropy(a, b),
               "softmax_cross_entropy: logits is [2,3] but targets is [2,4]");
  EXPECT_ERROR(ShapeError, tape, softmax_cross_entropy(a3, a3),
               "softmax_cross_entropy: logits is [2,3,1]");
  EXPECT_ERROR(ShapeError, tape, sigmoid_binary_cross_entropy(a, t),
               "sigmoid_binary_cross_entropy: logits is [2,3] but targets is [3,2]");
  EXPECT_ERROR(ValueError, tape, sigmoid_binary_cross_entropy(e, e2),
               "sigmoid_binary_cross_entropy: logits is [0,2], which has no elements");
  EXPECT_ERROR(ShapeError, tape, binary_cross_entropy(p, p41),
               "binary_cross_entropy: probabilities is [4] but targets is [4,1]");
  EXPECT_ERROR(ValueError, tape, binary_cross_entropy(e, e2),
               "binary_cross_entropy: probabilities is [0,2]");
  EXPECT_ERROR(ShapeError, tape, mse(a, p), "mse: prediction is [2,3] but target is [4]");
  EXPECT_ERROR(ValueError, tape, mse(e, e2), "mse: prediction is [0,2]");
}

TEST(Errors, BinaryCrossEntropyRefusesValuesOutsideTheUnitInterval) {
  // Logits passed where probabilities are expected would otherwise be clamped into a
  // plausible-looking loss.
  Tape<double> tape;
  V p = tape.variable(Arr{0.25, 1.5, 0.5});
  V q = tape.variable(Arr{0.25, 0.75, 0.5});
  V y = tape.constant(Arr{1.0, 0.0, 1.0});
  V y2 = tape.constant(Arr{1.0, -1.0, 1.0});
  EXPECT_ERROR(ValueError, tape, binary_cross_entropy(p, y),
               "binary_cross_entropy: probabilities[1] = 1.5 is outside [0, 1]", "[3]");
  EXPECT_ERROR(ValueError, tape, binary_cross_entropy(q, y2),
               "binary_cross_entropy: targets[1] = -1 is outside [0, 1]", "[3]");
  EXPECT_ERROR(ValueError, tape, sigmoid_binary_cross_entropy(p, y2),
               "sigmoid_binary_cross_entropy: targets[1] = -1 is outside [0, 1]", "[3]");
  EXPECT_NO_THROW(binary_cross_entropy(tape.variable(Arr{0.0, 1.0, 0.5}), y));  // the closed ends
  EXPECT_NO_THROW(sigmoid_binary_cross_entropy(p, y));                          // any logits
}

// ---- the tape API ------------------------------------------------------------------------------

TEST(Errors, ShapesThatCannotExistAreRefused) {
  const std::size_t big = std::size_t{1} << 32;
  try {
    Shape s{big, big};  // 2^64 elements: size() would wrap to 0
    FAIL() << s.str();
  } catch (const ShapeError& e) {
    EXPECT_TRUE(contains(e.what(), "[4294967296,4294967296]")) << e.what();
  }
  EXPECT_THROW(Parameter<double>(Shape{big, big, 2}), ShapeError);
  EXPECT_NO_THROW(Shape({big, big, 0}));  // no elements at all: fine
  Tape<double> tape;
  const Snapshot before = snapshot(tape);
  try {
    tape.variable(xt::xarray<double>::from_shape({1, 1, 1, 1, 1, 1, 1}));
    FAIL();
  } catch (const ShapeError& e) {
    EXPECT_TRUE(contains(e.what(), "rank 7")) << e.what();
  }
  EXPECT_EQ(snapshot(tape), before);
}

// A huge dimension written into a built Shape (through a non-const operator[]) used to skip
// the overflow check: size() wrapped to 0 and sum(x, 0) then walked memory it never allocated.
// Dimensions are read-only now; a changed shape is built by with_dim, which checks.
TEST(Errors, AShapeCannotBeChangedPastTheLimitAfterItIsBuilt) {
  static_assert(!std::is_assignable_v<decltype(std::declval<Shape&>()[0]), std::size_t>,
                "a Shape's dimensions must not be writable in place");
  const Shape s{2, 3};
  try {
    Shape t = s.with_dim(0, std::size_t{1} << 62);  // 3·2^62 elements: wraps
    FAIL() << t.str();
  } catch (const ShapeError& e) {
    EXPECT_TRUE(contains(e.what(), "[4611686018427387904,3]")) << e.what();
    EXPECT_TRUE(contains(e.what(), "more elements than can be addressed")) << e.what();
  }
  EXPECT_THROW((void)s.with_dim(1, Shape::kMaxSize), ShapeError);  // 2·kMaxSize
  EXPECT_EQ(s.with_dim(1, 5), (Shape{2, 5}));
  EXPECT_EQ(s, (Shape{2, 3}));                       // unchanged
  EXPECT_THROW((void)s.with_dim(2, 1), ShapeError);  // no dimension 2
  Shape grown;
  grown.push_back(std::size_t{1} << 32);
  EXPECT_THROW(grown.push_back(std::size_t{1} << 32), ShapeError);  // push_back checks too
  EXPECT_EQ(grown, (Shape{std::size_t{1} << 32}));                  // and leaves it as it was
}

// Memory that cannot be allocated used to escape as std::bad_alloc (a Parameter of 2^33 floats
// on a small machine). It is a ResourceError naming what was allocated and the bytes. The sizes
// here are allowed shapes whose bytes (2^62 and more) exceed any address space, so the
// allocation fails deterministically on Linux whatever the overcommit policy (sanitizer builds:
// allocator_may_return_null=1, set by the test presets).
TEST(Errors, AllocationFailureIsAResourceErrorNamingWhatAndHowMuch) {
  static_assert(std::is_base_of_v<Error, ResourceError>);
  static_assert(!std::is_base_of_v<std::bad_alloc, ResourceError>);
  const std::size_t huge = Shape::kMaxSize;  // 2^60 - 1 elements
  try {
    Parameter<float> p(Shape{huge}, "w");
    FAIL() << "allocated " << p.size() << " floats";
  } catch (const ResourceError& e) {
    EXPECT_TRUE(contains(e.what(), "Parameter 'w' of shape [1152921504606846975]")) << e.what();
    EXPECT_TRUE(contains(e.what(), "4611686018427387900 bytes each")) << e.what();
    EXPECT_TRUE(contains(e.what(), "out of memory")) << e.what();
  }
  EXPECT_THROW(Parameter<double>(Shape{huge / 4, 4}), ResourceError);

  // A tape's arena: the op is named with its shape and bytes, and the tape is left exactly as
  // it was (no node, no arena block, the cursor where it was).
  Tape<double> tape;
  auto x = tape.variable(Arr{1.0, 2.0});
  const Snapshot before = snapshot(tape);
  try {
    auto op = tape.begin_op("huge_op", {x}, Shape{huge / 2});
    FAIL() << "allocated " << op.out_size() << " doubles";
  } catch (const ResourceError& e) {
    EXPECT_TRUE(
        contains(e.what(), "huge_op: cannot allocate the output of shape [576460752303423487]"))
        << e.what();
    EXPECT_TRUE(contains(e.what(), "(4611686018427387896 bytes, and as many for its gradient)"))
        << e.what();
  }
  EXPECT_EQ(snapshot(tape), before);
  try {
    tape.variable(static_cast<const double*>(nullptr), Shape{huge});  // fails before reading
    FAIL();
  } catch (const ResourceError& e) {
    EXPECT_TRUE(contains(e.what(), "variable: cannot allocate the output of shape")) << e.what();
  }
  EXPECT_EQ(snapshot(tape), before);
  tape.backward(sum(x * x));  // the tape still works
  EXPECT_DOUBLE_EQ(x.grad()(1), 4.0);
}

TEST(Errors, ReadingGradientsAndItemsNamesTheNode) {
  Tape<double> tape;
  V c = tape.constant(values({2, 4}));
  V y = tanh(c);
  EXPECT_ERROR(UsageError, tape, c.grad(), "grad: node #0 ('constant') needs no gradient");
  EXPECT_ERROR(UsageError, tape, y.grad(), "grad: node #1 ('tanh') needs no gradient");
  EXPECT_ERROR(ShapeError, tape, y.item(), "item: 'tanh' output is [2,4], not a single element");
  EXPECT_ERROR(UsageError, tape, V{}.item(), "empty handle");
}

TEST(Errors, BackwardMisuseWithRealOps) {
  Tape<double> tape, other;
  nn::Linear<double> layer(3, 4, 1);
  V x = tape.variable(values({2, 3}));
  V h = tanh(layer.forward(tape, x));  // [2,4]
  V loss = mean(h);
  // A non-scalar output needs a seed of its shape.
  EXPECT_ERROR(UsageError, tape, tape.backward(h), "backward: output 'tanh' is [2,4], not a scalar",
               "pass a seed gradient of that shape");
  EXPECT_ERROR(UsageError, tape, tape.backward(h, nullptr, nullptr, 0),
               "backward: output 'tanh' is [2,4]");
  EXPECT_ERROR(ShapeError, tape, tape.backward(h, values({4, 2})),
               "backward: seed is [4,2] but the output is [2,4]");
  EXPECT_ERROR(ShapeError, tape, tape.backward(loss, values({2})),
               "backward: seed is [2] but the output is []");
  // An output that depends on nothing differentiable.
  V c = sum(tape.constant(values({3})));
  EXPECT_ERROR(UsageError, tape, tape.backward(c), "backward: output 'sum' needs no gradient");
  V ng;
  {
    NoGradGuard no_grad;
    ng = mean(tanh(x));
  }
  EXPECT_ERROR(UsageError, tape, tape.backward(ng), "backward: output 'mean' needs no gradient",
               "no-grad");
  // Handles from elsewhere.
  V xo = other.variable(values({2, 3}));
  V lo = mean(xo);
  expect_error<UsageError>([&] { tape.backward(lo); },
                           {"backward: argument 0 (node #1) belongs to another tape"},
                           {&tape, &other});
  expect_error<UsageError>(
      [&] {
        tape.backward(loss, {x, xo});
      },
      {"backward: argument 2 (node #0) belongs to another tape"}, {&tape, &other});
  expect_error<UsageError>([&] { tape.jacobian(h, xo); },
                           {"jacobian: argument 1 (node #0) belongs to another tape"},
                           {&tape, &other});
  EXPECT_ERROR(UsageError, tape, tape.backward(V{}), "backward: argument 0 is an empty handle");
  // backward while an op is being recorded (a custom op between begin_op and finish).
  {
    auto op = tape.begin_op("custom", {x}, x.shape());
    EXPECT_THROW(tape.backward(loss), UsageError);
    op.finish([](const BackwardContext<double>&) {});
  }
}

TEST(Errors, BackwardOnAClearedTapeIsAStaleHandle) {
  Tape<double> tape;
  nn::Linear<double> layer(3, 2, 3);
  V x = tape.variable(values({4, 3}));
  V loss = mean(square(layer.forward(tape, x)));
  tape.backward(loss);
  const Arr gW = layer.weight().grad();
  tape.clear();
  EXPECT_ERROR(UsageError, tape, tape.backward(loss),
               "backward: argument 0 is a stale handle to node #", "cleared");
  EXPECT_ERROR(UsageError, tape, tape.backward(loss, Arr(1.0)), "backward: argument 0 is a stale");
  EXPECT_ERROR(UsageError, tape, tape.jacobian(loss, x), "jacobian: argument 0 is a stale");
  EXPECT_ERROR(UsageError, tape, x.grad(), "stale handle");
  EXPECT_EQ(Arr(layer.weight().grad()), gW);  // the failed sweeps touched no parameter
  // The tape records again, and the stale handles stay stale though their slots are reused.
  V x2 = tape.variable(values({4, 3}));
  V loss2 = mean(square(layer.forward(tape, x2)));
  EXPECT_EQ(loss2.index(), loss.index());
  EXPECT_ERROR(UsageError, tape, tape.backward(loss), "stale handle");
  tape.backward(loss2);
}

TEST(Errors, RepeatedSweepsRestartTapeAdjointsAndAccumulateParameters) {
  // The defined semantics (README "Backward twice"): every sweep restarts the tape's own
  // adjoints from zero; Parameter gradients accumulate until zero_grad().
  Tape<double> tape;
  nn::MLP<double> mlp({3, 5, 2}, nn::Activation::kTanh, 4);
  V x = tape.variable(values({4, 3}, -1, 1));
  V h = mlp.forward(tape, x);  // [4,2]
  V loss = softmax_cross_entropy(h, std::vector<std::int32_t>{0, 1, 1, 0});
  tape.backward(loss);
  const Arr gx = x.grad(), gh = h.grad();
  std::vector<Arr> gp;
  for (Parameter<double>* p : mlp.parameters()) gp.push_back(p->grad());
  tape.backward(loss);
  EXPECT_EQ(Arr(x.grad()), gx);  // recomputed, not doubled
  EXPECT_EQ(Arr(h.grad()), gh);
  for (std::size_t i = 0; i < gp.size(); ++i)  // doubled (up to the order of the additions)
    EXPECT_TRUE(xt::allclose(Arr(mlp.parameters()[i]->grad()), 2.0 * gp[i], 1e-14, 0.0))
        << mlp.parameters()[i]->name();
  // A sweep from another output, with a seed: x's adjoint holds that VJP alone.
  const Arr u = values({4, 2}, -1, 1, 11);
  tape.backward(h, u);
  Arr want;
  {
    Tape<double> fresh;  // the same VJP on a fresh tape
    V xf = fresh.variable(Arr(x.value()));
    fresh.backward(mlp.forward(fresh, xf), u);
    want = xf.grad();
  }
  EXPECT_EQ(Arr(x.grad()), want);
  // A sweep with respect to x only leaves the parameters alone.
  for (Parameter<double>* p : mlp.parameters()) p->zero_grad();
  tape.backward(loss, {x});
  EXPECT_EQ(Arr(x.grad()), gx);
  for (Parameter<double>* p : mlp.parameters())
    EXPECT_EQ(Arr(p->grad()), xt::zeros<double>(p->grad().shape())) << p->name();
}

TEST(Errors, AnotherThreadCannotRecordOrSweepWhileOneOwnsTheTape) {
  Tape<double> tape;
  nn::Linear<double> layer(3, 2, 5);
  V x = tape.variable(values({4, 3}));
  V loss = mean(tanh(layer.forward(tape, x)));
  const Snapshot before = snapshot(tape);
  std::vector<std::string> messages;
  std::thread t([&] {
    auto attempt = [&](const std::function<void()>& f) {
      try {
        f();
        messages.push_back("(no error)");
      } catch (const UsageError& e) {
        messages.push_back(e.what());
      }
    };
    attempt([&] { tanh(x); });
    attempt([&] { matmul_nt(x, x); });
    attempt([&] { layer.forward(tape, x); });
    attempt([&] { tape.variable(1.0); });
    attempt([&] { tape.constant(values({2})); });
    attempt([&] { tape.param(layer.weight()); });
    attempt([&] { tape.detach(x); });
    attempt([&] { tape.begin_op("custom", {x}, Shape{}); });
    attempt([&] { tape.backward(loss); });
    attempt([&] { tape.backward(loss, Arr(1.0)); });
    attempt([&] { tape.jacobian(loss, x); });
  });
  t.join();
  const char* names[] = {"tanh",   "matmul_nt", "linear",   "variable", "constant", "param",
                         "detach", "custom",    "backward", "backward", "jacobian"};
  ASSERT_EQ(messages.size(), std::size(names));
  for (std::size_t i = 0; i < messages.size(); ++i) {
    EXPECT_TRUE(contains(messages[i], std::string("tape: ") + names[i] +
                                          " from a thread that does not own this tape"))
        << messages[i];
    EXPECT_TRUE(contains(messages[i], "clear() releases it")) << messages[i];
  }
  EXPECT_EQ(snapshot(tape), before);
  EXPECT_EQ(Arr(layer.weight().grad()), xt::zeros<double>({3, 2}));
  // The owner goes on; after clear() another thread may take the tape over.
  tape.backward(loss);
  tape.clear();
  double got = 0;
  std::atomic<int> stage{0};
  std::thread t2([&] {
    V x2 = tape.variable(values({4, 3}));
    V l2 = mean(tanh(layer.forward(tape, x2)));
    tape.backward(l2);
    got = l2.item();
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
    tape.clear();  // only the owner releases the tape
  });
  while (stage.load() != 1) std::this_thread::yield();
  EXPECT_GT(got, -1.0);
  EXPECT_THROW(tape.variable(1.0), UsageError);  // now the other thread's until its clear()
  try {
    tape.clear();
    ADD_FAILURE() << "clear() from a thread that does not own the tape was accepted";
  } catch (const UsageError& e) {
    EXPECT_TRUE(contains(e.what(), "tape: clear() from a thread that does not own this tape"))
        << e.what();
  }
  stage.store(2);
  t2.join();
  EXPECT_NO_THROW(tape.variable(1.0));
}

// ---- anomaly mode
// --------------------------------------------------------------------------------

namespace {

/// The ValueError `f` throws (fails the test if it throws nothing or something else).
std::string anomaly_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const ValueError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ValueError: " << e.what();
    return {};
  }
  ADD_FAILURE() << "no anomaly reported";
  return {};
}

/// "test_errors.cpp:<line>", as the message shows the record site.
std::string here(int line) { return "test_errors.cpp:" + std::to_string(line); }

}  // namespace

TEST(Anomaly, OffByDefaultAndPerThread) {
  bool in_new_thread = true;
  std::thread([&] { in_new_thread = anomaly_mode(); }).join();
  EXPECT_FALSE(in_new_thread);
  set_anomaly_mode(true);
  EXPECT_TRUE(anomaly_mode());
  std::thread([&] { in_new_thread = anomaly_mode(); }).join();
  EXPECT_FALSE(in_new_thread);
  set_anomaly_mode(false);
  {
    AnomalyModeGuard on;
    EXPECT_TRUE(anomaly_mode());
    {
      AnomalyModeGuard off(false);
      EXPECT_FALSE(anomaly_mode());
    }
    EXPECT_TRUE(anomaly_mode());
  }
  EXPECT_FALSE(anomaly_mode());
}

TEST(Anomaly, OffItLetsIEEEValuesThrough) {
  Tape<double> tape;
  V x = tape.variable(Arr{1.0, 0.0});
  EXPECT_EQ(log(x).value()(1), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(div(x, x).value()(1)));
  EXPECT_TRUE(std::isinf(div(1.0, x).value()(1)));
}

TEST(Anomaly, ForwardNamesTheOpAndTheLineThatRecordedIt) {
  Tape<double> tape;
  V x = tape.variable(Arr{2.0, 0.0, 1.0});
  V z = tape.constant(Arr{1.0, 0.0, 4.0});
  AnomalyModeGuard on;
  const Snapshot before = snapshot(tape);
  int line = __LINE__ + 1;
  std::string m = anomaly_message([&] { log(x); });
  EXPECT_TRUE(contains(m, "anomaly: op 'log'")) << m;
  EXPECT_TRUE(contains(m, here(line))) << m;
  EXPECT_TRUE(contains(m, "-inf in its forward output at element 1 of [3]")) << m;
  EXPECT_EQ(snapshot(tape), before);  // the op was rolled back
  line = __LINE__ + 1;
  m = anomaly_message([&] { div(x, z); });
  EXPECT_TRUE(contains(m, "anomaly: op 'div'")) << m;
  EXPECT_TRUE(contains(m, here(line))) << m;
  EXPECT_TRUE(contains(m, "nan")) << m;  // 0/0
  line = __LINE__ + 1;
  m = anomaly_message([&] { div(1.0, x); });
  EXPECT_TRUE(contains(m, "op 'rdiv_scalar'") && contains(m, here(line)) && contains(m, "inf"))
      << m;
  line = __LINE__ + 1;
  m = anomaly_message([&] { exp(mul(x, 1000.0)); });
  EXPECT_TRUE(contains(m, "op 'exp'") && contains(m, here(line)) && contains(m, "inf")) << m;
  EXPECT_EQ(tape.size(), before.size + 1);  // mul_scalar was fine and stays; exp was rolled back
  // In float too, through a layer: the record site of Linear::forward is the caller's line.
  Tape<float> tf;
  nn::Linear<float> layer(2, 1, 1);
  layer.weight().value().fill(2.0f);
  auto big = tf.constant(xt::xarray<float>{{3e38f, 3e38f}});  // 1.2e39 overflows float
  line = __LINE__ + 1;
  m = anomaly_message([&] { layer.forward(tf, big); });
  EXPECT_TRUE(contains(m, "op 'linear'") && contains(m, here(line)) && contains(m, "inf")) << m;
}

TEST(Anomaly, BackwardNamesTheOpWhoseAdjointOverflowed) {
  AnomalyModeGuard on;
  {
    // √x at 0: the forward value 0 is finite, its derivative 1/(2√x) is not.
    Tape<double> tape;
    V x = tape.variable(Arr{4.0, 0.0});
    const int line = __LINE__ + 1;
    V r = pow(x, 0.5);
    V loss = sum(r);
    const std::string m = anomaly_message([&] { tape.backward(loss); });
    EXPECT_TRUE(contains(m, "anomaly: op 'pow'")) << m;
    EXPECT_TRUE(contains(m, here(line))) << m;
    EXPECT_TRUE(contains(m, "inf in its backward, adjoint of input 0 at element 1")) << m;
  }
  {
    // 1/x near 0: 1/1e-200 = 1e200 is finite, its derivative −1/x² = −1e400 overflows.
    Tape<double> tape;
    V x = tape.variable(Arr{1e-200});
    const int line = __LINE__ + 1;
    V r = pow(x, -1.0);
    const std::string m = anomaly_message([&] { tape.backward(r); });
    EXPECT_TRUE(contains(m, "op 'pow'") && contains(m, here(line)) && contains(m, "-inf")) << m;
  }
  {
    // A custom op whose backward writes NaN.
    Tape<double> tape;
    V x = tape.variable(Arr{1.0, 2.0});
    const int line = __LINE__ + 1;
    auto op = tape.begin_op("leaky_custom", {x}, x.shape());
    for (std::size_t i = 0; i < 2; ++i) op.out_data()[i] = 2 * op.input_data(0)[i];
    V y = op.finish([](const BackwardContext<double>& c) {
      c.grad_data(0)[0] += c.out_grad_data()[0] * 2;
      c.grad_data(0)[1] += std::nan("");
    });
    const std::string m = anomaly_message([&] { tape.backward(sum(y)); });
    EXPECT_TRUE(contains(m, "op 'leaky_custom'") && contains(m, here(line)) &&
                contains(m, "nan in its backward, adjoint of input 0 at element 1"))
        << m;
  }
  {
    // Off: the same sweep completes and leaves the inf in the adjoint.
    AnomalyModeGuard off(false);
    Tape<double> tape;
    V x = tape.variable(Arr{0.0});
    tape.backward(sum(pow(x, 0.5)));
    EXPECT_TRUE(std::isinf(x.grad()(0)));
  }
}
