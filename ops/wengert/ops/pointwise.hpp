// wengert — more elementwise ops: abs, sqrt, rsqrt, clamp, sin, cos, maximum, minimum, where,
// and the activations leaky_relu, elu, gelu (erf form), silu.
//
// One-tensor ops keep the shape; maximum, minimum and where broadcast like numpy (see
// elementwise.hpp), their adjoints summed over the broadcast axes. Every kink and domain edge is
// stated below: which subgradient is used, which input is refused and with which error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <wengert/grad_mode.hpp>
#include <wengert/ops/elementwise.hpp>  // scalar_t
#include <wengert/tape.hpp>

namespace wengert {

/// |x|. ∂/∂x = sign(x); at the kink x = 0 the subgradient 0 is used.
template <class T>
Var<T> abs(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// √x. ∂/∂x = 1/(2√x) = 0.5/y, which is +inf at x = 0 (so a zero input's gradient is inf, or
/// NaN when its adjoint is 0). @throws ValueError naming the first negative element
template <class T>
Var<T> sqrt(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// 1/√x. ∂/∂x = −1/(2 x√x) = −0.5·y³; rsqrt(0) = +inf (and its derivative −inf).
/// @throws ValueError naming the first negative element
template <class T>
Var<T> rsqrt(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// min(max(x, lo), hi). ∂/∂x = 1 for lo ≤ x ≤ hi (the bounds included, as torch.clamp), else 0.
/// @throws ValueError if lo or hi is NaN or lo > hi
template <class T>
Var<T> clamp(const Var<T>& x, scalar_t<T> lo, scalar_t<T> hi, SourceLoc loc = SourceLoc::current());
/// sin x. ∂/∂x = cos x.
template <class T>
Var<T> sin(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// cos x. ∂/∂x = −sin x.
template <class T>
Var<T> cos(const Var<T>& x, SourceLoc loc = SourceLoc::current());

/// Elementwise max(a, b), broadcasting. ∂/∂a = 1 where a > b, ∂/∂b = 1 where b > a; at a tie
/// each gets 1/2 (the mean of the two one-sided choices, as torch.maximum). A NaN in either
/// gives NaN.
template <class T>
Var<T> maximum(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current());
/// Elementwise min(a, b), broadcasting; ties split 1/2 each as in maximum.
template <class T>
Var<T> minimum(const Var<T>& a, const Var<T>& b, SourceLoc loc = SourceLoc::current());

/// mask ? a : b elementwise, mask, a and b broadcast together (numpy.where). The mask is not a
/// Var: M is bool, std::uint8_t, std::int32_t or std::int64_t (nonzero = true), mask_shape.size()
/// values in row-major order; it is copied into tape memory, expanded to the output's shape.
/// ∂/∂a = mask, ∂/∂b = 1 − mask (summed over broadcast axes).
/// @throws ShapeError naming the shapes that do not broadcast
template <class T, class M>
Var<T> where(const M* mask, const Shape& mask_shape, const Var<T>& a, const Var<T>& b,
             SourceLoc loc = SourceLoc::current());
/// From a contiguous row-major container of the mask (xt::xarray<bool>, xt::xtensor<int, 2>).
/// Call it qualified, wengert::where(mask, a, b): with an xtensor mask, argument-dependent
/// lookup also finds xt::where, which overload resolution prefers for non-const arguments.
template <class C, class T, class = decltype(std::declval<const C&>().shape())>
Var<T> where(const C& mask, const Var<T>& a, const Var<T>& b,
             SourceLoc loc = SourceLoc::current()) {
  return where(mask.data(), Shape(mask.shape()), a, b, loc);
}

/// x for x > 0, slope·x otherwise. ∂/∂x = 1 for x > 0, slope for x ≤ 0 (at the kink x = 0:
/// slope). @throws ValueError if slope is not finite
template <class T>
Var<T> leaky_relu(const Var<T>& x, scalar_t<T> slope = scalar_t<T>(0.01),
                  SourceLoc loc = SourceLoc::current());
/// x for x > 0, α(eˣ − 1) otherwise. ∂/∂x = 1 for x > 0, αeˣ = y + α for x ≤ 0 (at x = 0: α,
/// which is 1, i.e. smooth, for the default α = 1). @throws ValueError if alpha is not finite
template <class T>
Var<T> elu(const Var<T>& x, scalar_t<T> alpha = scalar_t<T>(1),
           SourceLoc loc = SourceLoc::current());
/// GELU, the exact (erf) form: x·Φ(x) = ½x(1 + erf(x/√2)) (torch's default, not the tanh
/// approximation), computed as ½x·erfc(−x/√2), accurate in the far negative tail.
/// ∂/∂x = Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π).
template <class T>
Var<T> gelu(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// SiLU (swish): x·σ(x). ∂/∂x = σ(x)·(1 + x(1 − σ(x))).
template <class T>
Var<T> silu(const Var<T>& x, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
