#include "proxy/client_conn.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cassert>
#include <charconv>
#include <cstring>
#include <utility>

#include "net/local_error.h"
#include "http/status.h"
#include "proxy/log.h"
#include "proxy/request_log.h"
#include "proxy/rewrite.h"
#include "proxy/router.h"
#include "proxy/worker.h"

namespace ringproxy {
// Literal pieces of the heads we build are appended with their length known, not strlen.
using namespace std::string_view_literals;
namespace {

// Largest response head accepted from a backend; a larger one is a 502.
constexpr uint32_t kMaxResponseHead = 64 * 1024;

// Lingering close (RFC 9112 9.6): after our answer, what the client still sends is read
// and dropped for at most kLingerMs in all, kLingerIdleMs between reads, and
// kLingerMaxBytes. nginx's lingering_time and lingering_timeout are 30 s and 5 s; a
// client that has our answer needs only the time its last bytes take to arrive.
constexpr uint32_t kLingerMs = 5000;
constexpr uint32_t kLingerIdleMs = 2000;
constexpr uint64_t kLingerMaxBytes = 4 * 1024 * 1024;


std::string describe(int uv_status) { return uv_status < 0 ? uv_err_name(uv_status) : "eof"; }


}  // namespace

// ---------------------------------------------------------------------------------------
// Life cycle

ClientConn::ClientConn(Worker& worker) : worker_(worker), tcp_(worker.buffers(), *this), in_(tcp_.buffer()) {
  // The heads are rebuilt per request in these: one allocation each per connection.
  up_head_.reserve(512);
  resp_head_.reserve(512);
  resp_headers_.reserve(16);
  resp_views_.reserve(16);
}

ClientConn::~ClientConn() = default;

void ClientConn::accept(Worker& worker, int fd, const sockaddr* peer) {
  auto* c = new ClientConn(worker);  // owned by its handles: freed in on_close
  Shared& shared = worker.shared();
  const uint32_t before = shared.connections.fetch_add(1, std::memory_order_relaxed);
  c->timer_.init(worker.loop(), c);
  c->open_handles_ = 1;
  if (c->tcp_.init(worker.loop()) == 0) c->open_handles_ = 2;
  if (c->open_handles_ < 2 || c->tcp_.open(fd, worker.listener_nodelay()) != 0) {
    ::close(fd);  // still ours: the handle did not take it
    c->close();
    return;
  }
  worker.add_connection(c);
  c->listed_ = true;

  const Config& cfg = *worker.routing().config;
  if (before >= cfg.proxy.max_connections || worker.draining()) {
    RP_LOG(LogLevel::kWarn, "connection refused: max_connections " +
                                std::to_string(cfg.proxy.max_connections) + " reached");
    c->close();
    return;
  }
  TcpTransport::ip_text(peer, c->client_ip_, sizeof c->client_ip_);
  c->arm_timer(cfg.proxy.header_timeout_ms);
  c->resume_client_reading();
}

void ClientConn::close() {
  if (closing_) return;
  closing_ = true;
  if (up_) {
    release_upstream(false);
  }
  if (listed_) worker_.remove_connection(this);
  tcp_.close();  // a no-op when its init failed
  uv_close(reinterpret_cast<uv_handle_t*>(timer_.handle()), on_timer_closed);
}

void ClientConn::on_timer_closed(uv_handle_t* h) { static_cast<ClientConn*>(h->data)->handle_closed(); }
void ClientConn::on_closed() { handle_closed(); }

void ClientConn::handle_closed() {
  if (--open_handles_ != 0) return;
  worker_.shared().connections.fetch_sub(1, std::memory_order_relaxed);
  delete this;
}

void ClientConn::drain() {
  drain_requested_ = true;
  close_after_response_ = true;
  if (lingering_) {
    close();
    return;
  }
  if (req_phase_ == ReqPhase::kIdle && in_.size() == 0 && !client_write_pending_) close();
}

void ClientConn::arm_timer(uint32_t ms) { timer_.arm(ms, on_timer); }

void ClientConn::on_timer(uv_timer_t* t) {
  auto* c = static_cast<ClientConn*>(t->data);
  if (!c->timer_.due(on_timer)) return;
  if (c->lingering_) {
    c->close();
    return;
  }
  if (c->req_phase_ == ReqPhase::kHead && c->resp_phase_ == RespPhase::kNone) {
    c->respond_error(408, "request head not received in time", "header timeout");
    return;
  }
  if (c->req_phase_ == ReqPhase::kIdle && c->resp_phase_ == RespPhase::kNone) {
    c->close();  // keep-alive idle timeout: nothing to answer
    return;
  }
  if (c->req_phase_ == ReqPhase::kBody && c->resp_bytes_ == 0 && !c->tunnel_) {
    c->respond_error(408, "request body not received in time", "client stalled mid-body");
    return;
  }
  RP_LOG(LogLevel::kInfo, std::string("client ") + c->client_ip_ +
                              (c->client_write_pending_ ? ": not reading the response, closing"
                                                        : ": idle timeout mid-exchange, closing"));
  c->close();
}

// ---------------------------------------------------------------------------------------
// Reading from the client

void ClientConn::resume_client_reading() {
  if (closing_ || tcp_.reading() || client_eof_ || client_write_pending_) return;
  if (up_ && up_->write_pending()) return;  // backpressure: upstream has not taken the last bytes
  if (in_.allocated() && in_.free_space() == 0) {
    if (client_write_pending_ || (up_ && up_->write_pending())) return;
    in_.compact();
    if (in_.free_space() == 0) return;  // full of a pipelined request we cannot take yet
  }
  tcp_.start_reading();
}

void ClientConn::on_read(ssize_t nread) {
  ClientConn* c = this;
  if (c->lingering_) {
    // Dropped. The client's FIN (or a reset) ends it, or the time and size bounds do.
    c->linger_bytes_ += nread > 0 ? static_cast<uint64_t>(nread) : 0;
    c->in_.clear();
    const uint64_t now = uv_now(c->worker_.loop());
    if (nread < 0 || c->linger_bytes_ > kLingerMaxBytes || now >= c->linger_deadline_) {
      c->close();
      return;
    }
    c->arm_timer(static_cast<uint32_t>(std::min<uint64_t>(kLingerIdleMs, c->linger_deadline_ - now)));
    return;
  }
  if (nread < 0) {
    c->client_eof_ = true;
    if (nread != UV_EOF) {
      c->close();  // a reset: nobody to answer
      return;
    }
    if (c->tunnel_) {
      c->tunnel_half_close_from_client();
      return;
    }
    if (c->resp_phase_ == RespPhase::kNone) {
      // No exchange: idle (go), or a head cut short (say so).
      if (c->req_phase_ == ReqPhase::kHead && (c->req_.head_started() || c->in_.size() > 0)) {
        c->respond_error(400, "incomplete request", "client closed mid-head");
      } else {
        c->close();
      }
      return;
    }
    // A half-close after a request (HTTP allows it): the request and any pipelined
    // ones already buffered are answered, then the connection closes. A body still
    // short of its end is cut short: forward_request_body() finds that out.
    if (c->req_phase_ == ReqPhase::kBody && c->upstream_ready_ && c->up_ && !c->up_->write_pending()) {
      c->forward_request_body();
    }
    return;
  }
  if (c->tunnel_) {
    c->arm_timer(c->routing_->config->proxy.idle_timeout_ms);
    c->forward_request_body();
    return;
  }
  if (c->req_phase_ == ReqPhase::kBody) c->arm_timer(c->routing_->config->proxy.idle_timeout_ms);
  c->process_request_bytes();
}

void ClientConn::process_request_bytes() {
  while (!closing_) {
    switch (req_phase_) {
      case ReqPhase::kIdle:
        if (in_.size() == 0) {
          if (client_eof_ && resp_phase_ == RespPhase::kNone && !client_write_pending_) {
            close();  // half-closed, and every request it sent is answered
            return;
          }
          if (!client_write_pending_) worker_.buffers().release(in_);
          return;
        }
        req_phase_ = ReqPhase::kHead;
        log_.start(uv_hrtime() / 1000);
        if (resp_phase_ == RespPhase::kNone) {
          arm_timer(worker_.routing().config->proxy.header_timeout_ms);
        }
        [[fallthrough]];
      case ReqPhase::kHead:
        if (resp_phase_ != RespPhase::kNone) return;  // the previous response is not done
        if (!parse_head()) return;
        if (req_phase_ == ReqPhase::kHead) return;  // need more bytes
        on_request_head();
        break;
      case ReqPhase::kBody:
        if (!upstream_ready_) return;
        if (!forward_request_body()) return;
        break;
      case ReqPhase::kDone:
        return;
    }
  }
}

bool ClientConn::parse_head() {
  const bool may_compact = !client_write_pending_ && !(up_ && up_->write_pending());
  const uint32_t max_head = worker_.routing().config->proxy.max_header_bytes;
  switch (req_.read_head(in_, max_head, may_compact, client_eof_)) {
    case h1::RequestParser::HeadStep::kMore:
      resume_client_reading();
      return true;
    case h1::RequestParser::HeadStep::kHead:
      req_phase_ = ReqPhase::kBody;
      return true;
    case h1::RequestParser::HeadStep::kRefused:
      break;
  }
  const h1::Refusal& r = req_.refusal();
  respond_error(r.status, r.text, r.cause);
  return false;
}

// ---------------------------------------------------------------------------------------
// Routing the request

void ClientConn::on_request_head() {
  // The head passed the codec's checks (h1::RequestParser::read_head).
  const Config& cfg = *worker_.routing().config;
  routing_ = worker_.routing_ptr();
  const std::string_view target = req_.target();
  const std::string_view method = req_.method_name();
  client_http10_ = req_.http10();
  client_keep_alive_ = req_.keep_alive();
  if (!client_keep_alive_ || drain_requested_) close_after_response_ = true;
  idempotent_ = is_idempotent_method(method);
  upgrade_ = req_.upgrade();

  // The target (RFC 9112 3.2): origin form; absolute form, which goes on in origin form
  // with Host taken from its authority (3.2.2), keyed by its path and query as the same
  // request in origin form is; or asterisk form, for OPTIONS only.
  std::string_view origin = target;
  if (AbsoluteTarget abs; split_absolute_target(target, &abs)) {
    // The authority is the Host from here on: for the key (hash_key = "header:host"
    // routes it as the origin form with that Host would go) and for the backend.
    bool replaced = false;
    for (HeaderView& hv : req_.fields()) {
      if (iequals(hv.name, "host")) {
        hv.value = abs.authority;
        replaced = true;
      }
    }
    if (!replaced) req_.fields().push_back({"Host", abs.authority});
    if (abs.origin.empty() && req_.method() == HTTP_OPTIONS) {
      origin = "*";  // RFC 9112 3.2.4: the last proxy sends OPTIONS for the server as "*"
    } else if (abs.origin.empty() || abs.origin.front() != '/') {
      origin_scratch_.assign(1, '/');
      origin_scratch_.append(abs.origin);
      origin = origin_scratch_;
    } else {
      origin = abs.origin;
    }
  }

  // Access-log fields, taken now: the head's bytes may move once the body streams.
  log_.take_head(client_ip_, method, target, client_http10_, req_.fields());
  if (!apply_max_forwards(method, target)) return;

  const std::string_view key = select_hash_key(cfg.proxy.hash_key, origin, req_.fields(), client_ip_);
  key_hash_ = routing_->ring->key_hash(key);
  RequestRewrite rw;
  rw.method = method;
  rw.target = origin;
  rw.fields = req_.fields();
  rw.client_ip = client_ip_;
  rw.via = routing_->config->proxy.via;
  rw.client_http10 = client_http10_;
  rw.upgrade = upgrade_;
  rw.max_forwards_set = max_forwards_set_;
  rw.max_forwards = max_forwards_;
  host_missing_ = !build_request_head(rw, up_head_);
  attempts_ = 0;
  reconnected_ = fresh_connection_ = false;
  req_body_forwarded_ = 0;
  req_body_started_ = false;
  resp_from_backend_ = false;
  // While the body comes in, the client timer watches the client; the upstream timer
  // watches the backend.
  arm_timer(cfg.proxy.idle_timeout_ms);
  pick_node_and_connect();
}

bool ClientConn::may_retry() const {
  const uint32_t retries = routing_->config->proxy.retries;
  static_assert(sizeof tried_ / sizeof tried_[0] == kMaxRetries + 1);
  return idempotent_ && req_body_forwarded_ == 0 && attempts_ <= retries;
}

bool ClientConn::apply_max_forwards(std::string_view method, std::string_view target) {
  max_forwards_set_ = false;
  const bool trace = req_.method() == HTTP_TRACE;
  if (!trace && req_.method() != HTTP_OPTIONS) return true;  // RFC 9110 7.6.2: others ignore it
  bool present = false;
  const std::string_view value = find_header(req_.fields(), "max-forwards", &present);
  if (!present) return true;
  uint32_t n = 0;
  if (!parse_max_forwards(value, &n)) {
    respond_error(400, "malformed request", "malformed request: invalid Max-Forwards");
    return false;
  }
  if (n > 0) {
    max_forwards_set_ = true;
    max_forwards_ = n - 1;
    return true;
  }
  // 0: this proxy is the recipient and answers itself. The request has no body to
  // wait for (TRACE has none; an OPTIONS body is read to its end, or the connection
  // closes after the answer).
  RP_LOG(LogLevel::kInfo, std::string("answered 200: Max-Forwards: 0 on ") + std::string(method) +
                              " client=" + client_ip_ + " node=-");
  resp_status_ = 200;
  const bool keep_alive = !close_after_response_ && discard_rest_of_request();
  if (trace) {
    // The request line as received: method, target and version.
    std::string line(method);
    line += ' ';
    line += target;
    line += client_http10_ ? " HTTP/1.0"sv : " HTTP/1.1"sv;
    error_out_ = trace_response(line, req_.fields(), !keep_alive);
  } else {
    error_out_ = "HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n"
                 "Content-Length: 0\r\n";
    if (!keep_alive) error_out_ += "Connection: close\r\n";
    error_out_ += "\r\n";
  }
  finish_accounting(200);
  respond_self(keep_alive);
  return false;
}

void ClientConn::pick_node_and_connect() {
  const Routing& r = *routing_;
  const std::optional<NodeIndex> node =
      pick_node(r, key_hash_, std::span<const NodeIndex>(tried_, attempts_), uv_now(worker_.loop()));
  if (!node) {
    if (attempts_ == 0) {
      respond_error(503, "no backend available", "no usable node");
    } else {
      respond_error(502, "backend failed", "no further node to retry on");
    }
    return;
  }
  node_ = *node;
  have_node_ = true;
  tried_[attempts_++] = node_;
  const Backend& b = r.backends[node_];
  if (Log::enabled(LogLevel::kDebug)) {
    // On a retry the head's bytes may have moved: the URL is logged on the first attempt.
    Log::write(LogLevel::kDebug, "routing " + (attempts_ == 1 ? std::string(req_.target()) : std::string("(retry)")) +
                                     " to node=" + b.name + " attempt=" + std::to_string(attempts_));
  }
  b.state->in_flight.fetch_add(1, std::memory_order_relaxed);

  UpstreamPool& pool = worker_.pool(r, node_);
  resp_phase_ = RespPhase::kConnecting;
  // The attempt after a pooled connection failed takes a new one (upstream_failed).
  if (UpstreamConn* idle = std::exchange(fresh_connection_, false) ? nullptr : pool.take_idle(this)) {
    attach_upstream(idle);
    return;
  }
  UpstreamConn* conn = pool.make();
  up_ = conn;
  const int rc = conn->connect(reinterpret_cast<const sockaddr*>(&b.sockaddr), this,
                               r.config->proxy.connect_timeout_ms);
  if (rc < 0) on_upstream_connect(rc);
}

void ClientConn::attach_upstream(UpstreamConn* conn) {
  up_ = conn;
  upstream_ready_ = true;
  llhttp_init(&resp_parser_, HTTP_RESPONSE, &response_settings());
  resp_parser_.data = this;
  resp_headers_.clear();
  status_text_ = {};
  resp_head_bytes_ = 0;
  resp_msg_done_ = false;
  head_pending_ = resp_exec_pending_ = false;
  decode_chunked_ = false;
  resp_phase_ = RespPhase::kWaiting;
  conn->buffer().clear();
  if (conn->start_reading() < 0) {
    upstream_failed(502, "cannot read from the backend", true);
    return;
  }
  send_upstream_head();
}

void ClientConn::send_upstream_head() {
  uv_buf_t bufs[3];
  unsigned n = 1;
  bufs[0] = uv_buf_init(up_head_.data(), static_cast<unsigned>(up_head_.size()));
  if (host_missing_) {
    // An HTTP/1.0 request without Host goes on in HTTP/1.1, which needs one (RFC 9112
    // 3.2): the node's address, as nginx's proxy_set_header Host $proxy_host does.
    // Per attempt: a retry goes to another node.
    host_line_.assign("Host: "sv);
    host_line_ += routing_->backends[node_].address.to_string();
    host_line_ += "\r\n"sv;
    bufs[0].len -= 2;  // before the head's last CRLF
    bufs[1] = uv_buf_init(host_line_.data(), static_cast<unsigned>(host_line_.size()));
    bufs[2] = uv_buf_init(up_head_.data() + up_head_.size() - 2, 2);
    n = 3;
  }
  up_sent_us_ = uv_hrtime() / 1000;
  const int rc = up_->write(bufs, n);
  if (rc < 0) {
    upstream_failed(502, std::string("write failed: ") + uv_err_name(rc), true);
    return;
  }
  const ProxyConfig& p = routing_->config->proxy;
  up_->arm_timer(req_phase_ == ReqPhase::kDone ? p.upstream_timeout_ms : p.idle_timeout_ms);
  process_request_bytes();
}

void ClientConn::on_upstream_connect(int status) {
  if (is_local_resource_error(status)) {
    // Out of descriptors or memory here, from uv_tcp_connect or its callback: not the
    // node's failure, and the next node would fail alike. No retry, no passive-health
    // count; a 503 (ours, not the node's) closing the connection to give a descriptor
    // back, and the worker's rate-limited line instead of one per request.
    worker_.local_resource_error(status, routing_->backends[node_].name);
    release_upstream(false);
    if (--attempts_ > 0) node_ = tried_[attempts_ - 1];  // this attempt never was
    close_after_response_ = true;
    respond_error(503, "proxy out of local resources (file descriptors or memory)", {});
    return;
  }
  if (status < 0) {
    const bool timeout = status == UV_ETIMEDOUT;
    upstream_failed(timeout ? 504 : 502,
                    std::string(timeout ? "connect timeout" : "connect failed: ") +
                        (timeout ? "" : uv_err_name(status)),
                    true);
    return;
  }
  attach_upstream(up_);
}

void ClientConn::upstream_failed(int status_code, std::string_view cause, bool retryable_failure) {
  const Backend& b = routing_->backends[node_];
  const bool was_reused = up_ && up_->reused();
  release_upstream(false);
  if (retryable_failure && resp_bytes_ == 0 && resp_phase_ != RespPhase::kBody) {
    // A pooled connection the backend closed as we sent: same node, new connection.
    // Not the node's failure: keep-alive connections close, it is how HTTP is. (A
    // timeout is the node's failure, pooled connection or not.)
    // Once per request, and on a new connection: another pooled one may be just as
    // stale (the backend restarted and closed them all).
    if (was_reused && !reconnected_ && idempotent_ && req_body_forwarded_ == 0 && status_code != 504) {
      RP_LOG(LogLevel::kDebug, std::string("upstream ") + std::string(cause) +
                                   " on a pooled connection, reconnecting: node=" + b.name);
      bump(worker_.stats().reconnects);
      reconnected_ = fresh_connection_ = true;
      --attempts_;
      pick_node_and_connect();
      return;
    }
    note_node_failure(b);
    if (may_retry()) {
      bump(worker_.stats().retries);
      RP_LOG(LogLevel::kWarn, std::string("upstream ") + std::string(cause) + ": node=" + b.name +
                                  " address=" + b.address.to_string() + ", retrying on the next node");
      pick_node_and_connect();
      return;
    }
  }
  if (!(retryable_failure && resp_bytes_ == 0 && resp_phase_ != RespPhase::kBody)) note_node_failure(b);
  respond_error(status_code, status_code == 504 ? "backend timed out" : "backend failed",
                std::string(cause) + " at node " + b.name);
}

}  // namespace ringproxy

namespace ringproxy {

// ---------------------------------------------------------------------------------------
// Request body

bool ClientConn::forward_request_body() {
  if (!up_ || up_->write_pending()) return false;
  if (in_.size() == 0 && (tunnel_ || req_body_started_)) {
    if (client_eof_ && !tunnel_) {
      RP_LOG(LogLevel::kInfo, std::string("client ") + client_ip_ + " closed mid-body; dropping the request");
      close();
      return false;
    }
    resume_client_reading();
    return false;
  }
  // Executed once even with no bytes: a request without a body completes here.
  req_body_started_ = true;
  char* start = in_.begin_ptr();
  size_t len = in_.size();
  bool complete = false;
  if (!tunnel_) {
    const h1::RequestParser::BodyStep step = req_.body(start, len);
    if (!step.error) {
      len = step.consumed;
      complete = step.complete;
    } else {
      if (resp_bytes_ == 0) {
        respond_error(400, "malformed request body", "malformed body: " + std::string(req_.error_reason()));
      } else {
        close();
      }
      return false;
    }
  }
  in_.consume(len);
  if (len > 0) {
    req_body_forwarded_ += len;
    uv_buf_t buf = uv_buf_init(start, static_cast<unsigned>(len));
    const int rc = up_->write(&buf, 1);
    if (rc < 0) {
      on_upstream_write(rc);
      return false;
    }
    if (rc == Transport::kQueued) tcp_.stop_reading();
    // The backend took bytes: it is alive. (Its timer measures its silence.)
    if (!tunnel_ && resp_phase_ == RespPhase::kWaiting && !complete) {
      up_->arm_timer(routing_->config->proxy.idle_timeout_ms);
    }
  }
  if (complete) {
    req_phase_ = ReqPhase::kDone;
    if (!client_write_pending_) timer_.disarm();  // the client has sent all; now the backend's turn
    if (upgrade_) return false;  // bytes after an upgrade request wait for the 101
    if (resp_phase_ == RespPhase::kWaiting) up_->arm_timer(routing_->config->proxy.upstream_timeout_ms);
    if (resp_phase_ == RespPhase::kDone) exchange_done();
    return true;
  }
  if (client_eof_ && !tunnel_ && in_.size() == 0) {
    RP_LOG(LogLevel::kInfo, std::string("client ") + client_ip_ + " closed mid-body; dropping the request");
    close();
    return false;
  }
  if (!up_->write_pending()) resume_client_reading();
  return false;
}

void ClientConn::on_upstream_write(int status) {
  if (status < 0) {
    if (resp_bytes_ == 0) {
      // Retried only when nothing of the body went out (upstream_failed decides).
      upstream_failed(502, std::string("write failed: ") + uv_err_name(status), true);
    } else {
      close();
    }
    return;
  }
  if (req_phase_ == ReqPhase::kBody || tunnel_) {
    forward_request_body();
    if (!closing_ && req_phase_ == ReqPhase::kDone && !tunnel_) process_request_bytes();
  }
  resume_client_reading();
}

// ---------------------------------------------------------------------------------------
// Response

int ClientConn::on_resp_status(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<ClientConn*>(p->data);
  if (c->status_text_.len == 0) c->status_text_.off = static_cast<uint32_t>(at - c->up_->buffer().data());
  c->status_text_.len += static_cast<uint32_t>(len);
  c->resp_head_bytes_ += static_cast<uint32_t>(len);
  return 0;
}

int ClientConn::on_resp_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<ClientConn*>(p->data);
  h1::append_field_piece(c->resp_headers_, false, c->up_->buffer().data(), at, len, &c->resp_head_bytes_);
  return c->resp_head_bytes_ > kMaxResponseHead ? HPE_USER : 0;
}

int ClientConn::on_resp_header_value(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<ClientConn*>(p->data);
  if (!h1::append_field_piece(c->resp_headers_, true, c->up_->buffer().data(), at, len, &c->resp_head_bytes_)) {
    llhttp_set_error_reason(p, "obs-fold (RFC 9112 5.2)");
    return HPE_INVALID_HEADER_TOKEN;
  }
  return c->resp_head_bytes_ > kMaxResponseHead ? HPE_USER : 0;
}

int ClientConn::on_resp_headers_complete(llhttp_t* p) {
  auto* c = static_cast<ClientConn*>(p->data);
  // Responses to HEAD, and 1xx (but 101), 204 and 304 responses, have no body whatever
  // their headers say (RFC 9110 6.4.1); llhttp 8 reads a Content-Length body for 204
  // and 304 unless told (1 = no body). The pause then comes at message complete, at
  // the same place, and the head is handled there once.
  const int status = p->status_code;
  if (c->req_.is_head() || (status >= 100 && status < 200 && status != 101) || status == 204 ||
      status == 304) {
    return 1;
  }
  return HPE_PAUSED;
}

int ClientConn::on_resp_message_complete(llhttp_t* p) {
  static_cast<ClientConn*>(p->data)->resp_msg_done_ = true;
  return HPE_PAUSED;
}

int ClientConn::on_resp_body_decode(llhttp_t* p, const char* at, size_t len) {
  // The decoded pieces move to the front of the bytes just read, in order; each lies
  // after the place it moves to, so memmove never overwrites what is still to come.
  auto* c = static_cast<ClientConn*>(p->data);
  if (c->decode_dst_ != at) std::memmove(c->decode_dst_, at, len);
  c->decode_dst_ += len;
  return 0;
}

const llhttp_settings_t& ClientConn::response_decode_settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s = response_settings();
    s.on_body = on_resp_body_decode;
    return s;
  }();
  return settings;
}

const llhttp_settings_t& ClientConn::response_settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_status = on_resp_status;
    s.on_header_field = on_resp_header_field;
    s.on_header_value = on_resp_header_value;
    s.on_headers_complete = on_resp_headers_complete;
    s.on_message_complete = on_resp_message_complete;
    return s;
  }();
  return settings;
}

void ClientConn::on_upstream_timeout() {
  if (resp_phase_ == RespPhase::kWaiting && req_phase_ == ReqPhase::kDone) {
    // Nothing came back: an idempotent request whose body was not streamed goes to the
    // next node, as after a reset (nginx's proxy_next_upstream default, "error
    // timeout"); a paused or wedged node then costs its clients upstream_timeout_ms,
    // not an error. 504 once the retries are spent.
    upstream_failed(504, "response timeout", true);
    return;
  }
  if (req_phase_ == ReqPhase::kBody && !up_->write_pending()) {
    // The backend takes what it is given; it is the client that sends nothing.
    respond_error(408, "request body not received in time", "client stalled mid-body");
    return;
  }
  if (resp_bytes_ == 0 && resp_phase_ != RespPhase::kBody) {
    upstream_failed(504, "backend stalled", false);
    return;
  }
  if (client_write_pending_) {
    // The backend is not being read because the client does not take what it was sent:
    // the client's stall, not the node's.
    RP_LOG(LogLevel::kInfo, std::string("client ") + client_ip_ + ": not reading the response, closing: node=" +
                                routing_->backends[node_].name);
    close();
    return;
  }
  RP_LOG(LogLevel::kWarn, "upstream stalled mid-response: node=" + routing_->backends[node_].name);
  close();
}

void ClientConn::on_upstream_read(ssize_t nread) {
  if (nread < 0) {
    if (tunnel_) {
      if (nread == UV_EOF) {
        tunnel_half_close_from_upstream();
      } else {
        close();
      }
      return;
    }
    if (resp_phase_ == RespPhase::kBody && nread == UV_EOF) {
      // A body delimited by the close of the connection ends here.
      const llhttp_errno err = llhttp_finish(&resp_parser_);
      if ((err == HPE_OK || err == HPE_PAUSED) && resp_msg_done_) {
        close_after_response_ = true;
        resp_phase_ = RespPhase::kDone;
        if (!client_write_pending_ && send_to_client(nullptr, 0) < 0) {
          close();
          return;
        }
        release_upstream(false);
        if (!client_write_pending_) exchange_done();
        return;
      }
    }
    if (resp_bytes_ == 0 && resp_phase_ != RespPhase::kBody) {
      upstream_failed(502, nread == UV_EOF ? "closed before responding"
                                           : std::string("reset before responding: ") + uv_err_name(static_cast<int>(nread)),
                      true);
      return;
    }
    RP_LOG(LogLevel::kWarn, "upstream " + describe(static_cast<int>(nread)) +
                                " mid-response: node=" + routing_->backends[node_].name);
    close();
    return;
  }
  if (resp_phase_ == RespPhase::kWaiting) {
    resp_phase_ = RespPhase::kHead;
  }
  up_->arm_timer(routing_->config->proxy.idle_timeout_ms);
  process_response_bytes();
}

void ClientConn::process_response_bytes() {
  while (!closing_ && up_ && !client_write_pending_) {
    IoBuffer& ub = up_->buffer();
    char* start = ub.begin_ptr();
    if (tunnel_) {
      const size_t len = ub.size();
      if (len > 0) arm_timer(routing_->config->proxy.idle_timeout_ms);
      ub.consume(len);
      if (send_to_client(start, len) < 0) {
        close();
        return;
      }
      if (!client_write_pending_) up_->start_reading();
      return;
    }
    // Run the parser even on no new bytes right after a head: a response without a
    // body (204, 304, Content-Length: 0) completes only then.
    if (ub.size() == 0 && !resp_exec_pending_) {
      if (send_to_client(start, 0) < 0) {
        close();
        return;
      }
      up_->start_reading();
      return;
    }
    resp_exec_pending_ = false;
    decode_dst_ = start;
    const llhttp_errno err = llhttp_execute(&resp_parser_, start, ub.size());
    if (err == HPE_OK) {
      if (resp_phase_ == RespPhase::kHead) {
        // Head incomplete: keep it in place and read more.
        if (ub.free_space() == 0) {
          if (ub.capacity() >= kMaxResponseHead + 1024) {
            upstream_failed(502, "response head too large", false);
            return;
          }
          ub.grow(ub.capacity() * 2);
        }
        ub.consume(ub.size());
        up_->start_reading();
        return;
      }
      // Body bytes, all of them (decoded, for a 1.0 client of a chunked body).
      const size_t len = ub.size();
      ub.consume(len);
      if (send_to_client(start, body_out(start, len)) < 0) {
        close();
        return;
      }
      continue;
    }
    if (err == HPE_PAUSED) {
      const char* pos = llhttp_get_error_pos(&resp_parser_);
      llhttp_resume(&resp_parser_);
      if (resp_phase_ == RespPhase::kHead) {
        ub.consume_to(pos);
        on_response_head();
        if (closing_ || !up_) return;
        // No body (HEAD, 204, 304): llhttp completed the message along with the head.
        if (resp_msg_done_ && resp_phase_ == RespPhase::kBody) {
          finish_response(ub.begin_ptr(), 0, 0);
          return;
        }
        continue;
      }
      const size_t len = static_cast<size_t>(pos - start);
      finish_response(start, len, body_out(start, len));
      return;
    }
    const char* reason = llhttp_get_error_reason(&resp_parser_);
    if (resp_bytes_ == 0) {
      upstream_failed(502, std::string("malformed response: ") + (reason ? reason : llhttp_errno_name(err)), false);
    } else {
      RP_LOG(LogLevel::kWarn, std::string("upstream malformed response mid-body: node=") +
                                  routing_->backends[node_].name);
      close();
    }
    return;
  }
  if (up_ && client_write_pending_) up_->stop_reading();
}

void ClientConn::finish_response(char* start, size_t len, size_t send_len) {
  IoBuffer& ub = up_->buffer();
  ub.consume(len);
  resp_msg_done_ = true;
  resp_phase_ = RespPhase::kDone;
  // Counted before the last bytes go out: a client that has its answer and asks
  // /metrics at once finds it counted.
  resp_bytes_ += send_len;
  finish_accounting(resp_status_);
  // The last bytes are written from the upstream buffer, which stays put: the
  // connection goes back to the pool only after this write completes (on_write).
  if (send_to_client(start, send_len, /*counted=*/true) < 0) {
    close();
    return;
  }
  if (client_write_pending_) {
    up_->stop_reading();
    return;  // on_write releases the upstream and ends the exchange
  }
  release_upstream(upstream_reusable());
  exchange_done();
}

bool ClientConn::upstream_reusable() {
  return up_ && up_->buffer().size() == 0 && !up_->write_pending() &&
         llhttp_should_keep_alive(&resp_parser_) && req_phase_ == ReqPhase::kDone && !tunnel_;
}

int ClientConn::send_to_client(char* body, size_t len, bool counted) {
  uv_buf_t bufs[2];
  unsigned n = 0;
  if (head_pending_) {
    head_pending_ = false;
    bufs[n++] = uv_buf_init(resp_head_.data(), static_cast<unsigned>(resp_head_.size()));
  }
  if (len > 0) bufs[n++] = uv_buf_init(body, static_cast<unsigned>(len));
  if (n == 0) return 0;
  if (!counted) resp_bytes_ += len;
  return write_client(bufs, n);
}

void ClientConn::on_response_head() {
  IoBuffer& ub = up_->buffer();
  const auto uview = [&](Span s) { return std::string_view(ub.data() + s.off, s.len); };
  resp_status_ = resp_parser_.status_code;
  if (resp_status_ < 100) {
    // RFC 9110 15: codes are three digits, 100 to 599; llhttp also takes "2" or "099".
    // Above 599 is relayed as it is (clients treat an unknown code as its class's x00).
    upstream_failed(502, "malformed response: status code below 100", false);
    return;
  }
  const bool interim = resp_status_ < 200 && resp_status_ != 101;  // 100 and up, from here
  if (resp_status_ == 101 && !upgrade_) {
    // Switching protocols that the client never asked for: nothing can be relayed.
    upstream_failed(502, "101 Switching Protocols to a request without Upgrade", false);
    return;
  }
  if (resp_status_ == 101) {
    // RFC 9110 15.2.2: a 101 names the protocol in Upgrade. Without one the client does
    // not switch and would read the tunnelled bytes as responses (fuzz_response found it).
    bool named = false;
    for (const HeaderSpan& h : resp_headers_) {
      if (iequals(uview(h.name), "upgrade") &&
          uview(h.value).find_first_not_of(" \t") != std::string_view::npos) {
        named = true;
      }
    }
    if (!named) {
      upstream_failed(502, "101 Switching Protocols without an Upgrade protocol", false);
      return;
    }
  }
  // A response we relay (the refusals above count once, in upstream_failed).
  resp_from_backend_ = true;
  if (!interim) {
    routing_->backends[node_].state->per_worker[worker_.id()].header_time.observe_us(uv_hrtime() / 1000 -
                                                                                      up_sent_us_);
  }
  if (interim && client_http10_) {
    // RFC 9110 15.2: no 1xx to an HTTP/1.0 client. Wait for the final response.
    resp_headers_.clear();
    status_text_ = {};
    resp_head_bytes_ = 0;
    resp_msg_done_ = false;
    return;
  }
  if (!interim && upgrade_ && resp_status_ != 101) {
    // The upgrade was declined: the request parser is left in its upgrade state, and
    // what the client sends next may be the new protocol. End the connection after.
    close_after_response_ = true;
  }
  resp_views_.clear();
  for (const HeaderSpan& hs : resp_headers_) resp_views_.push_back({uview(hs.name), uview(hs.value)});
  const bool tunnel = resp_status_ == 101 && upgrade_;
  const bool bodiless = req_.is_head() || resp_status_ == 204 || resp_status_ == 304 || interim;
  const bool chunked = (resp_parser_.flags & F_CHUNKED) != 0;
  const bool framed = (resp_parser_.flags & (F_CHUNKED | F_CONTENT_LENGTH)) != 0 || bodiless;
  if (!framed && !tunnel) close_after_response_ = true;  // the body ends at the close
  // RFC 9112 6.1: no chunked body to an HTTP/1.0 client, which would read the chunk
  // lines as content. It gets the body decoded, ended by the close.
  decode_chunked_ = client_http10_ && chunked && !bodiless;
  if (decode_chunked_) {
    close_after_response_ = true;
    resp_parser_.settings = const_cast<llhttp_settings_t*>(&response_decode_settings());
  }

  ResponseRewrite rw;
  rw.status = resp_status_;
  rw.reason = uview(status_text_);
  rw.fields = resp_views_;
  rw.client_http10 = client_http10_;
  rw.interim = interim;
  rw.tunnel = tunnel;
  rw.close_after = close_after_response_;
  build_response_head(rw, resp_head_);
  const std::string& h = resp_head_;
  resp_bytes_ += h.size();
  resp_headers_.clear();
  status_text_ = {};
  resp_head_bytes_ = 0;
  // The head goes out with the first body bytes, in one write.
  head_pending_ = true;
  resp_exec_pending_ = true;
  if (interim) {
    // Another head follows (a 100 Continue precedes the final response): send this one
    // now, so the client sends its body.
    resp_msg_done_ = false;
    resp_exec_pending_ = false;
    if (send_to_client(nullptr, 0) < 0) close();
    return;
  }
  resp_phase_ = RespPhase::kBody;
  if (tunnel) {
    if (send_to_client(nullptr, 0) < 0) {
      close();
      return;
    }
    start_tunnel();
  }
}

void ClientConn::start_tunnel() {
  tunnel_ = true;
  resp_phase_ = RespPhase::kBody;
  up_->disarm_timer();
  arm_timer(routing_->config->proxy.idle_timeout_ms);
  // Bytes the client sent after its upgrade request go up now.
  forward_request_body();
  resume_client_reading();
}

// A tunnel carries each direction's end on: the side that finished sending has its
// EOF passed to the other side (a shutdown after the writes queued), and the tunnel
// closes once both directions are done.
void ClientConn::tunnel_half_close_from_client() {
  if (!up_ || upstream_eof_) {
    close();
    return;
  }
  // forward_request_body() has written all the client sent, or queued it; uv_shutdown
  // runs after queued writes.
  if (up_->shutdown_write() < 0) close();
}

void ClientConn::tunnel_half_close_from_upstream() {
  upstream_eof_ = true;
  if (client_eof_) {
    close();
    return;
  }
  if (tcp_.shutdown_write() != 0) close();
}

void ClientConn::release_upstream(bool reusable) {
  if (have_node_) {
    routing_->backends[node_].state->in_flight.fetch_sub(1, std::memory_order_relaxed);
    have_node_ = false;
  }
  if (!up_) return;
  UpstreamConn* conn = up_;
  up_ = nullptr;
  upstream_ready_ = false;
  conn->disarm_timer();
  if (reusable && !closing_) {
    conn->pool().release(conn, routing_->config->proxy.idle_timeout_ms);
  } else {
    conn->close();
  }
}

void ClientConn::exchange_done() {
  if (closing_) return;
  if (req_phase_ != ReqPhase::kDone) {
    // The backend answered before the whole request arrived (an early 413, say): the
    // rest of the body cannot be told from a next request, so the connection ends.
    close_after_response_ = true;
  }
  finish_accounting(resp_status_);
  release_upstream(false);  // if still held (an early close); a no-op otherwise
  if (close_after_response_ || (client_eof_ && in_.size() == 0)) {
    if (Log::enabled(LogLevel::kDebug)) {
      Log::write(LogLevel::kDebug, std::string("closing client ") + client_ip_ + " after the response: " +
                                       (req_phase_ != ReqPhase::kDone ? "request incomplete"
                                        : client_eof_                 ? "client half-closed"
                                                                      : "no keep-alive"));
    }
    if (!client_write_pending_) close();
    return;
  }
  // Ready for the next request on this connection.
  req_phase_ = ReqPhase::kIdle;
  resp_phase_ = RespPhase::kNone;
  req_.next_message();
  resp_bytes_ = 0;
  attempts_ = 0;
  routing_.reset();
  arm_timer(worker_.routing().config->proxy.idle_timeout_ms);
  resume_client_reading();
  process_request_bytes();
}

// ---------------------------------------------------------------------------------------
// Writing to the client

int ClientConn::write_client(uv_buf_t* bufs, unsigned count) {
  const int rc = tcp_.write(bufs, count);
  if (rc == 1) {
    client_write_pending_ = true;
    if (up_) up_->stop_reading();
    // A client that does not read is dropped after idle_timeout_ms.
    arm_timer(worker_.routing().config->proxy.idle_timeout_ms);
  }
  return rc;
}

void ClientConn::on_write_done(int status) {
  ClientConn* c = this;
  c->client_write_pending_ = false;
  if (status < 0 || c->closing_) {
    c->close();
    return;
  }
  if (!c->tunnel_ && c->req_phase_ == ReqPhase::kDone) c->timer_.disarm();
  if (!c->error_out_.empty()) {
    c->error_response_written();
    return;
  }
  if (c->resp_phase_ == RespPhase::kDone) {
    if (c->up_) c->release_upstream(c->upstream_reusable());
    c->exchange_done();
    return;
  }
  if (c->up_) {
    c->process_response_bytes();
    if (c->up_ && !c->client_write_pending_) c->up_->start_reading();
  }
  c->resume_client_reading();
}

void ClientConn::respond_error(int status, std::string_view body, std::string_view log_cause) {
  if (closing_) return;
  if (resp_bytes_ > 0) {
    close();
    return;
  }
  release_upstream(false);
  const bool routed = routing_ && attempts_ > 0;
  if (!log_cause.empty()) RP_LOG(status >= 500 ? LogLevel::kWarn : LogLevel::kInfo,
         "answered " + std::to_string(status) + ": " + std::string(log_cause) + " client=" + client_ip_ +
             (routed ? " node=" + routing_->backends[node_].name + " address=" +
                           routing_->backends[node_].address.to_string()
                     : std::string(" node=-")));
  resp_status_ = status;
  finish_accounting(status);
  // After a 5xx of ours the connection can go on, as after any response, if the
  // request has been read to its end (a bodiless one, or a body already buffered). A
  // 4xx answers input that cannot be trusted to frame a next request: close.
  // A 501 (unknown transfer coding) or 505 (unknown version) refuses the framing itself.
  const bool keep_alive = status >= 500 && status != 501 && status != 505 && !close_after_response_ &&
                          !client_eof_ && !drain_requested_ && discard_rest_of_request();
  // To a HEAD, our answer is bodiless too (RFC 9110 9.3.2), or the client would read
  // the body as the next response.
  error_out_ = canned_response(status, body, !keep_alive, req_.is_head());
  respond_self(keep_alive);
}

void ClientConn::respond_self(bool keep_alive) {
  error_keep_alive_ = keep_alive;
  resp_bytes_ = error_out_.size();
  tcp_.stop_reading();
  timer_.disarm();
  uv_buf_t buf = uv_buf_init(error_out_.data(), static_cast<unsigned>(error_out_.size()));
  const int rc = write_client(&buf, 1);
  if (rc == 0) {
    error_response_written();
  } else if (rc < 0) {
    close();
  }
}

void ClientConn::linger_close() {
  if (closing_) return;
  release_upstream(false);
  if (client_eof_ || drain_requested_) {
    close();  // nothing more will come, or no time to wait for it
    return;
  }
  lingering_ = true;
  linger_deadline_ = uv_now(worker_.loop()) + kLingerMs;
  linger_bytes_ = 0;
  in_.clear();
  // FIN after the answer (the shutdown runs after the queued writes).
  if (tcp_.shutdown_write() != 0 || tcp_.start_reading() != 0) {
    close();
    return;
  }
  arm_timer(kLingerIdleMs);
}

void ClientConn::error_response_written() {
  if (!error_keep_alive_) {
    linger_close();
    return;
  }
  error_out_.clear();
  error_keep_alive_ = false;
  resp_phase_ = RespPhase::kDone;
  exchange_done();
}

bool ClientConn::discard_rest_of_request() {
  if (req_phase_ == ReqPhase::kDone) return true;
  if (req_phase_ != ReqPhase::kBody || upgrade_) return false;
  if (!req_.discard_buffered(in_)) return false;  // more body to come, or bad framing: the connection ends
  req_phase_ = ReqPhase::kDone;
  return true;
}

void ClientConn::note_node_failure(const Backend& b) {
  ringproxy::note_node_failure(worker_, b, routing_->config->health.eject_after_failures);
}

void ClientConn::finish_accounting(int status) {
  RequestLog::Outcome o;
  o.status = status;
  o.bytes = resp_bytes_;
  o.node = routing_ && attempts_ > 0 ? &routing_->backends[node_] : nullptr;
  o.from_backend = resp_from_backend_;
  o.eject_after = routing_ ? routing_->config->health.eject_after_failures : 0;
  log_.finish(worker_, o, uv_hrtime() / 1000);
}

}  // namespace ringproxy
