#include "proxy/admin_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string_view>

#include "http/h1/request_parser.h"
#include "http/h1/server_conn.h"
#include "net/io_buffer.h"
#include "proxy/backends.h"
#include "proxy/listen_socket.h"
#include "proxy/log.h"

namespace ringproxy {

// One admin connection: the HTTP/1 server codec and the admin's request handler,
// allocated together and freed when the codec's handles have closed. A request is read
// whole: its head copied into an AdminRequest (the views die with the read buffer), its
// body decoded into it, then answered at once with the handler's answer
// (Downstream::respond_own). The codec parses the next pipelined request only when that
// answer is written, so a client that pipelines without reading holds at most one
// answer and one read buffer.
class AdminServer::Conn final : private h1::ServerConn::Owner, private h1::RequestHandler {
 public:
  explicit Conn(AdminServer& server) : server_(server), codec_(server.poller_, buffers_, *this, *this) {}

  // Takes `fd`, an accepted socket; false when that failed (the fd closed, and on_freed
  // follows).
  bool open(int fd) {
    if (codec_.open(fd, /*nodelay_inherited=*/true) != 0) return false;
    server_.conns_.push_back(this);
    listed_ = true;
    return true;
  }
  // The first read waits for its event: the admin answers inside it, and the accept
  // loop takes several connections in a row (h1::ServerConn::FirstRead).
  void start(const sockaddr* peer) { codec_.start(peer, h1::ServerConn::FirstRead::kOnEvent); }
  void close() { codec_.close(); }  // idempotent; frees later

 private:
  ~Conn() = default;

  // h1::ServerConn::Owner
  h1::ServerLimits limits() const override { return {kHeaderTimeoutMs, kIdleTimeoutMs, kMaxHead}; }
  void on_closing(h1::ServerConn&) override {
    // Before the AdminServer goes: its close() closes every listed connection.
    if (!listed_) return;
    auto& v = server_.conns_;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
    listed_ = false;
  }
  void on_freed(h1::ServerConn&) override { delete this; }

  // h1::RequestHandler
  void begin() override {}
  void on_request(RequestHead& head, std::string_view) override {
    h1::RequestParser& req = codec_.parser();
    active_ = true;
    req_ = &req;
    is_head_ = head.is_head;
    upgrade_ = head.upgrade;
    request_ = admin_request(head.method, head.target, *head.fields);
    if (const auto length = req.content_length(); length && *length > kMaxBody) {
      body_too_large();  // answered at once: no body need be sent
      return;
    }
    req.keep_body(&request_.body, kMaxBody);
  }
  BodyResult on_body(char*, size_t, bool end) override {
    // The parser has decoded the body into request_.body (keep_body); the framed bytes
    // offered here are not needed.
    if (req_->body_over_limit()) {
      body_too_large();
      return BodyResult::kFailed;
    }
    if (!end) return BodyResult::kTaken;
    const AdminResponse resp = answer_admin_request(server_.handler_, request_);
    // An upgrade is answered like any request, then the connection ends: what follows
    // it is not HTTP/1.1.
    const bool keep_alive = !codec_.close_requested() && !upgrade_;
    answer(admin_response_bytes(resp, !keep_alive, is_head_), keep_alive);
    return BodyResult::kFailed;  // answered: this (maybe reset) handler is done with
  }
  bool ready_for_body() const override { return active_ && !answered_; }
  bool body_pinned() const override { return false; }  // the body is copied out
  void on_client_eof() override {}                     // no tunnels here
  void on_downstream_drained() override {}             // answers go through respond_own
  void abort() override { reset(); }
  bool active() const override { return active_; }
  bool response_started() const override { return answered_; }
  bool close_after() const override { return upgrade_; }
  // The codec's refusals, as the proxy answers them (http/status.h).
  void on_answered(int status, std::string_view cause) override {
    if (!cause.empty()) RP_LOG(LogLevel::kInfo, "admin: answered " + std::to_string(status) + ": " + std::string(cause));
  }
  void on_client_note(std::string_view what) override {
    RP_LOG(LogLevel::kDebug, "admin: client " + std::string(codec_.client_ip()) + ": " + std::string(what));
  }
  void reset() override {
    active_ = answered_ = is_head_ = upgrade_ = false;
    req_ = nullptr;
    request_ = AdminRequest{};
  }

  // The admin's own limit: a JSON error like every admin answer (SPEC "Admin HTTP
  // endpoint"); the rest of the body is not read, so the connection ends.
  void body_too_large() {
    const AdminResponse r{413, "application/json",
                          admin_error_json("request body over " + std::to_string(kMaxBody) + " bytes"), {}};
    answer(admin_response_bytes(r, /*close=*/true, is_head_), /*keep_alive=*/false);
  }

  // Written whole by the codec; the handler may be reset before this returns.
  void answer(std::string bytes, bool keep_alive) {
    answered_ = true;
    out_ = std::move(bytes);
    codec_.respond_own(out_, keep_alive);
  }

  AdminServer& server_;
  BufferPool buffers_;  // this connection's one read buffer (the control loop has no pool)
  h1::ServerConn codec_;
  bool listed_ = false;    // in server_.conns_
  bool active_ = false;    // from on_request until the answer is written
  bool answered_ = false;  // respond_own was called
  bool is_head_ = false;
  bool upgrade_ = false;
  h1::RequestParser* req_ = nullptr;  // the codec's, from on_request to reset
  AdminRequest request_;              // the request being read, as the handler sees it
  std::string out_;                   // the answer handed to the codec (it swaps it out)
};

AdminServer::~AdminServer() { close(); }

// The listening socket and its two handles: a poll for readiness, a timer for the
// pause after an accept error. Freed when both have closed.
struct AdminServer::Listener {
  uv_poll_t poll{};
  uv_timer_t retry{};
  AdminServer* server = nullptr;
  int fd = -1;
  int open_handles = 0;

  void close() {
    server = nullptr;
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&poll), reinterpret_cast<uv_handle_t*>(&retry)}) {
      uv_close(h, [](uv_handle_t* closed) {
        auto* l = static_cast<Listener*>(closed->data);
        if (--l->open_handles == 0) delete l;
      });
    }
    ::close(fd);  // after uv_close took it out of the loop's epoll
    fd = -1;
  }
};

std::string AdminServer::listen(const Address& address) {
  sockaddr_storage sa{};
  if (!to_sockaddr(address, &sa)) return "invalid address";
  if (listener_) return "already listening";
  std::string error;
  // libuv's wording, as when this was uv_listen: "address already in use".
  const int fd = bind_listener(address, /*reuseport=*/false, &error);
  if (fd < 0) return uv_strerror(fd);
  if (::listen(fd, 128) != 0) {
    const int err = -errno;
    ::close(fd);
    return uv_strerror(err);
  }
  auto* l = new Listener;  // freed when its handles have closed (Listener::close)
  l->server = this;
  l->fd = fd;
  l->poll.data = l;
  l->retry.data = l;
  if (const int rc = uv_poll_init_socket(poller_.loop(), &l->poll, fd); rc < 0) {
    ::close(fd);
    delete l;
    return uv_strerror(rc);
  }
  uv_timer_init(poller_.loop(), &l->retry);
  l->open_handles = 2;
  listener_ = l;
  uv_poll_start(&l->poll, UV_READABLE, on_readable);
  return {};
}

void AdminServer::on_readable(uv_poll_t* p, int status, int) {
  auto* l = static_cast<Listener*>(p->data);
  if (l->server == nullptr) return;
  if (status < 0) {
    RP_LOG(LogLevel::kWarn, std::string("admin: listening socket: ") + uv_strerror(status));
    return;
  }
  l->server->accept_pending();
}

void AdminServer::on_retry(uv_timer_t* t) {
  auto* l = static_cast<Listener*>(t->data);
  // Level-triggered: connections still queued make the socket readable at once.
  if (l->server != nullptr) uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

void AdminServer::accept_pending() {
  for (int taken = 0; taken < kAcceptsPerEvent; ++taken) {
    sockaddr_storage peer;
    const int fd = accept_connection(listener_->fd, &peer);
    if (fd < 0) {
      if (fd == -EAGAIN) return;
      // Out of descriptors, say: the connections wait in the kernel's queue until the
      // pause ends, instead of the loop failing at once again and again.
      RP_LOG(LogLevel::kWarn, std::string("admin: accept failed: ") + std::strerror(-fd) + "; accepting paused for " +
                                  std::to_string(kAcceptRetryMs) + " ms");
      uv_poll_stop(&listener_->poll);
      uv_timer_start(&listener_->retry, on_retry, kAcceptRetryMs, 0);
      return;
    }
    auto* c = new Conn(*this);  // freed in its on_freed
    if (!c->open(fd)) continue;  // closed; on_freed follows
    // The admin shares the process's descriptors with the data path: a bounded number
    // of connections, the newest refused (accepted and closed) past it.
    if (conns_.size() > kMaxConnections) {
      RP_LOG(LogLevel::kWarn, "admin: over " + std::to_string(kMaxConnections) + " connections, refusing one");
      c->close();
      continue;
    }
    c->start(reinterpret_cast<const sockaddr*>(&peer));
  }
}

void AdminServer::close() {
  if (listener_) {
    listener_->close();
    listener_ = nullptr;
  }
  const std::vector<Conn*> all = conns_;
  for (Conn* c : all) c->close();
}

}  // namespace ringproxy
