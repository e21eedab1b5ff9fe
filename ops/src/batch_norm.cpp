// wengert — batch_norm2d (see batch_norm.hpp).
#include <wengert/ops/batch_norm.hpp>

#include <cmath>
#include <string>

#include "detail/record.hpp"

namespace wengert {

template <class T>
Var<T> batch_norm2d(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta,
                    const BatchNormOptions<T>& o, SourceLoc loc) {
  constexpr const char* name = "batch_norm2d";
  detail::check_handle(name, "x", x);
  detail::check_handle(name, "gamma", gamma);
  detail::check_handle(name, "beta", beta);
  const Shape& sx = x.shape();
  if (sx.rank() != 4)
    throw ShapeError(std::string(name) + ": x is " + sx.str() +
                     ": batch_norm2d takes images x [N,C,H,W] (NCHW)");
  const std::size_t N = sx[0], C = sx[1], HW = sx[2] * sx[3];
  for (const auto& [arg, v] : {std::pair{"gamma", &gamma}, std::pair{"beta", &beta}})
    if (v->shape() != Shape{C})
      throw ShapeError(std::string(name) + ": x is " + sx.str() + " but " + arg + " is " +
                       v->shape().str() + ": " + arg + " must be [" + std::to_string(C) +
                       "] (one per channel)");
  if (!(o.momentum >= 0 && o.momentum <= 1))
    throw ValueError(std::string(name) + ": momentum is " + std::to_string(o.momentum) +
                     ", not in [0, 1]");
  if (!(o.eps > 0))
    throw ValueError(std::string(name) + ": eps is " + std::to_string(o.eps) + ", not > 0");
  if ((o.running_mean == nullptr) != (o.running_var == nullptr))
    throw ValueError(std::string(name) +
                     ": running_mean and running_var are given together or not at all");
  if (!o.training && !o.running_mean)
    throw ValueError(std::string(name) +
                     ": eval mode (training = false) normalises by the "
                     "running statistics, and none were given");
  const std::size_t M = N * HW;  // values per channel (x's size is checked: no overflow if C > 0)
  if (o.training && M == 0 && C > 0)
    throw ShapeError(std::string(name) + ": x is " + sx.str() +
                     ": training mode needs at least one value per channel for its statistics");

  auto op = x.tape().begin_op(name, {x, gamma, beta}, sx, loc);
  // mean[c] and inv[c] = 1/√(σ² + ε): all backward needs, kept only if there is a backward
  // (under no-grad, e.g. evaluation, nothing is kept).
  T* mean = op.requires_grad() ? op.scratch(2 * C) : nullptr;
  T* inv = mean ? mean + C : nullptr;
  // Run now and again by each Tape::replay, as a fresh recording of the step would run it: the
  // batch statistics (training) or the running ones read again from o's pointers (eval), and in
  // training the running statistics moved once more.
  auto forward = [mean, inv, N, C, HW, M, training = o.training, rm = o.running_mean,
                  rv = o.running_var, momentum = o.momentum,
                  eps = o.eps](const T* xv, const T* gv, const T* bv, T* y) {
    for (std::size_t c = 0; c < C; ++c) {
      double mu, var;
      if (training) {  // two passes in double: the mean, then the squared deviations
        double s = 0;
        for (std::size_t n = 0; n < N; ++n) {
          const T* p = xv + (n * C + c) * HW;
          for (std::size_t q = 0; q < HW; ++q) s += double(p[q]);
        }
        mu = s / double(M);
        double ss = 0;
        for (std::size_t n = 0; n < N; ++n) {
          const T* p = xv + (n * C + c) * HW;
          for (std::size_t q = 0; q < HW; ++q) ss += (double(p[q]) - mu) * (double(p[q]) - mu);
        }
        var = ss / double(M);
      } else {
        mu = double(rm[c]);
        var = double(rv[c]);
      }
      const T mean_c = T(mu), inv_c = T(1.0 / std::sqrt(var + eps));
      if (mean) mean[c] = mean_c, inv[c] = inv_c;
      const T scale = gv[c] * inv_c, shift = bv[c] - scale * mean_c;  // y = scale·x + shift
      for (std::size_t n = 0; n < N; ++n) {
        const T* p = xv + (n * C + c) * HW;
        T* q = y + (n * C + c) * HW;
        for (std::size_t k = 0; k < HW; ++k) q[k] = scale * p[k] + shift;
      }
      if (training && rm) {
        const double m = momentum, unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
        rm[c] = T((1 - m) * double(rm[c]) + m * mu);
        rv[c] = T((1 - m) * double(rv[c]) + m * unbiased);
      }
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {
        forward(c.input_data(0), c.input_data(1), c.input_data(2), c.out_data());
      },
      [mean, inv, training = o.training](const BackwardContext<T>& c) {
        const Shape& s = c.out_shape();
        const std::size_t N = s[0], C = s[1], HW = s[2] * s[3], M = N * HW;
        const T* xv = c.input_data(0);
        const T* gv = c.input_data(1);
        const T* G = c.out_grad_data();
        for (std::size_t ch = 0; ch < C; ++ch) {
          const T mu = mean[ch], is = inv[ch];
          T sg = 0, sgx = 0;  // Σ G and Σ G·x̂ over the channel
          for (std::size_t n = 0; n < N; ++n) {
            const T* p = xv + (n * C + ch) * HW;
            const T* g = G + (n * C + ch) * HW;
            for (std::size_t k = 0; k < HW; ++k) {
              sg += g[k];
              sgx += g[k] * (p[k] - mu) * is;
            }
          }
          if (c.needs_grad(2)) c.grad_data(2)[ch] += sg;
          if (c.needs_grad(1)) c.grad_data(1)[ch] += sgx;
          if (!c.needs_grad(0)) continue;
          const T scale = gv[ch] * is;
          // training: dx += scale·(G − Σ G/M − x̂·Σ G·x̂/M); eval: dx += scale·G
          const T a = training ? sg / T(M) : T(0), b = training ? sgx / T(M) : T(0);
          for (std::size_t n = 0; n < N; ++n) {
            const T* p = xv + (n * C + ch) * HW;
            const T* g = G + (n * C + ch) * HW;
            T* dx = c.grad_data(0) + (n * C + ch) * HW;
            for (std::size_t k = 0; k < HW; ++k) dx[k] += scale * (g[k] - a - (p[k] - mu) * is * b);
          }
        }
      });
}

template Var<float> batch_norm2d<float>(const Var<float>&, const Var<float>&, const Var<float>&,
                                        const BatchNormOptions<float>&, SourceLoc);
template Var<double> batch_norm2d<double>(const Var<double>&, const Var<double>&,
                                          const Var<double>&, const BatchNormOptions<double>&,
                                          SourceLoc);

}  // namespace wengert
