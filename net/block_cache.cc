#include "net/block_cache.h"

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define RINGPROXY_BLOCK_CACHE_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RINGPROXY_BLOCK_CACHE_OFF 1
#endif
#endif

namespace ringproxy::block_cache {

#if defined(RINGPROXY_BLOCK_CACHE_OFF)

void* allocate(size_t size) { return std::malloc(size); }
void* allocate_zeroed(size_t count, size_t size) {
  // Null on overflow, as the cache does (ASan's calloc would report it and abort).
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  return std::calloc(count, size);
}
void release(void* p) { std::free(p); }
void* reallocate(void* p, size_t size) { return std::realloc(p, size); }
Stats cached() { return {}; }

#else

namespace {

constexpr unsigned kClasses = std::countr_zero(kMaxClass) - std::countr_zero(kMinClass) + 1;
constexpr uint32_t kUncached = 0xffffffffu;
// Before each block: its class (or kUncached and the size asked for), padded to 16 bytes
// so the block keeps malloc's alignment.
struct alignas(16) Header {
  uint32_t cls;
  uint32_t pad;
  size_t size;  // kUncached blocks: the bytes usable
};
static_assert(sizeof(Header) == 16);

constexpr size_t class_bytes(unsigned c) { return kMinClass << c; }

unsigned class_of(size_t size) {
  if (size <= kMinClass) return 0;
  return static_cast<unsigned>(std::bit_width(size - 1) - std::countr_zero(kMinClass));
}

struct FreeBlock {
  FreeBlock* next;
};

struct Lists {
  FreeBlock* head[kClasses] = {};
  size_t count[kClasses] = {};
  ~Lists() {
    for (unsigned c = 0; c < kClasses; ++c) {
      while (FreeBlock* b = head[c]) {
        head[c] = b->next;
        std::free(reinterpret_cast<Header*>(b) - 1);
      }
      count[c] = 0;
    }
  }
};

thread_local Lists lists;

Header* header_of(void* p) { return static_cast<Header*>(p) - 1; }

size_t usable(const Header* h) { return h->cls == kUncached ? h->size : class_bytes(h->cls); }

}  // namespace

void* allocate(size_t size) {
  if (size > kMaxClass) {
    if (size > SIZE_MAX - sizeof(Header)) return nullptr;
    auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + size));
    if (!h) return nullptr;
    h->cls = kUncached;
    h->size = size;
    return h + 1;
  }
  const unsigned c = class_of(size);
  Lists& l = lists;
  if (FreeBlock* b = l.head[c]) {
    l.head[c] = b->next;
    --l.count[c];
    // The next block of the class is the next allocation's: it was freed a while ago and
    // is likely out of cache by then (1,000 streams in flight hold megabytes between a
    // block's release and its reuse). Fetched now, its load does not stall that call,
    // nor the caller's first write into it. perf, h2 to h2c nodes, 1,000 streams: 90% of
    // allocate()'s samples were on the load of b->next without this.
    __builtin_prefetch(l.head[c], 1);
    return b;
  }
  auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + class_bytes(c)));
  if (!h) return nullptr;
  h->cls = c;
  h->size = class_bytes(c);
  return h + 1;
}

void* allocate_zeroed(size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  void* p = allocate(count * size);
  if (p) std::memset(p, 0, count * size);
  return p;
}

void release(void* p) {
  if (!p) return;
  Header* h = header_of(p);
  const uint32_t c = h->cls;
  if (c == kUncached) {
    std::free(h);
    return;
  }
  Lists& l = lists;
  if ((l.count[c] + 1) * class_bytes(c) > kMaxCachedBytes) {
    std::free(h);
    return;
  }
  auto* b = static_cast<FreeBlock*>(p);
  b->next = l.head[c];
  l.head[c] = b;
  ++l.count[c];
}

void* reallocate(void* p, size_t size) {
  if (!p) return allocate(size);
  if (size == 0) {
    release(p);
    return nullptr;
  }
  Header* h = header_of(p);
  const size_t have = usable(h);
  if (size <= have) return p;
  if (h->cls == kUncached) {  // large and growing: malloc's realloc may extend in place
    if (size > SIZE_MAX - sizeof(Header)) return nullptr;
    auto* g = static_cast<Header*>(std::realloc(h, sizeof(Header) + size));
    if (!g) return nullptr;
    g->size = size;
    return g + 1;
  }
  void* q = allocate(size);
  if (!q) return nullptr;  // p stays valid, as with realloc
  std::memcpy(q, p, have < size ? have : size);
  release(p);
  return q;
}

Stats cached() {
  Stats s;
  const Lists& l = lists;
  for (unsigned c = 0; c < kClasses; ++c) {
    s.blocks += l.count[c];
    s.bytes += l.count[c] * class_bytes(c);
  }
  return s;
}

#endif

}  // namespace ringproxy::block_cache
