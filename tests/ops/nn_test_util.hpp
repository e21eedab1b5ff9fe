// Helpers for the neural-network op tests (matmul, bias_add, softmax, losses, seeds): seeded
// random arrays, plain-loop references, and checks of error messages.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include <wengert/errors.hpp>

namespace nntest {

/// Uniform values in [lo, hi) of the given shape, from a seeded generator.
inline xt::xarray<double> random_array(const std::vector<std::size_t>& shape, std::mt19937_64& rng,
                                       double lo = -1.0, double hi = 1.0) {
  xt::xarray<double> a = xt::xarray<double>::from_shape(shape);
  std::uniform_real_distribution<double> d(lo, hi);
  for (auto& v : a) v = d(rng);
  return a;
}

/// The same array in another element type.
template <class T>
xt::xarray<T> cast(const xt::xarray<double>& a) {
  xt::xarray<T> r = xt::xarray<T>::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) r.data()[i] = T(a.data()[i]);
  return r;
}

/// Element i of a 2-D row-major [r, c] array read as if transposed when `t`.
inline double at2(const xt::xarray<double>& a, bool t, std::size_t i, std::size_t j) {
  return t ? a(j, i) : a(i, j);
}

/// op(A)·op(B) by three plain loops (op(X) = Xᵀ when the flag is set).
inline xt::xarray<double> naive_matmul(const xt::xarray<double>& A, const xt::xarray<double>& B,
                                       bool ta = false, bool tb = false) {
  const std::size_t m = ta ? A.shape(1) : A.shape(0), k = ta ? A.shape(0) : A.shape(1);
  const std::size_t n = tb ? B.shape(0) : B.shape(1);
  xt::xarray<double> C = xt::xarray<double>::from_shape({m, n});
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0;
      for (std::size_t p = 0; p < k; ++p) s += at2(A, ta, i, p) * at2(B, tb, p, j);
      C(i, j) = s;
    }
  return C;
}

/// Transpose of a 2-D array, by loops.
inline xt::xarray<double> transposed(const xt::xarray<double>& A) {
  xt::xarray<double> T = xt::xarray<double>::from_shape({A.shape(1), A.shape(0)});
  for (std::size_t i = 0; i < A.shape(0); ++i)
    for (std::size_t j = 0; j < A.shape(1); ++j) T(j, i) = A(i, j);
  return T;
}

/// |a − b| ≤ atol + rtol·|b| elementwise, with the worst element reported.
template <class EA, class EB>
::testing::AssertionResult all_close(const EA& ea, const EB& eb, double rtol, double atol = 0.0) {
  const xt::xarray<double> a = ea, b = eb;
  if (a.shape() != b.shape()) return ::testing::AssertionFailure() << "shapes differ";
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  double worst = 0;
  std::size_t wi = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = double(a.data()[i]), y = double(b.data()[i]);
    const double r = std::abs(x - y) / (atol + rtol * std::abs(y));
    if (!(r <= worst)) {
      worst = r;
      wi = i;
    }
  }
  if (worst <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << wi << ": " << double(a.data()[wi]) << " vs " << double(b.data()[wi])
         << " (error " << worst << " times the tolerance)";
}

/// Runs f, expects it to throw E, and returns the message (empty if it did not throw).
template <class E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

}  // namespace nntest
