// wengert — losses: softmax cross-entropy (class indices or probabilities), binary
// cross-entropy with logits and on probabilities, mean squared error.
//
// Every loss returns a scalar (shape []) that is a *mean*: over the batch rows for the softmax
// cross-entropy, over all elements for the others. Each is one tape entry whose backward writes
// the gradient in closed form — (softmax − onehot)/m, (σ(z) − y)/n, 2(p − t)/n — in one
// vectorised pass, instead of backpropagating through a chain of small ops; and each is
// formulated so that logits of ±1e4 give finite losses and gradients.
//
// Empty inputs throw ValueError (a mean over nothing is undefined); mismatched shapes throw
// ShapeError naming the op, the argument and both shapes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// Softmax cross-entropy against class indices, averaged over the batch:
///   L = (1/m) Σᵢ [log Σⱼ exp(zᵢⱼ) − zᵢ,labelᵢ],
/// computed max-subtracted (log-sum-exp), so it is finite for any finite logits.
///
/// Derivative: dz += G · (softmax(z) − onehot(labels)) / m, with G the adjoint of L.
///
/// The labels are read during this call only (they are neither copied nor kept: backward
/// needs just each row's max, its log-sum and its label, which the op keeps in tape scratch).
///
/// @param logits   [m,c], m ≥ 1, c ≥ 1
/// @param labels   m class indices, each in [0, c)
/// @param n_labels the number of labels; must equal m
/// @throws ShapeError if logits is not 2-D or n_labels ≠ m;
///         ValueError naming the row and the value if a label is outside [0, c), or if m or c
///         is 0
template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const std::int32_t* labels, std::size_t n_labels,
                             SourceLoc loc = SourceLoc::current());

/// As above, with int64 class indices (torch's convention for labels).
template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const std::int64_t* labels, std::size_t n_labels,
                             SourceLoc loc = SourceLoc::current());

/// As above, from a contiguous container of int32 or int64 labels: std::vector<std::int32_t>,
/// std::vector<std::int64_t>, std::array, xt::xtensor<std::int64_t, 1>, ... (anything with
/// data() and size()).
template <class T, class Labels, class = std::enable_if_t<!std::is_same_v<Labels, Var<T>>>,
          class Elem = std::remove_cv_t<
              std::remove_pointer_t<decltype(std::declval<const Labels&>().data())>>,
          class = decltype(std::declval<const Labels&>().size())>
Var<T> softmax_cross_entropy(const Var<T>& logits, const Labels& labels,
                             SourceLoc loc = SourceLoc::current()) {
  static_assert(std::is_same_v<Elem, std::int32_t> || std::is_same_v<Elem, std::int64_t>,
                "softmax_cross_entropy: labels must be std::int32_t or std::int64_t class indices");
  return softmax_cross_entropy(logits, labels.data(), static_cast<std::size_t>(labels.size()), loc);
}

/// Softmax cross-entropy against target distributions (soft labels), averaged over the batch:
///   L = −(1/m) Σᵢ Σⱼ yᵢⱼ log softmax(zᵢ)ⱼ.
/// Rows of y need not sum to 1 (label smoothing, masked rows); the gradient below is exact for
/// any y.
///
/// Derivatives, with G the adjoint of L and sᵢ = Σⱼ yᵢⱼ:
///   dz += G · (softmax(z) · sᵢ − y) / m     (= G · (softmax(z) − y) / m when rows sum to 1)
///   dy += −G · log softmax(z) / m           (only if the targets need a gradient)
///
/// @param logits  [m,c], m ≥ 1
/// @param targets [m,c]
/// @throws ShapeError if logits is not 2-D or targets has another shape; ValueError if empty
template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const Var<T>& targets,
                             SourceLoc loc = SourceLoc::current());

/// Binary cross-entropy with logits (sigmoid folded in), averaged over all n elements:
///   L = (1/n) Σ [max(z, 0) − z·y + log(1 + e^(−|z|))],
/// which equals −(1/n) Σ [y log σ(z) + (1 − y) log(1 − σ(z))] but never overflows and never
/// takes log(0): finite for any finite z (e.g. ±1e4).
///
/// Derivatives, with G the adjoint of L:
///   dz += G · (σ(z) − y) / n
///   dy += −G · z / n                        (only if the targets need a gradient)
///
/// @param logits  any shape, n ≥ 1 elements
/// @param targets the same shape; values in [0, 1]
/// @throws ShapeError if the shapes differ; ValueError if empty or a target is outside [0, 1]
template <class T>
Var<T> sigmoid_binary_cross_entropy(const Var<T>& logits, const Var<T>& targets,
                                    SourceLoc loc = SourceLoc::current());

/// Binary cross-entropy on probabilities (seed 004's cost), averaged over all n elements:
///   L = −(1/n) Σ [y log p̂ + (1 − y) log(1 − p̂)],   p̂ = clamp(p, ε, 1 − ε),
/// with ε = 1e-7 for float and 1e-12 for double (binary_cross_entropy_eps<T>()). The clamp
/// keeps the loss finite when p is exactly 0 or 1 (a saturated sigmoid): each element then costs
/// at most −log ε (16.1 for float, 27.6 for double).
///
/// Derivatives, with G the adjoint of L:
///   dp += G · (p̂ − y) / (p̂ (1 − p̂)) / n
///   dy += G · log((1 − p̂) / p̂) / n         (only if the targets need a gradient)
/// For p inside [ε, 1 − ε] (p̂ = p) these are the exact derivatives. Where p was clamped, the
/// gradient is evaluated at p̂ as if the clamp were the identity, rather than being 0: a
/// saturated wrong prediction still gets a large, finite push back (at most 1/ε per element).
/// Composed with a sigmoid, dp · σ'(z) = (p − y)/n: seed 004's dZ³ = A³ − Y. Prefer
/// sigmoid_binary_cross_entropy on logits: it needs no clamp.
///
/// @param probabilities any shape, n ≥ 1 elements, values in [0, 1]
/// @param targets       the same shape; values in [0, 1]
/// @throws ShapeError if the shapes differ; ValueError if empty or a probability or target is
///         outside [0, 1] (NaN passes, for anomaly mode to report)
template <class T>
Var<T> binary_cross_entropy(const Var<T>& probabilities, const Var<T>& targets,
                            SourceLoc loc = SourceLoc::current());

/// The ε of binary_cross_entropy: 1e-7 for float, 1e-12 for double.
template <class T>
constexpr T binary_cross_entropy_eps() {
  return std::is_same_v<T, float> ? T(1e-7) : T(1e-12);
}

/// Mean squared error, MiniFlow's MSE node: L = (1/n) Σ (p − t)² over all n elements.
///
/// Derivatives, with G the adjoint of L: dp += G · 2(p − t)/n, dt += −G · 2(p − t)/n.
///
/// @param prediction any shape, n ≥ 1 elements
/// @param target     the same shape
/// @throws ShapeError if the shapes differ; ValueError if empty
template <class T>
Var<T> mse(const Var<T>& prediction, const Var<T>& target, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
