// Test support: the op registry (see op_registry.hpp; how to add an op is described there).
#include "op_registry.hpp"

#include <wengert/ops.hpp>

#include <algorithm>
#include <cmath>
#include <random>
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

// ---- shape rules of the shape, indexing and axis ops (kCustom1..3) ----

// The shape of a valid handle, [] for an empty or stale one (whose op then throws UsageError).
template <class T>
Shape shape_or_empty(const Var<T>& v) {
  return v.valid() ? v.shape() : Shape{};
}

// The axis in [0, rank + extra), or nullopt: the op must refuse it.
std::optional<std::size_t> axis_in(const Shape& x, int axis, std::size_t extra = 0) {
  const int r = int(x.rank() + extra);
  if (axis < -r || axis >= r) return std::nullopt;
  return std::size_t(axis < 0 ? axis + r : axis);
}

Shape reversed(const Shape& x) {
  Shape out;
  for (std::size_t d = x.rank(); d-- > 0;) out.push_back(x[d]);
  return out;
}

// Dimension d of the output is dimension (d + 1) mod r of x: the registry's permutation.
Shape rotated(const Shape& x) {
  Shape out;
  for (std::size_t d = 0; d < x.rank(); ++d) out.push_back(x[(d + 1) % x.rank()]);
  return out;
}

// x with two leading dimensions of 2 and each size-1 dimension made 3: broadcast_to's target.
std::optional<Shape> broadcast_target(const Shape& x) {
  if (x.rank() + 1 > Shape::kMaxRank) return std::nullopt;
  Shape out{2};
  for (std::size_t d : x) out.push_back(d == 1 ? 3 : d);
  return out;
}

// numpy's slice of n elements from start to stop.
std::size_t slice_length(long long start, long long stop, std::size_t n) {
  auto clamp = [n](long long b) {
    if (b < 0) b += (long long)n;
    return std::size_t(std::clamp<long long>(b, 0, (long long)n));
  };
  const std::size_t b = clamp(start), e = clamp(stop);
  return e > b ? e - b : 0;
}

template <long long Start, long long Stop>
std::optional<Shape> slice_shape(const std::vector<Shape>& in, const OpArgs& a) {
  const auto ax = axis_in(in[0], a.axis);
  if (!ax) return std::nullopt;
  return in[0].with_dim(*ax, slice_length(Start, Stop, in[0][*ax]));
}

// concat's partner: x with the axis one longer, mod 3 (so 0-length parts occur).
Shape concat_partner(const Shape& x, int, const OpArgs& a) {
  const auto ax = axis_in(x, a.axis);
  return ax ? x.with_dim(*ax, (x[*ax] + 1) % 3) : x;
}

std::optional<Shape> concat_shape(const std::vector<Shape>& in, const OpArgs& a) {
  const auto ax = axis_in(in[0], a.axis);
  if (!ax || in[1].rank() != in[0].rank()) return std::nullopt;
  for (std::size_t d = 0; d < in[0].rank(); ++d)
    if (d != *ax && in[0][d] != in[1][d]) return std::nullopt;
  return in[0].with_dim(*ax, in[0][*ax] + in[1][*ax]);
}

Shape same_partner(const Shape& x, int, const OpArgs&) { return x; }

std::optional<Shape> stack_shape(const std::vector<Shape>& in, const OpArgs& a) {
  const auto ax = axis_in(in[0], a.axis, 1);
  if (!ax || in[1] != in[0] || in[0].rank() == Shape::kMaxRank) return std::nullopt;
  Shape out;
  for (std::size_t d = 0; d <= in[0].rank(); ++d) {
    if (d == *ax) out.push_back(2);
    if (d < in[0].rank()) out.push_back(in[0][d]);
  }
  return out;
}

// index_select's 1-D indices (1 repeats) and 2-D ones, and embedding's ids [3,2].
constexpr std::int32_t kSelect1[3] = {1, 0, 1};
constexpr std::int64_t kSelect2[4] = {0, 1, 1, 0};
constexpr std::int64_t kIds[6] = {1, 0, 1, 1, 0, 1};

// x with dimension ax replaced by the dimensions of `idx` (index_select's output), if every
// index fits (all of them are 0 or 1 here: the axis needs length 2) and the rank allows it.
std::optional<Shape> take_shape(const Shape& x, int axis, const Shape& idx) {
  const auto ax = axis_in(x, axis);
  if (!ax || x[*ax] < 2 || x.rank() - 1 + idx.rank() > Shape::kMaxRank) return std::nullopt;
  Shape out;
  for (std::size_t d = 0; d < *ax; ++d) out.push_back(x[d]);
  for (std::size_t d : idx) out.push_back(d);
  for (std::size_t d = *ax + 1; d < x.rank(); ++d) out.push_back(x[d]);
  return out;
}

// The mask of where(): 1, 0, 1, ... along the last dimension of a and b's broadcast shape.
template <class T>
Var<T> where_call(const Var<T>* v) {
  const auto out = broadcast_shapes(shape_or_empty(v[0]), shape_or_empty(v[1]));
  const std::size_t n = out && out->rank() ? out->back() : 1;
  static thread_local std::vector<std::uint8_t> mask;
  mask.assign(n, 0);
  for (std::size_t i = 0; i < n; i += 2) mask[i] = 1;
  return where(mask.data(), out && out->rank() ? Shape{n} : Shape{}, v[0], v[1]);
}

double gelu_ref(double x, double) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
double silu_ref(double x, double) { return x / (1 + std::exp(-x)); }

Shape bias_partner(const Shape& x, int, const OpArgs&) { return Shape{x.rank() ? x.back() : 1}; }

// bmm's partner for a [b,m,k]: b [b,k,3].
Shape bmm_partner(const Shape& x, int, const OpArgs&) {
  return x.rank() == 3 ? Shape{x[0], x[2], 3} : Shape{2, x.rank() ? x.back() : 1, 3};
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
      // ---- shape and layout (ops/wengert/ops/shape.hpp) ----
      Op("reshape", R::kCustom1,
         [](auto v, auto&) { return reshape(v[0], reversed(shape_or_empty(v[0]))); })
          .custom([](const std::vector<Shape>& in, const OpArgs&) -> std::optional<Shape> {
            return reversed(in[0]);
          }),
      Op("flatten", R::kCustom1, [](auto v, auto& a) { return flatten(v[0], a.axis); })
          .custom(
              [](const std::vector<Shape>& in, const OpArgs& a) -> std::optional<Shape> {
                if (in[0].rank() == 0) return Shape{1};
                const auto ax = axis_in(in[0], a.axis);
                if (!ax) return std::nullopt;
                Shape out;
                std::size_t n = 1;
                for (std::size_t d = 0; d < in[0].rank(); ++d)
                  if (d < *ax)
                    out.push_back(in[0][d]);
                  else
                    n *= in[0][d];
                out.push_back(n);
                return out;
              },
              nullptr, true),
      Op("squeeze", R::kCustom1, [](auto v, auto& a) { return squeeze(v[0], a.axis); })
          .custom(
              [](const std::vector<Shape>& in, const OpArgs& a) -> std::optional<Shape> {
                const auto ax = axis_in(in[0], a.axis);
                if (!ax || in[0][*ax] != 1) return std::nullopt;
                Shape out;
                for (std::size_t d = 0; d < in[0].rank(); ++d)
                  if (d != *ax) out.push_back(in[0][d]);
                return out;
              },
              nullptr, true)
          .example(Shape{1, 3, 1}),
      Op("unsqueeze", R::kCustom1, [](auto v, auto& a) { return unsqueeze(v[0], a.axis); })
          .custom(
              [](const std::vector<Shape>& in, const OpArgs& a) -> std::optional<Shape> {
                const auto ax = axis_in(in[0], a.axis, 1);
                if (!ax || in[0].rank() == Shape::kMaxRank) return std::nullopt;
                Shape out;
                for (std::size_t d = 0; d <= in[0].rank(); ++d) {
                  if (d == *ax) out.push_back(1);
                  if (d < in[0].rank()) out.push_back(in[0][d]);
                }
                return out;
              },
              nullptr, true),
      Op("transpose", R::kCustom1, [](auto v, auto&) { return transpose(v[0]); })
          .ranks(2, 2)
          .custom([](const std::vector<Shape>& in, const OpArgs&) -> std::optional<Shape> {
            if (in[0].rank() != 2) return std::nullopt;
            return reversed(in[0]);
          }),
      Op("permute", R::kCustom1,
         [](auto v, auto&) {
           const std::size_t r = shape_or_empty(v[0]).rank();
           int perm[Shape::kMaxRank];
           for (std::size_t d = 0; d < r; ++d) perm[d] = int((d + 1) % r);
           return permute(v[0], perm, r);
         })
          .custom([](const std::vector<Shape>& in, const OpArgs&) -> std::optional<Shape> {
            return rotated(in[0]);
          }),
      Op("broadcast_to", R::kCustom1,
         [](auto v, auto&) {
           return broadcast_to(v[0], broadcast_target(shape_or_empty(v[0])).value_or(Shape{}));
         })
          .ranks(0, Shape::kMaxRank - 1)
          .custom([](const std::vector<Shape>& in, const OpArgs&) -> std::optional<Shape> {
            return broadcast_target(in[0]);
          }),
      Op("concat", R::kCustom2,
         [](auto v, auto& a) {
           return concat({v[0], v[1]}, a.axis);
         })
          .ranks(1, Shape::kMaxRank)
          .custom(concat_shape, concat_partner, true),
      Op("stack", R::kCustom2,
         [](auto v, auto& a) {
           return stack({v[0], v[1]}, a.axis);
         })
          .custom(stack_shape, same_partner, true),
      Op("slice", R::kCustom1, [](auto v, auto& a) { return slice(v[0], a.axis, 1, -1); })
          .with_variant("1:-1")
          .ranks(1, Shape::kMaxRank)
          .custom(slice_shape<1, -1>, nullptr, true),
      Op("slice", R::kCustom1, [](auto v, auto& a) { return slice(v[0], a.axis, -2, 1000); })
          .with_variant("-2:")
          .ranks(1, Shape::kMaxRank)
          .custom(slice_shape<-2, 1000>, nullptr, true),
      // ---- indexing (ops/wengert/ops/indexing.hpp) ----
      Op("index_select", R::kCustom1,
         [](auto v, auto& a) { return index_select(v[0], a.axis, kSelect1, Shape{3}); })
          .with_variant("int32")
          .ranks(1, Shape::kMaxRank)
          .custom([](const std::vector<Shape>& in,
                     const OpArgs& a) { return take_shape(in[0], a.axis, Shape{3}); },
                  nullptr, true),
      Op("index_select", R::kCustom1,
         [](auto v, auto& a) {
           return index_select(v[0], a.axis, kSelect2, Shape{2, 2});
         })
          .with_variant("int64 [2,2]")
          .ranks(1, Shape::kMaxRank)
          .custom(
              [](const std::vector<Shape>& in, const OpArgs& a) {
                return take_shape(in[0], a.axis, Shape{2, 2});
              },
              nullptr, true),
      Op("embedding", R::kCustom1,
         [](auto v, auto&) {
           return embedding(v[0], kIds, Shape{3, 2});
         })
          .ranks(2, 2)
          .custom([](const std::vector<Shape>& in, const OpArgs&) -> std::optional<Shape> {
            if (in[0].rank() != 2 || in[0][0] < 2) return std::nullopt;
            return Shape{3, 2, in[0][1]};
          }),

      // ---- reductions (ops/wengert/ops/reduce_axis.hpp) ----
      Op("max", R::kReduceAll, [](auto v, auto&) { return max(v[0]); }),
      Op("min", R::kReduceAll, [](auto v, auto&) { return min(v[0]); }),
      Op("max", R::kReduceAxis, [](auto v, auto& a) { return max(v[0], a.axis, a.keepdims); })
          .with_variant("axis"),
      Op("min", R::kReduceAxis, [](auto v, auto& a) { return min(v[0], a.axis, a.keepdims); })
          .with_variant("axis"),
      Op("logsumexp", R::kReduceAxis,
         [](auto v, auto& a) { return logsumexp(v[0], a.axis, a.keepdims); })
          .with_variant("axis"),
      Op("var", R::kReduceAxis, [](auto v, auto& a) { return var(v[0], a.axis, a.keepdims); })
          .with_variant("axis"),
      Op("norm", R::kReduceAxis, [](auto v, auto& a) { return norm(v[0], a.axis, a.keepdims); })
          .with_variant("axis"),
      Op("norm", R::kReduceAll, [](auto v, auto&) { return norm(v[0]); }),

      // ---- elementwise (ops/wengert/ops/pointwise.hpp) ----
      Op("abs", [](auto v, auto&) { return abs(v[0]); })
          .domain(0, away_from_zero(0.05))
          .ref([](double x, double) { return std::abs(x); }),
      Op("sqrt", [](auto v, auto&) { return sqrt(v[0]); })
          .domain(0, at_least(0.2))
          .ref([](double x, double) { return std::sqrt(x); }),
      Op("rsqrt", [](auto v, auto&) { return rsqrt(v[0]); })
          .domain(0, at_least(0.2))
          .ref([](double x, double) { return 1 / std::sqrt(x); }),
      Op("clamp", [](auto v, auto&) { return clamp(v[0], -0.5, 0.75); })  // (exact in float)
          .ref([](double x, double) { return std::clamp(x, -0.5, 0.75); }),
      Op("sin", [](auto v, auto&) { return sin(v[0]); })
          .ref([](double x, double) { return std::sin(x); }, 16),
      Op("cos", [](auto v, auto&) { return cos(v[0]); })
          .ref([](double x, double) { return std::cos(x); }, 16),
      Op("maximum", R::kBroadcast, [](auto v, auto&) { return maximum(v[0], v[1]); })
          .ref2([](double x, double y) { return std::max(x, y); }),
      Op("minimum", R::kBroadcast, [](auto v, auto&) { return minimum(v[0], v[1]); })
          .ref2([](double x, double y) { return std::min(x, y); }),
      Op("where", R::kBroadcast, [](auto v, auto&) { return where_call(v); }),
      Op("leaky_relu", [](auto v, auto&) { return leaky_relu(v[0], 0.125); })
          .domain(0, away_from_zero(0.05))
          .ref([](double x, double) { return x > 0 ? x : 0.125 * x; }),
      Op("elu", [](auto v, auto&) { return elu(v[0]); })
          .domain(0, away_from_zero(0.05))
          .ref([](double x, double) { return x > 0 ? x : std::expm1(x); }, 16),
      Op("gelu", [](auto v, auto&) { return gelu(v[0]); }).ref(gelu_ref, 64),
      Op("silu", [](auto v, auto&) { return silu(v[0]); }).ref(silu_ref, 16),

      // ---- batched matmul, nn ops, softmax along an axis ----
      Op("bmm", R::kCustom2, [](auto v, auto&) { return bmm(v[0], v[1]); })
          .ranks(2, 3)
          .custom(
              [](const std::vector<Shape>& in, const OpArgs&) -> std::optional<Shape> {
                const Shape &a = in[0], &b = in[1];
                if (a.rank() < 2 || a.rank() > 3 || b.rank() < 2 || b.rank() > 3)
                  return std::nullopt;
                if (a.rank() == 2 && b.rank() == 2) return std::nullopt;
                if (a.rank() == 3 && b.rank() == 3 && a[0] != b[0]) return std::nullopt;
                const std::size_t k = a.back(), kb = b[b.rank() - 2];
                if (k != kb) return std::nullopt;
                return Shape{a.rank() == 3 ? a[0] : b[0], a[a.rank() - 2], b.back()};
              },
              bmm_partner)
          .example(Shape{2, 3, 4}),
      Op("dropout",
         [](auto v, auto&) {
           std::mt19937_64 gen(7);  // the same mask on every call: a function of x
           return dropout(v[0], 0.25, true, gen);
         }),
      Op("layer_norm", R::kCustom3, [](auto v, auto&) { return layer_norm(v[0], v[1], v[2]); })
          .ranks(1, Shape::kMaxRank)
          .custom(
              [](const std::vector<Shape>& in, const OpArgs&) -> std::optional<Shape> {
                if (in[0].rank() == 0 || in[1] != Shape{in[0].back()} ||
                    in[2] != Shape{in[0].back()})
                  return std::nullopt;
                return in[0];
              },
              bias_partner),
      Op("softmax", R::kCustom1, [](auto v, auto& a) { return softmax(v[0], a.axis); })
          .with_variant("axis")
          .ranks(1, Shape::kMaxRank)
          .custom(
              [](const std::vector<Shape>& in, const OpArgs& a) -> std::optional<Shape> {
                if (!axis_in(in[0], a.axis)) return std::nullopt;
                return in[0];
              },
              nullptr, true),
      Op("log_softmax", R::kCustom1, [](auto v, auto& a) { return log_softmax(v[0], a.axis); })
          .with_variant("axis")
          .ranks(1, Shape::kMaxRank)
          .custom(
              [](const std::vector<Shape>& in, const OpArgs& a) -> std::optional<Shape> {
                if (!axis_in(in[0], a.axis)) return std::nullopt;
                return in[0];
              },
              nullptr, true),
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
    case R::kCustom2:
      return 2;
    case R::kLinear:
    case R::kConv2d:
    case R::kBatchNorm:
    case R::kCustom3:
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
    case R::kCustom1:
    case R::kCustom2:
    case R::kCustom3:
      return op.shape_fn(in, a);
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
    case R::kCustom1:
    case R::kCustom2:
    case R::kCustom3: {
      const Shape x = op.example_shape ? *op.example_shape : base;
      std::vector<OpArgs> args(1);
      if (op.uses_axis && x.rank() > 0) {
        args.assign(2, OpArgs{});
        args[0].axis = int(x.rank()) - 1;  // counted from the front, keeping the dimension
        args[0].keepdims = true;
        args[1].axis = -int(x.rank());  // counted from the back
      }
      for (const OpArgs& a : args) {
        std::vector<Shape> shapes{x};
        for (int k = 1; k < op.arity; ++k) shapes.push_back(op.partner_fn(x, k, a));
        form(shapes, a);
      }
      break;
    }
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
        if (op.rule == R::kReduceAxis || op.uses_axis)
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
