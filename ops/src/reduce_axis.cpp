// wengert — max, min, argmax, argmin, logsumexp, var, norm (see reduce_axis.hpp).
//
// Every reduction views x as [outer, n, inner] around the axis (the whole-tensor forms as
// [1, size, 1]) and the output as [outer, inner]: slice (o, i) is the n elements
// x[(o·n + k)·inner + i], k < n. With inner > 1 the loops run over whole rows of `inner`
// contiguous elements, which gcc vectorises along i; with inner = 1 each slice is contiguous.
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/reduce_axis.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "detail/axes.hpp"
#include "detail/record.hpp"

namespace wengert {
namespace {

using detail::AxisSplit;
using detail::check_handle;

struct Reduction {
  AxisSplit a;
  Shape out;
};

// The axis form's view and output shape; the whole-tensor form when `all`.
template <class T>
Reduction plan(const char* name, const Var<T>& x, bool all, int axis, bool keepdims) {
  check_handle(name, "x", x);
  const Shape s = x.shape();
  if (all) return {AxisSplit{1, s.size(), 1}, Shape{}};
  const std::size_t ax = detail::normalize_axis(name, "x", s, axis);
  return {detail::split_at(s, ax), detail::drop_axis(s, ax, keepdims)};
}

template <class T>
[[noreturn]] void throw_empty(const char* name, const Var<T>& x, bool all, int axis,
                              const char* what) {
  if (all)
    throw ValueError(std::string(name) + ": x is " + x.shape().str() + ", which has no elements; " +
                     what + " is undefined");
  throw ValueError(std::string(name) + ": axis " + std::to_string(axis) + " of x " +
                   x.shape().str() + " has length 0; " + what + " along it is undefined");
}

// Whether v replaces the running extremum `best`: strictly better, or the first NaN.
template <bool Max, class T>
inline bool better(T v, T best) {
  return (Max ? v > best : v < best) || (v != v && best == best);
}

// The extremum of a contiguous row x[0..n), n ≥ 1, and its first index, by the rule of
// better(): one vectorised pass for the value (and whether there is a NaN), then a scan that
// stops at its first occurrence; the branchy one-pass scan only when there is a NaN.
template <bool Max, class T, class Index>
void row_extremum(const T* x, std::size_t n, T* best, Index* arg) {
  using B = detail::Batch<T>;
  B acc(x[0]);
  xsimd::batch_bool<T> nan(false);
  detail::for_batches<T>(n, [&](auto at) {
    const B v = at.load(x, x[0]);  // fill lanes repeat x[0]: neutral for max, min, NaN
    nan = nan | xsimd::isnan(v);   // (not v != v: an ordered compare, false for NaN)
    acc = Max ? xsimd::max(acc, v) : xsimd::min(acc, v);
  });
  if (xsimd::any(nan)) {
    std::size_t k = 0;
    while (k + 1 < n && x[k] == x[k]) ++k;  // the first NaN is the extremum
    *best = x[k];
    if (arg) *arg = Index(k);
    return;
  }
  alignas(64) T lanes[B::size];
  acc.store_aligned(lanes);
  T m = lanes[0];
  for (std::size_t l = 1; l < B::size; ++l) m = better<Max>(lanes[l], m) ? lanes[l] : m;
  *best = m;
  if (arg) {
    std::size_t k = 0;
    while (k + 1 < n && x[k] != m) ++k;  // (bounded: m is one of x)
    *arg = Index(k);
    *best = x[k];  // (of ±0, the one that comes first)
  }
}

// best[o·inner + i] and arg[o·inner + i] (arg may be null) for every slice: the first extremal
// element, by the rule of better().
template <bool Max, class T, class Index>
void extremum(const T* x, const AxisSplit& a, T* best, Index* arg) {
  const std::size_t n = a.n, inner = a.inner;
  if (inner == 1 && n > 0) {  // contiguous slices
    for (std::size_t o = 0; o < a.outer; ++o)
      row_extremum<Max>(x + o * n, n, best + o, arg ? arg + o : nullptr);
    return;
  }
  for (std::size_t o = 0; o < a.outer; ++o) {
    const T* xo = x + o * n * inner;
    T* b = best + o * inner;
    for (std::size_t i = 0; i < inner; ++i) b[i] = xo[i];
    if (arg)
      for (std::size_t i = 0; i < inner; ++i) arg[o * inner + i] = 0;
    for (std::size_t k = 1; k < n; ++k) {
      const T* row = xo + k * inner;
      if (arg) {
        Index* ar = arg + o * inner;
        for (std::size_t i = 0; i < inner; ++i)
          if (better<Max>(row[i], b[i])) {
            b[i] = row[i];
            ar[i] = Index(k);
          }
      } else {
        for (std::size_t i = 0; i < inner; ++i) b[i] = better<Max>(row[i], b[i]) ? row[i] : b[i];
      }
    }
  }
}

template <bool Max, class T>
Var<T> extremum_op(const char* name, const Var<T>& x, bool all, int axis, bool keepdims,
                   SourceLoc loc) {
  const Reduction r = plan(name, x, all, axis, keepdims);
  if (r.a.n == 0 && r.a.outer * r.a.inner > 0)
    throw_empty(name, x, all, axis, Max ? "the max" : "the min");
  auto op = x.tape().begin_op(name, &x, 1, r.out, loc);
  std::size_t* arg =
      op.requires_grad() ? op.template scratch_as<std::size_t>(op.out_size()) : nullptr;
  // Run now and again by replay, which recomputes the arg-extremum scratch too.
  auto forward = [arg, a = r.a](const T* x, T* y) { extremum<Max>(x, a, y, arg); };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [arg, a = r.a](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const T* g = c.out_grad_data();
        T* gx = c.grad_data(0);
        // dx[o, arg, i] += G[o, i]: one element per slice.
        for (std::size_t o = 0; o < a.outer; ++o)
          for (std::size_t i = 0; i < a.inner; ++i) {
            const std::size_t j = o * a.inner + i;
            gx[(o * a.n + arg[j]) * a.inner + i] += g[j];
          }
      });
}

template <bool Max, class T>
xt::xarray<std::int64_t> arg_extremum(const char* name, const Var<T>& x, bool all, int axis,
                                      bool keepdims) {
  const Reduction r = plan(name, x, all, axis, keepdims);
  if (r.a.n == 0 && r.a.outer * r.a.inner > 0) throw_empty(name, x, all, axis, "the index");
  xt::xarray<std::int64_t> out =
      xt::xarray<std::int64_t>::from_shape(std::vector<std::size_t>(r.out.begin(), r.out.end()));
  std::vector<T> best(out.size());
  extremum<Max>(x.data(), r.a, best.data(), out.data());
  return out;
}

}  // namespace

template <class T>
Var<T> max(const Var<T>& x, SourceLoc loc) {
  return extremum_op<true>("max", x, true, 0, false, loc);
}
template <class T>
Var<T> max(const Var<T>& x, int axis, bool keepdims, SourceLoc loc) {
  return extremum_op<true>("max", x, false, axis, keepdims, loc);
}
template <class T>
Var<T> min(const Var<T>& x, SourceLoc loc) {
  return extremum_op<false>("min", x, true, 0, false, loc);
}
template <class T>
Var<T> min(const Var<T>& x, int axis, bool keepdims, SourceLoc loc) {
  return extremum_op<false>("min", x, false, axis, keepdims, loc);
}

template <class T>
xt::xarray<std::int64_t> argmax(const Var<T>& x, int axis, bool keepdims) {
  return arg_extremum<true>("argmax", x, false, axis, keepdims);
}
template <class T>
std::int64_t argmax(const Var<T>& x) {
  return arg_extremum<true>("argmax", x, true, 0, false)();
}
template <class T>
xt::xarray<std::int64_t> argmin(const Var<T>& x, int axis, bool keepdims) {
  return arg_extremum<false>("argmin", x, false, axis, keepdims);
}
template <class T>
std::int64_t argmin(const Var<T>& x) {
  return arg_extremum<false>("argmin", x, true, 0, false)();
}

template <class T>
Var<T> logsumexp(const Var<T>& x, int axis, bool keepdims, SourceLoc loc) {
  const Reduction r = plan("logsumexp", x, false, axis, keepdims);
  auto op = x.tape().begin_op("logsumexp", &x, 1, r.out, loc);
  const AxisSplit a = r.a;
  T* m = a.inner == 1 ? nullptr : op.scratch(a.inner);  // one row of maxima, reused for every o
  // Run now and again by replay.
  auto forward = [a, m](const T* xv, T* y) {
    constexpr T kInf = std::numeric_limits<T>::infinity();
    if (a.inner == 1) {
      for (std::size_t o = 0; o < a.outer; ++o) {
        if (a.n == 0) {
          y[o] = -kInf;
          continue;
        }
        T m = detail::row_max(xv + o * a.n, a.n);
        if (!std::isfinite(m)) m = m == m ? m : T(0);  // ±inf: keep; NaN: let it propagate
        y[o] = std::isinf(m) ? m : m + std::log(detail::sum_exp(xv + o * a.n, a.n, m));
      }
    } else {
      // Row by row: first the maxima, then Σ exp(x − M) into y, then M + log.
      for (std::size_t o = 0; o < a.outer; ++o) {
        const T* xo = xv + o * a.n * a.inner;
        T* yo = y + o * a.inner;
        for (std::size_t i = 0; i < a.inner; ++i) m[i] = -kInf;
        for (std::size_t k = 0; k < a.n; ++k)
          for (std::size_t i = 0; i < a.inner; ++i) m[i] = std::max(m[i], xo[k * a.inner + i]);
        for (std::size_t i = 0; i < a.inner; ++i) yo[i] = T(0);
        for (std::size_t k = 0; k < a.n; ++k)
          for (std::size_t i = 0; i < a.inner; ++i)
            yo[i] += std::isinf(m[i]) ? T(0) : std::exp(xo[k * a.inner + i] - m[i]);
        for (std::size_t i = 0; i < a.inner; ++i)
          yo[i] = std::isinf(m[i]) ? m[i] : m[i] + std::log(yo[i]);
        // a NaN in the slice: max() skipped it; put it back
        for (std::size_t k = 0; k < a.n; ++k)
          for (std::size_t i = 0; i < a.inner; ++i)
            if (std::isnan(xo[k * a.inner + i])) yo[i] = xo[k * a.inner + i];
      }
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [a](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const T* g = c.out_grad_data();
        const T* y = c.out_data();
        const T* xv = c.input_data(0);
        T* gx = c.grad_data(0);
        // dx[o, k, i] += G[o, i] · exp(x[o, k, i] − y[o, i]); 0 where y = −inf (no weight at all).
        for (std::size_t o = 0; o < a.outer; ++o)
          for (std::size_t k = 0; k < a.n; ++k) {
            const std::size_t base = (o * a.n + k) * a.inner;
            for (std::size_t i = 0; i < a.inner; ++i) {
              const T yi = y[o * a.inner + i];
              if (yi == -std::numeric_limits<T>::infinity()) continue;
              gx[base + i] += g[o * a.inner + i] * std::exp(xv[base + i] - yi);
            }
          }
      });
}

template <class T>
Var<T> var(const Var<T>& x, int axis, bool keepdims, int ddof, SourceLoc loc) {
  const Reduction r = plan("var", x, false, axis, keepdims);
  const AxisSplit a = r.a;
  if (ddof < 0)
    throw ValueError("var: ddof is " + std::to_string(ddof) + "; it must be 0 or more (x is " +
                     x.shape().str() + ")");
  if (a.n <= std::size_t(ddof) && a.outer * a.inner > 0)
    throw ValueError("var: axis " + std::to_string(axis) + " of x " + x.shape().str() +
                     " has length " + std::to_string(a.n) + ", not more than ddof = " +
                     std::to_string(ddof) + ": the variance is undefined");
  auto op = x.tape().begin_op("var", &x, 1, r.out, loc);
  const std::size_t slices = a.outer * a.inner;
  // The means, kept for backward (in scratch when it needs them, else in a reused row).
  const bool keep = op.requires_grad();
  T* mean = op.scratch(keep ? slices : a.inner);
  const T inv_n = T(1) / T(a.n), inv_d = T(1) / T(a.n - std::size_t(ddof));
  // Run now and again by replay.
  auto forward = [a, mean, keep, inv_n, inv_d](const T* xv, T* y) {
    for (std::size_t o = 0; o < a.outer; ++o) {
      const T* xo = xv + o * a.n * a.inner;
      T* mo = mean + (keep ? o * a.inner : 0);
      T* yo = y + o * a.inner;
      for (std::size_t i = 0; i < a.inner; ++i) mo[i] = T(0), yo[i] = T(0);
      for (std::size_t k = 0; k < a.n; ++k)
        for (std::size_t i = 0; i < a.inner; ++i) mo[i] += xo[k * a.inner + i];
      for (std::size_t i = 0; i < a.inner; ++i) mo[i] *= inv_n;
      for (std::size_t k = 0; k < a.n; ++k)
        for (std::size_t i = 0; i < a.inner; ++i) {
          const T d = xo[k * a.inner + i] - mo[i];
          yo[i] += d * d;
        }
      for (std::size_t i = 0; i < a.inner; ++i) yo[i] *= inv_d;
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [a, mean, inv_d](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const T* g = c.out_grad_data();
        const T* xv = c.input_data(0);
        T* gx = c.grad_data(0);
        // dx[o, k, i] += G[o, i] · 2 (x[o, k, i] − μ[o, i]) / (n − ddof)
        for (std::size_t o = 0; o < a.outer; ++o)
          for (std::size_t k = 0; k < a.n; ++k) {
            const std::size_t base = (o * a.n + k) * a.inner;
            const T* __restrict mo = mean + o * a.inner;
            const T* __restrict go = g + o * a.inner;
            for (std::size_t i = 0; i < a.inner; ++i)
              gx[base + i] += go[i] * T(2) * inv_d * (xv[base + i] - mo[i]);
          }
      });
}

namespace {

template <class T>
Var<T> norm_op(const Var<T>& x, bool all, int axis, bool keepdims, SourceLoc loc) {
  const Reduction r = plan("norm", x, all, axis, keepdims);
  auto op = x.tape().begin_op("norm", &x, 1, r.out, loc);
  const AxisSplit a = r.a;
  T* m = op.scratch(a.inner);  // max |x| of each slice of one o: the scale
  // Run now and again by replay.
  auto forward = [a, m](const T* xv, T* y) {
    for (std::size_t o = 0; o < a.outer; ++o) {
      const T* xo = xv + o * a.n * a.inner;
      T* yo = y + o * a.inner;
      for (std::size_t i = 0; i < a.inner; ++i) m[i] = T(0), yo[i] = T(0);
      for (std::size_t k = 0; k < a.n; ++k)
        for (std::size_t i = 0; i < a.inner; ++i)
          m[i] = std::max(m[i], std::abs(xo[k * a.inner + i]));
      for (std::size_t k = 0; k < a.n; ++k)
        for (std::size_t i = 0; i < a.inner; ++i) {
          const T s = m[i] > T(0) && std::isfinite(m[i]) ? xo[k * a.inner + i] / m[i] : T(0);
          yo[i] += s * s;
        }
      for (std::size_t i = 0; i < a.inner; ++i)
        yo[i] = std::isfinite(m[i]) ? m[i] * std::sqrt(yo[i]) : m[i];
      for (std::size_t k = 0; k < a.n; ++k)  // NaN propagates (std::max dropped it)
        for (std::size_t i = 0; i < a.inner; ++i)
          if (std::isnan(xo[k * a.inner + i])) yo[i] = xo[k * a.inner + i];
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [a](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const T* g = c.out_grad_data();
        const T* y = c.out_data();
        const T* xv = c.input_data(0);
        T* gx = c.grad_data(0);
        // dx[o, k, i] += G[o, i] · x[o, k, i] / y[o, i]; 0 where y = 0 (the subgradient at the
        // kink).
        for (std::size_t o = 0; o < a.outer; ++o)
          for (std::size_t k = 0; k < a.n; ++k) {
            const std::size_t base = (o * a.n + k) * a.inner;
            for (std::size_t i = 0; i < a.inner; ++i) {
              const T yi = y[o * a.inner + i];
              if (yi != T(0)) gx[base + i] += g[o * a.inner + i] * xv[base + i] / yi;
            }
          }
      });
}

}  // namespace

template <class T>
Var<T> norm(const Var<T>& x, int axis, bool keepdims, SourceLoc loc) {
  return norm_op(x, false, axis, keepdims, loc);
}
template <class T>
Var<T> norm(const Var<T>& x, SourceLoc loc) {
  return norm_op(x, true, 0, false, loc);
}

#define WENGERT_REDUCE_AXIS(T)                                           \
  template Var<T> max<T>(const Var<T>&, SourceLoc);                      \
  template Var<T> max<T>(const Var<T>&, int, bool, SourceLoc);           \
  template Var<T> min<T>(const Var<T>&, SourceLoc);                      \
  template Var<T> min<T>(const Var<T>&, int, bool, SourceLoc);           \
  template xt::xarray<std::int64_t> argmax<T>(const Var<T>&, int, bool); \
  template std::int64_t argmax<T>(const Var<T>&);                        \
  template xt::xarray<std::int64_t> argmin<T>(const Var<T>&, int, bool); \
  template std::int64_t argmin<T>(const Var<T>&);                        \
  template Var<T> logsumexp<T>(const Var<T>&, int, bool, SourceLoc);     \
  template Var<T> var<T>(const Var<T>&, int, bool, int, SourceLoc);      \
  template Var<T> norm<T>(const Var<T>&, int, bool, SourceLoc);          \
  template Var<T> norm<T>(const Var<T>&, SourceLoc);

WENGERT_REDUCE_AXIS(float)
WENGERT_REDUCE_AXIS(double)
#undef WENGERT_REDUCE_AXIS

}  // namespace wengert
