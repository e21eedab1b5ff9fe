// Interposed allocation functions for the benchmark binary (see alloc_count.hpp). glibc only:
// the real allocator is reached through its __libc_* entry points.
#include "alloc_count.hpp"

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstddef>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {

std::atomic<bool> g_on{false};
std::atomic<std::uint64_t> g_count{0};
std::atomic<std::int64_t> g_live{0};
std::atomic<std::int64_t> g_peak{0};

inline void note_alloc(void* p) {
  if (!p || !g_on.load(std::memory_order_relaxed)) return;
  g_count.fetch_add(1, std::memory_order_relaxed);
  const auto n = static_cast<std::int64_t>(malloc_usable_size(p));
  const std::int64_t live = g_live.fetch_add(n, std::memory_order_relaxed) + n;
  std::int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

inline void note_free(void* p) {
  if (!p || !g_on.load(std::memory_order_relaxed)) return;
  g_live.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
}

}  // namespace

namespace wengert_bench::alloc {
void start() {
  g_count.store(0);
  g_live.store(0);
  g_peak.store(0);
  g_on.store(true);
}
void stop() { g_on.store(false); }
std::uint64_t count() { return g_count.load(); }
std::int64_t peak_bytes() { return g_peak.load(); }
}  // namespace wengert_bench::alloc

extern "C" {

void* malloc(std::size_t n) {
  void* p = __libc_malloc(n);
  note_alloc(p);
  return p;
}
void* calloc(std::size_t a, std::size_t b) {
  void* p = __libc_calloc(a, b);
  note_alloc(p);
  return p;
}
void* realloc(void* old, std::size_t n) {
  note_free(old);
  void* p = __libc_realloc(old, n);
  if (p)
    note_alloc(p);
  else if (old && n)  // failed: the old block is still there
    note_alloc(old);
  return p;
}
void free(void* p) {
  note_free(p);
  __libc_free(p);
}
void* aligned_alloc(std::size_t align, std::size_t n) {
  void* p = __libc_memalign(align, n);
  note_alloc(p);
  return p;
}
void* memalign(std::size_t align, std::size_t n) {
  void* p = __libc_memalign(align, n);
  note_alloc(p);
  return p;
}
int posix_memalign(void** out, std::size_t align, std::size_t n) {
  void* p = __libc_memalign(align, n);
  if (!p) return ENOMEM;
  note_alloc(p);
  *out = p;
  return 0;
}

}  // extern "C"
