// Keeps large freed blocks mapped for the next request, in front of glibc's malloc (LD_PRELOAD).
//
// XLA on CPU mallocs an executable's temporaries at every call and frees them after it: 3.3 GB
// for the `ofa-mbv3` training step at 224 px, batch 32. glibc serves every block over 32 MB with
// a fresh mmap and gives it back with munmap, so each step faults in and zeroes gigabytes of new
// pages. Keeping those blocks in glibc's heap (mallopt) saves the faults but lets small
// long-lived allocations settle in the holes, and the heap then grows by a step's temporaries at
// a time. Here blocks of at least kMinBytes are mappings of their own, kept when freed:
//  - a request takes the smallest free block that holds it, up to kMaxSlack times its size (its
//    pages are resident already; a 224 px step's block serves a 128 px step's temporaries);
//  - a request no free block serves unmaps the free blocks smaller than it and maps a new one;
//  - at most one largest block's worth of freed memory is kept: past that the smallest free
//    blocks are unmapped, so the resident set stays within one block of glibc's own.
// Everything smaller goes to glibc unchanged. `hwnas_bigblocks_release` unmaps all free blocks
// (as after an epoch); `hwnas_bigblocks_stats` reports what happened, for tests and benches.
// Plain C inside: no C++ runtime is loaded into every process this is preloaded in.
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

extern "C" {
void* __libc_malloc(size_t);
void __libc_free(void*);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

namespace {

constexpr size_t kMinBytes = size_t{64} << 20;  // glibc's own largest mmap threshold is 32 MB
constexpr size_t kGranule = size_t{2} << 20;    // huge-page size: blocks are whole huge pages
constexpr size_t kPage = 4096;                  // the alignment a mapping guarantees
constexpr size_t kMaxSlack = 4;                 // a block serves requests down to 1/4 its size
constexpr int kSlots = 64;

struct Block {
  char* addr;     // nullptr: slot empty
  size_t mapped;  // bytes mapped
  int used;       // read without the lock by find_used: atomic
};

Block blocks[kSlots];
int live = 0;  // blocks in use: free() of a small pointer skips the scan while none are
size_t kept = 0, largest = 0;
uint64_t hits = 0, misses = 0, unmapped = 0;
pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

// Callers hold no lock: a block in use is only its owner's to free. Blocks are whole pages.
Block* find_used(const void* p) {
  if ((reinterpret_cast<uintptr_t>(p) & (kPage - 1)) || !__atomic_load_n(&live, __ATOMIC_ACQUIRE))
    return nullptr;
  for (Block& b : blocks)
    if (__atomic_load_n(&b.addr, __ATOMIC_ACQUIRE) == p && __atomic_load_n(&b.used, __ATOMIC_ACQUIRE))
      return &b;
  return nullptr;
}

void unmap(Block& b) {  // lock held; b is free
  char* addr = b.addr;
  __atomic_store_n(&b.addr, static_cast<char*>(nullptr), __ATOMIC_RELEASE);
  munmap(addr, b.mapped);
  kept -= b.mapped;
  ++unmapped;
}

Block* smallest_free(size_t at_least) {  // lock held
  Block* best = nullptr;
  for (Block& b : blocks)
    if (b.addr && !b.used && b.mapped >= at_least && (!best || b.mapped < best->mapped)) best = &b;
  return best;
}

Block* empty_slot() {  // lock held
  for (Block& b : blocks)
    if (!b.addr) return &b;
  return nullptr;
}

// A block of at least n bytes, or nullptr when none can be had here (glibc then serves it);
// `fresh` (where asked) says whether it is a new mapping, zero already.
void* take(size_t n, bool* fresh = nullptr) {
  pthread_mutex_lock(&lock);
  Block* b = smallest_free(n);
  if (b && b->mapped / kMaxSlack > n) b = nullptr;  // would hold a large block for a small need
  if (b) {
    kept -= b->mapped;
    ++hits;
    if (fresh) *fresh = false;
  } else {
    for (Block& f : blocks)
      if (f.addr && !f.used && f.mapped < n) unmap(f);
    b = empty_slot();
    size_t size = (n + kGranule - 1) / kGranule * kGranule;
    void* p = b ? mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                : MAP_FAILED;
    if (p == MAP_FAILED) {
      pthread_mutex_unlock(&lock);
      return nullptr;
    }
    madvise(p, size, MADV_HUGEPAGE);  // fewer faults and TLB misses where the kernel allows
    b->mapped = size;
    __atomic_store_n(&b->addr, static_cast<char*>(p), __ATOMIC_RELEASE);
    if (size > largest) largest = size;
    ++misses;
    if (fresh) *fresh = true;
  }
  __atomic_store_n(&b->used, 1, __ATOMIC_RELEASE);
  __atomic_add_fetch(&live, 1, __ATOMIC_RELEASE);
  void* addr = b->addr;
  pthread_mutex_unlock(&lock);
  return addr;
}

void give_back(Block* b) {
  pthread_mutex_lock(&lock);
  __atomic_store_n(&b->used, 0, __ATOMIC_RELEASE);
  __atomic_sub_fetch(&live, 1, __ATOMIC_RELEASE);
  kept += b->mapped;
  while (kept > largest) unmap(*smallest_free(0));
  pthread_mutex_unlock(&lock);
}

using UsableFn = size_t (*)(void*);
UsableFn usable_fn = nullptr;  // glibc's malloc_usable_size, looked up once (no C++ guard)

size_t glibc_usable(void* p) {
  UsableFn fn = __atomic_load_n(&usable_fn, __ATOMIC_ACQUIRE);
  if (!fn) {
    fn = reinterpret_cast<UsableFn>(dlsym(RTLD_NEXT, "malloc_usable_size"));
    __atomic_store_n(&usable_fn, fn, __ATOMIC_RELEASE);
  }
  return fn ? fn(p) : 0;
}

// A child forked while another thread held the lock would wait on it forever.
void before_fork() { pthread_mutex_lock(&lock); }
void after_fork() { pthread_mutex_unlock(&lock); }
void in_child() { pthread_mutex_init(&lock, nullptr); }
__attribute__((constructor)) void init() { pthread_atfork(before_fork, after_fork, in_child); }

void* aligned(size_t alignment, size_t n) {
  if (n >= kMinBytes && alignment <= kPage) {
    if (void* p = take(n)) return p;
  }
  return __libc_memalign(alignment, n);
}

}  // namespace

extern "C" {

void* malloc(size_t n) {
  if (n >= kMinBytes) {
    if (void* p = take(n)) return p;
  }
  return __libc_malloc(n);
}

void free(void* p) {
  if (Block* b = find_used(p)) return give_back(b);
  __libc_free(p);
}

void* calloc(size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n) || n < kMinBytes) return __libc_calloc(count, size);
  bool fresh;
  void* p = take(n, &fresh);
  if (!p) return __libc_calloc(count, size);
  if (!fresh) memset(p, 0, n);  // a new mapping is zero already
  return p;
}

void* realloc(void* p, size_t n) {
  if (!p) return malloc(n);
  Block* b = find_used(p);
  if (b && n == 0) {  // as glibc: freed, and no block returned
    give_back(b);
    return nullptr;
  }
  if (!b && n < kMinBytes) return __libc_realloc(p, n);
  if (b && n <= b->mapped && n >= kMinBytes) return p;
  size_t old = b ? b->mapped : glibc_usable(p);
  void* q = malloc(n);
  if (!q) return nullptr;
  memcpy(q, p, old < n ? old : n);
  free(p);
  return q;
}

void* reallocarray(void* p, size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, n);
}

int posix_memalign(void** out, size_t alignment, size_t n) {
  if (!alignment || alignment % sizeof(void*) || (alignment & (alignment - 1))) return EINVAL;
  void* p = aligned(alignment, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

void* aligned_alloc(size_t alignment, size_t n) { return aligned(alignment, n); }
void* memalign(size_t alignment, size_t n) { return aligned(alignment, n); }
void* valloc(size_t n) { return aligned(kPage, n); }

size_t malloc_usable_size(void* p) {
  if (!p) return 0;
  if (Block* b = find_used(p)) return b->mapped;
  return glibc_usable(p);
}

void hwnas_bigblocks_release() {
  pthread_mutex_lock(&lock);
  for (Block& b : blocks)
    if (b.addr && !b.used) unmap(b);
  pthread_mutex_unlock(&lock);
}

// hits, misses (new mappings), unmapped blocks, bytes kept free, blocks in use.
void hwnas_bigblocks_stats(uint64_t out[5]) {
  pthread_mutex_lock(&lock);
  out[0] = hits;
  out[1] = misses;
  out[2] = unmapped;
  out[3] = kept;
  out[4] = static_cast<uint64_t>(live);
  pthread_mutex_unlock(&lock);
}

}  // extern "C"
