// wengert — dropout and layer_norm (see nn_ops.hpp).
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/nn_ops.hpp>

#include <cmath>
#include <sstream>
#include <string>

#include "detail/record.hpp"

namespace wengert {
namespace {

std::string num(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

}  // namespace

template <class T>
Var<T> dropout(const Var<T>& x, double p, bool training, std::mt19937_64& gen, SourceLoc loc) {
  detail::check_handle("dropout", "x", x);
  if (!(p >= 0.0 && p <= 1.0))
    throw ValueError("dropout: p = " + num(p) + " is not a probability in [0, 1] (x is " +
                     x.shape().str() + ")");
  if (!training || p == 0.0) return x;  // the identity: nothing recorded, nothing drawn
  auto op = x.tape().begin_op("dropout", &x, 1, x.shape(), loc);
  const std::size_t n = op.out_size();
  T* mask = op.scratch(n);
  const T keep = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
  // u uniform in [0, 1) from the top 53 bits; an element is kept when u ≥ p.
  for (std::size_t i = 0; i < n; ++i) mask[i] = double(gen() >> 11) * 0x1p-53 >= p ? keep : T(0);
  const T* __restrict xv = op.input_data(0);
  T* __restrict y = op.out_data();
  for (std::size_t i = 0; i < n; ++i) y[i] = xv[i] * mask[i];
  return op.finish([mask](const BackwardContext<T>& c) {
    if (!c.needs_grad(0)) return;
    const std::size_t n = c.out_size();
    const T* __restrict g = c.out_grad_data();
    T* __restrict gx = c.grad_data(0);
    for (std::size_t i = 0; i < n; ++i) gx[i] += g[i] * mask[i];  // dx += G·mask
  });
}

template <class T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, double eps,
                  SourceLoc loc) {
  constexpr const char* name = "layer_norm";
  detail::check_handle(name, "x", x);
  detail::check_handle(name, "gamma", gamma);
  detail::check_handle(name, "beta", beta);
  const Shape s = x.shape(), sg = gamma.shape(), sb = beta.shape();
  if (s.rank() == 0)
    throw ShapeError("layer_norm: x is a scalar ([]); it normalises along the last axis");
  const std::size_t d = s.back();
  if (sg != Shape{d} || sb != Shape{d})
    throw ShapeError("layer_norm: x is " + s.str() + " but gamma is " + sg.str() + " and beta is " +
                     sb.str() + "; both must be [" + std::to_string(d) +
                     "], the last dimension of x");
  if (!(eps > 0.0 && std::isfinite(eps)))
    throw ValueError("layer_norm: eps = " + num(eps) + " must be a positive finite number");

  const Var<T> in[3] = {x, gamma, beta};
  auto op = x.tape().begin_op(name, in, 3, s, loc);
  const std::size_t rows = d ? op.out_size() / d : 0;
  T* stats = op.scratch(2 * rows);  // per row: μ, then 1/√(σ² + eps)
  // One row of ĝ = G∘γ for backward, stored once so that its mean is subtracted from the very
  // values it was taken of (recomputed, gcc may fuse one of the products and not the other).
  T* gh = op.scratch(d);
  // Run now and again by replay (which recomputes the statistics backward reads).
  auto forward = [stats, rows, d, eps = T(eps)](const T* xv, const T* __restrict g,
                                                const T* __restrict b, T* y) {
    for (std::size_t r = 0; r < rows; ++r) {
      const T* __restrict xr = xv + r * d;
      T* __restrict yr = y + r * d;
      const T mu = detail::sum(xr, d) / T(d);
      T v = 0;
      for (std::size_t j = 0; j < d; ++j) v += (xr[j] - mu) * (xr[j] - mu);
      const T rstd = T(1) / std::sqrt(v / T(d) + eps);
      stats[2 * r] = mu;
      stats[2 * r + 1] = rstd;
      for (std::size_t j = 0; j < d; ++j) yr[j] = (xr[j] - mu) * rstd * g[j] + b[j];
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {
        forward(c.input_data(0), c.input_data(1), c.input_data(2), c.out_data());
      },
      [stats, gh, rows, d](const BackwardContext<T>& c) {
        const T* G = c.out_grad_data();
        const T* xv = c.input_data(0);
        const T* __restrict gamma = c.input_data(1);
        const bool dx = c.needs_grad(0), dg = c.needs_grad(1), db = c.needs_grad(2);
        T* gx = dx ? c.grad_data(0) : nullptr;
        // (no __restrict on the adjoints: layer_norm(x, w, w) makes two of them one buffer)
        T* ggamma = dg ? c.grad_data(1) : nullptr;
        T* gbeta = db ? c.grad_data(2) : nullptr;
        const T inv_d = T(1) / T(d);
        for (std::size_t r = 0; r < rows; ++r) {
          const T* __restrict xr = xv + r * d;
          const T* __restrict Gr = G + r * d;
          const T mu = stats[2 * r], rstd = stats[2 * r + 1];
          if (db)
            for (std::size_t j = 0; j < d; ++j) gbeta[j] += Gr[j];
          if (dg)
            for (std::size_t j = 0; j < d; ++j) ggamma[j] += Gr[j] * (xr[j] - mu) * rstd;
          if (!dx) continue;
          // ĝ = G∘γ; a = mean(ĝ), bm = mean(ĝ∘x̂); dx += rstd·(ĝ − a − x̂·bm)
          T a = 0, bm = 0;
          for (std::size_t j = 0; j < d; ++j) {
            gh[j] = Gr[j] * gamma[j];
            a += gh[j];
            bm += gh[j] * (xr[j] - mu) * rstd;
          }
          a *= inv_d;
          bm *= inv_d;
          T* gxr = gx + r * d;
          for (std::size_t j = 0; j < d; ++j)
            gxr[j] += rstd * (gh[j] - a - (xr[j] - mu) * rstd * bm);
        }
      });
}

template Var<float> dropout<float>(const Var<float>&, double, bool, std::mt19937_64&, SourceLoc);
template Var<double> dropout<double>(const Var<double>&, double, bool, std::mt19937_64&, SourceLoc);
template Var<float> layer_norm<float>(const Var<float>&, const Var<float>&, const Var<float>&,
                                      double, SourceLoc);
template Var<double> layer_norm<double>(const Var<double>&, const Var<double>&, const Var<double>&,
                                        double, SourceLoc);

}  // namespace wengert
