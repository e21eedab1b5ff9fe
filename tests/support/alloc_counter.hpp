// Test support: counts heap allocations made through operator new in this test binary.
// alloc_counter.cpp replaces the global operator new/delete family; usage:
//   AllocCounter c;  ...code...;  EXPECT_EQ(c.count(), 0u);
#pragma once

#include <cstddef>

namespace wengert::testing {

/// Total operator-new calls in this process so far (all threads).
std::size_t allocations();

class AllocCounter {
 public:
  AllocCounter() : start_(allocations()) {}
  std::size_t count() const { return allocations() - start_; }
  void reset() { start_ = allocations(); }

 private:
  std::size_t start_;
};

}  // namespace wengert::testing
