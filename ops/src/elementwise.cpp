// wengert — elementwise arithmetic (see elementwise.hpp for the semantics of each op).
//
// Each op: validate (handles, shapes, values) → compute the forward value straight into tape
// memory → record the backward closure right below. Closures capture only scalars (or nothing)
// and recompute whatever else they need from the BackwardContext, so recording allocates
// nothing beyond the tape's arena.
//
// Kernels: arithmetic is plain loops over __restrict pointers, which gcc vectorises at -O3
// -march=native; exp, log and sqrt go through xsimd (detail::simd_map of detail/kernels.hpp).
// Two-tensor ops take a flat loop when both inputs have as many elements as the output (equal
// shapes, or shapes that differ only by size-1 dimensions, which lay out the same) and the strided
// broadcast walk of detail/broadcast.hpp otherwise.
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/elementwise.hpp>

#include <cmath>
#include <sstream>
#include <type_traits>

#include "detail/binary.hpp"
#include "detail/record.hpp"

namespace wengert {
namespace {

using detail::check_handle;
using detail::record_binary;
using detail::record_unary;

// out[i] = f(in[i]) for the one-operation lambdas, a plain loop that gcc vectorises itself.
template <class T, class F>
inline void map1(const T* __restrict in, T* __restrict out, std::size_t n, F f) {
  for (std::size_t i = 0; i < n; ++i) out[i] = f(in[i]);
}

// Index of the first negative element of p[0..n), or n. The scan for "any" vectorises; the
// position is looked for only when there is one.
template <class T>
std::size_t first_negative(const T* p, std::size_t n) {
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) any |= p[i] < T(0);
  if (!any) return n;
  std::size_t i = 0;
  while (!(p[i] < T(0))) ++i;
  return i;
}

template <class T>
std::string num(T v) {
  std::ostringstream os;
  os.precision(std::is_same_v<T, float> ? 9 : 17);
  os << v;
  return os.str();
}

}  // namespace

// ---- two tensors -----------------------------------------------------------------------------

template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b, SourceLoc loc) {
  return record_binary<T>(
      "add", a, b, loc, [](T x, T y) { return x + y; },  // forward
      [](T g, T, T, T) { return g; },                    // ∂/∂a = 1
      [](T g, T, T, T) { return g; });                   // ∂/∂b = 1
}

template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b, SourceLoc loc) {
  return record_binary<T>(
      "sub", a, b, loc, [](T x, T y) { return x - y; },  // forward
      [](T g, T, T, T) { return g; },                    // ∂/∂a = 1
      [](T g, T, T, T) { return -g; });                  // ∂/∂b = −1
}

template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b, SourceLoc loc) {
  return record_binary<T>(
      "mul", a, b, loc, [](T x, T y) { return x * y; },  // forward
      [](T g, T, T y, T) { return g * y; },              // ∂/∂a = b
      [](T g, T x, T, T) { return g * x; });             // ∂/∂b = a
}

template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b, SourceLoc loc) {
  return record_binary<T>(
      "div", a, b, loc, [](T x, T y) { return x / y; },  // forward
      [](T g, T, T y, T) { return g / y; },              // ∂/∂a = 1/b
      [](T g, T, T y, T z) { return -(g * z) / y; });    // ∂/∂b = −a/b² = −z/b
}

// ---- one tensor and a scalar -----------------------------------------------------------------

template <class T>
Var<T> add(const Var<T>& x, scalar_t<T> s, SourceLoc loc) {
  return record_unary<T>(
      "add_scalar", x, loc,
      [s](const T* in, T* out, std::size_t n) { map1(in, out, n, [s](T v) { return v + s; }); },
      [](T g, T, T) { return g; });  // ∂/∂x = 1
}

template <class T>
Var<T> add(scalar_t<T> s, const Var<T>& x, SourceLoc loc) {
  return add(x, s, loc);
}

template <class T>
Var<T> sub(const Var<T>& x, scalar_t<T> s, SourceLoc loc) {
  return record_unary<T>(
      "sub_scalar", x, loc,
      [s](const T* in, T* out, std::size_t n) { map1(in, out, n, [s](T v) { return v - s; }); },
      [](T g, T, T) { return g; });  // ∂/∂x = 1
}

template <class T>
Var<T> sub(scalar_t<T> s, const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "rsub_scalar", x, loc,
      [s](const T* in, T* out, std::size_t n) { map1(in, out, n, [s](T v) { return s - v; }); },
      [](T g, T, T) { return -g; });  // ∂/∂x = −1
}

template <class T>
Var<T> mul(const Var<T>& x, scalar_t<T> s, SourceLoc loc) {
  return record_unary<T>(
      "mul_scalar", x, loc,
      [s](const T* in, T* out, std::size_t n) { map1(in, out, n, [s](T v) { return v * s; }); },
      [s](T g, T, T) { return g * s; });  // ∂/∂x = s
}

template <class T>
Var<T> mul(scalar_t<T> s, const Var<T>& x, SourceLoc loc) {
  return mul(x, s, loc);
}

template <class T>
Var<T> div(const Var<T>& x, scalar_t<T> s, SourceLoc loc) {
  return record_unary<T>(
      "div_scalar", x, loc,
      [s](const T* in, T* out, std::size_t n) { map1(in, out, n, [s](T v) { return v / s; }); },
      [s](T g, T, T) { return g / s; });  // ∂/∂x = 1/s
}

template <class T>
Var<T> div(scalar_t<T> s, const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "rdiv_scalar", x, loc,
      [s](const T* in, T* out, std::size_t n) { map1(in, out, n, [s](T v) { return s / v; }); },
      [](T g, T x, T y) { return -(g * y) / x; });  // ∂/∂x = −s/x² = −y/x
}

// ---- one tensor ------------------------------------------------------------------------------

template <class T>
Var<T> neg(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "neg", x, loc,
      [](const T* in, T* out, std::size_t n) { map1(in, out, n, [](T v) { return -v; }); },
      [](T g, T, T) { return -g; });  // ∂/∂x = −1
}

template <class T>
Var<T> square(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "square", x, loc,
      [](const T* in, T* out, std::size_t n) { map1(in, out, n, [](T v) { return v * v; }); },
      [](T g, T x, T) { return T(2) * x * g; });  // ∂/∂x = 2x
}

template <class T>
Var<T> pow(const Var<T>& x, scalar_t<T> p, SourceLoc loc) {
  check_handle("pow", "x", x);
  if (!std::isfinite(p))
    throw ValueError("pow: the exponent must be finite, got " + num(p) + " (x is " +
                     x.shape().str() + ")");
  if (p != std::trunc(p)) {
    const std::size_t n = x.size();
    const std::size_t k = first_negative(x.data(), n);
    if (k < n)
      throw ValueError("pow: x[" + std::to_string(k) + "] = " + num(x.data()[k]) +
                       " is negative and the exponent " + num(p) +
                       " is not an integer: the result would be nan (x is " + x.shape().str() +
                       ")");
  }
  // Exact fast paths for the common exponents; each keeps what its derivative needs.
  if (p == T(0))
    return record_unary<T>(
        "pow", x, loc, [](const T*, T* out, std::size_t n) { std::fill(out, out + n, T(1)); },
        [](T, T, T) { return T(0); });  // ∂/∂x = 0
  if (p == T(1))
    return record_unary<T>(
        "pow", x, loc, [](const T* in, T* out, std::size_t n) { std::copy(in, in + n, out); },
        [](T g, T, T) { return g; });  // ∂/∂x = 1
  if (p == T(2))
    return record_unary<T>(
        "pow", x, loc,
        [](const T* in, T* out, std::size_t n) { map1(in, out, n, [](T v) { return v * v; }); },
        [](T g, T x, T) { return T(2) * x * g; });  // ∂/∂x = 2x
  if (p == T(0.5))
    return record_unary<T>(
        "pow", x, loc,
        [](const T* in, T* out, std::size_t n) {
          detail::simd_map(in, out, n, [](auto v) { return xsimd::sqrt(v); });
        },
        [](T g, T, T y) { return g * T(0.5) / y; });  // ∂/∂x = 1/(2√x) = 0.5/y
  if (p == T(-1))
    return record_unary<T>(
        "pow", x, loc,
        [](const T* in, T* out, std::size_t n) { map1(in, out, n, [](T v) { return T(1) / v; }); },
        [](T g, T, T y) { return -g * y * y; });  // ∂/∂x = −1/x² = −y²
  return record_unary<T>(
      "pow", x, loc,
      [p](const T* in, T* out, std::size_t n) {
        map1(in, out, n, [p](T v) { return std::pow(v, p); });
      },
      [p](T g, T x, T) { return g * p * std::pow(x, p - T(1)); });  // ∂/∂x = p·x^(p−1)
}

template <class T>
Var<T> exp(const Var<T>& x, SourceLoc loc) {
  return record_unary<T>(
      "exp", x, loc,
      [](const T* in, T* out, std::size_t n) {
        detail::simd_map(in, out, n, [](auto v) { return detail::safe_exp(v); });
      },
      [](T g, T, T y) { return g * y; });  // ∂/∂x = eˣ = y
}

template <class T>
Var<T> log(const Var<T>& x, SourceLoc loc) {
  check_handle("log", "x", x);
  const std::size_t n = x.size();
  const std::size_t k = first_negative(x.data(), n);
  if (k < n)
    throw ValueError("log: x[" + std::to_string(k) + "] = " + num(x.data()[k]) +
                     " is negative; log is defined for x >= 0 (x is " + x.shape().str() + ")");
  return record_unary<T>(
      "log", x, loc,
      [](const T* in, T* out, std::size_t n) {
        detail::simd_map(in, out, n, [](auto v) { return detail::safe_log(v); });
      },
      [](T g, T x, T) { return g / x; });  // ∂/∂x = 1/x
}

// ---- explicit instantiations -----------------------------------------------------------------

#define WENGERT_ELEMENTWISE(T)                                     \
  template Var<T> add<T>(const Var<T>&, const Var<T>&, SourceLoc); \
  template Var<T> sub<T>(const Var<T>&, const Var<T>&, SourceLoc); \
  template Var<T> mul<T>(const Var<T>&, const Var<T>&, SourceLoc); \
  template Var<T> div<T>(const Var<T>&, const Var<T>&, SourceLoc); \
  template Var<T> add<T>(const Var<T>&, scalar_t<T>, SourceLoc);   \
  template Var<T> add<T>(scalar_t<T>, const Var<T>&, SourceLoc);   \
  template Var<T> sub<T>(const Var<T>&, scalar_t<T>, SourceLoc);   \
  template Var<T> sub<T>(scalar_t<T>, const Var<T>&, SourceLoc);   \
  template Var<T> mul<T>(const Var<T>&, scalar_t<T>, SourceLoc);   \
  template Var<T> mul<T>(scalar_t<T>, const Var<T>&, SourceLoc);   \
  template Var<T> div<T>(const Var<T>&, scalar_t<T>, SourceLoc);   \
  template Var<T> div<T>(scalar_t<T>, const Var<T>&, SourceLoc);   \
  template Var<T> neg<T>(const Var<T>&, SourceLoc);                \
  template Var<T> square<T>(const Var<T>&, SourceLoc);             \
  template Var<T> pow<T>(const Var<T>&, scalar_t<T>, SourceLoc);   \
  template Var<T> exp<T>(const Var<T>&, SourceLoc);                \
  template Var<T> log<T>(const Var<T>&, SourceLoc);

WENGERT_ELEMENTWISE(float)
WENGERT_ELEMENTWISE(double)
#undef WENGERT_ELEMENTWISE

}  // namespace wengert
