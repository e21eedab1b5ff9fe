// wengert — gradient checking against finite differences, for users and custom-op authors.
//
// gradcheck(f, inputs) records f on a float64 tape with every input as a variable, then
//   1. builds the analytic Jacobian of f's output with one vector-Jacobian product per output
//      element, and the numeric Jacobian by central differences (f(x+h) − f(x−h)) / 2h, and
//      compares them element by element: |analytic − numeric| ≤ atol + rtol·|numeric|;
//   2. runs the dot-product test ⟨J·v, u⟩ = ⟨v, Jᵀ·u⟩ for random u, v, with J·v from a central
//      difference along v and Jᵀ·u from one backward sweep seeded with u.
// The result reports the worst element (input, output and input element, analytic, numeric).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include <wengert/tape.hpp>

namespace wengert {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double rtol = 1e-5;  // relative tolerance
  double atol = 1e-7;  // absolute tolerance
  int dot_trials = 3;  // random (u, v) pairs for the dot-product test; 0 to skip
  std::uint64_t seed = 0x5eed;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // empty when ok; otherwise what failed, with numbers
  // Worst Jacobian element (largest error relative to its tolerance).
  std::size_t input = 0;         // which input
  std::size_t output_index = 0;  // flat index into the output
  std::size_t input_index = 0;   // flat index into that input
  double analytic = 0, numeric = 0;
  double worst_ratio = 0;  // |analytic − numeric| / (atol + rtol·|numeric|); ≤ 1 passes
  // Dot-product test, worst trial.
  double dot_jv_u = 0, dot_v_jtu = 0;
  explicit operator bool() const { return ok; }
};

/// The function under test: receives the inputs as variables on a fresh float64 tape and
/// returns the output (any shape). Must be deterministic.
using GradcheckFn = std::function<Var<double>(const std::vector<Var<double>>&)>;

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<xt::xarray<double>>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace wengert
