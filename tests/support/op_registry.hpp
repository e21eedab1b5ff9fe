// Test support: the one table of wengert's built-in ops, read by every test that covers "every
// op": the bad-handle tests (tests/engine/test_errors.cpp), the random-graph gradient tests
// (random_graph.hpp) and the tape fuzzer (tests/fuzz/fuzz_tape.cpp).
//
// HOW TO ADD AN OP (a four-file change: header, source, test, registry line)
//   1. declare it in ops/wengert/ops/<file>.hpp and define it in ops/src/<file>.cpp;
//   2. test it on its own in tests/ops/test_<file>.cpp;
//   3. add ONE entry at the END of the table in op_registry.cpp (append, do not insert: the
//      fuzzer maps input bytes to entries by position, and its saved regression inputs rely on
//      the positions of the entries before yours). For an elementwise op of one tensor that is
//      one line:
//        Op("softplus", [](auto v, auto&) { return softplus(v[0]); }),
//      The lambda records the op: v is its inputs (const Var<T>*, T = float and double), the
//      second argument the OpArgs. Optionally add the value in double, for the fuzzer's value
//      check (exact for any finite x: the fuzzer feeds ±1e30) and its tolerance in epsilons:
//            .ref([](double x, double) {
//              return std::max(x, 0.) + std::log1p(std::exp(-std::abs(x)));
//            }, 16)
//      Other ops say more: Op(name, ShapeRule::kLoss, ...) for how the inputs' shapes relate
//      (kElementwise if omitted), .domain(input, ...) for the values where the derivative is
//      smooth with a margin (log: at_least(0.2)), .scalar(...) for a scalar operand,
//      .with_spellings({...}) for equivalent ways to write the call (named form, operator).
//      Ops whose shapes follow no rule above (reshape, concat, index_select, bmm, layer_norm)
//      take R::kCustom1, kCustom2 or kCustom3 (by their number of tensor inputs) and
//      .custom(output_shape, partner_shape, uses_axis): the output's shape for given inputs (or
//      nullopt: the op must refuse them), the shape of each further input that fits input 0,
//      and whether the op reads args.axis. Non-tensor arguments (indices, a mask) are fixed
//      in the lambda; it may read a valid input's shape (shape_or_empty) but nothing else.
// That entry alone puts the op into the error tests (empty, stale, other-tape and other-thread
// handles in every argument, tape unchanged), the random graphs (Jacobians against finite
// differences, Parameter path, float against double) and the fuzzer (handles, tape sizes,
// output shape, anomaly mode, replay; values against ref() when given).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <wengert/shape.hpp>
#include <wengert/var.hpp>

namespace wengert::testing {

/// Extra parameters of one call. Which fields an op reads follows from its ShapeRule and
/// whether it takes a scalar (OpEntry::takes_scalar).
struct OpArgs {
  int spelling = 0;   // which of the op's equivalent spellings (OpEntry::spellings) to use
  double scalar = 0;  // the scalar operand, or pow's exponent
  int axis = 0;       // kReduceAxis: in [−rank, rank)
  bool keepdims = false;
  bool transpose_a = false, transpose_b = false;  // kMatmul
  std::vector<std::int32_t> labels;               // kLabels: one per row of input 0, in [0, c)
  // kConv2d: stride, padding, dilation; kPool2d: kernel, stride (0: the kernel), padding
  std::size_t kernel = 2, stride = 1, padding = 0, dilation = 1;
};

/// How an op's inputs' shapes relate, and the output's shape (see output_shape()). The rule
/// also fixes the arity (arity_of()).
enum class ShapeRule {
  kElementwise,  // one input; the output has its shape (unary ops, scalar forms, softmax)
  kBroadcast,    // two inputs that broadcast like numpy; the output has the broadcast shape
  kReduceAll,    // one input; the output is []
  kReduceAxis,   // one input of rank ≥ 1 and args.axis, args.keepdims; the axis is removed
  kMatmul,       // op(a)·op(b) with args.transpose_a/b: [m,k]·[k,n] → [m,n]
  kBiasAdd,      // x of rank ≥ 1 and b = [x's last dimension]; the output has x's shape
  kLinear,       // x [m,k], W [k,n], b [n] → [m,n]
  kLoss,         // two nonempty inputs of one shape → []
  kLabels,       // logits [m,c] (m, c ≥ 1) and args.labels, m of them in [0, c) → []
  kConv2d,       // x [N,C,H,W], W [O,C,kh,kw], b [O] with args.stride/padding/dilation
  kPool2d,       // x [N,C,H,W] (H, W ≥ 1) with args.kernel/stride/padding → [N,C,Ho,Wo]
  kGlobalPool,   // x [N,C,H,W] (H, W ≥ 1) → [N,C]
  kBatchNorm,    // x [N,C,H,W], gamma [C], beta [C] → x's shape (N·H·W ≥ 1 unless C = 0)
  // Ops whose shapes follow their own rule (shape and indexing ops, axis reductions, ...), of
  // 1, 2 or 3 inputs: OpEntry::shape_fn gives the output's shape or the refusal,
  // OpEntry::partner_fn the shapes of inputs 1 and 2 that fit input 0, and with
  // OpEntry::uses_axis the op reads args.axis (and args.keepdims).
  kCustom1,
  kCustom2,
  kCustom3,
};

int arity_of(ShapeRule rule);

/// Values where an op's derivative is smooth with a margin that a finite-difference step
/// cannot cross: x in [lo, hi] and |x| ≥ min_abs.
struct OpDomain {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  double min_abs = 0;
  bool contains(double x) const { return x >= lo && x <= hi && (x < 0 ? -x : x) >= min_abs; }
  bool operator==(const OpDomain& o) const {
    return lo == o.lo && hi == o.hi && min_abs == o.min_abs;
  }
};
inline OpDomain anything() { return {}; }
inline OpDomain at_least(double lo) { return {lo}; }
inline OpDomain at_most(double hi) { return {-std::numeric_limits<double>::infinity(), hi}; }
inline OpDomain between(double lo, double hi) { return {lo, hi}; }
inline OpDomain away_from_zero(double min_abs) {
  return {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity(),
          min_abs};
}

/// Records the op on its inputs' tape: the inputs (arity of them) and the extra parameters.
template <class T>
using RecordFn = Var<T> (*)(const Var<T>* inputs, const OpArgs& args);

/// One built-in op. Build entries with Op(...) and the setters below.
struct OpEntry {
  std::string name;     // as the tape names the node (matmul: see node_name())
  std::string variant;  // tells apart entries of one name: "axis", "labels", "targets"
  ShapeRule rule = ShapeRule::kElementwise;
  int arity = 1;
  std::size_t min_rank = 0, max_rank = Shape::kMaxRank;  // of input 0
  std::vector<std::string> spellings{"named"};  // how the call is written, per args.spelling
  OpDomain domains[3];                          // of each input's values
  OpDomain (*domain_fn)(int input,
                        const OpArgs& args) = nullptr;  // instead, if they depend on args
  bool takes_scalar = false;                            // args.scalar is an operand
  OpDomain scalar_domain = between(-2, 2);              // where the random graphs draw it from
  std::vector<double> scalar_values;                    // or among these, if any
  RecordFn<float> record_float = nullptr;
  RecordFn<double> record_double = nullptr;
  // Elementwise reference values in double, for the fuzzer: reference(x, args.scalar) for one
  // input (kElementwise), reference2(a, b) for two (kBroadcast); tolerance ref_eps·ε·|value|.
  double (*reference)(double x, double scalar) = nullptr;
  double (*reference2)(double a, double b) = nullptr;
  int ref_eps = 4;
  // kCustom1..3 (custom()): the output's shape for these inputs, or nullopt if the op must
  // refuse them; the shape of input k ≥ 1 that fits input 0 `x`; whether args.axis is read;
  // input 0's shape in op_examples (default: of rank nearest 2, [2,3]).
  std::optional<Shape> (*shape_fn)(const std::vector<Shape>& in, const OpArgs& args) = nullptr;
  Shape (*partner_fn)(const Shape& x, int k, const OpArgs& args) = nullptr;
  bool uses_axis = false;
  std::optional<Shape> example_shape;

  /// "name", or "name(variant)": unique in the registry.
  std::string label() const { return variant.empty() ? name : name + "(" + variant + ")"; }
  /// The node name the tape gives this call: `name`, but matmul with transposes names itself
  /// "matmul_nt", "matmul_tn" or "matmul_tt".
  std::string node_name(const OpArgs& args) const;
  /// The domain of input k's values for these args.
  OpDomain input_domain(int k, const OpArgs& args) const {
    return domain_fn ? domain_fn(k, args) : domains[k];
  }
  Var<float> record(const Var<float>* in, const OpArgs& args) const {
    return record_float(in, args);
  }
  Var<double> record(const Var<double>* in, const OpArgs& args) const {
    return record_double(in, args);
  }

  // ---- setters, for the table ----
  OpEntry& with_variant(std::string v) {
    variant = std::move(v);
    return *this;
  }
  OpEntry& ranks(std::size_t lo, std::size_t hi) {
    min_rank = lo;
    max_rank = hi;
    return *this;
  }
  OpEntry& with_spellings(std::vector<std::string> s) {
    spellings = std::move(s);
    return *this;
  }
  OpEntry& domain(int k, OpDomain d) {
    domains[k] = d;
    return *this;
  }
  OpEntry& domain_by(OpDomain (*f)(int, const OpArgs&)) {
    domain_fn = f;
    return *this;
  }
  /// Takes a scalar operand, drawn from `d` by the random graphs (or among `values`).
  OpEntry& scalar(OpDomain d, std::vector<double> values = {}) {
    takes_scalar = true;
    scalar_domain = d;
    scalar_values = std::move(values);
    return *this;
  }
  OpEntry& ref(double (*f)(double, double), int eps = 4) {
    reference = f;
    ref_eps = eps;
    return *this;
  }
  OpEntry& ref2(double (*f)(double, double), int eps = 4) {
    reference2 = f;
    ref_eps = eps;
    return *this;
  }
  /// kCustom1..3: the shape rule as functions (see the fields above).
  OpEntry& custom(std::optional<Shape> (*shape)(const std::vector<Shape>&, const OpArgs&),
                  Shape (*partner)(const Shape&, int, const OpArgs&) = nullptr, bool axis = false) {
    shape_fn = shape;
    partner_fn = partner;
    uses_axis = axis;
    return *this;
  }
  OpEntry& example(Shape s) {
    example_shape = s;
    return *this;
  }
};

/// A new entry: its name, shape rule (and so arity and the ranks input 0 may have) and the
/// call that records it. The call is a captureless generic lambda
/// [](auto v, auto& a) { return ...; }, compiled for float and double.
template <class L>
OpEntry Op(std::string name, ShapeRule rule, L call) {
  OpEntry e;
  e.name = std::move(name);
  e.rule = rule;
  e.arity = arity_of(rule);
  if (rule == ShapeRule::kReduceAxis || rule == ShapeRule::kBiasAdd) e.min_rank = 1;
  if (rule == ShapeRule::kMatmul || rule == ShapeRule::kLinear || rule == ShapeRule::kLabels)
    e.min_rank = e.max_rank = 2;
  if (rule == ShapeRule::kConv2d || rule == ShapeRule::kPool2d || rule == ShapeRule::kGlobalPool ||
      rule == ShapeRule::kBatchNorm)
    e.min_rank = e.max_rank = 4;
  e.record_float = call;
  e.record_double = call;
  return e;
}
template <class L>
OpEntry Op(std::string name, L call) {
  return Op(std::move(name), ShapeRule::kElementwise, call);
}

/// Every built-in op, in a fixed order (see the note on appending above).
const std::vector<OpEntry>& op_registry();

/// The entry with this label ("add", "sum(axis)"); throws std::out_of_range if there is none.
const OpEntry& find_op(const std::string& label);

/// The shape of the op's output for inputs of these shapes (and these args: axis, transposes,
/// labels), or nullopt if the op must refuse them (ShapeError, or ValueError for empty loss
/// inputs and bad labels). Values are not looked at: an op may still refuse valid shapes for
/// their values (log of a negative number).
std::optional<Shape> output_shape(const OpEntry& op, const std::vector<Shape>& inputs,
                                  const OpArgs& args);

/// numpy broadcasting of two shapes, or nullopt.
std::optional<Shape> broadcast_shapes(const Shape& a, const Shape& b);

/// A fixed call with valid inputs, for tests that need one: args and input shapes. Values for
/// the inputs come from the op's domain (OpEntry::input_domain(k, args)).
struct OpExample {
  OpArgs args;
  std::vector<Shape> shapes;
  std::string str;  // "add: a + b, [2,3] and [3]"
};

/// Valid calls covering every spelling of the op and each form of its parameters (every
/// transpose pair, axes counted from both ends with and without keepdims, each listed scalar,
/// several broadcast pairs), on small shapes.
std::vector<OpExample> op_examples(const OpEntry& op);

}  // namespace wengert::testing
