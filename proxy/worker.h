// One event-loop thread: its own libuv loop, its own SO_REUSEPORT socket on each
// listening address (proxy.listen and every [[listener]]), its client connections and
// its upstream pools. Nothing is shared with other workers but the
// published Routing (copied on swap) and the atomic counters of NodeState.
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxy/backends.h"
#include "net/io_buffer.h"
#include "net/loop_clock.h"
#include "net/poller.h"
#include "proxy/metrics.h"
#include "proxy/rate_limited_log.h"
#include "proxy/upstream_pool.h"

namespace ringproxy {

class ClientConn;

// What the control thread hands the workers. The mutex guards only `routing`, read by
// a worker when woken to swap, never on the request path.
struct Shared {
  std::mutex mu;
  std::shared_ptr<const Routing> routing;
  std::atomic<uint32_t> connections{0};  // all workers, for max_connections
  // Client connections the descriptor limit serves (DescriptorBudget::connections);
  // beyond it a worker leaves new connections in the listen queue. Set before the
  // workers start, constant after.
  uint32_t connection_capacity = std::numeric_limits<uint32_t>::max();
  // Wakes the control loop when a node reaches eject_after_failures (set before the
  // workers start; uv_async_send is the one libuv call safe from any thread).
  // The handle stays open (unreferenced during a drain) until every worker is joined.
  std::atomic<uv_async_t*> passive_health{nullptr};
};

class Worker {
 public:
  // A condition that can repeat thousands of times a second is logged at most once
  // per this, per worker, with its count (RateLimitedLog).
  static constexpr uint64_t kLocalErrorLogMs = 10000;
  // Connections taken per readiness of the listener (accept_pending).
  static constexpr int kMaxAcceptsPerEvent = 64;
  // While accepting is paused for want of descriptors: how often to look again.
  static constexpr uint64_t kAcceptRetryMs = 100;

  // `listen_fd`: this worker's socket on proxy.listen (listener id 0).
  Worker(int id, Shared& shared, int listen_fd);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Another listening socket (bound, not listening) for listener `listener_id`
  // (ListenerRouting::id), before init().
  void add_listener(uint32_t listener_id, int fd) { pending_add_.emplace_back(listener_id, fd); }
  // Sets up the loop and the listeners (bound, not listening). On the control thread,
  // before start(). Returns a libuv error code.
  int init();
  void start();  // runs the loop on a new thread
  // What start() runs on its thread: the loop until drained (notify_drain) and every
  // handle closed. Callable instead on the calling thread by a harness that puts its own
  // handles on loop() (fuzz/proxy_harness.cc). Returns uv_loop_close()'s result: 0 when
  // nothing was left open.
  int run();
  // Start-up failed before start(): closes what init() opened, on this thread.
  void abort_unstarted();
  void join();

  // From the control thread: take the newest routing / drain and stop.
  void notify_routing();
  void notify_drain();
  // From the control thread (a reload): start accepting on new listeners' sockets
  // (bound, not listening; the worker owns them from here) and stop accepting on
  // `removed` ones, whose connections then drain (each closes after its response in
  // progress). Returns a ticket for wait_listeners: the control thread waits until the
  // worker has done it, so that a listener is removed before the routing without it is
  // published (no connection is accepted that its routing does not know) and a reload
  // answers once its listeners accept or refuse.
  uint64_t notify_listeners(std::vector<std::pair<uint32_t, int>> added, std::vector<uint32_t> removed);
  // Until the changes of `ticket` are applied, or `timeout_ms`; false on the timeout.
  bool wait_listeners(uint64_t ticket, uint32_t timeout_ms);

  // For connections on this worker's thread.
  uv_loop_t* loop() { return &loop_; }
  Poller& poller() { return poller_; }
  // Microseconds of uv_hrtime, read once per loop phase (net/loop_clock.h).
  uint64_t now_us() { return clock_.now_us(); }
  const Routing& routing() const { return *routing_; }
  const std::shared_ptr<const Routing>& routing_ptr() const { return routing_; }
  // The pool for node i of `routing`: the current routing's by index; an older one's
  // (a request routed before a reload, now retrying) by name and address.
  UpstreamPool& pool(const Routing& routing, const Pool& pool, NodeIndex i);
  // A retired pool's last connection is gone: the pool is freed (a worker whose
  // backends come and go keeps no pools for the ones that left).
  void drop_pool(UpstreamPool* pool);
  size_t pool_count() const { return pools_.size(); }
  BufferPool& buffers() { return buffers_; }
  Shared& shared() { return shared_; }
  int id() const { return id_; }
  WorkerStats& stats() { return stats_; }
  const WorkerStats& stats() const { return stats_; }
  void notify_passive_failure() {
    if (uv_async_t* a = shared_.passive_health.load(std::memory_order_acquire)) uv_async_send(a);
  }
  bool draining() const { return draining_; }
  void add_connection(ClientConn* c);
  void remove_connection(ClientConn* c);
  // A connect to node `node` failed for want of descriptors or memory here
  // (net/local_error.h; the client is answered 503 by its ClientConn): counted, logged
  // at most once per kLocalErrorLogMs with the count, and this worker frees what it can
  // (its idle upstream connections) and accepts no more until descriptors are free.
  void local_resource_error(int uv_status, std::string_view node);
  // Buffers an access-log line; flushed by a timer or when large.
  void access_log(std::string_view line);
  std::string& scratch() { return scratch_; }

 private:
  void take_routing();
  void begin_drain();
  void maybe_finish();
  void flush_access_log();
  // Finds or makes the pool for `b`; *made tells which. No allocation when found.
  UpstreamPool& pool_for(const Pool& pool, const Backend& b, bool* made = nullptr);
  // Accepting. The worker accepts itself (the listening socket on its Poller, and
  // accept4) rather than through uv_listen, because out of descriptors libuv drops the
  // queue: on EMFILE it closes a spare descriptor, accepts and closes every queued
  // connection, and says nothing; when its spare is gone (another thread took the
  // number) it reports EMFILE and tries again at once, in a loop (unix/stream.c,
  // uv__emfile_trick, uv__server_io). Measured under ulimit -n 100 with 300 clients:
  // 827 of 3,000 connections closed unanswered. Here, unwatching the listener pauses
  // accepting; the kernel keeps the connections queued until accepting resumes.
  // On the worker's Poller, level-triggered (Poller::add_listener).
  struct Listener final : Poller::Socket {
    Worker* worker = nullptr;
    uint32_t id = 0;
    int fd = -1;
    bool nodelay = false;  // accepted sockets inherit TCP_NODELAY from it
    uint64_t token = 0;    // its Poller registration, while fd >= 0
    void on_poll_events(uint32_t) override { worker->accept_pending(*this); }
    void on_poll_ready() override {}
    void on_poll_retired() override {}
  };
  // listen() and watch; a libuv error code.
  int open_listener(uint32_t id, int fd);
  void close_listener(Listener& l);
  void take_listener_changes();
  void accept_pending(Listener& l);
  // Whether to accept one more now: within the descriptor budget, and, when short since
  // a local error, with two descriptors free (the client's and its upstream's).
  bool may_accept();
  // Stops watching the listener; accept_timer_ looks again every kAcceptRetryMs, and at
  // once when one of our connections closes.
  void pause_accepting(bool out_of_descriptors);
  void retry_accept();
  void accept_failed(int status);
  // Out of descriptors: gives back the idle upstream connections; pause when asked next.
  void short_of_descriptors();
  void close_listeners();
  static void on_accept_timer(uv_timer_t* t);
  static void on_async(uv_async_t* a);
  static void on_flush_timer(uv_timer_t* t);
  static void on_drain_timer(uv_timer_t* t);

  int id_;
  Shared& shared_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  // Listener changes from the control thread (pending_add_ also holds the start's).
  std::mutex listeners_mu_;
  std::vector<std::pair<uint32_t, int>> pending_add_;
  std::vector<uint32_t> pending_remove_;
  uint64_t listener_posted_ = 0;   // tickets handed out (under listeners_mu_)
  uint64_t listener_applied_ = 0;  // the last ticket applied (under listeners_mu_)
  std::condition_variable listeners_cv_;
  std::atomic<bool> want_listeners_{false};
  uv_loop_t loop_{};
  uv_async_t async_{};
  LoopClock clock_;
  Poller poller_;  // the sockets of this loop: clients' and upstream connections
  uv_timer_t flush_timer_{};
  uv_timer_t drain_timer_{};
  uv_timer_t accept_timer_{};
  bool accept_paused_ = false;
  bool short_of_descriptors_ = false;  // a local error since descriptors were last free
  RateLimitedLog local_error_log_;
  RateLimitedLog pause_log_;
  std::thread thread_;
  std::atomic<bool> want_routing_{false};
  std::atomic<bool> want_drain_{false};
  bool draining_ = false;
  bool stopped_ = false;

  std::shared_ptr<const Routing> routing_;
  // Pools live as long as the worker, keyed by name and address, so a reload that keeps
  // a backend keeps its idle connections.
  std::unordered_map<std::string, std::unique_ptr<UpstreamPool>> pools_;
  std::vector<UpstreamPool*> pools_by_node_;
  BufferPool buffers_;
  std::vector<ClientConn*> connections_;  // unordered; ClientConn knows its slot
  WorkerStats stats_;
  std::string access_buf_;
  std::string scratch_;
};

}  // namespace ringproxy
