// wengert — softplus (see softplus.hpp).
#include "detail/kernels.hpp"  // first: see its comment

#include <wengert/ops/softplus.hpp>

#include "detail/record.hpp"

namespace wengert {

template <class T>
Var<T> softplus(const Var<T>& x, SourceLoc loc) {
  constexpr const char* name = "softplus";
  detail::check_handle(name, "x", x);
  // The pointer form of begin_op reads the handle in place (as record_unary does).
  auto op = x.tape().begin_op(name, &x, 1, x.shape(), loc);
  // y = max(x, 0) + log1p(e^(−|x|)); a nan input gives nan through the log1p term. Run now and
  // again by replay.
  auto forward = [](const T* x, T* y, std::size_t n) {
    detail::simd_map(x, y, n, [](auto v) {
      using B = decltype(v);
      return xsimd::max(v, B(T(0))) + xsimd::log1p(detail::safe_exp_nonpos(-xsimd::abs(v)));
    });
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {
        forward(c.input_data(0), c.out_data(), c.out_size());
      },
      [](const BackwardContext<T>& c) {
        if (!c.needs_grad(0)) return;
        // dx += G·σ(x), in batches: the input is all backward reads.
        const T* xv = c.input_data(0);
        const T* g = c.out_grad_data();
        T* gx = c.grad_data(0);
        detail::for_batches<T>(c.out_size(), [&](auto at) {
          at.store(at.load(gx, T(0)) + at.load(g, T(0)) * detail::safe_sigmoid(at.load(xv, T(0))),
                   gx);
        });
      });
}

template Var<float> softplus<float>(const Var<float>&, SourceLoc);
template Var<double> softplus<double>(const Var<double>&, SourceLoc);

}  // namespace wengert
