// Test support: counts heap allocations in this test binary.
// alloc_counter.cpp replaces the global operator new/delete family (and, in normal builds, the
// C allocation functions); usage:
//   AllocCounter c;  ...code...;  EXPECT_EQ(c.count(), 0u);
//
// Allocations that OpenBLAS makes inside its own kernels are counted apart, in blas_count():
// OpenBLAS 0.3.21's AVX-512 small-matrix GEMM kernels (the no-transpose forms,
// s/dgemm_small_kernel_nn_SKYLAKEX, chosen for products of up to about 10⁶ multiply-adds)
// malloc a packing buffer on every call. That is inside the BLAS, not in wengert, and happens
// to any caller of cblas_sgemm on such a machine, the hand-written baseline included (with
// OPENBLAS_CORETYPE=Haswell there are none). An allocation is attributed to OpenBLAS when the
// allocation function was called directly from code mapped from the OpenBLAS shared object.
#pragma once

#include <cstddef>

namespace wengert::testing {

/// Allocations in this process so far (all threads), except those OpenBLAS's own code made.
std::size_t allocations();
/// Allocations made by OpenBLAS's own code (see above).
std::size_t blas_allocations();

class AllocCounter {
 public:
  AllocCounter() : start_(allocations()), blas_start_(blas_allocations()) {}
  /// Allocations since construction (or reset) outside OpenBLAS: wengert's, the test's own.
  std::size_t count() const { return allocations() - start_; }
  /// Allocations since construction (or reset) inside OpenBLAS's kernels.
  std::size_t blas_count() const { return blas_allocations() - blas_start_; }
  void reset() {
    start_ = allocations();
    blas_start_ = blas_allocations();
  }

 private:
  std::size_t start_;
  std::size_t blas_start_;
};

}  // namespace wengert::testing
