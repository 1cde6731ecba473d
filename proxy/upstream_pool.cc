#include "proxy/upstream_pool.h"

#include <algorithm>

#include "proxy/upstream_h2.h"
#include "proxy/worker.h"

namespace ringproxy {

UpstreamConn::UpstreamConn(Worker& worker, UpstreamPool& pool)
    : worker_(worker), pool_(&pool), tcp_(worker.buffers(), *this), io_(&tcp_) {}

UpstreamConn* UpstreamConn::create(Worker& worker, UpstreamPool& pool) {
  auto* c = new UpstreamConn(worker, pool);  // owned by its handles: freed in handle_closed
  ++pool.live_;
  c->timer_.init(worker.loop(), c);
  c->open_handles_ = 1;
  if (pool.tls()) {
    Transport::Handler& self = *c;  // a private base: named here, where it is reachable
    c->tls_ = std::make_unique<TlsTransport>(worker.buffers(), self);
    c->io_ = c->tls_.get();
    if (c->tls_->init(worker.poller()) == 0) c->open_handles_ = 2;
  } else if (c->tcp_.init(worker.poller()) == 0) {
    c->open_handles_ = 2;
  }
  return c;
}

int UpstreamConn::connect(const sockaddr* addr, Owner* owner, uint32_t timeout_ms) {
  owner_ = owner;
  int rc;
  if (tls_) {
    const std::shared_ptr<const ClientTlsContext>& context = pool_->tls_context();
    // Not loaded, or the tier left with a reload: the config check and the routing keep
    // this from happening.
    if (!context) return UV_EINVAL;
    // An HTTP/2 node is offered h2 alone: HTTP/1.1 on its connections would not do.
    static constexpr std::string_view kAlpnH2("\x02h2", 3);
    rc = tls_->connect_client(addr, context, pool_->tls_name(), &pool_->tls_session(), 0,
                              pool_->h2() ? kAlpnH2 : std::string_view());
    tls_context_id_ = context->id();
  } else {
    rc = tcp_.connect(addr);
  }
  if (rc < 0) return rc;
  connecting_ = true;
  arm_timer(timeout_ms);
  return 0;
}

void UpstreamConn::on_connect(int status) {
  if (closing_ || !owner_) return;  // closed or timed out while connecting
  connecting_ = false;
  disarm_timer();
  owner_->on_upstream_connect(status);
}

void UpstreamConn::on_read(ssize_t nread) {
  if (!owner_) {
    // Idle in the pool: the backend closed it or sent what nobody asked for.
    close();
    return;
  }
  owner_->on_upstream_read(nread);
}

std::string UpstreamConn::connect_failure(int status, std::string_view tls_error) {
  if (status == UV_ETIMEDOUT) return "connect timeout";
  // A wrong CA or name, an expired certificate, ...
  if (!tls_error.empty()) return "TLS handshake failed: " + std::string(tls_error);
  return std::string("connect failed: ") + uv_err_name(status);
}

int UpstreamConn::write(const uv_buf_t* bufs, unsigned count) {
  uv_buf_t local[4];
  count = std::min(count, 4u);
  std::copy(bufs, bufs + count, local);
  return io_->write(local, count);
}

void UpstreamConn::on_write_done(int status) {
  if (closing_ || !owner_) return;
  owner_->on_upstream_write(status);
}

int UpstreamConn::shutdown_write() { return io_->shutdown_write(); }

void UpstreamConn::arm_timer(uint32_t ms) { timer_.arm(ms, on_timer); }
void UpstreamConn::disarm_timer() { timer_.disarm(); }

void UpstreamConn::on_timer(uv_timer_t* t) {
  auto* c = static_cast<UpstreamConn*>(t->data);
  if (!c->timer_.due(on_timer)) return;
  if (!c->owner_) {
    c->close();  // idle too long in the pool
    return;
  }
  if (c->connecting_) {
    // Connect timeout: report it as ETIMEDOUT; the connect callback then finds us closing.
    Owner* owner = c->owner_;
    c->owner_ = nullptr;
    owner->on_upstream_connect(UV_ETIMEDOUT);
    return;
  }
  c->owner_->on_upstream_timeout();
}

void UpstreamConn::close() {
  if (closing_) return;
  closing_ = true;
  owner_ = nullptr;
  pool_->forget(this);
  io_->close();  // a no-op when its init failed
  uv_close(reinterpret_cast<uv_handle_t*>(timer_.handle()), on_timer_closed);
}

void UpstreamConn::on_closed() { handle_closed(); }

void UpstreamConn::on_timer_closed(uv_handle_t* h) { static_cast<UpstreamConn*>(h->data)->handle_closed(); }

void UpstreamConn::handle_closed() {
  if (--open_handles_ != 0) return;
  UpstreamPool* pool = pool_;
  delete this;
  pool->on_conn_freed();
}

UpstreamPool::UpstreamPool(Worker& worker, std::string key, std::string tier, bool tls, std::string tls_name,
                           BackendProtocol protocol)
    : worker_(worker),
      key_(std::move(key)),
      tier_(std::move(tier)),
      tls_(tls),
      tls_name_(std::move(tls_name)),
      protocol_(protocol) {}

void UpstreamPool::retire() {
  retired_ = true;
  close_idle();
  // HTTP/2 connections finish their streams, then GOAWAY and close.
  const std::vector<H2Upstream*> open = h2_;
  for (H2Upstream* c : open) c->shutdown();
}

UpstreamPool::H2Placement UpstreamPool::h2_place(uint32_t cap) {
  if (retired_) return {};
  // A TLS connection made under another [upstream_tls] takes no new streams, nor
  // counts toward the cap: it was verified by other rules, and ends with its streams.
  uint64_t current = 0;
  if (tls_) {
    const auto& context = tls_context();
    current = context ? context->id() : 0;
  }
  const H2Place at = place_h2_stream(h2_.size(), cap, [&](size_t i) {
    const H2Upstream& c = *h2_[i];
    H2ConnLoad load;
    load.usable = c.accepting() && c.tls_context_id() == current;
    load.streams = c.session().streams();
    load.limit = c.session().peer_max_streams();
    return load;
  });
  return {at.at < h2_.size() ? h2_[at.at] : nullptr, at.node_full};
}

void UpstreamPool::h2_forget(H2Upstream* c) {
  auto it = std::find(h2_.begin(), h2_.end(), c);
  if (it != h2_.end()) h2_.erase(it);
}

std::string UpstreamPool::label() const {
  // The key is NAME NUL ADDRESS [NUL ...].
  const size_t a = key_.find('\0');
  if (a == std::string::npos) return key_;
  const size_t b = key_.find('\0', a + 1);
  return "node=" + key_.substr(0, a) + " address=" + key_.substr(a + 1, b == std::string::npos ? b : b - a - 1);
}

const std::shared_ptr<const ClientTlsContext>& UpstreamPool::tls_context() const {
  static const std::shared_ptr<const ClientTlsContext> kNone;
  const Pool* pool = worker_.routing().find_pool(tier_);
  return pool ? pool->upstream_tls : kNone;
}

void UpstreamPool::on_conn_freed() {
  if (--live_ == 0 && retired_) worker_.drop_pool(this);  // frees this
}

UpstreamPool::~UpstreamPool() {
  close_idle();
  const std::vector<H2Upstream*> open = h2_;
  for (H2Upstream* c : open) c->close();
}

UpstreamConn* UpstreamPool::take_idle(UpstreamConn::Owner* owner) {
  // A TLS connection made under another [upstream_tls] (a reload changed the CA,
  // verification or client certificate) is not reused: it was verified by other rules.
  uint64_t current = 0;
  if (tls_) {
    const auto& context = tls_context();
    current = context ? context->id() : 0;
  }
  while (!idle_.empty() && idle_.back()->tls_context_id_ != current) {
    UpstreamConn* stale = idle_.back();
    stale->close();  // leaves idle_ (forget)
  }
  if (idle_.empty()) return nullptr;
  UpstreamConn* c = idle_.back();  // newest first: the most likely still open
  idle_.pop_back();
  c->set_owner(owner);
  c->mark_reused();
  return c;
}

UpstreamConn* UpstreamPool::make() { return UpstreamConn::create(worker_, *this); }

void UpstreamPool::release(UpstreamConn* conn, uint32_t idle_timeout_ms) {
  if (retired_ || idle_.size() >= kMaxIdle || conn->buffer().size() != 0) {
    conn->close();
    return;
  }
  conn->set_owner(nullptr);
  conn->buffer().clear();
  if (conn->tls_) {
    conn->tls_->release_buffer();
  } else {
    conn->tcp_.release_buffer();
  }
  if (conn->start_reading() < 0) {
    conn->close();
    return;
  }
  conn->arm_timer(idle_timeout_ms);
  idle_.push_back(conn);
}

void UpstreamPool::forget(UpstreamConn* conn) {
  auto it = std::find(idle_.begin(), idle_.end(), conn);
  if (it != idle_.end()) idle_.erase(it);
}

void UpstreamPool::close_idle() {
  while (!idle_.empty()) idle_.back()->close();  // close() forgets it
}

}  // namespace ringproxy
