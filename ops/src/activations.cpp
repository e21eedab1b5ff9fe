// wengert — activations (see activations.hpp).
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/ops/activations.hpp>

#include "detail/record.hpp"

namespace wengert {

template <class T>
Var<T> sigmoid(const Var<T>& x, SourceLoc loc) {
  return detail::record_unary<T>(
      "sigmoid", x, loc,
      [](const T* in, T* out, std::size_t n) {
        detail::simd_map(in, out, n, [](auto v) { return detail::safe_sigmoid(v); });
      },
      [](T g, T, T y) { return g * y * (T(1) - y); });  // ∂/∂x = y(1 − y)
}

template <class T>
Var<T> tanh(const Var<T>& x, SourceLoc loc) {
  return detail::record_unary<T>(
      "tanh", x, loc,
      [](const T* in, T* out, std::size_t n) {
        detail::simd_map(in, out, n, [](auto v) { return detail::safe_tanh(v); });
      },
      [](T g, T, T y) { return g * (T(1) - y * y); });  // ∂/∂x = 1 − y²
}

template <class T>
Var<T> relu(const Var<T>& x, SourceLoc loc) {
  return detail::record_unary<T>(
      "relu", x, loc,
      [](const T* __restrict in, T* __restrict out, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) out[i] = in[i] < T(0) ? T(0) : in[i];
      },
      [](T g, T x, T) { return x > T(0) ? g : T(0); });  // ∂/∂x = [x > 0]
}

#define WENGERT_ACTIVATIONS(T)                          \
  template Var<T> sigmoid<T>(const Var<T>&, SourceLoc); \
  template Var<T> tanh<T>(const Var<T>&, SourceLoc);    \
  template Var<T> relu<T>(const Var<T>&, SourceLoc);

WENGERT_ACTIVATIONS(float)
WENGERT_ACTIVATIONS(double)
#undef WENGERT_ACTIVATIONS

}  // namespace wengert
