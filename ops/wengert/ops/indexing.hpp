// wengert — indexing: index_select (numpy's take along an axis) and embedding.
//
// Indices are not Vars (they have no gradient): they are std::int32_t or std::int64_t values,
// passed as a pointer and the indices' shape, as a std::vector (a 1-D list), or as any
// contiguous row-major container with data() and shape() — xt::xtensor<std::int64_t, 2>,
// xt::xarray<std::int32_t>. They are copied into tape memory when a gradient is needed, so the
// caller's buffer may change after the call. Every index must lie in [0, n) for an axis of
// length n: a negative or too large one throws ValueError naming its position in the indices
// and its value (negative indices do not count from the end, as in torch.index_select).
//
// The backward is a scatter-add: each output row's adjoint is added to the input row it was
// read from, in order, so an index that repeats receives the sum of its rows' adjoints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// Rows of x picked along `axis` by `indices` (numpy.take(x, indices, axis)): the output is
/// x.shape[:axis] + indices_shape + x.shape[axis+1:], and
///   y[a.., j.., b..] = x[a.., indices[j..], b..].
/// With 1-D indices this is torch.index_select (also called gather along an axis).
/// Derivative: dx[a.., k, b..] += Σ over j.. with indices[j..] = k of G[a.., j.., b..].
///
/// @param indices std::int32_t or std::int64_t, indices_shape.size() of them, row-major
/// @throws ShapeError if x is a scalar, the axis is out of range or the output's rank is above
///         Shape::kMaxRank; ValueError for an index outside [0, x.shape[axis])
template <class T, class I>
Var<T> index_select(const Var<T>& x, int axis, const I* indices, const Shape& indices_shape,
                    SourceLoc loc = SourceLoc::current());
template <class T, class I>
Var<T> index_select(const Var<T>& x, int axis, const std::vector<I>& indices,
                    SourceLoc loc = SourceLoc::current()) {
  return index_select(x, axis, indices.data(), Shape{indices.size()}, loc);
}
/// From a contiguous row-major container of indices (xt::xtensor, xt::xarray).
template <class T, class C, class = decltype(std::declval<const C&>().shape())>
Var<T> index_select(const Var<T>& x, int axis, const C& indices,
                    SourceLoc loc = SourceLoc::current()) {
  return index_select(x, axis, indices.data(), Shape(indices.shape()), loc);
}

/// Rows of a table [V, d] looked up by ids of any shape: the output is ids_shape + [d], and
/// y[j.., :] = table[ids[j..], :] — index_select along axis 0, recorded as "embedding".
/// Derivative: dtable[k, :] += Σ over j.. with ids[j..] = k of G[j.., :].
/// @throws ShapeError if table is not 2-D; ValueError for an id outside [0, V)
template <class T, class I>
Var<T> embedding(const Var<T>& table, const I* ids, const Shape& ids_shape,
                 SourceLoc loc = SourceLoc::current());
template <class T, class I>
Var<T> embedding(const Var<T>& table, const std::vector<I>& ids,
                 SourceLoc loc = SourceLoc::current()) {
  return embedding(table, ids.data(), Shape{ids.size()}, loc);
}
template <class T, class C, class = decltype(std::declval<const C&>().shape())>
Var<T> embedding(const Var<T>& table, const C& ids, SourceLoc loc = SourceLoc::current()) {
  return embedding(table, ids.data(), Shape(ids.shape()), loc);
}

}  // namespace wengert
