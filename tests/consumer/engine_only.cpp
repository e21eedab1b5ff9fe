// Consumer smoke test of the engine alone (wengert::engine: no ops, no BLAS, no zlib): a user's
// own op recorded through the custom-op API, differentiated, and checked by gradcheck.
#include <wengert/gradcheck.hpp>
#include <wengert/tape.hpp>

#include <cstdio>

namespace {

// y = x³ elementwise; dy/dx = 3x².
template <class T>
wengert::Var<T> cube(const wengert::Var<T>& x) {
  auto op = x.tape().begin_op("cube", {x}, x.shape());
  const T* in = op.input_data(0);
  T* out = op.out_data();
  for (std::size_t i = 0; i < op.out_size(); ++i) out[i] = in[i] * in[i] * in[i];
  return op.finish([](const wengert::BackwardContext<T>& c) {
    if (!c.needs_grad(0)) return;
    const T* xv = c.input_data(0);
    const T* g = c.out_grad_data();
    T* dx = c.grad_data(0);
    for (std::size_t i = 0; i < c.out_size(); ++i) dx[i] += g[i] * T(3) * xv[i] * xv[i];
  });
}

}  // namespace

int main() {
  using namespace wengert;
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>{1.0, -2.0});
  auto y = cube(x);
  tape.backward(y, xt::xarray<double>{1.0, 1.0});
  const bool grads_ok = x.grad()(0) == 3.0 && x.grad()(1) == 12.0;
  auto r = gradcheck([](const std::vector<Var<double>>& in) { return cube(in[0]); },
                     {xt::xarray<double>{{0.5, -1.5}, {2.0, 0.25}}});
  std::printf("engine only: dy/dx = %g %g, gradcheck %s\n", x.grad()(0), x.grad()(1),
              r ? "ok" : r.message.c_str());
  return grads_ok && r ? 0 : 1;
}
