// wengert — linear (see linear.hpp).
#include <wengert/ops/linear.hpp>

#include <string>

#include "detail/gemm.hpp"
#include "detail/record.hpp"
#include "detail/rows.hpp"

namespace wengert {

using detail::gemm;

template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& W, const Var<T>& b, SourceLoc loc) {
  detail::check_handle("linear", "x", x);
  detail::check_handle("linear", "W", W);
  detail::check_handle("linear", "b", b);
  const Shape& sx = x.shape();
  const Shape& sw = W.shape();
  const Shape& sb = b.shape();
  if (sx.rank() != 2 || sw.rank() != 2)
    throw ShapeError("linear: x is " + sx.str() + " and W is " + sw.str() + ": " +
                     (sx.rank() != 2 ? "x" : "W") +
                     " is not 2-D; linear is x [m,k]·W [k,n] + b [n]");
  const std::size_t m = sx[0], k = sx[1], n = sw[1];
  if (sw[0] != k)
    throw ShapeError("linear: x is " + sx.str() + " but W is " + sw.str() + ": inner dimensions " +
                     std::to_string(k) + " and " + std::to_string(sw[0]) + " differ");
  if (sb.rank() != 1 || sb[0] != n)
    throw ShapeError("linear: W is " + sw.str() + " but b is " + sb.str() + ": b must be [" +
                     std::to_string(n) + "] (one bias per column of x·W)");
  for (std::size_t d : {m, n, k})
    if (d > detail::kMaxGemmDim)
      throw ShapeError("linear: x is " + sx.str() + " and W is " + sw.str() +
                       ": a dimension exceeds the BLAS integer range");

  auto op = x.tape().begin_op("linear", {x, W, b}, Shape{m, n}, loc);
  // y = x·W (beta = 0), then y[r,:] += b, by the forward kernel below (finish runs it). Not b
  // copied into y and a beta = 1 GEMM onto it: OpenBLAS's small-matrix NN kernel for beta != 0
  // is several times slower than its beta = 0 kernel (and allocates on every call), which made
  // S0's forward 7x the hand-written one.
  return op.finish(
      [](const ForwardContext<T>& c) {
        const std::size_t m = c.out_shape()[0], n = c.out_shape()[1];
        const std::size_t k = c.input_shape(0)[1];
        gemm<T>(false, false, m, n, k, c.input_data(0), k, c.input_data(1), n, T(0), c.out_data(),
                n);
        detail::add_bias_in_place(c.out_data(), c.input_data(2), m, n);
      },
      [](const BackwardContext<T>& c) {
        const std::size_t m = c.out_shape()[0], n = c.out_shape()[1];
        const std::size_t k = c.input_shape(0)[1];
        const T* G = c.out_grad_data();  // [m,n]
        if (c.needs_grad(0))             // dx [m,k] += G [m,n] · Wᵀ [n,k]
          gemm<T>(false, true, m, k, n, G, n, c.input_data(1), n, T(1), c.grad_data(0), k);
        if (c.needs_grad(1))  // dW [k,n] += xᵀ [k,m] · G [m,n]
          gemm<T>(true, false, k, n, m, c.input_data(0), k, G, n, T(1), c.grad_data(1), n);
        if (c.needs_grad(2))
          detail::accumulate_column_sums(G, c.grad_data(2), m, n);  // db += Σ_rows G
      });
}

template Var<float> linear<float>(const Var<float>&, const Var<float>&, const Var<float>&,
                                  SourceLoc);
template Var<double> linear<double>(const Var<double>&, const Var<double>&, const Var<double>&,
                                    SourceLoc);

}  // namespace wengert
