// Writing without a copy: as much as the socket takes now (uv_try_write), the rest
// queued with one uv_write. The buffers' bytes must stay put until the write callback.
#pragma once

#include <uv.h>

namespace ringproxy {

// Returns 0 when all was written (no callback follows), 1 when the rest is queued (`cb`
// follows), or a libuv error (nothing follows). Adjusts `bufs` to the queued part.
inline int write_now_or_queue(uv_stream_t* stream, uv_write_t* req, uv_buf_t* bufs, unsigned count,
                              uv_write_cb cb) {
  int written = uv_try_write(stream, bufs, count);
  if (written == UV_EAGAIN) written = 0;
  if (written < 0) return written;
  size_t left = static_cast<size_t>(written);
  unsigned first = 0;
  while (first < count && left >= bufs[first].len) {
    left -= bufs[first].len;
    ++first;
  }
  if (first == count) return 0;
  bufs[first].base += left;
  bufs[first].len -= left;
  const int rc = uv_write(req, stream, bufs + first, count - first, cb);
  return rc < 0 ? rc : 1;
}

}  // namespace ringproxy
