#include "http/h2/memory.h"

#include "net/block_cache.h"

namespace ringproxy::h2 {

namespace {

void* ng_malloc(size_t size, void*) { return block_cache::allocate(size); }
void ng_free(void* p, void*) { block_cache::release(p); }
void* ng_calloc(size_t n, size_t size, void*) { return block_cache::allocate_zeroed(n, size); }
void* ng_realloc(void* p, size_t size, void*) { return block_cache::reallocate(p, size); }

nghttp2_mem mem = {nullptr, ng_malloc, ng_free, ng_calloc, ng_realloc};

}  // namespace

nghttp2_mem* memory() { return &mem; }

}  // namespace ringproxy::h2
