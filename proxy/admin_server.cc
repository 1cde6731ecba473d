#include "proxy/admin_server.h"

#include <algorithm>
#include <cstddef>

#include "http/h1/lingering_close.h"
#include "http/h1/request_parser.h"
#include "http/status.h"
#include "net/deadline_timer.h"
#include "net/tcp_transport.h"
#include "proxy/backends.h"
#include "proxy/log.h"

namespace ringproxy {

// One admin connection, one request at a time: a head is read in the transport's
// buffer, copied into an AdminRequest, its body gathered (decoded) into the request,
// the handler's answer written; only when that answer is written is the next request
// parsed, so a client that pipelines without reading holds at most one answer and one
// read buffer. Freed in its last close callback.
class AdminServer::Conn final : private Transport::Handler {
 public:
  explicit Conn(AdminServer& server) : server_(server), tcp_(buffers_, *this), in_(tcp_.buffer()) {}

  void start(uv_stream_t* listener) {
    timer_.init(server_.loop_, this);
    handles_ = 1;
    if (tcp_.init(server_.loop_) == 0) handles_ = 2;
    if (handles_ < 2 || tcp_.accept(listener) != 0) {
      close();
      return;
    }
    resume_reading();
    timer_.arm(kHeaderTimeoutMs, on_timer);
    head_timer_armed_ = true;
  }

  void close() {
    if (closing_) return;
    closing_ = true;
    auto& v = server_.conns_;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
    tcp_.close();
    uv_close(reinterpret_cast<uv_handle_t*>(timer_.handle()), on_close);
  }

 private:
  enum class Phase {
    kHead,       // reading a request head
    kBody,       // reading its body into req_.body
    kAnswering,  // an answer is being written; nothing more is parsed until it is
    kLingering,  // the last answer is written: reading only to drop (RFC 9112 9.6)
  };

  void resume_reading() {
    if (closing_ || peer_eof_ || phase_ == Phase::kAnswering) return;
    if (in_.allocated() && in_.free_space() == 0) {
      // Full: a head under way grows the buffer itself (read_head); body bytes were
      // copied out, so what remains may move to the front.
      if (phase_ != Phase::kBody) return;
      in_.compact();
      if (in_.free_space() == 0) return;
    }
    if (tcp_.start_reading() != 0) close();
  }

  // Parses and answers what is buffered, one message at a time, while no answer is
  // being written.
  void process() {
    while (!closing_) {
      if (phase_ == Phase::kHead) {
        if (in_.size() == 0 && !req_.head_started()) {
          if (peer_eof_) {
            close();  // half-closed, and every request it sent is answered
            return;
          }
          resume_reading();
          return;
        }
        if (!head_timer_armed_) {
          timer_.arm(kHeaderTimeoutMs, on_timer);
          head_timer_armed_ = true;
        }
        switch (req_.read_head(in_, kMaxHead, /*may_compact=*/true, peer_eof_)) {
          case h1::RequestParser::HeadStep::kMore:
            resume_reading();
            return;
          case h1::RequestParser::HeadStep::kRefused:
            refuse(req_.refusal().status, req_.refusal().text, req_.refusal().cause);
            return;
          case h1::RequestParser::HeadStep::kHead:
            if (!on_head()) return;
            break;
        }
      }
      if (phase_ != Phase::kBody) return;
      // Run once even with no bytes after the head: a bodiless request completes here.
      const h1::RequestParser::BodyStep step = req_.body(in_.begin_ptr(), in_.size());
      if (step.error) {
        if (req_.body_over_limit()) {
          body_too_large();
        } else {
          refuse(400, "malformed request body", "malformed body: " + std::string(req_.error_reason()));
        }
        return;
      }
      in_.consume(step.consumed);
      if (!step.complete) {
        if (peer_eof_) {
          close();  // closed mid-body: nobody to answer
          return;
        }
        timer_.arm(kIdleTimeoutMs, on_timer);
        resume_reading();
        return;
      }
      dispatch();
      // Written at once: go on with the next pipelined request, if any.
    }
  }

  // A head the codec accepted: copied out of the buffer, its body's limit checked.
  // False when the connection is answered and ends.
  bool on_head() {
    req_view_ = admin_request(req_.method_name(), req_.target(), req_.fields());
    if (const auto length = req_.content_length(); length && *length > kMaxBody) {
      body_too_large();  // answered at once: no body need be sent
      return false;
    }
    req_.keep_body(&req_view_.body, kMaxBody);
    phase_ = Phase::kBody;
    timer_.arm(kIdleTimeoutMs, on_timer);
    return true;
  }

  void dispatch() {
    const AdminResponse resp = answer_admin_request(server_.handler_, req_view_);
    // An upgrade is answered like any request, then the connection ends: what follows
    // it is not HTTP/1.1.
    const bool close_after = !req_.keep_alive() || req_.upgrade();
    const bool head = req_.is_head();
    req_.next_message();
    req_view_ = AdminRequest{};
    head_timer_armed_ = false;
    timer_.arm(kIdleTimeoutMs, on_timer);
    send(admin_response_bytes(resp, close_after, head), close_after);
  }

  // The codec's refusals, as the proxy answers them (http/status.h): plain text, then
  // the connection ends.
  void refuse(int status, std::string_view text, std::string_view cause) {
    RP_LOG(LogLevel::kInfo, "admin: answered " + std::to_string(status) + ": " + std::string(cause));
    send(canned_response(status, text, /*close=*/true, req_.is_head()), /*close_after=*/true);
  }

  // The admin's own limit: a JSON error like every admin answer (SPEC "Admin HTTP
  // endpoint"); the rest of the body is not read, so the connection ends.
  void body_too_large() {
    const AdminResponse r{413, "application/json",
                          admin_error_json("request body over " + std::to_string(kMaxBody) + " bytes"), {}};
    send(admin_response_bytes(r, /*close=*/true, req_.is_head()), /*close_after=*/true);
  }

  void send(std::string bytes, bool close_after) {
    out_ = std::move(bytes);
    close_after_ = close_after;
    phase_ = Phase::kAnswering;
    if (close_after) tcp_.stop_reading();
    uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    const int rc = tcp_.write(&buf, 1);
    if (rc < 0) {
      close();
      return;
    }
    if (rc == Transport::kWritten) answered();
    // kQueued: on_write_done follows.
  }

  void answered() {
    out_.clear();
    if (close_after_) {
      linger_close();
      return;
    }
    phase_ = Phase::kHead;
  }

  void linger_close() {
    if (peer_eof_) {
      close();  // nothing more will come
      return;
    }
    phase_ = Phase::kLingering;
    in_.clear();
    const uint32_t wait = linger_.start(uv_now(server_.loop_));
    // FIN after the answer (the shutdown runs after the queued writes).
    if (tcp_.shutdown_write() != 0 || tcp_.start_reading() != 0) {
      close();
      return;
    }
    timer_.arm(wait, on_timer);
  }

  // Transport::Handler
  void on_write_done(int status) override {
    if (status < 0) {
      close();
      return;
    }
    answered();
    if (phase_ == Phase::kHead) process();  // the next pipelined request, if any
  }

  void on_read(ssize_t n) override {
    if (phase_ == Phase::kLingering) {
      // Dropped. The client's FIN (or a reset) ends it, or the time and size bounds do.
      in_.clear();
      const uint32_t wait = linger_.on_read(n, uv_now(server_.loop_));
      if (wait == 0) {
        close();
      } else {
        timer_.arm(wait, on_timer);
      }
      return;
    }
    if (n < 0) {
      peer_eof_ = true;
      if (n != UV_EOF) {
        close();  // a reset: nobody to answer
        return;
      }
    }
    if (phase_ != Phase::kAnswering) process();
  }

  void on_closed() override {
    if (--handles_ == 0) delete this;
  }

  static void on_timer(uv_timer_t* t) {
    auto* c = static_cast<Conn*>(t->data);
    if (!c->timer_.due(on_timer)) return;
    if (c->phase_ == Phase::kHead && (c->req_.head_started() || c->in_.size() > 0)) {
      c->refuse(408, "request head not received in time", "header timeout");
    } else if (c->phase_ == Phase::kBody) {
      c->refuse(408, "request body not received in time", "client stalled mid-body");
    } else {
      c->close();  // idle, not reading our answer, or done lingering
    }
  }

  static void on_close(uv_handle_t* h) {
    auto* c = static_cast<Conn*>(h->data);
    if (--c->handles_ == 0) delete c;
  }

  AdminServer& server_;
  BufferPool buffers_;  // this connection's one read buffer (the control loop has no pool)
  TcpTransport tcp_;
  IoBuffer& in_;  // the transport's read buffer
  DeadlineTimer timer_;
  int handles_ = 0;
  bool closing_ = false;
  bool peer_eof_ = false;
  bool close_after_ = false;       // the answer being written is the last
  bool head_timer_armed_ = false;  // the current head's header timeout is running
  Phase phase_ = Phase::kHead;
  h1::RequestParser req_;  // the request side of the HTTP/1 codec
  AdminRequest req_view_;  // the request being read, as the handler sees it
  h1::LingerBudget linger_;
  std::string out_;  // the answer being written
};

AdminServer::~AdminServer() { close(); }

std::string AdminServer::listen(const Address& address) {
  sockaddr_storage sa{};
  if (!to_sockaddr(address, &sa)) return "invalid address";
  if (listener_) return "already listening";
  listener_ = new uv_tcp_t{};  // freed in its close callback (close)
  uv_tcp_init(loop_, listener_);
  listener_->data = this;
  int rc = uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&sa), address.ipv6 ? UV_TCP_IPV6ONLY : 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 128, on_connection);
  if (rc != 0) return uv_strerror(rc);
  return {};
}

void AdminServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<AdminServer*>(server->data);
  if (status < 0) return;
  auto* c = new Conn(*self);  // owned by its handles
  self->conns_.push_back(c);
  c->start(server);
  // The admin shares the process's descriptors with the data path: a bounded number of
  // connections, the newest refused (accepted and closed) past it.
  if (self->conns_.size() > kMaxConnections) {
    RP_LOG(LogLevel::kWarn, "admin: over " + std::to_string(kMaxConnections) + " connections, refusing one");
    c->close();
  }
}

void AdminServer::close() {
  if (listener_) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  const std::vector<Conn*> all = conns_;
  for (Conn* c : all) c->close();
}

}  // namespace ringproxy
