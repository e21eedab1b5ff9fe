// wengert — batch normalisation of NCHW images, per channel: batch_norm2d.
//
// Training mode normalises each channel c by the mean and variance of its N·H·W values in the
// batch and, when running statistics are given, moves them toward the batch's:
//   running_mean ← (1 − momentum)·running_mean + momentum·mean
//   running_var  ← (1 − momentum)·running_var  + momentum·var·M/(M − 1)   (M = N·H·W; unbiased)
// as PyTorch does. Evaluation mode normalises by the running statistics instead: the op is then
// an affine map per channel, and it keeps only 2·C numbers for backward (the mean and 1/σ it
// used), computed once from the running statistics at record time. Training mode keeps the
// batch's mean and 1/σ (2·C numbers) and recomputes x̂ from x in backward. Under no-grad (or
// when no input needs a gradient) nothing is kept. The running
// statistics are plain caller memory (nn::BatchNorm2d holds them as buffers that appear in its
// state dict); the op reads them in eval mode and writes them in training mode, once, when it is
// recorded.
//
// Replay (Tape::replay) runs the op exactly as a fresh recording of the same step would: in
// training mode it recomputes the batch statistics from x's current values and moves the running
// statistics toward them once more — once per replay, as one training step does; in eval mode it
// reads the running statistics again from the same pointers (their current values). The
// pointers must therefore still be valid whenever the tape is replayed.
#pragma once

#include <cstddef>

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// How batch_norm2d normalises, and the running statistics it reads or updates.
template <class T>
struct BatchNormOptions {
  bool training = true;       ///< batch statistics (true) or the running ones (false)
  T* running_mean = nullptr;  ///< [C]; required in eval mode; updated in training mode if set
  T* running_var = nullptr;   ///< [C]; likewise (both or neither)
  double momentum = 0.1;      ///< in [0, 1]
  double eps = 1e-5;          ///< > 0, added to the variance
};

/// y[n,c,h,w] = γ[c] · x̂[n,c,h,w] + β[c], x̂ = (x − μ[c]) / √(σ²[c] + ε), with μ, σ² the
/// batch's (biased) per-channel mean and variance in training mode and the running ones in
/// eval mode.
///
/// Derivatives, with G the adjoint of y, M = N·H·W and sums over n, h, w of channel c:
///   dβ[c] += Σ G,   dγ[c] += Σ G·x̂;
///   training: dx += γ/√(σ² + ε) · (G − Σ G / M − x̂ · Σ G·x̂ / M)
///   eval:     dx += γ/√(σ² + ε) · G
///
/// @param x     [N,C,H,W]
/// @param gamma [C]
/// @param beta  [C]
/// @return      [N,C,H,W], recorded as "batch_norm2d"
/// @throws ShapeError if x is not 4-D, gamma or beta is not [C], or (training) a channel has no
///         values (N·H·W = 0); ValueError if momentum is outside [0, 1] or eps ≤ 0, or eval
///         mode lacks running statistics, or only one of them is given
template <class T>
Var<T> batch_norm2d(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta,
                    const BatchNormOptions<T>& options = {}, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
