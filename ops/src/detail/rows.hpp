// wengert — row kernels of the bias ops (bias_add, linear): a bias row added to every row of
// a row-major [rows, n] matrix, and its gradient, the column sums. Plain loops over restrict
// pointers, which gcc vectorises along the columns.
#pragma once

#include <cstddef>

namespace wengert::detail {

// y[r,:] = x[r,:] + b for rows r < rows.
template <class T>
inline void add_rows(const T* __restrict x, const T* __restrict b, T* __restrict y,
                     std::size_t rows, std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n)
    for (std::size_t j = 0; j < n; ++j) y[j] = x[j] + b[j];
}

// y[r,:] += b for rows r < rows.
template <class T>
inline void add_bias_in_place(T* __restrict y, const T* __restrict b, std::size_t rows,
                              std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, y += n)
    for (std::size_t j = 0; j < n; ++j) y[j] += b[j];
}

// db[j] += Σ_r G[r,j]. Row by row: each pass is a vectorised db += G[r,:].
template <class T>
inline void accumulate_column_sums(const T* __restrict G, T* __restrict db, std::size_t rows,
                                   std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, G += n)
    for (std::size_t j = 0; j < n; ++j) db[j] += G[j];
}

template <class T>
inline void accumulate(const T* __restrict g, T* __restrict dx, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dx[i] += g[i];
}

}  // namespace wengert::detail
