#include "proxy/exchange.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "http/header_rules.h"
#include "http/status.h"
#include "net/local_error.h"
#include "proxy/hash_key.h"
#include "proxy/log.h"
#include "proxy/rewrite.h"
#include "proxy/router.h"
#include "proxy/worker.h"

namespace ringproxy {
// Literal pieces of the heads we build are appended with their length known, not strlen.
using namespace std::string_view_literals;
namespace {

// Bodies up to this size are copied behind the response head and sent with it as one
// buffer (send_to_client).
constexpr size_t kCoalesceBody = 2048;

std::string describe(int uv_status) { return uv_status < 0 ? uv_err_name(uv_status) : "eof"; }

}  // namespace

Exchange::Exchange(Worker& worker, h1::Downstream& down)
    : worker_(worker), down_(down), resp_(kMaxResponseHead) {
  // The heads are rebuilt per request in these: one allocation each per connection.
  up_head_.reserve(512);
  resp_head_.reserve(512);
  ups_.set_handler(this);
}

void Exchange::reset() {
  phase_ = Phase::kNone;
  req_ = nullptr;
  resp_bytes_ = 0;
  attempts_ = 0;
  failed_cause_.clear();
  tunnel_ = upstream_eof_ = false;
  close_after_ = false;
  pool_ = nullptr;
  routing_.reset();
}

std::string Exchange::node_label() const {
  if (!pool_ || attempts_ == 0) return "node=-";
  const Backend& b = pool_->backends[node_];
  return "node=" + pool_->qualified(b.name) + " address=" + b.address.to_string();
}

void Exchange::begin() { log_.start(worker_.now_us()); }

void Exchange::on_answered(int status, std::string_view cause) {
  if (!cause.empty()) {
    RP_LOG(status >= 500 ? LogLevel::kWarn : LogLevel::kInfo,
           "answered " + std::to_string(status) + ": " + std::string(cause) + " client=" + std::string(down_.client_ip()) +
               " " + node_label());
  }
  account(status);
}

void Exchange::on_client_note(std::string_view what) {
  RP_LOG(LogLevel::kInfo, "client " + std::string(down_.client_ip()) + ": " + std::string(what));
}

void Exchange::account(int status) {
  RequestLog::Outcome o;
  o.status = status;
  o.bytes = resp_bytes_;
  o.node = pool_ && attempts_ > 0 ? &pool_->backends[node_] : nullptr;
  if (o.node && !pool_->is_default()) o.pool = pool_->name();
  o.from_backend = resp_from_backend_;
  o.eject_after = pool_ ? pool_->config.health.eject_after_failures : 0;
  o.protocol = down_h2_ ? kProtoH2 : kProtoHttp1;
  log_.finish(worker_, o, worker_.now_us());
}

void Exchange::note_node_failure(const Backend& b) {
  ringproxy::note_node_failure(worker_, b, pool_->config.health.eject_after_failures);
}

// ---------------------------------------------------------------------------------------
// Routing the request

void Exchange::on_request(RequestHead& req, std::string_view client_ip) {
  // The head passed the codec's checks (h1::RequestParser::read_head).
  req_ = &req;
  client_ip_ = client_ip;
  routing_ = worker_.routing_ptr();
  const Config& cfg = *routing_->config;
  const std::string_view target = req.target;
  const std::string_view method = req.method;
  client_http10_ = req.http10;
  down_h2_ = down_.protocol() == RequestHead::Protocol::kHttp2;
  idempotent_ = is_idempotent_method(method);
  // No `Upgrade: h2c` goes on (RFC 9113 3.1 deprecates it): a node that took it would
  // speak HTTP/2 with the client through the tunnel, past the proxy's routing, every
  // request after the first going where the client likes ("h2c smuggling", Bishop Fox,
  // 2020). The request goes as a plain one, and the connection closes after its answer,
  // as after any upgrade the node declines.
  upgrade_asked_ = req.upgrade;
  upgrade_ = req.upgrade && std::none_of(req.fields->begin(), req.fields->end(), [](const HeaderView& f) {
               return iequals(f.name, "upgrade") && has_token(f.value, "h2c");  // on any of its lines
             });
  is_head_ = req.is_head;
  req_done_ = false;
  // An upgrade not passed on can never happen here: the parser stays in its upgrade
  // state, and the connection ends after whatever answer this request gets.
  close_after_ = upgrade_asked_ && !upgrade_;
  tunnel_ = upstream_eof_ = false;
  resp_bytes_ = 0;
  resp_status_ = 0;

  // The target (RFC 9112 3.2): origin form; absolute form, which goes on in origin form
  // with Host taken from its authority (3.2.2), keyed by its path and query as the same
  // request in origin form is; or asterisk form, for OPTIONS only.
  std::string_view origin = target;
  std::string_view authority;  // an absolute target's: the Host routes see
  if (AbsoluteTarget abs; split_absolute_target(target, &abs)) {
    authority = abs.authority;
    // The authority is the Host from here on: for the key (hash_key = "header:host"
    // routes it as the origin form with that Host would go) and for the backend.
    bool replaced = false;
    for (HeaderView& hv : *req.fields) {
      if (iequals(hv.name, "host")) {
        hv.value = abs.authority;
        replaced = true;
      }
    }
    if (!replaced) req.fields->push_back({"Host", abs.authority});
    if (abs.origin.empty() && req.method == "OPTIONS"sv) {
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
  log_.take_head(client_ip_, method, target,
                 down_h2_ ? "HTTP/2.0"sv : (client_http10_ ? "HTTP/1.0"sv : "HTTP/1.1"sv), *req.fields, down_.tls());
  if (!apply_max_forwards(req)) return;

  // The pool: the first [[route]] matching the Host and the target, else the
  // listener's (SPEC "Several tiers").
  const Routing& routing = *routing_;
  const ListenerRouting* listener =
      listener_id_ == 0 ? &routing.listeners[0] : routing.listener(listener_id_);
  uint32_t pool = 0;
  std::string_view subject_header = listener_subject_header_;
  bool pool_known = true;
  if (listener) {
    pool = listener->pool;
    subject_header = listener->tls_config.client_subject_header;
  } else if (const Pool* p = routing.find_pool(listener_pool_)) {
    pool = p->index;  // a removed listener's connection: its pool, by name
  } else {
    pool_known = false;  // ... which a reload removed too: only a route can place it
  }
  if (!routing.routes.empty()) {
    const uint32_t none = static_cast<uint32_t>(routing.pools.size());
    // The Host only when a route names one (the head check kept its line's index).
    std::string_view host = authority;
    if (routing.routes_by_host && host.empty() && req.host_index < req.fields->size()) {
      host = (*req.fields)[req.host_index].value;
    }
    const uint32_t matched = match_route(routing, host, origin, none);
    if (matched != none) {
      pool = matched;
      pool_known = true;
    }
  }
  pool_ = &routing.pools[pool];
  if (!pool_known || !pool_->declared) {
    pool_ = nullptr;
    down_.respond_error(404, "no route for this request", "no route matched and no default pool");
    return;
  }
  // gRPC's deadline, when shorter, is the wait for the node's answer (SPEC "HTTP/2 and
  // gRPC"): the client gives up then anyway.
  upstream_timeout_ms_ = cfg.proxy.upstream_timeout_ms;
  if (down_h2_) {
    bool present = false;
    const std::string_view deadline = find_header(*req.fields, "grpc-timeout", &present);
    if (uint64_t ms = 0; present && parse_grpc_timeout(deadline, &ms) && ms < upstream_timeout_ms_) {
      upstream_timeout_ms_ = static_cast<uint32_t>(std::max<uint64_t>(ms, 1));
    }
  }
  const std::string_view subject = down_.client_subject();
  const std::string_view key = select_hash_key(pool_->config.hash_key, origin, *req.fields, client_ip_, subject);
  key_hash_ = pool_->ring->key_hash(key);
  RequestRewrite rw;
  rw.method = method;
  rw.target = origin;
  rw.fields = *req.fields;
  rw.client_ip = client_ip_;
  rw.via = cfg.proxy.via;
  rw.client_http10 = client_http10_;
  rw.client_h2 = down_h2_;
  rw.https = down_.tls() != nullptr;
  rw.subject_header = subject_header;
  rw.subject_headers = routing.subject_headers;
  rw.client_subject = subject;
  rw.upgrade = upgrade_;
  rw.max_forwards_set = max_forwards_set_;
  rw.max_forwards = max_forwards_;
  // TE: trailers goes on to an HTTP/2 node only (gRPC's servers want it); the rewrite,
  // which reads every field anyway, says whether the client sent it.
  te_trailers_ = false;
  rw.te_trailers = &te_trailers_;
  host_missing_ = !build_request_head(rw, up_head_, pool_->any_h2 ? &up_spans_ : nullptr);
  grpc_ = down_h2_ && is_grpc_content_type(find_header(*req.fields, "content-type"));
  // An HTTP/2 body comes decoded: sized by the client's content-length, or sent
  // chunked (RFC 9112 7.1) to the node.
  chunk_up_ = req.body_decoded && req.has_body && !req.content_length;
  decoding_ = false;
  if (chunk_up_) up_head_.insert(up_head_.size() - 2, "Transfer-Encoding: chunked\r\n"sv);
  attempts_ = 0;
  reconnected_ = fresh_connection_ = false;
  unprocessed_again_ = 0;
  req_body_forwarded_ = 0;
  resend_body_ = false;
  resp_from_backend_ = false;
  pick_node_and_connect();
}

void Exchange::set_listener(const ListenerRouting& l) {
  listener_id_ = l.id;
  // Short names (pools' are at most 64 bytes, most within the string's own buffer).
  listener_pool_ = l.pool_name;
  listener_subject_header_ = l.tls_config.client_subject_header;
}

bool Exchange::may_retry() const {
  const uint32_t retries = routing_->config->proxy.retries;
  static_assert(sizeof tried_ / sizeof tried_[0] == kMaxRetries + 1);
  return idempotent_ && req_body_forwarded_ == 0 && attempts_ <= retries;
}

bool Exchange::apply_max_forwards(RequestHead& req) {
  const std::string_view method = req.method;
  const std::string_view target = req.target;
  max_forwards_set_ = false;
  const bool trace = method == "TRACE"sv;
  if (!trace && method != "OPTIONS"sv) return true;  // RFC 9110 7.6.2: others ignore it
  bool present = false;
  const std::string_view value = find_header(*req.fields, "max-forwards", &present);
  if (!present) return true;
  uint32_t n = 0;
  if (!parse_max_forwards(value, &n)) {
    down_.respond_error(400, "malformed request", "malformed request: invalid Max-Forwards");
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
                              " client=" + std::string(client_ip_) + " node=-");
  resp_status_ = 200;
  const bool keep_alive = !down_.close_requested() && down_.finish_request_early();
  if (trace) {
    // The request line as received: method, target and version.
    std::string line(method);
    line += ' ';
    line += target;
    line += client_http10_ ? " HTTP/1.0"sv : " HTTP/1.1"sv;
    own_answer_ = trace_response(line, *req.fields, !keep_alive);
  } else {
    own_answer_ = "HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n"
                 "Content-Length: 0\r\n";
    if (!keep_alive) own_answer_ += "Connection: close\r\n";
    own_answer_ += "\r\n";
  }
  account(200);
  down_.respond_own(own_answer_, keep_alive);
  return false;
}

void Exchange::pick_node_and_connect() {
  const Pool& p = *pool_;
  const std::optional<NodeIndex> node =
      pick_node(p, key_hash_, std::span<const NodeIndex>(tried_, attempts_), uv_now(worker_.loop()));
  if (!node) {
    if (attempts_ == 0) {
      down_.respond_error(503, "no backend available", "no usable node");
    } else {
      down_.respond_error(502, "backend failed", failed_cause_ + "; no further node to retry on");
    }
    return;
  }
  if (!failed_cause_.empty()) {
    RP_LOG(LogLevel::kWarn, "upstream " + failed_cause_ + ", retrying on node=" + p.qualified(p.backends[*node].name));
    failed_cause_.clear();
  }
  node_ = *node;
  tried_[attempts_++] = node_;
  same_node_again_ = false;
  addresses_tried_ = 0;
  if (Log::enabled(LogLevel::kDebug)) {
    // On a retry the head's bytes may have moved: the URL is logged on the first attempt.
    Log::write(LogLevel::kDebug, "routing " + (attempts_ == 1 ? std::string(req_->target) : std::string("(retry)")) +
                                     " to node=" + p.qualified(p.backends[node_].name) + " attempt=" + std::to_string(attempts_));
  }
  connect_node();
}

void Exchange::connect_node() {
  const Routing& r = *routing_;
  const Backend& b = pool_->backends[node_];
  have_node_ = true;
  b.state->in_flight.fetch_add(1, std::memory_order_relaxed);

  UpstreamPool& pool = worker_.pool(r, *pool_, node_);
  phase_ = Phase::kConnecting;
  up_h2_ = pool.h2();
  // The attempt after a pooled connection failed takes a new one (upstream_failed).
  if (!std::exchange(fresh_connection_, false)) {
    if (up_h2_) {
      // An HTTP/2 node: a stream on the first of its connections with room, or waiting
      // on one when the node has its [http2] upstream_connections (place_h2_stream).
      const UpstreamPool::H2Placement at = pool.h2_place(r.config->http2.upstream_connections);
      if (at.node_full && node_full_elsewhere()) return;
      if (at.conn) {
        open_stream(at.conn);
        return;
      }
    } else if (UpstreamConn* idle = pool.take_idle(this)) {
      attach_upstream(idle);
      return;
    }
  }
  if (b.sockaddrs.empty()) {
    // A named node whose name has no address: the control thread marks it down before
    // it publishes such a routing, so only a request routed in between gets here. Not
    // the node's failure (passive health must not eject a node as it resolves), and
    // nothing was sent: the next node, within the attempts a request has.
    release_upstream(false);
    failed_cause_ = "no address (" + b.address.host + " did not resolve) at node " + pool_->qualified(b.name);
    if (attempts_ <= r.config->proxy.retries) {
      pick_node_and_connect();
    } else {
      down_.respond_error(502, "backend failed", failed_cause_ + "; no further node to retry on");
    }
    return;
  }
  const sockaddr_storage* sa = &b.sockaddrs[0];
  if (b.sockaddrs.size() > 1) {
    // Several addresses: each new connection takes the next, per worker; after a
    // failed connect, the address after the one that failed (on_upstream_connect).
    if (addresses_tried_ == 0) address_ = b.state->per_worker[worker_.id()].address_turn++;
    sa = &b.sockaddrs[(address_ + addresses_tried_) % b.sockaddrs.size()];
  }
  if (up_h2_) {
    int error = 0;
    H2Upstream* c = H2Upstream::create(worker_, pool, reinterpret_cast<const sockaddr*>(sa),
                                       r.config->proxy.connect_timeout_ms, &error);
    if (!c) {
      on_upstream_connect(error);
      return;
    }
    open_stream(c);
    return;
  }
  UpstreamConn* conn = pool.make();
  up_ = conn;
  const int rc = conn->connect(reinterpret_cast<const sockaddr*>(sa), this, r.config->proxy.connect_timeout_ms);
  if (rc < 0) on_upstream_connect(rc);
}

bool Exchange::node_full_elsewhere() {
  // RFC 9113 6.5.2: SETTINGS_MAX_CONCURRENT_STREAMS 0, a node shedding load or about to
  // go. Nothing was sent: the next node, whatever the method (as for a node without an
  // address), within the attempts a request has, and not the node's failure (passive
  // health must not eject a node for saying it is busy; its health checks see it).
  // Without a next node, the stream waits on the node's connection, its deadline
  // running, and goes when the node allows streams again: a client-visible failure
  // only if that does not come in time.
  // A stream moved off a connection whose limit dropped (h2::ClientStream::moved) comes
  // here too. One that holds body bytes already given (a pinned chunk, resend_body_)
  // stays: another node would need the body from its start, which is gone.
  const Backend& b = pool_->backends[node_];
  if (req_body_forwarded_ > 0 || attempts_ > routing_->config->proxy.retries ||
      !pick_node(*pool_, key_hash_, std::span<const NodeIndex>(tried_, attempts_), uv_now(worker_.loop()))) {
    return false;
  }
  RP_LOG(LogLevel::kDebug, "node=" + pool_->qualified(b.name) +
                               " allows no HTTP/2 stream now (SETTINGS_MAX_CONCURRENT_STREAMS 0), to the next node");
  release_upstream(false);
  pick_node_and_connect();
  return true;
}

void Exchange::attach_upstream(UpstreamConn* conn) {
  up_ = conn;
  upstream_ready_ = true;
  resp_.start(is_head_);
  head_pending_ = after_head_ = false;
  phase_ = Phase::kWaiting;
  conn->buffer().clear();
  if (conn->start_reading() < 0) {
    upstream_failed(502, "cannot read from the backend", true);
    return;
  }
  send_upstream_head();
}

void Exchange::send_upstream_head() {
  uv_buf_t bufs[4];
  unsigned n = 1;
  bufs[0] = uv_buf_init(up_head_.data(), static_cast<unsigned>(up_head_.size()));
  if (host_missing_) {
    // An HTTP/1.0 request without Host goes on in HTTP/1.1, which needs one (RFC 9112
    // 3.2): the node's address, as nginx's proxy_set_header Host $proxy_host does.
    // Per attempt: a retry goes to another node.
    host_line_.assign("Host: "sv);
    host_line_ += pool_->backends[node_].address.to_string();
    host_line_ += "\r\n"sv;
    bufs[0].len -= 2;  // before the head's last CRLF
    bufs[1] = uv_buf_init(host_line_.data(), static_cast<unsigned>(host_line_.size()));
    bufs[2] = uv_buf_init(up_head_.data() + up_head_.size() - 2, 2);
    n = 3;
  }
  if (chunk_up_ && req_done_ && req_body_forwarded_ == 0) {
    // An empty chunked body already ended (a retry, or a new connection after a stale
    // one): its last-chunk goes with the head, as the client will not send it again.
    static constexpr std::string_view kLastChunk = "0\r\n\r\n";
    bufs[n++] = uv_buf_init(const_cast<char*>(kLastChunk.data()), static_cast<unsigned>(kLastChunk.size()));
  }
  up_sent_us_ = worker_.now_us();
  const int rc = up_->write(bufs, n);
  if (rc < 0) {
    upstream_failed(502, std::string("write failed: ") + uv_err_name(rc), true);
    return;
  }
  const ProxyConfig& p = routing_->config->proxy;
  arm_up_timer(req_done_ ? upstream_timeout_ms_ : p.idle_timeout_ms);
  down_.resume_body();
}

void Exchange::on_upstream_connect(int status) {
  if (status >= 0) {
    attach_upstream(up_);
    return;
  }
  connect_failed(status, up_ ? up_->connect_failure(status) : UpstreamConn::connect_failure(status, {}));
}

void Exchange::connect_failed(int status, std::string cause) {
  if (is_local_resource_error(status)) {
    // Out of descriptors or memory here, from uv_tcp_connect or its callback: not the
    // node's failure, and the next node would fail alike. No retry, no passive-health
    // count; a 503 (ours, not the node's) closing the connection to give a descriptor
    // back, and the worker's rate-limited line instead of one per request.
    worker_.local_resource_error(status, pool_->qualified(pool_->backends[node_].name));
    release_upstream(false);
    // This attempt never was (a reconnect to the same node was counted before).
    if (!same_node_again_ && --attempts_ > 0) node_ = tried_[attempts_ - 1];
    close_after_ = true;
    down_.respond_error(503, "proxy out of local resources (file descriptors or memory)", {});
    return;
  }
  const bool timeout = status == UV_ETIMEDOUT;
  if (!timeout && status != UV_EPROTO) {
    // A named node with several addresses: the next one, before the node is charged
    // with a failure (nginx tries each address a name resolves to likewise). A
    // timeout is not tried elsewhere: the request has waited connect_timeout_ms.
    const Backend& b = pool_->backends[node_];
    if (addresses_tried_ + 1 < b.sockaddrs.size()) {
      RP_LOG(LogLevel::kDebug, "upstream " + cause + " at node " + pool_->qualified(b.name) + " address " +
                                   std::to_string((address_ + addresses_tried_) % b.sockaddrs.size() + 1) + " of " +
                                   std::to_string(b.sockaddrs.size()) + ", trying the next");
      ++addresses_tried_;
      release_upstream(false);
      same_node_again_ = true;  // no attempt of its own
      fresh_connection_ = true;
      connect_node();
      return;
    }
  }
  upstream_failed(timeout ? 504 : 502, cause, true);
}

void Exchange::upstream_failed(int status_code, std::string_view cause, bool retryable_failure, bool node_failed) {
  const Backend& b = pool_->backends[node_];
  const bool was_reused = up_ && up_->reused();
  release_upstream(false);
  if (retryable_failure && resp_bytes_ == 0 && phase_ != Phase::kBody) {
    // A pooled connection the backend closed as we sent: same node, new connection.
    // Not the node's failure: keep-alive connections close, it is how HTTP is. (A
    // timeout is the node's failure, pooled connection or not.)
    // Once per request, and on a new connection: another pooled one may be just as
    // stale (the backend restarted and closed them all).
    if (was_reused && !reconnected_ && idempotent_ && req_body_forwarded_ == 0 && status_code != 504) {
      RP_LOG(LogLevel::kDebug, std::string("upstream ") + std::string(cause) +
                                   " on a pooled connection, reconnecting: node=" + pool_->qualified(b.name));
      bump(worker_.stats().reconnects);
      // The same node, whatever a new pick would say now (its load or ramp moved).
      reconnected_ = fresh_connection_ = same_node_again_ = true;
      connect_node();
      return;
    }
    if (node_failed) note_node_failure(b);
    if (may_retry()) {
      bump(worker_.stats().retries);
      failed_cause_.assign(cause);
      failed_cause_ += " at node ";
      failed_cause_ += pool_->qualified(b.name);
      failed_cause_ += " address=";
      failed_cause_ += b.address.to_string();
      pick_node_and_connect();
      return;
    }
  }
  if (node_failed && !(retryable_failure && resp_bytes_ == 0 && phase_ != Phase::kBody)) note_node_failure(b);
  down_.respond_error(status_code, status_code == 504 ? "backend timed out" : "backend failed",
                std::string(cause) + " at node " + pool_->qualified(b.name));
}

// ---------------------------------------------------------------------------------------
// Request body

Exchange::BodyResult Exchange::on_body(char* p, size_t len, bool end) {
  BodyResult result = BodyResult::kTaken;
  if (up_h2_) {
    // To an HTTP/2 node: DATA on the stream, the bytes pinned until framed.
    if (wants_decoded_body() && !decoding_) {
      // The codec consumes the chunk lines from here on: a retry on an HTTP/1 node sends
      // the decoded body chunked again (its head already says chunked), never the rest
      // of the client's framing without the lines consumed here (a smuggling hole the
      // review found: a chunk's content taken as framing).
      decoding_ = true;
      chunk_up_ = true;
    }
    req_body_forwarded_ += len;
    const int rc = ups_.send_body(p, len, end);
    if (rc < 0) {
      on_stream_failed();
      return BodyResult::kFailed;
    }
    if (rc == Transport::kQueued) {
      body_wait_ = true;
      result = BodyResult::kPinned;
      unsent_ = p;
      unsent_len_ = len;
      unsent_end_ = end;
    }
    if (end) {
      req_done_ = true;
      if (phase_ == Phase::kWaiting) arm_up_timer(upstream_timeout_ms_);
    } else if (phase_ == Phase::kWaiting) {
      arm_up_timer(routing_->config->proxy.idle_timeout_ms);
    }
    return result;
  }
  if (chunk_up_ && (len > 0 || end)) {
    // A decoded body to an HTTP/1 node: each piece a chunk, the last-chunk at the end.
    uv_buf_t bufs[3];
    unsigned n = 0;
    static constexpr std::string_view kCrlf = "\r\n", kLast = "\r\n0\r\n\r\n";
    if (len > 0) {
      static constexpr char kHex[] = "0123456789abcdef";
      char* e = chunk_line_ + sizeof chunk_line_;
      *--e = '\n';
      *--e = '\r';
      for (size_t v = len; v > 0; v >>= 4) *--e = kHex[v & 15];
      bufs[n++] = uv_buf_init(e, static_cast<unsigned>(chunk_line_ + sizeof chunk_line_ - e));
      bufs[n++] = uv_buf_init(p, static_cast<unsigned>(len));
    }
    if (end) {
      const std::string_view tail = len > 0 ? kLast : kLast.substr(2);
      bufs[n++] = uv_buf_init(const_cast<char*>(tail.data()), static_cast<unsigned>(tail.size()));
    } else {
      bufs[n++] = uv_buf_init(const_cast<char*>(kCrlf.data()), 2);
    }
    req_body_forwarded_ += len;
    const int rc = up_->write(bufs, n);
    if (rc < 0) {
      on_upstream_write(rc);
      return BodyResult::kFailed;
    }
    if (rc == Transport::kQueued) result = BodyResult::kPinned;
    if (!tunnel_ && phase_ == Phase::kWaiting && !end) up_->arm_timer(routing_->config->proxy.idle_timeout_ms);
  } else if (len > 0) {
    req_body_forwarded_ += len;
    uv_buf_t buf = uv_buf_init(p, static_cast<unsigned>(len));
    const int rc = up_->write(&buf, 1);
    if (rc < 0) {
      on_upstream_write(rc);
      return BodyResult::kFailed;
    }
    if (rc == Transport::kQueued) result = BodyResult::kPinned;
    // The backend took bytes: it is alive. (Its timer measures its silence.)
    if (!tunnel_ && phase_ == Phase::kWaiting && !end) up_->arm_timer(routing_->config->proxy.idle_timeout_ms);
  }
  if (end) {
    req_done_ = true;
    // Bytes after an upgrade request wait for the 101; otherwise the node's turn.
    if (!upgrade_ && phase_ == Phase::kWaiting) up_->arm_timer(upstream_timeout_ms_);
  }
  return result;
}

void Exchange::on_upstream_write(int status) {
  if (status < 0) {
    if (resp_bytes_ == 0) {
      // Retried only when nothing of the body went out (upstream_failed decides).
      upstream_failed(502, std::string("write failed: ") + uv_err_name(status), true);
    } else {
      down_.abort();
    }
    return;
  }
  down_.resume_body();
}

// A tunnel carries each direction's end on: the side that finished sending has its
// EOF passed to the other side (a shutdown after the writes queued), and the tunnel
// closes once both directions are done.
void Exchange::on_client_eof() {
  if (!up_ || upstream_eof_) {
    down_.abort();
    return;
  }
  // The codec has written all the client sent, or queued it; the shutdown runs after
  // queued writes.
  if (up_->shutdown_write() < 0) down_.abort();
}

// ---------------------------------------------------------------------------------------
// Response

void Exchange::arm_up_timer(uint32_t ms) {
  if (up_h2_) {
    ups_.arm_timer(ms);  // while the stream is on its connection
  } else if (up_) {
    up_->arm_timer(ms);
  }
}

void Exchange::on_upstream_timeout() {
  // A stream that timed out still waiting for a slot on its HTTP/2 connection
  // (UpstreamPool::h2_place): its deadline ran from the submit, as any stream's, and it
  // is answered and retried as any other, but the node never saw it: its slowness is
  // its streams', which time out and count themselves; the waiting ones counted too
  // would eject a node for our queue.
  const bool waited = up_h2_ && ups_.waiting();
  if (phase_ == Phase::kWaiting && req_done_) {
    // Nothing came back: an idempotent request whose body was not streamed goes to the
    // next node, as after a reset (nginx's proxy_next_upstream default, "error
    // timeout"); a paused or wedged node then costs its clients upstream_timeout_ms,
    // not an error. 504 once the retries are spent.
    upstream_failed(504, waited ? "response timeout (waited for a stream slot, never sent)" : "response timeout", true,
                    !waited);
    return;
  }
  if (!req_done_ && !tunnel_ && !up_write_pending()) {
    // The backend takes what it is given; it is the client that sends nothing.
    down_.respond_error(408, "request body not received in time", "client stalled mid-body");
    return;
  }
  if (resp_bytes_ == 0 && phase_ != Phase::kBody) {
    upstream_failed(504, waited ? "backend stalled (waited for a stream slot, never sent)" : "backend stalled", false,
                    !waited);
    return;
  }
  if (down_.send_pending()) {
    // The backend is not being read because the client does not take what it was sent:
    // the client's stall, not the node's.
    RP_LOG(LogLevel::kInfo, "client " + std::string(client_ip_) + ": not reading the response, closing: node=" +
                                pool_->qualified(pool_->backends[node_].name));
    down_.abort();
    return;
  }
  RP_LOG(LogLevel::kWarn, "upstream stalled mid-response: node=" + pool_->qualified(pool_->backends[node_].name));
  down_.abort();
}

void Exchange::on_upstream_read(ssize_t nread) {
  if (nread < 0) {
    if (tunnel_) {
      if (nread == UV_EOF) {
        upstream_eof_ = true;
        down_.tunnel_upstream_done();
      } else {
        down_.abort();
      }
      return;
    }
    if (phase_ == Phase::kBody && nread == UV_EOF && resp_.finish() == h1::ResponseParser::Step::kDone) {
      // A body delimited by the close of the connection ends here.
      close_after_ = true;
      phase_ = Phase::kDone;
      if (!down_.send_pending() && send_to_client(nullptr, 0, false, /*last=*/true) < 0) {
        down_.abort();
        return;
      }
      release_upstream(false);
      if (!down_.send_pending()) done();
      return;
    }
    if (resp_bytes_ == 0 && phase_ != Phase::kBody) {
      upstream_failed(502, nread == UV_EOF ? "closed before responding"
                                           : std::string("reset before responding: ") + uv_err_name(static_cast<int>(nread)),
                      true);
      return;
    }
    RP_LOG(LogLevel::kWarn, "upstream " + describe(static_cast<int>(nread)) +
                                " mid-response: node=" + pool_->qualified(pool_->backends[node_].name));
    down_.abort();
    return;
  }
  if (phase_ == Phase::kWaiting) {
    phase_ = Phase::kHead;
  }
  up_->arm_timer(routing_->config->proxy.idle_timeout_ms);
  process_response_bytes();
}

void Exchange::process_response_bytes() {
  using Step = h1::ResponseParser::Step;
  while (!down_.closing() && up_ && !down_.send_pending()) {
    IoBuffer& ub = up_->buffer();
    if (tunnel_) {
      char* start = ub.begin_ptr();
      const size_t len = ub.size();
      ub.consume(len);
      if (send_to_client(start, len) < 0) {
        down_.abort();
        return;
      }
      if (!down_.send_pending()) up_->start_reading();
      return;
    }
    // Run the parser even on no new bytes right after a head: a response without a
    // body (204, 304, Content-Length: 0) completes only then.
    if (ub.size() == 0 && !after_head_) {
      if (send_to_client(nullptr, 0) < 0) {  // a head waiting for body bytes goes now
        down_.abort();
        return;
      }
      up_->start_reading();
      return;
    }
    after_head_ = false;
    const h1::ResponseParser::Result r = resp_.execute(ub);
    switch (r.step) {
      case Step::kMore:
        continue;  // a head under way (kept in place) or only chunk framing: read more
      case Step::kHead:
        on_response_head();
        continue;
      case Step::kBody:
        if (send_to_client(r.out, r.out_len) < 0) {
          down_.abort();
          return;
        }
        continue;
      case Step::kDone:
        finish_response(r.out, r.out_len);
        return;
      case Step::kError:
        if (resp_bytes_ == 0) {
          upstream_failed(502, resp_.error_reason(), false);
        } else {
          RP_LOG(LogLevel::kWarn, "upstream " + std::string(resp_.error_reason()) +
                                      " mid-body: node=" + pool_->qualified(pool_->backends[node_].name));
          down_.abort();
        }
        return;
    }
  }
  if (up_ && down_.send_pending()) up_->stop_reading();
}

void Exchange::finish_response(char* out, size_t len) {
  phase_ = Phase::kDone;
  // Counted before the last bytes go out: a client that has its answer and asks
  // /metrics at once finds it counted.
  resp_bytes_ += len;
  account(resp_status_);
  // The last bytes are written from the upstream buffer, which stays put: the
  // connection goes back to the pool only after this write completes. An HTTP/2 client
  // gets the node's trailers after them (HTTP/1.1 ones have them in the chunks).
  const std::span<const HeaderView> trailers = down_h2_ ? resp_.trailers() : std::span<const HeaderView>();
  int rc = send_to_client(out, len, /*counted=*/true, /*last=*/trailers.empty());
  if (rc >= 0 && !trailers.empty()) {
    const int t = down_.send_trailers(trailers);
    if (t < 0) rc = t;
  }
  if (rc < 0) {
    down_.abort();
    return;
  }
  if (down_.send_pending()) {
    up_->stop_reading();
    return;  // on_downstream_drained releases the upstream and ends the exchange
  }
  release_upstream(upstream_reusable());
  done();
}

bool Exchange::upstream_reusable() {
  // Bytes after the response's end (ub not empty): a server that sends what was not
  // asked for is not trusted with the next request.
  return up_ && up_->buffer().size() == 0 && !up_->write_pending() && resp_.keep_alive() && req_done_ &&
         !tunnel_;
}

int Exchange::send_to_client(char* body, size_t len, bool counted, bool last) {
  if (!counted) resp_bytes_ += len;
  if (down_h2_) {
    // The codec frames the decoded body (and sends a head still queued with it).
    const int rc = down_.send_data(body, len, last);
    if (rc == Transport::kQueued && up_) up_->stop_reading();
    return rc;
  }
  uv_buf_t bufs[2];
  unsigned n = 0;
  if (head_pending_) {
    head_pending_ = false;
    if (len > 0 && len <= kCoalesceBody) {
      // A small body goes in one buffer with the head: send() of one buffer costs less
      // than sendmsg() of two, and more than the copy saves (bench/cost/send_bench.cc,
      // 85 bytes on loopback: 550 ns against 700 with the reader on the same core,
      // 1,590 against 1,620 with it on the other).
      resp_head_.append(body, len);
      len = 0;
    }
    bufs[n++] = uv_buf_init(resp_head_.data(), static_cast<unsigned>(resp_head_.size()));
  }
  if (len > 0) bufs[n++] = uv_buf_init(body, static_cast<unsigned>(len));
  if (n == 0) return 0;
  const int rc = down_.send(bufs, n);
  // The node is read no further until the client has taken these bytes.
  if (rc == Transport::kQueued && up_) up_->stop_reading();
  return rc;
}

void Exchange::on_response_head() {
  // The head passed the parser's checks (h1::ResponseParser: size, obs-fold, a status
  // of three digits); what is left are the ones that depend on the request.
  resp_status_ = resp_.status();
  const bool interim = resp_.interim();
  if (resp_status_ == 101 && !upgrade_) {
    // Switching protocols that the client never asked for: nothing can be relayed.
    upstream_failed(502, "101 Switching Protocols to a request without Upgrade", false);
    return;
  }
  if (resp_status_ == 101) {
    // RFC 9110 15.2.2: a 101 names the protocol in Upgrade. Without one the client does
    // not switch and would read the tunnelled bytes as responses (fuzz_response found it).
    bool named = false;
    for (const HeaderView& h : resp_.fields()) {
      if (iequals(h.name, "upgrade") && h.value.find_first_not_of(" \t") != std::string_view::npos) named = true;
    }
    if (!named) {
      upstream_failed(502, "101 Switching Protocols without an Upgrade protocol", false);
      return;
    }
  }
  // A response we relay (the refusals above count once, in upstream_failed).
  resp_from_backend_ = true;
  if (!interim) {
    pool_->backends[node_].state->per_worker[worker_.id()].header_time.observe_us(worker_.now_us() -
                                                                                      up_sent_us_);
  }
  // RFC 9110 15.2: no 1xx to an HTTP/1.0 client. The parser reads the final head next.
  if (interim && client_http10_) return;
  if (down_h2_) {
    if (interim) {
      // 100 Continue (the client may be waiting for it before its body), 103.
      if (down_.send_head(resp_status_, resp_.fields(), false) < 0) down_.abort();
      return;
    }
    const bool bodiless = resp_.bodiless();
    // DATA frames carry it; its trailers go on as a HEADERS frame after them.
    if (resp_.chunked() && !bodiless) resp_.set_decode_chunked(true, /*keep_trailers=*/true);
    if (down_.send_head(resp_status_, resp_.fields(), bodiless) < 0) {
      down_.abort();
      return;
    }
    // The head's size as HTTP/1 would have it, for the access log's bytes.
    uint64_t head = 17;
    for (const HeaderView& f : resp_.fields()) head += f.name.size() + f.value.size() + 4;
    resp_bytes_ += head;
    after_head_ = true;
    phase_ = Phase::kBody;
    return;
  }
  if (!interim && upgrade_ && resp_status_ != 101) {
    // The upgrade was declined: the request parser is left in its upgrade state, and
    // what the client sends next may be the new protocol. End the connection after.
    // (One not passed on has close_after_ from on_request.)
    close_after_ = true;
  }
  const bool tunnel = resp_status_ == 101 && upgrade_;
  const bool bodiless = resp_.bodiless();
  if (!resp_.has_length() && !bodiless) close_after_ = true;  // the body ends at the close
  // RFC 9112 6.1: no chunked body to an HTTP/1.0 client, which would read the chunk
  // lines as content. It gets the body decoded, ended by the close.
  if (client_http10_ && resp_.chunked() && !bodiless) {
    close_after_ = true;
    resp_.set_decode_chunked(true);
  }

  ResponseRewrite rw;
  rw.status = resp_status_;
  rw.reason = resp_.reason();
  rw.fields = resp_.fields();
  rw.client_http10 = client_http10_;
  rw.interim = interim;
  rw.tunnel = tunnel;
  rw.close_after = close_after_ || down_.close_requested();
  build_response_head(rw, resp_head_);
  resp_bytes_ += resp_head_.size();
  // The head goes out with the first body bytes, in one write.
  head_pending_ = true;
  if (interim) {
    // Another head follows (a 100 Continue precedes the final response): send this one
    // now, so the client sends its body.
    if (send_to_client(nullptr, 0) < 0) down_.abort();
    return;
  }
  after_head_ = true;
  phase_ = Phase::kBody;
  if (tunnel) {
    if (send_to_client(nullptr, 0) < 0) {
      down_.abort();
      return;
    }
    start_tunnel();
  }
}

void Exchange::start_tunnel() {
  tunnel_ = true;
  phase_ = Phase::kBody;
  up_->disarm_timer();
  // The codec watches both directions with its idle timer from here, and sends up the
  // bytes the client sent after its upgrade request.
  down_.start_tunnel();
}

void Exchange::release_upstream(bool reusable) {
  if (have_node_) {
    pool_->backends[node_].state->in_flight.fetch_sub(1, std::memory_order_relaxed);
    have_node_ = false;
  }
  if (up_h2_) {
    // The stream goes (RST_STREAM when still open); its connection stays for others.
    ups_.cancel();
    up_h2_ = false;
    upstream_ready_ = false;
    body_wait_ = false;
    return;
  }
  if (!up_) return;
  UpstreamConn* conn = up_;
  up_ = nullptr;
  upstream_ready_ = false;
  conn->disarm_timer();
  if (reusable && !down_.closing()) {
    conn->pool().release(conn, routing_->config->proxy.idle_timeout_ms);
  } else {
    conn->close();
  }
}

void Exchange::done() {
  account(resp_status_);
  release_upstream(false);  // if still held (an early close); a no-op otherwise
  down_.response_done(close_after_);
}

void Exchange::on_downstream_drained() {
  if (phase_ == Phase::kDone) {
    if (up_ || up_h2_) release_upstream(upstream_reusable());
    done();
    return;
  }
  if (up_h2_) {
    ups_.unpin();  // credited back to the node: it may send more
    pump_stream();
    return;
  }
  if (up_) {
    process_response_bytes();
    if (up_ && !down_.send_pending()) up_->start_reading();
  }
}

}  // namespace ringproxy
