// wengert — softmax and log_softmax (see softmax.hpp).
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/softmax.hpp>

#include <cmath>
#include <string>

#include "detail/axes.hpp"
#include "detail/record.hpp"

namespace wengert {

namespace {

// Row length c and row count of x [..., c]; throws for a scalar.
template <class T>
std::size_t check_rows(const char* name, const Var<T>& x) {
  detail::check_handle(name, "x", x);
  const Shape& s = x.shape();
  if (s.rank() == 0)
    throw ShapeError(std::string(name) + ": x is " + s.str() + " (a scalar): " + name +
                     " normalises along the last axis, so x needs at least one");
  return s.back();
}

}  // namespace

template <class T>
Var<T> softmax(const Var<T>& x, SourceLoc loc) {
  const std::size_t c = check_rows("softmax", x);
  auto op = x.tape().begin_op("softmax", {x}, x.shape(), loc);
  // Run now and again by replay.
  auto forward = [c](const T* in, T* y, std::size_t size) {
    const std::size_t rows = c ? size / c : 0;
    for (std::size_t r = 0; r < rows; ++r, in += c, y += c) {
      // y = exp(x − M) / Σ exp(x − M)
      const T inv = T(1) / detail::exp_below_max(in, y, c, detail::row_max(in, c));
      for (std::size_t j = 0; j < c; ++j) y[j] *= inv;
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& ctx) {
        forward(ctx.input_data(0), ctx.out_data(), ctx.out_size());
      },
      [](const BackwardContext<T>& ctx) {
        if (!ctx.needs_grad(0)) return;
        const std::size_t c = ctx.out_shape().back();
        const std::size_t rows = c ? ctx.out_size() / c : 0;
        const T* y = ctx.out_data();
        const T* g = ctx.out_grad_data();
        T* dx = ctx.grad_data(0);
        for (std::size_t r = 0; r < rows; ++r, y += c, g += c, dx += c) {
          // dx += y ∘ (G − ⟨G, y⟩)
          const T gy = detail::dot(g, y, c);
          const T* __restrict yr = y;
          const T* __restrict gr = g;
          T* __restrict dxr = dx;
          for (std::size_t j = 0; j < c; ++j) dxr[j] += yr[j] * (gr[j] - gy);
        }
      });
}

template <class T>
Var<T> log_softmax(const Var<T>& x, SourceLoc loc) {
  const std::size_t c = check_rows("log_softmax", x);
  auto op = x.tape().begin_op("log_softmax", {x}, x.shape(), loc);
  // Run now and again by replay.
  auto forward = [c](const T* in, T* y, std::size_t size) {
    const std::size_t rows = c ? size / c : 0;
    for (std::size_t r = 0; r < rows; ++r, in += c, y += c) {
      // y = (x − M) − log Σ exp(x − M)
      const detail::RowLse<T> s = detail::row_lse(in, c);
      const T* __restrict xr = in;
      T* __restrict yr = y;
      for (std::size_t j = 0; j < c; ++j) yr[j] = (xr[j] - s.max) - s.log_sum;
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& ctx) {
        forward(ctx.input_data(0), ctx.out_data(), ctx.out_size());
      },
      [](const BackwardContext<T>& ctx) {
        if (!ctx.needs_grad(0)) return;
        const std::size_t c = ctx.out_shape().back();
        const std::size_t rows = c ? ctx.out_size() / c : 0;
        const T* y = ctx.out_data();
        const T* g = ctx.out_grad_data();
        T* dx = ctx.grad_data(0);
        for (std::size_t r = 0; r < rows; ++r, y += c, g += c, dx += c) {
          // dx += G − exp(y) · Σ G; y = (x − M) − log_sum is ≤ 0 (or NaN)
          const detail::Batch<T> gsum(detail::sum(g, c));
          detail::for_batches<T>(c, [&](auto at) {
            const auto d = at.load(dx, T(0)) + at.load(g, T(0)) -
                           detail::safe_exp_nonpos(at.load(y, T(0))) * gsum;
            at.store(d, dx);
          });
        }
      });
}

// ---- along any axis ----------------------------------------------------------------------------
//
// x as [outer, n, inner] around the axis: slice (o, i) is x[(o·n + k)·inner + i], k < n. The last
// axis (inner = 1) is the row forms above; otherwise each pass runs over whole rows of `inner`
// contiguous elements (vectorised along i), with one row of per-slice statistics in tape memory,
// kept by the closure and reused by backward.
namespace {

template <bool Log, class T>
Var<T> softmax_axis(const char* name, const Var<T>& x, int axis, SourceLoc loc) {
  detail::check_handle(name, "x", x);
  const Shape s = x.shape();
  if (s.rank() == 0)
    throw ShapeError(std::string(name) + ": x is [] (a scalar): " + name +
                     " normalises along an axis, so x needs at least one");
  const std::size_t ax = detail::normalize_axis(name, "x", s, axis);
  if (ax + 1 == s.rank()) return Log ? log_softmax(x, loc) : softmax(x, loc);
  const detail::AxisSplit a = detail::split_at(s, ax);
  auto op = x.tape().begin_op(name, &x, 1, s, loc);
  T* row = op.scratch(a.inner);  // per slice of one o: the max, then Σ exp (or its log)
  // Run now and again by replay (`row` is scratch for both passes).
  auto forward = [a, row](const T* xv, T* y) {
    const std::size_t n = a.n, inner = a.inner;
    for (std::size_t o = 0; o < a.outer; ++o) {
      const T* xo = xv + o * n * inner;
      T* yo = y + o * n * inner;
      if (n == 0) continue;
      for (std::size_t i = 0; i < inner; ++i) row[i] = xo[i];
      for (std::size_t k = 1; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i) row[i] = std::max(row[i], xo[k * inner + i]);
      // y = x − M (M = 0 for a slice whose max is ±inf or NaN, which then propagates), then the
      // sums Σ exp(x − M) into row, then y = exp(y)/Σ or y − log Σ.
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i) {
          const T m = std::isfinite(row[i]) ? row[i] : T(0);
          yo[k * inner + i] = xo[k * inner + i] - m;
        }
      for (std::size_t i = 0; i < inner; ++i) row[i] = T(0);
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i) row[i] += std::exp(yo[k * inner + i]);
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i) {
          T& v = yo[k * inner + i];
          v = Log ? v - std::log(row[i]) : std::exp(v) / row[i];
        }
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [a, row](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const std::size_t n = a.n, inner = a.inner;
        const T* y = c.out_data();
        const T* g = c.out_grad_data();
        T* dx = c.grad_data(0);
        for (std::size_t o = 0; o < a.outer; ++o) {
          const std::size_t base = o * n * inner;
          // softmax: Σₖ Gₖ yₖ; log_softmax: Σₖ Gₖ, per slice
          for (std::size_t i = 0; i < inner; ++i) row[i] = T(0);
          for (std::size_t k = 0; k < n; ++k)
            for (std::size_t i = 0; i < inner; ++i) {
              const std::size_t e = base + k * inner + i;
              row[i] += Log ? g[e] : g[e] * y[e];
            }
          for (std::size_t k = 0; k < n; ++k)
            for (std::size_t i = 0; i < inner; ++i) {
              const std::size_t e = base + k * inner + i;
              dx[e] += Log ? g[e] - std::exp(y[e]) * row[i] : y[e] * (g[e] - row[i]);
            }
        }
      });
}

}  // namespace

template <class T>
Var<T> softmax(const Var<T>& x, int axis, SourceLoc loc) {
  return softmax_axis<false>("softmax", x, axis, loc);
}

template <class T>
Var<T> log_softmax(const Var<T>& x, int axis, SourceLoc loc) {
  return softmax_axis<true>("log_softmax", x, axis, loc);
}

template Var<float> softmax<float>(const Var<float>&, int, SourceLoc);
template Var<double> softmax<double>(const Var<double>&, int, SourceLoc);
template Var<float> log_softmax<float>(const Var<float>&, int, SourceLoc);
template Var<double> log_softmax<double>(const Var<double>&, int, SourceLoc);

template Var<float> softmax<float>(const Var<float>&, SourceLoc);
template Var<double> softmax<double>(const Var<double>&, SourceLoc);
template Var<float> log_softmax<float>(const Var<float>&, SourceLoc);
template Var<double> log_softmax<double>(const Var<double>&, SourceLoc);

}  // namespace wengert
