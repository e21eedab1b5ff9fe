// A user-defined op, written only against wengert's public record API — the same API every
// built-in op uses. See README.md next to this file for a walkthrough.
//
// softplus(x) = log(1 + eˣ), elementwise.   d/dx softplus(x) = σ(x) = 1 / (1 + e⁻ˣ).
//
// This program is also the op's test (ctest runs it as example_custom_op): it checks the forward
// values against the closed form, the gradient with wengert::gradcheck on several shapes, a
// composition with built-in ops, and a float32 run; it exits non-zero if anything fails.
#include <wengert/gradcheck.hpp>     // gradcheck: finite differences vs. backward
#include <wengert/ops/losses.hpp>     // mse, to compose the custom op with built-in ones
#include <wengert/ops/matmul.hpp>     // matmul
#include <wengert/tape.hpp>           // Tape, Var, begin_op / finish: the whole custom-op API

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

/// softplus(x) = log(1 + eˣ), computed as max(x, 0) + log1p(e^(−|x|)) so that e^(...) never
/// overflows (softplus(1000) = 1000, not inf). Derivative: σ(x).
template <class T>
wengert::Var<T> softplus(const wengert::Var<T>& x,
                         wengert::SourceLoc loc = wengert::SourceLoc::current()) {
  // 1. Start the tape entry: a name (a string literal), the inputs, the output's shape, and
  //    the call site (shown by Tape::print and by anomaly mode).
  auto op = x.tape().begin_op("softplus", {x}, x.shape(), loc);

  // 2. Forward: write the value into the output, which the tape owns.
  const T* in = op.input_data(0);
  T* out = op.out_data();
  for (std::size_t i = 0; i < op.out_size(); ++i)
    out[i] = std::max(in[i], T(0)) + std::log1p(std::exp(-std::abs(in[i])));

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
      const T e = std::exp(-std::abs(xv[i]));  // σ(x) from e^(−|x|), stable both ways
      const T sigma = xv[i] >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
      dx[i] += g[i] * sigma;
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

  // Forward against the closed form, including values where a naive log(1 + eˣ) overflows.
  {
    Tape<double> tape;
    const std::vector<double> xs = {-800.0, -3.0, -0.5, 0.0, 0.5, 3.0, 800.0};
    auto x = tape.constant(xs.data(), Shape{xs.size()});
    auto y = softplus(x);
    bool ok = true;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const double want = xs[i] > 30 ? xs[i] : std::log(1.0 + std::exp(xs[i]));
      ok = ok && std::abs(y.data()[i] - want) <= 1e-12 * (1.0 + std::abs(want));
    }
    expect(ok, "forward equals log(1 + e^x), finite at +-800");
  }

  // The gradient, by finite differences (gradcheck), on several shapes.
  for (const auto& input : {xt::xarray<double>{0.3}, xt::xarray<double>{-2.0, -0.1, 0.0, 0.7, 4.0},
                            xt::xarray<double>{{0.5, -1.5, 2.5}, {-3.0, 1.0, 0.25}}}) {
    auto r = gradcheck([](const std::vector<Var<double>>& v) { return softplus(v[0]); }, {input});
    expect(r.ok, "gradcheck softplus", r.message);
  }

  // Composed with built-in ops: the custom op is an ordinary tape entry.
  {
    auto f = [](const std::vector<Var<double>>& v) {
      return mse(softplus(matmul(v[0], v[1])), v[2]);
    };
    auto r = gradcheck(f, {xt::xarray<double>{{0.2, -0.4}, {1.1, 0.3}, {-0.7, 0.9}},
                           xt::xarray<double>{{0.5, -1.0, 0.3}, {0.8, 0.1, -0.6}},
                           xt::xarray<double>{{0.1, 0.2, 0.3}, {0.4, 0.5, 0.6}, {0.7, 0.8, 0.9}}});
    expect(r.ok, "gradcheck mse(softplus(matmul(a, b)), t)", r.message);
  }

  // float32: d/dx softplus = σ(x), read back after backward.
  {
    Tape<float> tape;
    auto x = tape.variable(xt::xarray<float>{-1.0f, 0.0f, 2.0f});
    tape.backward(softplus(x), xt::xarray<float>{1.0f, 1.0f, 1.0f});  // seed: dL/dy = 1
    bool ok = true;
    for (std::size_t i = 0; i < 3; ++i) {
      const float xi = x.data()[i];
      ok = ok && std::abs(x.grad_data()[i] - 1.0f / (1.0f + std::exp(-xi))) <= 1e-6f;
    }
    expect(ok, "float32 gradient equals sigmoid(x)");
  }

  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
