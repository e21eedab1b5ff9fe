// wengert — the recording skeleton of a two-tensor elementwise op with numpy broadcasting
// (add, sub, mul, div, maximum, minimum): validate both handles and shapes, compute the output
// with a flat loop (equal sizes) or the broadcast walk of broadcast.hpp, record the backward.
#pragma once

#include <cstddef>

#include "broadcast.hpp"
#include "record.hpp"

namespace wengert::detail {

// Records z = f(x, y) with broadcasting. da(g, x, y, z) and db(g, x, y, z) give one output
// element's contribution to the adjoints of a and b, from the output adjoint g.
template <class T, class F, class DA, class DB>
Var<T> record_binary(const char* name, const Var<T>& a, const Var<T>& b, SourceLoc loc, F f, DA da,
                     DB db) {
  check_handle(name, "a", a);
  check_handle(name, "b", b);
  const Shape sa = a.shape(), sb = b.shape();  // copies: valid after begin_op grows the tape
  const Shape out = sa == sb ? sa : broadcast_shapes(name, sa, sb);
  auto op = a.tape().begin_op(name, {a, b}, out, loc);
  // The forward, run now and again by replay (which hands it the recorded shapes).
  auto forward = [f](const T* __restrict x, const T* __restrict y, T* __restrict z, std::size_t n,
                     std::size_t nx, std::size_t ny, const Shape& so, const Shape& s0,
                     const Shape& s1) {
    if (nx == n && ny == n) {
      for (std::size_t i = 0; i < n; ++i) z[i] = f(x[i], y[i]);
    } else {
      detail::for_each_broadcast(
          detail::make_broadcast_map(so, s0, s1),
          [&](std::size_t o, std::size_t i, std::size_t j) { z[o] = f(x[i], y[j]); });
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {
        forward(c.input_data(0), c.input_data(1), c.out_data(), c.out_size(), c.input_size(0),
                c.input_size(1), c.out_shape(), c.input_shape(0), c.input_shape(1));
      },
      [da, db](const BackwardContext<T>& c) {
        const std::size_t n = c.out_size();
        const T* __restrict g = c.out_grad_data();
        const T* __restrict x = c.input_data(0);
        const T* __restrict y = c.input_data(1);
        const T* __restrict z = c.out_data();
        // The two adjoints are updated in separate loops: they are the same buffer in mul(x, x).
        if (c.input_size(0) == n && c.input_size(1) == n) {
          if (c.needs_grad(0)) {
            T* __restrict ga = c.grad_data(0);
            for (std::size_t i = 0; i < n; ++i) ga[i] += da(g[i], x[i], y[i], z[i]);
          }
          if (c.needs_grad(1)) {
            T* __restrict gb = c.grad_data(1);
            for (std::size_t i = 0; i < n; ++i) gb[i] += db(g[i], x[i], y[i], z[i]);
          }
          return;
        }
        // Broadcast: walk the output; an input repeated along an axis gets the sum over it.
        const detail::BroadcastMap m =
            detail::make_broadcast_map(c.out_shape(), c.input_shape(0), c.input_shape(1));
        if (c.needs_grad(0)) {
          T* ga = c.grad_data(0);
          detail::for_each_broadcast(m, [&](std::size_t o, std::size_t i, std::size_t j) {
            ga[i] += da(g[o], x[i], y[j], z[o]);
          });
        }
        if (c.needs_grad(1)) {
          T* gb = c.grad_data(1);
          detail::for_each_broadcast(m, [&](std::size_t o, std::size_t i, std::size_t j) {
            gb[j] += db(g[o], x[i], y[j], z[o]);
          });
        }
      });
}

}  // namespace wengert::detail
