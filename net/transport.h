// The byte layer under every connection we own (client, upstream, admin, health probe):
// reads into the connection's IoBuffer, writes that try the socket first and queue the
// rest, half-close, close. A protocol codec sits on top and never sees a socket; TLS is
// the second implementation of this interface (net/tls_transport.h), plain TCP the first.
//
// Contracts:
//  - One handler, called on the loop's thread: on_connect (outgoing only), on_read,
//    on_write_done, on_closed. A call that returns an error never also calls back
//    (STYLE rule 5).
//  - write() pins the buffers it is given until on_write_done when it returns kQueued:
//    that is the backpressure signal; the codec stops reading the other side until then.
//  - Reading stops by itself when buffer() is full, and after EOF or an error.
//  - close() is idempotent; on_closed comes once, from the loop, after which the
//    transport's memory may be freed (never before: STYLE rule 4).
#pragma once

#include <sys/types.h>
#include <uv.h>

#include "net/io_buffer.h"

namespace ringproxy {

class Transport {
 public:
  class Handler {
   public:
    virtual void on_connect(int status) { (void)status; }
    // nread > 0: that many bytes were appended to buffer(). nread < 0: UV_EOF or an
    // error; reading has stopped.
    virtual void on_read(ssize_t nread) = 0;
    // The write that returned kQueued has finished (status 0) or failed.
    virtual void on_write_done(int status) = 0;
    virtual void on_closed() = 0;

   protected:
    ~Handler() = default;
  };

  static constexpr int kWritten = 0;  // write(): all of it went to the socket, no callback
  static constexpr int kQueued = 1;   // write(): the rest is queued, on_write_done follows

  virtual ~Transport() = default;

  virtual int start_reading() = 0;  // a libuv error, or 0 (also when already reading)
  virtual void stop_reading() = 0;
  // Writes the buffers: kWritten, kQueued or a libuv error. One write at a time: not
  // called again while write_pending().
  virtual int write(uv_buf_t* bufs, unsigned count) = 0;
  // FIN after the queued writes; the read side stays open.
  virtual int shutdown_write() = 0;
  virtual void close() = 0;

  IoBuffer& buffer() { return in_; }
  bool write_pending() const { return write_pending_; }
  bool reading() const { return reading_; }
  bool closing() const { return closing_; }

 protected:
  IoBuffer in_;
  bool write_pending_ = false;
  bool reading_ = false;
  bool closing_ = false;
};

}  // namespace ringproxy
