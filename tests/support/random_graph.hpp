// Test support: random computation graphs over every built-in op (every entry of the op
// registry, op_registry.hpp), for differential testing of gradients against central finite
// differences.
//
// A RandomGraph is a small program in slot order: each slot is a leaf (a constant, a tape
// variable or a Parameter, with its value) or one op applied to earlier slots. Generation
// records the program as it goes, so every choice can look at real values:
//   * fan-out: ops pick their inputs among all earlier slots, so a value feeds several ops;
//   * reused inputs: a binary op may take one slot twice (x·x, x + x, mse(x, x));
//   * broadcasting: the second operand of add/sub/mul/div is often an existing slot or a fresh
//     leaf of a broadcast-compatible shape ([3,1] with [4], [] with [2,3], ...);
//   * safe domains: an op is only applied where its derivative is smooth with a margin that a
//     finite-difference step cannot cross (each registry entry's domain: log and fractional
//     powers of values ≥ 0.2, divisors with |b| ≥ 0.3, relu inputs with |x| ≥ 0.05, exp of
//     values ≤ 3, cross-entropy probabilities and targets in [0.02, 0.98]); results larger than
//     50 in magnitude are refused. A failure therefore means a wrong gradient, not a kink or an
//     overflow.
// Inputs follow each entry's shape rule; extra parameters (scalar operand, pow's exponent,
// axis and keepdims, transposes, labels) and the spelling of the call (named form, operator)
// are drawn at random.
// Every op output that nothing else reads is summed into the final output, so every op counts.
//
// check_random_graph() then compares, for one graph:
//   1. the analytic Jacobian of the output with respect to every variable and parameter leaf
//      against central differences, and the dot-product test, through the public gradcheck
//      (float64, every differentiable leaf as a variable);
//   2. the Parameter path against the variable path: the same VJP with the leaves recorded as
//      Parameters gives bit-identical gradients; a second sweep doubles parameter gradients
//      and leaves tape gradients as they were; a sweep restricted to a subset of the leaves
//      gives the same gradients for the chosen ones and touches no other;
//   3. float32 against float64: the same graph in float gives the same value and VJP to a
//      tolerance (float kernels are separate code: other SIMD widths and tails).
// On failure the message holds the seed, the program and the tape listing (Tape::str()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include <wengert/shape.hpp>

#include "op_registry.hpp"

namespace wengert::testing {

enum class LeafKind { kConstant, kVariable, kParameter };

/// The checker's own test, not a registry op: "square" with derivative x instead of 2x,
/// recorded as "broken_square" and listed in programs as "planted_bug".
const OpEntry& planted_bug_op();

struct GraphStep {
  const OpEntry* op = nullptr;  // a registry entry, or &planted_bug_op()
  int in[3] = {-1, -1, -1};     // input slots (op->arity of them)
  OpArgs args;                  // spelling, scalar, axis, keepdims, transposes, labels
};

struct GraphSlot {
  bool is_leaf = true;
  LeafKind kind = LeafKind::kConstant;  // leaves
  xt::xarray<double> value;             // leaves
  GraphStep step;                       // ops
  Shape shape;                          // of the leaf or of the op's output
};

struct RandomGraphOptions {
  int min_ops = 3;
  int max_ops = 12;
  std::size_t max_elements = 48;  // per slot
  bool plant_bug = false;         // make planted_bug_op() one of the ops (always used once)
};

struct RandomGraph {
  std::uint64_t seed = 0;
  std::vector<GraphSlot> slots;
  int output = -1;
  /// The program, one line per slot.
  std::string str() const;
};

RandomGraph generate_random_graph(std::uint64_t seed, const RandomGraphOptions& options = {});

/// What a run covered (summed over graphs): ops by label, each op's spellings ("add as a + b"),
/// and graph features.
struct GraphStats {
  std::map<std::string, std::size_t> ops, spellings;
  std::size_t graphs = 0, fan_out = 0, reused_input = 0, broadcast = 0, constants = 0,
              variables = 0, parameters = 0, non_scalar_outputs = 0;
  void add(const RandomGraph& g);
};

struct GraphCheck {
  bool ok = true;
  std::string message;  // on failure: what, the seed, the program and the tape listing
};

GraphCheck check_random_graph(const RandomGraph& g);

}  // namespace wengert::testing
