#include "proxy/upstream_pool.h"

#include <algorithm>

#include "proxy/stream_write.h"
#include "proxy/worker.h"

namespace ringproxy {

UpstreamConn::UpstreamConn(Worker& worker, UpstreamPool& pool) : worker_(worker), pool_(&pool) {}

UpstreamConn* UpstreamConn::create(Worker& worker, UpstreamPool& pool) {
  auto* c = new UpstreamConn(worker, pool);  // owned by its handles: freed in on_close
  ++pool.live_;
  uv_tcp_init(worker.loop(), &c->tcp_);
  c->timer_.init(worker.loop(), c);
  c->tcp_.data = c;
  c->open_handles_ = 2;
  return c;
}

int UpstreamConn::connect(const sockaddr* addr, Owner* owner, uint32_t timeout_ms) {
  owner_ = owner;
  connect_req_.data = this;
  const int rc = uv_tcp_connect(&connect_req_, &tcp_, addr, on_connect);
  if (rc < 0) return rc;
  uv_tcp_nodelay(&tcp_, 1);
  arm_timer(timeout_ms);
  return 0;
}

void UpstreamConn::on_connect(uv_connect_t* req, int status) {
  auto* c = static_cast<UpstreamConn*>(req->data);
  if (c->closing_ || !c->owner_) return;  // closed or timed out while connecting
  c->disarm_timer();
  c->connected_ = status == 0;
  if (c->owner_) c->owner_->on_upstream_connect(status);
}

int UpstreamConn::start_reading() {
  if (reading_ || closing_) return 0;
  const int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
  reading_ = rc == 0;
  return rc;
}

void UpstreamConn::stop_reading() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void UpstreamConn::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<UpstreamConn*>(h->data);
  c->worker_.buffers().acquire(c->in_);
  if (c->in_.free_space() == 0 && c->in_.size() == 0) c->in_.clear();
  buf->base = c->in_.end_ptr();
  buf->len = c->in_.free_space();
}

void UpstreamConn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* c = static_cast<UpstreamConn*>(s->data);
  if (nread == 0) return;
  if (!c->owner_) {
    // Idle in the pool: the backend closed it or sent what nobody asked for.
    c->close();
    return;
  }
  if (nread > 0) {
    c->in_.produced(static_cast<size_t>(nread));
    if (c->in_.free_space() == 0) c->stop_reading();
  } else {
    c->stop_reading();
  }
  c->owner_->on_upstream_read(nread);
}

int UpstreamConn::write(const uv_buf_t* bufs, unsigned count) {
  uv_buf_t local[4];
  count = std::min(count, 4u);
  std::copy(bufs, bufs + count, local);
  write_req_.data = this;
  const int rc = write_now_or_queue(reinterpret_cast<uv_stream_t*>(&tcp_), &write_req_, local, count, on_write);
  if (rc == 1) write_pending_ = true;
  return rc;
}

void UpstreamConn::on_write(uv_write_t* req, int status) {
  auto* c = static_cast<UpstreamConn*>(req->data);
  c->write_pending_ = false;
  if (c->closing_ || !c->owner_) return;
  c->owner_->on_upstream_write(status);
}

int UpstreamConn::shutdown_write() {
  shutdown_req_.data = this;
  return uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), [](uv_shutdown_t*, int) {});
}

void UpstreamConn::arm_timer(uint32_t ms) { timer_.arm(ms, on_timer); }
void UpstreamConn::disarm_timer() { timer_.disarm(); }

void UpstreamConn::on_timer(uv_timer_t* t) {
  auto* c = static_cast<UpstreamConn*>(t->data);
  if (!c->timer_.due(on_timer)) return;
  if (!c->owner_) {
    c->close();  // idle too long in the pool
    return;
  }
  if (c->connect_req_.data && !c->connected_) {
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
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(timer_.handle()), on_close);
}

void UpstreamConn::on_close(uv_handle_t* h) {
  auto* c = static_cast<UpstreamConn*>(h->data);
  if (--c->open_handles_ == 0) {
    c->worker_.buffers().release(c->in_);
    UpstreamPool* pool = c->pool_;
    delete c;
    pool->on_conn_freed();
  }
}

UpstreamPool::UpstreamPool(Worker& worker, std::string key) : worker_(worker), key_(std::move(key)) {}

void UpstreamPool::on_conn_freed() {
  if (--live_ == 0 && retired_) worker_.drop_pool(this);  // frees this
}

UpstreamPool::~UpstreamPool() { close_idle(); }

UpstreamConn* UpstreamPool::take_idle(UpstreamConn::Owner* owner) {
  if (idle_.empty()) return nullptr;
  UpstreamConn* c = idle_.back();  // newest first: the most likely still open
  idle_.pop_back();
  c->set_owner(owner);
  c->mark_reused();
  return c;
}

UpstreamConn* UpstreamPool::make() { return UpstreamConn::create(worker_, *this); }

void UpstreamPool::release(UpstreamConn* conn, uint32_t idle_timeout_ms) {
  if (retired_ || idle_.size() >= kMaxIdle || conn->in_.size() != 0) {
    conn->close();
    return;
  }
  conn->set_owner(nullptr);
  conn->in_.clear();
  worker_.buffers().release(conn->in_);
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
