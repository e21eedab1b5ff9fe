// Replaces the global operator new/delete family — and, unless WENGERT_NO_MALLOC_COUNT is
// defined, the C allocation functions (malloc, calloc, realloc, aligned_alloc, posix_memalign,
// memalign) — to count heap allocations in this test binary (see alloc_counter.hpp).
// Sanitizer and valgrind builds define WENGERT_NO_MALLOC_COUNT: those tools own malloc.
#include "alloc_counter.hpp"

#include <link.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace {
std::atomic<std::size_t> g_allocs{0};
std::atomic<std::size_t> g_blas_allocs{0};

// Executable segments of the OpenBLAS shared object, found once by a constructor. OpenBLAS is
// a direct dependency of every test binary, so it is mapped before any constructor runs, and
// the table is complete before main() starts any thread; afterwards it is only read.
struct Range {
  std::uintptr_t lo, hi;
};
Range g_blas_text[16];
int g_blas_ranges = 0;

int find_blas(dl_phdr_info* info, std::size_t, void*) {
  const char* name = info->dlpi_name;
  if (!name || !(std::strstr(name, "openblas") || std::strstr(name, "libblas"))) return 0;
  for (int i = 0; i < info->dlpi_phnum && g_blas_ranges < 16; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    g_blas_text[g_blas_ranges++] = {lo, lo + ph.p_memsz};
  }
  return 0;
}
__attribute__((constructor)) void find_blas_ranges() { dl_iterate_phdr(find_blas, nullptr); }

bool from_blas(const void* caller) {
  const auto a = reinterpret_cast<std::uintptr_t>(caller);
  for (int i = 0; i < g_blas_ranges; ++i)
    if (a >= g_blas_text[i].lo && a < g_blas_text[i].hi) return true;
  return false;
}

inline void bump(const void* caller = nullptr) {
  (caller && from_blas(caller) ? g_blas_allocs : g_allocs).fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

namespace wengert::testing {
std::size_t allocations() { return g_allocs.load(std::memory_order_relaxed); }
std::size_t blas_allocations() { return g_blas_allocs.load(std::memory_order_relaxed); }
}  // namespace wengert::testing

#ifndef WENGERT_NO_MALLOC_COUNT
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

// The caller is the return address of these functions themselves: noinline keeps it so.
__attribute__((noinline)) void* malloc(std::size_t n) {
  bump(__builtin_return_address(0));
  return __libc_malloc(n);
}
__attribute__((noinline)) void* calloc(std::size_t a, std::size_t b) {
  bump(__builtin_return_address(0));
  return __libc_calloc(a, b);
}
__attribute__((noinline)) void* realloc(void* p, std::size_t n) {
  bump(__builtin_return_address(0));
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
__attribute__((noinline)) void* aligned_alloc(std::size_t a, std::size_t n) {
  bump(__builtin_return_address(0));
  return __libc_memalign(a, n);
}
__attribute__((noinline)) void* memalign(std::size_t a, std::size_t n) {
  bump(__builtin_return_address(0));
  return __libc_memalign(a, n);
}
__attribute__((noinline)) int posix_memalign(void** out, std::size_t a, std::size_t n) {
  bump(__builtin_return_address(0));
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
  void* p = align > alignof(std::max_align_t)
                ? aligned_alloc(align, (n + align - 1) / align * align)
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
