// wengert — shape and layout ops: reshape, flatten, squeeze, unsqueeze, transpose, permute,
// broadcast_to, concat, stack, slice, split.
//
// Every wengert tensor is contiguous and row-major, so the ops that only re-read the same
// elements in the same order — reshape, flatten, squeeze, unsqueeze, and a slice whose rows are
// contiguous (every dimension before the axis is 1, e.g. axis 0) — are views: the output's value
// is the input's memory (Tape::begin_view_op), nothing is copied, and only the adjoint is new.
// Like detach, a view of a Parameter shows the Parameter's current value. The others copy into
// a fresh output. Every backward accumulates (+=) the output adjoint back onto the input
// elements it came from; none keeps anything but small integers.
//
// Axes count from the end when negative (−1 is the last), as in numpy; an axis out of range,
// or shapes that do not fit, throw ShapeError naming the op, the argument and the shapes.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <vector>

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// The same elements in the same order with shape `shape` (a view: no copy).
/// ∂y[i]/∂x[i] = 1 (flat index i). @throws ShapeError if the element counts differ.
template <class T>
Var<T> reshape(const Var<T>& x, const Shape& shape, SourceLoc loc = SourceLoc::current());

/// Dimensions start..end (inclusive; negative from the end) merged into one (a view), as
/// torch.flatten: [2,3,4] → flatten(x) [24], flatten(x, 1) [2,12], flatten(x, 0, 1) [6,4]. A
/// scalar becomes [1]. ∂ = 1 elementwise. @throws ShapeError if an axis is out of range or
/// start > end.
template <class T>
Var<T> flatten(const Var<T>& x, int start = 0, int end = -1, SourceLoc loc = SourceLoc::current());

/// Removes dimension `axis`, which must be 1 (a view). @throws ShapeError otherwise.
template <class T>
Var<T> squeeze(const Var<T>& x, int axis, SourceLoc loc = SourceLoc::current());
/// Removes every dimension of size 1 (a view).
template <class T>
Var<T> squeeze(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// Inserts a dimension of size 1 so that it becomes dimension `axis` of the output, axis in
/// [−(r+1), r] (a view): [2,3] → unsqueeze(x, 0) [1,2,3], unsqueeze(x, −1) [2,3,1].
template <class T>
Var<T> unsqueeze(const Var<T>& x, int axis, SourceLoc loc = SourceLoc::current());

/// xᵀ of a 2-D x: y[j,i] = x[i,j]; dx[i,j] += G[j,i]. @throws ShapeError if x is not 2-D.
template <class T>
Var<T> transpose(const Var<T>& x, SourceLoc loc = SourceLoc::current());
/// Dimensions reordered: output dimension d is input dimension perm[d] (numpy.transpose(x,
/// perm)); dx is G permuted back. perm must hold each of 0..rank−1 once (negative entries count
/// from the end). @throws ShapeError naming the permutation otherwise.
template <class T>
Var<T> permute(const Var<T>& x, const int* perm, std::size_t n,
               SourceLoc loc = SourceLoc::current());
template <class T>
Var<T> permute(const Var<T>& x, std::initializer_list<int> perm,
               SourceLoc loc = SourceLoc::current()) {
  return permute(x, perm.begin(), perm.size(), loc);
}

/// x repeated along new leading dimensions and its size-1 dimensions to `shape` (numpy
/// broadcasting). dx is G summed over the repeated dimensions. @throws ShapeError if x does not
/// broadcast to exactly `shape`.
template <class T>
Var<T> broadcast_to(const Var<T>& x, const Shape& shape, SourceLoc loc = SourceLoc::current());

/// xs joined along an existing `axis`: all of one rank ≥ 1, equal in every other dimension.
/// Each dxs[i] += its block of G. @throws ShapeError (naming xs[i] and the shapes) if not.
template <class T>
Var<T> concat(const Var<T>* xs, std::size_t n, int axis, SourceLoc loc = SourceLoc::current());
template <class T>
Var<T> concat(std::initializer_list<Var<T>> xs, int axis, SourceLoc loc = SourceLoc::current()) {
  return concat(xs.begin(), xs.size(), axis, loc);
}
template <class T>
Var<T> concat(const std::vector<Var<T>>& xs, int axis, SourceLoc loc = SourceLoc::current()) {
  return concat(xs.data(), xs.size(), axis, loc);
}

/// xs (all of one shape) stacked along a new dimension `axis`, in [−(r+1), r]: n tensors [2,3]
/// stacked along 1 give [2,n,3]. dxs[i] += G's slice i along the axis.
template <class T>
Var<T> stack(const Var<T>* xs, std::size_t n, int axis, SourceLoc loc = SourceLoc::current());
template <class T>
Var<T> stack(std::initializer_list<Var<T>> xs, int axis, SourceLoc loc = SourceLoc::current()) {
  return stack(xs.begin(), xs.size(), axis, loc);
}
template <class T>
Var<T> stack(const std::vector<Var<T>>& xs, int axis, SourceLoc loc = SourceLoc::current()) {
  return stack(xs.data(), xs.size(), axis, loc);
}

/// Elements start..stop−1 along `axis`, as numpy's x[..., start:stop, ...]: a negative start or
/// stop counts from the end, both are then clamped to [0, n], and stop ≤ start gives an empty
/// dimension. A view when every dimension before the axis is 1, a copy otherwise.
/// dx[.., start + j, ..] += G[.., j, ..].
template <class T>
Var<T> slice(const Var<T>& x, int axis, long long start, long long stop,
             SourceLoc loc = SourceLoc::current());

/// x cut along `axis` into `parts` slices of equal length (one slice op each).
/// @throws ShapeError if parts is 0 or does not divide the axis's length.
/// The returned vector is a heap allocation; the overload that writes `parts` handles to `out`
/// allocates nothing.
template <class T>
std::vector<Var<T>> split(const Var<T>& x, std::size_t parts, int axis,
                          SourceLoc loc = SourceLoc::current());
template <class T>
void split(const Var<T>& x, std::size_t parts, int axis, Var<T>* out,
           SourceLoc loc = SourceLoc::current());
/// x cut along `axis` into slices of the given lengths, which must add up to the axis's length.
template <class T>
std::vector<Var<T>> split(const Var<T>& x, const std::vector<std::size_t>& sizes, int axis,
                          SourceLoc loc = SourceLoc::current());

}  // namespace wengert
