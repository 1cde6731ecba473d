// fuzz::h2_frames: HTTP/2 frames from a client through the proxy's real data path.
//
// Per input, on the calling thread, as proxy_harness.cc does for HTTP/1: a real Worker
// (its loop, listener, ClientConn, the h2c takeover into h2::ServerSession, its streams'
// Exchanges and upstream pools), a loopback HTTP/1 backend and a client, all on the
// worker's one loop. The client connects and sends the 24-byte preface, then the input
// in 1 to 3 writes (the count and the cut points follow from the input's size); before
// each next write and before it ends, the loop runs until quiescent: a run of loop
// iterations, polled without waiting, in which neither the client nor the backend read a
// byte or accepted a connection. Then either the client half-closes at once, or (by the
// input's size) the worker drains first (GOAWAY) and the client half-closes once that is
// quiescent too. In one input of 8 (by its size) the client instead never half-closes
// and the proxy's timeouts are 5 ms: the server must end the connection by itself (its
// idle, header and upstream timers), within 2 s. When the client has read to the end,
// the worker is told to drain, the backend stops listening once the worker holds no
// connection, and the loop runs dry.
//
// The backend parses what it is sent with llhttp and answers each request 200 with
// "ok", or with a body over the client's initial window when the path holds "big" (the
// stream then waits on flow control), chunked when it holds "chunk", and closes after
// it when it holds "close".
//
// Checked:
//  - the worker's loop ends with every handle closed;
//  - with 5 ms timeouts, a client that stops sending (and never half-closes) has its
//    connection ended by the server within 2 s;
//  - every HTTP/2 stream the connection handed out was freed (ClientConn::h2_streams_out,
//    a test-only count) and no request is left in flight at a node;
//  - every request the backend read whole is one a client stream sent: its :method,
//    :path and body (a prefix of the DATA payloads up to END_STREAM, padding removed),
//    as the harness reads the input's frames and decodes their header blocks with
//    nghttp2's own HPACK inflater (no smuggling, nothing mixed between streams);
//  - what the client receives parses as HTTP/2 frames: SETTINGS first; only the types a
//    server sends; HEADERS and DATA only on streams the client opened, and none on a
//    stream after the server's END_STREAM or RST_STREAM on it.
// A method llhttp does not know (HTTP/2 allows any token) is not a finding: the backend
// closes that connection unchecked.
#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/targets.h"
#include "proxy/backends.h"
#include "proxy/client_conn.h"
#include "proxy/log.h"
#include "proxy/worker.h"

namespace ringproxy::fuzz {
namespace {

constexpr uint32_t kTimeoutMs = 250;
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// Loop iterations without progress before the exchange counts as quiescent: a hop the
// harness does not see (the proxy reading a node's answer, a refused connect and its
// retry) takes one iteration on loopback; a few in a row are still progress.
constexpr int kQuietIterations = 12;
constexpr uint64_t kMaxIterations = 200000;  // per phase: then quiescent regardless
constexpr size_t kBigBody = 70000;           // over the default initial window, 65535
constexpr uint32_t kShortTimeoutMs = 5;      // the timers' variant
constexpr uint64_t kServerEndsWithinMs = 2000;

struct Sockets {
  int proxy = -1, backend = -1, refusing = -1;
  uint16_t proxy_port = 0, backend_port = 0, refusing_port = 0;
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

// Bound once per process, dup()ed per input (proxy_harness.cc says why).
const Sockets& sockets() {
  static const Sockets s = [] {
    std::signal(SIGPIPE, SIG_IGN);
    Log::set_level(LogLevel::kError);
    if (!AccessLog::enabled()) (void)AccessLog::open("/dev/null");
    Sockets out;
    out.proxy = bind_loopback(true, &out.proxy_port);
    out.backend = bind_loopback(true, &out.backend_port);
    out.refusing = bind_loopback(false, &out.refusing_port);
    return out;
  }();
  return s;
}

// Variants by the input's size: the hash key (which node, so 502s and retries too), the
// retries, and [http2]'s limits (small ones reach the 431, refusal and flow-control
// paths with small inputs); `short_timers`: 5 ms for the client's and the node's timers.
std::shared_ptr<const Config> config_for(size_t input_size, bool short_timers) {
  static const std::vector<std::shared_ptr<const Config>> configs = [] {
    const Sockets& s = sockets();
    const HashKey keys[] = {{HashKeyKind::kUri, ""}, {HashKeyKind::kHeader, "x-key"}, {HashKeyKind::kCookie, "sid"}};
    std::vector<std::shared_ptr<const Config>> out;
    for (const uint32_t timeout : {kTimeoutMs, kShortTimeoutMs}) {
    for (uint32_t variant = 0; variant < 2; ++variant) {
      for (const HashKey& key : keys) {
        Config c;
        c.proxy.listen = {"127.0.0.1", s.proxy_port, false};
        c.proxy.workers = 1;
        c.proxy.hash_key = key;
        c.proxy.retries = variant;
        c.proxy.h2c = true;
        c.proxy.connect_timeout_ms = kTimeoutMs;
        c.proxy.header_timeout_ms = timeout;
        c.proxy.idle_timeout_ms = timeout;
        c.proxy.upstream_timeout_ms = timeout;
        c.proxy.shutdown_timeout_ms = kTimeoutMs;
        c.proxy.max_header_bytes = 2048;
        c.proxy.log_level = LogLevel::kError;
        c.http2.idle_timeout_ms = timeout;
        if (variant == 1) {
          c.http2.max_concurrent_streams = 4;
          c.http2.initial_window_bytes = 1024;
          c.http2.max_header_list_bytes = 512;
        }
        c.ring.vnodes = 16;
        c.admin.enabled = false;
        c.health.eject_after_failures = 0;
        c.backends.push_back({"live", {"127.0.0.1", s.backend_port, false}, 1, false, ""});
        c.backends.push_back({"refusing", {"127.0.0.1", s.refusing_port, false}, 1, false, ""});
        out.push_back(std::make_shared<const Config>(std::move(c)));
      }
    }
    }
    return out;
  }();
  return configs[input_size % (configs.size() / 2) + (short_timers ? configs.size() / 2 : 0)];
}

std::string printable(std::string_view bytes, size_t max = 120) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && out.size() < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x20 || c >= 0x7f || c == '\\') {
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

// ---------------------------------------------------------------------------------------
// The client's side as the server should read it

struct ClientStream {
  std::string method, path, body;
  bool has_head = false;
  bool ended = false;  // END_STREAM seen: later DATA is not the request's
};

uint32_t be24(const uint8_t* p) { return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2]; }
uint32_t be31(const uint8_t* p) {
  return ((uint32_t{p[0]} & 0x7f) << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// The input's frames, in order, until one that nghttp2 always takes for a connection
// error that loses the framing or the header blocks' state (a frame over the maximum
// size, bad HEADERS padding, a CONTINUATION out of place, a header block that does not
// decode): the server reads no further. Where nghttp2 may go on (a DATA frame's bad
// padding is not even read on a stream it has reset), so does this, so the streams and
// bodies found are a superset of what the server could have acted on.
std::map<uint32_t, ClientStream> read_client_streams(std::span<const uint8_t> in) {
  std::map<uint32_t, ClientStream> streams;
  nghttp2_hd_inflater* inflater = nullptr;
  if (nghttp2_hd_inflate_new(&inflater) != 0) std::abort();
  size_t pos = 0;
  std::string block;         // a header block being gathered (HEADERS, CONTINUATIONs)
  uint32_t block_stream = 0;  // 0: none
  bool block_end_stream = false;
  bool block_is_push = false;
  const auto decode = [&]() -> bool {
    std::string method, path;
    const uint8_t* p = reinterpret_cast<const uint8_t*>(block.data());
    size_t left = block.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      const ssize_t n = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, p, left, 1);
      if (n < 0) return false;
      p += n;
      left -= static_cast<size_t>(n);
      if (flags & NGHTTP2_HD_INFLATE_EMIT) {
        const std::string_view name(reinterpret_cast<const char*>(nv.name), nv.namelen);
        const std::string_view value(reinterpret_cast<const char*>(nv.value), nv.valuelen);
        if (name == ":method") method = value;
        if (name == ":path") path = value;
      }
      if (flags & NGHTTP2_HD_INFLATE_FINAL) {
        nghttp2_hd_inflate_end_headers(inflater);
        break;
      }
      if (n == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT)) return false;  // no progress
    }
    if (!block_is_push) {
      ClientStream& s = streams[block_stream];
      if (!s.has_head) {
        s.has_head = true;
        s.method = method;
        s.path = path;
      }
      if (block_end_stream) s.ended = true;
    }
    return true;
  };
  while (in.size() - pos >= 9) {
    const uint8_t* h = in.data() + pos;
    const uint32_t len = be24(h);
    const uint8_t type = h[3], flags = h[4];
    const uint32_t id = be31(h + 5);
    if (len > 16384) break;  // over SETTINGS_MAX_FRAME_SIZE: a connection error
    if (in.size() - pos - 9 < len) {
      // The input ends inside this frame. nghttp2 hands on a DATA frame's payload as it
      // arrives, so the bytes there are (up to its padding) part of the request's body.
      auto it = streams.find(id);
      if (type != NGHTTP2_DATA || block_stream != 0 || it == streams.end() || it->second.ended) break;
      const size_t have = in.size() - pos - 9;
      const bool padded = (flags & NGHTTP2_FLAG_PADDED) != 0;
      if (padded && have == 0) break;
      const size_t pad = padded ? h[9] : 0;
      const size_t start = padded ? 1 : 0;
      if (start + pad > len) break;  // the pad length is a connection error
      const size_t end = std::min<size_t>(have, len - pad);
      if (end > start) it->second.body.append(reinterpret_cast<const char*>(h + 9 + start), end - start);
      break;
    }
    const uint8_t* payload = h + 9;
    pos += 9 + len;
    if (block_stream != 0 && (type != NGHTTP2_CONTINUATION || id != block_stream)) break;
    std::string_view data(reinterpret_cast<const char*>(payload), len);
    const auto unpad = [&](bool padded, size_t skip) -> bool {
      if (padded) {
        if (data.empty()) return false;
        const size_t pad = static_cast<uint8_t>(data[0]);
        data.remove_prefix(1);
        if (pad > data.size()) return false;
        data.remove_suffix(pad);
      }
      if (skip > data.size()) return false;
      data.remove_prefix(skip);
      return true;
    };
    switch (type) {
      case NGHTTP2_DATA: {
        // Bad padding ends the connection only on a stream that takes DATA: nghttp2
        // skips a reset stream's DATA unread, and goes on with the next frame.
        if (!unpad(flags & NGHTTP2_FLAG_PADDED, 0)) break;
        auto it = streams.find(id);
        if (it != streams.end() && !it->second.ended) {
          it->second.body.append(data);
          if (flags & NGHTTP2_FLAG_END_STREAM) it->second.ended = true;
        }
        break;
      }
      case NGHTTP2_HEADERS:
      case NGHTTP2_PUSH_PROMISE:
        if (!unpad(flags & NGHTTP2_FLAG_PADDED,
                   type == NGHTTP2_PUSH_PROMISE ? 4 : ((flags & NGHTTP2_FLAG_PRIORITY) ? 5 : 0))) {
          goto done;
        }
        block.assign(data);
        block_stream = id;
        block_end_stream = type == NGHTTP2_HEADERS && (flags & NGHTTP2_FLAG_END_STREAM);
        block_is_push = type == NGHTTP2_PUSH_PROMISE;
        if (id == 0) goto done;
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
          if (!decode()) goto done;
          block_stream = 0;
        }
        break;
      case NGHTTP2_CONTINUATION:
        if (block_stream == 0) goto done;
        block.append(data);
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
          if (!decode()) goto done;
          block_stream = 0;
        }
        break;
      default:
        break;
    }
  }
done:
  nghttp2_hd_inflate_del(inflater);
  return streams;
}

// What the server sent, as frames (see the file's comment).
std::string check_server_frames(std::string_view got, const std::map<uint32_t, ClientStream>& streams) {
  size_t pos = 0;
  bool first = true;
  std::set<uint32_t> ended;  // the server's END_STREAM or RST_STREAM was sent
  while (got.size() - pos >= 9) {
    const auto* h = reinterpret_cast<const uint8_t*>(got.data() + pos);
    const uint32_t len = be24(h);
    const uint8_t type = h[3], flags = h[4];
    const uint32_t id = be31(h + 5);
    const std::string at = " (frame at byte " + std::to_string(pos) + ", type " + std::to_string(type) + ", stream " +
                           std::to_string(id) + ")";
    if (got.size() - pos - 9 < len) break;  // cut by the close: not a finding
    pos += 9 + len;
    if (first && (type != NGHTTP2_SETTINGS || (flags & NGHTTP2_FLAG_ACK))) {
      return "the server's first frame is not its SETTINGS" + at;
    }
    first = false;
    switch (type) {
      case NGHTTP2_DATA:
      case NGHTTP2_HEADERS: {
        auto it = streams.find(id);
        if (id == 0 || it == streams.end() || !it->second.has_head) {
          return "the server sent HEADERS or DATA on a stream the client never opened" + at;
        }
        if (ended.count(id)) return "the server sent HEADERS or DATA after ending the stream" + at;
        if (flags & NGHTTP2_FLAG_END_STREAM) ended.insert(id);
        break;
      }
      case NGHTTP2_RST_STREAM:
        if (id == 0 || len != 4) return "a malformed RST_STREAM from the server" + at;
        ended.insert(id);
        break;
      case NGHTTP2_SETTINGS:
      case NGHTTP2_PING:
      case NGHTTP2_GOAWAY:
        if (id != 0) return "a connection frame of the server on a stream" + at;
        break;
      case NGHTTP2_WINDOW_UPDATE:
      case NGHTTP2_PRIORITY:
      case NGHTTP2_CONTINUATION:
        break;
      default:
        return "the server sent a frame type it never should" + at;
    }
  }
  if (first && !got.empty()) return "the server's first bytes are not a whole SETTINGS frame";
  return "";
}

// ---------------------------------------------------------------------------------------
// The exchange

struct Request {
  std::string method, url, body;
};

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

class Exchange;

struct BackendConn {
  explicit BackendConn(Exchange& e);
  void on_bytes(const char* data, size_t len);
  void close() {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp))) uv_close(reinterpret_cast<uv_handle_t*>(&tcp), nullptr);
  }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }
  static BackendConn* self(llhttp_t* p) { return static_cast<BackendConn*>(p->data); }

  Exchange& ex;
  uv_tcp_t tcp{};
  uv_shutdown_t shutdown_req{};
  llhttp_t parser{};
  Request current;
  bool finished = false;
  char buf[16 * 1024];
};

class Exchange {
 public:
  explicit Exchange(std::span<const uint8_t> input)
      : input_(reinterpret_cast<const char*>(input.data()), input.size()) {}

  std::string run() {
    const Sockets& s = sockets();
    streams_ = read_client_streams({reinterpret_cast<const uint8_t*>(input_.data()), input_.size()});
    // The writes: 1 to 3, cut evenly.
    const size_t pieces = 1 + input_.size() % 3;
    size_t from = 0;
    for (size_t i = 1; i <= pieces; ++i) {
      const size_t to = input_.size() * i / pieces;
      if (to > from) writes_.push_back(input_.substr(from, to - from));
      from = to;
    }
    drain_first_ = (input_.size() / 3) % 2 == 1;
    wait_for_server_ = (input_.size() / 6) % 8 == 5;

    std::string error;
    shared_.routing = build_routing(config_for(input_.size(), wait_for_server_), nullptr, 1, 1, &error);
    if (!shared_.routing) return "harness: cannot build the routing: " + error;
    const int64_t streams_before = ClientConn::h2_streams_out();

    Worker worker(0, shared_, ::dup(s.proxy));
    worker_ = &worker;
    if (const int rc = worker.init(); rc != 0) {
      worker.abort_unstarted();
      return std::string("harness: worker init failed: ") + uv_strerror(rc);
    }
    loop_ = worker.loop();

    uv_tcp_init(loop_, &backend_listener_);
    backend_listener_.data = this;
    if (uv_tcp_open(&backend_listener_, ::dup(s.backend)) != 0 ||
        uv_listen(reinterpret_cast<uv_stream_t*>(&backend_listener_), 511, on_backend_connection) != 0) {
      std::abort();
    }
    uv_tcp_init(loop_, &client_);
    client_.data = this;
    sockaddr_in proxy{};
    uv_ip4_addr("127.0.0.1", s.proxy_port, &proxy);
    connect_req_.data = this;
    if (uv_tcp_connect(&connect_req_, &client_, reinterpret_cast<const sockaddr*>(&proxy), on_client_connect) != 0) {
      std::abort();
    }
    // The idle handle keeps the loop polling without waiting while a phase runs; the
    // check handle, after each poll, sees whether anything moved.
    uv_idle_init(loop_, &idle_);
    uv_idle_start(&idle_, [](uv_idle_t*) {});
    uv_check_init(loop_, &check_);
    check_.data = this;
    uv_check_start(&check_, on_check);
    uv_timer_init(loop_, &wait_timer_);
    wait_timer_.data = this;

    const int loop_rc = worker.run();
    worker_ = nullptr;
    if (loop_rc != 0) return "the worker's loop ended with handles still open";
    if (!violation_.empty()) return violation_;
    if (const int64_t out = ClientConn::h2_streams_out() - streams_before; out != 0) {
      return "the connection closed with " + std::to_string(out) + " HTTP/2 streams not freed";
    }
    for (const Backend& b : shared_.routing->default_pool().backends) {
      if (const uint32_t n = b.state->in_flight.load(); n != 0) {
        return "the loop ended with " + std::to_string(n) + " requests in flight at " + b.name;
      }
    }
    return final_checks();
  }

 private:
  friend struct BackendConn;

  std::string final_checks() {
    // RINGPROXY_FUZZ_VERBOSE=1: what each input did, for reading a seed or a finding.
    static const bool verbose = std::getenv("RINGPROXY_FUZZ_VERBOSE") != nullptr;
    if (verbose) {
      std::fprintf(stderr, "h2_frames: %zu bytes in %zu writes%s%s; %zu client streams; backend read %zu requests on %zu "
                   "connections; the client received %zu bytes\n",
                   input_.size(), writes_.size(), drain_first_ ? ", drained first" : "",
                   wait_for_server_ ? ", waited for the server" : "", streams_.size(),
                   backend_requests_.size(), backends_.size(), client_received_.size());
      for (const auto& [id, st] : streams_) {
        std::fprintf(stderr, "  client stream %u: %s %s (%zu body bytes%s)\n", id, printable(st.method).c_str(),
                     printable(st.path).c_str(), st.body.size(), st.ended ? ", ended" : "");
      }
      for (const Request& r : backend_requests_) {
        std::fprintf(stderr, "  backend: %s %s (%zu body bytes)\n", r.method.c_str(), printable(r.url).c_str(),
                     r.body.size());
      }
    }
    for (const Request& got : backend_requests_) {
      bool found = false;
      for (const auto& [id, s] : streams_) {
        // A body framed by content-length can be whole at the node before END_STREAM,
        // and DATA beyond it then resets the stream: the node's is a prefix.
        if (s.has_head && s.method == got.method && s.path == got.url && s.body.starts_with(got.body)) {
          found = true;
          break;
        }
      }
      if (!found) {
        return "the backend read a request no client stream sent: " + got.method + " " + printable(got.url) +
               " with a body of " + std::to_string(got.body.size()) + " bytes \"" + printable(got.body) + "\"";
      }
    }
    return check_server_frames(client_received_, streams_);
  }

  void fail(std::string what) {
    if (violation_.empty()) violation_ = std::move(what);
  }
  void progress() { quiet_ = 0; }

  // Phases: the writes one by one, then (drain_first_) the drain, then the half-close;
  // each next step once the last is quiescent.
  void next_step() {
    quiet_ = 0;
    iterations_ = 0;
    auto* stream = reinterpret_cast<uv_stream_t*>(&client_);
    if (client_closed_ || uv_is_closing(reinterpret_cast<uv_handle_t*>(&client_))) {
      stop_polling();
      return;
    }
    if (next_write_ < writes_.size()) {
      write_copy(stream, writes_[next_write_++]);
      return;
    }
    if (drain_first_ && !drained_) {
      drained_ = true;
      worker_->notify_drain();
      return;
    }
    stop_polling();
    if (wait_for_server_) {
      uv_timer_start(
          &wait_timer_,
          [](uv_timer_t* t) {
            auto* e = static_cast<Exchange*>(t->data);
            e->fail("the server did not end a connection whose client stopped sending within " +
                    std::to_string(kServerEndsWithinMs) + " ms (its timeouts are " + std::to_string(kShortTimeoutMs) +
                    " ms)");
            e->close_client();
          },
          kServerEndsWithinMs, 0);
      return;
    }
    // An HTTP/2 client does not half-close; the server ends the connection on it.
    client_shutdown_.data = this;
    if (uv_shutdown(&client_shutdown_, stream, [](uv_shutdown_t*, int) {}) != 0) close_client();
  }

  void stop_polling() {
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(&idle_))) uv_idle_stop(&idle_);
    polling_ = false;
  }

  static void on_client_connect(uv_connect_t* req, int status) {
    auto* ex = static_cast<Exchange*>(req->data);
    if (status < 0) {
      ex->fail(std::string("harness: cannot connect to the proxy: ") + uv_strerror(status));
      ex->close_client();
      return;
    }
    auto* stream = reinterpret_cast<uv_stream_t*>(&ex->client_);
    write_copy(stream, std::string(kPreface));
    ex->polling_ = true;
    ex->next_step();
    uv_read_start(
        stream,
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto* e = static_cast<Exchange*>(h->data);
          *b = uv_buf_init(e->client_buf_, sizeof e->client_buf_);
        },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t* b) {
          auto* e = static_cast<Exchange*>(st->data);
          e->progress();
          if (n > 0 && e->client_received_.size() < (8u << 20)) e->client_received_.append(b->base, static_cast<size_t>(n));
          if (n < 0) e->close_client();
        });
  }

  void close_client() {
    auto* h = reinterpret_cast<uv_handle_t*>(&client_);
    stop_polling();
    uv_timer_stop(&wait_timer_);
    if (uv_is_closing(h)) return;
    uv_close(h, [](uv_handle_t* handle) {
      auto* e = static_cast<Exchange*>(handle->data);
      e->client_closed_ = true;
      if (e->worker_) e->worker_->notify_drain();
    });
  }

  static void on_check(uv_check_t* c) {
    auto* ex = static_cast<Exchange*>(c->data);
    if (ex->polling_) {
      ++ex->iterations_;
      if (++ex->quiet_ >= kQuietIterations || ex->iterations_ >= kMaxIterations) ex->next_step();
      return;
    }
    // As proxy_harness.cc: the backend stops listening once the draining worker has no
    // connection left; then the idle and check handles go and the loop runs dry.
    if (!ex->client_closed_ || !ex->worker_ || !ex->worker_->draining() || ex->shared_.connections.load() != 0) {
      return;
    }
    uv_os_fd_t fd = -1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&ex->backend_listener_), &fd) == 0) {
      for (int conn; (conn = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) ::close(conn);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&ex->backend_listener_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&ex->idle_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&ex->wait_timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(c), nullptr);
  }

  static void on_backend_connection(uv_stream_t* server, int status) {
    auto* ex = static_cast<Exchange*>(server->data);
    if (status < 0) return;
    ex->progress();
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
          conn->ex.progress();
          if (n < 0) {
            conn->close();
            return;
          }
          conn->on_bytes(in->base, static_cast<size_t>(n));
        });
  }

  static const llhttp_settings_t& backend_settings();

  std::string input_;
  std::vector<std::string> writes_;
  size_t next_write_ = 0;
  bool drain_first_ = false;
  bool drained_ = false;
  bool wait_for_server_ = false;
  uv_timer_t wait_timer_{};
  std::map<uint32_t, ClientStream> streams_;
  Shared shared_;
  Worker* worker_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  uv_tcp_t backend_listener_{};
  uv_tcp_t client_{};
  uv_connect_t connect_req_{};
  uv_shutdown_t client_shutdown_{};
  uv_idle_t idle_{};
  uv_check_t check_{};
  bool polling_ = false;
  int quiet_ = 0;
  uint64_t iterations_ = 0;
  char client_buf_[16 * 1024];
  std::string client_received_;
  bool client_closed_ = false;
  std::vector<std::unique_ptr<BackendConn>> backends_;
  std::vector<Request> backend_requests_;
  std::string violation_;
};

const llhttp_settings_t& Exchange::backend_settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t out;
    llhttp_settings_init(&out);
    out.on_message_begin = [](llhttp_t* p) {
      BackendConn::self(p)->current = {};
      return 0;
    };
    out.on_url = [](llhttp_t* p, const char* at, size_t len) {
      BackendConn::self(p)->current.url.append(at, len);
      return 0;
    };
    out.on_body = [](llhttp_t* p, const char* at, size_t len) {
      BackendConn::self(p)->current.body.append(at, len);
      return 0;
    };
    out.on_headers_complete = [](llhttp_t* p) {
      BackendConn::self(p)->current.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
      return 0;
    };
    out.on_message_complete = [](llhttp_t* p) {
      BackendConn* b = BackendConn::self(p);
      if (b->finished) return 0;
      const Request& req = b->current;
      b->ex.backend_requests_.push_back(req);
      const bool head = req.method == "HEAD";
      const bool close = req.url.find("close") != std::string::npos || !llhttp_should_keep_alive(p);
      std::string answer = "HTTP/1.1 200 OK\r\n";
      if (close) answer += "Connection: close\r\n";
      const std::string body = req.url.find("big") != std::string::npos ? std::string(kBigBody, 'b') : "ok";
      if (req.url.find("chunk") != std::string::npos) {
        answer += "Transfer-Encoding: chunked\r\n\r\n";
        if (!head) {
          char size[16];
          std::snprintf(size, sizeof size, "%zx\r\n", body.size());
          answer += size + body + "\r\n0\r\n\r\n";
        }
      } else {
        answer += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
        if (!head) answer += body;
      }
      write_copy(b->stream(), std::move(answer));
      if (close) {
        b->finished = true;
        uv_shutdown(&b->shutdown_req, b->stream(), [](uv_shutdown_t*, int) {});
      }
      return 0;
    };
    return out;
  }();
  return s;
}

BackendConn::BackendConn(Exchange& e) : ex(e) {
  uv_tcp_init(ex.loop_, &tcp);
  tcp.data = this;
  llhttp_init(&parser, HTTP_REQUEST, &Exchange::backend_settings());
  parser.data = this;
}

void BackendConn::on_bytes(const char* data, size_t len) {
  if (finished) return;
  const llhttp_errno err = llhttp_execute(&parser, data, len);
  if (err == HPE_OK || finished) return;
  finished = true;
  if (err == HPE_INVALID_METHOD) {
    close();  // a token llhttp does not know: allowed in HTTP/2, unchecked here
    return;
  }
  const char* reason = llhttp_get_error_reason(&parser);
  const size_t at = static_cast<size_t>(llhttp_get_error_pos(&parser) - data);
  ex.fail(std::string("the backend received bytes that do not parse as HTTP requests (") +
          (reason ? reason : llhttp_errno_name(err)) + "): \"" +
          printable(std::string_view(data + at, len - at)) + "\"");
  close();
}

}  // namespace

std::string h2_frames(std::span<const uint8_t> input) { return Exchange(input).run(); }

}  // namespace ringproxy::fuzz
