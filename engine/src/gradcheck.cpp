// wengert — gradcheck: analytic Jacobians (VJPs) against central finite differences.
#include <wengert/gradcheck.hpp>

#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace wengert {
namespace {

// Evaluates f at `xs` on `tape` (cleared first) and returns a copy of the output.
xt::xarray<double> eval(Tape<double>& tape, const GradcheckFn& f,
                        const std::vector<xt::xarray<double>>& xs) {
  tape.clear();
  std::vector<Var<double>> vars;
  vars.reserve(xs.size());
  for (const auto& x : xs) vars.push_back(tape.variable(x));
  Var<double> y = f(vars);
  return xt::xarray<double>(y.value());
}

// "[i,j,k]": the flat row-major index `flat` into an array of shape `shape`.
template <class S>
std::string unravel(std::size_t flat, const S& shape) {
  std::vector<std::size_t> idx(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  std::string out = "[";
  for (std::size_t d = 0; d < idx.size(); ++d) out += (d ? "," : "") + std::to_string(idx[d]);
  return out + "]";
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<xt::xarray<double>>& inputs,
                          const GradcheckOptions& o) {
  GradcheckResult r;
  std::ostringstream msg;
  msg.precision(10);

  // Analytic Jacobians: one VJP per output element.
  Tape<double> tape;
  std::vector<Var<double>> vars;
  for (const auto& x : inputs) vars.push_back(tape.variable(x));
  Var<double> y = f(vars);
  const std::size_t m = y.size();
  xt::xarray<double> y0 = y.value();
  std::vector<xt::xarray<double>> J;
  for (auto& v : vars) J.push_back(tape.jacobian(y, v));

  // Numeric Jacobians, column by column, compared as we go.
  Tape<double> probe;
  std::vector<xt::xarray<double>> xs = inputs;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    for (std::size_t j = 0; j < xs[i].size(); ++j) {
      const double orig = xs[i].data()[j];
      xs[i].data()[j] = orig + o.eps;
      xt::xarray<double> yp = eval(probe, f, xs);
      xs[i].data()[j] = orig - o.eps;
      xt::xarray<double> ym = eval(probe, f, xs);
      xs[i].data()[j] = orig;
      for (std::size_t k = 0; k < m; ++k) {
        const double num = (yp.data()[k] - ym.data()[k]) / (2 * o.eps);
        const double ana = J[i].data()[k * xs[i].size() + j];
        const double ratio = std::abs(ana - num) / (o.atol + o.rtol * std::abs(num));
        if (!(ratio <= r.worst_ratio) || std::isnan(ratio)) {
          r.worst_ratio = std::isnan(ratio) ? INFINITY : ratio;
          r.input = i;
          r.output_index = k;
          r.input_index = j;
          r.analytic = ana;
          r.numeric = num;
        }
      }
    }
  }
  if (r.worst_ratio > 1) {
    r.ok = false;
    msg << "gradcheck: input " << r.input << " element " << r.input_index << " (index "
        << unravel(r.input_index, inputs[r.input].shape()) << " of "
        << Shape(inputs[r.input].shape()).str() << "), output element " << r.output_index
        << " (index " << unravel(r.output_index, y0.shape()) << " of " << Shape(y0.shape()).str()
        << "): analytic " << r.analytic << " vs numeric " << r.numeric << " (|diff| "
        << std::abs(r.analytic - r.numeric) << " > atol " << o.atol << " + rtol " << o.rtol
        << "·|numeric|)\n";
  }

  // Dot-product test: <J v, u> (finite difference along v) against <v, Jᵀ u> (one sweep).
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> N(0.0, 1.0);
  double worst = 0;
  for (int t = 0; t < o.dot_trials; ++t) {
    xt::xarray<double> u = xt::zeros<double>(y0.shape());
    for (auto& e : u) e = N(rng);
    std::vector<xt::xarray<double>> v = inputs, xp = inputs, xm = inputs;
    for (std::size_t i = 0; i < v.size(); ++i)
      for (std::size_t j = 0; j < v[i].size(); ++j) {
        v[i].data()[j] = N(rng);
        xp[i].data()[j] += o.eps * v[i].data()[j];
        xm[i].data()[j] -= o.eps * v[i].data()[j];
      }
    xt::xarray<double> yp = eval(probe, f, xp), ym = eval(probe, f, xm);
    double jv_u = 0;
    for (std::size_t k = 0; k < m; ++k)
      jv_u += (yp.data()[k] - ym.data()[k]) / (2 * o.eps) * u.data()[k];
    double v_jtu = 0;
    for (std::size_t i = 0; i < v.size(); ++i)  // Jᵀu = uᵀ J, from the analytic Jacobians
      for (std::size_t j = 0; j < v[i].size(); ++j) {
        double col = 0;
        for (std::size_t k = 0; k < m; ++k) col += u.data()[k] * J[i].data()[k * v[i].size() + j];
        v_jtu += v[i].data()[j] * col;
      }
    // ...and once more straight from a sweep seeded with u, so the seeded path is checked too.
    double v_jtu_sweep = 0;
    if (y.requires_grad()) tape.backward(y, u);
    for (std::size_t i = 0; i < v.size() && y.requires_grad(); ++i) {
      const double* g = vars[i].grad_data();
      for (std::size_t j = 0; j < v[i].size(); ++j) v_jtu_sweep += v[i].data()[j] * g[j];
    }
    const double tol = o.atol * std::sqrt(double(m) + 1) + o.rtol * std::abs(jv_u) * 10;
    const double err = std::max(std::abs(jv_u - v_jtu), std::abs(v_jtu_sweep - v_jtu));
    const double ratio = err / tol;
    if (ratio > worst || std::isnan(ratio)) {
      worst = std::isnan(ratio) ? INFINITY : ratio;
      r.dot_jv_u = jv_u;
      r.dot_v_jtu = v_jtu_sweep;
    }
  }
  if (worst > 1) {
    r.ok = false;
    msg << "gradcheck: dot-product test failed: <J v, u> = " << r.dot_jv_u
        << " but <v, J^T u> = " << r.dot_v_jtu << "\n";
  }
  r.message = msg.str();
  return r;
}

}  // namespace wengert
