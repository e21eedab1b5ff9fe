// wengert — reductions (see reduce.hpp).
//
// An axis reduction views x as [outer, n, inner] (n the length of the axis) and the output as
// [outer, inner]. With inner = 1 (the last axis) each output element is the sum of a
// contiguous run; otherwise whole rows of `inner` elements are added, which vectorises along
// inner. Backward spreads the output adjoint back along the axis (divided by n for mean).
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/reduce.hpp>

#include <string>

#include "detail/axes.hpp"
#include "detail/record.hpp"

namespace wengert {
namespace {

using detail::check_handle;

// The axis in [0, rank), from an axis in [−rank, rank).
std::size_t normalize_axis(const char* op, const Shape& s, int axis) {
  const int r = static_cast<int>(s.rank());
  if (axis < -r || axis >= r)
    throw ShapeError(std::string(op) + ": axis " + std::to_string(axis) +
                     " is out of range for x of shape " + s.str() + " (rank " + std::to_string(r) +
                     (r ? "; valid axes are " + std::to_string(-r) + " to " + std::to_string(r - 1)
                        : "; a scalar has no axes") +
                     ")");
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

template <class T, bool Mean>
Var<T> reduce_all(const char* name, const Var<T>& x, SourceLoc loc) {
  check_handle(name, "x", x);
  if (Mean && x.size() == 0)
    throw ValueError(std::string(name) + ": x is " + x.shape().str() +
                     ", which has no elements; its mean is undefined");
  auto op = x.tape().begin_op(name, &x, 1, Shape{}, loc);  // in place, as record_unary
  auto forward = [](const T* x, std::size_t n, T* y) {
    const T s = detail::sum(x, n);
    y[0] = Mean ? s / T(n) : s;
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {  // replay
        forward(c.input_data(0), c.input_size(0), c.out_data());
      },
      [](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const std::size_t n = c.input_size(0);
        const T g = Mean ? c.out_grad_data()[0] / T(n) : c.out_grad_data()[0];
        T* gx = c.grad_data(0);
        for (std::size_t i = 0; i < n; ++i) gx[i] += g;
      });
}

template <class T, bool Mean>
Var<T> reduce_axis(const char* name, const Var<T>& x, int axis, bool keepdims, SourceLoc loc) {
  check_handle(name, "x", x);
  const Shape& s = x.shape();
  const std::size_t ax = normalize_axis(name, s, axis);
  const detail::AxisSplit split = detail::split_at(s, ax);
  const std::size_t outer = split.outer, inner = split.inner, n = split.n;
  if (Mean && n == 0 && outer * inner > 0)
    throw ValueError(std::string(name) + ": axis " + std::to_string(axis) + " of x " + s.str() +
                     " has length 0; the mean along it is undefined");
  const Shape out = detail::drop_axis(s, ax, keepdims);

  auto op = x.tape().begin_op(name, &x, 1, out, loc);
  auto forward = [outer, n, inner](const T* __restrict xv, T* __restrict y) {
    if (inner == 1) {
      for (std::size_t o = 0; o < outer; ++o) {
        const T sum = detail::sum(xv + o * n, n);
        y[o] = Mean ? sum / T(n) : sum;
      }
    } else {
      for (std::size_t o = 0; o < outer; ++o) {
        T* __restrict yo = y + o * inner;
        std::fill(yo, yo + inner, T(0));
        for (std::size_t k = 0; k < n; ++k) {
          const T* __restrict row = xv + (o * n + k) * inner;
          for (std::size_t i = 0; i < inner; ++i) yo[i] += row[i];
        }
        if (Mean)
          for (std::size_t i = 0; i < inner; ++i) yo[i] /= T(n);
      }
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) { forward(c.input_data(0), c.out_data()); },
      [outer, n, inner](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        const T* __restrict g = c.out_grad_data();
        T* __restrict gx = c.grad_data(0);
        if (inner == 1) {
          for (std::size_t o = 0; o < outer; ++o) {
            const T go = Mean ? g[o] / T(n) : g[o];
            T* __restrict row = gx + o * n;
            for (std::size_t k = 0; k < n; ++k) row[k] += go;
          }
          return;
        }
        for (std::size_t o = 0; o < outer; ++o) {
          const T* __restrict go = g + o * inner;
          for (std::size_t k = 0; k < n; ++k) {
            T* __restrict row = gx + (o * n + k) * inner;
            for (std::size_t i = 0; i < inner; ++i) row[i] += Mean ? go[i] / T(n) : go[i];
          }
        }
      });
}

}  // namespace

template <class T>
Var<T> sum(const Var<T>& x, SourceLoc loc) {
  return reduce_all<T, false>("sum", x, loc);
}

template <class T>
Var<T> sum(const Var<T>& x, int axis, bool keepdims, SourceLoc loc) {
  return reduce_axis<T, false>("sum", x, axis, keepdims, loc);
}

template <class T>
Var<T> mean(const Var<T>& x, SourceLoc loc) {
  return reduce_all<T, true>("mean", x, loc);
}

template <class T>
Var<T> mean(const Var<T>& x, int axis, bool keepdims, SourceLoc loc) {
  return reduce_axis<T, true>("mean", x, axis, keepdims, loc);
}

#define WENGERT_REDUCE(T)                                      \
  template Var<T> sum<T>(const Var<T>&, SourceLoc);            \
  template Var<T> sum<T>(const Var<T>&, int, bool, SourceLoc); \
  template Var<T> mean<T>(const Var<T>&, SourceLoc);           \
  template Var<T> mean<T>(const Var<T>&, int, bool, SourceLoc);

WENGERT_REDUCE(float)
WENGERT_REDUCE(double)
#undef WENGERT_REDUCE

}  // namespace wengert
