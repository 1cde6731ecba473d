// fuzz::request and fuzz::response: one input through the proxy's real data path.
//
// Per input, on the calling thread: a real Worker (its loop, listener, ClientConn and
// upstream pools), a loopback backend and a client, all three on the worker's one loop.
// The client connects, writes its bytes and half-closes; the backend parses what it is
// sent with a strict llhttp and answers each request (with a fixed response, or with the
// input in response mode). When the client has read to the end, the worker is told to
// drain, the backend stops listening once the worker holds no connection, and the loop
// runs dry: Worker::run() returns uv_loop_close()'s result.
//
// Sockets: the listening sockets are bound once per process and each input's handles
// use dup()s of them. Binding per input would leave thousands of ports a second in
// TIME_WAIT and soon exhaust the ephemeral range; connections still take an ephemeral
// port each, which Linux reuses on loopback (net.ipv4.tcp_tw_reuse = 2, the default).
// Everything listens on 127.0.0.1.
//
// No sleeps, no clock of our own: the proxy's timeouts (250 ms here) end the exchanges
// that wait on one, and libFuzzer's -timeout catches an exchange that never ends.
#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/targets.h"
#include "proxy/backends.h"
#include "proxy/log.h"
#include "proxy/worker.h"

namespace ringproxy::fuzz {
namespace {

constexpr uint32_t kTimeoutMs = 250;

// ---------------------------------------------------------------------------------------
// Process-wide sockets

struct Sockets {
  int proxy = -1;     // listening: the worker's listener (a dup per input)
  int backend = -1;   // listening: the loopback backend (a dup per input)
  int refusing = -1;  // bound, never listening: a connect to it is refused at once
  uint16_t backend_port = 0, refusing_port = 0, proxy_port = 0;
};

int bind_loopback(bool listening, uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      (listening && ::listen(fd, 511) != 0) || ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    std::perror("fuzz harness: cannot bind a loopback socket");
    std::abort();
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

const Sockets& sockets() {
  static const Sockets s = [] {
    // A write to a client or backend that has gone must not end the process (the proxy's
    // main does the same).
    std::signal(SIGPIPE, SIG_IGN);
    Log::set_level(LogLevel::kError);
    // The access log formats a line per request: worth running, not worth keeping.
    if (!AccessLog::enabled()) (void)AccessLog::open("/dev/null");
    Sockets out;
    out.proxy = bind_loopback(true, &out.proxy_port);
    out.backend = bind_loopback(true, &out.backend_port);
    out.refusing = bind_loopback(false, &out.refusing_port);
    return out;
  }();
  return s;
}

// Two backends: "live" (the loopback backend) and "refusing" (connection refused), so
// that keys routed to the second exercise the 502 and retry paths. The input's size
// picks the hash key and the retries, so any input can reach each variant.
std::shared_ptr<const Config> config_for(size_t input_size) {
  static const std::vector<std::shared_ptr<const Config>> configs = [] {
    const Sockets& s = sockets();
    const HashKey keys[] = {{HashKeyKind::kUri, ""},       {HashKeyKind::kPath, ""},
                            {HashKeyKind::kHeader, "x-key"}, {HashKeyKind::kCookie, "sid"},
                            {HashKeyKind::kQuery, "k"},      {HashKeyKind::kClientIp, ""}};
    std::vector<std::shared_ptr<const Config>> out;
    for (uint32_t retries = 0; retries < 2; ++retries) {
      for (const HashKey& key : keys) {
        Config c;
        c.proxy.listen = {"127.0.0.1", s.proxy_port, false};
        c.proxy.workers = 1;
        c.proxy.hash_key = key;
        c.proxy.retries = retries;
        c.proxy.connect_timeout_ms = kTimeoutMs;
        c.proxy.header_timeout_ms = kTimeoutMs;
        c.proxy.idle_timeout_ms = kTimeoutMs;
        c.proxy.upstream_timeout_ms = kTimeoutMs;
        c.proxy.shutdown_timeout_ms = kTimeoutMs;
        c.proxy.max_header_bytes = 2048;
        c.proxy.log_level = LogLevel::kError;
        c.ring.vnodes = 16;
        c.admin.enabled = false;
        c.health.eject_after_failures = 0;
        c.backends.push_back({"live", {"127.0.0.1", s.backend_port, false}, 1, false, ""});
        c.backends.push_back({"refusing", {"127.0.0.1", s.refusing_port, false}, 1, false, ""});
        out.push_back(std::make_shared<const Config>(std::move(c)));
      }
    }
    return out;
  }();
  return configs[input_size % configs.size()];
}

// ---------------------------------------------------------------------------------------
// Strict parsing of a byte stream, fed in pieces

std::string printable(std::string_view bytes, size_t max = 160) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && out.size() < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f || c == '\\') {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (out.size() >= max) out += "...";
  return out;
}

struct Request {
  std::string method, url, body;
  bool operator==(const Request&) const = default;
};

// Requests in a stream, as a backend reads them. on_complete runs for each whole one.
class RequestStream {
 public:
  explicit RequestStream(std::function<void(const Request&, llhttp_t*)> on_complete = {})
      : on_complete_(std::move(on_complete)) {
    llhttp_init(&parser_, HTTP_REQUEST, &settings());
    parser_.data = this;
  }
  // HPE_OK, HPE_PAUSED_UPGRADE (the rest is another protocol: *consumed says where it
  // starts), or an error.
  llhttp_errno feed(const char* data, size_t len, size_t* consumed) {
    const llhttp_errno err = llhttp_execute(&parser_, data, len);
    *consumed = err == HPE_OK ? len : static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
    return err;
  }
  // After an upgrade request that was declined: the stream goes on as HTTP.
  void resume_after_upgrade() { llhttp_resume_after_upgrade(&parser_); }
  std::string error() const {
    const char* reason = llhttp_get_error_reason(&parser_);
    return reason ? reason : llhttp_errno_name(llhttp_get_errno(&parser_));
  }
  const std::vector<Request>& complete() const { return complete_; }
  const std::vector<std::string>& head_methods() const { return head_methods_; }

 private:
  static RequestStream* self(llhttp_t* p) { return static_cast<RequestStream*>(p->data); }
  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t out;
      llhttp_settings_init(&out);
      out.on_message_begin = [](llhttp_t* p) {
        self(p)->current_ = {};
        return 0;
      };
      out.on_url = [](llhttp_t* p, const char* at, size_t len) {
        self(p)->current_.url.append(at, len);
        return 0;
      };
      out.on_body = [](llhttp_t* p, const char* at, size_t len) {
        self(p)->current_.body.append(at, len);
        return 0;
      };
      out.on_headers_complete = [](llhttp_t* p) {
        self(p)->current_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
        self(p)->head_methods_.push_back(self(p)->current_.method);
        return 0;
      };
      out.on_message_complete = [](llhttp_t* p) {
        RequestStream* stream = self(p);
        stream->complete_.push_back(stream->current_);
        if (stream->on_complete_) stream->on_complete_(stream->current_, p);
        return 0;
      };
      return out;
    }();
    return s;
  }

  llhttp_t parser_{};
  Request current_;
  std::vector<Request> complete_;
  std::vector<std::string> head_methods_;
  std::function<void(const Request&, llhttp_t*)> on_complete_;
};

// What the client reads: responses, the i-th final one answering the i-th request
// head (so a response to HEAD has no body). Stops at a 101: a tunnel follows.
class ResponseStream {
 public:
  explicit ResponseStream(const std::vector<std::string>& request_methods) : methods_(request_methods) {
    llhttp_init(&parser_, HTTP_RESPONSE, &settings());
    parser_.data = this;
  }
  // "" or what is wrong with the whole stream.
  std::string check(std::string_view bytes) {
    const llhttp_errno err = llhttp_execute(&parser_, bytes.data(), bytes.size());
    if (err == HPE_OK || err == HPE_PAUSED_UPGRADE || err == HPE_PAUSED) return "";
    const char* reason = llhttp_get_error_reason(&parser_);
    const size_t at = static_cast<size_t>(llhttp_get_error_pos(&parser_) - bytes.data());
    return std::string("the client received bytes that do not parse as HTTP responses (") +
           (reason ? reason : llhttp_errno_name(err)) + ") at byte " + std::to_string(at) + " of \"" +
           printable(bytes, 400) + "\"";
  }

 private:
  static ResponseStream* self(llhttp_t* p) { return static_cast<ResponseStream*>(p->data); }
  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t out;
      llhttp_settings_init(&out);
      out.on_message_begin = [](llhttp_t* p) {
        self(p)->first_header_.clear();
        self(p)->header_count_ = 0;
        return 0;
      };
      out.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
        ResponseStream* r = self(p);
        if (!r->in_field_) ++r->header_count_;
        r->in_field_ = true;
        if (r->header_count_ == 1) r->first_header_.append(at, len);
        return 0;
      };
      out.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
        ResponseStream* r = self(p);
        r->in_field_ = false;
        if (r->header_count_ == 1) r->first_header_.append(":").append(at, len);
        return 0;
      };
      out.on_headers_complete = [](llhttp_t* p) {
        ResponseStream* r = self(p);
        r->in_field_ = false;
        const int status = p->status_code;
        bool head = r->final_ < r->methods_.size() && r->methods_[r->final_] == "HEAD";
        // RFC 9110 6.4.1: no content in a response to HEAD, in 1xx, 204 and 304.
        return head || (status >= 100 && status < 200 && status != 101) || status == 204 || status == 304 ? 1 : 0;
      };
      out.on_message_complete = [](llhttp_t* p) {
        if (p->status_code >= 200) ++self(p)->final_;
        return 0;
      };
      return out;
    }();
    return s;
  }

  llhttp_t parser_{};
  const std::vector<std::string>& methods_;
  size_t final_ = 0;
  std::string first_header_;  // "Name:value" of the current response's first header
  size_t header_count_ = 0;
  bool in_field_ = false;
};

// ---------------------------------------------------------------------------------------
// The exchange

enum class Mode { kRequest, kResponse };

class Exchange;

// A uv_write of bytes it owns; freed in its callback.
struct OwnedWrite {
  uv_write_t req{};
  std::string bytes;
};

int write_copy(uv_stream_t* s, std::string bytes) {
  auto* w = new OwnedWrite;
  w->bytes = std::move(bytes);
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  const int rc = uv_write(&w->req, s, &buf, 1, [](uv_write_t* req, int) { delete static_cast<OwnedWrite*>(req->data); });
  if (rc < 0) delete w;
  return rc;
}

// One connection accepted by the loopback backend. Owned by the Exchange; its handle is
// closed before the Exchange goes.
struct BackendConn {
  BackendConn(Exchange& ex);
  void on_bytes(const char* data, size_t len);
  void answer(const Request& req, llhttp_t* p);
  void close() {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp))) uv_close(reinterpret_cast<uv_handle_t*>(&tcp), nullptr);
  }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }

  Exchange& ex;
  uv_tcp_t tcp{};
  uv_shutdown_t shutdown_req{};
  RequestStream parser;
  bool tunnel = false;     // after a 101: echo what comes
  bool finished = false;   // answered and shut down: ignore what comes
  bool declined = false;   // an upgrade request answered 200: HTTP goes on
  char buf[16 * 1024];
};

class Exchange {
 public:
  Exchange(Mode mode, std::span<const uint8_t> input)
      : mode_(mode), input_(reinterpret_cast<const char*>(input.data()), input.size()) {}

  std::string run() {
    const Sockets& s = sockets();
    // What the client sends, and how a strict parser reads it.
    if (mode_ == Mode::kRequest) {
      client_bytes_ = input_;
    } else {
      static const char* const kRequests[] = {
          "GET /r?k=1 HTTP/1.1\r\nHost: fuzz\r\nX-Key: a\r\n\r\n",
          "HEAD /r HTTP/1.1\r\nHost: fuzz\r\n\r\n",
          "GET /chat HTTP/1.1\r\nHost: fuzz\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
      };
      client_bytes_ = kRequests[input_.size() % 3];
    }
    size_t consumed = 0;
    client_view_.feed(client_bytes_.data(), client_bytes_.size(), &consumed);

    // In response mode only the live backend may answer: the refusing one would give
    // a 502 the input has nothing to do with.
    std::shared_ptr<const Config> config = config_for(mode_ == Mode::kResponse ? 0 : input_.size());
    if (mode_ == Mode::kResponse) {
      auto only_live = std::make_shared<Config>(*config);
      only_live->backends.resize(1);
      config = only_live;
    }
    std::string error;
    shared_.routing = build_routing(config, nullptr, 1, 1, &error);
    if (!shared_.routing) return "harness: cannot build the routing: " + error;

    Worker worker(0, shared_, ::dup(s.proxy));
    worker_ = &worker;
    if (const int rc = worker.init(); rc != 0) {
      worker.abort_unstarted();
      return std::string("harness: worker init failed: ") + uv_strerror(rc);
    }
    uv_loop_t* loop = worker.loop();
    loop_ = loop;

    uv_tcp_init(loop, &backend_listener_);
    backend_listener_.data = this;
    if (uv_tcp_open(&backend_listener_, ::dup(s.backend)) != 0 ||
        uv_listen(reinterpret_cast<uv_stream_t*>(&backend_listener_), 511, on_backend_connection) != 0) {
      std::abort();  // the harness itself is broken: no input could run
    }

    uv_tcp_init(loop, &client_);
    client_.data = this;
    sockaddr_in proxy{};
    uv_ip4_addr("127.0.0.1", s.proxy_port, &proxy);
    connect_req_.data = this;
    if (uv_tcp_connect(&connect_req_, &client_, reinterpret_cast<const sockaddr*>(&proxy), on_client_connect) != 0) {
      std::abort();
    }

    uv_check_init(loop, &check_);
    check_.data = this;
    uv_check_start(&check_, on_check);

    const int loop_rc = worker.run();
    worker_ = nullptr;
    if (loop_rc != 0) return "the worker's loop ended with handles still open";
    if (!violation_.empty()) return violation_;
    return final_checks();
  }

 private:
  friend struct BackendConn;

  std::string final_checks() {
    // Every request the backend read is one the client sent, in the client's order
    // (a retry sends one again), with the same body: nothing was smuggled in a body or
    // split off a head.
    if (mode_ == Mode::kRequest) {
      const std::vector<Request>& sent = client_view_.complete();
      size_t j = 0;
      for (const Request& got : backend_requests_) {
        while (j < sent.size() && !(sent[j] == got)) ++j;
        if (j == sent.size()) {
          return "the backend read a request the client did not send (smuggling?): " + got.method + " " +
                 printable(got.url) + " with a body of " + std::to_string(got.body.size()) + " bytes \"" +
                 printable(got.body) + "\"; the client sent " + std::to_string(sent.size()) + " whole requests";
        }
      }
    }
    ResponseStream responses(client_view_.head_methods());
    return responses.check(client_received_);
  }

  void fail(std::string what) {
    if (violation_.empty()) violation_ = std::move(what);
  }

  // Client

  static void on_client_connect(uv_connect_t* req, int status) {
    auto* ex = static_cast<Exchange*>(req->data);
    if (status < 0) {
      ex->fail(std::string("harness: cannot connect to the proxy: ") + uv_strerror(status));
      ex->close_client();
      return;
    }
    auto* stream = reinterpret_cast<uv_stream_t*>(&ex->client_);
    uv_buf_t buf = uv_buf_init(ex->client_bytes_.data(), static_cast<unsigned>(ex->client_bytes_.size()));
    ex->client_write_.data = ex;
    if (!ex->client_bytes_.empty()) uv_write(&ex->client_write_, stream, &buf, 1, [](uv_write_t*, int) {});
    // Then the client's end of input: every request is answered before the proxy closes.
    ex->client_shutdown_.data = ex;
    uv_shutdown(&ex->client_shutdown_, stream, [](uv_shutdown_t*, int) {});
    uv_read_start(
        stream,
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto* e = static_cast<Exchange*>(h->data);
          *b = uv_buf_init(e->client_buf_, sizeof e->client_buf_);
        },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t* b) {
          auto* e = static_cast<Exchange*>(st->data);
          if (n > 0) e->client_received_.append(b->base, static_cast<size_t>(n));
          if (n < 0) e->close_client();
        });
  }

  void close_client() {
    auto* h = reinterpret_cast<uv_handle_t*>(&client_);
    if (uv_is_closing(h)) return;
    uv_close(h, [](uv_handle_t* handle) {
      auto* e = static_cast<Exchange*>(handle->data);
      e->client_done_ = true;
      if (e->worker_) e->worker_->notify_drain();
    });
  }

  // The backend stops listening once the draining worker has no connection left: no
  // upstream connection can be opened after that. Anything still queued is accepted and
  // closed, so nothing is left for the next input.
  static void on_check(uv_check_t* c) {
    auto* ex = static_cast<Exchange*>(c->data);
    if (!ex->client_done_ || !ex->worker_ || !ex->worker_->draining() ||
        ex->shared_.connections.load() != 0) {
      return;
    }
    uv_os_fd_t fd = -1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&ex->backend_listener_), &fd) == 0) {
      for (int conn; (conn = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) ::close(conn);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&ex->backend_listener_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(c), nullptr);
  }

  // Backend

  static void on_backend_connection(uv_stream_t* server, int status) {
    auto* ex = static_cast<Exchange*>(server->data);
    if (status < 0) return;
    ex->backends_.push_back(std::make_unique<BackendConn>(*ex));
    BackendConn& b = *ex->backends_.back();
    if (uv_accept(server, b.stream()) != 0) {
      b.close();
      return;
    }
    uv_read_start(
        b.stream(),
        [](uv_handle_t* h, size_t, uv_buf_t* out) {
          auto* conn = static_cast<BackendConn*>(h->data);
          *out = uv_buf_init(conn->buf, sizeof conn->buf);
        },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t* in) {
          auto* conn = static_cast<BackendConn*>(st->data);
          if (n < 0) {
            conn->close();
            return;
          }
          conn->on_bytes(in->base, static_cast<size_t>(n));
        });
  }

  Mode mode_;
  std::string input_;
  std::string client_bytes_;
  RequestStream client_view_;
  Shared shared_;
  Worker* worker_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  uv_tcp_t backend_listener_{};
  uv_tcp_t client_{};
  uv_connect_t connect_req_{};
  uv_write_t client_write_{};
  uv_shutdown_t client_shutdown_{};
  uv_check_t check_{};
  char client_buf_[16 * 1024];
  std::string client_received_;
  bool client_done_ = false;
  std::vector<std::unique_ptr<BackendConn>> backends_;
  std::vector<Request> backend_requests_;
  std::string violation_;
};

BackendConn::BackendConn(Exchange& e)
    : ex(e), parser([this](const Request& req, llhttp_t* p) { answer(req, p); }) {
  uv_tcp_init(ex.loop_, &tcp);
  tcp.data = this;
}

void BackendConn::on_bytes(const char* data, size_t len) {
  if (finished) return;
  if (tunnel) {
    if (ex.mode_ == Mode::kRequest) write_copy(stream(), std::string(data, len));
    return;
  }
  size_t consumed = 0;
  llhttp_errno err = parser.feed(data, len, &consumed);
  while (err == HPE_PAUSED_UPGRADE && declined && !finished) {
    declined = false;
    parser.resume_after_upgrade();
    data += consumed;
    len -= consumed;
    err = parser.feed(data, len, &consumed);
  }
  if (err == HPE_OK || finished) return;
  if (err == HPE_PAUSED_UPGRADE) {
    tunnel = true;
    if (ex.mode_ == Mode::kRequest && consumed < len) write_copy(stream(), std::string(data + consumed, len - consumed));
    return;
  }
  ex.fail("the backend received bytes that do not parse as HTTP requests (" + parser.error() + "): \"" +
          printable(std::string_view(data + consumed, len - consumed)) + "\"");
  close();
}

void BackendConn::answer(const Request& req, llhttp_t* p) {
  if (finished) return;
  if (ex.mode_ == Mode::kResponse) {
    // The input is the whole answer; then the backend's end of output.
    write_copy(stream(), ex.input_);
    finished = true;
    uv_shutdown(&shutdown_req, stream(), [](uv_shutdown_t*, int) {});
    return;
  }
  ex.backend_requests_.push_back(req);
  if (p->upgrade && req.url.find("decline") == std::string::npos) {
    write_copy(stream(), "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    return;  // the parser stops with HPE_PAUSED_UPGRADE; on_bytes echoes the rest
  }
  declined = p->upgrade != 0;
  const bool keep_alive = llhttp_should_keep_alive(p) != 0;
  std::string out = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (req.method != "HEAD") out += "ok";
  write_copy(stream(), std::move(out));
  if (!keep_alive) {
    finished = true;
    uv_shutdown(&shutdown_req, stream(), [](uv_shutdown_t*, int) {});
  }
}

}  // namespace


std::string request(std::span<const uint8_t> input) { return Exchange(Mode::kRequest, input).run(); }

std::string response(std::span<const uint8_t> input) { return Exchange(Mode::kResponse, input).run(); }

}  // namespace ringproxy::fuzz
