// A user-defined op, written only against wengert's public record API — the same API every
// built-in op uses. See README.md next to this file for a walkthrough.
//
// softsign(x) = x / (1 + |x|), elementwise.   d/dx softsign(x) = 1 / (1 + |x|)².
//
// (wengert has no built-in softsign; its softplus is built in — ops/src/softplus.cpp is the same
// recipe, vectorised.) This program is also the op's test (ctest runs it as example_custom_op):
// it checks the forward values against the closed form, the gradient with wengert::gradcheck on
// several shapes, a composition with built-in ops, the edges (±inf, ±1e30) and a float32 run; it
// exits non-zero if anything fails.
#include <wengert/gradcheck.hpp>   // gradcheck: finite differences vs. backward
#include <wengert/ops/losses.hpp>  // mse, to compose the custom op with built-in ones
#include <wengert/ops/matmul.hpp>  // matmul
#include <wengert/tape.hpp>        // Tape, Var, begin_op / finish: the whole custom-op API

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace {

/// softsign(x) = x / (1 + |x|), a smooth sign in (−1, 1). Derivative: 1 / (1 + |x|)².
/// ±inf gives ±1 (inf/inf would be nan); nan stays nan.
template <class T>
wengert::Var<T> softsign(const wengert::Var<T>& x,
                         wengert::SourceLoc loc = wengert::SourceLoc::current()) {
  // 1. Start the tape entry: a name (a string literal), the inputs, the output's shape, and
  //    the call site (shown by Tape::print and by anomaly mode).
  auto op = x.tape().begin_op("softsign", {x}, x.shape(), loc);

  // 2. Forward: write the value into the output, which the tape owns.
  const T* in = op.input_data(0);
  T* out = op.out_data();
  for (std::size_t i = 0; i < op.out_size(); ++i)
    out[i] = std::isinf(in[i]) ? std::copysign(T(1), in[i]) : in[i] / (T(1) + std::abs(in[i]));

  // 3. Backward: a closure the sweep calls with the output's adjoint. It accumulates (+=)
  //    into the adjoint of each input that needs one, and skips the others. It captures
  //    nothing here; whatever it captures must be trivially destructible or is destroyed
  //    when the tape is cleared.
  return op.finish([](const wengert::BackwardContext<T>& c) {
    if (!c.needs_grad(0)) return;
    const T* xv = c.input_data(0);
    const T* g = c.out_grad_data();
    T* dx = c.grad_data(0);
    for (std::size_t i = 0; i < c.out_size(); ++i) {
      const T d = T(1) / (T(1) + std::abs(xv[i]));  // 0 at ±inf, never nan
      dx[i] += g[i] * d * d;
    }
  });
}

int failures = 0;

void expect(bool ok, const char* what, const std::string& detail = {}) {
  std::printf("%s  %s%s%s\n", ok ? "ok  " : "FAIL", what, detail.empty() ? "" : ": ",
              detail.c_str());
  if (!ok) ++failures;
}

}  // namespace

int main() {
  using namespace wengert;

  // Forward against the closed form.
  {
    Tape<double> tape;
    const std::vector<double> xs = {-1e30, -3.0, -0.5, 0.0, 0.5, 3.0, 1e30};
    auto x = tape.constant(xs.data(), Shape{xs.size()});
    auto y = softsign(x);
    bool ok = true;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const double want = xs[i] / (1.0 + std::abs(xs[i]));
      ok = ok && std::abs(y.data()[i] - want) <= 1e-15 * (1.0 + std::abs(want));
    }
    expect(ok, "forward equals x / (1 + |x|)");
  }

  // The edges: ±inf give ±1 with gradient 0, nan stays nan.
  {
    Tape<double> tape;
    const double inf = std::numeric_limits<double>::infinity();
    auto x = tape.variable(xt::xarray<double>{-inf, inf, std::nan("")});
    auto y = softsign(x);
    tape.backward(y, xt::xarray<double>{1.0, 1.0, 1.0});
    expect(y.value()(0) == -1.0 && y.value()(1) == 1.0 && std::isnan(y.value()(2)),
           "softsign(-inf) = -1, softsign(inf) = 1, softsign(nan) = nan");
    expect(x.grad()(0) == 0.0 && x.grad()(1) == 0.0 && std::isnan(x.grad()(2)),
           "gradient 0 at +-inf, nan at nan");
  }

  // The gradient, by finite differences (gradcheck), on several shapes.
  for (const auto& input : {xt::xarray<double>{0.3}, xt::xarray<double>{-2.0, -0.1, 0.0, 0.7, 4.0},
                            xt::xarray<double>{{0.5, -1.5, 2.5}, {-3.0, 1.0, 0.25}}}) {
    auto r = gradcheck([](const std::vector<Var<double>>& v) { return softsign(v[0]); }, {input});
    expect(r.ok, "gradcheck softsign", r.message);
  }

  // Composed with built-in ops: the custom op is an ordinary tape entry.
  {
    auto f = [](const std::vector<Var<double>>& v) {
      return mse(softsign(matmul(v[0], v[1])), v[2]);
    };
    auto r = gradcheck(f, {xt::xarray<double>{{0.2, -0.4}, {1.1, 0.3}, {-0.7, 0.9}},
                           xt::xarray<double>{{0.5, -1.0, 0.3}, {0.8, 0.1, -0.6}},
                           xt::xarray<double>{{0.1, 0.2, 0.3}, {0.4, 0.5, 0.6}, {0.7, 0.8, 0.9}}});
    expect(r.ok, "gradcheck mse(softsign(matmul(a, b)), t)", r.message);
  }

  // float32: d/dx softsign = 1 / (1 + |x|)², read back after backward.
  {
    Tape<float> tape;
    auto x = tape.variable(xt::xarray<float>{-1.0f, 0.0f, 2.0f});
    tape.backward(softsign(x), xt::xarray<float>{1.0f, 1.0f, 1.0f});  // seed: dL/dy = 1
    bool ok = true;
    for (std::size_t i = 0; i < 3; ++i) {
      const float d = 1.0f / (1.0f + std::abs(x.data()[i]));
      ok = ok && std::abs(x.grad_data()[i] - d * d) <= 1e-6f;
    }
    expect(ok, "float32 gradient equals 1 / (1 + |x|)^2");
  }

  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
