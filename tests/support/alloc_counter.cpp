// Replaces the global operator new/delete family — and, unless WENGERT_NO_MALLOC_COUNT is
// defined, the C allocation functions (malloc, calloc, realloc, aligned_alloc, posix_memalign,
// memalign) — to count heap allocations in this test binary (see alloc_counter.hpp).
// Sanitizer and valgrind builds define WENGERT_NO_MALLOC_COUNT: those tools own malloc.
#include "alloc_counter.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <new>

namespace {
std::atomic<std::size_t> g_allocs{0};
inline void bump() { g_allocs.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

namespace wengert::testing {
std::size_t allocations() { return g_allocs.load(std::memory_order_relaxed); }
}  // namespace wengert::testing

#ifndef WENGERT_NO_MALLOC_COUNT
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) {
  bump();
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  bump();
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  bump();
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
void* aligned_alloc(std::size_t a, std::size_t n) {
  bump();
  return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) {
  bump();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  bump();
  void* p = __libc_memalign(a, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}
// operator new goes through malloc above, which counts it.
namespace {
void* counted(std::size_t n, std::size_t align) {
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t) ? aligned_alloc(align, (n + align - 1) / align * align)
                                              : malloc(n);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace
#else
namespace {
void* counted(std::size_t n, std::size_t align) {
  bump();
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t)
                ? std::aligned_alloc(align, (n + align - 1) / align * align)
                : std::malloc(n);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace
#endif

void* operator new(std::size_t n) { return counted(n, 0); }
void* operator new[](std::size_t n) { return counted(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return counted(n, std::size_t(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted(n, std::size_t(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
