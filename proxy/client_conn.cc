#include "proxy/client_conn.h"

#include <unistd.h>

#include <cassert>
#include <cstring>
#include <utility>

#include "net/local_error.h"
#include "http/status.h"
#include "proxy/log.h"
#include "proxy/worker.h"

namespace ringproxy {
// Literal pieces of the heads we build are appended with their length known, not strlen.
using namespace std::string_view_literals;
namespace {

// Lingering close (RFC 9112 9.6): after our answer, what the client still sends is read
// and dropped for at most kLingerMs in all, kLingerIdleMs between reads, and
// kLingerMaxBytes. nginx's lingering_time and lingering_timeout are 30 s and 5 s; a
// client that has our answer needs only the time its last bytes take to arrive.
constexpr uint32_t kLingerMs = 5000;
constexpr uint32_t kLingerIdleMs = 2000;
constexpr uint64_t kLingerMaxBytes = 4 * 1024 * 1024;


}  // namespace

// ---------------------------------------------------------------------------------------
// Life cycle

ClientConn::ClientConn(Worker& worker)
    : worker_(worker), tcp_(worker.buffers(), *this), in_(tcp_.buffer()), ex_(worker, *this) {}

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
  c->client_ip_len_ = static_cast<uint8_t>(std::strlen(c->client_ip_));
  c->arm_timer(cfg.proxy.header_timeout_ms);
  c->resume_client_reading();
}

void ClientConn::close() {
  if (closing_) return;
  closing_ = true;
  ex_.abort();
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
  if (req_phase_ == ReqPhase::kIdle && !ex_.active() && in_.size() == 0 && !client_write_pending_) close();
}

void ClientConn::arm_timer(uint32_t ms) { timer_.arm(ms, on_timer); }

void ClientConn::on_timer(uv_timer_t* t) {
  auto* c = static_cast<ClientConn*>(t->data);
  if (!c->timer_.due(on_timer)) return;
  if (c->lingering_ || !c->error_out_.empty()) {
    c->close();  // done lingering, or the client does not read our answer
    return;
  }
  if (c->req_phase_ == ReqPhase::kHead && !c->ex_.active()) {
    c->respond_error(408, "request head not received in time", "header timeout");
    return;
  }
  if (c->req_phase_ == ReqPhase::kIdle && !c->ex_.active()) {
    c->close();  // keep-alive idle timeout: nothing to answer
    return;
  }
  if (c->req_phase_ == ReqPhase::kBody && !c->ex_.response_started() && !c->tunnel_) {
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
  if (ex_.body_pinned()) return;  // backpressure: upstream has not taken the last bytes
  if (in_.allocated() && in_.free_space() == 0) {
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
      c->ex_.on_client_eof();
      return;
    }
    if (!c->ex_.active()) {
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
    if (c->req_phase_ == ReqPhase::kBody && c->ex_.ready_for_body()) c->forward_body();
    return;
  }
  if (c->tunnel_) {
    c->arm_timer(c->worker_.routing().config->proxy.idle_timeout_ms);
    c->forward_body();
    return;
  }
  if (c->req_phase_ == ReqPhase::kBody) c->arm_timer(c->worker_.routing().config->proxy.idle_timeout_ms);
  c->process_request_bytes();
}

void ClientConn::process_request_bytes() {
  while (!closing_) {
    switch (req_phase_) {
      case ReqPhase::kIdle:
        if (in_.size() == 0) {
          if (client_eof_ && !ex_.active() && !client_write_pending_) {
            close();  // half-closed, and every request it sent is answered
            return;
          }
          if (!client_write_pending_) worker_.buffers().release(in_);
          return;
        }
        req_phase_ = ReqPhase::kHead;
        ex_.begin(uv_hrtime() / 1000);
        if (!ex_.active()) {
          arm_timer(worker_.routing().config->proxy.header_timeout_ms);
        }
        [[fallthrough]];
      case ReqPhase::kHead:
        if (ex_.active()) return;  // the previous response is not done
        if (!parse_head()) return;
        if (req_phase_ == ReqPhase::kHead) return;  // need more bytes
        on_request_head();
        break;
      case ReqPhase::kBody:
        if (!ex_.ready_for_body()) return;
        if (!forward_body()) return;
        break;
      case ReqPhase::kDone:
        return;
    }
  }
}

bool ClientConn::parse_head() {
  const bool may_compact = !client_write_pending_ && !ex_.body_pinned();
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

void ClientConn::on_request_head() {
  // The head passed the codec's checks; the exchange takes it from here.
  req_body_started_ = false;
  if (!req_.keep_alive() || drain_requested_) close_after_response_ = true;
  // While the body comes in, this timer watches the client; the upstream timer
  // watches the backend.
  arm_timer(worker_.routing().config->proxy.idle_timeout_ms);
  ex_.on_request(req_, std::string_view(client_ip_, client_ip_len_));
}

// ---------------------------------------------------------------------------------------
// Request body

bool ClientConn::forward_body() {
  if (!ex_.ready_for_body()) return false;
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
    if (step.error) {
      if (!ex_.response_started()) {
        respond_error(400, "malformed request body", "malformed body: " + std::string(req_.error_reason()));
      } else {
        close();
      }
      return false;
    }
    len = step.consumed;
    complete = step.complete;
  }
  in_.consume(len);
  switch (ex_.on_body(start, len, complete)) {
    case Exchange::BodyResult::kFailed:
      return false;
    case Exchange::BodyResult::kPinned:
      tcp_.stop_reading();
      break;
    case Exchange::BodyResult::kTaken:
      break;
  }
  if (closing_) return false;
  if (complete) {
    req_phase_ = ReqPhase::kDone;
    if (!client_write_pending_) timer_.disarm();  // the client has sent all; now the backend's turn
    return !req_.upgrade();  // bytes after an upgrade request wait for the 101
  }
  if (client_eof_ && !tunnel_ && in_.size() == 0) {
    RP_LOG(LogLevel::kInfo, std::string("client ") + client_ip_ + " closed mid-body; dropping the request");
    close();
    return false;
  }
  if (!ex_.body_pinned()) resume_client_reading();
  return false;
}

void ClientConn::resume_body() {
  if (closing_) return;
  if (req_phase_ == ReqPhase::kBody || tunnel_) {
    forward_body();
    if (!closing_ && req_phase_ == ReqPhase::kDone && !tunnel_) process_request_bytes();
  }
  resume_client_reading();
}

void ClientConn::start_tunnel() {
  tunnel_ = true;
  arm_timer(worker_.routing().config->proxy.idle_timeout_ms);
  // Bytes the client sent after its upgrade request go up now.
  forward_body();
  resume_client_reading();
}

void ClientConn::tunnel_upstream_done() {
  if (client_eof_) {
    close();
    return;
  }
  if (tcp_.shutdown_write() != 0) close();
}

// ---------------------------------------------------------------------------------------
// The end of an exchange

void ClientConn::response_done(bool close_after) {
  if (close_after) close_after_response_ = true;
  end_exchange();
}

void ClientConn::end_exchange() {
  if (closing_) return;
  if (req_phase_ != ReqPhase::kDone) {
    // The backend answered before the whole request arrived (an early 413, say): the
    // rest of the body cannot be told from a next request, so the connection ends.
    close_after_response_ = true;
  }
  ex_.abort();  // the upstream connection, if still held (an early close)
  if (close_after_response_ || tunnel_ || (client_eof_ && in_.size() == 0)) {
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
  req_.next_message();
  ex_.reset();
  arm_timer(worker_.routing().config->proxy.idle_timeout_ms);
  resume_client_reading();
  process_request_bytes();
}

// ---------------------------------------------------------------------------------------
// Writing to the client

int ClientConn::send(uv_buf_t* bufs, unsigned count) {
  const int rc = tcp_.write(bufs, count);
  if (rc == Transport::kQueued) {
    client_write_pending_ = true;
    // A client that does not read is dropped after idle_timeout_ms.
    arm_timer(worker_.routing().config->proxy.idle_timeout_ms);
  } else if (rc == Transport::kWritten && tunnel_) {
    arm_timer(worker_.routing().config->proxy.idle_timeout_ms);  // the tunnel is alive
  }
  return rc;
}

void ClientConn::on_write_done(int status) {
  client_write_pending_ = false;
  if (status < 0 || closing_) {
    close();
    return;
  }
  if (!tunnel_ && req_phase_ == ReqPhase::kDone) timer_.disarm();
  if (!error_out_.empty()) {
    error_response_written();
    return;
  }
  if (ex_.active()) {
    ex_.on_downstream_drained();
  } else if (close_after_response_) {
    close();
    return;
  }
  resume_client_reading();
}

void ClientConn::respond_error(int status, std::string_view body, std::string_view log_cause) {
  if (closing_) return;
  if (ex_.response_started() || !error_out_.empty()) {
    close();
    return;
  }
  ex_.abort();
  if (!log_cause.empty()) {
    RP_LOG(status >= 500 ? LogLevel::kWarn : LogLevel::kInfo,
           "answered " + std::to_string(status) + ": " + std::string(log_cause) + " client=" + client_ip_ + " " +
               ex_.node_label());
  }
  ex_.account(status);
  // After a 5xx of ours the connection can go on, as after any response, if the
  // request has been read to its end (a bodiless one, or a body already buffered). A
  // 4xx answers input that cannot be trusted to frame a next request: close.
  // A 501 (unknown transfer coding) or 505 (unknown version) refuses the framing itself.
  const bool keep_alive = status >= 500 && status != 501 && status != 505 && !close_after_response_ &&
                          !ex_.close_after() && !client_eof_ && !drain_requested_ && discard_rest_of_request();
  // To a HEAD, our answer is bodiless too (RFC 9110 9.3.2), or the client would read
  // the body as the next response.
  error_out_ = canned_response(status, body, !keep_alive, req_.is_head());
  respond_self(keep_alive);
}

void ClientConn::respond_own(std::string& answer, bool keep_alive) {
  if (closing_) return;
  error_out_.swap(answer);
  respond_self(keep_alive);
}

void ClientConn::respond_self(bool keep_alive) {
  error_keep_alive_ = keep_alive;
  tcp_.stop_reading();
  timer_.disarm();
  uv_buf_t buf = uv_buf_init(error_out_.data(), static_cast<unsigned>(error_out_.size()));
  const int rc = send(&buf, 1);
  if (rc == Transport::kWritten) {
    error_response_written();
  } else if (rc < 0) {
    close();
  }
}

void ClientConn::linger_close() {
  if (closing_) return;
  ex_.abort();
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
  end_exchange();
}

bool ClientConn::discard_rest_of_request() {
  if (req_phase_ == ReqPhase::kDone) return true;
  if (req_phase_ != ReqPhase::kBody || req_.upgrade()) return false;
  if (!req_.discard_buffered(in_)) return false;  // more body to come, or bad framing: the connection ends
  req_phase_ = ReqPhase::kDone;
  return true;
}

}  // namespace ringproxy
