// wengert — small xsimd kernels shared by the elementwise ops. Included by ops/src only: xsimd
// is a heavy header and its batch width follows the compile flags (-march), so kernels are
// compiled once, in the library.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace wengert::detail {

// The last, partial batch of an array: lanes [0, r) from p, the rest zero (r < batch size).
// With AVX-512 this is one masked load. Otherwise the lanes go through a zeroed stack buffer —
// which costs a store-forwarding stall (narrow stores, then a wide load), the reason for the
// masked form: at [1,1] the tail is the whole tensor.
template <class B, class T>
inline B load_tail(const T* p, std::size_t r) {
#if defined(__AVX512F__)
  if constexpr (sizeof(typename B::register_type) == 64) {
    if constexpr (std::is_same_v<T, float>)
      return B(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << r) - 1), p));
    else
      return B(_mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << r) - 1), p));
  }
#endif
  alignas(64) T buf[B::size] = {};
  std::copy(p, p + r, buf);
  return B::load_aligned(buf);
}

template <class B, class T>
inline void store_tail(const B& v, T* p, std::size_t r) {
#if defined(__AVX512F__)
  if constexpr (sizeof(typename B::register_type) == 64) {
    if constexpr (std::is_same_v<T, float>)
      _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << r) - 1), v);
    else
      _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << r) - 1), v);
    return;
  }
#endif
  alignas(64) T buf[B::size];
  v.store_aligned(buf);
  std::copy(buf, buf + r, p);
}

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

/// out[i] = f(in[i]) for i < n, where f maps an xsimd::batch<T> to a batch (e.g.
/// [](auto v) { return xsimd::tanh(v); }). The tail shorter than one batch is computed as a
/// zero-padded batch too, so every element — whatever n — goes through the same SIMD code and
/// results do not depend on a tensor's size or on an element's position. The padding lanes'
/// results are discarded.
template <class T, class F>
inline void simd_map(const T* in, T* out, std::size_t n, F f) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  std::size_t i = 0;
  for (; i + W <= n; i += W) f(B::load_unaligned(in + i)).store_unaligned(out + i);
  if (i < n) store_tail(f(load_tail<B>(in + i, n - i)), out + i, n - i);
}

/// Sum of p[0..n) with four batch accumulators (vectorised, and more accurate than one running
/// scalar sum for long float arrays).
template <class T>
inline T simd_sum(const T* p, std::size_t n) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  std::size_t i = 0;
  T s = 0;
  if (n >= W) {
    B a0(T(0)), a1(T(0)), a2(T(0)), a3(T(0));
    for (; i + 4 * W <= n; i += 4 * W) {
      a0 += B::load_unaligned(p + i);
      a1 += B::load_unaligned(p + i + W);
      a2 += B::load_unaligned(p + i + 2 * W);
      a3 += B::load_unaligned(p + i + 3 * W);
    }
    for (; i + W <= n; i += W) a0 += B::load_unaligned(p + i);
    s = xsimd::hadd((a0 + a1) + (a2 + a3));
  }
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace wengert::detail
