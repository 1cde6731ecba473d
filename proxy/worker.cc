#include "proxy/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>

#include "net/local_error.h"
#include "proxy/client_conn.h"
#include "proxy/descriptors.h"
#include "proxy/listen_socket.h"
#include "proxy/log.h"

namespace ringproxy {
namespace {
constexpr uint64_t kAccessLogFlushMs = 100;
constexpr size_t kAccessLogFlushBytes = 64 * 1024;
}  // namespace

Worker::Worker(int id, Shared& shared, int listen_fd)
    : id_(id),
      shared_(shared),
      local_error_log_(LogLevel::kWarn, kLocalErrorLogMs),
      pause_log_(LogLevel::kWarn, kLocalErrorLogMs) {
  pending_add_.emplace_back(0, listen_fd);
}

Worker::~Worker() {
  join();
  for (const auto& [id, fd] : pending_add_) ::close(fd);  // never opened (init() never ran)
}

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

uint64_t Worker::notify_listeners(std::vector<std::pair<uint32_t, int>> added, std::vector<uint32_t> removed) {
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    pending_add_.insert(pending_add_.end(), added.begin(), added.end());
    pending_remove_.insert(pending_remove_.end(), removed.begin(), removed.end());
    ticket = ++listener_posted_;
  }
  want_listeners_.store(true);
  uv_async_send(&async_);
  return ticket;
}

bool Worker::wait_listeners(uint64_t ticket, uint32_t timeout_ms) {
  std::unique_lock<std::mutex> lock(listeners_mu_);
  return listeners_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                [&] { return listener_applied_ >= ticket; });
}

int Worker::open_listener(uint32_t id, int fd) {
  auto l = std::make_unique<Listener>();
  l->worker = this;
  l->id = id;
  l->fd = fd;
  int rc = poller_.add_listener(fd, l.get(), &l->token);
  if (rc != 0) {
    ::close(fd);
    return rc;
  }
  // 511: what uv_listen was given before; the kernel caps it at net.core.somaxconn.
  if (::listen(fd, 511) != 0) rc = -errno;  // libuv's codes are -errno on unix
  // Linux copies TCP_NODELAY from the listener to what it accepts; the listener has
  // it when Server set it (a test's socketpair or a failed setsockopt does not).
  int nodelay = 0;
  socklen_t len = sizeof nodelay;
  l->nodelay = ::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0 && nodelay != 0;
  if (rc == 0 && (accept_paused_ || draining_)) rc = poller_.watch_listener(fd, l->token, false);
  listeners_.push_back(std::move(l));  // closed with the others, whatever rc says
  return rc;
}

void Worker::close_listener(Listener& l) {
  if (l.fd < 0) return;
  // Watched no longer (no event of this turn reaches it after forget): the socket can
  // go, and with it the connections queued on it.
  poller_.forget_listener(l.fd, l.token);
  ::close(l.fd);
  l.fd = -1;
}

void Worker::take_listener_changes() {
  // The routing that has the listeners added is published before they are handed over
  // (Server::reload): take it first, in case this turn saw the handover and not yet
  // the routing's notice.
  take_routing();
  std::vector<std::pair<uint32_t, int>> added;
  std::vector<uint32_t> removed;
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    added.swap(pending_add_);
    removed.swap(pending_remove_);
    ticket = listener_posted_;
  }
  for (const auto& [id, fd] : added) {
    if (draining_) {
      ::close(fd);
      continue;
    }
    if (const int rc = open_listener(id, fd); rc != 0) {
      RP_LOG(LogLevel::kError, "cannot accept on the new listener: " + std::string(uv_strerror(rc)));
    }
  }
  for (const uint32_t id : removed) {
    for (auto it = listeners_.begin(); it != listeners_.end();) {
      if ((*it)->id != id) {
        ++it;
        continue;
      }
      close_listener(**it);
      it = listeners_.erase(it);
    }
    // Its connections finish the response in progress and close. Copy: drain() may
    // close one, which edits the list.
    const std::vector<ClientConn*> all = connections_;
    for (ClientConn* c : all) {
      if (c->listener_id() == id) c->drain();
    }
  }
  {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    listener_applied_ = ticket;
  }
  listeners_cv_.notify_all();
}

int Worker::run() {
  // Handles are initialised on the worker's own thread, before anything can notify it:
  // Server::start waits for `ready` (see server.cc).
  take_routing();
  (void)id_;
  // The poller's epoll set is the loop's wait (net/poller.h, run).
  poller_.run([](void* clock) { static_cast<LoopClock*>(clock)->invalidate(); }, &clock_);
  // Every handle is closed by now (maybe_finish); run once more for close callbacks.
  uv_run(&loop_, UV_RUN_DEFAULT);
  const int rc = uv_loop_close(&loop_);
  if (rc != 0) RP_LOG(LogLevel::kError, "worker loop closed with handles open");
  return rc;
}

int Worker::init() {
  int rc = uv_loop_init(&loop_);
  if (rc < 0) return rc;
  clock_.init(&loop_);
  uv_async_init(&loop_, &async_, on_async);
  async_.data = this;
  uv_timer_init(&loop_, &flush_timer_);
  flush_timer_.data = this;
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  uv_timer_init(&loop_, &accept_timer_);
  accept_timer_.data = this;
  rc = poller_.init(&loop_);
  std::vector<std::pair<uint32_t, int>> start;
  start.swap(pending_add_);
  for (const auto& [id, fd] : start) {
    if (rc == 0) {
      rc = open_listener(id, fd);
    } else {
      ::close(fd);
    }
  }
  uv_timer_start(&flush_timer_, on_flush_timer, kAccessLogFlushMs, kAccessLogFlushMs);
  return rc;
}

void Worker::abort_unstarted() {
  if (loop_.data == nullptr && async_.loop == nullptr) return;  // init() never ran
  close_listeners();
  clock_.close();
  poller_.close();
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&async_),
                         reinterpret_cast<uv_handle_t*>(&flush_timer_), reinterpret_cast<uv_handle_t*>(&drain_timer_),
                         reinterpret_cast<uv_handle_t*>(&accept_timer_)}) {
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
  std::vector<UpstreamPool*> by_node(fresh->node_count());
  for (const Pool& pool : fresh->pools) {
    for (size_t i = 0; i < pool.backends.size(); ++i) {
      UpstreamPool*& p = by_node[pool.base + i];
      p = &pool_for(pool, pool.backends[i]);
      p->unretire();  // a backend removed and added again
    }
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

UpstreamPool& Worker::pool_for(const Pool& pool, const Backend& b, bool* made) {
  auto [it, inserted] = pools_.try_emplace(b.pool_key);  // copies the key only when inserting
  if (inserted) it->second = std::make_unique<UpstreamPool>(*this, b.pool_key, pool.name(), b.tls, b.tls_name, b.protocol);
  if (made) *made = inserted;
  return *it->second;
}

UpstreamPool& Worker::pool(const Routing& routing, const Pool& pool, NodeIndex i) {
  if (&routing == routing_.get()) return *pools_by_node_[pool.base + i];
  // A request routed before a reload, retrying: its node may have left since, and
  // then its pool lives only as long as its connections.
  bool made = false;
  UpstreamPool& p = pool_for(pool, pool.backends[i], &made);
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
  if (w->want_listeners_.exchange(false)) w->take_listener_changes();
  if (w->want_drain_.exchange(false)) w->begin_drain();
}

// Until the queue is empty, as uv_listen does, or kMaxAcceptsPerEvent connections: each
// now costs a read and the request's forwarding (its first read is at once), and the
// loop's other sockets wait meanwhile. The listener stays readable; the next turn of
// the loop takes the rest (HAProxy's tune.maxaccept is 64 likewise).
void Worker::accept_pending(Listener& l) {
  for (int taken = 0; taken < kMaxAcceptsPerEvent && !draining_ && !accept_paused_; ++taken) {
    if (!may_accept()) {
      pause_accepting(short_of_descriptors_);
      return;
    }
    sockaddr_storage peer;
    const int fd = accept_connection(l.fd, &peer);
    if (fd < 0) {
      if (fd != -EAGAIN) accept_failed(fd);
      return;
    }
    ClientConn::accept(*this, fd, reinterpret_cast<const sockaddr*>(&peer), l.id, l.nodelay);
  }
}

bool Worker::may_accept() {
  if (shared_.connections.load(std::memory_order_relaxed) >= shared_.connection_capacity) return false;
  if (!short_of_descriptors_) return true;
  if (listeners_.empty() || !descriptors_free(listeners_.front()->fd, 2)) return false;
  short_of_descriptors_ = false;
  return true;
}

void Worker::pause_accepting(bool out_of_descriptors) {
  if (accept_paused_ || draining_) return;
  accept_paused_ = true;
  for (const auto& l : listeners_) {
    if (l->fd >= 0) poller_.watch_listener(l->fd, l->token, false);
  }
  bump(stats_.accept_pauses);
  if (out_of_descriptors) {
    pause_log_.note(uv_now(&loop_), "accepting paused: out of file descriptors; new connections wait in the "
                                    "listen queue until some are free");
  } else {
    pause_log_.note(uv_now(&loop_), "accepting paused: " + std::to_string(shared_.connection_capacity) +
                                        " client connections open, as many as the file descriptor limit serves "
                                        "(see the start-up warning); new connections wait in the listen queue");
  }
  uv_timer_start(&accept_timer_, on_accept_timer, kAcceptRetryMs, kAcceptRetryMs);
}

void Worker::on_accept_timer(uv_timer_t* t) { static_cast<Worker*>(t->data)->retry_accept(); }

void Worker::retry_accept() {
  if (!accept_paused_ || draining_) {
    uv_timer_stop(&accept_timer_);
    return;
  }
  if (!may_accept()) return;  // the timer looks again
  accept_paused_ = false;
  uv_timer_stop(&accept_timer_);
  // Level-triggered: queued connections make the listeners readable at once.
  for (const auto& l : listeners_) {
    if (l->fd >= 0) poller_.watch_listener(l->fd, l->token, true);
  }
}

// Any accept error pauses: returning with the listener still readable would have the
// loop call us again at once, and again.
void Worker::accept_failed(int status) {
  const bool local = is_local_resource_error(status);
  if (local) {
    bump(stats_.local_errors_accept);
    short_of_descriptors();
  }
  local_error_log_.note(uv_now(&loop_), std::string(local ? "out of local resources: " : "") + "accept failed: " +
                                            uv_err_name(status) + " (" + uv_strerror(status) + "); accepting paused");
  pause_accepting(local);
}

void Worker::local_resource_error(int uv_status, std::string_view node) {
  bump(stats_.local_errors_connect);
  short_of_descriptors();
  local_error_log_.note(uv_now(&loop_), std::string("out of local resources: cannot connect to node=") +
                                            std::string(node) + ": " + uv_err_name(uv_status) + " (" +
                                            uv_strerror(uv_status) +
                                            "); answered 503, not counted against the node, not retried; "
                                            "accepting paused until descriptors are free");
}

void Worker::short_of_descriptors() {
  short_of_descriptors_ = true;
  // Ours to give back at once, cheap to open again once descriptors are free.
  for (auto& [key, pool] : pools_) pool->close_idle();
}

void Worker::close_listeners() {
  for (const auto& l : listeners_) close_listener(*l);
  listeners_.clear();
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
  // A descriptor or two were given back: look at once whether a waiting one can come in.
  if (accept_paused_ && !draining_) uv_timer_start(&accept_timer_, on_accept_timer, 0, kAcceptRetryMs);
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

void Worker::on_flush_timer(uv_timer_t* t) {
  auto* w = static_cast<Worker*>(t->data);
  w->flush_access_log();
  // The counts of a burst that has ended are written too, once their interval is over.
  const uint64_t now = uv_now(&w->loop_);
  w->local_error_log_.flush(now);
  w->pause_log_.flush(now);
}

void Worker::begin_drain() {
  if (draining_) return;
  draining_ = true;
  close_listeners();
  uv_timer_stop(&accept_timer_);
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
  clock_.close();
  poller_.close();  // once the pools' last connections are closed
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&flush_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&accept_timer_), nullptr);
}

}  // namespace ringproxy
