// wengert — private helpers of the neural-network ops (matmul, bias_add, softmax, losses):
// argument checks that name the op and the argument, and xsimd kernels over contiguous rows.
//
// Included by ops/src only (never installed): xsimd is a heavy header, and its batch width
// follows -march, so the kernels are compiled once, in the library.
//
// Kernels walk an array in batches of xsimd::batch<T>::size lanes. The tail shorter than one
// batch is loaded into a padded batch on the stack and computed by the same SIMD code, so an
// element's result does not depend on the array's length or the element's position. Reductions
// discard the padding lanes with a mask.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include <xsimd/xsimd.hpp>

#include "simd.hpp"

#include <wengert/tape.hpp>

namespace wengert::detail::nn {

// ---- argument checks -------------------------------------------------------------------------

[[noreturn]] inline void throw_bad_handle(const char* op, const char* arg, const std::string& why) {
  throw UsageError(std::string(op) + ": argument " + arg + " is " + why);
}

/// Throws UsageError naming `op` and `arg` if `v` is empty or stale (before any shape is read,
/// so that the message names the op and not only the handle).
template <class T>
inline void check_handle(const char* op, const char* arg, const Var<T>& v) {
  v.check_thread(op);  // before any read of the tape, which another thread may own
  if (v.valid()) return;
  throw_bad_handle(op, arg, v.invalid_reason());
}

// ---- batch walks -----------------------------------------------------------------------------

template <class T>
using Batch = xsimd::batch<T>;

/// A full batch at offset i: plain unaligned loads and stores.
template <class T>
struct FullAt {
  std::size_t i;
  Batch<T> load(const T* p, T /*fill*/) const { return Batch<T>::load_unaligned(p + i); }
  void store(const Batch<T>& v, T* p) const { v.store_unaligned(p + i); }
};

/// The last, partial batch at offset i with `count` < size valid lanes; the other lanes are
/// loaded as `fill` and never stored.
template <class T>
struct TailAt {
  std::size_t i, count;
  Batch<T> load(const T* p, T fill) const {
    alignas(64) T buf[Batch<T>::size];
    for (std::size_t k = 0; k < Batch<T>::size; ++k) buf[k] = k < count ? p[i + k] : fill;
    return Batch<T>::load_aligned(buf);
  }
  void store(const Batch<T>& v, T* p) const {
    alignas(64) T buf[Batch<T>::size];
    v.store_aligned(buf);
    for (std::size_t k = 0; k < count; ++k) p[i + k] = buf[k];
  }
  /// Lanes [0, count) set.
  xsimd::batch_bool<T> mask() const {
    alignas(64) T idx[Batch<T>::size];
    for (std::size_t k = 0; k < Batch<T>::size; ++k) idx[k] = T(k);
    return Batch<T>::load_aligned(idx) < Batch<T>(T(count));
  }
};

/// Calls f(at) for every batch of [0, n), `at` being a FullAt or (last) a TailAt: f loads its
/// operands with at.load(ptr, fill) and stores results with at.store(batch, ptr).
template <class T, class F>
inline void for_batches(std::size_t n, F&& f) {
  constexpr std::size_t W = Batch<T>::size;
  std::size_t i = 0;
  for (; i + W <= n; i += W) f(FullAt<T>{i});
  if (i < n) f(TailAt<T>{i, n - i});
}

/// Σ over [0, n) of the lanes of f(at) (as for_batches); padding lanes are discarded. Two
/// accumulators, so that consecutive batches do not wait on one another.
template <class T, class F>
inline T reduce_batches(std::size_t n, F&& f) {
  constexpr std::size_t W = Batch<T>::size;
  Batch<T> a0(T(0)), a1(T(0));
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    a0 += f(FullAt<T>{i});
    a1 += f(FullAt<T>{i + W});
  }
  for (; i + W <= n; i += W) a0 += f(FullAt<T>{i});
  if (i < n) {
    TailAt<T> at{i, n - i};
    a1 += xsimd::select(at.mask(), f(at), Batch<T>(T(0)));
  }
  return xsimd::hadd(a0 + a1);
}

/// Whether some x[i] < lo or x[i] > hi (a NaN is neither). One vectorised pass, no early exit:
/// the common case is that every element is in range.
template <class T>
inline bool any_outside(const T* x, std::size_t n, T lo, T hi) {
  constexpr std::size_t W = Batch<T>::size;
  const Batch<T> blo(lo), bhi(hi);
  xsimd::batch_bool<T> bad0(false), bad1(false);
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const Batch<T> a = Batch<T>::load_unaligned(x + i), b = Batch<T>::load_unaligned(x + i + W);
    bad0 = bad0 | (a < blo) | (a > bhi);
    bad1 = bad1 | (b < blo) | (b > bhi);
  }
  bool bad = xsimd::any(bad0 | bad1);
  for (; i < n; ++i) bad |= (x[i] < lo) | (x[i] > hi);
  return bad;
}

// ---- row kernels -----------------------------------------------------------------------------

/// max(x[0..n)), n ≥ 1. A NaN in the row may or may not be returned; callers that go on to
/// compute exp(x − max) propagate it either way.
template <class T>
inline T row_max(const T* x, std::size_t n) {
  constexpr std::size_t W = Batch<T>::size;
  T m = x[0];
  std::size_t i = 0;
  if (n >= W) {
    Batch<T> b = Batch<T>::load_unaligned(x);
    for (i = W; i + W <= n; i += W) b = xsimd::max(b, Batch<T>::load_unaligned(x + i));
    alignas(64) T buf[W];
    b.store_aligned(buf);
    for (std::size_t k = 0; k < W; ++k) m = buf[k] > m ? buf[k] : m;
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

/// Σ exp(x[i] − shift) over [0, n).
template <class T>
inline T sum_exp(const T* x, std::size_t n, T shift) {
  const Batch<T> s(shift);
  return reduce_batches<T>(n, [&](auto at) { return detail::safe_exp(at.load(x, shift) - s); });
}

/// out[i] = exp(x[i] − shift); returns Σ out[i].
template <class T>
inline T exp_shifted(const T* x, T* out, std::size_t n, T shift) {
  const Batch<T> s(shift);
  return reduce_batches<T>(n, [&](auto at) {
    Batch<T> e = detail::safe_exp(at.load(x, shift) - s);
    at.store(e, out);
    return e;
  });
}

/// Σ a[i]·b[i].
template <class T>
inline T dot(const T* a, const T* b, std::size_t n) {
  return reduce_batches<T>(n, [&](auto at) { return at.load(a, T(0)) * at.load(b, T(0)); });
}

/// Σ a[i].
template <class T>
inline T sum(const T* a, std::size_t n) {
  return reduce_batches<T>(n, [&](auto at) { return at.load(a, T(0)); });
}

/// Per-row statistics of a max-subtracted log-sum-exp: log Σⱼ exp(xⱼ) = max + log_sum, where
/// log_sum = log Σⱼ exp(xⱼ − max) ∈ [0, log n]. Kept apart so that a log-probability
/// (xⱼ − max) − log_sum never adds log_sum to a large max and loses its low bits.
template <class T>
struct RowLse {
  T max;
  T log_sum;
};

template <class T>
inline RowLse<T> row_lse(const T* x, std::size_t n) {
  const T m = row_max(x, n);
  return {m, std::log(sum_exp(x, n, m))};
}

}  // namespace wengert::detail::nn
