#include "proxy/admin_server.h"

#include <algorithm>
#include <cstddef>
#include <deque>

#include "proxy/backends.h"
#include "proxy/http_util.h"
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

// One admin connection. Freed in its last close callback.
class AdminServer::Conn {
 public:
  explicit Conn(AdminServer& server) : server_(server) {
    llhttp_settings_init(&settings_);
    settings_.on_message_begin = [](llhttp_t* p) {
      auto* c = static_cast<Conn*>(p->data);
      c->req_ = AdminRequest{};
      c->field_.clear();
      c->in_value_ = false;
      c->head_bytes_ = 0;
      return 0;
    };
    settings_.on_url = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = static_cast<Conn*>(p->data);
      c->req_.target.append(at, n);
      return c->count_head(n);
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
      return c->count_head(n);
    };
    settings_.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = static_cast<Conn*>(p->data);
      c->in_value_ = true;
      c->value_.append(at, n);
      return c->count_head(n);
    };
    settings_.on_headers_complete = [](llhttp_t* p) {
      auto* c = static_cast<Conn*>(p->data);
      if (c->in_value_) c->req_.headers.emplace_back(std::move(c->field_), std::move(c->value_));
      c->in_value_ = false;
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
    settings_.on_message_complete = [](llhttp_t* p) {
      auto* c = static_cast<Conn*>(p->data);
      c->dispatch();
      // After a response that closes the connection, nothing more is parsed.
      return (c->closing_ || c->closing_after_write_) ? HPE_PAUSED : 0;
    };
    llhttp_init(&parser_, HTTP_REQUEST, &settings_);
    parser_.data = this;
  }

  void start(uv_stream_t* listener) {
    uv_tcp_init(server_.loop_, &tcp_);
    tcp_.data = this;
    timer_.init(server_.loop_, this);
    handles_ = 2;
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0 ||
        uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read) != 0) {
      close();
      return;
    }
    timer_.arm(kHeaderTimeoutMs, on_timer);
  }

  void close() {
    if (closing_) return;
    closing_ = true;
    auto& v = server_.conns_;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_.handle()), on_close);
  }

 private:
  int count_head(size_t n) {
    head_bytes_ += n;
    return head_bytes_ > kMaxHead ? -1 : 0;
  }

  void dispatch() {
    const size_t q = req_.target.find('?');
    req_.path = percent_decode(std::string_view(req_.target).substr(0, q));
    req_.query = q == std::string::npos ? std::string() : req_.target.substr(q + 1);
    req_.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
    AdminResponse resp;
    resp = server_.handler_(req_);
    send(resp, llhttp_should_keep_alive(&parser_) == 0);
    timer_.arm(kIdleTimeoutMs, on_timer);
  }

  void send(const AdminResponse& resp, bool close_after) {
    std::string& out = out_.emplace_back();
    out = "HTTP/1.1 " + std::to_string(resp.status) + " ";
    out += reason_phrase(resp.status);
    out += "\r\nContent-Type: " + resp.content_type + "\r\nContent-Length: " + std::to_string(resp.body.size()) +
           "\r\nCache-Control: no-store\r\n";
    for (const auto& [k, v] : resp.headers) out += k + ": " + v + "\r\n";
    if (close_after) out += "Connection: close\r\n";
    out += "\r\n";
    out += resp.body;
    auto* req = new WriteReq{this, close_after};  // freed in on_write
    uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
    ++writes_;
    if (uv_write(&req->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, on_write) != 0) {
      --writes_;
      delete req;
      close();
      return;
    }
    if (close_after) {
      closing_after_write_ = true;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    }
  }

  struct WriteReq {
    Conn* conn;
    bool close_after;
    uv_write_t req{};
  };

  static void on_write(uv_write_t* w, int status) {
    auto* req = reinterpret_cast<WriteReq*>(reinterpret_cast<char*>(w) - offsetof(WriteReq, req));
    Conn* c = req->conn;
    const bool close_after = req->close_after;
    delete req;
    --c->writes_;
    if (!c->out_.empty()) c->out_.pop_front();
    if (status < 0 || close_after) c->close();
  }

  static void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
    static thread_local char scratch[16384];
    buf->base = scratch;
    buf->len = sizeof scratch;
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Conn*>(s->data);
    if (n == 0) return;
    if (n < 0) {
      if (c->writes_ == 0) c->close();
      else c->closing_after_write_ = true;
      return;
    }
    if (c->closing_after_write_) return;
    const llhttp_errno err = llhttp_execute(&c->parser_, buf->base, static_cast<size_t>(n));
    if (err == HPE_OK || err == HPE_PAUSED || c->closing_) return;
    if (c->too_large_) {
      c->send({413, "application/json", "{\"error\": \"request body over 65536 bytes\"}", {}}, true);
    } else if (c->head_bytes_ > kMaxHead) {
      c->send({431, "application/json", "{\"error\": \"request head too large\"}", {}}, true);
    } else {
      c->send({400, "application/json", "{\"error\": \"malformed request\"}", {}}, true);
    }
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
  uv_tcp_t tcp_{};
  DeadlineTimer timer_;
  int handles_ = 0;
  int writes_ = 0;
  bool closing_ = false;
  bool closing_after_write_ = false;
  bool too_large_ = false;
  llhttp_settings_t settings_{};
  llhttp_t parser_{};
  AdminRequest req_;
  std::string field_, value_;
  bool in_value_ = false;
  size_t head_bytes_ = 0;
  std::deque<std::string> out_;  // responses being written, oldest first (stable addresses)
};

AdminServer::~AdminServer() { close(); }

std::string AdminServer::listen(const Address& address) {
  sockaddr_storage sa{};
  if (!to_sockaddr(address, &sa)) return "invalid address";
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  listening_ = true;
  int rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&sa), address.ipv6 ? UV_TCP_IPV6ONLY : 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, on_connection);
  if (rc != 0) return uv_strerror(rc);
  return {};
}

void AdminServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<AdminServer*>(server->data);
  if (status < 0) return;
  auto* c = new Conn(*self);  // owned by its handles
  self->conns_.push_back(c);
  c->start(server);
}

void AdminServer::close() {
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
  }
  const std::vector<Conn*> all = conns_;
  for (Conn* c : all) c->close();
}

}  // namespace ringproxy
