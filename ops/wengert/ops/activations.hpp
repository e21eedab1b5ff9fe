// wengert — activations: sigmoid, tanh, relu (elementwise, any shape).
//
// sigmoid and tanh keep their output for backward: their derivatives are functions of the
// output alone (σ' = y(1 − y), tanh' = 1 − y²), so nothing else is stored. Both are computed
// with xsimd over the whole tensor.
#pragma once

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// σ(x) = 1 / (1 + e⁻ˣ). ∂/∂x = y(1 − y).
/// Numerically stable for large |x|: computed from e^(−|x|), which never overflows, as
/// 1/(1 + e^(−|x|)) for x ≥ 0 and e^(−|x|)/(1 + e^(−|x|)) for x < 0; σ(−1000) is 0 and
/// σ(1000) is 1, never nan.
template <class T>
Var<T> sigmoid(const Var<T>& x, SourceLoc loc = SourceLoc::current());

/// tanh(x). ∂/∂x = 1 − y².
template <class T>
Var<T> tanh(const Var<T>& x, SourceLoc loc = SourceLoc::current());

/// max(x, 0). ∂/∂x = 1 where x > 0, else 0 (0 at x = 0). nan stays nan.
template <class T>
Var<T> relu(const Var<T>& x, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
