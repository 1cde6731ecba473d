// The process: loads the config, binds the listener, runs the workers, and runs the
// control loop on the main thread: signals (SIGHUP reload, SIGTERM/SIGINT drain,
// SIGUSR1 reopen), the admin endpoint, and health. Every change of routing (reload,
// admin mutation, health) is made here and published to the workers.
#pragma once

#include <uv.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "health/checker.h"
#include "health/node_health.h"
#include "net/poller.h"
#include "net/tls_context.h"
#include "proxy/admin_server.h"
#include "proxy/discovery_agent.h"
#include "proxy/gossip_agent.h"
#include "proxy/worker.h"

namespace ringproxy {

struct ReloadReport {
  bool ok = false;
  std::vector<std::string> errors;
  double moved_fraction = 0.0;  // of pool "default"'s key space, current ring -> new ring
  // Each pool's of the new config, by name: 1 for a pool the reload adds.
  std::map<std::string, double> moved_by_pool;
};

class Server {
 public:
  explicit Server(std::string config_path) : config_path_(std::move(config_path)) {}
  ~Server();
  // Runs until drained. Returns the process exit code (SPEC "Command line").
  int run();
  // run()'s first step: loads the config file and builds the first routing; binds and
  // starts nothing. Prints what is wrong to stderr and returns kExitConfig, or kExitOk.
  // Also how fuzz/ drives the admin API on a Server whose loops never run.
  int load();

  // Control thread only, below.

  // Loads and validates the config file; unless dry_run, publishes it. On any error the
  // running routing stays. Runtime (admin) changes not in the file are replaced.
  ReloadReport reload(bool dry_run);
  // Publishes `config` (an admin mutation of the running one), and with gossip on
  // writes its backends to the shared state. Returns "" or why not; when not, neither
  // the routing nor the shared state has changed.
  std::string apply(Config config);
  // Admin drain of node `name` of pool `pool`: this instance at once, and every instance
  // through gossip.
  void set_drained(const std::string& pool, const std::string& name, bool drained);
  // GET /members: this instance and every one known (only this one without gossip).
  std::string self_name() const;
  std::vector<gossip::Member> members() const;
  const Config& config() const { return *config_; }
  // GET /discovery and the metrics: each source and name, and what it found. Empty
  // until run() starts the agent.
  std::vector<DiscoveryAgent::Status> discovery_status() const;
  std::shared_ptr<const Routing> routing();
  // The Prometheus text exposition of every metric.
  std::string metrics_text();
  uint64_t started_ms() const { return started_ms_; }
  uv_loop_t* loop() { return &loop_; }

 private:
  static void on_signal(uv_signal_t* s, int signum);
  static void on_passive_health(uv_async_t* a);
  static void on_health_timer(uv_timer_t* t);
  static void on_ticket_timer(uv_timer_t* t);
  // The TLS contexts of `config`, loaded for new connections: every TLS file checked
  // (problems into *errors, warnings logged) and read. On an error, *errors says why
  // and the routing is not to be published.
  void load_tls(const Config& config, Routing& routing, std::vector<std::string>* errors);
  void publish(std::shared_ptr<const Routing> routing);
  void begin_drain();
  // A start-up failure after the control loop opened handles: says what, closes them.
  int fail_start(const std::string& message);
  // Health, per pool: the tables follow every routing change; verdicts and time move
  // nodes.
  void sync_health(const Routing& routing, HealthTable::Start added);
  void on_check(const std::string& pool, const std::string& name, bool ok, const std::string& detail);
  void passive_failures();
  void handle(const std::string& pool, const std::optional<HealthEvent>& event, const std::string& detail = {});
  void copy_state(const Pool& pool, const std::string& name);
  // Every node's of every pool: standby SRV priorities decided, then copy_state.
  void copy_states(const Routing& routing);
  void copy_states(const Pool& pool);
  const NodeHealth* node_health(const Pool& pool, std::string_view name) const;
  void arm_health_timer();
  // The shared backends or drains changed (gossip): rebuild from them.
  void on_gossip_shared();
  // Writes every pool's backends of `config` to the shared state (a reload or an admin
  // change here).
  void share_backends(const Config& config);
  // Hands worker i the sockets added[i] (listener id, fd) and has every worker stop
  // accepting on `removed`; returns once each has done so (or kListenerChangeWaitMs).
  static constexpr uint32_t kListenerChangeWaitMs = 2000;
  void change_listeners(std::vector<std::vector<std::pair<uint32_t, int>>> added, const std::vector<uint32_t>& removed);
  // Discovery (SPEC "Backends by name"). The routing of `config` with what discovery
  // found now: each source's set (the shared one with gossip, else this instance's),
  // and the addresses of named nodes. Null and *error when it cannot be built.
  std::shared_ptr<Routing> build(std::shared_ptr<const Config> config, std::string* error);
  // Which nodes the routing has beyond the config's, and which names to resolve.
  std::vector<FoundNode> current_found() const;
  void follow_names(const std::vector<FoundNode>& found);
  // An answer changed a source's set or a name's addresses.
  void on_discovered(const DiscoveryAgent::Change& change);
  // With gossip: writes what this instance's resolver found for `source` to the shared
  // state; the sources' first answers once this instance has the cluster's state, and
  // only where no instance has written the source yet.
  void share(const std::string& source);
  const DiscoverConfig* source_config(const std::string& source) const;  // null: not in config_
  void share_first_answers();
  std::set<std::string> first_answers_;
  // Rebuilds and publishes when what discovery found differs from the routing's.
  void refresh_found();
  // With gossip (issue 14): per source, whether the shared set still counts (some
  // instance's lease changed within its TTL + dns.hold_ms); observe_leases() reads the
  // leases and says when a source's shared set is dropped or taken back; lease_timer_
  // wakes refresh_found() when the next one would stop counting.
  std::map<std::string, SharedLease> leases_;
  void observe_leases();
  bool shared_counts(const std::string& source) const;
  static void on_lease_timer(uv_timer_t* t);
  uv_timer_t lease_timer_{};

  std::string config_path_;
  std::shared_ptr<const Config> config_;
  Shared shared_;
  uint64_t generation_ = 0;
  unsigned worker_count_ = 1;
  std::vector<std::unique_ptr<Worker>> workers_;
  uv_loop_t loop_{};
  Poller poller_;  // the control loop's sockets: admin connections, health probes
  uv_signal_t signals_[4]{};
  uv_async_t passive_async_{};
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<GossipAgent> gossip_;
  std::unique_ptr<DiscoveryAgent> discovery_;
  std::vector<FoundNode> found_;  // what the published routing was built with
  std::set<std::string> skipped_;  // found nodes named like configured ones (warned once)
  bool applying_ = false;  // apply() is writing the shared state itself
  std::set<std::string> majority_down_;  // backends most gossip instances see down (Pool::qualified names)
  // Each pool's health: its table (max_ejected_percent counts within the pool) and, once
  // run() starts the checks, its prober with the pool's [health] settings.
  struct PoolHealth {
    HealthTable table;
    std::unique_ptr<HealthChecker> checker;
  };
  std::map<std::string, PoolHealth, std::less<>> health_;  // by pool name
  bool checking_ = false;  // run() started: each pool gets a checker
  // Per node: when a refused ejection was last logged. A node failing while the cap
  // holds is refused on every eject_after_failures-th failure, hundreds a second under
  // load; the log says it once per kRefusalLogMs, the metric counts every one.
  static constexpr uint64_t kRefusalLogMs = 10000;
  std::map<std::string, uint64_t, std::less<>> refusal_logged_ms_;  // by Pool::qualified name
  uv_timer_t health_timer_{};
  // Session ticket keys, shared by every worker's handshakes and kept across reloads
  // (a reload does not end resumption); rotated every kTicketRotateMs. A ticket lives
  // one period (the contexts' session timeout) and its key two more at least.
  static constexpr uint64_t kTicketRotateMs = 3600 * 1000;
  std::shared_ptr<TicketKeys> ticket_keys_ = std::make_shared<TicketKeys>();
  uv_timer_t ticket_timer_{};
  bool draining_ = false;
  uint64_t started_ms_ = 0;
};

}  // namespace ringproxy
