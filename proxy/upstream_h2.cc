#include "proxy/upstream_h2.h"

#include <algorithm>
#include <limits>

#include "proxy/log.h"
#include "proxy/worker.h"

namespace ringproxy {
namespace {

// An HTTP/2 node's settings for the streams we open: see http/h2/client_session.h.
h2::ClientSettings client_settings(const UpstreamPool& pool) {
  h2::ClientSettings s;
  s.assumed_peer_streams = pool.h2_peer_streams();
  return s;
}

}  // namespace

H2Upstream::H2Upstream(Worker& worker, UpstreamPool& pool, UpstreamConn* conn)
    : worker_(worker), pool_(pool), conn_(conn), session_(*this, client_settings(pool)) {}

H2Upstream* H2Upstream::create(Worker& worker, UpstreamPool& pool, const sockaddr* addr, uint32_t connect_timeout_ms,
                               int* error) {
  UpstreamConn* conn = pool.make();
  auto* c = new H2Upstream(worker, pool, conn);
  if (!c->session_.start()) {
    *error = UV_ENOMEM;
    c->closing_ = true;
    conn->close();
    delete c;
    return nullptr;
  }
  const int rc = conn->connect(addr, c, connect_timeout_ms);
  if (rc < 0) {
    *error = rc;
    c->closing_ = true;
    conn->close();
    delete c;
    return nullptr;
  }
  if (pool.tls()) {
    const auto& context = pool.tls_context();
    c->tls_context_id_ = context ? context->id() : 0;
  }
  pool.h2_add(c);
  return c;
}

Poller& H2Upstream::wire_poller() { return worker_.poller(); }

uint64_t H2Upstream::wire_now_us() { return worker_.now_us(); }

void H2Upstream::close(std::string_view why) {
  if (closing_) return;
  if (!why.empty()) RP_LOG(LogLevel::kWarn, "upstream HTTP/2 connection to " + pool_.label() + " closed: " + std::string(why));
  shut(why.empty() ? std::string_view("connection closed") : why, 0);
}

void H2Upstream::shut(std::string_view cause, int connect_status) {
  closing_ = true;
  pool_.h2_forget(this);
  // Streams still on it fail (the exchanges retry or answer, each logging its failure
  // with its request); nothing more is read.
  session_.on_closed(cause, connect_status);
  for (const Deadline& d : timed_) d.stream->timer_slot = SIZE_MAX;
  timed_.clear();
  conn_->close();
  conn_ = nullptr;
  worker_.poller().defer(&reaper_);
}

// ---------------------------------------------------------------------------------------
// The connection

void H2Upstream::on_upstream_connect(int status) {
  if (closing_) return;
  if (status < 0) {
    shut(conn_->connect_failure(status), status);
    return;
  }
  if (pool_.tls() && conn_->alpn() != "h2") {
    // RFC 9113 3.2: over TLS, HTTP/2 only when the node chose "h2" by ALPN.
    shut("the node did not choose h2 by ALPN (protocol = \"h2\" needs it)", UV_EPROTO);
    return;
  }
  connected_ = true;
  if (conn_->start_reading() < 0) {
    close("cannot read from the node");
    return;
  }
  session_.on_connected();
  rearm();
}

void H2Upstream::on_upstream_read(ssize_t nread) {
  if (closing_) return;
  if (nread < 0) {
    close(nread == UV_EOF ? std::string_view() : std::string_view(uv_err_name(static_cast<int>(nread))));
    return;
  }
  IoBuffer& in = conn_->buffer();
  const bool ok = session_.on_read(in.begin_ptr(), in.size());
  if (!ok || closing_) return;
  in.clear();  // nghttp2 took every byte (copied where kept)
  conn_->start_reading();
}

void H2Upstream::on_upstream_write(int status) {
  if (closing_) return;
  session_.on_write_done(status);
}

int H2Upstream::wire_send(uv_buf_t* buf) {
  if (!conn_) return UV_ECANCELED;
  return conn_->write(buf, 1);
}

void H2Upstream::wire_capacity() {
  if (closing_) return;
  if (session_.peer_settings_known()) pool_.set_h2_peer_streams(session_.peer_max_streams());
  if (session_.streams() == 0) {
    if (session_.goaway_received()) {
      // The node is done with it, and so are we. Often from inside nghttp2's callbacks
      // (the GOAWAY's, or the last stream's close): safe there, as the session tells its
      // streams' handlers once nghttp2 has returned, and the reaper frees this (and the
      // session) at the end of the loop's turn, the UpstreamConn its close callbacks.
      close();
      return;
    }
    if (idle_since_ == 0) {
      // Idle from now: the timer must come by the idle deadline (O(1) unless earlier).
      idle_since_ = uv_now(worker_.loop());
      const uint64_t at = idle_since_ + worker_.routing().config->proxy.idle_timeout_ms;
      if (connected_ && (timer_at_ == 0 || at < timer_at_)) rearm();
    }
  } else {
    idle_since_ = 0;  // the timer finds it busy when it fires, and looks again
  }
}

// ---------------------------------------------------------------------------------------
// Deadlines

void H2Upstream::wire_arm(h2::ClientStream& t, uint32_t ms) {
  if (closing_) return;
  const uint64_t now = uv_now(worker_.loop());
  const uint64_t at = now + ms;
  if (t.timer_slot == SIZE_MAX) {
    t.timer_slot = timed_.size();
    timed_.push_back({&t, at});
  } else {
    timed_[t.timer_slot].at = at;
  }
  if (connected_ && (timer_at_ == 0 || at < timer_at_)) {
    timer_at_ = at;
    conn_->arm_timer(ms);
  }
}

void H2Upstream::wire_disarm(h2::ClientStream& t) {
  if (t.timer_slot == SIZE_MAX || t.timer_slot >= timed_.size() || timed_[t.timer_slot].stream != &t) return;
  remove_timed(t.timer_slot);
}

void H2Upstream::remove_timed(size_t slot) {
  timed_[slot].stream->timer_slot = SIZE_MAX;
  if (slot + 1 != timed_.size()) {
    timed_[slot] = timed_.back();
    timed_[slot].stream->timer_slot = slot;
  }
  timed_.pop_back();
}

void H2Upstream::rearm() {
  if (closing_ || !connected_) return;  // the UpstreamConn times the connect itself
  uint64_t next = std::numeric_limits<uint64_t>::max();
  for (const Deadline& d : timed_) next = std::min(next, d.at);
  if (session_.streams() == 0 && idle_since_ != 0) {
    next = std::min<uint64_t>(next, idle_since_ + worker_.routing().config->proxy.idle_timeout_ms);
  }
  if (next == std::numeric_limits<uint64_t>::max()) {
    timer_at_ = 0;
    conn_->disarm_timer();
    return;
  }
  const uint64_t now = uv_now(worker_.loop());
  timer_at_ = next;
  conn_->arm_timer(static_cast<uint32_t>(next > now ? next - now : 0));
}

void H2Upstream::on_upstream_timeout() {
  if (closing_) return;
  const uint64_t now = uv_now(worker_.loop());
  // Each due stream is told once; a handler may arm or disarm others meanwhile.
  timer_at_ = 0;
  for (size_t i = 0; i < timed_.size();) {
    if (timed_[i].at > now) {
      ++i;
      continue;
    }
    h2::ClientStream* t = timed_[i].stream;
    remove_timed(i);
    t->timed_out();
    if (closing_) return;
    i = 0;  // the list may have changed under the call
  }
  if (session_.streams() == 0 && idle_since_ != 0 &&
      now >= idle_since_ + worker_.routing().config->proxy.idle_timeout_ms) {
    // Idle for as long as an HTTP/1 connection may stay in the pool: GOAWAY, then close.
    shutdown();
    close();
    return;
  }
  rearm();
}

}  // namespace ringproxy
