// wengert — max_pool2d, avg_pool2d, global_avg_pool (see pool.hpp).
#include <wengert/ops/pool.hpp>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>
#include <string>

#include "detail/record.hpp"
#include "detail/window.hpp"

namespace wengert {

namespace {

using Index = std::int64_t;

// Sizes of one pooling: planes N·C of [H,W] to planes of [Ho,Wo]. Trivially destructible.
struct Window {
  std::size_t planes, H, W, k, s, p, Ho, Wo;
  // Rows [lo, hi) of the input that window row o covers (clipped to the image).
  std::pair<std::size_t, std::size_t> rows(std::size_t o) const { return clip(o, H); }
  std::pair<std::size_t, std::size_t> cols(std::size_t o) const { return clip(o, W); }

 private:
  std::pair<std::size_t, std::size_t> clip(std::size_t o, std::size_t n) const {
    const Index start = Index(o * s) - Index(p);
    const Index lo = std::max<Index>(start, 0), hi = std::min<Index>(start + Index(k), Index(n));
    return {std::size_t(lo), std::size_t(std::max(lo, hi))};
  }
};

// Checks x and the options; the window geometry and the output shape [N,C,Ho,Wo].
template <class T>
Window check_pool(const char* name, const Var<T>& x, Pool2dOptions& o) {
  detail::check_handle(name, "x", x);
  const Shape& sx = x.shape();
  if (sx.rank() != 4)
    throw ShapeError(std::string(name) + ": x is " + sx.str() + ": " + name +
                     " takes images x [N,C,H,W] (NCHW)");
  if (o.stride == 0) o.stride = o.kernel;
  auto what = [&] {  // built for a message only
    return "x is " + sx.str() + " with kernel " + std::to_string(o.kernel) + ", stride " +
           std::to_string(o.stride) + ", padding " + std::to_string(o.padding);
  };
  if (o.kernel == 0) throw ValueError(std::string(name) + ": " + what() + ": the kernel is 0");
  if (o.kernel > INT_MAX || o.stride > INT_MAX)
    throw ValueError(std::string(name) + ": " + what() + ": kernel and stride must be at most " +
                     std::to_string(INT_MAX));
  if (o.padding > o.kernel / 2)
    throw ValueError(std::string(name) + ": " + what() + ": padding must be at most kernel / 2 = " +
                     std::to_string(o.kernel / 2) + " (so that every window holds a pixel)");
  std::size_t plane = 0;
  if (__builtin_mul_overflow(sx[2], sx[3], &plane) ||
      plane > std::numeric_limits<std::uint32_t>::max())
    throw ShapeError(std::string(name) + ": " + what() + ": a plane has more than 2^32 pixels");
  if (plane == 0)
    throw ShapeError(std::string(name) + ": " + what() +
                     ": its planes are empty, so no window would hold a pixel");
  Window w{sx[0] * sx[1], sx[2], sx[3], o.kernel, o.stride, o.padding, 0, 0};
  w.Ho = detail::window_count(name, what, "height", w.H, w.p, w.k, w.s);
  w.Wo = detail::window_count(name, what, "width", w.W, w.p, w.k, w.s);
  return w;
}

Shape pooled_shape(const Shape& sx, const Window& w) { return Shape{sx[0], sx[1], w.Ho, w.Wo}; }

}  // namespace

template <class T>
Var<T> max_pool2d(const Var<T>& x, Pool2dOptions o, SourceLoc loc) {
  constexpr const char* name = "max_pool2d";
  const Window w = check_pool(name, x, o);
  auto op = x.tape().begin_op(name, {x}, pooled_shape(x.shape(), w), loc);
  const std::size_t outs = op.out_size(), plane = w.H * w.W, oplane = w.Ho * w.Wo;
  // The winner's index in its plane, per output element: uint32s in T-sized scratch.
  std::uint32_t* arg = nullptr;
  if (op.requires_grad())
    arg = reinterpret_cast<std::uint32_t*>(
        op.scratch((outs * sizeof(std::uint32_t) + sizeof(T) - 1) / sizeof(T)));
  // Run now and again by replay, which recomputes the winners (arg) that backward reads.
  auto forward = [w, arg, plane, oplane](const T* xv, T* y) {
    // A pixel v wins over the current maximum m if it is larger or a NaN (the first NaN stays).
    auto wins = [](T v, T m) { return v > m || (v != v && m == m); };
    if (w.k == 2 && w.s == 2 && w.p == 0) {
      // The CNN's 2×2 windows that tile the image: four compares per output, no clipping.
      for (std::size_t pl = 0; pl < w.planes; ++pl) {
        const T* xp = xv + pl * plane;
        T* yp = y + pl * oplane;
        std::uint32_t* ap = arg ? arg + pl * oplane : nullptr;
        for (std::size_t oh = 0; oh < w.Ho; ++oh) {
          const T* r0 = xp + 2 * oh * w.W;
          const T* r1 = r0 + w.W;
          for (std::size_t ow = 0; ow < w.Wo; ++ow) {
            const std::size_t c = 2 * ow;
            const T a = r0[c], b = r0[c + 1], d = r1[c], e = r1[c + 1];
            // A tournament of selects, not a chain of branches: which pixel wins is a coin toss
            // on real data, and the mispredicted branches made this loop 13% of a CNN step. Ties
            // go to the earlier pixel in row-major order, as in the sequential scan. A NaN (rare:
            // one well-predicted branch) takes the sequential scan, where the first NaN wins.
            std::size_t best;
            T m;
            if ((a != a) | (b != b) | (d != d) | (e != e)) {
              best = 0, m = a;
              if (wins(b, m)) m = b, best = 1;
              if (wins(d, m)) m = d, best = w.W;
              if (wins(e, m)) m = e, best = w.W + 1;
            } else {
              // std::max and 0/1 flags: gcc turns these into vmaxss and setcc, not branches.
              const std::size_t top = b > a, bottom = e > d;
              const T m0 = std::max(a, b), m1 = std::max(d, e);  // (ties: the first)
              const std::size_t down = m0 < m1;
              m = std::max(m0, m1);
              best = top + down * (w.W + bottom - top);  // down ? W + bottom : top
            }
            yp[oh * w.Wo + ow] = m;
            if (ap) ap[oh * w.Wo + ow] = std::uint32_t(2 * oh * w.W + c + best);
          }
        }
      }
    } else {
      for (std::size_t pl = 0; pl < w.planes; ++pl) {
        const T* xp = xv + pl * plane;
        for (std::size_t oh = 0; oh < w.Ho; ++oh) {
          const auto [r0, r1] = w.rows(oh);
          for (std::size_t ow = 0; ow < w.Wo; ++ow) {
            const auto [c0, c1] = w.cols(ow);
            std::size_t best = r0 * w.W + c0;  // (padding ≤ kernel/2: every window holds a pixel)
            T m = xp[best];
            for (std::size_t r = r0; r < r1; ++r)
              for (std::size_t cc = c0; cc < c1; ++cc)
                if (wins(xp[r * w.W + cc], m)) m = xp[r * w.W + cc], best = r * w.W + cc;
            const std::size_t at = pl * oplane + oh * w.Wo + ow;
            y[at] = m;
            if (arg) arg[at] = std::uint32_t(best);
          }
        }
      }
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [w, arg](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const std::size_t plane = w.H * w.W, oplane = w.Ho * w.Wo;
        const T* G = c.out_grad_data();
        T* dx = c.grad_data(0);
        for (std::size_t pl = 0; pl < w.planes; ++pl) {  // dx[winner] += G
          T* d = dx + pl * plane;
          const T* g = G + pl * oplane;
          const std::uint32_t* a = arg + pl * oplane;
          for (std::size_t q = 0; q < oplane; ++q) d[a[q]] += g[q];
        }
      });
}

template <class T>
Var<T> avg_pool2d(const Var<T>& x, Pool2dOptions o, SourceLoc loc) {
  constexpr const char* name = "avg_pool2d";
  const Window w = check_pool(name, x, o);
  auto op = x.tape().begin_op(name, {x}, pooled_shape(x.shape(), w), loc);
  const std::size_t plane = w.H * w.W, oplane = w.Ho * w.Wo;
  const T inv = T(1) / T(w.k * w.k);
  // Run now and again by replay.
  auto forward = [w, plane, oplane, inv](const T* xv, T* y) {
    for (std::size_t pl = 0; pl < w.planes; ++pl) {
      const T* xp = xv + pl * plane;
      for (std::size_t oh = 0; oh < w.Ho; ++oh) {
        const auto [r0, r1] = w.rows(oh);
        for (std::size_t ow = 0; ow < w.Wo; ++ow) {
          const auto [c0, c1] = w.cols(ow);
          T s = 0;
          for (std::size_t r = r0; r < r1; ++r)
            for (std::size_t cc = c0; cc < c1; ++cc) s += xp[r * w.W + cc];
          y[pl * oplane + oh * w.Wo + ow] = s * inv;
        }
      }
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [w](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const std::size_t plane = w.H * w.W, oplane = w.Ho * w.Wo;
        const T inv = T(1) / T(w.k * w.k);
        const T* G = c.out_grad_data();
        T* dx = c.grad_data(0);
        for (std::size_t pl = 0; pl < w.planes; ++pl) {  // every pixel of a window += G / k²
          T* d = dx + pl * plane;
          const T* g = G + pl * oplane;
          for (std::size_t oh = 0; oh < w.Ho; ++oh) {
            const auto [r0, r1] = w.rows(oh);
            for (std::size_t ow = 0; ow < w.Wo; ++ow) {
              const auto [c0, c1] = w.cols(ow);
              const T v = g[oh * w.Wo + ow] * inv;
              for (std::size_t r = r0; r < r1; ++r)
                for (std::size_t cc = c0; cc < c1; ++cc) d[r * w.W + cc] += v;
            }
          }
        }
      });
}

template <class T>
Var<T> global_avg_pool(const Var<T>& x, SourceLoc loc) {
  constexpr const char* name = "global_avg_pool";
  detail::check_handle(name, "x", x);
  const Shape& sx = x.shape();
  if (sx.rank() != 4)
    throw ShapeError(std::string(name) + ": x is " + sx.str() +
                     ": global_avg_pool takes images x [N,C,H,W] (NCHW)");
  if (sx[2] == 0 || sx[3] == 0)
    throw ShapeError(std::string(name) + ": x is " + sx.str() +
                     ": its planes are empty, and the mean of no pixels is undefined");
  auto op = x.tape().begin_op(name, {x}, Shape{sx[0], sx[1]}, loc);
  const std::size_t planes = op.out_size(), plane = sx[2] * sx[3];
  const T inv = T(1) / T(plane);
  // Run now and again by replay.
  auto forward = [planes, plane, inv](const T* xv, T* y) {
    for (std::size_t pl = 0; pl < planes; ++pl) {
      const T* xp = xv + pl * plane;
      T s = 0;
      for (std::size_t q = 0; q < plane; ++q) s += xp[q];
      y[pl] = s * inv;
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const std::size_t planes = c.out_size();
        const std::size_t plane = planes ? c.input_size(0) / planes : 0;
        const T inv = T(1) / T(plane ? plane : 1);
        const T* G = c.out_grad_data();
        T* dx = c.grad_data(0);
        for (std::size_t pl = 0; pl < planes; ++pl) {  // dx[n,c,·,·] += G[n,c] / (H·W)
          const T v = G[pl] * inv;
          T* d = dx + pl * plane;
          for (std::size_t q = 0; q < plane; ++q) d[q] += v;
        }
      });
}

template Var<float> max_pool2d<float>(const Var<float>&, Pool2dOptions, SourceLoc);
template Var<double> max_pool2d<double>(const Var<double>&, Pool2dOptions, SourceLoc);
template Var<float> avg_pool2d<float>(const Var<float>&, Pool2dOptions, SourceLoc);
template Var<double> avg_pool2d<double>(const Var<double>&, Pool2dOptions, SourceLoc);
template Var<float> global_avg_pool<float>(const Var<float>&, SourceLoc);
template Var<double> global_avg_pool<double>(const Var<double>&, SourceLoc);

}  // namespace wengert
