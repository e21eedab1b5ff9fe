// wengert — the ops' SIMD kernel kit: xsimd kernels over contiguous arrays. Private to ops/src
// (never installed); the tests and benchmarks that check a kernel alone may include it too.
// xsimd is a heavy header and its batch width follows -march, so the kernels are compiled once,
// in the library.
//
// Every kernel walks an array in batches of W = xsimd::batch<T>::size lanes (for_batches,
// reduce_batches). The tail shorter than one batch is loaded into a whole batch whose missing
// lanes hold a fill value, computed by the same SIMD code, and stored back without touching the
// memory past the end; reductions discard the fill lanes with a mask. So an element's result
// does not depend on the array's length or on the element's position — up to fused
// multiply-adds: gcc's C++ default is -ffp-contract=fast, and it may contract a*b + c in the
// whole-batch code and not in the tail's (log_softmax's backward does). With AVX-512 a tail is one
// masked load and one masked store; narrower instruction sets go through a stack buffer (narrow
// stores, then a wide load: a store-forwarding stall, which is why AVX-512 uses the masked form —
// at [1,1] the tail is the whole tensor).
#pragma once

// (gcc 12's false -Wuninitialized reports inside avx512fintrin.h, where xsimd's AVX-512 kernels
// are inlined, are silenced for every source by cmake/gcc_intrinsics_prelude.hpp.)

#include <cmath>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace wengert::detail {

template <class T>
using Batch = xsimd::batch<T>;

// ---- tails -----------------------------------------------------------------------------------

/// Whether Batch<T> is an AVX-512 register, whose tails are masked loads and stores.
#if defined(__AVX512F__)
template <class T>
constexpr bool kMaskedTails = sizeof(typename Batch<T>::register_type) == 64;
#else
template <class T>
constexpr bool kMaskedTails = false;
#endif

/// Lanes [0, count) of a batch loaded from p, the others `fill` (count < W). p[count..] is not
/// read.
template <class T>
inline Batch<T> load_tail(const T* p, std::size_t count, T fill) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
#if defined(__AVX512F__)
  if constexpr (kMaskedTails<T>) {
    if constexpr (std::is_same_v<T, float>)
      return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), __mmask16((1u << count) - 1), p);
    else
      return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), __mmask8((1u << count) - 1), p);
  }
#endif
  alignas(64) T buf[Batch<T>::size];
  for (std::size_t k = 0; k < Batch<T>::size; ++k) buf[k] = k < count ? p[k] : fill;
  return Batch<T>::load_aligned(buf);
}

/// Stores lanes [0, count) of v to p[0..count) (count < W); p[count..] is not written.
template <class T>
inline void store_tail(const Batch<T>& v, T* p, std::size_t count) {
#if defined(__AVX512F__)
  if constexpr (kMaskedTails<T>) {
    if constexpr (std::is_same_v<T, float>)
      _mm512_mask_storeu_ps(p, __mmask16((1u << count) - 1), v);
    else
      _mm512_mask_storeu_pd(p, __mmask8((1u << count) - 1), v);
    return;
  }
#endif
  alignas(64) T buf[Batch<T>::size];
  v.store_aligned(buf);
  for (std::size_t k = 0; k < count; ++k) p[k] = buf[k];
}

/// Lanes [0, count) set.
template <class T>
inline xsimd::batch_bool<T> tail_mask(std::size_t count) {
  if constexpr (kMaskedTails<T>) {
    using Mask = typename xsimd::batch_bool<T>::register_type;  // __mmask16 or __mmask8
    return xsimd::batch_bool<T>(Mask((1u << count) - 1));
  } else {
    alignas(64) T idx[Batch<T>::size];
    for (std::size_t k = 0; k < Batch<T>::size; ++k) idx[k] = T(k);
    return Batch<T>::load_aligned(idx) < Batch<T>(T(count));
  }
}

// ---- batch walks -----------------------------------------------------------------------------

/// A whole batch at offset i: plain unaligned loads and stores.
template <class T>
struct FullAt {
  std::size_t i;
  Batch<T> load(const T* p, T /*fill*/) const { return Batch<T>::load_unaligned(p + i); }
  void store(const Batch<T>& v, T* p) const { v.store_unaligned(p + i); }
};

/// The last, partial batch at offset i with `count` < W valid lanes; the other lanes are loaded
/// as `fill` and never stored.
template <class T>
struct TailAt {
  std::size_t i, count;
  Batch<T> load(const T* p, T fill) const { return load_tail(p + i, count, fill); }
  void store(const Batch<T>& v, T* p) const { store_tail(v, p + i, count); }
  xsimd::batch_bool<T> mask() const { return tail_mask<T>(count); }
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

/// Σ over [0, n) of the lanes of f(at) (as for_batches); the tail's fill lanes are discarded.
/// Two accumulators, so that consecutive batches do not wait on one another.
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

/// out[i] = f(in[i]) for i < n, where f maps a Batch<T> to a Batch<T> (e.g.
/// [](auto v) { return safe_tanh(v); }). The tail's fill lanes are 0.
template <class T, class F>
inline void simd_map(const T* in, T* out, std::size_t n, F f) {
  for_batches<T>(n, [&](auto at) { at.store(f(at.load(in, T(0))), out); });
}

// ---- math with safe domain edges -------------------------------------------------------------

/// xsimd 8's exp, log and tanh with their domain edges made safe. Its exp converts
/// round(x / ln 2) to an integer with a plain cast, undefined behaviour for x = −inf, NaN or
/// |x| beyond the integer range (found by the fuzzer, tests/fuzz/regressions/); its double log
/// is wrong for subnormal inputs (log(4.9e-324) gave −746.5, not −744.4). exp clamps x to where
/// the result is already 0 or inf and keeps NaN; log scales a subnormal by 2^54 and subtracts
/// 54·ln 2; tanh clamps to ±20, where tanh is ±1 in float and double.
template <class B>
inline B safe_exp(const B& x) {
  using T = typename B::value_type;
  const B lo(std::is_same_v<T, float> ? T(-104) : T(-746));
  const B hi(std::is_same_v<T, float> ? T(89) : T(710));
  const B r = xsimd::exp(xsimd::min(xsimd::max(x, lo), hi));
  return xsimd::select(xsimd::isnan(x), x, r);
}

/// safe_exp for an argument known to be ≤ 0 or NaN — x − max over a row (the row max, so every
/// non-NaN x is at most it and the rounded difference is ≤ 0; inf − inf and NaN give NaN),
/// (x − max) − log_sum (log_sum ≥ 0: the sum includes exp(0) = 1), a log-probability, −|x|.
/// Such an x never reaches xsimd's overflow side (x ≥ 88.7 in float, 709.8 in double, where
/// exp returns inf), so only the lower clamp is kept: it sends −inf and huge negative x to
/// where exp is already 0 and stays exact, and — x86's max returns its second operand when the
/// first is NaN, as safe_exp relies on too — keeps NaN away from xsimd's integer conversion (the
/// undefined behaviour the fuzzer found). The NaN select then puts NaN back, so a NaN logit
/// still gives a NaN loss. Bit for bit safe_exp on its domain, one min per batch cheaper. Not
/// for an x that may be positive: a huge one would reach the conversion's undefined range.
/// Always inlined and flattened: left to itself gcc 12 calls xsimd's exp out of line from the
/// loss loops, spilling their registers around every call (sigmoid BCE's forward ran 10% slower,
/// and 17x slower under some address layouts).
template <class B>
[[gnu::always_inline, gnu::flatten]] inline B safe_exp_nonpos(const B& x) {
  using T = typename B::value_type;
  const B lo(std::is_same_v<T, float> ? T(-104) : T(-746));
  const B r = xsimd::exp(xsimd::max(x, lo));
  return xsimd::select(xsimd::isnan(x), x, r);
}

template <class B>
inline B safe_log(const B& x) {
  using T = typename B::value_type;
  constexpr bool f32 = std::is_same_v<T, float>;
  constexpr int k = f32 ? 24 : 54;  // 2^k lifts any subnormal into the normal range
  const auto sub = (x < B(f32 ? T(0x1p-126f) : T(0x1p-1022))) & (x > B(T(0)));
  const B r = xsimd::log(xsimd::select(sub, x * B(T(f32 ? 0x1p24f : 0x1p54)), x));
  return xsimd::select(sub, r - B(T(k * 0.693147180559945309417232121458176568L)), r);
}

template <class B>
inline B safe_tanh(const B& x) {
  using T = typename B::value_type;
  const B r = xsimd::tanh(xsimd::min(xsimd::max(x, B(T(-20))), B(T(20))));
  return xsimd::select(xsimd::isnan(x), x, r);
}

/// σ(x) = 1/(1 + e^(−x)) without overflow for any x: from e = e^(−|x|) ∈ (0, 1], σ is 1/(1 + e)
/// for x ≥ 0 and e/(1 + e) below. NaN stays NaN. The one sigmoid of the ops (the activation,
/// the binary cross-entropy's gradient).
template <class B>
inline B safe_sigmoid(const B& x) {
  using T = typename B::value_type;
  const B e = safe_exp_nonpos(-xsimd::abs(x));
  const B r = B(T(1)) / (B(T(1)) + e);
  return xsimd::select(x >= B(T(0)), r, e * r);
}

// ---- array kernels ---------------------------------------------------------------------------

/// Σ a[i].
template <class T>
inline T sum(const T* a, std::size_t n) {
  return reduce_batches<T>(n, [&](auto at) { return at.load(a, T(0)); });
}

/// Σ a[i]·b[i].
template <class T>
inline T dot(const T* a, const T* b, std::size_t n) {
  return reduce_batches<T>(n, [&](auto at) { return at.load(a, T(0)) * at.load(b, T(0)); });
}

/// Whether some x[i] < lo or x[i] > hi (a NaN is neither). One vectorised pass, no early exit:
/// the common case is that every element is in range.
template <class T>
inline bool any_outside(const T* x, std::size_t n, T lo, T hi) {
  const Batch<T> blo(lo), bhi(hi);
  xsimd::batch_bool<T> bad(false);
  for_batches<T>(n, [&](auto at) {
    const Batch<T> v = at.load(x, lo);  // fill lanes are in range
    bad = bad | (v < blo) | (v > bhi);
  });
  return xsimd::any(bad);
}

// ---- row kernels (softmax, log_softmax, the cross-entropies) ---------------------------------

/// max(x[0..n)), n ≥ 1. A NaN in the row may or may not be returned; callers that go on to
/// compute exp(x − max) propagate it either way.
template <class T>
inline T row_max(const T* x, std::size_t n) {
  constexpr std::size_t W = Batch<T>::size;
  T m = x[0];
  // The first batch seeds the running max (a short row's fill lanes repeat x[0]).
  Batch<T> b = n >= W ? Batch<T>::load_unaligned(x) : load_tail(x, n, m);
  if (n > W) for_batches<T>(n - W, [&](auto at) { b = xsimd::max(b, at.load(x + W, m)); });
  alignas(64) T buf[W];
  b.store_aligned(buf);
  for (std::size_t k = 0; k < W; ++k) m = buf[k] > m ? buf[k] : m;
  return m;
}

/// Σ exp(x[i] − shift) over [0, n), for any shift (logsumexp shifts a row whose max is NaN by 0).
template <class T>
inline T sum_exp(const T* x, std::size_t n, T shift) {
  const Batch<T> s(shift);
  return reduce_batches<T>(n, [&](auto at) { return safe_exp(at.load(x, shift) - s); });
}

/// Σ exp(x[i] − max) over [0, n), where max = row_max(x, n): every x[i] − max is ≤ 0 or NaN
/// (safe_exp_nonpos). The tail's fill lanes are max − max.
template <class T>
inline T sum_exp_below_max(const T* x, std::size_t n, T max) {
  const Batch<T> s(max);
  return reduce_batches<T>(n, [&](auto at) { return safe_exp_nonpos(at.load(x, max) - s); });
}

/// out[i] = exp(x[i] − max), where max = row_max(x, n) (so every argument is ≤ 0 or NaN:
/// safe_exp_nonpos); returns Σ out[i].
template <class T>
inline T exp_below_max(const T* x, T* out, std::size_t n, T max) {
  const Batch<T> s(max);
  return reduce_batches<T>(n, [&](auto at) {
    const Batch<T> e = safe_exp_nonpos(at.load(x, max) - s);
    at.store(e, out);
    return e;
  });
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
  return {m, std::log(sum_exp_below_max(x, n, m))};
}

}  // namespace wengert::detail
