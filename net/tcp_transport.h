// Transport over a libuv TCP handle. The handle lives inside this object, which its
// owner frees only after on_closed (STYLE rule 4). Read buffers come from the worker's
// BufferPool, so a keep-alive exchange allocates nothing.
//
// Thread: the loop's.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstddef>

#include "net/transport.h"

namespace ringproxy {

class TcpTransport final : public Transport {
 public:
  TcpTransport(BufferPool& buffers, Handler& handler) : buffers_(buffers), handler_(handler) {}
  ~TcpTransport() override { buffers_.release(in_); }
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  // Initialises the handle on `loop`. Once this returned 0, close() must be called.
  int init(uv_loop_t* loop);
  // Takes a pending connection of `server` (after init). TCP_NODELAY is set.
  int accept(uv_stream_t* server);
  // Takes an accepted socket `fd` (after init); on an error the fd stays the caller's.
  // TCP_NODELAY is set, unless `nodelay_inherited`: the listening socket had it, and
  // Linux copies it to the sockets it accepts (a setsockopt per connection saved).
  int open(int fd, bool nodelay_inherited = false);
  // Starts connecting (after init); Handler::on_connect follows unless this fails.
  int connect(const sockaddr* addr);
  // The peer's IP address as text into `out` ("" when unknown).
  void peer_ip(char* out, size_t size);
  // `addr`'s IP address as text into `out` (at least INET6_ADDRSTRLEN bytes; "" for
  // another family). IPv4 without snprintf: it runs once per accepted connection.
  static void ip_text(const sockaddr* addr, char* out, size_t size);

  int start_reading() override;
  void stop_reading() override;
  int write(uv_buf_t* bufs, unsigned count) override;
  int shutdown_write() override;
  void close() override;

  bool initialized() const { return initialized_; }
  // Gives the memory of an empty read buffer back to the pool (an idle connection).
  void release_buffer() {
    if (in_.size() == 0) buffers_.release(in_);
  }

 private:
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write_cb(uv_write_t* req, int status);
  static void on_connect_cb(uv_connect_t* req, int status);
  static void on_close_cb(uv_handle_t* h);

  BufferPool& buffers_;
  Handler& handler_;
  uv_tcp_t tcp_{};
  uv_write_t write_req_{};
  uv_connect_t connect_req_{};
  uv_shutdown_t shutdown_req_{};
  bool initialized_ = false;
};

}  // namespace ringproxy
