// wengert — abs, sqrt, rsqrt, clamp, sin, cos, maximum, minimum, where, leaky_relu, elu, gelu,
// silu (see pointwise.hpp).
//
// One-tensor ops go through detail::record_unary (forward kernel, then the per-element
// derivative from the adjoint g, the input x and the output y); the exp- and erf-based
// activations run their forward through xsimd. maximum and minimum use the broadcasting
// skeleton of detail/binary.hpp. where expands its mask once into tape memory (a byte per output
// element), then walks a and b with the broadcast walk, forward and backward.
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/pointwise.hpp>

#include <cmath>
#include <sstream>
#include <string>

#include "detail/binary.hpp"
#include "detail/record.hpp"

namespace wengert {
namespace {

using detail::record_binary;
using detail::record_unary;

template <class T>
std::string num(T v) {
  std::ostringstream os;
  os.precision(std::is_same_v<T, float> ? 9 : 17);
  os << v;
  return os.str();
}

// Throws ValueError naming `op` and the first negative element of x: at recording, and again on
// every replay (RefuseNegative), since the values may have changed.
template <class T>
void refuse_negative(const char* op, const T* p, const Shape& shape) {
  const std::size_t n = shape.size();
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) any |= p[i] < T(0);
  if (!any) return;
  std::size_t k = 0;
  while (!(p[k] < T(0))) ++k;
  throw ValueError(std::string(op) + ": x[" + std::to_string(k) + "] = " + num(p[k]) +
                   " is negative; " + op + " is defined for x >= 0 (x is " + shape.str() + ")");
}
struct RefuseNegative {
  const char* op;
  template <class T>
  void operator()(const T* p, const Shape& shape) const {
    refuse_negative(op, p, shape);
  }
};

template <class T, class F>
inline void map1(const T* __restrict in, T* __restrict out, std::size_t n, F f) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f(in[i]);
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

}  // namespace

template <class T>
Var<T> abs(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "abs", x, loc,
      [](const T* in, T* out, std::size_t n) { map1(in, out, n, [](T v) { return std::abs(v); }); },
      // ∂/∂x = sign(x), 0 at x = 0
      [](T g, T x, T) { return x > T(0)   ? g
                               : x < T(0) ? -g
                                          : T(0); });
}

template <class T>
Var<T> sqrt(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(  // x >= 0 is checked by the forward kernel, at recording and replay
      "sqrt", x, loc,
      [](const T* in, T* out, std::size_t n) {
        detail::simd_map(in, out, n, [](auto v) { return xsimd::sqrt(v); });
      },
      [](T g, T, T y) { return g * T(0.5) / y; },  // ∂/∂x = 0.5/y
      RefuseNegative{"sqrt"});
}

template <class T>
Var<T> rsqrt(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(  // x >= 0 is checked by the forward kernel, as sqrt's
      "rsqrt", x, loc,
      [](const T* in, T* out, std::size_t n) {
        map1(in, out, n, [](T v) { return T(1) / std::sqrt(v); });
      },
      [](T g, T, T y) { return g * T(-0.5) * y * y * y; },  // ∂/∂x = −0.5·y³
      RefuseNegative{"rsqrt"});
}

template <class T>
Var<T> clamp(const Var<T>& x, scalar_t<T> lo, scalar_t<T> hi, SourceLoc loc) {
  detail::check_handle("clamp", "x", x);
  if (!(lo <= hi))
    throw ValueError("clamp: lo = " + num(lo) + " and hi = " + num(hi) +
                     ": lo must not be above hi, nor either NaN (x is " + x.shape().str() + ")");
  return record_unary<T>(
      "clamp", x, loc,
      [lo, hi](const T* in, T* out, std::size_t n) {
        map1(in, out, n, [lo, hi](T v) { return v < lo ? lo : v > hi ? hi : v; });
      },
      // ∂/∂x = 1 on [lo, hi], bounds included
      [lo, hi](T g, T x, T) { return x >= lo && x <= hi ? g : T(0); });
}

template <class T>
Var<T> sin(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "sin", x, loc,
      [](const T* in, T* out, std::size_t n) { map1(in, out, n, [](T v) { return std::sin(v); }); },
      [](T g, T x, T) { return g * std::cos(x); });  // ∂/∂x = cos x
}

template <class T>
Var<T> cos(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "cos", x, loc,
      [](const T* in, T* out, std::size_t n) { map1(in, out, n, [](T v) { return std::cos(v); }); },
      [](T g, T x, T) { return -g * std::sin(x); });  // ∂/∂x = −sin x
}

template <class T>
Var<T> maximum(const Var<T>& a, const Var<T>& b, SourceLoc loc) {
  return record_binary<T>(
      "maximum", a, b, loc, [](T x, T y) { return x > y || x != x ? x : y; },
      [](T g, T x, T y, T) { return x > y    ? g
                                    : x == y ? T(0.5) * g
                                             : T(0); },  // ∂/∂a
      [](T g, T x, T y, T) { return y > x    ? g
                                    : x == y ? T(0.5) * g
                                             : T(0); });  // ∂/∂b
}

template <class T>
Var<T> minimum(const Var<T>& a, const Var<T>& b, SourceLoc loc) {
  return record_binary<T>(
      "minimum", a, b, loc, [](T x, T y) { return x < y || x != x ? x : y; },
      [](T g, T x, T y, T) { return x < y    ? g
                                    : x == y ? T(0.5) * g
                                             : T(0); },  // ∂/∂a
      [](T g, T x, T y, T) { return y < x    ? g
                                    : x == y ? T(0.5) * g
                                             : T(0); });  // ∂/∂b
}

template <class T, class M>
Var<T> where(const M* mask, const Shape& mask_shape, const Var<T>& a, const Var<T>& b,
             SourceLoc loc) {
  static_assert(std::is_same_v<M, bool> || std::is_same_v<M, std::uint8_t> ||
                std::is_same_v<M, std::int32_t> || std::is_same_v<M, std::int64_t>);
  detail::check_handle("where", "a", a);
  detail::check_handle("where", "b", b);
  const Shape sa = a.shape(), sb = b.shape();
  const Shape ab = broadcast_shapes("where", sa, sb);
  Shape out;
  try {
    out = broadcast_shapes("where", mask_shape, ab);
  } catch (const ShapeError&) {
    throw ShapeError("where: mask is " + mask_shape.str() + " but a and b broadcast to " +
                     ab.str() + " (a is " + sa.str() + ", b is " + sb.str() +
                     "); the three must broadcast together");
  }
  auto op = a.tape().begin_op("where", {a, b}, out, loc);
  // The mask, expanded to the output's shape: m[o] = mask[the element that broadcasts onto o].
  std::uint8_t* m = op.template scratch_as<std::uint8_t>(op.out_size());
  // Run now and again by replay, which reads `mask` again from the same address (any value is
  // valid: nonzero selects a).
  auto forward = [m, mask, mmap = detail::make_broadcast_map(out, mask_shape, out),
                  xmap = detail::make_broadcast_map(out, sa, sb)](const T* x, const T* y, T* z) {
    detail::for_each_broadcast(
        mmap, [&](std::size_t o, std::size_t i, std::size_t) { m[o] = mask[i] != 0; });
    detail::for_each_broadcast(
        xmap, [&](std::size_t o, std::size_t i, std::size_t j) { z[o] = m[o] ? x[i] : y[j]; });
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {
        forward(c.input_data(0), c.input_data(1), c.out_data());
      },
      [m](const BackwardContext<T>& c) {
        const T* g = c.out_grad_data();
        const detail::BroadcastMap map =
            detail::make_broadcast_map(c.out_shape(), c.input_shape(0), c.input_shape(1));
        if (c.needs_grad(0)) {  // ∂/∂a = mask
          T* ga = c.grad_data(0);
          detail::for_each_broadcast(map, [&](std::size_t o, std::size_t i, std::size_t) {
            if (m[o]) ga[i] += g[o];
          });
        }
        if (c.needs_grad(1)) {  // ∂/∂b = 1 − mask
          T* gb = c.grad_data(1);
          detail::for_each_broadcast(map, [&](std::size_t o, std::size_t, std::size_t j) {
            if (!m[o]) gb[j] += g[o];
          });
        }
      });
}

template <class T>
Var<T> leaky_relu(const Var<T>& x, scalar_t<T> slope, SourceLoc loc) {
  detail::check_handle("leaky_relu", "x", x);
  if (!std::isfinite(slope))
    throw ValueError("leaky_relu: slope must be finite, got " + num(slope) + " (x is " +
                     x.shape().str() + ")");
  return record_unary<T>(
      "leaky_relu", x, loc,
      [slope](const T* in, T* out, std::size_t n) {
        map1(in, out, n, [slope](T v) { return v > T(0) ? v : slope * v; });
      },
      [slope](T g, T x, T) { return x > T(0) ? g : slope * g; });  // 1, or slope for x ≤ 0
}

template <class T>
Var<T> elu(const Var<T>& x, scalar_t<T> alpha, SourceLoc loc) {
  detail::check_handle("elu", "x", x);
  if (!std::isfinite(alpha))
    throw ValueError("elu: alpha must be finite, got " + num(alpha) + " (x is " + x.shape().str() +
                     ")");
  return record_unary<T>(
      "elu", x, loc,
      [alpha](const T* in, T* out, std::size_t n) {
        map1(in, out, n, [alpha](T v) { return v > T(0) ? v : alpha * std::expm1(v); });
      },
      [alpha](T g, T x, T y) { return x > T(0) ? g : g * (y + alpha); });  // 1, or αeˣ = y + α
}

template <class T>
Var<T> gelu(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "gelu", x, loc,
      // Φ(x) = ½erfc(−x/√2): no cancellation for x ≪ 0, where 1 + erf(x/√2) loses it all.
      // std::erfc, not xsimd's: xsimd 8's double erfc is off by ~1e-12 relative near x = −5 and
      // gives NaN for |x| ~ 1e300 (found by the fuzzer's reference check).
      [](const T* in, T* out, std::size_t n) {
        // In double for float too: erfc's relative error grows with x² in its argument's.
        map1(in, out, n, [](T v) {
          const double d = double(v);
          return T(0.5 * d * std::erfc(-d * kInvSqrt2));
        });
      },
      [](T g, T x, T) {  // ∂/∂x = Φ(x) + x·φ(x)
        const double d = double(x);
        return g * T(0.5 * std::erfc(-d * kInvSqrt2) + d * kInvSqrt2Pi * std::exp(-0.5 * d * d));
      });
}

template <class T>
Var<T> silu(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "silu", x, loc,
      [](const T* in, T* out, std::size_t n) {
        detail::simd_map(in, out, n, [](auto v) { return v * detail::safe_sigmoid(v); });
      },
      [](T g, T x, T) {  // ∂/∂x = σ(x)(1 + x(1 − σ(x)))
        const T s = x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
        return g * s * (T(1) + x * (T(1) - s));
      });
}

#define WENGERT_POINTWISE(T)                                                               \
  template Var<T> abs<T>(const Var<T>&, SourceLoc);                                        \
  template Var<T> sqrt<T>(const Var<T>&, SourceLoc);                                       \
  template Var<T> rsqrt<T>(const Var<T>&, SourceLoc);                                      \
  template Var<T> clamp<T>(const Var<T>&, scalar_t<T>, scalar_t<T>, SourceLoc);            \
  template Var<T> sin<T>(const Var<T>&, SourceLoc);                                        \
  template Var<T> cos<T>(const Var<T>&, SourceLoc);                                        \
  template Var<T> maximum<T>(const Var<T>&, const Var<T>&, SourceLoc);                     \
  template Var<T> minimum<T>(const Var<T>&, const Var<T>&, SourceLoc);                     \
  template Var<T> where<T, bool>(const bool*, const Shape&, const Var<T>&, const Var<T>&,  \
                                 SourceLoc);                                               \
  template Var<T> where<T, std::uint8_t>(const std::uint8_t*, const Shape&, const Var<T>&, \
                                         const Var<T>&, SourceLoc);                        \
  template Var<T> where<T, std::int32_t>(const std::int32_t*, const Shape&, const Var<T>&, \
                                         const Var<T>&, SourceLoc);                        \
  template Var<T> where<T, std::int64_t>(const std::int64_t*, const Shape&, const Var<T>&, \
                                         const Var<T>&, SourceLoc);                        \
  template Var<T> leaky_relu<T>(const Var<T>&, scalar_t<T>, SourceLoc);                    \
  template Var<T> elu<T>(const Var<T>&, scalar_t<T>, SourceLoc);                           \
  template Var<T> gelu<T>(const Var<T>&, SourceLoc);                                       \
  template Var<T> silu<T>(const Var<T>&, SourceLoc);

WENGERT_POINTWISE(float)
WENGERT_POINTWISE(double)
#undef WENGERT_POINTWISE

}  // namespace wengert
