// A small three-class problem for the data-parallel tests (tests/dist/): rows of kIn normal
// features, labels from two linear rules; deterministic for a seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace wengert::testing {

template <class T>
struct ClassifyData {
  static constexpr std::size_t kIn = 6, kClasses = 3;
  std::vector<T> x;
  std::vector<std::int32_t> y;
  ClassifyData(std::size_t rows, std::uint64_t seed) : x(rows * kIn), y(rows) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> N(0, 1);
    for (std::size_t i = 0; i < rows; ++i) {
      T* r = &x[i * kIn];
      for (std::size_t j = 0; j < kIn; ++j) r[j] = T(N(rng));
      y[i] = r[0] + r[1] > 0.5 ? 2 : (r[2] - r[3] > 0 ? 1 : 0);
    }
  }
};

}  // namespace wengert::testing
