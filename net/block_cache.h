// Small blocks for the codecs' per-stream memory (nghttp2's streams, frames, header
// buffers): a cache of freed blocks per size class and per thread, so a worker that has
// carried some load allocates nothing from malloc for a new stream, and never takes a
// lock or touches another thread's memory to do it.
//
// Each block is malloc'd on its own with a 16-byte header naming its class; a freed block
// goes on the free list of the thread that frees it (any thread: blocks are independent,
// so one freed on another thread, at shutdown say, is simply cached there). Each list
// keeps at most kMaxCachedBytes; the rest goes back to malloc. A thread's lists are
// released when it exits.
//
// Under AddressSanitizer (RINGPROXY_SANITIZE) every call goes straight to malloc and free:
// a cached block would hide a use after free from it.
#pragma once

#include <cstddef>

namespace ringproxy::block_cache {

// 16-byte aligned, like malloc's; nullptr when out of memory.
void* allocate(size_t size);
void* allocate_zeroed(size_t count, size_t size);
// A block of allocate*(), or null.
void release(void* p);
// realloc(): the same block when `size` still fits its class.
void* reallocate(void* p, size_t size);

// Blocks now on the calling thread's free lists, and their bytes (tests, metrics).
struct Stats {
  size_t blocks = 0;
  size_t bytes = 0;
};
Stats cached();

// The classes: 64 bytes to 16 KiB, powers of two. Larger blocks are not cached.
inline constexpr size_t kMinClass = 64;
inline constexpr size_t kMaxClass = 16 * 1024;
inline constexpr size_t kMaxCachedBytes = 1024 * 1024;  // per class and thread

}  // namespace ringproxy::block_cache
