// wengert — axis arguments of the ops that take one (shape, indexing, axis reductions, softmax
// along an axis): numpy's negative axes, and the [outer, n, inner] view of a row-major tensor
// around one axis.
#pragma once

#include <cstddef>
#include <string>

#include <wengert/errors.hpp>
#include <wengert/shape.hpp>

namespace wengert::detail {

/// The axis in [0, rank), from an axis in [−rank, rank) (rank = s.rank(), or s.rank() + extra
/// for ops that insert an axis: unsqueeze, stack). Throws ShapeError naming the op, the argument
/// and the shape.
inline std::size_t normalize_axis(const char* op, const char* arg, const Shape& s, long long axis,
                                  std::size_t extra = 0) {
  const long long r = static_cast<long long>(s.rank() + extra);
  if (axis < -r || axis >= r)
    throw ShapeError(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for " +
                     arg + " of shape " + s.str() + " (" +
                     (r ? "valid axes are " + std::to_string(-r) + " to " + std::to_string(r - 1)
                        : std::string("a scalar has no axes")) +
                     ")");
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

/// x seen as [outer, n, inner] around axis ax: outer = Π dims before ax, n = dims[ax],
/// inner = Π dims after ax.
struct AxisSplit {
  std::size_t outer = 1, n = 1, inner = 1;
};

inline AxisSplit split_at(const Shape& s, std::size_t ax) {
  AxisSplit a;
  for (std::size_t i = 0; i < ax; ++i) a.outer *= s[i];
  a.n = s[ax];
  for (std::size_t i = ax + 1; i < s.rank(); ++i) a.inner *= s[i];
  return a;
}

/// s without dimension ax, or with it set to 1 when keepdims.
inline Shape drop_axis(const Shape& s, std::size_t ax, bool keepdims) {
  Shape out;
  for (std::size_t i = 0; i < s.rank(); ++i)
    if (i != ax)
      out.push_back(s[i]);
    else if (keepdims)
      out.push_back(1);
  return out;
}

}  // namespace wengert::detail
