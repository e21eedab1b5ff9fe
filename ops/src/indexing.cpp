// wengert — index_select and embedding (see indexing.hpp).
//
// x is seen as [outer, n, inner] around the axis and the output as [outer, m, inner], m the
// number of indices: output row (o, j) is a copy of the `inner` contiguous elements of input
// row (o, indices[j]). Backward adds output row (o, j)'s adjoint into input row (o, indices[j]),
// one row after the other, so repeated indices accumulate. The indices are copied into tape
// scratch memory (as std::int64_t) only when the output needs a gradient.
#include <wengert/ops/indexing.hpp>

#include <cstring>
#include <string>

#include "detail/axes.hpp"
#include "detail/record.hpp"

namespace wengert {
namespace {

// "[1,2]" for element k of an array of shape s (or "[k]" for a 1-D one).
std::string position(std::size_t k, const Shape& s) {
  if (s.rank() == 0) return "[]";
  std::size_t idx[Shape::kMaxRank];
  for (std::size_t d = s.rank(); d-- > 0;) {
    idx[d] = k % s[d];
    k /= s[d];
  }
  std::string p = "[";
  for (std::size_t d = 0; d < s.rank(); ++d) p += (d ? "," : "") + std::to_string(idx[d]);
  return p + "]";
}

// Throws the ValueError of an index out of [0, n): at recording, and again on every replay (the
// caller may have refilled the array, which replay reads from the same address). The message is
// built only on failure, from the shapes the tape recorded.
template <class I>
void check_indices(const char* name, const char* idx_name, const I* indices, std::size_t m,
                   std::size_t n, std::size_t ax, const Shape& x_shape, const Shape& ishape) {
  for (std::size_t j = 0; j < m; ++j) {
    const long long k = static_cast<long long>(indices[j]);
    if (k < 0 || static_cast<unsigned long long>(k) >= n)
      throw ValueError(std::string(name) + ": " + idx_name + position(j, ishape) + " = " +
                       std::to_string(k) + " is out of range for axis " + std::to_string(ax) +
                       " of " + (std::strcmp(name, "embedding") ? "x " : "the table ") +
                       x_shape.str() + ", of length " + std::to_string(n));
  }
}

// The shape of the indices, from the output's: dimensions ax .. ax + irank.
inline Shape index_shape(const Shape& out, std::size_t ax, std::size_t irank) {
  Shape s;
  for (std::size_t d = ax; d < ax + irank; ++d) s.push_back(out[d]);
  return s;
}

template <class T, class I>
Var<T> take(const char* name, const char* idx_name, const Var<T>& x, std::size_t ax,
            const I* indices, const Shape& ishape, SourceLoc loc) {
  static_assert(std::is_same_v<I, std::int32_t> || std::is_same_v<I, std::int64_t>);
  const Shape s = x.shape();
  const detail::AxisSplit a = detail::split_at(s, ax);
  const std::size_t m = ishape.size();
  if (m && !indices) throw UsageError(std::string(name) + ": " + idx_name + " is a null pointer");
  Shape out;
  for (std::size_t d = 0; d < ax; ++d) out.push_back(s[d]);
  for (std::size_t d : ishape) out.push_back(d);
  for (std::size_t d = ax + 1; d < s.rank(); ++d) out.push_back(s[d]);

  auto op = x.tape().begin_op(name, &x, 1, out, loc);
  const std::size_t inner = a.inner;
  std::int64_t* kept = op.requires_grad() ? op.template scratch_as<std::int64_t>(m) : nullptr;
  // Run now and again by replay, which reads `indices` again (checked first, in its forward).
  auto forward = [kept, outer = a.outer, n = a.n, m, inner](const I* indices, const T* xv, T* y) {
    // With an empty inner block both pointers may be null (an empty tensor owns no memory):
    // memcpy(null, null, 0) is undefined behaviour, so nothing is copied (found by fuzz_tape).
    for (std::size_t o = 0; o < outer && inner; ++o)
      for (std::size_t j = 0; j < m; ++j)
        std::memcpy(y + (o * m + j) * inner, xv + (o * n + std::size_t(indices[j])) * inner,
                    inner * sizeof(T));
    if (kept)
      for (std::size_t j = 0; j < m; ++j) kept[j] = indices[j];
  };
  return op.finish(
      [forward, indices, name, idx_name, ax, m, n = a.n,
       irank = ishape.rank()](const ForwardContext<T>& c) {
        check_indices(name, idx_name, indices, m, n, ax, c.input_shape(0),
                      index_shape(c.out_shape(), ax, irank));
        forward(indices, c.input_data(0), c.out_data());
      },
      [kept, outer = a.outer, n = a.n, m, inner](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const T* g = c.out_grad_data();
        T* gx = c.grad_data(0);
        for (std::size_t o = 0; o < outer; ++o)
          for (std::size_t j = 0; j < m; ++j) {
            const T* __restrict src = g + (o * m + j) * inner;
            T* __restrict dst = gx + (o * n + std::size_t(kept[j])) * inner;
            for (std::size_t i = 0; i < inner; ++i) dst[i] += src[i];
          }
      });
}

}  // namespace

template <class T, class I>
Var<T> index_select(const Var<T>& x, int axis, const I* indices, const Shape& indices_shape,
                    SourceLoc loc) {
  detail::check_handle("index_select", "x", x);
  const Shape s = x.shape();
  if (s.rank() == 0)
    throw ShapeError("index_select: x is a scalar ([]); index_select picks along an axis");
  const std::size_t ax = detail::normalize_axis("index_select", "x", s, axis);
  if (s.rank() - 1 + indices_shape.rank() > Shape::kMaxRank)
    throw ShapeError("index_select: x " + s.str() + " with indices of shape " +
                     indices_shape.str() + " would give a rank above " +
                     std::to_string(Shape::kMaxRank));
  return take("index_select", "indices", x, ax, indices, indices_shape, loc);
}

template <class T, class I>
Var<T> embedding(const Var<T>& table, const I* ids, const Shape& ids_shape, SourceLoc loc) {
  detail::check_handle("embedding", "table", table);
  const Shape s = table.shape();
  if (s.rank() != 2) throw ShapeError("embedding: table is " + s.str() + ", not 2-D [V, d]");
  if (ids_shape.rank() + 1 > Shape::kMaxRank)
    throw ShapeError("embedding: ids of shape " + ids_shape.str() + " would give a rank above " +
                     std::to_string(Shape::kMaxRank));
  return take("embedding", "ids", table, 0, ids, ids_shape, loc);
}

#define WENGERT_INDEXING(T, I)                                                               \
  template Var<T> index_select<T, I>(const Var<T>&, int, const I*, const Shape&, SourceLoc); \
  template Var<T> embedding<T, I>(const Var<T>&, const I*, const Shape&, SourceLoc);

WENGERT_INDEXING(float, std::int32_t)
WENGERT_INDEXING(float, std::int64_t)
WENGERT_INDEXING(double, std::int32_t)
WENGERT_INDEXING(double, std::int64_t)
#undef WENGERT_INDEXING

}  // namespace wengert
