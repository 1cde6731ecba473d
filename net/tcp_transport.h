// Transport over a libuv TCP handle. The handle lives inside this object, which its
// owner frees only after on_closed (STYLE rule 4). Read buffers come from the worker's
// BufferPool, so a keep-alive exchange allocates nothing.
//
// libuv keeps the handle (epoll, connect, the rare queued write, shutdown, close), but
// the common reads and writes are ours, on the socket itself: recv() where libuv calls
// read(), send()/sendmsg() where it calls write()/writev(). The socket calls skip the
// VFS layers of read/write (rw_verify_area, fsnotify): 30-60 ns a call less on the KVM
// VM of bench/cost (read 394-427 ns vs recv 329-397 ns for 100 bytes; write 1,175-1,393
// vs send 1,126-1,198 ns for 85 bytes). Reads stay on libuv's readiness through its
// documented ENOBUFS path: on_alloc returns no buffer, libuv calls on_read_cb(UV_ENOBUFS)
// without reading, and we recv() there. A uv_poll_t of our own would cost an ioctl and
// an epoll_ctl ADD and DEL in uv_poll_init, and a DEL and ADD per uv_poll_start, more
// than recv saves.
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
  // start_reading(), then reads what the socket holds already from inside this call:
  // on_read may run (and the handler close the transport) before it returns. For a
  // socket just accepted, whose request is usually there: it is read in the accept's
  // loop turn instead of after the next epoll_wait (h1::ServerConn::start does).
  // bench/cost MODE=close, two runs each: 14,137 and 14,282 -> 13,885 and 13,801 user
  // instructions per connection; syscalls 9.18-9.21 -> 9.23-9.24 (a tenth of the
  // requests were not there yet: an EAGAIN recv each; epoll_wait 0.11-0.13 -> 0.07).
  // TCP_DEFER_ACCEPT on the listener would make such misses rare, but keeps a silent
  // client out of the header timeout.
  int start_reading_now();
  void stop_reading() override;
  int write(uv_buf_t* bufs, unsigned count) override;
  int shutdown_write() override;
  void close() override;

  bool initialized() const { return initialized_; }
  // The socket, or -1 before open(), accept() or connect() succeeded.
  int fd() const { return fd_; }
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
  // Reads as libuv would (until a read does not fill the buffer, EAGAIN, EOF, an error,
  // or 32 reads) and tells the handler. Only while reading_.
  void read_socket();
  void take_fd();

  BufferPool& buffers_;
  Handler& handler_;
  uv_tcp_t tcp_{};
  uv_write_t write_req_{};
  uv_connect_t connect_req_{};
  uv_shutdown_t shutdown_req_{};
  int fd_ = -1;
  bool initialized_ = false;
  bool connecting_ = false;  // uv_tcp_connect has not called back: writes go to libuv's queue
  bool shut_ = false;        // shutdown_write() was called: no more writes
};

}  // namespace ringproxy
