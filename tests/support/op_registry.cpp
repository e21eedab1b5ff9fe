// Test support: the op registry (see op_registry.hpp; how to add an op is described there).
#include "op_registry.hpp"

#include <wengert/ops.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace wengert::testing {

namespace {

using R = ShapeRule;

double sigmoid_ref(double x, double) { return 1 / (1 + std::exp(-x)); }

/// pow's smooth domain depends on the exponent: fractional powers need x ≥ 0.2 (≥ 0.3 when
/// also negative), negative integer powers |x| ≥ 0.3; non-negative integer powers take any x.
OpDomain pow_domain(int, const OpArgs& a) {
  const bool fractional = a.scalar != std::trunc(a.scalar), negative = a.scalar < 0;
  if (fractional) return at_least(negative ? 0.3 : 0.2);
  return negative ? away_from_zero(0.3) : anything();
}

// The table. Each entry: the name the tape gives the node, the shape rule (kElementwise if
// omitted) and the call, a lambda of v (the inputs, const Var<T>*) and a (the OpArgs); then
// what else it needs. APPEND new entries at the end (op_registry.hpp says why).
std::vector<OpEntry> make_registry() {
  std::vector<OpEntry> ops = {
      // ---- two tensors, broadcasting ----
      Op("add", R::kBroadcast,
         [](auto v, auto& a) { return a.spelling ? v[0] + v[1] : add(v[0], v[1]); })
          .with_spellings({"add(a, b)", "a + b"})
          .ref2([](double x, double y) { return x + y; }),
      Op("sub", R::kBroadcast,
         [](auto v, auto& a) { return a.spelling ? v[0] - v[1] : sub(v[0], v[1]); })
          .with_spellings({"sub(a, b)", "a - b"})
          .ref2([](double x, double y) { return x - y; }),
      Op("mul", R::kBroadcast,
         [](auto v, auto& a) { return a.spelling ? v[0] * v[1] : mul(v[0], v[1]); })
          .with_spellings({"mul(a, b)", "a * b"})
          .ref2([](double x, double y) { return x * y; }),
      Op("div", R::kBroadcast,
         [](auto v, auto& a) { return a.spelling ? v[0] / v[1] : div(v[0], v[1]); })
          .with_spellings({"div(a, b)", "a / b"})
          .domain(1, away_from_zero(0.3))
          .ref2([](double x, double y) { return x / y; }),

      // ---- a tensor and a scalar ----
      Op("add_scalar",
         [](auto v, auto& a) {
           const int k = a.spelling;
           return k == 0   ? add(v[0], a.scalar)
                  : k == 1 ? add(a.scalar, v[0])
                  : k == 2 ? v[0] + a.scalar
                           : a.scalar + v[0];
         })
          .with_spellings({"add(x, s)", "add(s, x)", "x + s", "s + x"})
          .scalar(between(-2, 2))
          .ref([](double x, double s) { return x + s; }),
      Op("sub_scalar",
         [](auto v, auto& a) { return a.spelling ? v[0] - a.scalar : sub(v[0], a.scalar); })
          .with_spellings({"sub(x, s)", "x - s"})
          .scalar(between(-2, 2))
          .ref([](double x, double s) { return x - s; }),
      Op("rsub_scalar",
         [](auto v, auto& a) { return a.spelling ? a.scalar - v[0] : sub(a.scalar, v[0]); })
          .with_spellings({"sub(s, x)", "s - x"})
          .scalar(between(-2, 2))
          .ref([](double x, double s) { return s - x; }),
      Op("mul_scalar",
         [](auto v, auto& a) {
           const int k = a.spelling;
           return k == 0   ? mul(v[0], a.scalar)
                  : k == 1 ? mul(a.scalar, v[0])
                  : k == 2 ? v[0] * a.scalar
                           : a.scalar * v[0];
         })
          .with_spellings({"mul(x, s)", "mul(s, x)", "x * s", "s * x"})
          .scalar(between(-2, 2))
          .ref([](double x, double s) { return x * s; }),
      Op("div_scalar",
         [](auto v, auto& a) { return a.spelling ? v[0] / a.scalar : div(v[0], a.scalar); })
          .with_spellings({"div(x, s)", "x / s"})
          .scalar(OpDomain{-2, 2, 0.5})
          .ref([](double x, double s) { return x / s; }),
      Op("rdiv_scalar",
         [](auto v, auto& a) { return a.spelling ? a.scalar / v[0] : div(a.scalar, v[0]); })
          .with_spellings({"div(s, x)", "s / x"})
          .scalar(between(-2, 2))
          .domain(0, away_from_zero(0.3))
          .ref([](double x, double s) { return s / x; }),

      // ---- one tensor, elementwise ----
      Op("neg", [](auto v, auto& a) { return a.spelling ? -v[0] : neg(v[0]); })
          .with_spellings({"neg(x)", "-x"})
          .ref([](double x, double) { return -x; }),
      Op("square", [](auto v, auto&) { return square(v[0]); }).ref([](double x, double) {
        return x * x;
      }),
      Op("pow", [](auto v, auto& a) { return pow(v[0], a.scalar); })
          .scalar(between(-2, 3), {0, 1, 2, 3, -1, -2, 0.5, 1.5, 2.5, -0.5})
          .domain_by(pow_domain)
          .ref([](double x, double p) { return std::pow(x, p); }, 16),
      Op("exp", [](auto v, auto&) { return exp(v[0]); })
          .domain(0, at_most(3))
          .ref([](double x, double) { return std::exp(x); }, 16),
      Op("log", [](auto v, auto&) { return log(v[0]); })
          .domain(0, at_least(0.2))
          .ref([](double x, double) { return std::log(x); }, 16),
      Op("sigmoid", [](auto v, auto&) { return sigmoid(v[0]); }).ref(sigmoid_ref, 16),
      Op("tanh", [](auto v, auto&) { return tanh(v[0]); })
          .ref([](double x, double) { return std::tanh(x); }, 16),
      Op("relu", [](auto v, auto&) { return relu(v[0]); })
          .domain(0, away_from_zero(0.05))
          .ref([](double x, double) { return x > 0 ? x : 0.0; }),

      // ---- reductions ----
      Op("sum", R::kReduceAll, [](auto v, auto&) { return sum(v[0]); }),
      Op("mean", R::kReduceAll, [](auto v, auto&) { return mean(v[0]); }),
      Op("sum", R::kReduceAxis, [](auto v, auto& a) { return sum(v[0], a.axis, a.keepdims); })
          .with_variant("axis"),
      Op("mean", R::kReduceAxis, [](auto v, auto& a) { return mean(v[0], a.axis, a.keepdims); })
          .with_variant("axis"),

      // ---- matrix products, layers ----
      Op("matmul", R::kMatmul,
         [](auto v, auto& a) {
           const bool ta = a.transpose_a, tb = a.transpose_b;
           if (a.spelling == 0 || (ta && tb)) return matmul(v[0], v[1], ta, tb);
           if (ta) return matmul_tn(v[0], v[1]);
           return tb ? matmul_nt(v[0], v[1]) : matmul(v[0], v[1]);
         })
          .with_spellings({"matmul(a, b, ta, tb)", "matmul(a, b), matmul_nt or matmul_tn"}),
      Op("bias_add", R::kBiasAdd, [](auto v, auto&) { return bias_add(v[0], v[1]); }),
      Op("linear", R::kLinear, [](auto v, auto&) { return linear(v[0], v[1], v[2]); }),
      Op("softmax", [](auto v, auto&) { return softmax(v[0]); }).ranks(1, Shape::kMaxRank),
      Op("log_softmax", [](auto v, auto&) { return log_softmax(v[0]); }).ranks(1, Shape::kMaxRank),

      // ---- losses ----
      Op("softmax_cross_entropy", R::kLabels,
         [](auto v, auto& a) {
           return a.spelling ? softmax_cross_entropy(v[0], a.labels.data(), a.labels.size())
                             : softmax_cross_entropy(v[0], a.labels);
         })
          .with_variant("labels")
          .with_spellings({"(logits, labels)", "(logits, labels.data(), n)"}),
      Op("softmax_cross_entropy", R::kLoss,
         [](auto v, auto&) { return softmax_cross_entropy(v[0], v[1]); })
          .with_variant("targets")
          .ranks(2, 2),
      Op("sigmoid_binary_cross_entropy", R::kLoss,
         [](auto v, auto&) { return sigmoid_binary_cross_entropy(v[0], v[1]); })
          .domain(1, between(0.02, 0.98)),
      Op("binary_cross_entropy", R::kLoss,
         [](auto v, auto&) { return binary_cross_entropy(v[0], v[1]); })
          .domain(0, between(0.02, 0.98))
          .domain(1, between(0.02, 0.98)),
      Op("mse", R::kLoss, [](auto v, auto&) { return mse(v[0], v[1]); }),
      Op("softplus", [](auto v, auto&) { return softplus(v[0]); })
          .ref(
              [](double x, double) { return std::max(x, 0.) + std::log1p(std::exp(-std::abs(x))); },
              16),
      // ---- images (NCHW) ----
      Op("conv2d", R::kConv2d,
         [](auto v, auto& a) {
           return conv2d(v[0], v[1], v[2], Conv2dOptions{a.stride, a.padding, a.dilation});
         }),
      Op("max_pool2d", R::kPool2d,
         [](auto v, auto& a) {
           return max_pool2d(v[0], Pool2dOptions{a.kernel, a.stride, a.padding});
         }),
      Op("avg_pool2d", R::kPool2d,
         [](auto v, auto& a) {
           return avg_pool2d(v[0], Pool2dOptions{a.kernel, a.stride, a.padding});
         }),
      Op("global_avg_pool", R::kGlobalPool, [](auto v, auto&) { return global_avg_pool(v[0]); }),
      // Training mode without running statistics: a pure function of its three inputs.
      Op("batch_norm2d", R::kBatchNorm,
         [](auto v, auto&) { return batch_norm2d(v[0], v[1], v[2]); }),
      Op("flatten", R::kFlatten, [](auto v, auto&) { return flatten(v[0]); }),
      // New ops here, at the end.
  };
  return ops;
}

}  // namespace

int arity_of(ShapeRule rule) {
  switch (rule) {
    case R::kBroadcast:
    case R::kMatmul:
    case R::kBiasAdd:
    case R::kLoss:
      return 2;
    case R::kLinear:
    case R::kConv2d:
    case R::kBatchNorm:
      return 3;
    default:
      return 1;
  }
}

std::string OpEntry::node_name(const OpArgs& a) const {
  if (rule != R::kMatmul || !(a.transpose_a || a.transpose_b)) return name;
  return name + (a.transpose_a ? (a.transpose_b ? "_tt" : "_tn") : "_nt");
}

const std::vector<OpEntry>& op_registry() {
  static const std::vector<OpEntry> ops = make_registry();
  return ops;
}

const OpEntry& find_op(const std::string& label) {
  for (const OpEntry& op : op_registry())
    if (op.label() == label) return op;
  throw std::out_of_range("op registry: no op '" + label + "'");
}

std::optional<Shape> broadcast_shapes(const Shape& a, const Shape& b) {
  const std::size_t r = std::max(a.rank(), b.rank());
  Shape out;
  for (std::size_t i = 0; i < r; ++i) {
    const std::size_t da = i + a.rank() >= r ? a[i + a.rank() - r] : 1;
    const std::size_t db = i + b.rank() >= r ? b[i + b.rank() - r] : 1;
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

std::optional<Shape> output_shape(const OpEntry& op, const std::vector<Shape>& in,
                                  const OpArgs& a) {
  if (int(in.size()) != op.arity) return std::nullopt;
  const Shape& x = in[0];
  if (x.rank() < op.min_rank || x.rank() > op.max_rank) return std::nullopt;
  switch (op.rule) {
    case R::kElementwise:
      return x;
    case R::kBroadcast:
      return broadcast_shapes(x, in[1]);
    case R::kReduceAll:
      return Shape{};
    case R::kReduceAxis: {
      const int r = int(x.rank());
      if (a.axis < -r || a.axis >= r) return std::nullopt;  // (a scalar has no axis)
      const std::size_t ax = std::size_t(a.axis < 0 ? a.axis + r : a.axis);
      Shape out;
      for (std::size_t d = 0; d < x.rank(); ++d)
        if (d != ax)
          out.push_back(x[d]);
        else if (a.keepdims)
          out.push_back(1);
      return out;
    }
    case R::kMatmul: {
      const Shape& b = in[1];
      if (x.rank() != 2 || b.rank() != 2) return std::nullopt;
      const std::size_t m = a.transpose_a ? x[1] : x[0], k = a.transpose_a ? x[0] : x[1];
      const std::size_t kb = a.transpose_b ? b[1] : b[0], n = a.transpose_b ? b[0] : b[1];
      if (k != kb) return std::nullopt;
      return Shape{m, n};
    }
    case R::kBiasAdd:
      if (x.rank() < 1 || in[1] != Shape{x.back()}) return std::nullopt;
      return x;
    case R::kLinear:
      if (x.rank() != 2 || in[1].rank() != 2 || x[1] != in[1][0] || in[2] != Shape{in[1][1]})
        return std::nullopt;
      return Shape{x[0], in[1][1]};
    case R::kLoss:
      if (in[1] != x || x.size() == 0) return std::nullopt;
      return Shape{};
    case R::kLabels: {
      if (x.rank() != 2 || x[0] == 0 || x[1] == 0 || a.labels.size() != x[0]) return std::nullopt;
      for (std::int32_t l : a.labels)
        if (l < 0 || std::size_t(l) >= x[1]) return std::nullopt;
      return Shape{};
    }
    case R::kConv2d: {
      const Shape& W = in[1];
      if (W.rank() != 4 || x[1] != W[1] || in[2] != Shape{W[0]}) return std::nullopt;
      if (a.stride == 0 || a.dilation == 0 || W[2] == 0 || W[3] == 0) return std::nullopt;
      const std::size_t eh = a.dilation * (W[2] - 1) + 1, ew = a.dilation * (W[3] - 1) + 1;
      const std::size_t ph = x[2] + 2 * a.padding, pw = x[3] + 2 * a.padding;
      if (ph < eh || pw < ew) return std::nullopt;
      return Shape{x[0], W[0], (ph - eh) / a.stride + 1, (pw - ew) / a.stride + 1};
    }
    case R::kPool2d: {
      const std::size_t k = a.kernel, s = a.stride ? a.stride : a.kernel;
      if (k == 0 || a.padding > k / 2 || x[2] == 0 || x[3] == 0) return std::nullopt;
      const std::size_t ph = x[2] + 2 * a.padding, pw = x[3] + 2 * a.padding;
      if (ph < k || pw < k) return std::nullopt;
      return Shape{x[0], x[1], (ph - k) / s + 1, (pw - k) / s + 1};
    }
    case R::kGlobalPool:
      if (x[2] == 0 || x[3] == 0) return std::nullopt;
      return Shape{x[0], x[1]};
    case R::kBatchNorm:
      if (in[1] != Shape{x[1]} || in[2] != Shape{x[1]}) return std::nullopt;
      if (x[1] > 0 && x[0] * x[2] * x[3] == 0) return std::nullopt;
      return x;
    case R::kFlatten: {
      std::size_t rest = 1;
      for (std::size_t d = 1; d < x.rank(); ++d) rest *= x[d];
      return Shape{x[0], rest};
    }
  }
  return std::nullopt;
}

std::vector<OpExample> op_examples(const OpEntry& op) {
  // A base shape of the allowed rank nearest 2: [2,3], or [2], [], [2,3,4], ...
  const std::size_t rank = std::clamp<std::size_t>(2, op.min_rank, op.max_rank);
  Shape base;
  for (std::size_t d = 0; d < rank; ++d) base.push_back(2 + d);

  // The forms the op's rule allows: args and input shapes.
  std::vector<OpExample> forms;
  auto form = [&](std::vector<Shape> shapes, OpArgs a = {}) {
    forms.push_back({std::move(a), std::move(shapes), ""});
  };
  switch (op.rule) {
    case R::kElementwise:
    case R::kReduceAll:
      form({base});
      break;
    case R::kBroadcast:
      form({{2, 3}, {3}});
      form({{2, 1}, {1, 3}});
      form({{}, {2, 3}});
      form({{2, 3}, {2, 3}});
      break;
    case R::kReduceAxis: {
      OpArgs last, first;
      last.axis = int(base.rank()) - 1;  // counted from the front, keeping the dimension
      last.keepdims = true;
      first.axis = -int(base.rank());  // counted from the back
      form({base}, last);
      form({base}, first);
      break;
    }
    case R::kMatmul:
      for (int t = 0; t < 4; ++t) {
        OpArgs a;
        a.transpose_a = t & 1;
        a.transpose_b = t & 2;
        form({a.transpose_a ? Shape{3, 2} : Shape{2, 3}, a.transpose_b ? Shape{4, 3} : Shape{3, 4}},
             a);
      }
      break;
    case R::kBiasAdd:
      form({base, {base.back()}});
      break;
    case R::kLinear:
      form({{2, 3}, {3, 4}, {4}});
      break;
    case R::kLoss:
      form({base, base});
      break;
    case R::kLabels: {
      OpArgs a;
      a.labels = {0, 2};
      form({{2, 3}}, a);
      break;
    }
    case R::kConv2d: {
      form({{2, 2, 4, 5}, {3, 2, 3, 3}, {3}});
      OpArgs a;  // stride 2, padding 1, dilation 2
      a.stride = 2;
      a.padding = 1;
      a.dilation = 2;
      form({{1, 2, 5, 4}, {2, 2, 2, 3}, {2}}, a);
      break;
    }
    case R::kPool2d: {
      form({{2, 2, 4, 5}});  // kernel 2, stride 1
      OpArgs a;
      a.kernel = 3;
      a.stride = 2;
      a.padding = 1;
      form({{1, 2, 5, 4}}, a);
      break;
    }
    case R::kGlobalPool:
      form({{2, 3, 2, 3}});
      break;
    case R::kBatchNorm:
      form({{2, 3, 2, 2}, {3}, {3}});
      break;
    case R::kFlatten:
      form({{2, 3, 4}});
      break;
  }

  // Each form with each spelling and each scalar.
  std::vector<double> scalars{0.0};
  if (op.takes_scalar) {
    scalars = op.scalar_values;
    if (scalars.empty()) scalars.push_back(op.scalar_domain.contains(2.0) ? 2.0 : 1.0);
  }
  std::vector<OpExample> out;
  for (const OpExample& f : forms)
    for (int s = 0; s < int(op.spellings.size()); ++s)
      for (double c : scalars) {
        OpExample e = f;
        e.args.spelling = s;
        e.args.scalar = c;
        std::string str = op.node_name(e.args) + ": " + op.spellings[std::size_t(s)];
        for (std::size_t k = 0; k < e.shapes.size(); ++k)
          str += (k ? ", " : " on ") + e.shapes[k].str();
        if (op.takes_scalar) str += ", scalar " + std::to_string(c);
        if (op.rule == R::kReduceAxis)
          str += ", axis " + std::to_string(e.args.axis) + (e.args.keepdims ? ", keepdims" : "");
        if (op.rule == R::kConv2d)
          str += ", stride " + std::to_string(e.args.stride) + ", padding " +
                 std::to_string(e.args.padding) + ", dilation " + std::to_string(e.args.dilation);
        if (op.rule == R::kPool2d)
          str += ", kernel " + std::to_string(e.args.kernel) + ", stride " +
                 std::to_string(e.args.stride) + ", padding " + std::to_string(e.args.padding);
        e.str = str;
        out.push_back(std::move(e));
      }
  return out;
}

}  // namespace wengert::testing
