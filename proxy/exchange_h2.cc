// The Exchange's way to an HTTP/2 node (protocol = "h2c" | "h2"): the request as a
// stream on one of the node's shared connections (proxy/upstream_h2.h), the response
// pulled from the stream and framed for the client's protocol. The rest of the
// Exchange is proxy/exchange.cc.
#include "proxy/exchange.h"

#include <cassert>
#include <string>
#include <utility>

#include "http/status.h"
#include "net/local_error.h"
#include "proxy/log.h"
#include "proxy/rewrite.h"
#include "proxy/worker.h"

namespace ringproxy {
using namespace std::string_view_literals;

void Exchange::open_stream(H2Upstream* conn) {
  const Backend& b = pool_->backends[node_];
  // Per attempt: a 1.0 request without Host gets this node's address as :authority.
  std::string_view authority;
  if (host_missing_) {
    host_line_ = b.address.to_string();
    authority = host_line_;
  }
  // The head's parts as the rewrite recorded them (its Transfer-Encoding line, appended
  // for a chunked HTTP/1 node, is not among them: HTTP/2 frames the body itself).
  if (!h2::request_fields(up_head_, up_spans_, conn->pool().tls() ? "https"sv : "http"sv, authority, te_trailers_,
                          h2_names_, h2_nv_)) {
    upstream_failed(502, "request head not expressible in HTTP/2", false);
    return;
  }
  // A body is announced unless the request has none or has already ended without one.
  const bool has_body = req_->has_body && !(req_done_ && req_body_forwarded_ == 0);
  const int rc = conn->session().submit(ups_, h2_nv_, has_body);
  if (rc < 0) {
    if (is_local_resource_error(rc)) {
      connect_failed(rc, "no memory for a stream");
      return;
    }
    upstream_failed(502, std::string("cannot open a stream: ") + uv_err_name(rc), true);
    return;
  }
  upstream_ready_ = true;
  phase_ = Phase::kWaiting;
  stream_end_sent_ = chunk_down_ = body_wait_ = false;
  head_pending_ = after_head_ = false;
  up_sent_us_ = worker_.now_us();
  const ProxyConfig& p = routing_->config->proxy;
  arm_up_timer(req_done_ ? upstream_timeout_ms_ : p.idle_timeout_ms);
  if (std::exchange(resend_body_, false)) {
    // The chunk the last attempt's stream held unsent, still pinned in the codec: it
    // goes first, and the codec offers the rest once it is framed (on_upstream_stream).
    if (ups_.send_body(unsent_, unsent_len_, unsent_end_) == Transport::kQueued) body_wait_ = true;
    return;
  }
  if (!req_done_) down_.resume_body();  // the codec offers the body now
}

void Exchange::on_upstream_stream() {
  if (!up_h2_) return;
  if (body_wait_ && ups_.body_writable() && !ups_.failed()) {
    body_wait_ = false;
    down_.resume_body();  // the pinned bytes are framed: the client's next ones
    if (!up_h2_) return;  // the exchange ended inside
  }
  pump_stream();
}

void Exchange::pump_stream() {
  while (up_h2_ && !down_.closing() && !down_.send_pending()) {
    if (phase_ != Phase::kBody) {
      if (ups_.interim_ready()) {
        // 100 Continue, 103 Early Hints: on before the final head (none to a 1.0 client).
        const int status = ups_.interim_status();
        int rc = 0;
        if (status == 101) {
          ups_.interim_taken();
          on_stream_failed();  // no 101 in HTTP/2 (RFC 9113 8.6): a broken node
          return;
        }
        if (down_h2_) {
          rc = down_.send_head(status, ups_.interim_fields(), false);
        } else if (!client_http10_) {
          ResponseRewrite rw;
          rw.status = status;
          rw.reason = reason_phrase(status);
          rw.fields = ups_.interim_fields();
          rw.interim = true;
          build_response_head(rw, resp_head_);
          resp_bytes_ += resp_head_.size();
          head_pending_ = true;
          rc = send_to_client(nullptr, 0);
        }
        ups_.interim_taken();
        if (rc < 0) {
          down_.abort();
          return;
        }
        continue;
      }
      if (ups_.head_ready()) {
        on_stream_head();
        continue;
      }
      if (ups_.failed()) on_stream_failed();
      return;
    }
    if (stream_bodiless_) {
      // Complete at its head, as over HTTP/1: whatever the node does next (its
      // END_STREAM, or a reset) does not hold the client back.
      finish_stream();
      return;
    }
    if (ups_.body_size() > 0) {
      const size_t n = ups_.body_size();
      // The last bytes carry the end when nothing follows them (no trailers).
      const bool ends_here = ups_.remote_ended() && ups_.trailers().empty();
      const int rc = stream_body_to_client(ups_.body_data(), n, ends_here);
      if (rc < 0) {
        down_.abort();
        return;
      }
      ups_.give(n, rc == Transport::kQueued);
      if (rc == Transport::kQueued) return;  // on_downstream_drained goes on
      arm_up_timer(routing_->config->proxy.idle_timeout_ms);
      continue;
    }
    if (ups_.ended()) {
      finish_stream();
      return;
    }
    if (ups_.failed()) {
      RP_LOG(LogLevel::kWarn, "upstream " + ups_.cause() + " mid-response: node=" + pool_->qualified(pool_->backends[node_].name));
      note_node_failure(pool_->backends[node_]);
      if (down_h2_ && grpc_) {
        // A gRPC client reads the outcome from the trailers: UNAVAILABLE, not a reset
        // (which it would report as an internal error).
        static constexpr HeaderView kUnavailable[] = {{"grpc-status", "14"},
                                                     {"grpc-message", "upstream node failed mid-stream"}};
        account(resp_status_);
        phase_ = Phase::kDone;
        if (down_.send_trailers(kUnavailable) < 0) {
          down_.abort();
          return;
        }
        release_upstream(false);
        done();
        return;
      }
      down_.abort();
      return;
    }
    return;  // more to come
  }
}

void Exchange::on_stream_head() {
  resp_status_ = ups_.status();
  resp_from_backend_ = true;
  // From the HEADERS' sending, as over HTTP/1 from the head's: a stream's wait for a
  // slot on its connection is the proxy's queue, not the node's time (HAProxy's Tw
  // apart from its Tr).
  const uint64_t sent_us = ups_.sent_us() != 0 ? ups_.sent_us() : up_sent_us_;
  pool_->backends[node_].state->per_worker[worker_.id()].header_time.observe_us(worker_.now_us() - sent_us);
  const std::span<const HeaderView> fields = ups_.fields();
  // No body after these (RFC 9110 6.4.1); nghttp2 holds the node to it.
  const bool bodiless = is_head_ || resp_status_ == 204 || resp_status_ == 304;
  stream_bodiless_ = bodiless;
  // A declined upgrade: what the client sends next may be the new protocol.
  if (upgrade_) close_after_ = true;
  phase_ = Phase::kBody;
  arm_up_timer(routing_->config->proxy.idle_timeout_ms);
  if (down_h2_) {
    const bool ends = bodiless || (ups_.ended() && ups_.trailers().empty());
    if (down_.send_head(resp_status_, fields, ends) < 0) {
      down_.abort();
      return;
    }
    stream_end_sent_ = ends;
    uint64_t head = 17;  // the head's size as HTTP/1 would have it, for the access log
    for (const HeaderView& f : fields) head += f.name.size() + f.value.size() + 4;
    resp_bytes_ += head;
    return;
  }
  // An HTTP/1 client: sized as the node sized it, else chunked (1.1) or to the close
  // (1.0, RFC 9112 6.1).
  bool sized = false;
  h2_fields_.clear();
  for (const HeaderView& f : fields) {
    if (f.name == "content-length") sized = true;
    h2_fields_.push_back(f);
  }
  chunk_down_ = !bodiless && !sized && !client_http10_;
  if (!bodiless && !sized && client_http10_) close_after_ = true;
  if (chunk_down_) h2_fields_.push_back({"Transfer-Encoding", "chunked"});
  ResponseRewrite rw;
  rw.status = resp_status_;
  rw.reason = reason_phrase(resp_status_);
  rw.fields = h2_fields_;
  rw.client_http10 = client_http10_;
  rw.close_after = close_after_ || down_.close_requested();
  build_response_head(rw, resp_head_);
  resp_bytes_ += resp_head_.size();
  head_pending_ = true;  // goes with the first body bytes
}

int Exchange::stream_body_to_client(char* p, size_t len, bool last) {
  if (down_h2_) {
    resp_bytes_ += len;
    if (last) stream_end_sent_ = true;
    return down_.send_data(p, len, last);
  }
  if (!chunk_down_) return send_to_client(p, len);
  // A chunk: its size line, the bytes, CRLF (the head first, when still pending).
  resp_bytes_ += len;
  uv_buf_t bufs[4];
  unsigned n = 0;
  if (head_pending_) {
    head_pending_ = false;
    bufs[n++] = uv_buf_init(resp_head_.data(), static_cast<unsigned>(resp_head_.size()));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  char* e = chunk_head_ + sizeof chunk_head_;
  *--e = '\n';
  *--e = '\r';
  for (size_t v = len; v > 0; v >>= 4) *--e = kHex[v & 15];
  bufs[n++] = uv_buf_init(e, static_cast<unsigned>(chunk_head_ + sizeof chunk_head_ - e));
  bufs[n++] = uv_buf_init(p, static_cast<unsigned>(len));
  static constexpr std::string_view kCrlf = "\r\n";
  bufs[n++] = uv_buf_init(const_cast<char*>(kCrlf.data()), 2);
  return down_.send(bufs, n);
}

void Exchange::finish_stream() {
  phase_ = Phase::kDone;
  account(resp_status_);
  int rc = 0;
  const std::span<const HeaderView> trailers = ups_.trailers();
  if (down_h2_) {
    if (!stream_end_sent_) rc = trailers.empty() ? down_.send_data(nullptr, 0, true) : down_.send_trailers(trailers);
  } else if (chunk_down_) {
    // The last chunk, with the node's trailers (RFC 9112 7.1.2); the head too when the
    // body was empty.
    tail_.assign("0\r\n"sv);
    for (const HeaderView& t : trailers) {
      tail_.append(t.name);
      tail_.append(": "sv);
      tail_.append(t.value);
      tail_.append("\r\n"sv);
    }
    tail_.append("\r\n"sv);
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (head_pending_) {
      head_pending_ = false;
      bufs[n++] = uv_buf_init(resp_head_.data(), static_cast<unsigned>(resp_head_.size()));
    }
    bufs[n++] = uv_buf_init(tail_.data(), static_cast<unsigned>(tail_.size()));
    rc = down_.send(bufs, n);
  } else if (head_pending_) {
    rc = send_to_client(nullptr, 0);
  }
  if (rc < 0) {
    down_.abort();
    return;
  }
  if (down_.send_pending()) return;  // on_downstream_drained ends the exchange
  release_upstream(false);
  done();
}

void Exchange::on_stream_failed() {
  if (!up_h2_) return;
  const int connect_status = ups_.connect_status();
  std::string cause = ups_.cause().empty() ? std::string("stream failed") : ups_.cause();
  // A stream whose HEADERS never went (it waited for a slot under the node's limit, or
  // for its connection) framed nothing: the one body chunk the codec gave it (it gives
  // no more until that is framed) is still pinned, whole, and goes again with the next
  // attempt's stream. Only a retry on the same node: another node may be HTTP/1, whose
  // exchange starts the body afresh.
  const bool body_unsent =
      req_body_forwarded_ > 0 && ups_.sent_us() == 0 && body_wait_ && unsent_len_ == req_body_forwarded_;
  if (connect_status != 0) {
    // The connection the stream was queued on never came up: nothing was sent, so a
    // body given is all in the unsent chunk (the next address takes it).
    assert(req_body_forwarded_ == 0 || body_unsent);
    release_upstream(false);
    resend_body_ = body_unsent;
    connect_failed(connect_status, std::move(cause));
    return;
  }
  if (ups_.unprocessed() && unprocessed_again_ < kMaxUnprocessedAgain &&
      (req_body_forwarded_ == 0 || body_unsent) && resp_bytes_ == 0) {
    // RFC 9113 8.7: the node did not process it (GOAWAY, REFUSED_STREAM): the same
    // node again, on another connection, whatever the method; not the node's failure.
    // A few times: a node that recycles its connections (nginx after
    // http2_max_requests) may send GOAWAY on the next one too.
    ++unprocessed_again_;
    // A stream moved off a connection whose limit dropped (h2::ClientStream::moved) is
    // placed again as a new one: another connection of the node, or, when the node
    // allows none now, the next node as at node_full (connect_node); no reconnect to
    // count, the node did nothing wrong.
    const bool moved = ups_.moved();
    RP_LOG(LogLevel::kDebug, "upstream " + cause + (moved ? ", placed again: node=" : ", again on another connection: node=") +
                                 pool_->qualified(pool_->backends[node_].name));
    release_upstream(false);
    resend_body_ = body_unsent;
    if (!moved) bump(worker_.stats().reconnects);
    same_node_again_ = true;
    connect_node();
    return;
  }
  upstream_failed(502, cause, true);
}

}  // namespace ringproxy
