#include "proxy/admin_server.h"

#include <algorithm>
#include <cstddef>

#include "proxy/backends.h"
#include "http/message.h"
#include "http/status.h"
#include "proxy/log.h"

namespace ringproxy {
namespace {
constexpr uint32_t kHeaderTimeoutMs = 10000;
constexpr uint32_t kIdleTimeoutMs = 60000;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string AdminRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

std::string AdminRequest::param(std::string_view name, bool* found) const {
  std::string_view q = query;
  while (!q.empty()) {
    const size_t amp = q.find('&');
    const std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq)) == name) {
      if (found) *found = true;
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    }
  }
  if (found) *found = false;
  return {};
}

// One admin connection: one request at a time. Bytes read wait in `pending_` (at most
// kMaxPending: reading stops beyond), a message is parsed, answered, and only when
// its answer is written is the next one parsed, so a client that pipelines without
// reading holds at most one answer and one buffer of requests. Freed in its last
// close callback.
class AdminServer::Conn final : private Transport::Handler {
 public:
  static constexpr size_t kMaxPending = kMaxHead + kMaxBody + 4096;

  explicit Conn(AdminServer& server) : server_(server), tcp_(buffers_, *this) {
    llhttp_settings_init(&settings_);
    settings_.on_message_begin = [](llhttp_t* p) {
      auto* c = static_cast<Conn*>(p->data);
      c->req_ = AdminRequest{};
      c->field_.clear();
      c->value_.clear();
      c->in_value_ = false;
      c->head_done_ = false;
      c->head_bytes_ = 0;
      return 0;
    };
    settings_.on_url = [](llhttp_t* p, const char* at, size_t n) {
      static_cast<Conn*>(p->data)->req_.target.append(at, n);
      return 0;
    };
    settings_.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = static_cast<Conn*>(p->data);
      if (c->in_value_) {
        c->req_.headers.emplace_back(std::move(c->field_), std::move(c->value_));
        c->field_.clear();
        c->value_.clear();
        c->in_value_ = false;
      }
      c->field_.append(at, n);
      return 0;
    };
    settings_.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = static_cast<Conn*>(p->data);
      c->in_value_ = true;
      c->value_.append(at, n);
      return 0;
    };
    settings_.on_headers_complete = [](llhttp_t* p) {
      auto* c = static_cast<Conn*>(p->data);
      if (c->in_value_) c->req_.headers.emplace_back(std::move(c->field_), std::move(c->value_));
      c->in_value_ = false;
      c->head_done_ = true;
      if (p->content_length > kMaxBody && (p->flags & F_CONTENT_LENGTH)) {
        c->too_large_ = true;
        return -1;
      }
      return 0;
    };
    settings_.on_body = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = static_cast<Conn*>(p->data);
      if (c->req_.body.size() + n > kMaxBody) {
        c->too_large_ = true;
        return -1;
      }
      c->req_.body.append(at, n);
      return 0;
    };
    // One message at a time: the parser stops after each, to be answered first.
    settings_.on_message_complete = [](llhttp_t*) { return static_cast<int>(HPE_PAUSED); };
    llhttp_init(&parser_, HTTP_REQUEST, &settings_);
    parser_.data = this;
  }

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
  void resume_reading() {
    if (closing_ || peer_eof_ || done_ || pending_.size() >= kMaxPending) return;
    tcp_.start_reading();
  }

  void stop_reading() { tcp_.stop_reading(); }

  // Parses and answers what is pending, one message at a time, while no answer is
  // being written.
  void process() {
    while (!closing_ && !done_ && writing_ == 0 && !pending_.empty()) {
      const llhttp_errno err = llhttp_execute(&parser_, pending_.data(), pending_.size());
      if (err == HPE_PAUSED) {
        pending_.erase(0, static_cast<size_t>(llhttp_get_error_pos(&parser_) - pending_.data()));
        llhttp_resume(&parser_);
        dispatch();
        continue;
      }
      if (err == HPE_OK) {
        if (!head_done_) head_bytes_ += pending_.size();
        pending_.clear();
        if (!head_done_ && head_bytes_ > kMaxHead) {
          fail(431, "request head too large");
          return;
        }
        break;
      }
      if (too_large_) {
        fail(413, "request body over 65536 bytes");
      } else {
        fail(400, std::string("malformed request: ") + llhttp_errno_name(err));
      }
      return;
    }
    if (peer_eof_ && writing_ == 0) {
      close();  // every complete request it sent is answered
      return;
    }
    resume_reading();
  }

  void fail(int status, const std::string& message) {
    AdminResponse r;
    r.status = status;
    r.body = error_json(message);
    send(r, /*close_after=*/true, /*head=*/false);
  }

  // {"error": "..."} without a JSON library: `message` is ASCII of our own.
  static std::string error_json(const std::string& message) {
    return "{\"error\": \"" + message + "\"}\n";
  }

  void dispatch() {
    const size_t q = req_.target.find('?');
    req_.path = percent_decode(std::string_view(req_.target).substr(0, q));
    req_.query = q == std::string::npos ? std::string() : req_.target.substr(q + 1);
    req_.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
    AdminResponse resp;
    const std::string_view raw_path = std::string_view(req_.target).substr(0, q);
    const auto encoded_slash = [](std::string_view s) {
      for (size_t i = 0; i + 2 < s.size(); ++i) {
        if (s[i] == '%' && s[i + 1] == '2' && (s[i + 2] == 'f' || s[i + 2] == 'F')) return true;
      }
      return false;
    };
    try {
      // Routing splits the decoded path at '/': an encoded one ("a-1%2Fdrain") would
      // reach another route than the one the client named. No node name holds a '/'.
      resp = encoded_slash(raw_path) ? AdminResponse{400, "application/json", error_json("encoded '/' in the path"), {}}
                                     : server_.handler_(req_);
    } catch (const std::exception& e) {
      // Nothing thrown may reach llhttp or libuv: the process would end.
      RP_LOG(LogLevel::kError, std::string("admin: ") + req_.method + " " + req_.path + ": " + e.what());
      resp = {500, "application/json", error_json("internal error"), {}};
    }
    // An upgrade (or CONNECT) is answered like any request, then the connection ends:
    // what follows it is not HTTP/1.1.
    const bool close_after = llhttp_should_keep_alive(&parser_) == 0 || parser_.upgrade;
    send(resp, close_after, parser_.method == HTTP_HEAD);
    timer_.arm(kIdleTimeoutMs, on_timer);
  }

  void send(const AdminResponse& resp, bool close_after, bool head) {
    out_ = "HTTP/1.1 " + std::to_string(resp.status) + " ";
    out_ += reason_phrase(resp.status);
    out_ += "\r\nContent-Type: " + resp.content_type + "\r\nContent-Length: " + std::to_string(resp.body.size()) +
            "\r\nCache-Control: no-store\r\n";
    for (const auto& [k, v] : resp.headers) out_ += k + ": " + v + "\r\n";
    if (close_after) out_ += "Connection: close\r\n";
    out_ += "\r\n";
    if (!head) out_ += resp.body;  // HEAD: the same head, no body
    if (close_after) {
      done_ = true;
      stop_reading();
    }
    uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    const int rc = tcp_.write(&buf, 1);
    if (rc < 0) {
      close();
      return;
    }
    if (rc == Transport::kQueued) {
      ++writing_;
      return;
    }
    // All written at once: process() goes on to the next pipelined request.
    if (done_) close();
  }

  // Transport::Handler
  void on_write_done(int status) override {
    --writing_;
    if (status < 0 || done_) {
      close();
      return;
    }
    process();  // the next pipelined request, if any
  }

  void on_read(ssize_t n) override {
    if (n < 0) {
      peer_eof_ = true;
      if (n != UV_EOF) {
        close();
        return;
      }
      process();
      return;
    }
    IoBuffer& in = tcp_.buffer();
    pending_.append(in.begin_ptr(), in.size());
    in.clear();
    if (pending_.size() >= kMaxPending) stop_reading();
    process();
  }

  void on_closed() override {
    if (--handles_ == 0) delete this;
  }

  static void on_timer(uv_timer_t* t) {
    auto* c = static_cast<Conn*>(t->data);
    if (c->timer_.due(on_timer)) c->close();
  }

  static void on_close(uv_handle_t* h) {
    auto* c = static_cast<Conn*>(h->data);
    if (--c->handles_ == 0) delete c;
  }

  AdminServer& server_;
  BufferPool buffers_;  // this connection's one read buffer (the control loop has no pool)
  TcpTransport tcp_;
  DeadlineTimer timer_;
  int handles_ = 0;
  int writing_ = 0;         // 0 or 1: one answer at a time
  bool closing_ = false;
  bool done_ = false;       // the answer being written is the last
  bool peer_eof_ = false;
  bool too_large_ = false;
  bool head_done_ = false;
  size_t head_bytes_ = 0;   // raw bytes of the head so far
  llhttp_settings_t settings_{};
  llhttp_t parser_{};
  AdminRequest req_;
  std::string field_, value_;
  bool in_value_ = false;
  std::string pending_;     // read, not yet parsed
  std::string out_;         // the answer being written
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
