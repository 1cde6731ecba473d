#include "proxy/server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <chrono>
#include <ctime>
#include <iostream>
#include <set>

#include "net/tls_files.h"
#include "proxy/backends.h"
#include "proxy/cli.h"
#include "proxy/admin_api.h"
#include "proxy/descriptors.h"
#include "proxy/listen_socket.h"
#include "proxy/log.h"

namespace ringproxy {

namespace {

// A reload's new listening sockets, per listener one per worker, closed unless handed
// to the workers (a reload refused after they were bound leaks none).
struct ListenerSockets {
  std::vector<std::pair<uint32_t, std::vector<int>>> added;
  ListenerSockets() = default;
  ListenerSockets(const ListenerSockets&) = delete;
  ListenerSockets& operator=(const ListenerSockets&) = delete;
  ~ListenerSockets() {
    for (const auto& [id, fds] : added) {
      for (const int fd : fds) {
        if (fd >= 0) ::close(fd);
      }
    }
  }
};

}  // namespace

Server::~Server() = default;

void Server::publish(std::shared_ptr<const Routing> routing) {
  // Health first: a worker must never see a new node before its state (a ramp, or the
  // state of a node it replaces). Nodes added after start (reload, admin, a DNS answer)
  // have cold caches: they ramp like a returning node when slow_start_ms is set. Those
  // of the first DNS answers, which the start waits for before the workers exist, are
  // nodes the proxy starts with, as the file's are: they serve all their keys at once.
  sync_health(*routing, workers_.empty() ? HealthTable::Start::kServing : HealthTable::Start::kSlowStart);
  {
    std::lock_guard<std::mutex> lock(shared_.mu);
    shared_.routing = routing;
  }
  // Draining workers close their wake-up handles when done: none is woken then (a
  // uv_async_send on a closed handle aborts), and none needs a new ring.
  if (!draining_) {
    for (auto& w : workers_) w->notify_routing();
  }
  // Our "down" views of nodes that left every pool would otherwise stay in the shared
  // store for ever (gossip_agent.h, "Keeping the store small").
  if (gossip_) {
    std::set<std::string> nodes;
    for (const Pool& pool : routing->pools) {
      for (const Backend& b : pool.backends) nodes.insert(pool.qualified(b.name));
    }
    gossip_->forget_health(nodes);
  }
}

void Server::sync_health(const Routing& routing, HealthTable::Start added) {
  const uint64_t now = uv_now(&loop_);
  // A pool that left takes its table and its prober with it.
  for (auto it = health_.begin(); it != health_.end();) {
    if (routing.find_pool(it->first)) {
      ++it;
      continue;
    }
    if (it->second.checker) it->second.checker->stop();
    it = health_.erase(it);
  }
  for (const Pool& pool : routing.pools) {
    // A pool new to this routing (a reload added it) serves at once, as every pool does
    // at start: all its nodes ramping together would turn away the same keys at each of
    // them (slow_start_admits depends on the key and the ramp), hence 503s.
    const bool new_pool = !health_.contains(pool.name());
    PoolHealth& ph = health_[pool.name()];
    const HealthConfig& h = pool.config.health;
    ph.table.set_config(h);
    std::vector<std::string> names;
    std::vector<CheckTarget> targets;
    for (const Backend& b : pool.backends) {
      names.push_back(b.name);
      // A named node with no address is not probed: it is down until its name resolves.
      if (b.sockaddrs.empty()) continue;
      targets.push_back({b.name, b.sockaddrs[0], {b.sockaddrs.begin() + 1, b.sockaddrs.end()}, b.address.to_string(),
                         b.tls ? pool.upstream_tls : nullptr, b.tls_name, b.protocol != BackendProtocol::kHttp1});
    }
    ph.table.set_nodes(names, now, h.slow_start_ms > 0 && !new_pool ? added : HealthTable::Start::kServing);
    if (!checking_) continue;
    const bool made = !ph.checker;
    if (made) {
      ph.checker = std::make_unique<HealthChecker>(
          poller_, [this, name = pool.name()](const std::string& node, bool ok, const std::string& detail) {
            on_check(name, node, ok, detail);
          });
    }
    ph.checker->configure(std::move(targets), {h.path, h.interval_ms, h.timeout_ms});
    if (made) ph.checker->start();
  }
  copy_states(routing);
  arm_health_timer();
}

const NodeHealth* Server::node_health(const Pool& pool, std::string_view name) const {
  const auto it = health_.find(pool.name());
  return it == health_.end() ? nullptr : it->second.table.find(name);
}

// The table's view of `name` into the NodeState the workers read.
void Server::copy_state(const Pool& pool, const std::string& name) {
  const NodeHealth* h = node_health(pool, name);
  const auto index = pool.ring->find(name);
  if (!h || !index) return;
  const Backend& b = pool.backends[*index];
  NodeState& st = *b.state;
  // Gossip: what most instances see counts too (gossip_agent.h, "Health agreement").
  const bool majority_down = gossip_ && majority_down_.count(pool.qualified(name)) > 0;
  // A named node with no address, and a standby SRV record, take no keys either.
  st.up.store(h->state() != HealthState::kDown && !majority_down && !b.sockaddrs.empty() &&
                  !st.standby.load(std::memory_order_relaxed),
              std::memory_order_relaxed);
  st.ejected.store(h->state() == HealthState::kEjected, std::memory_order_relaxed);
  const uint64_t ramp_end = h->slow_start_until();
  st.set_ramp(ramp_end ? h->up_since() : 0, ramp_end);
}

void Server::handle(const std::string& pool_name, const std::optional<HealthEvent>& event, const std::string& detail) {
  if (!event) return;
  const auto r = routing();
  const Pool* pool = r->find_pool(pool_name);
  const auto it = health_.find(pool_name);
  if (!pool || it == health_.end()) return;
  const std::string node = pool->qualified(event->node);
  const auto index = pool->ring->find(event->node);
  if (index) {
    NodeState& st = *pool->backends[*index].state;
    if (event->kind == HealthEventKind::kEjected) st.ejections.fetch_add(1);
    if (event->kind == HealthEventKind::kEjectionRefused) st.ejections_refused.fetch_add(1);
  }
  if (index && !pool->backends[*index].source.empty()) {
    copy_states(*pool);  // an SRV priority may change hands
  } else {
    copy_state(*pool, event->node);
  }
  if (gossip_) gossip_->report_health(node, !it->second.table.find(event->node)->usable());
  bool log = true;
  if (event->kind == HealthEventKind::kEjectionRefused) {
    const uint64_t now = uv_now(loop());
    auto [logged, first] = refusal_logged_ms_.try_emplace(node, now);
    log = first || now - logged->second >= kRefusalLogMs;
    if (log) logged->second = now;
  }
  const LogLevel level = event->kind == HealthEventKind::kUp ? LogLevel::kInfo : LogLevel::kWarn;
  if (log) RP_LOG(level, "health: node=" + node + " " + std::string(to_string(event->from)) + " -> " +
                    std::string(to_string(event->to)) + ": " + event->reason +
                    (detail.empty() ? "" : " (last: " + detail + ")"));
  arm_health_timer();
}

void Server::on_check(const std::string& pool, const std::string& name, bool ok, const std::string& detail) {
  const auto it = health_.find(pool);
  if (it == health_.end()) return;
  handle(pool, it->second.table.on_check(name, ok ? Outcome::kSuccess : Outcome::kFailure, uv_now(&loop_)), detail);
}

void Server::passive_failures() {
  const auto r = routing();
  const uint64_t now = uv_now(&loop_);
  for (const Pool& pool : r->pools) {
    const uint32_t threshold = pool.config.health.eject_after_failures;
    const auto it = health_.find(pool.name());
    if (threshold == 0 || it == health_.end()) continue;
    for (const Backend& b : pool.backends) {
      // Workers count a node's failures in a row (a success resets it) and wake us when
      // the count reaches the threshold: the table is told of that run at once.
      if (b.state->consecutive_failures.load(std::memory_order_relaxed) < threshold) continue;
      b.state->consecutive_failures.store(0, std::memory_order_relaxed);
      std::optional<HealthEvent> event;
      for (uint32_t i = 0; i < threshold; ++i) {
        if (auto e = it->second.table.on_request(b.name, Outcome::kFailure, now)) event = e;
      }
      handle(pool.name(), event, "passive");
    }
  }
}

void Server::arm_health_timer() {
  if (draining_ || health_timer_.loop == nullptr) return;  // not yet, or no longer, open
  std::optional<uint64_t> deadline;
  for (const auto& [name, ph] : health_) {
    if (const auto d = ph.table.next_deadline(); d && (!deadline || *d < *deadline)) deadline = d;
  }
  if (!deadline) {
    uv_timer_stop(&health_timer_);
    return;
  }
  const uint64_t now = uv_now(&loop_);
  uv_timer_start(&health_timer_, on_health_timer, *deadline > now ? *deadline - now : 0, 0);
}

void Server::on_ticket_timer(uv_timer_t* t) { static_cast<Server*>(t->data)->ticket_keys_->rotate(); }

void Server::on_health_timer(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  std::vector<std::pair<std::string, HealthEvent>> events;
  for (auto& [name, ph] : self->health_) {
    for (HealthEvent& e : ph.table.tick(uv_now(&self->loop_))) events.emplace_back(name, std::move(e));
  }
  for (const auto& [pool, e] : events) self->handle(pool, e);
  self->arm_health_timer();
}

std::shared_ptr<const Routing> Server::routing() {
  std::lock_guard<std::mutex> lock(shared_.mu);
  return shared_.routing;
}

void Server::load_tls(const Config& config, Routing& routing, std::vector<std::string>* errors) {
  // Every TLS file the config names, upstream_tls's too: an error refuses the config,
  // a warning (a certificate about to expire) is logged.
  for (const TlsFileProblem& p : check_tls_files(config, std::time(nullptr))) {
    if (p.severity == TlsFileSeverity::kError) {
      errors->push_back(p.to_string(config_path_));
    } else {
      RP_LOG(LogLevel::kWarn, p.to_string(config_path_));
    }
  }
  if (!errors->empty()) return;
  std::string error;
  for (size_t i = 0; i < routing.listeners.size(); ++i) {
    ListenerRouting& l = routing.listeners[i];
    l.tls = nullptr;
    if (!l.tls_config.enabled) continue;
    l.tls = ServerTlsContext::create(l.tls_config, ticket_keys_, &error, config.proxy.alpn);
    const std::string key = i == 0 ? "proxy.tls" : "listener[" + std::to_string(i - 1) + "].tls";
    if (!l.tls) errors->push_back(config_path_ + ": " + key + ": " + error);
  }
  // Made whether or not a node speaks TLS now: one added later (admin, gossip) may.
  // One per distinct [upstream_tls]: a pool that takes the top level's shares its.
  const auto top = ClientTlsContext::create(config.upstream_tls, &error);
  if (!top) errors->push_back(config_path_ + ": upstream_tls: " + error);
  for (Pool& pool : routing.pools) {
    if (pool.is_default() || pool.config.upstream_tls == config.upstream_tls) {
      pool.upstream_tls = top;
      continue;
    }
    pool.upstream_tls = ClientTlsContext::create(pool.config.upstream_tls, &error);
    if (!pool.upstream_tls) errors->push_back(config_path_ + ": pool " + pool.name() + ": upstream_tls: " + error);
  }
}

ReloadReport Server::reload(bool dry_run) {
  ReloadReport report;
  ConfigResult r = load_config_file(config_path_);
  for (const ConfigError& e : r.errors) report.errors.push_back(e.to_string());
  if (!r.ok()) return report;
  if (!dry_run) {
    for (const ConfigError& w : r.warnings) RP_LOG(LogLevel::kWarn, "reload: " + w.to_string());
  }
  auto config = std::make_shared<const Config>(std::move(r.config));
  const std::shared_ptr<const Routing> current = routing();
  std::string error;
  auto next = build(config, &error);
  if (!next) {
    report.errors.push_back(config_path_ + ": " + error);
    return report;
  }
  // Certificates and keys are read again whether or not their paths changed: a reload
  // is how an operator rolls a renewed certificate in. New handshakes take them; open
  // connections keep the context they were made with.
  load_tls(*config, *next, &report.errors);
  if (!report.errors.empty()) return report;
  // Listeners the reload adds are bound now (a plain bind first, as at start: another
  // process's port refuses the reload before anything has changed), one socket per
  // worker; those it removes stop accepting once the routing is published.
  ListenerSockets sockets;
  std::vector<uint32_t> removed;
  for (const ListenerRouting& l : current->listeners) {
    const bool kept = std::any_of(next->listeners.begin(), next->listeners.end(),
                                  [&](const ListenerRouting& n) { return n.id == l.id; });
    if (!kept) removed.push_back(l.id);
  }
  for (const ListenerRouting& l : next->listeners) {
    const bool known = std::any_of(current->listeners.begin(), current->listeners.end(),
                                   [&](const ListenerRouting& c) { return c.id == l.id; });
    if (known) continue;
    const int probe = bind_listener(l.listen, false, &error);
    if (probe >= 0) ::close(probe);
    std::vector<int> fds;
    for (size_t i = 0; probe >= 0 && !dry_run && i < workers_.size(); ++i) {
      const int fd = bind_listener(l.listen, true, &error);
      if (fd < 0) break;
      fds.push_back(fd);
    }
    sockets.added.emplace_back(l.id, std::move(fds));
    if (probe < 0 || (!dry_run && sockets.added.back().second.size() != workers_.size())) {
      report.errors.push_back(config_path_ + ": cannot listen on " + l.listen.to_string() + ": " + error);
      return report;  // the sockets bound so far close with `sockets`
    }
  }
  report.ok = true;
  // Pool "default"'s; each pool's is logged below.
  report.moved_fraction = Ring::moved_fraction(*current->default_pool().ring, *next->default_pool().ring);
  for (const Pool& pool : next->pools) {
    const Pool* before = current->find_pool(pool.name());
    report.moved_by_pool[pool.name()] = before ? Ring::moved_fraction(*before->ring, *pool.ring) : 1.0;
  }
  if (dry_run) return report;
  if (config->proxy.listen != config_->proxy.listen || config->proxy.workers != config_->proxy.workers ||
      config->admin.listen != config_->admin.listen || config->admin.enabled != config_->admin.enabled) {
    RP_LOG(LogLevel::kWarn, "reload: proxy.listen, proxy.workers and admin.listen take effect at restart only");
  }
  if (!config->upstream_tls.verify && config_->upstream_tls.verify) {
    RP_LOG(LogLevel::kWarn, "upstream_tls.verify = false: TLS backends' certificates and names are not checked");
  }
  if (discovery_) {
    // New sources and names are asked now, and their nodes join when they answer
    // (refresh_found below); sources kept keep what they found. First, so that a
    // resolver that cannot start refuses the reload before anything else changed.
    if (std::string e = discovery_->configure(config->dns, all_sources(*config)); !e.empty()) {
      report.ok = false;
      report.errors.push_back(config_path_ + ": dns: " + e);
      return report;
    }
  }
  if (config->proxy.access_log != config_->proxy.access_log) {
    const std::string e = AccessLog::open(config->proxy.access_log);
    if (!e.empty()) RP_LOG(LogLevel::kError, e);
  }
  Log::set_level(config->proxy.log_level);
  if (gossip_) {
    // A reload at one instance makes its file's backends the shared set, everywhere.
    share_backends(*config);
    // A pool the reload removed: its shared set is emptied, so that every instance
    // stops sending its requests there too.
    applying_ = true;
    for (const PoolConfig& p : config_->pools) {
      const bool kept = std::any_of(config->pools.begin(), config->pools.end(),
                                    [&](const PoolConfig& q) { return q.name == p.name; });
      if (!kept) gossip_->replace_backends(p.name, {});
    }
    applying_ = false;
  }
  std::string moved;
  for (const Pool& pool : next->pools) {
    const Pool* before = current->find_pool(pool.name());
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.2f%%", report.moved_by_pool[pool.name()] * 100.0);
    if (next->pools.size() > 1) moved += (moved.empty() ? "pool " : "; pool ") + pool.name() + ": ";
    moved += std::to_string(pool.backends.size()) + " backends, " + pct + " of keys moved" + (before ? "" : " (new)");
  }
  std::string listeners;
  for (const auto& [id, fds] : sockets.added) listeners += ", now listening on " + next->listener(id)->listen.to_string();
  for (const uint32_t id : removed) {
    listeners += ", no longer listening on " + current->listener(id)->listen.to_string() + " (its connections drain)";
  }
  // Listeners the reload removes stop accepting before the routing without them is
  // published, and those it adds start once the routing with them is: a connection is
  // never accepted on a listener its worker's routing does not have. The reload answers
  // once every worker has done both (new connections then connect, or are refused).
  if (!draining_ && !removed.empty()) change_listeners({}, removed);
  ++generation_;
  config_ = config;
  publish(std::move(next));
  if (!draining_ && !sockets.added.empty()) {
    std::vector<std::vector<std::pair<uint32_t, int>>> add(workers_.size());
    for (size_t i = 0; i < workers_.size(); ++i) {
      for (auto& [id, fds] : sockets.added) add[i].emplace_back(id, std::exchange(fds[i], -1));
    }
    change_listeners(std::move(add), {});
  }
  refresh_found();  // sources and named nodes the reload added or removed
  RP_LOG(LogLevel::kInfo, "reloaded " + config_path_ + ": " + moved + listeners);
  return report;
}

namespace {
bool same_backends(std::vector<BackendConfig> a, std::vector<BackendConfig> b) {
  const auto by_name = [](const BackendConfig& x, const BackendConfig& y) { return x.name < y.name; };
  std::sort(a.begin(), a.end(), by_name);
  std::sort(b.begin(), b.end(), by_name);
  return a == b;
}

// Every pool's backends in `config`, by pool name: what gossip shares.
GossipAgent::PoolBackends backends_by_pool(const Config& config) {
  GossipAgent::PoolBackends out;
  out["default"] = config.backends;
  for (const PoolConfig& p : config.pools) out[p.name] = p.backends;
  return out;
}
}  // namespace

void Server::change_listeners(std::vector<std::vector<std::pair<uint32_t, int>>> added,
                              const std::vector<uint32_t>& removed) {
  std::vector<uint64_t> tickets;
  for (size_t i = 0; i < workers_.size(); ++i) {
    tickets.push_back(workers_[i]->notify_listeners(i < added.size() ? std::move(added[i])
                                                                     : std::vector<std::pair<uint32_t, int>>{},
                                                    removed));
  }
  // One deadline for all: a worker answers within a turn of its loop; one that does not
  // within this is stuck in a long turn, and the reload goes on without it (it applies
  // them later).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kListenerChangeWaitMs);
  for (size_t i = 0; i < workers_.size(); ++i) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (!workers_[i]->wait_listeners(tickets[i], static_cast<uint32_t>(std::max<int64_t>(0, left.count())))) {
      RP_LOG(LogLevel::kWarn, "reload: worker " + std::to_string(i) + " took over " +
                                  std::to_string(kListenerChangeWaitMs) + " ms to change its listeners");
    }
  }
}

void Server::share_backends(const Config& config) {
  applying_ = true;
  for (const auto& [pool, backends] : backends_by_pool(config)) gossip_->replace_backends(pool, backends);
  applying_ = false;
}

void Server::on_gossip_shared() {
  if (applying_ || !gossip_ || draining_) return;
  Config next = *config_;
  std::vector<std::string> changed;  // the pools whose shared set differs from ours
  for (const auto& [pool, mine] : backends_by_pool(*config_)) {
    auto shared = gossip_->backends(pool);
    if (!shared || same_backends(*shared, mine)) continue;
    *pool_backends(next, pool) = std::move(*shared);
    changed.push_back(pool);
  }
  if (!changed.empty()) {
    applying_ = true;
    const std::string e = apply(std::move(next));
    applying_ = false;
    if (!e.empty()) {
      RP_LOG(LogLevel::kError, "gossip: shared backends refused: " + e);
    } else {
      const auto r = routing();
      for (const std::string& name : changed) {
        const Pool& pool = *r->find_pool(name);
        RP_LOG(LogLevel::kInfo, "gossip: applied shared backends" + (pool.is_default() ? "" : " of pool " + name) + ": " +
                                    std::to_string(pool.config.backends.size()) + " nodes, ring " + pool.ring->fingerprint());
      }
    }
  }
  const auto drained = gossip_->drained();
  auto majority = gossip_->majority_down();
  const auto r = routing();
  bool drains_changed = false;
  for (const Pool& pool : r->pools) {
    for (const Backend& b : pool.backends) {
      const bool d = drained.count(pool.qualified(b.name)) > 0;
      drains_changed |= b.state->draining.exchange(d) != d;
    }
  }
  if (drains_changed) copy_states(*r);
  if (majority != majority_down_) {
    for (const std::string& name : majority) {
      if (!majority_down_.count(name)) RP_LOG(LogLevel::kWarn, "gossip: most instances see node=" + name + " down");
    }
    for (const std::string& name : majority_down_) {
      if (!majority.count(name)) RP_LOG(LogLevel::kInfo, "gossip: most instances no longer see node=" + name + " down");
    }
    majority_down_ = std::move(majority);
    copy_states(*r);
  }
  share_first_answers();  // once settled
  refresh_found();        // the shared sets of [[discover]] sources
}

void Server::set_drained(const std::string& pool_name, const std::string& name, bool drained) {
  const auto r = routing();
  const Pool* pool = r->find_pool(pool_name);
  if (!pool) return;
  if (auto i = pool->ring->find(name)) {
    pool->backends[*i].state->draining.store(drained);
    if (!pool->backends[*i].source.empty()) copy_states(*pool);  // an SRV priority may change hands
  }
  if (gossip_) gossip_->set_drained(pool->qualified(name), drained);
}

std::string Server::self_name() const {
  if (gossip_) return gossip_->name();
  return config_->gossip.name.empty() ? config_->proxy.listen.to_string() : config_->gossip.name;
}

std::vector<gossip::Member> Server::members() const {
  if (gossip_) return gossip_->members();
  gossip::Member self;
  self.name = self_name();
  self.address = "";
  return {self};
}

std::string Server::apply(Config config) {
  config.path = config_->path;
  auto shared_config = std::make_shared<const Config>(std::move(config));
  const std::shared_ptr<const Routing> current = routing();
  std::string error;
  // Validated (the routing built) before anything is shared: a change refused here
  // must not reach the gossip state, where every instance would be handed it.
  auto next = build(shared_config, &error);
  if (!next) return error;
  if (gossip_ && !applying_) {
    // Then written to the shared state; the local publish below follows at once.
    share_backends(*shared_config);
  }
  ++generation_;
  config_ = shared_config;
  publish(std::move(next));
  refresh_found();  // a named node added or removed: its name followed or forgotten
  return {};
}

int Server::fail_start(const std::string& message) {
  std::cerr << "ringproxy: " << message << '\n';
  // Every handle opened so far is closed and its loop run dry (STYLE rule 4), so that a
  // failed start leaks nothing, not even under LeakSanitizer. The checker, admin server
  // and gossip agent may be destroyed before that run: each keeps its handles on the
  // heap, freed by their close callbacks, which the uv_run below calls.
  for (auto& w : workers_) w->abort_unstarted();
  workers_.clear();
  health_.clear();
  admin_.reset();
  gossip_.reset();
  discovery_.reset();
  if (health_timer_.loop) uv_close(reinterpret_cast<uv_handle_t*>(&health_timer_), nullptr);
  if (lease_timer_.loop) uv_close(reinterpret_cast<uv_handle_t*>(&lease_timer_), nullptr);
  if (ticket_timer_.loop) uv_close(reinterpret_cast<uv_handle_t*>(&ticket_timer_), nullptr);
  poller_.close();  // once the probes and admin connections closed above are retired
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  return kExitConfig;
}

void Server::begin_drain() {
  if (draining_) return;
  draining_ = true;
  RP_LOG(LogLevel::kInfo, "draining: finishing requests in flight");
  for (auto& w : workers_) w->notify_drain();
  // Closing a signal handle restores the default action, which for SIGHUP, SIGUSR1 and
  // SIGTERM would kill the process and the requests it is finishing (logrotate sends
  // SIGUSR1 at any time). Their handles stay, unreferenced so that they do not keep the
  // loop alive, and on_signal ignores them while draining. SIGINT's closes: a second
  // Ctrl-C ends the process at once.
  for (auto& sig : signals_) {
    if (sig.signum == SIGINT) {
      uv_close(reinterpret_cast<uv_handle_t*>(&sig), nullptr);
    } else {
      uv_unref(reinterpret_cast<uv_handle_t*>(&sig));
    }
  }
  // Workers still draining may wake it: it stays open, unreferenced, until they are
  // joined (uv_async_send on a closed handle is not allowed).
  uv_unref(reinterpret_cast<uv_handle_t*>(&passive_async_));
  if (admin_) admin_->close();
  for (auto& [name, ph] : health_) {
    if (ph.checker) ph.checker->stop();
  }
  if (discovery_) discovery_->close();
  uv_close(reinterpret_cast<uv_handle_t*>(&health_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&lease_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ticket_timer_), nullptr);
  // A graceful leave: the others learn at once that this instance is going, not after
  // a suspicion timeout. Its handles close after a short grace, on this loop.
  if (gossip_) gossip_->leave(nullptr);
}

void Server::on_passive_health(uv_async_t* a) { static_cast<Server*>(a->data)->passive_failures(); }

void Server::on_signal(uv_signal_t* s, int signum) {
  auto* self = static_cast<Server*>(s->data);
  if (self->draining_) {
    RP_LOG(LogLevel::kInfo, std::string("ignoring ") + strsignal(signum) + " while draining");
    return;
  }
  switch (signum) {
    case SIGHUP: {
      const ReloadReport report = self->reload(false);
      for (const auto& e : report.errors) RP_LOG(LogLevel::kError, "reload refused: " + e);
      break;
    }
    case SIGUSR1: {
      const std::string e = AccessLog::reopen();
      if (!e.empty()) RP_LOG(LogLevel::kError, e);
      break;
    }
    default:  // SIGTERM, SIGINT
      self->begin_drain();
      break;
  }
}

int Server::load() {
  ConfigResult r = load_config_file(config_path_);
  if (!r.ok()) {
    for (const ConfigError& e : r.errors) std::cerr << e.to_string() << '\n';
    return kExitConfig;
  }
  for (const ConfigError& w : r.warnings) RP_LOG(LogLevel::kWarn, w.to_string());
  config_ = std::make_shared<const Config>(std::move(r.config));
  Log::set_level(config_->proxy.log_level);
  if (std::string e = AccessLog::open(config_->proxy.access_log); !e.empty()) {
    std::cerr << "ringproxy: " << e << '\n';
    return kExitConfig;
  }
  worker_count_ = config_->proxy.workers ? config_->proxy.workers : uv_available_parallelism();
  std::string error;
  auto routing = build_routing(config_, nullptr, ++generation_, worker_count_, &error);
  if (!routing) {
    std::cerr << "ringproxy: " << config_path_ << ": " << error << '\n';
    return kExitConfig;
  }
  std::vector<std::string> tls_errors;
  load_tls(*config_, *routing, &tls_errors);
  if (!tls_errors.empty()) {
    for (const std::string& e : tls_errors) std::cerr << e << '\n';
    return kExitConfig;
  }
  if (!config_->upstream_tls.verify) {
    RP_LOG(LogLevel::kWarn, "upstream_tls.verify = false: TLS backends' certificates and names are not checked");
  }
  shared_.routing = routing;
  return kExitOk;
}

int Server::run() {
  if (const int rc = load(); rc != kExitOk) return rc;
  // Before anything is opened, so that every descriptor counts against the raised limit.
  const NofileLimit nofile = raise_nofile_limit();
  if (!nofile.error.empty()) {
    RP_LOG(LogLevel::kWarn, "cannot raise RLIMIT_NOFILE from " + std::to_string(nofile.soft) + " to the hard limit " +
                                std::to_string(nofile.hard) + ": " + nofile.error);
  } else if (nofile.soft != nofile.before) {
    RP_LOG(LogLevel::kInfo, "RLIMIT_NOFILE raised from " + std::to_string(nofile.before) + " to " +
                                std::to_string(nofile.soft) + " (the hard limit)");
  }
  const std::shared_ptr<const Routing> routing = shared_.routing;
  std::string error;
  const Address& listen = config_->proxy.listen;
  // A plain bind first: SO_REUSEPORT would let us share a port another process holds.
  for (const ListenerRouting& l : routing->listeners) {
    const int probe = bind_listener(l.listen, false, &error);
    if (probe < 0) {
      std::cerr << "ringproxy: cannot listen on " << l.listen.to_string() << ": " << error << '\n';
      return kExitConfig;
    }
    ::close(probe);
  }

  uv_loop_init(&loop_);
  if (const int rc = poller_.init(&loop_); rc < 0) {
    uv_loop_close(&loop_);
    std::cerr << "ringproxy: cannot start the control loop: " << uv_strerror(rc) << '\n';
    return kExitConfig;
  }
  started_ms_ = uv_now(&loop_);
  uv_timer_init(&loop_, &health_timer_);
  health_timer_.data = this;
  uv_timer_init(&loop_, &ticket_timer_);
  ticket_timer_.data = this;
  uv_timer_init(&loop_, &lease_timer_);
  lease_timer_.data = this;
  uv_timer_start(&ticket_timer_, on_ticket_timer, kTicketRotateMs, kTicketRotateMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&ticket_timer_));  // never what keeps the loop going
  checking_ = true;  // each pool's checker starts with its first round
  sync_health(*routing, HealthTable::Start::kServing);
  if (config_->gossip.enabled) {
    gossip_ = std::make_unique<GossipAgent>(&loop_, [this] { on_gossip_shared(); });
    if (std::string e = gossip_->start(config_->gossip, backends_by_pool(*config_)); !e.empty()) {
      return fail_start("gossip: " + e);
    }
  }
  // Always: a reload may add a named node or a source. It asks nothing until then.
  discovery_ = std::make_unique<DiscoveryAgent>(
      &loop_, [this](const DiscoveryAgent::Change& change) { on_discovered(change); });
  if (std::string e = discovery_->configure(config_->dns, all_sources(*config_)); !e.empty()) {
    return fail_start("dns: " + e);
  }
  refresh_found();  // asks the named nodes' names
  // The start waits about one resolver timeout for first answers, so that it serves
  // with its nodes resolved.
  if (!discovery_->await_first_answers()) {
    RP_LOG(LogLevel::kWarn, "dns: starting before every name has answered; its nodes join when it does");
  }
  if (config_->admin.enabled) {
    admin_ = std::make_unique<AdminServer>(poller_, make_admin_handler(*this));
    if (std::string e = admin_->listen(config_->admin.listen); !e.empty()) {
      return fail_start("cannot listen on " + config_->admin.listen.to_string() + " (admin): " + e);
    }
    const std::string& host = config_->admin.listen.host;
    const bool loopback = host.rfind("127.", 0) == 0 || host == "::1";
    if (!loopback && config_->admin.token.empty()) {
      RP_LOG(LogLevel::kWarn, "admin endpoint on " + config_->admin.listen.to_string() +
                                  " is reachable beyond loopback and has no admin.token: anyone who can "
                                  "reach it can change the ring");
    }
  }

  signal(SIGPIPE, SIG_IGN);
  for (unsigned i = 0; i < worker_count_; ++i) {
    const int fd = bind_listener(listen, true, &error);
    if (fd < 0) return fail_start("cannot listen on " + listen.to_string() + ": " + error);
    auto w = std::make_unique<Worker>(static_cast<int>(i), shared_, fd);
    for (size_t k = 1; k < routing->listeners.size(); ++k) {
      const ListenerRouting& l = routing->listeners[k];
      const int more = bind_listener(l.listen, true, &error);
      if (more < 0) return fail_start("cannot listen on " + l.listen.to_string() + ": " + error);
      w->add_listener(l.id, more);
    }
    const int rc = w->init();
    workers_.push_back(std::move(w));
    if (rc < 0) return fail_start("cannot listen: " + std::string(uv_strerror(rc)));
  }

  // Everything that is not a client's is open now (each loop's signal pipe comes with
  // the loop; libuv's spare, one per loop from its first connection, is in kTransient):
  // the descriptor budget, and the warning when max_connections does not fit. Where
  // /proc is missing, an estimate: stdio, and per loop epoll, eventfd, signal pipe and
  // spare, and a listener per worker.
  const DescriptorBudget budget{nofile.soft, count_open_descriptors().value_or(3 + 5 * (worker_count_ + 1))};
  if (nofile.soft > 0) {  // 0: getrlimit failed, the limit is unknown
    shared_.connection_capacity = static_cast<uint32_t>(std::min<uint64_t>(budget.connections(), UINT32_MAX));
    const uint32_t max_connections = config_->proxy.max_connections;
    const bool chosen = max_connections != ProxyConfig{}.max_connections;
    if (const ShortfallNote n = shortfall_note(budget, max_connections, nofile.hard, chosen); !n.text.empty()) {
      RP_LOG(n.warn ? LogLevel::kWarn : LogLevel::kInfo, n.text);
    }
  }

  const int signums[4] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
  for (int i = 0; i < 4; ++i) {
    uv_signal_init(&loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], on_signal, signums[i]);
  }
  uv_async_init(&loop_, &passive_async_, on_passive_health);
  passive_async_.data = this;
  shared_.passive_health.store(&passive_async_, std::memory_order_release);
  for (auto& w : workers_) w->start();
  std::string addresses = listen.to_string();
  for (size_t k = 1; k < routing->listeners.size(); ++k) addresses += ", " + routing->listeners[k].listen.to_string();
  RP_LOG(LogLevel::kInfo, "listening on " + addresses + " with " + std::to_string(worker_count_) +
                              " workers, " + std::to_string(Server::routing()->node_count()) + " backends" +
                              (admin_ ? ", admin on " + config_->admin.listen.to_string() : "") +
                              "; file descriptors: limit " + std::to_string(budget.limit) + ", " +
                              std::to_string(budget.in_use) + " open, about " +
                              std::to_string(budget.connections()) + " client connections");

  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  workers_.clear();
  shared_.passive_health.store(nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&passive_async_), nullptr);
  for (auto& sig : signals_) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&sig))) uv_close(reinterpret_cast<uv_handle_t*>(&sig), nullptr);
  }
  // uv_close just restored the default actions: the process is about to exit, and a
  // late signal is ignored rather than killing it with a status other than 0.
  signal(SIGHUP, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  admin_.reset();
  health_.clear();
  gossip_.reset();
  discovery_.reset();
  poller_.close();
  uv_run(&loop_, UV_RUN_DEFAULT);  // close callbacks of the admin connections and probes
  if (uv_loop_close(&loop_) != 0) RP_LOG(LogLevel::kError, "control loop closed with handles open");
  RP_LOG(LogLevel::kInfo, "drained, exiting");
  return kExitOk;
}

}  // namespace ringproxy
