// nghttp2's allocator for our sessions: the worker's block cache (net/block_cache.h), so
// a stream's frames, state and header buffers come from blocks earlier streams freed.
#pragma once

#include <nghttp2/nghttp2.h>

namespace ringproxy::h2 {

// For nghttp2_session_{server,client}_new3; lives as long as the process.
nghttp2_mem* memory();

}  // namespace ringproxy::h2
