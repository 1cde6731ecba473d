// Transport over a TCP socket of our own, watched by the loop's Poller (net/poller.h:
// edge-triggered, added once, gone with close(2)). Read buffers come from the worker's
// BufferPool, so a keep-alive exchange allocates nothing; what a write leaves behind
// waits for the socket's next EPOLLOUT in an iovec array kept for the next time.
//
// The socket calls are recv() and send()/sendmsg() rather than read() and write()/
// writev(): they skip the VFS layers of read/write (rw_verify_area, fsnotify), 30-60 ns
// a call less on the KVM VM of bench/cost (read 394-427 ns vs recv 329-397 ns for 100
// bytes; write 1,175-1,393 vs send 1,126-1,198 ns for 85 bytes), made through syscall(2)
// (net/socket_calls.h).
//
// This was a uv_tcp_t until the poller came (issue 12); the contracts (net/transport.h) are the same,
// including when callbacks come: on_connect and a queued write's on_write_done from an
// event, never from inside the call that started them; on_closed after close(), from
// the loop.
//
// Thread: the loop's.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "net/poller.h"
#include "net/transport.h"

namespace ringproxy {

class TcpTransport final : public Transport, private Poller::Socket {
 public:
  TcpTransport(BufferPool& buffers, Handler& handler) : buffers_(buffers), handler_(handler) {}
  ~TcpTransport() override { buffers_.release(in_); }
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  // Binds the transport to `poller` (no socket yet; cannot fail: 0). After it, close()
  // must be called, and on_closed awaited, before the transport is freed.
  int init(Poller& poller) {
    poller_ = &poller;
    initialized_ = true;
    return 0;
  }
  // Takes an accepted, non-blocking socket `fd` (accept4 with SOCK_NONBLOCK); on an
  // error the fd stays the caller's. TCP_NODELAY is set, unless `nodelay_inherited`:
  // the listening socket had it, and Linux copies it to the sockets it accepts (a
  // setsockopt per connection saved).
  int open(int fd, bool nodelay_inherited = false);
  // Starts connecting (after init); Handler::on_connect follows unless this fails. A
  // refusal the kernel gives at once comes through on_connect too, as libuv does.
  int connect(const sockaddr* addr);
  // The peer's IP address as text into `out` ("" when unknown).
  void peer_ip(char* out, size_t size);
  // `addr`'s IP address as text into `out` (at least INET6_ADDRSTRLEN bytes; "" for
  // another family). IPv4 without snprintf: it runs once per accepted connection.
  static void ip_text(const sockaddr* addr, char* out, size_t size);

  int start_reading() override;
  // start_reading(), then reads what the socket holds already from inside this call:
  // on_read may run (and the handler close the transport) before it returns
  // (h1::ServerConn::FirstRead::kNow). On libuv's poll a request was there at accept
  // nine times in ten; on this poller, which accepts sooner, one in six, so the proxy
  // now waits for the event (FirstRead::kOnEvent).
  int start_reading_now();
  void stop_reading() override;
  int write(uv_buf_t* bufs, unsigned count) override;
  int shutdown_write() override;
  void close() override;

  bool initialized() const { return initialized_; }
  // The socket, or -1 before open() or connect() succeeded and after close().
  int fd() const { return fd_; }
  // Gives the memory of an empty read buffer back to the pool (an idle connection).
  void release_buffer() {
    if (in_.size() == 0) buffers_.release(in_);
  }

 private:
  // Poller::Socket
  void on_poll_events(uint32_t events) override;
  void on_poll_ready() override;
  void on_poll_retired() override;

  // Reads (until a read does not fill the buffer, EAGAIN, EOF, an error, or 32 reads)
  // and tells the handler. Only while reading_.
  void read_socket();
  // Writes what waits in pending_; tells the handler when all of it is out, or failed.
  void flush_pending();
  // The connect finished (SO_ERROR, or the error kept from connect()).
  void finish_connect();
  int register_fd(int fd);

  BufferPool& buffers_;
  Handler& handler_;
  Poller* poller_ = nullptr;
  uint64_t token_ = 0;
  std::vector<iovec> pending_;  // a queued write's rest; capacity kept for the next one
  size_t pending_first_ = 0;
  int fd_ = -1;
  int connect_error_ = 0;     // a refusal from connect() itself, told from the loop
  bool initialized_ = false;
  bool connecting_ = false;   // connect() has not called back: writes wait in pending_
  // The socket may hold bytes (an event came, no read drained it). Not at the start:
  // bytes already there when the socket joins the set raise an event all the same
  // (epoll_ctl ADD polls it once).
  bool readable_ = false;
  bool writable_ = true;      // no send has found the socket full since its last EPOLLOUT
  bool peer_done_ = false;    // EPOLLRDHUP, HUP or ERR came: what is left ends in EOF or an error
  bool shut_ = false;         // shutdown_write() was called: no more writes
  bool shut_pending_ = false; // ... and the FIN waits for pending_ or the connect
};

}  // namespace ringproxy
