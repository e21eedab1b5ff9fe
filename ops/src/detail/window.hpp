// wengert — the sliding-window arithmetic shared by conv2d and the pooling ops: the output size
// of a window of extent e moved with stride s over an axis of n values padded by p on both
// sides, checked for overflow, and the messages that give the computed size when it does not fit.
#pragma once

#include <cstddef>
#include <string>

#include <wengert/errors.hpp>

namespace wengert::detail {

/// ⌊(n + 2p − e) / s⌋ + 1 windows along an axis, or a ShapeError naming the op, what() (the
/// shapes and options, e.g. "x is [1,1,3,3] and W is [2,1,5,5] with stride 1, padding 0,
/// dilation 1"; a callable, so that the string is built only for an error: a training step
/// allocates nothing) and the computed size (n + 2p − e)/s + 1 when the padded axis is shorter
/// than the window. `axis` is "height" or "width". e ≥ 1 and s ≥ 1.
template <class What>
std::size_t window_count(const char* op, const What& what, const char* axis, std::size_t n,
                         std::size_t p, std::size_t e, std::size_t s) {
  std::size_t padded = 0;
  if (__builtin_mul_overflow(p, 2, &padded) || __builtin_add_overflow(padded, n, &padded))
    throw ShapeError(std::string(op) + ": " + what() + ": the padded " + axis +
                     " exceeds the size range");
  if (padded < e) {
    const long double computed = (static_cast<long double>(padded) - static_cast<long double>(e)) /
                                     static_cast<long double>(s) +
                                 1;
    throw ShapeError(std::string(op) + ": " + what() + ": the output " + axis + " would be (" +
                     std::to_string(n) + " + 2·" + std::to_string(p) + " − " + std::to_string(e) +
                     ")/" + std::to_string(s) + " + 1 = " + std::to_string(double(computed)) +
                     " < 1 (the padded input is " + std::to_string(padded) + " wide, the window " +
                     std::to_string(e) + ")");
  }
  return (padded - e) / s + 1;
}

/// d·(k − 1) + 1, the extent of a kernel of k taps `d` apart (k, d ≥ 1), or a ShapeError.
template <class What>
std::size_t dilated_extent(const char* op, const What& what, std::size_t k, std::size_t d) {
  std::size_t e = 0;
  if (__builtin_mul_overflow(k - 1, d, &e) || __builtin_add_overflow(e, 1, &e))
    throw ShapeError(std::string(op) + ": " + what() +
                     ": the dilated kernel exceeds the size range");
  return e;
}

}  // namespace wengert::detail
