#include "http/h1/server_conn.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "http/status.h"

namespace ringproxy::h1 {

// ---------------------------------------------------------------------------------------
// Life cycle

ServerConn::ServerConn(Poller& poller, BufferPool& buffers, Owner& owner, RequestHandler& handler)
    : poller_(poller),
      owner_(owner),
      handler_(handler),
      buffers_(buffers),
      tcp_(buffers, *this),
      io_(&tcp_),
      in_(&tcp_.buffer()) {}

int ServerConn::open(int fd, bool nodelay_inherited) {
  timer_.init(poller_.loop(), this);
  open_handles_ = 1;
  int rc = tcp_.init(poller_);
  if (rc == 0) {
    open_handles_ = 2;
    rc = tcp_.open(fd, nodelay_inherited);
  }
  if (rc != 0) {
    ::close(fd);  // still ours: the handle did not take it
    close();
  }
  return rc;
}

int ServerConn::open_tls(int fd, bool nodelay_inherited, std::shared_ptr<const ServerTlsContext> context,
                         uint32_t handshake_timeout_ms) {
  timer_.init(poller_.loop(), this);
  open_handles_ = 1;
  Transport::Handler& self = *this;  // a private base: named here, where it is reachable
  tls_ = std::make_unique<TlsTransport>(buffers_, self);
  io_ = tls_.get();
  in_ = &tls_->buffer();
  int rc = tls_->init(poller_);
  if (rc == 0) {
    open_handles_ = 2;
    rc = tls_->open_server(fd, nodelay_inherited, std::move(context), handshake_timeout_ms);
  }
  if (rc != 0) {
    ::close(fd);  // still ours: the transport did not take it
    close();
  }
  return rc;
}

void ServerConn::start(const sockaddr* peer, FirstRead first_read) {
  if (peer) {
    TcpTransport::ip_text(peer, client_ip_, sizeof client_ip_);
  } else {
    (tls_ ? tls_->tcp() : tcp_).peer_ip(client_ip_, sizeof client_ip_);
  }
  client_ip_len_ = static_cast<uint8_t>(std::strlen(client_ip_));
  // Over TLS the handshake has its own deadline; the request head's starts after it.
  if (!tls_) arm_timer(owner_.limits().header_timeout_ms);
  if (first_read == FirstRead::kNow && !tls_) {
    tcp_.start_reading_now();  // nothing may follow: the connection may be closed
  } else {
    resume_client_reading();
  }
}

void ServerConn::close() {
  if (closing_) return;
  closing_ = true;
  if (takeover_) takeover_->on_closing();
  handler_.abort();
  owner_.on_closing(*this);
  io_->close();  // a no-op when its init failed
  uv_close(reinterpret_cast<uv_handle_t*>(timer_.handle()), on_timer_closed);
}

void ServerConn::on_timer_closed(uv_handle_t* h) { static_cast<ServerConn*>(h->data)->handle_closed(); }
void ServerConn::on_closed() { handle_closed(); }

void ServerConn::handle_closed() {
  if (--open_handles_ != 0) return;
  owner_.on_freed(*this);  // frees this
}

void ServerConn::drain() {
  if (takeover_) {
    takeover_->on_drain();
    return;
  }
  drain_requested_ = true;
  close_after_response_ = true;
  if (lingering_) {
    close();
    return;
  }
  if (req_phase_ == ReqPhase::kIdle && !handler_.active() && in_->size() == 0 && !client_write_pending_) close();
}

void ServerConn::arm_timer(uint32_t ms) { timer_.arm(ms, on_timer); }

void ServerConn::on_timer(uv_timer_t* t) {
  auto* c = static_cast<ServerConn*>(t->data);
  if (!c->timer_.due(on_timer)) return;
  if (c->takeover_) {
    c->takeover_->on_timer();
    return;
  }
  if (c->lingering_ || !c->error_out_.empty()) {
    c->close();  // done lingering, or the client does not read our answer
    return;
  }
  if (c->req_phase_ == ReqPhase::kHead && !c->handler_.active()) {
    c->respond_error(408, "request head not received in time", "header timeout");
    return;
  }
  if (c->req_phase_ == ReqPhase::kIdle && !c->handler_.active()) {
    c->close();  // keep-alive idle timeout: nothing to answer
    return;
  }
  if (c->req_phase_ == ReqPhase::kBody && !c->handler_.response_started() && !c->tunnel_) {
    c->respond_error(408, "request body not received in time", "client stalled mid-body");
    return;
  }
  c->handler_.on_client_note(c->client_write_pending_ ? "not reading the response, closing"
                                                      : "idle timeout mid-exchange, closing");
  c->close();
}

// ---------------------------------------------------------------------------------------
// Reading from the client

void ServerConn::resume_client_reading() {
  if (closing_ || io_->reading() || client_eof_ || client_write_pending_) return;
  if (handler_.body_pinned()) return;  // backpressure: upstream has not taken the last bytes
  if (in_->allocated() && in_->free_space() == 0) {
    in_->compact();
    if (in_->free_space() == 0) return;  // full of a pipelined request we cannot take yet
  }
  io_->start_reading();
}

void ServerConn::on_connect(int status) {
  // A TLS handshake is done (the only on_connect a server side gets).
  if (status == 0 && tls_) client_subject_ = tls_->client_subject();
  owner_.on_tls_handshake(*this, *tls_);
  if (closing_) return;
  if (status == 0 && tls_ && tls_->alpn() == "h2" && take_over_http2(true)) return;
  if (req_phase_ == ReqPhase::kIdle) arm_timer(owner_.limits().header_timeout_ms);
}

bool ServerConn::take_over_http2(bool alpn) {
  // HTTP/1's deadline goes; the new protocol arms its own (from http2(), which starts it).
  timer_.disarm();
  Takeover* t = owner_.http2(*this, alpn);
  if (!t) {
    if (req_phase_ == ReqPhase::kIdle || req_phase_ == ReqPhase::kHead) arm_timer(owner_.limits().header_timeout_ms);
    return false;
  }
  takeover_ = t;
  req_phase_ = ReqPhase::kDone;  // HTTP/1 reads no more
  if (in_->size() > 0) takeover_->on_read(static_cast<ssize_t>(in_->size()));
  if (!closing_) io_->start_reading();
  return true;
}

void ServerConn::tls_failed() {
  client_eof_ = true;
  owner_.on_tls_handshake(*this, *tls_);
  if (closing_) return;
  if (tls_->failure() == TlsTransport::Failure::kPlainHttp && tls_->enter_plaintext() == 0) {
    // One plaintext answer saying why, as nginx's 497 does; then a lingering close.
    client_eof_ = false;
    req_phase_ = ReqPhase::kHead;
    handler_.begin();
    respond_error(400, "The plain HTTP request was sent to the HTTPS port", "plain HTTP on the TLS port");
    return;
  }
  close();
}

void ServerConn::on_read(ssize_t nread) {
  if (takeover_) {
    takeover_->on_read(nread);
    return;
  }
  if (tls_ && nread < 0 && !tls_->handshake_done() && !lingering_ && !tls_->plaintext()) {
    tls_failed();
    return;
  }
  if (lingering_) {
    // Dropped. The client's FIN (or a reset) ends it, or the time and size bounds do.
    in_->clear();
    const uint32_t wait_ms = linger_.on_read(nread, uv_now(poller_.loop()));
    if (wait_ms == 0) {
      close();
      return;
    }
    arm_timer(wait_ms);
    return;
  }
  if (nread < 0) {
    client_eof_ = true;
    if (nread != UV_EOF) {
      close();  // a reset: nobody to answer
      return;
    }
    if (tunnel_) {
      handler_.on_client_eof();
      return;
    }
    if (!handler_.active()) {
      // No exchange: idle (go), or a head cut short (say so).
      if (req_phase_ == ReqPhase::kHead && (req_.head_started() || in_->size() > 0)) {
        respond_error(400, "incomplete request", "client closed mid-head");
      } else {
        close();
      }
      return;
    }
    // A half-close after a request (HTTP allows it): the request and any pipelined
    // ones already buffered are answered, then the connection closes. A body still
    // short of its end is cut short: forward_body() finds that out.
    if (req_phase_ == ReqPhase::kBody && handler_.ready_for_body()) process_request_bytes();
    return;
  }
  if (tunnel_) {
    arm_timer(owner_.limits().idle_timeout_ms);
    forward_body();
    return;
  }
  if (req_phase_ == ReqPhase::kBody) arm_timer(owner_.limits().idle_timeout_ms);
  process_request_bytes();
}

void ServerConn::process_request_bytes() {
  // An exchange that ends inside this loop (an answer from on_request or on_body)
  // leaves the next request to the loop: end_exchange() does not recurse into it, so a
  // long pipeline of answers given at once costs no stack.
  const bool outer = !processing_;
  processing_ = true;
  process_requests();
  if (outer) processing_ = false;
}

void ServerConn::process_requests() {
  while (!closing_ && !lingering_) {
    switch (req_phase_) {
      case ReqPhase::kIdle:
        if (in_->size() == 0) {
          if (client_eof_ && !handler_.active() && !client_write_pending_) {
            close();  // half-closed, and every request it sent is answered
            return;
          }
          if (!client_write_pending_) {
            if (tls_) {
              tls_->release_buffer();
            } else {
              tcp_.release_buffer();
            }
          }
          return;
        }
        req_phase_ = ReqPhase::kHead;
        handler_.begin();
        arm_timer(owner_.limits().header_timeout_ms);
        [[fallthrough]];
      case ReqPhase::kHead:
        if (handler_.active()) return;  // the previous response is not done
        if (!parse_head()) return;
        if (req_phase_ == ReqPhase::kHead) return;  // need more bytes
        on_request_head();
        break;
      case ReqPhase::kBody:
        if (!handler_.ready_for_body()) return;
        // kIdle: the handler answered from on_body and the exchange ended; the next one.
        if (!forward_body() && req_phase_ != ReqPhase::kIdle) return;
        break;
      case ReqPhase::kDone:
        return;
    }
  }
}

bool ServerConn::parse_head() {
  if (first_request_ && !tls_ && owner_.limits().h2c) {
    // RFC 9113 3.4: the client preface. Its first line reads as an HTTP/1 request
    // line, which HTTP/1 would refuse with a 505; wait for all 24 bytes, then hand over.
    static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const std::string_view got(in_->begin_ptr(), std::min(in_->size(), kPreface.size()));
    if (kPreface.starts_with(got)) {
      if (got.size() < kPreface.size() && !client_eof_) {
        resume_client_reading();
        return true;
      }
      if (got.size() == kPreface.size() && take_over_http2(false)) return false;
    }
  }
  const bool may_compact = !client_write_pending_ && !handler_.body_pinned();
  const uint32_t max_head = owner_.limits().max_header_bytes;
  switch (req_.read_head(*in_, max_head, may_compact, client_eof_)) {
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

void ServerConn::on_request_head() {
  // The head passed the codec's checks; the exchange takes it from here.
  first_request_ = false;
  req_body_started_ = false;
  if (!req_.keep_alive() || drain_requested_) close_after_response_ = true;
  // While the body comes in, this timer watches the client; the upstream timer
  // watches the backend.
  arm_timer(owner_.limits().idle_timeout_ms);
  handler_.on_request(req_.head(), std::string_view(client_ip_, client_ip_len_));
}

// ---------------------------------------------------------------------------------------
// Request body

bool ServerConn::forward_body() {
  if (!handler_.ready_for_body()) return false;
  if (in_->size() == 0 && (tunnel_ || req_body_started_)) {
    if (client_eof_ && !tunnel_) {
      handler_.on_client_note("closed mid-body; dropping the request");
      close();
      return false;
    }
    resume_client_reading();
    return false;
  }
  // Executed once even with no bytes: a request without a body completes here.
  req_body_started_ = true;
  char* start = in_->begin_ptr();
  size_t len = in_->size();
  bool complete = false;
  size_t pass = 0;  // bytes to hand on when decoded
  bool decoded = false;
  if (!tunnel_) {
    decoded = handler_.wants_decoded_body();
    req_.set_decode(decoded);
    const h1::RequestParser::BodyStep step = req_.body(start, len);
    pass = step.decoded;
    if (step.error) {
      if (!handler_.response_started()) {
        respond_error(400, "malformed request body", "malformed body: " + std::string(req_.error_reason()));
      } else {
        close();
      }
      return false;
    }
    len = step.consumed;
    complete = step.complete;
  }
  in_->consume(len);
  // The request is all read once the handler sees its end: an answer it gives from
  // on_body may keep the connection (end_exchange).
  if (complete) req_phase_ = ReqPhase::kDone;
  switch (handler_.on_body(start, decoded ? pass : len, complete)) {
    case RequestHandler::BodyResult::kFailed:
      return false;
    case RequestHandler::BodyResult::kPinned:
      io_->stop_reading();
      break;
    case RequestHandler::BodyResult::kTaken:
      break;
  }
  if (closing_ || lingering_) return false;
  if (complete) {
    if (req_phase_ != ReqPhase::kDone) return true;  // answered from on_body: the exchange ended
    if (!client_write_pending_) timer_.disarm();  // the client has sent all; now the backend's turn
    return !req_.upgrade();  // bytes after an upgrade request wait for the 101
  }
  if (client_eof_ && !tunnel_ && in_->size() == 0) {
    handler_.on_client_note("closed mid-body; dropping the request");
    close();
    return false;
  }
  if (!handler_.body_pinned()) resume_client_reading();
  return false;
}

void ServerConn::resume_body() {
  if (closing_) return;
  if (tunnel_) {
    forward_body();
  } else if (req_phase_ == ReqPhase::kBody && !processing_) {
    process_request_bytes();  // (inside the loop, it goes on to the body itself)
  }
  resume_client_reading();
}

void ServerConn::start_tunnel() {
  tunnel_ = true;
  arm_timer(owner_.limits().idle_timeout_ms);
  // Bytes the client sent after its upgrade request go up now.
  forward_body();
  resume_client_reading();
}

void ServerConn::tunnel_upstream_done() {
  if (client_eof_) {
    close();
    return;
  }
  if (io_->shutdown_write() != 0) close();
}

// ---------------------------------------------------------------------------------------
// The end of an exchange

void ServerConn::response_done(bool close_after) {
  if (close_after) close_after_response_ = true;
  end_exchange();
}

void ServerConn::end_exchange() {
  if (closing_) return;
  if (req_phase_ != ReqPhase::kDone) {
    // The backend answered before the whole request arrived (an early 413, say): the
    // rest of the body cannot be told from a next request, so the connection ends.
    close_after_response_ = true;
  }
  handler_.abort();  // the upstream connection, if still held (an early close)
  if (close_after_response_ || tunnel_ || (client_eof_ && in_->size() == 0)) {
    if (!client_write_pending_) close();
    return;
  }
  // Ready for the next request on this connection.
  req_phase_ = ReqPhase::kIdle;
  req_.next_message();
  handler_.reset();
  arm_timer(owner_.limits().idle_timeout_ms);
  resume_client_reading();
  if (!processing_) process_request_bytes();  // else the loop under way goes on
}

// ---------------------------------------------------------------------------------------
// Writing to the client

int ServerConn::send(uv_buf_t* bufs, unsigned count) {
  const int rc = io_->write(bufs, count);
  if (rc == Transport::kQueued) {
    client_write_pending_ = true;
    // A client that does not read is dropped after idle_timeout_ms.
    arm_timer(owner_.limits().idle_timeout_ms);
  } else if (rc == Transport::kWritten && tunnel_) {
    arm_timer(owner_.limits().idle_timeout_ms);  // the tunnel is alive
  }
  return rc;
}

void ServerConn::on_write_done(int status) {
  client_write_pending_ = false;
  if (status < 0 || closing_) {
    close();
    return;
  }
  if (takeover_) {
    takeover_->on_write_done(status);
    return;
  }
  if (!tunnel_ && req_phase_ == ReqPhase::kDone) timer_.disarm();
  if (!error_out_.empty()) {
    error_response_written();
    return;
  }
  if (handler_.active()) {
    handler_.on_downstream_drained();
  } else if (close_after_response_) {
    close();
    return;
  }
  resume_client_reading();
}

void ServerConn::respond_error(int status, std::string_view body, std::string_view log_cause) {
  if (closing_) return;
  if (handler_.response_started() || !error_out_.empty()) {
    close();
    return;
  }
  handler_.abort();
  handler_.on_answered(status, log_cause);
  // After a 5xx of ours the connection can go on, as after any response, if the
  // request has been read to its end (a bodiless one, or a body already buffered). A
  // 4xx answers input that cannot be trusted to frame a next request: close.
  // A 501 (unknown transfer coding) or 505 (unknown version) refuses the framing itself.
  const bool keep_alive = status >= 500 && status != 501 && status != 505 && !close_after_response_ &&
                          !handler_.close_after() && !client_eof_ && !drain_requested_ && discard_rest_of_request();
  // To a HEAD, our answer is bodiless too (RFC 9110 9.3.2), or the client would read
  // the body as the next response.
  error_out_ = canned_response(status, body, !keep_alive, req_.is_head());
  respond_self(keep_alive);
}

void ServerConn::respond_own(std::string& answer, bool keep_alive) {
  if (closing_) return;
  error_out_.swap(answer);
  respond_self(keep_alive);
}

void ServerConn::respond_self(bool keep_alive) {
  error_keep_alive_ = keep_alive;
  io_->stop_reading();
  timer_.disarm();
  uv_buf_t buf = uv_buf_init(error_out_.data(), static_cast<unsigned>(error_out_.size()));
  const int rc = send(&buf, 1);
  if (rc == Transport::kWritten) {
    error_response_written();
  } else if (rc < 0) {
    close();
  }
}

void ServerConn::linger_close() {
  if (closing_) return;
  handler_.abort();
  if (client_eof_ || drain_requested_) {
    close();  // nothing more will come, or no time to wait for it
    return;
  }
  lingering_ = true;
  const uint32_t wait_ms = linger_.start(uv_now(poller_.loop()));
  in_->clear();
  // FIN after the answer (the shutdown runs after the queued writes).
  if (io_->shutdown_write() != 0 || io_->start_reading() != 0) {
    close();
    return;
  }
  arm_timer(wait_ms);
}

void ServerConn::error_response_written() {
  if (!error_keep_alive_) {
    linger_close();
    return;
  }
  error_out_.clear();
  error_keep_alive_ = false;
  end_exchange();
}

bool ServerConn::discard_rest_of_request() {
  if (req_phase_ == ReqPhase::kDone) return true;
  if (req_phase_ != ReqPhase::kBody || req_.upgrade()) return false;
  if (!req_.discard_buffered(*in_)) return false;  // more body to come, or bad framing: the connection ends
  req_phase_ = ReqPhase::kDone;
  return true;
}

}  // namespace ringproxy::h1
