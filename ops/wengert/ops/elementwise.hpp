// wengert — elementwise arithmetic: add, sub, mul, div, neg, the scalar-operand forms, square,
// pow with a scalar exponent, exp, log, and the operators + - * / on Var.
//
// Two-tensor ops broadcast like numpy: shapes are aligned at their trailing dimensions and a
// dimension of size 1 (or a missing one) is repeated; [3,1] with [4] gives [3,4], [] with [2,3]
// gives [2,3]. Shapes that do not broadcast throw ShapeError naming the op and both shapes. In
// backward, an input's adjoint receives the output adjoint summed over the axes along which
// that input was repeated (see detail/broadcast.hpp).
//
// Every function records one tape entry. The named forms take the record site (file:line) as
// a defaulted last argument, shown by Tape::print and anomaly mode; the operators cannot, so
// their entries carry no site. Division by zero and log(0) follow IEEE arithmetic (±inf, nan),
// as in numpy; turn on anomaly mode to have them reported.
//
// The functions are templates on T = float or double, compiled once in the library.
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// Keeps a scalar parameter out of template deduction, so that `x * 2.0` works for Var<float>
/// (the scalar converts to T instead of deducing a second, conflicting T).
template <class T>
struct scalar_of {
  using type = T;
};
template <class T>
using scalar_t = typename scalar_of<T>::type;

// ---- two tensors (broadcasting) --------------------------------------------------------------

/// a + b. ∂/∂a = 1, ∂/∂b = 1.
template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current());
/// a − b. ∂/∂a = 1, ∂/∂b = −1.
template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current());
/// a · b. ∂/∂a = b, ∂/∂b = a.
template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current());
/// a / b. ∂/∂a = 1/b, ∂/∂b = −a/b² = −y/b.
template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current());

// ---- one tensor and a scalar -----------------------------------------------------------------

/// x + s and s + x. ∂/∂x = 1.
template <class T>
Var<T> add(const Var<T>& x, scalar_t<T> s, SourceLoc loc = SourceLoc::current());
template <class T>
Var<T> add(scalar_t<T> s, const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// x − s. ∂/∂x = 1.
template <class T>
Var<T> sub(const Var<T>& x, scalar_t<T> s, SourceLoc loc = SourceLoc::current());
/// s − x. ∂/∂x = −1.
template <class T>
Var<T> sub(scalar_t<T> s, const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// x · s and s · x. ∂/∂x = s.
template <class T>
Var<T> mul(const Var<T>& x, scalar_t<T> s, SourceLoc loc = SourceLoc::current());
template <class T>
Var<T> mul(scalar_t<T> s, const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// x / s. ∂/∂x = 1/s.
template <class T>
Var<T> div(const Var<T>& x, scalar_t<T> s, SourceLoc loc = SourceLoc::current());
/// s / x. ∂/∂x = −s/x².
template <class T>
Var<T> div(scalar_t<T> s, const Var<T>& x, SourceLoc loc = SourceLoc::current());

// ---- one tensor ------------------------------------------------------------------------------

/// −x. ∂/∂x = −1.
template <class T>
Var<T> neg(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// x². ∂/∂x = 2x.
template <class T>
Var<T> square(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// x^p for a scalar exponent p. ∂/∂x = p·x^(p−1) (0 when p = 0).
/// Throws ValueError if p is not finite, or if p is not an integer and x has a negative
/// element (the result would be nan). p ∈ {0, 1, 2, 0.5, −1} take exact fast paths
/// (1, x, x·x, √x, 1/x); other exponents use std::pow, which is exact on integer powers of
/// small integers (xsimd 8's pow is not, and gives 0 for 0^0 and 0^−p).
template <class T>
Var<T> pow(const Var<T>& x, scalar_t<T> p, SourceLoc loc = SourceLoc::current());
/// eˣ. ∂/∂x = eˣ = y (the output is kept for backward).
template <class T>
Var<T> exp(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// Natural logarithm. ∂/∂x = 1/x. Throws ValueError if x has a negative element (log(0) is
/// −inf and allowed).
template <class T>
Var<T> log(const Var<T>& x, SourceLoc loc = SourceLoc::current());

// ---- operators -------------------------------------------------------------------------------

template <class T>
Var<T> operator+(const Var<T>& a, const Var<T>& b) {
  return add(a, b, SourceLoc{});
}
template <class T>
Var<T> operator-(const Var<T>& a, const Var<T>& b) {
  return sub(a, b, SourceLoc{});
}
template <class T>
Var<T> operator*(const Var<T>& a, const Var<T>& b) {
  return mul(a, b, SourceLoc{});
}
template <class T>
Var<T> operator/(const Var<T>& a, const Var<T>& b) {
  return div(a, b, SourceLoc{});
}
template <class T>
Var<T> operator-(const Var<T>& x) {
  return neg(x, SourceLoc{});
}

template <class T>
Var<T> operator+(const Var<T>& x, scalar_t<T> s) {
  return add(x, s, SourceLoc{});
}
template <class T>
Var<T> operator+(scalar_t<T> s, const Var<T>& x) {
  return add(s, x, SourceLoc{});
}
template <class T>
Var<T> operator-(const Var<T>& x, scalar_t<T> s) {
  return sub(x, s, SourceLoc{});
}
template <class T>
Var<T> operator-(scalar_t<T> s, const Var<T>& x) {
  return sub(s, x, SourceLoc{});
}
template <class T>
Var<T> operator*(const Var<T>& x, scalar_t<T> s) {
  return mul(x, s, SourceLoc{});
}
template <class T>
Var<T> operator*(scalar_t<T> s, const Var<T>& x) {
  return mul(s, x, SourceLoc{});
}
template <class T>
Var<T> operator/(const Var<T>& x, scalar_t<T> s) {
  return div(x, s, SourceLoc{});
}
template <class T>
Var<T> operator/(scalar_t<T> s, const Var<T>& x) {
  return div(s, x, SourceLoc{});
}

}  // namespace wengert
