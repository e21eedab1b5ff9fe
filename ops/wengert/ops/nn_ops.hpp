// wengert — neural-network ops: dropout and layer_norm.
#pragma once

#include <random>

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// Inverted dropout: in training, each element is kept with probability 1 − p and scaled by
/// 1/(1 − p), or set to 0: y = x·mask with mask ∈ {0, 1/(1 − p)}; dx += G·mask. The mask is
/// drawn from `gen` (seed it for reproducible runs) and kept in tape memory for backward.
/// When training is false, or p = 0, dropout is the identity at no cost: it returns x itself and
/// records nothing. p = 1 drops everything (y = 0, no gradient).
/// @throws ValueError if p is not in [0, 1]
template <class T>
Var<T> dropout(const Var<T>& x, double p, bool training, std::mt19937_64& gen,
               SourceLoc loc = SourceLoc::current());

/// Layer normalisation over the last axis, one fused op: for each row of x [..., d],
///   x̂ = (x − μ)/√(σ² + eps),  y = γ∘x̂ + β,
/// with μ and σ² the row's mean and (population) variance, gamma and beta of shape [d].
/// Fused backward, per row (ĝ = G∘γ, means over the d elements):
///   dx += (ĝ − mean(ĝ) − x̂·mean(ĝ∘x̂)) / √(σ² + eps),  dγ += Σ_rows G∘x̂,  dβ += Σ_rows G.
/// Keeps μ and 1/√(σ² + eps) per row (2 numbers) for backward; x̂ is recomputed.
/// @throws ShapeError if x is a scalar or gamma or beta is not [d]; ValueError if eps is not a
///         positive finite number
template <class T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, double eps = 1e-5,
                  SourceLoc loc = SourceLoc::current());

}  // namespace wengert
