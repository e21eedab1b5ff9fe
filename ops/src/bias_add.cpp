// wengert — bias_add and linear (see bias_add.hpp).
#include <wengert/ops/bias_add.hpp>

#include <string>

#include "detail/gemm.hpp"
#include "detail/nn_kernels.hpp"

namespace wengert {

namespace {

using detail::nn::gemm;

// y[r,:] = x[r,:] + b for rows r < rows.
template <class T>
void add_rows(const T* __restrict x, const T* __restrict b, T* __restrict y, std::size_t rows,
              std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n)
    for (std::size_t j = 0; j < n; ++j) y[j] = x[j] + b[j];
}

// y[r,:] += b for rows r < rows.
template <class T>
void add_bias_in_place(T* __restrict y, const T* __restrict b, std::size_t rows, std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, y += n)
    for (std::size_t j = 0; j < n; ++j) y[j] += b[j];
}

// db[j] += Σ_r G[r,j]. Row by row: each pass is a vectorised db += G[r,:].
template <class T>
void accumulate_column_sums(const T* __restrict G, T* __restrict db, std::size_t rows,
                            std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, G += n)
    for (std::size_t j = 0; j < n; ++j) db[j] += G[j];
}

template <class T>
void accumulate(const T* __restrict g, T* __restrict dx, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dx[i] += g[i];
}

}  // namespace

template <class T>
Var<T> bias_add(const Var<T>& x, const Var<T>& b, SourceLoc loc) {
  detail::nn::check_handle("bias_add", "x", x);
  detail::nn::check_handle("bias_add", "b", b);
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
  add_rows(op.input_data(0), op.input_data(1), op.out_data(), rows, n);

  return op.finish([](const BackwardContext<T>& c) {
    const std::size_t n = c.input_size(1);
    const std::size_t rows = n ? c.out_size() / n : 0;
    const T* G = c.out_grad_data();
    if (c.needs_grad(0)) accumulate(G, c.grad_data(0), c.out_size());  // dx += G
    if (c.needs_grad(1)) accumulate_column_sums(G, c.grad_data(1), rows, n);  // db += Σ_rows G
  });
}

template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& W, const Var<T>& b, SourceLoc loc) {
  detail::nn::check_handle("linear", "x", x);
  detail::nn::check_handle("linear", "W", W);
  detail::nn::check_handle("linear", "b", b);
  const Shape& sx = x.shape();
  const Shape& sw = W.shape();
  const Shape& sb = b.shape();
  if (sx.rank() != 2 || sw.rank() != 2)
    throw ShapeError("linear: x is " + sx.str() + " and W is " + sw.str() + ": " +
                     (sx.rank() != 2 ? "x" : "W") + " is not 2-D; linear is x [m,k]·W [k,n] + b [n]");
  const std::size_t m = sx[0], k = sx[1], n = sw[1];
  if (sw[0] != k)
    throw ShapeError("linear: x is " + sx.str() + " but W is " + sw.str() + ": inner dimensions " +
                     std::to_string(k) + " and " + std::to_string(sw[0]) + " differ");
  if (sb.rank() != 1 || sb[0] != n)
    throw ShapeError("linear: W is " + sw.str() + " but b is " + sb.str() + ": b must be [" +
                     std::to_string(n) + "] (one bias per column of x·W)");
  for (std::size_t d : {m, n, k})
    if (d > detail::nn::kMaxGemmDim)
      throw ShapeError("linear: x is " + sx.str() + " and W is " + sw.str() +
                       ": a dimension exceeds the BLAS integer range");

  auto op = x.tape().begin_op("linear", {x, W, b}, Shape{m, n}, loc);
  T* y = op.out_data();
  // y = x·W (beta = 0), then y[r,:] += b. Not b copied into y and a beta = 1 GEMM onto it:
  // OpenBLAS's small-matrix NN kernel for beta != 0 is several times slower than its beta = 0
  // kernel (and allocates on every call), which made S0's forward 7x the hand-written one.
  gemm<T>(false, false, m, n, k, op.input_data(0), k, op.input_data(1), n, T(0), y, n);
  add_bias_in_place(y, op.input_data(2), m, n);

  return op.finish([](const BackwardContext<T>& c) {
    const std::size_t m = c.out_shape()[0], n = c.out_shape()[1];
    const std::size_t k = c.input_shape(0)[1];
    const T* G = c.out_grad_data();  // [m,n]
    if (c.needs_grad(0))  // dx [m,k] += G [m,n] · Wᵀ [n,k]
      gemm<T>(false, true, m, k, n, G, n, c.input_data(1), n, T(1), c.grad_data(0), k);
    if (c.needs_grad(1))  // dW [k,n] += xᵀ [k,m] · G [m,n]
      gemm<T>(true, false, k, n, m, c.input_data(0), k, G, n, T(1), c.grad_data(1), n);
    if (c.needs_grad(2)) accumulate_column_sums(G, c.grad_data(2), m, n);  // db += Σ_rows G
  });
}

template Var<float> bias_add<float>(const Var<float>&, const Var<float>&, SourceLoc);
template Var<double> bias_add<double>(const Var<double>&, const Var<double>&, SourceLoc);
template Var<float> linear<float>(const Var<float>&, const Var<float>&, const Var<float>&,
                                  SourceLoc);
template Var<double> linear<double>(const Var<double>&, const Var<double>&, const Var<double>&,
                                    SourceLoc);

}  // namespace wengert
