#include "net/tcp_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstddef>

#include "net/socket_calls.h"

namespace ringproxy {

// write() hands uv_buf_t arrays to sendmsg as iovecs, as libuv does (uv/unix.h lays
// uv_buf_t out as struct iovec).
static_assert(sizeof(uv_buf_t) == sizeof(iovec) && offsetof(uv_buf_t, base) == offsetof(iovec, iov_base) &&
              offsetof(uv_buf_t, len) == offsetof(iovec, iov_len));

int TcpTransport::init(uv_loop_t* loop) {
  const int rc = uv_tcp_init(loop, &tcp_);
  if (rc < 0) return rc;
  tcp_.data = this;
  initialized_ = true;
  return 0;
}

int TcpTransport::accept(uv_stream_t* server) {
  const int rc = uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_));
  if (rc < 0) return rc;
  take_fd();
  uv_tcp_nodelay(&tcp_, 1);
  return 0;
}

int TcpTransport::open(int fd, bool nodelay_inherited) {
  // uv_tcp_open sets O_NONBLOCK again (an ioctl), though accept4 made the socket
  // non-blocking: libuv 1.44 has no public way to open a stream without it.
  const int rc = uv_tcp_open(&tcp_, fd);
  if (rc < 0) return rc;
  fd_ = fd;
  if (!nodelay_inherited) uv_tcp_nodelay(&tcp_, 1);
  return 0;
}

int TcpTransport::connect(const sockaddr* addr) {
  connect_req_.data = this;
  const int rc = uv_tcp_connect(&connect_req_, &tcp_, addr, on_connect_cb);
  if (rc < 0) return rc;
  take_fd();
  connecting_ = true;
  uv_tcp_nodelay(&tcp_, 1);
  return 0;
}

void TcpTransport::take_fd() {
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) == 0) fd_ = fd;
}

void TcpTransport::on_connect_cb(uv_connect_t* req, int status) {
  auto* t = static_cast<TcpTransport*>(req->data);
  t->connecting_ = false;
  if (t->closing_) return;  // closed while connecting: nobody to tell
  t->handler_.on_connect(status);
}

void TcpTransport::peer_ip(char* out, size_t size) {
  out[0] = '\0';
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return;
  ip_text(reinterpret_cast<const sockaddr*>(&peer), out, size);
}

void TcpTransport::ip_text(const sockaddr* addr, char* out, size_t size) {
  out[0] = '\0';
  if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, out, static_cast<socklen_t>(size));
    return;
  }
  if (addr->sa_family != AF_INET || size < INET_ADDRSTRLEN) return;
  const auto* b = reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in*>(addr)->sin_addr);
  char* p = out;
  for (int i = 0; i < 4; ++i) {
    unsigned v = b[i];
    if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
    if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
    *p++ = static_cast<char>('0' + v % 10);
    *p++ = i < 3 ? '.' : '\0';
  }
}

int TcpTransport::start_reading() {
  if (reading_ || closing_) return 0;
  const int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read_cb);
  reading_ = rc == 0;
  return rc;
}

int TcpTransport::start_reading_now() {
  if (reading_ || closing_) return 0;
  const int rc = start_reading();
  if (rc == 0) read_socket();
  return rc;
}

void TcpTransport::stop_reading() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

// No buffer: libuv then calls on_read_cb(UV_ENOBUFS) without calling read() (uv_alloc_cb's
// documented contract), and keeps the socket in epoll; read_socket() does the reading.
void TcpTransport::on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) { *buf = uv_buf_init(nullptr, 0); }

void TcpTransport::on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* t = static_cast<TcpTransport*>(s->data);
  if (nread == UV_ENOBUFS) {
    t->read_socket();
    return;
  }
  // libuv does not read itself, so nothing else should come; were it to (a future
  // version's EOF short cut, say), an error or EOF ends reading as it always did.
  if (nread >= 0) return;
  t->stop_reading();
  t->handler_.on_read(nread);
}

void TcpTransport::read_socket() {
  // At most 32 reads per event, as uv__read: a peer that keeps the buffer full does
  // not starve the loop's other sockets (epoll reports this one again next turn).
  for (int turn = 0; turn < 32 && reading_; ++turn) {
    buffers_.acquire(in_);  // again each turn: the handler may have released it
    if (in_.free_space() == 0 && in_.size() == 0) in_.clear();
    const size_t room = in_.free_space();
    if (room == 0) {  // started on a full buffer: as libuv did with a zero-length buffer
      stop_reading();
      handler_.on_read(UV_ENOBUFS);
      return;
    }
    ssize_t n;
    do {
      n = sock::recv(fd_, in_.end_ptr(), room, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // woken for nothing: wait on
      const int err = -errno;  // libuv's error codes are -errno on Unix
      stop_reading();
      handler_.on_read(err);
      return;
    }
    if (n == 0) {
      stop_reading();
      handler_.on_read(UV_EOF);
      return;
    }
    in_.produced(static_cast<size_t>(n));
    const bool filled = static_cast<size_t>(n) == room;
    if (in_.free_space() == 0) stop_reading();
    handler_.on_read(n);
    // libuv's rule (uv__read): a read that did not fill its buffer took all there was,
    // so no second recv() to hear EAGAIN. After a full one, read on only if the handler
    // made room and reads again.
    if (!filled) return;
  }
}

int TcpTransport::write(uv_buf_t* bufs, unsigned count) {
  if (shut_) return UV_EPIPE;
  size_t written = 0;
  if (!connecting_) {  // while connecting, uv_write queues it all until connected
    ssize_t n;
    do {
      if (count == 1) {
        n = sock::send(fd_, bufs[0].base, bufs[0].len, MSG_NOSIGNAL);
      } else {
        msghdr msg{};
        msg.msg_iov = reinterpret_cast<iovec*>(bufs);
        msg.msg_iovlen = count;
        n = sock::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      }
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
      n = 0;
    }
    written = static_cast<size_t>(n);
  }
  unsigned first = 0;
  while (first < count && written >= bufs[first].len) {
    written -= bufs[first].len;
    ++first;
  }
  if (first == count) return kWritten;
  bufs[first].base += written;
  bufs[first].len -= written;
  // The rest waits for POLLOUT in libuv's queue (it writes with writev then).
  write_req_.data = this;
  const int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), bufs + first, count - first, on_write_cb);
  if (rc < 0) return rc;
  write_pending_ = true;
  return kQueued;
}

void TcpTransport::on_write_cb(uv_write_t* req, int status) {
  auto* t = static_cast<TcpTransport*>(req->data);
  t->write_pending_ = false;
  if (t->closing_) return;
  t->handler_.on_write_done(status);
}

int TcpTransport::shutdown_write() {
  shutdown_req_.data = this;
  const int rc = uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), [](uv_shutdown_t*, int) {});
  if (rc == 0) shut_ = true;
  return rc;
}

void TcpTransport::close() {
  if (closing_ || !initialized_) return;
  closing_ = true;
  reading_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close_cb);
}

void TcpTransport::on_close_cb(uv_handle_t* h) {
  auto* t = static_cast<TcpTransport*>(h->data);
  t->handler_.on_closed();
}

}  // namespace ringproxy
