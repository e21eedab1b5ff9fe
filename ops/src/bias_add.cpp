// wengert — bias_add (see bias_add.hpp).
#include <wengert/ops/bias_add.hpp>

#include <string>

#include "detail/record.hpp"
#include "detail/rows.hpp"

namespace wengert {

template <class T>
Var<T> bias_add(const Var<T>& x, const Var<T>& b, SourceLoc loc) {
  detail::check_handle("bias_add", "x", x);
  detail::check_handle("bias_add", "b", b);
  const Shape& sx = x.shape();
  const Shape& sb = b.shape();
  if (sx.rank() == 0)
    throw ShapeError("bias_add: x is " + sx.str() + " (a scalar) and b is " + sb.str() +
                     ": x needs at least one axis, [m,n] with b [n]");
  const std::size_t n = sx.back();
  if (sb.rank() != 1 || sb[0] != n)
    throw ShapeError("bias_add: x is " + sx.str() + " but b is " + sb.str() + ": b must be [" +
                     std::to_string(n) + "] (one bias per column of x)");

  const std::size_t rows = n ? sx.size() / n : 0;
  auto op = x.tape().begin_op("bias_add", {x, b}, sx, loc);
  return op.finish(
      [rows, n](const ForwardContext<T>& c) {
        detail::add_rows(c.input_data(0), c.input_data(1), c.out_data(), rows, n);
      },
      [](const BackwardContext<T>& c) {
        const std::size_t n = c.input_size(1);
        const std::size_t rows = n ? c.out_size() / n : 0;
        const T* G = c.out_grad_data();
        if (c.needs_grad(0)) detail::accumulate(G, c.grad_data(0), c.out_size());  // dx += G
        if (c.needs_grad(1))
          detail::accumulate_column_sums(G, c.grad_data(1), rows, n);  // db += Σ_rows G
      });
}

template Var<float> bias_add<float>(const Var<float>&, const Var<float>&, SourceLoc);
template Var<double> bias_add<double>(const Var<double>&, const Var<double>&, SourceLoc);

}  // namespace wengert
