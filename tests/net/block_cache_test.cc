// net/block_cache: blocks come back from the calling thread's lists, keep malloc's
// alignment, realloc keeps contents, each list is bounded, and nghttp2 runs on it.
#include "net/block_cache.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "http/h2/memory.h"

namespace ringproxy {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCaching = false;  // ASan builds go straight to malloc (block_cache.h)
#else
constexpr bool kCaching = true;
#endif

TEST(BlockCache, AFreedBlockIsTheNextOfItsClass) {
  void* a = block_cache::allocate(100);
  ASSERT_NE(a, nullptr);
  std::memset(a, 0xab, 100);
  block_cache::release(a);
  void* b = block_cache::allocate(120);  // the same class (128)
  if (kCaching) {
    EXPECT_EQ(a, b);
    EXPECT_EQ(block_cache::cached().blocks, 0u);
  }
  block_cache::release(b);
  if (kCaching) {
    EXPECT_GE(block_cache::cached().blocks, 1u);
  }
}

TEST(BlockCache, EveryBlockIsAlignedLikeMalloc) {
  for (size_t size : {1, 15, 64, 65, 1000, 4096, 16384, 16385, 100000}) {
    void* p = block_cache::allocate(size);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << size;
    std::memset(p, 1, size);
    block_cache::release(p);
  }
}

TEST(BlockCache, ZeroedAndOverflow) {
  auto* p = static_cast<unsigned char*>(block_cache::allocate(200));
  std::memset(p, 0xff, 200);
  block_cache::release(p);
  auto* z = static_cast<unsigned char*>(block_cache::allocate_zeroed(50, 4));
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(z[i], 0) << i;
  block_cache::release(z);
  EXPECT_EQ(block_cache::allocate_zeroed(SIZE_MAX / 2, 4), nullptr);
  block_cache::release(nullptr);
}

TEST(BlockCache, ReallocateKeepsTheBytes) {
  auto* p = static_cast<char*>(block_cache::reallocate(nullptr, 10));
  ASSERT_NE(p, nullptr);
  std::memcpy(p, "0123456789", 10);
  char* same = static_cast<char*>(block_cache::reallocate(p, 60));  // still fits 64
  if (kCaching) {
    EXPECT_EQ(same, p);
  }
  char* grown = static_cast<char*>(block_cache::reallocate(same, 5000));
  ASSERT_NE(grown, nullptr);
  EXPECT_EQ(std::memcmp(grown, "0123456789", 10), 0);
  char* large = static_cast<char*>(block_cache::reallocate(grown, 70000));  // past the classes
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(std::memcmp(large, "0123456789", 10), 0);
  large[69999] = 'x';
  char* larger = static_cast<char*>(block_cache::reallocate(large, 200000));
  ASSERT_NE(larger, nullptr);
  EXPECT_EQ(std::memcmp(larger, "0123456789", 10), 0);
  EXPECT_EQ(larger[69999], 'x');
  EXPECT_EQ(block_cache::reallocate(larger, 0), nullptr);  // freed
}

TEST(BlockCache, EachListIsBounded) {
  std::vector<void*> blocks;
  const size_t n = block_cache::kMaxCachedBytes / 1024 * 3;
  for (size_t i = 0; i < n; ++i) blocks.push_back(block_cache::allocate(1024));
  const size_t before = block_cache::cached().bytes;
  for (void* p : blocks) block_cache::release(p);
  EXPECT_LE(block_cache::cached().bytes - before, block_cache::kMaxCachedBytes);
  if (kCaching) {
    EXPECT_GT(block_cache::cached().bytes, before);
  }
}

TEST(BlockCache, ABlockFreedOnAnotherThreadIsSimplyCachedThere) {
  void* p = block_cache::allocate(300);
  std::thread t([p] {
    block_cache::release(p);
    if (kCaching) {
    EXPECT_EQ(block_cache::cached().blocks, 1u);
  }
    void* q = block_cache::allocate(300);
    if (kCaching) {
    EXPECT_EQ(q, p);
  }
    block_cache::release(q);
  });  // the thread's lists go back to malloc as it exits
  t.join();
}

TEST(BlockCache, NghttpTwoSessionsRunOnIt) {
  // A client session's frames, HPACK tables and streams from the cache: submit a
  // request, serialize it, free it all.
  nghttp2_session_callbacks* cbs = nullptr;
  ASSERT_EQ(nghttp2_session_callbacks_new(&cbs), 0);
  nghttp2_session* ng = nullptr;
  ASSERT_EQ(nghttp2_session_client_new3(&ng, cbs, nullptr, nullptr, h2::memory()), 0);
  nghttp2_session_callbacks_del(cbs);
  const auto field = [](const char* n, const char* v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)), reinterpret_cast<uint8_t*>(const_cast<char*>(v)),
                      std::strlen(n), std::strlen(v), NGHTTP2_NV_FLAG_NONE};
  };
  const nghttp2_nv nv[] = {field(":method", "GET"), field(":scheme", "http"), field(":authority", "a"),
                           field(":path", "/k")};
  size_t total = 0;
  for (int i = 0; i < 50; ++i) {
    ASSERT_GT(nghttp2_submit_request(ng, nullptr, nv, 4, nullptr, nullptr), 0);
    const uint8_t* data = nullptr;
    for (ssize_t n; (n = nghttp2_session_mem_send(ng, &data)) > 0;) total += static_cast<size_t>(n);
  }
  EXPECT_GT(total, 24u + 50 * 9);  // the preface, SETTINGS and 50 HEADERS frames
  nghttp2_session_del(ng);
}

}  // namespace
}  // namespace ringproxy
