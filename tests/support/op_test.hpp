// Test support: one call that puts an op through every check an op test needs.
//
//   op_test<1>("softplus", [](auto&&... v) { return softplus(v...); })
//       .elementwise_reference([](double x) { return std::log1p(std::exp(x)); })
//       .run();
//
// op_test<N>(name, f) takes the op as a generic callable of N Var arguments, recorded once for
// float and once for double, and returns an OpTest to configure. run() then checks, on every
// shape case of the op's ShapeFamily (its fixed edge cases and seeded random ones):
//   kForward     the output's shape and values against the test's closed-form reference
//                (float64; reference(...) or elementwise_reference(...));
//   kGradcheck   the public gradcheck (float64 central differences and the dot-product test);
//   kFloat32     float32 against float64: value and the VJP of a random seed, on the same
//                (float-representable) inputs, to a float tolerance;
//   kConstant    each input in turn recorded as a constant: it gets no gradient (grad() throws
//                UsageError), the others get the same gradient as before; with every input a
//                constant, the output needs no gradient;
//   kFanOut      each input feeding the op twice (the op recorded twice, the outputs added):
//                twice the gradient; and, where inputs of one shape exist (mul(x, x),
//                matmul(a, a)), one variable passed as all of them: the sum of the gradients
//                those arguments get as distinct variables;
//   kShapeError  each wrong-shape case throws ShapeError naming the op, float and double, and
//                leaves the tape as it was: node count, listing (Tape::str()), arena capacity;
//   kReplay      record + backward, clear, record + backward again: the replays allocate
//                nothing (AllocCounter; OpenBLAS's own allocations are counted apart), keep the
//                arena's capacity and give bit-identical values and gradients (float, double).
//   kTapeReplay  Tape::replay (record once, replay): the op recorded on variables, a backward,
//                new input values given with set_input, replay() (allocating nothing) and a
//                backward again give the value and every input gradient of a fresh recording
//                with the new values, bit for bit (memcmp), float and double; then the same
//                with every input a constant_view whose memory is rewritten in place (the
//                no-gradient paths), comparing the value. An op that cannot replay (dropout: a
//                new mask per step) is declared with cannot_replay(reason): replay() must then
//                refuse with UsageError and leave the value as it was.
// Every failure is a gtest failure whose message names the op, the check, the seed, the case
// and the shapes; a check that cannot apply is switched off with skip(check, reason), and a
// one-line summary of what ran (and what was off, and why) is printed.
//
// Inputs are drawn uniformly from a Domain per input (optionally kept away from 0), or by a
// values(...) function for structured inputs. Non-tensor arguments (class labels, an axis, a
// scalar operand) are captured by the callable; prepare(...) sets such captured data up for
// each shape case before anything is recorded (e.g. one label per row).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

#include <wengert/grad_mode.hpp>
#include <wengert/gradcheck.hpp>
#include <wengert/tape.hpp>

namespace wengert::testing {

using Dims = std::vector<std::size_t>;
/// The shapes of one call: one Dims per input of the op.
using ShapeCase = std::vector<Dims>;
/// Input values of one call, in float64 (every value is float-representable).
using Values = std::vector<xt::xarray<double>>;

enum class Check {
  kForward,
  kGradcheck,
  kFloat32,
  kConstant,
  kFanOut,
  kShapeError,
  kReplay,
  kTapeReplay
};
inline constexpr std::size_t kNumChecks = 8;
const char* check_name(Check c);

/// Uniform values in [lo, hi]; with away > 0, only values with |v| ≥ away (a kink or a pole at
/// 0 stays out of the finite-difference stencil).
struct Domain {
  double lo = -2.0;
  double hi = 2.0;
  double away = 0.0;
};

/// The shapes an op is checked on.
struct ShapeFamily {
  std::string name;
  std::vector<ShapeCase> fixed;                       // edge cases, always run
  std::function<ShapeCase(std::mt19937_64&)> random;  // seeded random cases (may be empty)
  int random_count = 8;
  std::vector<ShapeCase> bad;    // must throw ShapeError
  std::string any_shape_reason;  // set when the op accepts every shape: why kShapeError is off
};

namespace shapes {
/// `arity` inputs of one shape: elementwise ops (unary, or binary ops that need equal shapes,
/// like mse), reductions, row-wise ops. Edge cases of rank min_rank..max_rank: rank 0, size-1
/// dimensions, a SIMD tail (7), tails after two batches (17 for double, 33 for float), rank 3
/// and 4; empty dimensions if allow_empty; seeded random shapes. Wrong shapes: a rank below
/// min_rank or above max_rank (< 4), and (arity ≥ 2) one input's shape unlike the others'.
/// With arity 1 and ranks 0..4 every shape is valid: kShapeError is off with that reason.
ShapeFamily same(std::size_t arity, std::size_t min_rank = 0, std::size_t max_rank = 4,
                 bool allow_empty = true);
/// Two inputs that broadcast like numpy: [] with [2,3], [n,1] with [1,m], [3,1] with [4], rank
/// 3 with rank 2, [1] with [1,1], empty dimensions, seeded random pairs; wrong: [3,4] with
/// [5,4], [2] with [3], [2,3] with [3,2].
ShapeFamily broadcast();
/// Exactly these cases (no random ones); wrong shapes given separately with bad_shapes.
ShapeFamily fixed(std::vector<ShapeCase> cases);
/// Ops over a product [m,k]·[k,n] (matmul in every transpose form, linear): `make(m, k, n)`
/// gives one case's input shapes. Edge cases: the 1s, a 1-wide inner or outer dimension, a
/// square case (one variable can be both operands), a SIMD-sized k (17), an empty k, m and n;
/// then seeded random m, k, n in [1, 6]. Wrong shapes are the caller's (set .bad).
ShapeFamily product(std::string name,
                    std::function<ShapeCase(std::size_t, std::size_t, std::size_t)> make);
}  // namespace shapes

template <class T>
using OpFn = std::function<Var<T>(const std::vector<Var<T>>&)>;
using ReferenceFn = std::function<xt::xarray<double>(const Values&)>;
using ValuesFn = std::function<Values(const ShapeCase&, std::mt19937_64&)>;
using PrepareFn = std::function<void(const ShapeCase&, std::mt19937_64&)>;

/// What run() did.
struct OpTestReport {
  std::string op;
  std::uint64_t seed = 0;
  std::array<int, kNumChecks> cases{};          // cases each check ran on
  std::array<std::string, kNumChecks> skipped;  // the reason, for a check switched off
  int shared_argument_cases = 0;                // kFanOut cases with one variable as 2+ args
  int failures = 0;
  int ran(Check c) const { return cases[static_cast<std::size_t>(c)]; }
  /// "softplus (seed 0x…): forward 25, gradcheck 25, …, shape-error off (every shape is valid)"
  std::string str() const;
};

class OpTest {
 public:
  OpTest(std::string name, std::size_t arity, OpFn<float> f32, OpFn<double> f64);

  /// The shape cases (default: shapes::same(arity)).
  OpTest& shapes(ShapeFamily family);
  /// Wrong-shape cases, added to the family's.
  OpTest& bad_shapes(std::vector<ShapeCase> cases);
  /// The value domain of every input, or of input i.
  OpTest& domain(Domain d);
  OpTest& domain(std::size_t input, Domain d);
  /// Draws all inputs of a case (instead of the domains).
  OpTest& values(ValuesFn f);
  /// Called before each case (good and wrong shapes) with its shapes, before values are drawn.
  OpTest& prepare(PrepareFn f);
  /// The closed-form forward: float64 inputs to the expected output (shape and values).
  OpTest& reference(ReferenceFn f);
  /// Shorthand for a one-input elementwise op: y[i] = f(x[i]).
  OpTest& elementwise_reference(std::function<double(double)> f);
  /// The base seed (default: a hash of the name). WENGERT_OP_TEST_SEED, if set, is xor-ed in.
  OpTest& seed(std::uint64_t s);
  OpTest& gradcheck_options(const GradcheckOptions& o);
  /// |got − want| ≤ rtol·|want| + atol·max(1, max|want|), elementwise.
  OpTest& forward_tolerance(double rtol, double atol);  // default 1e-12, 1e-13
  OpTest& float_tolerance(double rtol, double atol);    // default 1e-4, 1e-5
  /// What a ShapeError's message must contain (default: the name up to its first character
  /// that cannot be in an identifier, e.g. "sum" for "sum(axis=1)").
  OpTest& error_token(std::string token);
  /// Switches a check off; the reason is required and printed in the summary.
  OpTest& skip(Check c, std::string reason);
  /// The op is recorded without a forward kernel on purpose (only dropout: its mask is drawn
  /// anew per step), so kTapeReplay checks that Tape::replay refuses it. The reason is required.
  OpTest& cannot_replay(std::string reason);

  /// Runs every check that is on; failures are reported through gtest, at the caller's line.
  OpTestReport run(SourceLoc where = SourceLoc::current()) const;

 private:
  struct Case;
  std::string name_;
  std::size_t arity_;
  OpFn<float> f32_;
  OpFn<double> f64_;
  ShapeFamily family_;
  std::vector<ShapeCase> extra_bad_;
  std::vector<Domain> domains_;
  ValuesFn values_;
  PrepareFn prepare_;
  ReferenceFn reference_;
  std::uint64_t seed_;
  GradcheckOptions gradcheck_;
  double fwd_rtol_ = 1e-12, fwd_atol_ = 1e-13;
  double f32_rtol_ = 1e-4, f32_atol_ = 1e-5;
  std::string token_;
  std::array<std::string, kNumChecks> skip_;
  std::string cannot_replay_;  // why Tape::replay must refuse the op ("" if it must replay it)
  std::vector<std::string> config_errors_;
};

namespace op_test_detail {
template <class T, class F, std::size_t... I>
Var<T> call(const F& f, const std::vector<Var<T>>& v, std::index_sequence<I...>) {
  return f(v[I]...);
}
template <class T, std::size_t N, class F>
OpFn<T> erase(const F& f) {
  return [f](const std::vector<Var<T>>& v) -> Var<T> {
    return call<T>(f, v, std::make_index_sequence<N>{});
  };
}
}  // namespace op_test_detail

/// An op of N tensor inputs, `f` being callable as f(Var<T>, ...) for T = float and double —
/// typically [](auto&&... v) { return op(v...); }, or a lambda that captures non-tensor
/// arguments ([axis](auto&& x) { return sum(x, axis); }). `name` names the op in messages.
template <std::size_t N, class F>
OpTest op_test(std::string name, F f) {
  static_assert(N >= 1 && N <= 4, "op_test: ops of 1 to 4 tensor inputs");
  return OpTest(std::move(name), N, op_test_detail::erase<float, N>(f),
                op_test_detail::erase<double, N>(f));
}

}  // namespace wengert::testing
