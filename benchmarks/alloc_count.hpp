// Heap accounting for the benchmark binaries that link alloc_count.cpp.
//
// alloc_count.cpp interposes the C allocation functions of the whole process (malloc, calloc,
// realloc, aligned_alloc, posix_memalign, memalign, free — the executable's definitions win
// over glibc's for every shared library too). That covers operator new (libstdc++ allocates
// through malloc), wengert's arena and aligned buffers, OpenBLAS's small buffers and libtorch's
// CPU allocator (posix_memalign). Not counted: memory a library maps with mmap itself (OpenBLAS's
// GEMM work buffers, set up once per thread).
//
// Counting is off until start(); while on, every allocation call counts one and the net bytes
// in use (malloc_usable_size) are tracked with their high-water mark. Timed loops run with
// counting off, so libtorch is not slowed by the bookkeeping of its many allocations.
#pragma once

#include <cstdint>

namespace wengert_bench::alloc {

/// Resets the counters and starts counting.
void start();
/// Stops counting (the counters keep their values).
void stop();
/// Allocation calls since start().
std::uint64_t count();
/// Peak of (bytes allocated − bytes freed) since start(): the heap growth high-water mark.
std::int64_t peak_bytes();

}  // namespace wengert_bench::alloc
