// Consumer smoke test: seed 002 through the public headers, exit code says pass/fail.
#include <wengert/wengert.hpp>

#include <cstdio>

int main() {
  using namespace wengert;
  Parameter<double> w(xt::xarray<double>{1.0, 2.0}), b(xt::xarray<double>{2.0});
  Tape<double> tape;
  auto wv = tape.param(w);
  auto x = tape.constant(1.0), y = tape.constant(2.0);
  auto w1 = sum(wv * tape.constant(xt::xarray<double>{1.0, 0.0}));
  auto w2 = sum(wv * tape.constant(xt::xarray<double>{0.0, 1.0}));
  auto yhat = w1 * square(x) + w2 * x + sum(tape.param(b));
  auto loss = square(yhat - y);
  tape.backward(loss);
  std::printf("loss %g grads %g %g %g\n", loss.item(), w.grad()(0), w.grad()(1), b.grad()(0));
  bool ok = loss.item() == 9 && w.grad()(0) == 6 && w.grad()(1) == 6 && b.grad()(0) == 6;
  return ok ? 0 : 1;
}
