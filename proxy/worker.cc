#include "proxy/worker.h"

#include <algorithm>
#include <cassert>

#include "proxy/client_conn.h"
#include "proxy/log.h"

namespace ringproxy {
namespace {
constexpr uint64_t kAccessLogFlushMs = 100;
constexpr size_t kAccessLogFlushBytes = 64 * 1024;
}  // namespace

Worker::Worker(int id, Shared& shared, int listen_fd)
    : id_(id), shared_(shared), listen_fd_(listen_fd) {}

Worker::~Worker() { join(); }

void Worker::start() { thread_ = std::thread([this] { (void)run(); }); }

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::notify_routing() {
  want_routing_.store(true);
  uv_async_send(&async_);
}

void Worker::notify_drain() {
  want_drain_.store(true);
  uv_async_send(&async_);
}

int Worker::run() {
  // Handles are initialised on the worker's own thread, before anything can notify it:
  // Server::start waits for `ready` (see server.cc).
  take_routing();
  (void)id_;
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Every handle is closed by now (maybe_finish); run once more for close callbacks.
  uv_run(&loop_, UV_RUN_DEFAULT);
  const int rc = uv_loop_close(&loop_);
  if (rc != 0) RP_LOG(LogLevel::kError, "worker loop closed with handles open");
  return rc;
}

int Worker::init() {
  int rc = uv_loop_init(&loop_);
  if (rc < 0) return rc;
  uv_async_init(&loop_, &async_, on_async);
  async_.data = this;
  uv_timer_init(&loop_, &flush_timer_);
  flush_timer_.data = this;
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
  rc = uv_tcp_open(&listener_, listen_fd_);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 511, on_connection);
  uv_timer_start(&flush_timer_, on_flush_timer, kAccessLogFlushMs, kAccessLogFlushMs);
  return rc;
}

void Worker::abort_unstarted() {
  if (loop_.data == nullptr && listener_.loop == nullptr) return;  // init() never ran
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&listener_), reinterpret_cast<uv_handle_t*>(&async_),
                         reinterpret_cast<uv_handle_t*>(&flush_timer_), reinterpret_cast<uv_handle_t*>(&drain_timer_)}) {
    if (h->loop && !uv_is_closing(h)) uv_close(h, nullptr);
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

void Worker::take_routing() {
  std::shared_ptr<const Routing> fresh;
  {
    std::lock_guard<std::mutex> lock(shared_.mu);
    fresh = shared_.routing;
  }
  if (!fresh || fresh == routing_) return;
  std::vector<UpstreamPool*> by_node(fresh->backends.size());
  for (size_t i = 0; i < fresh->backends.size(); ++i) {
    by_node[i] = &pool_for(fresh->backends[i]);
    by_node[i]->unretire();  // a backend removed and added again
  }
  // Backends that left: their idle connections close now; busy ones close when done,
  // and the pool goes with its last connection (drop_pool); one with none goes now.
  std::vector<UpstreamPool*> unused;
  for (auto& [key, pool] : pools_) {
    if (std::find(by_node.begin(), by_node.end(), pool.get()) == by_node.end()) {
      pool->retire();
      if (pool->live() == 0) unused.push_back(pool.get());
    }
  }
  for (UpstreamPool* p : unused) drop_pool(p);
  pools_by_node_ = std::move(by_node);
  routing_ = std::move(fresh);
}

UpstreamPool& Worker::pool_for(const Backend& b, bool* made) {
  auto it = pools_.find(b.pool_key);
  if (made) *made = it == pools_.end();
  if (it != pools_.end()) return *it->second;
  auto& slot = pools_[b.pool_key];
  slot = std::make_unique<UpstreamPool>(*this, b.pool_key);
  return *slot;
}

UpstreamPool& Worker::pool(const Routing& routing, NodeIndex i) {
  if (&routing == routing_.get()) return *pools_by_node_[i];
  // A request routed before a reload, retrying: its node may have left since, and
  // then its pool lives only as long as its connections.
  bool made = false;
  UpstreamPool& p = pool_for(routing.backends[i], &made);
  if (made) p.retire();
  return p;
}

void Worker::drop_pool(UpstreamPool* pool) {
  auto it = pools_.find(pool->key());
  if (it != pools_.end() && it->second.get() == pool) pools_.erase(it);
}

void Worker::on_async(uv_async_t* a) {
  auto* w = static_cast<Worker*>(a->data);
  if (w->want_routing_.exchange(false)) w->take_routing();
  if (w->want_drain_.exchange(false)) w->begin_drain();
}

void Worker::on_connection(uv_stream_t* server, int status) {
  auto* w = static_cast<Worker*>(server->data);
  if (status < 0) {
    RP_LOG(LogLevel::kWarn, std::string("accept failed: ") + uv_strerror(status));
    return;
  }
  ClientConn::accept(*w, server);
}

void Worker::add_connection(ClientConn* c) {
  c->slot = connections_.size();
  connections_.push_back(c);
}

void Worker::remove_connection(ClientConn* c) {
  assert(c->slot < connections_.size() && connections_[c->slot] == c);
  ClientConn* last = connections_.back();
  connections_[c->slot] = last;
  last->slot = c->slot;
  connections_.pop_back();
  if (draining_) maybe_finish();
}

void Worker::access_log(std::string_view line) {
  access_buf_.append(line);
  if (access_buf_.size() >= kAccessLogFlushBytes) flush_access_log();
}

void Worker::flush_access_log() {
  if (access_buf_.empty()) return;
  AccessLog::append(access_buf_);
  access_buf_.clear();
}

void Worker::on_flush_timer(uv_timer_t* t) { static_cast<Worker*>(t->data)->flush_access_log(); }

void Worker::begin_drain() {
  if (draining_) return;
  draining_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  const uint32_t timeout = routing_->config->proxy.shutdown_timeout_ms;
  uv_timer_start(&drain_timer_, on_drain_timer, timeout, 0);
  // Copy: drain() may close a connection, which edits the list.
  const std::vector<ClientConn*> all = connections_;
  for (ClientConn* c : all) c->drain();
  maybe_finish();
}

void Worker::on_drain_timer(uv_timer_t* t) {
  auto* w = static_cast<Worker*>(t->data);
  if (!w->connections_.empty()) {
    RP_LOG(LogLevel::kWarn, "shutdown timeout: closing " + std::to_string(w->connections_.size()) +
                                " connections still in flight");
  }
  const std::vector<ClientConn*> all = w->connections_;
  for (ClientConn* c : all) c->close();
  w->maybe_finish();
}

void Worker::maybe_finish() {
  if (!draining_ || stopped_ || !connections_.empty()) return;
  stopped_ = true;
  flush_access_log();
  for (auto& [key, pool] : pools_) pool->retire();
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&flush_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
}

}  // namespace ringproxy
