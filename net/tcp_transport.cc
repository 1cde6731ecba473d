#include "net/tcp_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>

#include "net/socket_calls.h"

namespace ringproxy {

// write() takes uv_buf_t arrays, which uv/unix.h lays out as struct iovec.
static_assert(sizeof(uv_buf_t) == sizeof(iovec) && offsetof(uv_buf_t, base) == offsetof(iovec, iov_base) &&
              offsetof(uv_buf_t, len) == offsetof(iovec, iov_len));

namespace {

void set_nodelay(int fd) {
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);  // best effort, as uv_tcp_nodelay was used
}

}  // namespace

int TcpTransport::register_fd(int fd) {
  const int rc = poller_->add(fd, this, &token_);
  if (rc == 0) fd_ = fd;
  return rc;
}

int TcpTransport::open(int fd, bool nodelay_inherited) {
  if (!initialized_ || closing_ || fd_ >= 0) return UV_EINVAL;
  const int rc = register_fd(fd);
  if (rc < 0) return rc;
  if (!nodelay_inherited) set_nodelay(fd);
  return 0;
}

int TcpTransport::connect(const sockaddr* addr) {
  if (!initialized_ || closing_ || fd_ >= 0) return UV_EINVAL;
  const int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;  // EMFILE and the like: the caller tells a local failure apart
  set_nodelay(fd);
  const socklen_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  int rc;
  do {
    rc = ::connect(fd, addr, len);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EINPROGRESS) {
    // As libuv: a refusal the kernel knows at once (loopback) is told through
    // on_connect like one that comes later; any other error is the call's.
    if (errno != ECONNREFUSED) {
      const int err = -errno;
      ::close(fd);
      return err;
    }
    connect_error_ = UV_ECONNREFUSED;
  }
  if (const int reg = register_fd(fd); reg < 0) {
    ::close(fd);
    return reg;
  }
  connecting_ = true;
  writable_ = false;  // until the connect's EPOLLOUT
  if (connect_error_ != 0) poller_->defer(this);
  return 0;
}

void TcpTransport::finish_connect() {
  int err = connect_error_;
  if (err == 0) {
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
    err = -so_error;
  }
  connect_error_ = 0;
  connecting_ = false;
  handler_.on_connect(err);
  if (closing_) return;
  if (err < 0) {
    // Not closed by its handler: the write that waited for the connection fails too.
    if (write_pending_) {
      write_pending_ = false;
      pending_.clear();
      handler_.on_write_done(err);
    }
    return;
  }
  if (write_pending_ && writable_) flush_pending();
  if (closing_) return;
  if (!write_pending_ && shut_pending_) {
    shut_pending_ = false;
    ::shutdown(fd_, SHUT_WR);
  }
  if (reading_ && readable_) read_socket();
}

void TcpTransport::peer_ip(char* out, size_t size) {
  out[0] = '\0';
  if (fd_ < 0) return;
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return;
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
  if (fd_ < 0) return UV_ENOTCONN;
  reading_ = true;
  // Edge-triggered: bytes that came while we were not reading raise no new event.
  if (readable_ && !connecting_) poller_->defer(this);
  return 0;
}

int TcpTransport::start_reading_now() {
  if (reading_ || closing_) return 0;
  if (fd_ < 0) return UV_ENOTCONN;
  reading_ = true;
  if (!connecting_) read_socket();
  return 0;
}

void TcpTransport::stop_reading() { reading_ = false; }

void TcpTransport::on_poll_events(uint32_t events) {
  if (closing_) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable_ = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) peer_done_ = true;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writable_ = true;
  if (connecting_) {
    if (writable_) finish_connect();
    return;
  }
  if (write_pending_ && writable_) {
    flush_pending();
    if (closing_) return;
  }
  if (reading_ && readable_) read_socket();
}

void TcpTransport::on_poll_ready() {
  if (closing_) return;
  if (connecting_) {
    if (connect_error_ != 0) finish_connect();
    return;
  }
  if (reading_ && readable_) read_socket();
}

void TcpTransport::on_poll_retired() { handler_.on_closed(); }

void TcpTransport::read_socket() {
  // At most 32 reads per event, as uv__read did: a peer that keeps the buffer full
  // does not starve the loop's other sockets; the rest is read next turn (defer).
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
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        readable_ = false;  // the next bytes raise an event
        return;
      }
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
    // A read that did not fill its buffer took all there was (libuv's rule): no second
    // recv() to hear EAGAIN; bytes that come later raise a new event. Unless the peer's
    // FIN (or an error) came with the bytes: its event is spent, so read on to the EOF.
    const bool drained = static_cast<size_t>(n) < room && !peer_done_;
    if (drained) readable_ = false;
    if (in_.free_space() == 0) stop_reading();
    handler_.on_read(n);
    if (drained) return;
  }
  // 32 full reads, or a handler that stopped reading: come back for the rest.
  if (reading_ && readable_ && !closing_) poller_->defer(this);
}

int TcpTransport::write(uv_buf_t* bufs, unsigned count) {
  if (shut_ || closing_) return UV_EPIPE;
  if (fd_ < 0) return UV_ENOTCONN;
  size_t written = 0;
  if (!connecting_ && writable_) {  // while connecting it all waits for the connection
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
  // The socket is full (or not connected yet): the rest waits for EPOLLOUT. The
  // buffers stay the caller's until on_write_done; only their list is copied.
  if (!connecting_) writable_ = false;
  const auto* iov = reinterpret_cast<const iovec*>(bufs);
  pending_.assign(iov + first, iov + count);
  pending_[0].iov_base = static_cast<char*>(pending_[0].iov_base) + written;
  pending_[0].iov_len -= written;
  pending_first_ = 0;
  write_pending_ = true;
  return kQueued;
}

void TcpTransport::flush_pending() {
  while (pending_first_ < pending_.size()) {
    msghdr msg{};
    msg.msg_iov = pending_.data() + pending_first_;
    msg.msg_iovlen = std::min<size_t>(pending_.size() - pending_first_, IOV_MAX);
    ssize_t n;
    do {
      n = sock::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        writable_ = false;
        return;
      }
      const int err = -errno;
      write_pending_ = false;
      pending_.clear();
      handler_.on_write_done(err);
      return;
    }
    auto written = static_cast<size_t>(n);
    while (pending_first_ < pending_.size() && written >= pending_[pending_first_].iov_len) {
      written -= pending_[pending_first_].iov_len;
      ++pending_first_;
    }
    if (pending_first_ < pending_.size()) {
      iovec& v = pending_[pending_first_];
      v.iov_base = static_cast<char*>(v.iov_base) + written;
      v.iov_len -= written;
    }
  }
  pending_.clear();
  write_pending_ = false;
  if (shut_pending_) {
    shut_pending_ = false;
    ::shutdown(fd_, SHUT_WR);
  }
  handler_.on_write_done(0);
}

int TcpTransport::shutdown_write() {
  if (closing_) return UV_EPIPE;
  if (fd_ < 0) return UV_ENOTCONN;
  if (shut_) return 0;
  shut_ = true;
  if (write_pending_ || connecting_) {
    shut_pending_ = true;  // the FIN follows what is queued, as uv_shutdown did
    return 0;
  }
  if (::shutdown(fd_, SHUT_WR) != 0 && errno != ENOTCONN) return -errno;
  return 0;
}

void TcpTransport::close() {
  if (closing_ || !initialized_) return;
  closing_ = true;
  reading_ = false;
  if (fd_ >= 0) {
    // close(2) takes the socket out of the epoll set (no EPOLL_CTL_DEL); forget() drops
    // whatever this turn still holds for it.
    poller_->forget(token_);
    ::close(fd_);
    fd_ = -1;
  }
  pending_.clear();
  write_pending_ = false;  // dropped: only on_closed follows
  poller_->retire(this);
}

}  // namespace ringproxy
