#include "net/tcp_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

#include "net/stream_write.h"

namespace ringproxy {

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
  uv_tcp_nodelay(&tcp_, 1);
  return 0;
}

int TcpTransport::open(int fd, bool nodelay_inherited) {
  const int rc = uv_tcp_open(&tcp_, fd);
  if (rc < 0) return rc;
  if (!nodelay_inherited) uv_tcp_nodelay(&tcp_, 1);
  return 0;
}

int TcpTransport::connect(const sockaddr* addr) {
  connect_req_.data = this;
  const int rc = uv_tcp_connect(&connect_req_, &tcp_, addr, on_connect_cb);
  if (rc < 0) return rc;
  uv_tcp_nodelay(&tcp_, 1);
  return 0;
}

void TcpTransport::on_connect_cb(uv_connect_t* req, int status) {
  auto* t = static_cast<TcpTransport*>(req->data);
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

void TcpTransport::stop_reading() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void TcpTransport::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* t = static_cast<TcpTransport*>(h->data);
  t->buffers_.acquire(t->in_);
  if (t->in_.free_space() == 0 && t->in_.size() == 0) t->in_.clear();
  buf->base = t->in_.end_ptr();
  buf->len = t->in_.free_space();
}

void TcpTransport::on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* t = static_cast<TcpTransport*>(s->data);
  if (nread == 0) return;
  if (nread > 0) {
    t->in_.produced(static_cast<size_t>(nread));
    if (t->in_.free_space() == 0) t->stop_reading();
  } else {
    t->stop_reading();
  }
  t->handler_.on_read(nread);
}

int TcpTransport::write(uv_buf_t* bufs, unsigned count) {
  write_req_.data = this;
  const int rc = write_now_or_queue(reinterpret_cast<uv_stream_t*>(&tcp_), &write_req_, bufs, count, on_write_cb);
  if (rc == kQueued) write_pending_ = true;
  return rc;
}

void TcpTransport::on_write_cb(uv_write_t* req, int status) {
  auto* t = static_cast<TcpTransport*>(req->data);
  t->write_pending_ = false;
  if (t->closing_) return;
  t->handler_.on_write_done(status);
}

int TcpTransport::shutdown_write() {
  shutdown_req_.data = this;
  return uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), [](uv_shutdown_t*, int) {});
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
