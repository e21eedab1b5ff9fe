// wengert — losses (see losses.hpp).
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/losses.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include "detail/record.hpp"

namespace wengert {

namespace {

using detail::Batch;

// The two inputs of an elementwise loss must have one shape, with at least one element.
template <class T>
std::size_t check_same_shape(const char* name, const char* an, const Var<T>& a, const char* bn,
                             const Var<T>& b) {
  detail::check_handle(name, an, a);
  detail::check_handle(name, bn, b);
  if (a.shape() != b.shape())
    throw ShapeError(std::string(name) + ": " + an + " is " + a.shape().str() + " but " + bn +
                     " is " + b.shape().str() + ": they must have the same shape");
  if (a.size() == 0)
    throw ValueError(std::string(name) + ": " + an + " is " + a.shape().str() +
                     ", which has no elements: the mean of an empty loss is undefined");
  return a.size();
}

// Every element of `v` must lie in [0, 1] (NaN passes: anomaly mode reports it). Values outside
// would be clamped or extrapolated into a plausible-looking loss — e.g. logits passed where
// probabilities are expected.
// Checked by the forward kernels, so at recording and again on every replay (the values may have
// been refilled).
template <class T>
void check_unit_interval(const char* name, const char* arg, const T* p, const Shape& shape) {
  if (!detail::any_outside(p, shape.size(), T(0), T(1))) return;
  std::size_t i = 0;
  while (!(p[i] < T(0) || p[i] > T(1))) ++i;
  std::ostringstream os;
  os.precision(std::is_same_v<T, float> ? 9 : 17);
  os << name << ": " << arg << "[" << i << "] = " << p[i] << " is outside [0, 1] (" << arg << " is "
     << shape.str() << ")";
  throw ValueError(os.str());
}

// logits must be [m,c] with m, c ≥ 1.
template <class T>
void check_logits(const char* name, const Var<T>& logits) {
  detail::check_handle(name, "logits", logits);
  const Shape& s = logits.shape();
  if (s.rank() != 2)
    throw ShapeError(std::string(name) + ": logits is " + s.str() +
                     ": expected 2-D [m,c], one row of class scores per example");
  if (s[0] == 0 || s[1] == 0)
    throw ValueError(std::string(name) + ": logits is " + s.str() +
                     ", which has no elements: the mean of an empty loss is undefined");
}

}  // namespace

// ---- softmax cross-entropy, class indices -----------------------------------------------------

namespace {

// One body for int32 (the default) and int64 (torch's convention) class indices: L is the
// label type, kept as it is in tape scratch so that no index is narrowed.
template <class T, class L>
Var<T> softmax_cross_entropy_labels(const Var<T>& logits, const L* labels, std::size_t n_labels,
                                    SourceLoc loc) {
  const char* name = "softmax_cross_entropy";
  check_logits(name, logits);
  const std::size_t m = logits.shape()[0], c = logits.shape()[1];
  if (n_labels != m)
    throw ShapeError(std::string(name) + ": logits is " + logits.shape().str() +
                     " but labels has " + std::to_string(n_labels) +
                     " entries: expected one class index per row (" + std::to_string(m) + ")");
  if (!labels) throw UsageError(std::string(name) + ": labels is a null pointer");
  // Checked by the forward kernel, at recording and on every replay (the caller may have
  // refilled the array).
  auto check_labels = [name, m, c](const L* labels) {
    for (std::size_t r = 0; r < m; ++r)
      if (labels[r] < 0 || std::size_t(labels[r]) >= c)
        throw ValueError(std::string(name) + ": label " + std::to_string(labels[r]) + " in row " +
                         std::to_string(r) + " is outside [0, " + std::to_string(c) + ")");
  };

  auto op = logits.tape().begin_op(name, {logits}, Shape{}, loc);
  // Kept for backward: each row's max and log-sum (2m values) and its label (m labels in tape
  // scratch, so the caller's array need not outlive this call — unless the tape is replayed,
  // which reads it again).
  T* stats = nullptr;
  L* lab = nullptr;
  if (op.requires_grad()) {
    stats = op.scratch(2 * m);
    lab = reinterpret_cast<L*>(op.scratch((m * sizeof(L) + sizeof(T) - 1) / sizeof(T)));
  }
  auto forward = [m, c, stats, lab](const T* z, const L* labels, T* out) {
    T loss = 0;
    for (std::size_t r = 0; r < m; ++r, z += c) {
      // −log softmax(z)_label = log Σ exp(z − M) − (z_label − M)
      const detail::RowLse<T> s = detail::row_lse(z, c);
      loss += s.log_sum - (z[labels[r]] - s.max);
      if (stats) {
        stats[2 * r] = s.max;
        stats[2 * r + 1] = s.log_sum;
        lab[r] = labels[r];
      }
    }
    out[0] = loss / T(m);
  };
  return op.finish(
      [forward, check_labels, labels](const ForwardContext<T>& ctx) {  // replay
        check_labels(labels);
        forward(ctx.input_data(0), labels, ctx.out_data());
      },
      [stats, lab](const BackwardContext<T>& ctx) {
        if (!ctx.needs_grad(0)) return;
        const std::size_t m = ctx.input_shape(0)[0], c = ctx.input_shape(0)[1];
        const T g = ctx.out_grad_data()[0] / T(m);
        const T* z = ctx.input_data(0);
        T* dz = ctx.grad_data(0);
        for (std::size_t r = 0; r < m; ++r, z += c, dz += c) {
          // dz += G/m · (softmax(z) − onehot(label)), softmax(z) = exp((z − M) − log_sum): M is the
          // row max and log_sum ≥ 0, so the exponent is ≤ 0 (or NaN)
          const Batch<T> gb(g), mx(stats[2 * r]), ls(stats[2 * r + 1]);
          detail::for_batches<T>(c, [&](auto at) {
            at.store(at.load(dz, T(0)) + gb * detail::safe_exp_nonpos((at.load(z, T(0)) - mx) - ls),
                     dz);
          });
          dz[lab[r]] -= g;
        }
      });
}

}  // namespace

template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const std::int32_t* labels, std::size_t n_labels,
                             SourceLoc loc) {
  return softmax_cross_entropy_labels(logits, labels, n_labels, loc);
}

template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const std::int64_t* labels, std::size_t n_labels,
                             SourceLoc loc) {
  return softmax_cross_entropy_labels(logits, labels, n_labels, loc);
}

// ---- softmax cross-entropy, target distributions ----------------------------------------------

template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const Var<T>& targets, SourceLoc loc) {
  const char* name = "softmax_cross_entropy";
  check_logits(name, logits);
  detail::check_handle(name, "targets", targets);
  if (targets.shape() != logits.shape())
    throw ShapeError(std::string(name) + ": logits is " + logits.shape().str() +
                     " but targets is " + targets.shape().str() +
                     ": target distributions must have the logits' shape");
  const std::size_t m = logits.shape()[0], c = logits.shape()[1];

  auto op = logits.tape().begin_op(name, {logits, targets}, Shape{}, loc);
  T* stats = op.requires_grad() ? op.scratch(2 * m) : nullptr;  // per row: max, log-sum
  auto forward = [m, c, stats](const T* z, const T* y, T* out) {
    T loss = 0;
    for (std::size_t r = 0; r < m; ++r, z += c, y += c) {
      // −Σⱼ yⱼ log softmax(z)ⱼ = Σⱼ yⱼ (log_sum − (zⱼ − M))
      const detail::RowLse<T> s = detail::row_lse(z, c);
      const Batch<T> mx(s.max), ls(s.log_sum);
      loss += detail::reduce_batches<T>(
          c, [&](auto at) { return at.load(y, T(0)) * (ls - (at.load(z, s.max) - mx)); });
      if (stats) {
        stats[2 * r] = s.max;
        stats[2 * r + 1] = s.log_sum;
      }
    }
    out[0] = loss / T(m);
  };
  return op.finish(
      [forward](const ForwardContext<T>& ctx) {
        forward(ctx.input_data(0), ctx.input_data(1), ctx.out_data());
      },
      [stats](const BackwardContext<T>& ctx) {
        const std::size_t m = ctx.input_shape(0)[0], c = ctx.input_shape(0)[1];
        const T g = ctx.out_grad_data()[0] / T(m);
        const Batch<T> gb(g);
        if (ctx.needs_grad(0)) {
          const T* z = ctx.input_data(0);
          const T* y = ctx.input_data(1);
          T* dz = ctx.grad_data(0);
          for (std::size_t r = 0; r < m; ++r, z += c, y += c, dz += c) {
            // dz += G/m · (softmax(z) · Σy − y); the exponent (z − M) − log_sum is ≤ 0 (or NaN)
            const Batch<T> mx(stats[2 * r]), ls(stats[2 * r + 1]), sy(detail::sum(y, c));
            detail::for_batches<T>(c, [&](auto at) {
              const auto p = detail::safe_exp_nonpos((at.load(z, T(0)) - mx) - ls);
              at.store(at.load(dz, T(0)) + gb * (p * sy - at.load(y, T(0))), dz);
            });
          }
        }
        if (ctx.needs_grad(1)) {
          const T* z = ctx.input_data(0);
          T* dy = ctx.grad_data(1);
          for (std::size_t r = 0; r < m; ++r, z += c, dy += c) {
            // dy += −G/m · log softmax(z) = G/m · (log_sum − (z − M))
            const T mx = stats[2 * r], ls = stats[2 * r + 1];
            const T* __restrict zr = z;
            T* __restrict dyr = dy;
            for (std::size_t j = 0; j < c; ++j) dyr[j] += g * (ls - (zr[j] - mx));
          }
        }
      });
}

// ---- binary cross-entropy with logits ---------------------------------------------------------

template <class T>
Var<T> sigmoid_binary_cross_entropy(const Var<T>& logits, const Var<T>& targets, SourceLoc loc) {
  const char* name = "sigmoid_binary_cross_entropy";
  const std::size_t n = check_same_shape(name, "logits", logits, "targets", targets);
  auto op = logits.tape().begin_op(name, {logits, targets}, Shape{}, loc);
  auto forward = [n](const T* z, const T* y, T* out) {
    const Batch<T> zero(T(0));
    // max(z, 0) − z·y + log(1 + e^(−|z|)): e^(−|z|) ≤ 1, so nothing overflows.
    const T loss = detail::reduce_batches<T>(n, [&](auto at) {
      const auto zv = at.load(z, T(0));
      return xsimd::max(zv, zero) - zv * at.load(y, T(0)) +
             xsimd::log1p(detail::safe_exp_nonpos(-xsimd::abs(zv)));
    });
    out[0] = loss / T(n);
  };
  return op.finish(
      [forward, name](const ForwardContext<T>& ctx) {  // replay: targets checked again
        check_unit_interval(name, "targets", ctx.input_data(1), ctx.input_shape(1));
        forward(ctx.input_data(0), ctx.input_data(1), ctx.out_data());
      },
      [](const BackwardContext<T>& ctx) {
        const std::size_t n = ctx.input_size(0);
        const T g = ctx.out_grad_data()[0] / T(n);
        const T* z = ctx.input_data(0);
        const T* y = ctx.input_data(1);
        const Batch<T> gb(g);
        if (ctx.needs_grad(0)) {
          T* dz = ctx.grad_data(0);
          // dz += G/n · (σ(z) − y)
          detail::for_batches<T>(n, [&](auto at) {
            const auto sig = detail::safe_sigmoid(at.load(z, T(0)));
            at.store(at.load(dz, T(0)) + gb * (sig - at.load(y, T(0))), dz);
          });
        }
        if (ctx.needs_grad(1)) {
          T* __restrict dy = ctx.grad_data(1);
          const T* __restrict zr = z;
          for (std::size_t i = 0; i < n; ++i) dy[i] -= g * zr[i];  // dy += −G/n · z
        }
      });
}

// ---- binary cross-entropy on probabilities ----------------------------------------------------

namespace {
// p̂ = clamp(p, ε, 1 − ε) by comparisons, so that a NaN p stays NaN (min/max would drop it).
template <class B, class T>
B clamp_probability(const B& p) {
  const B lo(binary_cross_entropy_eps<T>()), hi(T(1) - binary_cross_entropy_eps<T>());
  return xsimd::select(p < lo, lo, xsimd::select(p > hi, hi, p));
}
}  // namespace

template <class T>
Var<T> binary_cross_entropy(const Var<T>& probabilities, const Var<T>& targets, SourceLoc loc) {
  const char* name = "binary_cross_entropy";
  const std::size_t n = check_same_shape(name, "probabilities", probabilities, "targets", targets);
  auto op = probabilities.tape().begin_op(name, {probabilities, targets}, Shape{}, loc);
  auto forward = [n](const T* p, const T* y, T* out) {
    const Batch<T> one(T(1));
    // −[y log p̂ + (1 − y) log(1 − p̂)]
    const T loss = detail::reduce_batches<T>(n, [&](auto at) {
      const auto ph = clamp_probability<Batch<T>, T>(at.load(p, T(0.5)));
      const auto yv = at.load(y, T(0));
      return -(yv * xsimd::log(ph) + (one - yv) * xsimd::log(one - ph));
    });
    out[0] = loss / T(n);
  };
  return op.finish(
      [forward, name](const ForwardContext<T>& ctx) {  // replay: both checked again
        check_unit_interval(name, "probabilities", ctx.input_data(0), ctx.input_shape(0));
        check_unit_interval(name, "targets", ctx.input_data(1), ctx.input_shape(1));
        forward(ctx.input_data(0), ctx.input_data(1), ctx.out_data());
      },
      [](const BackwardContext<T>& ctx) {
        const std::size_t n = ctx.input_size(0);
        const T g = ctx.out_grad_data()[0] / T(n);
        const T* p = ctx.input_data(0);
        const T* y = ctx.input_data(1);
        const Batch<T> gb(g), one(T(1));
        if (ctx.needs_grad(0)) {
          T* dp = ctx.grad_data(0);
          // dp += G/n · (p̂ − y) / (p̂ (1 − p̂))
          detail::for_batches<T>(n, [&](auto at) {
            const auto ph = clamp_probability<Batch<T>, T>(at.load(p, T(0.5)));
            at.store(at.load(dp, T(0)) + gb * (ph - at.load(y, T(0))) / (ph * (one - ph)), dp);
          });
        }
        if (ctx.needs_grad(1)) {
          T* dy = ctx.grad_data(1);
          // dy += G/n · (log(1 − p̂) − log p̂)
          detail::for_batches<T>(n, [&](auto at) {
            const auto ph = clamp_probability<Batch<T>, T>(at.load(p, T(0.5)));
            at.store(at.load(dy, T(0)) + gb * (xsimd::log(one - ph) - xsimd::log(ph)), dy);
          });
        }
      });
}

// ---- mean squared error -----------------------------------------------------------------------

template <class T>
Var<T> mse(const Var<T>& prediction, const Var<T>& target, SourceLoc loc) {
  const char* name = "mse";
  const std::size_t n = check_same_shape(name, "prediction", prediction, "target", target);
  auto op = prediction.tape().begin_op(name, {prediction, target}, Shape{}, loc);
  auto forward = [n](const T* p, const T* t, T* out) {
    const T loss = detail::reduce_batches<T>(n, [&](auto at) {
      const auto d = at.load(p, T(0)) - at.load(t, T(0));
      return d * d;
    });
    out[0] = loss / T(n);
  };
  return op.finish(
      [forward](const ForwardContext<T>& ctx) {
        forward(ctx.input_data(0), ctx.input_data(1), ctx.out_data());
      },
      [](const BackwardContext<T>& ctx) {
        const std::size_t n = ctx.input_size(0);
        const T s = T(2) * ctx.out_grad_data()[0] / T(n);
        const T* __restrict p = ctx.input_data(0);
        const T* __restrict t = ctx.input_data(1);
        if (ctx.needs_grad(0)) {  // dp += G · 2(p − t)/n
          T* __restrict dp = ctx.grad_data(0);
          for (std::size_t i = 0; i < n; ++i) dp[i] += s * (p[i] - t[i]);
        }
        if (ctx.needs_grad(1)) {  // dt += −G · 2(p − t)/n
          T* __restrict dt = ctx.grad_data(1);
          for (std::size_t i = 0; i < n; ++i) dt[i] -= s * (p[i] - t[i]);
        }
      });
}

#define WENGERT_LOSSES(T)                                                                   \
  template Var<T> softmax_cross_entropy<T>(const Var<T>&, const std::int32_t*, std::size_t, \
                                           SourceLoc);                                      \
  template Var<T> softmax_cross_entropy<T>(const Var<T>&, const std::int64_t*, std::size_t, \
                                           SourceLoc);                                      \
  template Var<T> softmax_cross_entropy<T>(const Var<T>&, const Var<T>&, SourceLoc);        \
  template Var<T> sigmoid_binary_cross_entropy<T>(const Var<T>&, const Var<T>&, SourceLoc); \
  template Var<T> binary_cross_entropy<T>(const Var<T>&, const Var<T>&, SourceLoc);         \
  template Var<T> mse<T>(const Var<T>&, const Var<T>&, SourceLoc);

WENGERT_LOSSES(float)
WENGERT_LOSSES(double)
#undef WENGERT_LOSSES

}  // namespace wengert
