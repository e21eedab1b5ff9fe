// wengert — the tape's memory arena.
//
// A chunked bump allocator. Blocks are never moved or freed while the tape lives, so pointers
// into them stay valid until the tape is cleared; clearing only rewinds the cursor. Replaying
// the same sequence of requests after a clear lands on the same blocks, which is what makes a
// steady-state training step free of heap allocations and of first-touch page faults.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include <wengert/errors.hpp>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace wengert::detail {

[[noreturn, gnu::cold, gnu::noinline]] inline void throw_no_memory(std::size_t bytes) {
  throw ResourceError("cannot allocate " + std::to_string(bytes) + " bytes (out of memory)");
}

/// 64-byte aligned memory for values, adjoints and parameters. A buffer of 2 MiB or more is
/// aligned to 2 MiB, rounded up to whole 2 MiB pages and offered to the kernel as transparent
/// huge pages (madvise; the kernel may decline): a GEMM streaming through megabytes of weights
/// then takes one TLB entry per 2 MiB instead of one per 4 KiB.
/// `bytes` is updated to the size actually allocated (whole 2 MiB pages for a large buffer).
/// Throws ResourceError if the memory cannot be allocated.
inline void* buffer_alloc(std::size_t& bytes) {
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  void* p = nullptr;
  if (bytes > ~std::size_t{0} - kHuge) throw_no_memory(bytes);
  if (bytes >= kHuge) {
    bytes = (bytes + kHuge - 1) & ~(kHuge - 1);
    p = std::aligned_alloc(kHuge, bytes);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  } else {
    p = std::aligned_alloc(64, bytes);
  }
  if (!p) throw_no_memory(bytes);
  return p;
}

class Arena {
 public:
  static constexpr std::size_t kBlockAlign = 64;  // cache line; enough for AVX-512 loads
  static constexpr std::size_t kMinBlock = std::size_t{64} << 10;
  static constexpr std::size_t kMaxGrowth = std::size_t{64} << 20;

  struct Mark {
    std::size_t block;
    std::size_t offset;
  };

  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    for (Block& b : blocks_) std::free(b.data);
  }

  /// `bytes` bytes aligned to `align` (a power of two ≤ kBlockAlign).
  void* allocate(std::size_t bytes, std::size_t align) {
    if (bytes == 0) bytes = 1;
    for (;;) {
      if (cur_ < blocks_.size()) {
        Block& b = blocks_[cur_];
        std::size_t p = (off_ + align - 1) & ~(align - 1);
        if (p + bytes <= b.size) {
          off_ = p + bytes;
          return b.data + p;
        }
        if (off_ == 0) {  // an empty block that is too small: replace it once, larger
          Block bigger = new_block(bytes > 2 * b.size ? bytes : 2 * b.size);  // may throw: b stays
          std::free(b.data);
          b = bigger;
          continue;
        }
        ++cur_;
        off_ = 0;
        continue;
      }
      std::size_t grow = blocks_.empty() ? kMinBlock : blocks_.back().size * 2;
      if (grow > kMaxGrowth) grow = kMaxGrowth;
      blocks_.push_back(new_block(bytes > grow ? bytes : grow));
      cur_ = blocks_.size() - 1;
      off_ = 0;
    }
  }

  Mark mark() const { return {cur_, off_}; }
  void rewind(Mark m) {
    cur_ = m.block;
    off_ = m.offset;
  }
  void reset() { rewind({0, 0}); }

  /// Bytes held in all blocks (what a steady state reuses).
  std::size_t capacity() const {
    std::size_t n = 0;
    for (const Block& b : blocks_) n += b.size;
    return n;
  }

 private:
  struct Block {
    std::byte* data;
    std::size_t size;
  };
  static Block new_block(std::size_t size) {
    if (size > ~std::size_t{0} - kBlockAlign) throw_no_memory(size);
    size = (size + kBlockAlign - 1) & ~(kBlockAlign - 1);
    void* p = buffer_alloc(size);  // rounds a large block up to whole huge pages: all usable
    return {static_cast<std::byte*>(p), size};
  }

  std::vector<Block> blocks_;
  std::size_t cur_ = 0;
  std::size_t off_ = 0;
};

}  // namespace wengert::detail

namespace wengert {

/// A 64-byte aligned allocator for persistent buffers (parameters, optimizer state, datasets,
/// batches): rows start on a cache line and SIMD loads of them never split one.
template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(std::size_t n) {  // throws ResourceError
    if (n > (~std::size_t{0} >> 1) / sizeof(T))
      throw ResourceError("cannot allocate " + std::to_string(n) + " elements of " +
                          std::to_string(sizeof(T)) + " bytes (more than the address space)");
    std::size_t bytes = (n * sizeof(T) + 63) & ~std::size_t{63};
    if (bytes == 0) bytes = 64;
    return static_cast<T*>(detail::buffer_alloc(bytes));
  }
  void deallocate(T* p, std::size_t) { std::free(p); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const AlignedAllocator<U>&) const {
    return false;
  }
};

/// A std::vector whose data is 64-byte aligned (AlignedAllocator).
template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

}  // namespace wengert
