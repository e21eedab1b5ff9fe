// wengert — softmax and log_softmax (see softmax.hpp).
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/softmax.hpp>

#include <cmath>
#include <string>

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
  const std::size_t rows = c ? op.out_size() / c : 0;
  const T* in = op.input_data(0);
  T* y = op.out_data();
  for (std::size_t r = 0; r < rows; ++r, in += c, y += c) {
    // y = exp(x − M) / Σ exp(x − M)
    const T inv = T(1) / detail::exp_shifted(in, y, c, detail::row_max(in, c));
    for (std::size_t j = 0; j < c; ++j) y[j] *= inv;
  }

  return op.finish([](const BackwardContext<T>& ctx) {
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
  const std::size_t rows = c ? op.out_size() / c : 0;
  const T* in = op.input_data(0);
  T* y = op.out_data();
  for (std::size_t r = 0; r < rows; ++r, in += c, y += c) {
    // y = (x − M) − log Σ exp(x − M)
    const detail::RowLse<T> s = detail::row_lse(in, c);
    const T* __restrict xr = in;
    T* __restrict yr = y;
    for (std::size_t j = 0; j < c; ++j) yr[j] = (xr[j] - s.max) - s.log_sum;
  }

  return op.finish([](const BackwardContext<T>& ctx) {
    if (!ctx.needs_grad(0)) return;
    const std::size_t c = ctx.out_shape().back();
    const std::size_t rows = c ? ctx.out_size() / c : 0;
    const T* y = ctx.out_data();
    const T* g = ctx.out_grad_data();
    T* dx = ctx.grad_data(0);
    for (std::size_t r = 0; r < rows; ++r, y += c, g += c, dx += c) {
      // dx += G − exp(y) · Σ G
      const detail::Batch<T> gsum(detail::sum(g, c));
      detail::for_batches<T>(c, [&](auto at) {
        const auto d =
            at.load(dx, T(0)) + at.load(g, T(0)) - detail::safe_exp(at.load(y, T(0))) * gsum;
        at.store(d, dx);
      });
    }
  });
}

template Var<float> softmax<float>(const Var<float>&, SourceLoc);
template Var<double> softmax<double>(const Var<double>&, SourceLoc);
template Var<float> log_softmax<float>(const Var<float>&, SourceLoc);
template Var<double> log_softmax<double>(const Var<double>&, SourceLoc);

}  // namespace wengert
