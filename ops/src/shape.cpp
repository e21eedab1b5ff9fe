// wengert — shape and layout ops (see shape.hpp).
//
// Views (reshape, flatten, squeeze, unsqueeze, a contiguous slice) record an output whose value
// is the input's memory; their backward is the one loop dx[offset + i] += G[i]. The copying ops
// walk the output in order: transpose and permute with an odometer over the output's dimensions
// and the input's strides; concat and stack as blocks (each input contributes one contiguous
// block per index of the dimensions before the axis); broadcast_to with the broadcast walk of
// detail/broadcast.hpp. Each backward walks the same way and accumulates.
#include <wengert/ops/shape.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "detail/axes.hpp"
#include "detail/broadcast.hpp"
#include "detail/record.hpp"

namespace wengert {
namespace {

using detail::check_handle;

// The backward of every view and of slice: dx[(o·n + start)·inner + j] += G[o·len·inner + j]
// over o < outer, j < len·inner (a view is outer = 1: one run at `start·inner`).
struct SliceBackward {
  std::size_t outer, n, inner, start;
  template <class T>
  void operator()(const BackwardContext<T>& c) const {
    if (!c.needs_grad(0) || outer == 0) return;
    const std::size_t run = c.out_size() / outer;
    const T* __restrict g = c.out_grad_data();
    T* __restrict gx = c.grad_data(0);
    for (std::size_t o = 0; o < outer; ++o) {
      T* __restrict dst = gx + (o * n + start) * inner;
      const T* __restrict src = g + o * run;
      for (std::size_t j = 0; j < run; ++j) dst[j] += src[j];
    }
  }
};

template <class T>
Var<T> view(const char* name, const Var<T>& x, const Shape& out, SourceLoc loc) {
  auto op = x.tape().begin_view_op(name, x, out, 0, loc);
  return op.finish(SliceBackward{1, 0, 0, 0});
}

// Odometer walk of a permutation: output element o (in order) reads input element `i`, where
// the output's dimension d advances the input by stride[d].
template <class F>
void for_each_permuted(const Shape& out, const std::size_t* stride, F&& f) {
  const std::size_t r = out.rank(), size = out.size();
  if (size == 0) return;
  if (r == 0) {
    f(std::size_t{0}, std::size_t{0});
    return;
  }
  std::size_t idx[Shape::kMaxRank] = {};
  const std::size_t last = r - 1, n = out[last], s = stride[last];
  std::size_t in = 0;
  for (std::size_t o = 0; o < size; o += n) {
    for (std::size_t k = 0; k < n; ++k) f(o + k, in + k * s);
    for (std::size_t d = last; d-- > 0;) {
      in += stride[d];
      if (++idx[d] < out[d]) break;
      in -= idx[d] * stride[d];
      idx[d] = 0;
    }
  }
}

// Input strides in output order: stride[d] = the input's row-major stride of dimension perm[d].
void permuted_strides(const Shape& in, const std::array<std::uint8_t, Shape::kMaxRank>& perm,
                      std::size_t* stride) {
  std::size_t st[Shape::kMaxRank], acc = 1;
  for (std::size_t d = in.rank(); d-- > 0;) {
    st[d] = acc;
    acc *= in[d];
  }
  for (std::size_t d = 0; d < in.rank(); ++d) stride[d] = st[perm[d]];
}

template <class T>
Var<T> permute_impl(const char* name, const Var<T>& x,
                    const std::array<std::uint8_t, Shape::kMaxRank>& perm, SourceLoc loc) {
  const Shape s = x.shape();
  Shape out;
  for (std::size_t d = 0; d < s.rank(); ++d) out.push_back(s[perm[d]]);
  auto op = x.tape().begin_op(name, &x, 1, out, loc);
  std::array<std::size_t, Shape::kMaxRank> stride{};
  permuted_strides(s, perm, stride.data());
  // Run now and again by replay.
  auto forward = [stride](const T* __restrict xv, T* __restrict y, const Shape& out) {
    if (out.rank() == 2 && out.size() > 0) {
      // 2-D transpose in 32×32 tiles: both sides stay in cache.
      const std::size_t R = out[0], C = out[1];  // y [R,C], x [C,R]
      constexpr std::size_t B = 32;
      for (std::size_t i0 = 0; i0 < R; i0 += B)
        for (std::size_t j0 = 0; j0 < C; j0 += B)
          for (std::size_t i = i0; i < std::min(R, i0 + B); ++i)
            for (std::size_t j = j0; j < std::min(C, j0 + B); ++j)
              y[i * C + j] = xv[i * stride[0] + j * stride[1]];
    } else {
      for_each_permuted(out, stride.data(), [&](std::size_t o, std::size_t i) { y[o] = xv[i]; });
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {
        forward(c.input_data(0), c.out_data(), c.out_shape());
      },
      [perm](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        std::size_t stride[Shape::kMaxRank];
        permuted_strides(c.input_shape(0), perm, stride);
        const T* __restrict g = c.out_grad_data();
        T* __restrict gx = c.grad_data(0);
        for_each_permuted(c.out_shape(), stride,
                          [&](std::size_t o, std::size_t i) { gx[i] += g[o]; });
      });
}

// The common kernel of concat and stack: input i is `outer` blocks of w_i contiguous elements,
// and output row o is the inputs' blocks o side by side.
struct BlocksBackward {
  std::size_t outer;
  template <class T>
  void operator()(const BackwardContext<T>& c) const {
    if (outer == 0) return;
    const std::size_t W = c.out_size() / outer;
    const T* g = c.out_grad_data();
    std::size_t off = 0;
    for (std::size_t i = 0; i < c.num_inputs(); ++i) {
      const std::size_t w = c.input_size(i) / outer;
      if (c.needs_grad(i)) {
        T* gx = c.grad_data(i);
        for (std::size_t o = 0; o < outer; ++o) {
          const T* __restrict src = g + o * W + off;
          T* __restrict dst = gx + o * w;
          for (std::size_t j = 0; j < w; ++j) dst[j] += src[j];
        }
      }
      off += w;
    }
  }
};

template <class T>
Var<T> join_blocks(const char* name, const Var<T>* xs, std::size_t n, const Shape& out,
                   std::size_t outer, SourceLoc loc) {
  auto op = xs[0].tape().begin_op(name, xs, n, out, loc);
  // Run now on the OpBuilder and again by replay on the ForwardContext (the same accessors).
  auto forward = [outer](const auto& c) {
    if (outer == 0) return;
    const std::size_t W = c.out_size() / outer;
    T* y = c.out_data();
    std::size_t off = 0;
    for (std::size_t i = 0; i < c.num_inputs(); ++i) {
      const std::size_t w = c.input_size(i) / outer;
      const T* x = c.input_data(i);
      if (w > 0)
        for (std::size_t o = 0; o < outer; ++o)
          std::memcpy(y + o * W + off, x + o * w, w * sizeof(T));
      off += w;
    }
  };
  return op.finish([forward](const ForwardContext<T>& c) { forward(c); }, BlocksBackward{outer});
}

// Handles of a list argument: "concat: argument xs[2] is a stale handle ...".
template <class T>
void check_list(const char* name, const Var<T>* xs, std::size_t n) {
  if (n == 0) throw ShapeError(std::string(name) + ": xs is empty; it needs at least one tensor");
  for (std::size_t i = 0; i < n; ++i) {
    const std::string arg = "xs[" + std::to_string(i) + "]";
    check_handle(name, arg.c_str(), xs[i]);
  }
}

// Numpy's slice bound: negative counts from the end, then clamped to [0, n].
std::size_t clamp_bound(long long b, std::size_t n) {
  const long long ln = static_cast<long long>(n);
  if (b < 0) b += ln;
  return static_cast<std::size_t>(std::clamp<long long>(b, 0, ln));
}

}  // namespace

template <class T>
Var<T> reshape(const Var<T>& x, const Shape& shape, SourceLoc loc) {
  check_handle("reshape", "x", x);
  const Shape s = x.shape();
  if (s.size() != shape.size())
    throw ShapeError("reshape: x is " + s.str() + " (" + std::to_string(s.size()) +
                     " elements) but the new shape " + shape.str() + " has " +
                     std::to_string(shape.size()));
  return view("reshape", x, shape, loc);
}

template <class T>
Var<T> flatten(const Var<T>& x, int start, int end, SourceLoc loc) {
  check_handle("flatten", "x", x);
  const Shape s = x.shape();
  if (s.rank() == 0) return view("flatten", x, Shape{1}, loc);
  const std::size_t a = detail::normalize_axis("flatten", "x", s, start);
  const std::size_t b = detail::normalize_axis("flatten", "x", s, end);
  if (a > b)
    throw ShapeError("flatten: start axis " + std::to_string(start) + " comes after end axis " +
                     std::to_string(end) + " of x " + s.str());
  Shape out;
  std::size_t merged = 1;
  for (std::size_t d = 0; d < s.rank(); ++d) {
    if (d < a || d > b) out.push_back(s[d]);
    if (d >= a && d <= b) merged *= s[d];
    if (d == b) out.push_back(merged);
  }
  return view("flatten", x, out, loc);
}

template <class T>
Var<T> squeeze(const Var<T>& x, int axis, SourceLoc loc) {
  check_handle("squeeze", "x", x);
  const Shape s = x.shape();
  const std::size_t ax = detail::normalize_axis("squeeze", "x", s, axis);
  if (s[ax] != 1)
    throw ShapeError("squeeze: axis " + std::to_string(axis) + " of x " + s.str() + " has length " +
                     std::to_string(s[ax]) + ", not 1");
  return view("squeeze", x, detail::drop_axis(s, ax, false), loc);
}

template <class T>
Var<T> squeeze(const Var<T>& x, SourceLoc loc) {
  check_handle("squeeze", "x", x);
  const Shape s = x.shape();
  Shape out;
  for (std::size_t d : s)
    if (d != 1) out.push_back(d);
  return view("squeeze", x, out, loc);
}

template <class T>
Var<T> unsqueeze(const Var<T>& x, int axis, SourceLoc loc) {
  check_handle("unsqueeze", "x", x);
  const Shape s = x.shape();
  const std::size_t ax = detail::normalize_axis("unsqueeze", "x", s, axis, 1);
  if (s.rank() == Shape::kMaxRank)
    throw ShapeError("unsqueeze: x " + s.str() + " already has the maximum rank " +
                     std::to_string(Shape::kMaxRank));
  Shape out;
  for (std::size_t d = 0; d <= s.rank(); ++d) {
    if (d == ax) out.push_back(1);
    if (d < s.rank()) out.push_back(s[d]);
  }
  return view("unsqueeze", x, out, loc);
}

template <class T>
Var<T> transpose(const Var<T>& x, SourceLoc loc) {
  check_handle("transpose", "x", x);
  const Shape s = x.shape();
  if (s.rank() != 2)
    throw ShapeError("transpose: x is " + s.str() +
                     ", not 2-D; use permute to reorder the axes of other ranks");
  return permute_impl("transpose", x, {1, 0}, loc);
}

template <class T>
Var<T> permute(const Var<T>& x, const int* perm, std::size_t n, SourceLoc loc) {
  check_handle("permute", "x", x);
  const Shape s = x.shape();
  const long long r = static_cast<long long>(s.rank());
  auto perm_str = [&] {
    std::string p = "(";
    for (std::size_t i = 0; i < n; ++i) p += (i ? ", " : "") + std::to_string(perm[i]);
    return p + ")";
  };
  if (n != s.rank())
    throw ShapeError("permute: the permutation " + perm_str() + " has " + std::to_string(n) +
                     " axes but x " + s.str() + " has rank " + std::to_string(s.rank()));
  std::array<std::uint8_t, Shape::kMaxRank> p{};
  bool seen[Shape::kMaxRank] = {};
  for (std::size_t d = 0; d < n; ++d) {
    const long long a = perm[d];
    if (a < -r || a >= r || seen[a < 0 ? a + r : a])
      throw ShapeError("permute: the permutation " + perm_str() + " of x " + s.str() +
                       (a < -r || a >= r ? " has an axis out of range at position "
                                         : " repeats an axis at position ") +
                       std::to_string(d) + "; it must hold each of 0.." + std::to_string(r - 1) +
                       " once");
    p[d] = static_cast<std::uint8_t>(a < 0 ? a + r : a);
    seen[p[d]] = true;
  }
  return permute_impl("permute", x, p, loc);
}

template <class T>
Var<T> broadcast_to(const Var<T>& x, const Shape& shape, SourceLoc loc) {
  check_handle("broadcast_to", "x", x);
  const Shape s = x.shape();
  bool ok = s.rank() <= shape.rank();
  for (std::size_t i = 0; ok && i < s.rank(); ++i) {
    const std::size_t d = s[s.rank() - 1 - i], t = shape[shape.rank() - 1 - i];
    ok = d == t || d == 1;
  }
  if (!ok)
    throw ShapeError("broadcast_to: x " + s.str() + " cannot be broadcast to " + shape.str());
  auto op = x.tape().begin_op("broadcast_to", &x, 1, shape, loc);
  // Run now and again by replay.
  auto forward = [map = detail::make_broadcast_map(shape, s, shape)](const T* __restrict xv,
                                                                     T* __restrict y) {
    detail::for_each_broadcast(map,
                               [&](std::size_t o, std::size_t i, std::size_t) { y[o] = xv[i]; });
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const T* __restrict g = c.out_grad_data();
        T* __restrict gx = c.grad_data(0);
        detail::for_each_broadcast(
            detail::make_broadcast_map(c.out_shape(), c.input_shape(0), c.out_shape()),
            [&](std::size_t o, std::size_t i, std::size_t) { gx[i] += g[o]; });
      });
}

template <class T>
Var<T> concat(const Var<T>* xs, std::size_t n, int axis, SourceLoc loc) {
  check_list("concat", xs, n);
  const Shape s0 = xs[0].shape();
  if (s0.rank() == 0)
    throw ShapeError("concat: xs[0] is a scalar ([]); concat joins along an existing axis");
  const std::size_t ax = detail::normalize_axis("concat", "xs[0]", s0, axis);
  std::size_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Shape si = xs[i].shape();
    bool ok = si.rank() == s0.rank();
    for (std::size_t d = 0; ok && d < si.rank(); ++d) ok = d == ax || si[d] == s0[d];
    if (!ok)
      throw ShapeError("concat: xs[0] is " + s0.str() + " but xs[" + std::to_string(i) + "] is " +
                       si.str() + ": along axis " + std::to_string(axis) +
                       " all must have the same rank and the same other dimensions");
    total += si[ax];
  }
  return join_blocks("concat", xs, n, s0.with_dim(ax, total), detail::split_at(s0, ax).outer, loc);
}

template <class T>
Var<T> stack(const Var<T>* xs, std::size_t n, int axis, SourceLoc loc) {
  check_list("stack", xs, n);
  const Shape s0 = xs[0].shape();
  const std::size_t ax = detail::normalize_axis("stack", "xs[0]", s0, axis, 1);
  for (std::size_t i = 1; i < n; ++i)
    if (xs[i].shape() != s0)
      throw ShapeError("stack: xs[0] is " + s0.str() + " but xs[" + std::to_string(i) + "] is " +
                       xs[i].shape().str() + "; stack needs tensors of one shape");
  if (s0.rank() == Shape::kMaxRank)
    throw ShapeError("stack: xs[0] " + s0.str() + " already has the maximum rank " +
                     std::to_string(Shape::kMaxRank));
  Shape out;
  std::size_t outer = 1;
  for (std::size_t d = 0; d <= s0.rank(); ++d) {
    if (d == ax) out.push_back(n);
    if (d < s0.rank()) out.push_back(s0[d]);
    if (d < ax) outer *= s0[d];
  }
  return join_blocks("stack", xs, n, out, outer, loc);
}

template <class T>
Var<T> slice(const Var<T>& x, int axis, long long start, long long stop, SourceLoc loc) {
  check_handle("slice", "x", x);
  const Shape s = x.shape();
  if (s.rank() == 0) throw ShapeError("slice: x is a scalar ([]); slice cuts along an axis");
  const std::size_t ax = detail::normalize_axis("slice", "x", s, axis);
  const detail::AxisSplit a = detail::split_at(s, ax);
  const std::size_t b = clamp_bound(start, a.n), e = std::max(b, clamp_bound(stop, a.n));
  const Shape out = s.with_dim(ax, e - b);
  const SliceBackward back{a.outer, a.n, a.inner, b};
  if (a.outer == 1) {  // the slice's rows are contiguous: a view
    auto op = x.tape().begin_view_op("slice", x, out, b * a.inner, loc);
    return op.finish(back);
  }
  auto op = x.tape().begin_op("slice", &x, 1, out, loc);
  // A copy (rows o of x are apart): run now and again by replay.
  auto forward = [back, run = (e - b) * a.inner](const T* xv, T* y) {
    if (run > 0)
      for (std::size_t o = 0; o < back.outer; ++o)
        std::memcpy(y + o * run, xv + (o * back.n + back.start) * back.inner, run * sizeof(T));
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); }, back);
}

// The length of each of `parts` equal parts along axis ax of x; throws if there are none.
template <class T>
std::size_t split_length(const Var<T>& x, std::size_t parts, int axis) {
  check_handle("split", "x", x);
  const Shape s = x.shape();
  if (s.rank() == 0) throw ShapeError("split: x is a scalar ([]); split cuts along an axis");
  const std::size_t ax = detail::normalize_axis("split", "x", s, axis);
  if (parts == 0 || s[ax] % parts != 0)
    throw ShapeError("split: axis " + std::to_string(axis) + " of x " + s.str() + " has length " +
                     std::to_string(s[ax]) + ", which " + std::to_string(parts) +
                     " parts cannot divide equally");
  return s[ax] / parts;
}

template <class T>
void split(const Var<T>& x, std::size_t parts, int axis, Var<T>* out, SourceLoc loc) {
  const long long w = static_cast<long long>(split_length(x, parts, axis));
  for (std::size_t i = 0; i < parts; ++i)
    out[i] = slice(x, axis, static_cast<long long>(i) * w, static_cast<long long>(i + 1) * w, loc);
}

template <class T>
std::vector<Var<T>> split(const Var<T>& x, std::size_t parts, int axis, SourceLoc loc) {
  split_length(x, parts, axis);  // before the vector: parts may be absurd
  std::vector<Var<T>> out(parts);
  split(x, parts, axis, out.data(), loc);
  return out;
}

template <class T>
std::vector<Var<T>> split(const Var<T>& x, const std::vector<std::size_t>& sizes, int axis,
                          SourceLoc loc) {
  check_handle("split", "x", x);
  const Shape s = x.shape();
  if (s.rank() == 0) throw ShapeError("split: x is a scalar ([]); split cuts along an axis");
  const std::size_t ax = detail::normalize_axis("split", "x", s, axis);
  std::size_t total = 0;
  std::string list;
  for (std::size_t k : sizes) {
    total += k;
    list += (list.empty() ? "" : ", ") + std::to_string(k);
  }
  if (total != s[ax])
    throw ShapeError("split: the sizes (" + list + ") add up to " + std::to_string(total) +
                     " but axis " + std::to_string(axis) + " of x " + s.str() + " has length " +
                     std::to_string(s[ax]));
  std::vector<Var<T>> out;
  out.reserve(sizes.size());
  long long at = 0;
  for (std::size_t k : sizes) {
    out.push_back(slice(x, axis, at, at + static_cast<long long>(k), loc));
    at += static_cast<long long>(k);
  }
  return out;
}

#define WENGERT_SHAPE_OPS(T)                                                                 \
  template Var<T> reshape<T>(const Var<T>&, const Shape&, SourceLoc);                        \
  template Var<T> flatten<T>(const Var<T>&, int, int, SourceLoc);                            \
  template Var<T> squeeze<T>(const Var<T>&, int, SourceLoc);                                 \
  template Var<T> squeeze<T>(const Var<T>&, SourceLoc);                                      \
  template Var<T> unsqueeze<T>(const Var<T>&, int, SourceLoc);                               \
  template Var<T> transpose<T>(const Var<T>&, SourceLoc);                                    \
  template Var<T> permute<T>(const Var<T>&, const int*, std::size_t, SourceLoc);             \
  template Var<T> broadcast_to<T>(const Var<T>&, const Shape&, SourceLoc);                   \
  template Var<T> concat<T>(const Var<T>*, std::size_t, int, SourceLoc);                     \
  template Var<T> stack<T>(const Var<T>*, std::size_t, int, SourceLoc);                      \
  template Var<T> slice<T>(const Var<T>&, int, long long, long long, SourceLoc);             \
  template void split<T>(const Var<T>&, std::size_t, int, Var<T>*, SourceLoc);               \
  template std::vector<Var<T>> split<T>(const Var<T>&, std::size_t, int, SourceLoc);         \
  template std::vector<Var<T>> split<T>(const Var<T>&, const std::vector<std::size_t>&, int, \
                                        SourceLoc);

WENGERT_SHAPE_OPS(float)
WENGERT_SHAPE_OPS(double)
#undef WENGERT_SHAPE_OPS

}  // namespace wengert
