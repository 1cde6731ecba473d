// ringproxy-demo-backend: a small HTTP/1.1 origin on libuv + llhttp, one loop, one thread.
// It stands behind the proxy in the README demo and in tests/integration/, so what it
// answers is a contract; tests/integration/demo_backend_test.cc pins every line below.
//
//   ringproxy-demo-backend --name NAME --listen HOST:PORT [--delay-ms N]
//                          [--mode normal|hang|garbage|reset|close]
//
// HOST is an IPv4 literal or a bracketed IPv6 literal ("[::1]"); PORT 0 binds an
// ephemeral port. Once listening it prints exactly one line, "listening HOST:PORT" with
// the real port, to stdout. Exit codes: 2 bad usage, 1 cannot listen, 0 after
// SIGTERM/SIGINT (which close every connection at once; nothing is drained).
//
// Every response has "X-Backend: NAME" and either a Content-Length or chunked framing,
// except 101, 204 and 304, which carry neither (RFC 9110 8.6 forbids it for 1xx and 204;
// for 304 it would describe the GET body). Routes, by path (the query is ignored):
//   GET /health       200 "ok\n"
//   /echo             200, the request body as the response body. Streamed: a request
//                     with Content-Length gets the same Content-Length, a chunked one a
//                     chunked response, chunk for chunk. Memory stays flat at any size.
//   /sink             200 "<body bytes received>\n"; the body is counted, never stored.
//   /bytes/N          200 with N bytes 'a'..'z' repeating (byte i is 'a' + i % 26),
//                     written with backpressure, so any N runs in flat memory.
//   /chunked          200 chunked, three chunks "chunk 1\n".."chunk 3\n" and the trailer
//                     "X-Trailer: done" (declared by "Trailer: X-Trailer"). HTTP/1.0
//                     clients get the same body with a Content-Length and no trailer.
//   /status/NNN       status NNN (200..599), body "NNN Reason\n" (none for 204 and 304).
//   /headers          200, the request head as received: "METHOD TARGET HTTP/x.y\n", then
//                     "Name: value\n" per header field in order (names keep their case).
//   /ws               with "Upgrade: websocket" and "Connection: Upgrade": 101, then every
//                     byte received is echoed back unchanged until the peer closes (a raw
//                     tunnel; no WebSocket framing). Without the upgrade headers: 426.
//   anything else     200 "NAME TARGET\n", TARGET being the request target as received.
// HEAD gets the same head as GET and no body. "Expect: 100-continue" on an HTTP/1.1
// request with a body gets "100 Continue" first (normal mode only).
//
// Connections: keep-alive is the HTTP/1.1 default and HTTP/1.0 needs
// "Connection: keep-alive"; pipelined requests are answered in order; after a response
// that says "Connection: close" the server shuts its side and lingers (reading and
// discarding, up to 2 s) so the response is not destroyed by a RST. A malformed request
// gets 400 (a head over 64 KiB 431, HTTP/1.0 with Transfer-Encoding 400 per RFC 9112
// 6.1) and the connection is closed.
//
// --delay-ms N holds each answer N ms (a slow origin): from the end of the request, and
// for /echo, whose answer streams while the body arrives, from the end of its head.
// --mode applies to every request, /health included:
//   hang     accept and read, never answer;
//   garbage  answer each request with "this is not http\r\n\r\n", then close;
//   reset    close with a TCP RST as soon as a request head is complete;
//   close    close cleanly (FIN, no answer) as soon as a request head is complete.

#include <arpa/inet.h>
#include <llhttp.h>
#include <uv.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

constexpr const char* kProgram = "ringproxy-demo-backend";

constexpr size_t kReadBufferSize = 64 * 1024;
// Write backpressure: a connection stops reading while more than kHighWater bytes are
// queued to its socket and resumes at kLowWater, so one connection holds about
// kHighWater plus one read buffer whatever the body sizes.
constexpr size_t kHighWater = 1024 * 1024;
constexpr size_t kLowWater = 256 * 1024;
constexpr size_t kBytesChunk = 64 * 1024;  // one write of /bytes/N
// Pipelined input not yet parsed because an earlier request is still being answered.
constexpr size_t kMaxPendingInput = 256 * 1024;
constexpr size_t kMaxHeadBytes = 64 * 1024;
constexpr uint64_t kLingerMs = 2000;
constexpr uint64_t kMaxDelayMs = 3'600'000;

enum class Mode { normal, hang, garbage, reset, close };

struct Options {
  std::string name;
  std::string host;  // brackets stripped
  bool ipv6 = false;
  int port = 0;
  uint64_t delay_ms = 0;
  Mode mode = Mode::normal;
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: %s --name NAME --listen HOST:PORT [--delay-ms N]"
               " [--mode normal|hang|garbage|reset|close]\n",
               kProgram);
}

template <typename T>
std::optional<T> parse_number(std::string_view s) {
  T value{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// "1.2.3.4:80" or "[::1]:80"; checks the literal with libuv's own parser.
bool parse_listen(std::string_view s, Options& o) {
  std::string_view host, port;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
    o.ipv6 = true;
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    o.ipv6 = false;
  }
  const auto p = parse_number<int>(port);
  if (!p || *p < 0 || *p > 65535) return false;
  o.host = std::string(host);
  o.port = *p;
  if (o.ipv6) {
    sockaddr_in6 a{};
    return uv_ip6_addr(o.host.c_str(), o.port, &a) == 0;
  }
  sockaddr_in a{};
  return uv_ip4_addr(o.host.c_str(), o.port, &a) == 0 && o.host.find(':') == std::string::npos;
}

// Returns the options, or the exit code to leave with (0 after --help, 2 on bad usage).
std::pair<std::optional<Options>, int> parse_args(int argc, char** argv) {
  Options o;
  bool have_name = false, have_listen = false;
  const auto bad = [](const std::string& why) {
    std::fprintf(stderr, "%s: %s\n", kProgram, why.c_str());
    usage(stderr);
    return std::pair<std::optional<Options>, int>{std::nullopt, 2};
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return {std::nullopt, 0};
    }
    std::string_view value;
    const size_t eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "--name" || arg == "--listen" || arg == "--delay-ms" || arg == "--mode") {
      if (i + 1 >= argc) return bad(std::string(arg) + " needs a value");
      value = argv[++i];
    } else {
      return bad("unknown argument '" + std::string(arg) + "'");
    }
    if (arg == "--name") {
      // The name goes into a header field: visible ASCII only.
      if (value.empty() || !std::all_of(value.begin(), value.end(), [](char c) { return c > ' ' && c < 127; }))
        return bad("--name must be non-empty visible ASCII");
      o.name = std::string(value);
      have_name = true;
    } else if (arg == "--listen") {
      if (!parse_listen(value, o)) return bad("--listen wants IPV4:PORT or [IPV6]:PORT, got '" + std::string(value) + "'");
      have_listen = true;
    } else if (arg == "--delay-ms") {
      const auto d = parse_number<uint64_t>(value);
      if (!d || *d > kMaxDelayMs) return bad("--delay-ms wants an integer 0.." + std::to_string(kMaxDelayMs));
      o.delay_ms = *d;
    } else if (arg == "--mode") {
      if (value == "normal") o.mode = Mode::normal;
      else if (value == "hang") o.mode = Mode::hang;
      else if (value == "garbage") o.mode = Mode::garbage;
      else if (value == "reset") o.mode = Mode::reset;
      else if (value == "close") o.mode = Mode::close;
      else return bad("--mode wants normal, hang, garbage, reset or close");
    } else {
      return bad("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (!have_name) return bad("--name is required");
  if (!have_listen) return bad("--listen is required");
  return {o, 0};
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);  // exact for letters; both sides are ASCII tokens here
         });
}

// 'a'..'z' repeated, long enough that any offset % 26 starts a full /bytes chunk.
const std::string& byte_pattern() {
  static const std::string pattern = [] {
    std::string p(kBytesChunk + 26, '\0');
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>('a' + i % 26);
    return p;
  }();
  return pattern;
}

uv_stream_t* as_stream(uv_tcp_t* t) { return reinterpret_cast<uv_stream_t*>(t); }
uv_handle_t* as_handle(uv_tcp_t* t) { return reinterpret_cast<uv_handle_t*>(t); }
uv_handle_t* as_handle(uv_timer_t* t) { return reinterpret_cast<uv_handle_t*>(t); }
uv_handle_t* as_handle(uv_signal_t* s) { return reinterpret_cast<uv_handle_t*>(s); }

enum class Route { health, echo, sink, bytes, chunked, status, headers, ws, other, bad };

// One request and the state of its answer. Reset at each message start.
struct Exchange {
  std::string method;
  std::string target;
  int http_major = 1;
  int http_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;
  bool in_value = false;   // the last header callback was a value
  bool head_done = false;  // later header callbacks are trailers: not recorded
  size_t head_bytes = 0;
  uint64_t body_bytes = 0;
  bool is_head = false;
  bool keep_alive = true;
  bool upgrade = false;
  Route route = Route::other;
  uint64_t arg = 0;        // N of /bytes/N and /status/N
  int bad_status = 400;    // for Route::bad
  std::string bad_body;
  bool request_done = false;
  // /echo: streamed while the body arrives.
  bool echo = false;
  bool echo_chunked = false;
  bool head_sent = false;  // until then (the delay) body bytes wait in `held`
  std::string held;
  // /bytes/N: what is left to queue.
  bool generating = false;
  uint64_t bytes_left = 0;
  uint64_t bytes_pos = 0;
};

class Server;

// One client connection. Owns its uv_tcp_t and uv_timer_t; is deleted by the Server
// once both close callbacks have run (see on_close).
class Conn {
 public:
  explicit Conn(Server& server) : server_(server) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Accepts from `listener`. Returns false when no handle was opened (the caller then
  // deletes the Conn itself); on later failures the Conn closes itself.
  bool start(uv_stream_t* listener);
  // Closes both handles at once; queued writes are cancelled. Idempotent.
  void close_now();

 private:
  enum class State { open, shutting_down, closing };
  enum class Pause { none, head, message };
  enum class TimerUse { none, delay, linger };
  struct WriteReq {
    uv_write_t req{};
    Conn* conn = nullptr;
    std::string owned;
    size_t len = 0;
  };

  static const llhttp_settings_t& settings();
  static int on_message_begin(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, size_t n);
  static int on_header_field(llhttp_t* p, const char* at, size_t n);
  static int on_header_value(llhttp_t* p, const char* at, size_t n);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t n);
  static int on_message_complete(llhttp_t* p);

  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_timer(uv_timer_t* t);
  static void on_close(uv_handle_t* h);

  const Options& opts() const;
  bool count_head(size_t n);
  void classify();
  void drive();
  void on_paused(bool upgrade);
  void on_parse_error(llhttp_errno_t err);
  void on_eof();
  void begin_exchange();
  void respond();
  void finish_exchange();
  void send_simple(int status, std::string body, std::string_view extra_headers = {});
  std::string head(int status, std::optional<uint64_t> length, bool chunked, std::string_view content_type,
                   std::string_view extra_headers) const;
  bool keep_alive() const { return ex_.keep_alive && !force_close_; }
  void echo_start();
  void echo_body(const char* at, size_t n);
  void echo_send_head();
  void echo_finish();
  void fill_bytes();
  void start_tunnel();
  void send(std::string data);
  void send_static(const char* data, size_t n);
  void queue_write(std::unique_ptr<WriteReq> w, uv_buf_t buf);
  void on_write_done();
  void arm_timer(TimerUse use, uint64_t ms);
  void update_reading();
  void close_gracefully();
  void close_reset();

  Server& server_;
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_shutdown_t shutdown_req_{};
  llhttp_t parser_{};
  int open_handles_ = 0;
  State state_ = State::open;
  Pause pause_ = Pause::none;
  TimerUse timer_use_ = TimerUse::none;
  bool reading_ = false;
  bool peer_eof_ = false;
  bool in_drive_ = false;
  bool tunnel_ = false;
  bool exchange_active_ = false;  // a complete request is being answered; parser paused
  bool force_close_ = false;
  bool head_too_large_ = false;
  bool bad_framing_ = false;
  std::string inbuf_;  // received, not yet parsed
  size_t in_flight_ = 0;  // bytes queued to the socket, not yet written
  Exchange ex_;
};

// The listener, the signal handles and every connection. Lives on main's stack and
// outlives the loop run, so its own handles need no freeing in their close callbacks.
class Server {
 public:
  Server(uv_loop_t* loop, Options opts) : loop_(loop), opts_(std::move(opts)), read_buffer_(std::make_unique<char[]>(kReadBufferSize)) {}
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, listens and installs the signal handlers. On failure returns the libuv error
  // and `what` names the step; call stop() and run the loop dry either way.
  int start(std::string& what, std::string& bound);
  // Closes the listener, the signal handles and every connection. Idempotent.
  void stop();

  uv_loop_t* loop() const { return loop_; }
  const Options& options() const { return opts_; }
  char* read_buffer() const { return read_buffer_.get(); }
  void forget(Conn* c) { conns_.erase(c); }

 private:
  static void on_connection(uv_stream_t* listener, int status);
  static void on_signal(uv_signal_t* s, int signum);

  uv_loop_t* loop_;
  Options opts_;
  // One buffer for all reads: on Unix libuv hands it to exactly one read callback,
  // which copies what it keeps, before the next allocation.
  std::unique_ptr<char[]> read_buffer_;
  uv_tcp_t listener_{};
  uv_signal_t sigterm_{};
  uv_signal_t sigint_{};
  bool listener_open_ = false;
  bool sigterm_open_ = false;
  bool sigint_open_ = false;
  bool stopping_ = false;
  std::unordered_map<Conn*, std::unique_ptr<Conn>> conns_;
};

// ---- Conn: set-up and reading ----

const Options& Conn::opts() const { return server_.options(); }

bool Conn::start(uv_stream_t* listener) {
  if (uv_timer_init(server_.loop(), &timer_) != 0) return false;
  timer_.data = this;
  open_handles_ = 1;
  if (const int rc = uv_tcp_init(server_.loop(), &tcp_); rc != 0) {
    std::fprintf(stderr, "%s: uv_tcp_init: %s\n", kProgram, uv_strerror(rc));
    uv_close(as_handle(&timer_), on_close);
    state_ = State::closing;
    return true;
  }
  tcp_.data = this;
  open_handles_ = 2;
  if (const int rc = uv_accept(listener, as_stream(&tcp_)); rc != 0) {
    std::fprintf(stderr, "%s: accept: %s\n", kProgram, uv_strerror(rc));
    close_now();
    return true;
  }
  // Heads and bodies go out as separate writes; do not let Nagle hold the second one.
  // A failure only costs latency, so it is not fatal.
  (void)uv_tcp_nodelay(&tcp_, 1);
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
  update_reading();
  return true;
}

void Conn::update_reading() {
  if (state_ == State::closing) return;
  bool want;
  if (state_ == State::shutting_down) {
    want = !peer_eof_;  // lingering: drain and discard until the peer closes
  } else {
    const size_t limit = reading_ ? kHighWater : kLowWater;
    want = !peer_eof_ && in_flight_ <= limit && inbuf_.size() < kMaxPendingInput && ex_.held.size() < kHighWater;
  }
  if (want == reading_) return;
  if (want) {
    if (const int rc = uv_read_start(as_stream(&tcp_), on_alloc, on_read); rc != 0) {
      std::fprintf(stderr, "%s: read: %s\n", kProgram, uv_strerror(rc));
      close_now();
      return;
    }
  } else {
    (void)uv_read_stop(as_stream(&tcp_));  // always 0 (libuv docs: idempotent)
  }
  reading_ = want;
}

void Conn::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(h->data);
  *buf = uv_buf_init(c->server_.read_buffer(), kReadBufferSize);
}

void Conn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(s->data);
  if (nread == 0 || c->state_ == State::closing) return;
  if (nread < 0) {
    if (nread != UV_EOF) {
      c->close_now();  // reset by peer or similar: nobody to answer
      return;
    }
    c->on_eof();
    return;
  }
  const std::string_view data(buf->base, static_cast<size_t>(nread));
  if (c->state_ == State::shutting_down || c->opts().mode == Mode::hang) return;  // discard
  if (c->tunnel_) {
    c->send(std::string(data));
    c->update_reading();
    return;
  }
  c->inbuf_.append(data);
  c->drive();
}

void Conn::on_eof() {
  peer_eof_ = true;
  (void)uv_read_stop(as_stream(&tcp_));  // always 0
  reading_ = false;
  if (state_ == State::shutting_down || opts().mode == Mode::hang) {
    close_now();
  } else if (tunnel_) {
    close_gracefully();  // the shutdown goes out after the echoed bytes
  } else {
    drive();  // answers what is complete, then closes (see the end of drive)
  }
}

// Runs the parser over buffered input while no request is being answered. The parser
// pauses at each message end, so requests are answered one at a time, in order.
void Conn::drive() {
  if (in_drive_) return;  // an exchange finished synchronously inside the loop below
  in_drive_ = true;
  while (state_ == State::open && !tunnel_ && !exchange_active_ && !inbuf_.empty()) {
    const char* data = inbuf_.data();
    const llhttp_errno_t err = llhttp_execute(&parser_, data, inbuf_.size());
    if (err == HPE_OK) {
      inbuf_.clear();
    } else if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      inbuf_.erase(0, static_cast<size_t>(llhttp_get_error_pos(&parser_) - data));
      on_paused(err == HPE_PAUSED_UPGRADE);
    } else {
      on_parse_error(err);
    }
  }
  in_drive_ = false;
  if (state_ == State::open && peer_eof_ && !tunnel_ && !exchange_active_ && inbuf_.empty()) {
    // Nothing more will arrive; a partial request is dropped. A streamed /echo answer
    // that can no longer be completed is cut off hard rather than left looking whole.
    if (ex_.head_sent && !ex_.request_done) close_now();
    else close_gracefully();
  }
  update_reading();
}

void Conn::on_paused(bool upgrade) {
  if (pause_ == Pause::head) {  // --mode reset / close: the head is all we wait for
    pause_ = Pause::none;
    if (opts().mode == Mode::reset) close_reset();
    else close_gracefully();
    return;
  }
  pause_ = Pause::none;
  if (upgrade) {
    // The bytes after the head belong to another protocol (or CONNECT's tunnel). Only
    // /ws speaks one; anything else is answered and the connection closed.
    ex_.request_done = true;
    if (!(ex_.route == Route::ws && ex_.upgrade)) {
      force_close_ = true;
      inbuf_.clear();
    }
  }
  exchange_active_ = true;
  begin_exchange();
}

void Conn::on_parse_error(llhttp_errno_t err) {
  inbuf_.clear();
  if (ex_.head_sent) {  // a streamed /echo answer is under way: no status line can follow
    close_now();
    return;
  }
  force_close_ = true;
  if (head_too_large_) {
    send_simple(431, "request head larger than " + std::to_string(kMaxHeadBytes) + " bytes\n");
  } else if (bad_framing_) {
    send_simple(400, "bad request: Transfer-Encoding in an HTTP/1.0 request\n");
  } else {
    send_simple(400, std::string("bad request: ") + llhttp_errno_name(err) + " " + llhttp_get_error_reason(&parser_) + "\n");
  }
}

// ---- Conn: the parser callbacks (record what arrived; act outside llhttp_execute) ----

const llhttp_settings_t& Conn::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_message_begin = on_message_begin;
    v.on_url = on_url;
    v.on_header_field = on_header_field;
    v.on_header_value = on_header_value;
    v.on_headers_complete = on_headers_complete;
    v.on_body = on_body;
    v.on_message_complete = on_message_complete;
    return v;
  }();
  return s;
}

bool Conn::count_head(size_t n) {
  ex_.head_bytes += n;
  if (ex_.head_bytes <= kMaxHeadBytes) return true;
  head_too_large_ = true;
  return false;
}

int Conn::on_message_begin(llhttp_t* p) {
  auto* c = static_cast<Conn*>(p->data);
  c->ex_ = Exchange{};
  return 0;
}

int Conn::on_url(llhttp_t* p, const char* at, size_t n) {
  auto* c = static_cast<Conn*>(p->data);
  if (!c->count_head(n)) return -1;
  c->ex_.target.append(at, n);
  return 0;
}

int Conn::on_header_field(llhttp_t* p, const char* at, size_t n) {
  auto* c = static_cast<Conn*>(p->data);
  Exchange& ex = c->ex_;
  if (ex.head_done) return 0;  // a trailer
  if (!c->count_head(n)) return -1;
  if (ex.in_value || ex.headers.empty()) ex.headers.emplace_back();
  ex.in_value = false;
  ex.headers.back().first.append(at, n);
  return 0;
}

int Conn::on_header_value(llhttp_t* p, const char* at, size_t n) {
  auto* c = static_cast<Conn*>(p->data);
  Exchange& ex = c->ex_;
  if (ex.head_done) return 0;
  if (!c->count_head(n)) return -1;
  if (ex.headers.empty()) return -1;  // llhttp never sends a value first; be safe anyway
  ex.in_value = true;
  ex.headers.back().second.append(at, n);
  return 0;
}

int Conn::on_headers_complete(llhttp_t* p) {
  auto* c = static_cast<Conn*>(p->data);
  Exchange& ex = c->ex_;
  ex.head_done = true;
  ex.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  ex.http_major = p->http_major;
  ex.http_minor = p->http_minor;
  ex.is_head = p->method == HTTP_HEAD;
  ex.keep_alive = llhttp_should_keep_alive(p) != 0;
  ex.upgrade = p->upgrade != 0;
  if ((p->flags & F_TRANSFER_ENCODING) && p->http_major == 1 && p->http_minor == 0) {
    c->bad_framing_ = true;  // RFC 9112 6.1: the framing of such a message is faulty
    return -1;
  }
  c->classify();
  switch (c->opts().mode) {
    case Mode::reset:
    case Mode::close:
      c->pause_ = Pause::head;
      return HPE_PAUSED;
    case Mode::hang:  // never parses
    case Mode::garbage:
      return 0;
    case Mode::normal:
      break;
  }
  const bool has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
  if (has_body && ex.http_minor >= 1) {
    for (const auto& [name, value] : ex.headers) {
      if (iequals(name, "expect") && iequals(value, "100-continue")) {
        c->send("HTTP/1.1 100 Continue\r\n\r\n");
        break;
      }
    }
  }
  if (ex.route == Route::echo) {
    ex.echo = true;
    ex.echo_chunked = (p->flags & F_CHUNKED) != 0;
    ex.arg = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    c->echo_start();
  }
  return 0;
}

int Conn::on_body(llhttp_t* p, const char* at, size_t n) {
  auto* c = static_cast<Conn*>(p->data);
  c->ex_.body_bytes += n;
  if (c->ex_.echo) c->echo_body(at, n);
  return 0;
}

int Conn::on_message_complete(llhttp_t* p) {
  auto* c = static_cast<Conn*>(p->data);
  c->ex_.request_done = true;
  if (p->upgrade) return 0;  // llhttp pauses by itself, with HPE_PAUSED_UPGRADE
  c->pause_ = Pause::message;
  return HPE_PAUSED;
}

// Sets the route from the path (the query does not count).
void Conn::classify() {
  Exchange& ex = ex_;
  const std::string_view target = ex.target;
  const std::string_view path = target.substr(0, target.find('?'));
  if (ex.http_major != 1) {
    ex.route = Route::bad;
    ex.bad_status = 505;
    ex.bad_body = "only HTTP/1.x is spoken here\n";
    force_close_ = true;
  } else if (path == "/health") {
    ex.route = Route::health;
  } else if (path == "/echo") {
    ex.route = Route::echo;
  } else if (path == "/sink") {
    ex.route = Route::sink;
  } else if (path.starts_with("/bytes/")) {
    const auto n = parse_number<uint64_t>(path.substr(7));
    ex.route = n ? Route::bytes : Route::bad;
    ex.arg = n.value_or(0);
    ex.bad_body = "/bytes/N wants a decimal byte count\n";
  } else if (path == "/chunked") {
    ex.route = Route::chunked;
  } else if (path.starts_with("/status/")) {
    const auto n = parse_number<int>(path.substr(8));
    ex.route = n && *n >= 200 && *n <= 599 ? Route::status : Route::bad;
    ex.arg = n && *n > 0 ? static_cast<uint64_t>(*n) : 0;
    ex.bad_body = "/status/NNN wants a final status 200..599\n";
  } else if (path == "/headers") {
    ex.route = Route::headers;
  } else if (path == "/ws") {
    ex.route = Route::ws;
  } else {
    ex.route = Route::other;
  }
}

// ---- Conn: answering ----

void Conn::begin_exchange() {
  if (ex_.echo) {
    if (ex_.head_sent) echo_finish();
    return;  // else the delay timer sends the head and finishes
  }
  if (opts().delay_ms > 0) {
    arm_timer(TimerUse::delay, opts().delay_ms);
    return;
  }
  respond();
}

void Conn::respond() {
  Exchange& ex = ex_;
  if (opts().mode == Mode::garbage) {
    send("this is not http\r\n\r\n");
    close_gracefully();
    return;
  }
  switch (ex.route) {
    case Route::health:
      send_simple(200, "ok\n");
      return;
    case Route::sink:
      send_simple(200, std::to_string(ex.body_bytes) + "\n");
      return;
    case Route::bytes:
      send(head(200, ex.arg, false, "application/octet-stream", {}));
      ex.generating = true;
      ex.bytes_left = ex.is_head ? 0 : ex.arg;
      fill_bytes();
      return;
    case Route::chunked:
      if (ex.http_minor == 0) {
        send_simple(200, "chunk 1\nchunk 2\nchunk 3\n");
        return;
      }
      send(head(200, std::nullopt, true, "text/plain", "Trailer: X-Trailer\r\n") +
           (ex.is_head ? "" : "8\r\nchunk 1\n\r\n8\r\nchunk 2\n\r\n8\r\nchunk 3\n\r\n0\r\nX-Trailer: done\r\n\r\n"));
      finish_exchange();
      return;
    case Route::status: {
      const int status = static_cast<int>(ex.arg);
      send_simple(status, std::to_string(status) + " " + std::string(reason_phrase(status)) + "\n");
      return;
    }
    case Route::headers: {
      std::string body = ex.method + " " + ex.target + " HTTP/" + std::to_string(ex.http_major) + "." +
                         std::to_string(ex.http_minor) + "\n";
      for (const auto& [name, value] : ex.headers) body += name + ": " + value + "\n";
      send_simple(200, std::move(body));
      return;
    }
    case Route::ws:
      if (ex.upgrade) {
        start_tunnel();
      } else {
        send_simple(426, "/ws wants Upgrade: websocket and Connection: Upgrade\n", "Upgrade: websocket\r\n");
      }
      return;
    case Route::other:
      send_simple(200, opts().name + " " + ex.target + "\n");
      return;
    case Route::bad:
      send_simple(ex.bad_status, ex.bad_body);
      return;
    case Route::echo:
      break;
  }
  assert(false && "echo answers from echo_start");
}

std::string Conn::head(int status, std::optional<uint64_t> length, bool chunked, std::string_view content_type,
                       std::string_view extra_headers) const {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason_phrase(status)) + "\r\n";
  h += "X-Backend: " + opts().name + "\r\n";
  if (!content_type.empty()) h += "Content-Type: " + std::string(content_type) + "\r\n";
  if (length) h += "Content-Length: " + std::to_string(*length) + "\r\n";
  if (chunked) h += "Transfer-Encoding: chunked\r\n";
  h += extra_headers;
  if (!keep_alive()) h += "Connection: close\r\n";
  else if (ex_.http_minor == 0) h += "Connection: keep-alive\r\n";
  h += "\r\n";
  return h;
}

// A whole answer in one write; 204 and 304 go without body and Content-Length.
void Conn::send_simple(int status, std::string body, std::string_view extra_headers) {
  const bool bodiless = status == 204 || status == 304;
  std::string out = head(status, bodiless ? std::nullopt : std::optional<uint64_t>(body.size()), false,
                         bodiless ? "" : "text/plain", extra_headers);
  if (!bodiless && !ex_.is_head) out += body;
  send(std::move(out));
  finish_exchange();
}

// The answer is fully queued (the socket keeps the order): close, or take the next request.
void Conn::finish_exchange() {
  if (state_ != State::open) return;
  const bool keep = keep_alive();
  exchange_active_ = false;
  ex_ = Exchange{};
  if (!keep) {
    close_gracefully();
    return;
  }
  llhttp_resume(&parser_);
  drive();
}

void Conn::echo_start() {
  if (opts().delay_ms > 0) arm_timer(TimerUse::delay, opts().delay_ms);
  else echo_send_head();
}

void Conn::echo_send_head() {
  ex_.head_sent = true;
  send(head(200, ex_.echo_chunked ? std::nullopt : std::optional<uint64_t>(ex_.arg), ex_.echo_chunked,
            "application/octet-stream", {}));
  if (!ex_.held.empty()) send(std::exchange(ex_.held, std::string()));
}

void Conn::echo_body(const char* at, size_t n) {
  if (ex_.is_head || n == 0) return;
  std::string out;
  if (ex_.echo_chunked) {
    char size[32];
    const int len = std::snprintf(size, sizeof size, "%zx\r\n", n);
    out.reserve(static_cast<size_t>(len) + n + 2);
    out.append(size, static_cast<size_t>(len)).append(at, n).append("\r\n");
  } else {
    out.assign(at, n);
  }
  if (ex_.head_sent) send(std::move(out));
  else ex_.held += out;
}

void Conn::echo_finish() {
  if (ex_.echo_chunked && !ex_.is_head) send("0\r\n\r\n");
  finish_exchange();
}

// Queues /bytes/N chunks up to the high-water mark; on_write_done calls it again.
void Conn::fill_bytes() {
  const std::string& pattern = byte_pattern();
  while (state_ == State::open && ex_.bytes_left > 0 && in_flight_ < kHighWater) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kBytesChunk, ex_.bytes_left));
    send_static(pattern.data() + ex_.bytes_pos % 26, n);
    ex_.bytes_left -= n;
    ex_.bytes_pos += n;
  }
  if (state_ == State::open && ex_.bytes_left == 0 && ex_.generating) {
    ex_.generating = false;
    finish_exchange();
  }
}

void Conn::start_tunnel() {
  send("HTTP/1.1 101 Switching Protocols\r\nX-Backend: " + opts().name +
       "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  tunnel_ = true;
  exchange_active_ = false;
  if (!inbuf_.empty()) send(std::exchange(inbuf_, std::string()));  // sent right behind the head
  if (peer_eof_) close_gracefully();
  update_reading();
}

// ---- Conn: writing ----

void Conn::send(std::string data) {
  if (state_ != State::open || data.empty()) return;
  auto w = std::make_unique<WriteReq>();
  w->owned = std::move(data);
  const uv_buf_t buf = uv_buf_init(w->owned.data(), static_cast<unsigned>(w->owned.size()));
  queue_write(std::move(w), buf);
}

// `data` must outlive the write (the static /bytes pattern).
void Conn::send_static(const char* data, size_t n) {
  if (state_ != State::open || n == 0) return;
  auto w = std::make_unique<WriteReq>();
  const uv_buf_t buf = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(n));
  queue_write(std::move(w), buf);
}

void Conn::queue_write(std::unique_ptr<WriteReq> w, uv_buf_t buf) {
  w->conn = this;
  w->len = buf.len;
  w->req.data = w.get();
  if (const int rc = uv_write(&w->req, as_stream(&tcp_), &buf, 1, on_write); rc != 0) {
    std::fprintf(stderr, "%s: write: %s\n", kProgram, uv_strerror(rc));
    close_now();
    return;  // libuv will not call on_write: `w` frees the request here
  }
  in_flight_ += w->len;
  (void)w.release();  // owned by libuv until on_write
}

void Conn::on_write(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  Conn* c = w->conn;
  c->in_flight_ -= w->len;
  w.reset();
  if (status < 0) {
    c->close_now();  // peer gone (EPIPE, ECONNRESET) or we are closing (ECANCELED)
    return;
  }
  c->on_write_done();
}

void Conn::on_write_done() {
  if (state_ != State::open) return;
  if (ex_.generating) fill_bytes();
  update_reading();
}

// ---- Conn: timers and closing ----

void Conn::arm_timer(TimerUse use, uint64_t ms) {
  timer_use_ = use;
  if (const int rc = uv_timer_start(&timer_, on_timer, ms, 0); rc != 0) {
    std::fprintf(stderr, "%s: timer: %s\n", kProgram, uv_strerror(rc));
    close_now();
  }
}

void Conn::on_timer(uv_timer_t* t) {
  auto* c = static_cast<Conn*>(t->data);
  const TimerUse use = std::exchange(c->timer_use_, TimerUse::none);
  if (use == TimerUse::linger) {
    c->close_now();
  } else if (use == TimerUse::delay && c->state_ == State::open) {
    if (!c->ex_.echo) {
      c->respond();
      return;
    }
    c->echo_send_head();
    if (c->ex_.request_done) c->echo_finish();
    else c->update_reading();  // the held body may have stopped reading
  }
}

// Shuts our side after the queued writes and lingers, reading and discarding, until the
// peer closes or kLingerMs pass: closing with unread input would send a RST that can
// destroy the answer still in flight.
void Conn::close_gracefully() {
  if (state_ != State::open) return;
  state_ = State::shutting_down;
  (void)uv_timer_stop(&timer_);  // always 0
  timer_use_ = TimerUse::none;
  inbuf_.clear();
  shutdown_req_.data = this;
  if (const int rc = uv_shutdown(&shutdown_req_, as_stream(&tcp_), on_shutdown); rc != 0) {
    close_now();
    return;
  }
  update_reading();
}

void Conn::on_shutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (c->state_ == State::closing) return;
  if (status < 0 || c->peer_eof_) {
    c->close_now();
    return;
  }
  c->arm_timer(TimerUse::linger, kLingerMs);
}

void Conn::close_now() {
  if (state_ == State::closing) return;
  state_ = State::closing;
  uv_close(as_handle(&tcp_), on_close);
  uv_close(as_handle(&timer_), on_close);
}

// --mode reset: SO_LINGER 0 and close, so the peer sees ECONNRESET.
void Conn::close_reset() {
  if (state_ != State::open) return;
  state_ = State::closing;
  if (uv_tcp_close_reset(&tcp_, on_close) != 0) uv_close(as_handle(&tcp_), on_close);
  uv_close(as_handle(&timer_), on_close);
}

void Conn::on_close(uv_handle_t* h) {
  auto* c = static_cast<Conn*>(h->data);
  if (--c->open_handles_ == 0) c->server_.forget(c);  // deletes c
}

// ---- Server ----

int Server::start(std::string& what, std::string& bound) {
  int rc = 0;
  // Records the failed step; the caller prints it.
  const auto failed = [&](const char* step) {
    what = step;
    return rc;
  };
  sockaddr_storage addr{};
  if (opts_.ipv6) rc = uv_ip6_addr(opts_.host.c_str(), opts_.port, reinterpret_cast<sockaddr_in6*>(&addr));
  else rc = uv_ip4_addr(opts_.host.c_str(), opts_.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) return failed("address");
  if ((rc = uv_tcp_init(loop_, &listener_)) != 0) return failed("socket");
  listener_.data = this;
  listener_open_ = true;
  if ((rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0)) != 0) return failed("bind");
  // libuv may report a bind failure (EADDRINUSE) only here.
  if ((rc = uv_listen(as_stream(&listener_), 511, on_connection)) != 0) return failed("listen");

  sockaddr_storage name{};
  int len = sizeof name;
  if ((rc = uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&name), &len)) != 0)
    return failed("getsockname");
  char ip[INET6_ADDRSTRLEN] = "";
  if (name.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&name);
    if ((rc = uv_ip6_name(a, ip, sizeof ip)) != 0) return failed("getsockname");
    bound = "[" + std::string(ip) + "]:" + std::to_string(ntohs(a->sin6_port));
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&name);
    if ((rc = uv_ip4_name(a, ip, sizeof ip)) != 0) return failed("getsockname");
    bound = std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
  }

  if ((rc = uv_signal_init(loop_, &sigterm_)) != 0) return failed("signal");
  sigterm_.data = this;
  sigterm_open_ = true;
  if ((rc = uv_signal_init(loop_, &sigint_)) != 0) return failed("signal");
  sigint_.data = this;
  sigint_open_ = true;
  if ((rc = uv_signal_start(&sigterm_, on_signal, SIGTERM)) != 0) return failed("signal");
  if ((rc = uv_signal_start(&sigint_, on_signal, SIGINT)) != 0) return failed("signal");
  return 0;
}

void Server::stop() {
  if (stopping_) return;
  stopping_ = true;
  if (listener_open_) uv_close(as_handle(&listener_), nullptr);
  if (sigterm_open_) uv_close(as_handle(&sigterm_), nullptr);
  if (sigint_open_) uv_close(as_handle(&sigint_), nullptr);
  listener_open_ = sigterm_open_ = sigint_open_ = false;
  for (auto& [raw, conn] : conns_) conn->close_now();  // they leave conns_ from on_close
}

void Server::on_connection(uv_stream_t* listener, int status) {
  auto* s = static_cast<Server*>(listener->data);
  if (status < 0) {
    std::fprintf(stderr, "%s: accept: %s\n", kProgram, uv_strerror(status));
    return;
  }
  if (s->stopping_) return;
  auto conn = std::make_unique<Conn>(*s);
  Conn* c = conn.get();
  s->conns_.emplace(c, std::move(conn));
  if (!c->start(listener)) s->conns_.erase(c);
}

void Server::on_signal(uv_signal_t* sig, int) { static_cast<Server*>(sig->data)->stop(); }

}  // namespace

int main(int argc, char** argv) {
  auto [opts, code] = parse_args(argc, argv);
  if (!opts) return code;
  // A peer that closes while we write must cost an EPIPE, not the process.
  std::signal(SIGPIPE, SIG_IGN);

  uv_loop_t loop;
  if (const int rc = uv_loop_init(&loop); rc != 0) {
    std::fprintf(stderr, "%s: uv_loop_init: %s\n", kProgram, uv_strerror(rc));
    return 1;
  }
  const std::string listen_arg = (opts->ipv6 ? "[" + opts->host + "]" : opts->host) + ":" + std::to_string(opts->port);
  int exit_code = 0;
  {
    Server server(&loop, *opts);
    std::string what, bound;
    if (const int rc = server.start(what, bound); rc != 0) {
      std::fprintf(stderr, "%s: cannot listen on %s: %s: %s (%s)\n", kProgram, listen_arg.c_str(), what.c_str(),
                   uv_strerror(rc), uv_err_name(rc));
      server.stop();
      exit_code = 1;
    } else {
      std::printf("listening %s\n", bound.c_str());
      std::fflush(stdout);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  if (const int rc = uv_loop_close(&loop); rc != 0) {
    std::fprintf(stderr, "%s: loop closed with handles open: %s\n", kProgram, uv_strerror(rc));
    return 1;
  }
  return exit_code;
}
