// Server's side of discovery (SPEC "Backends by name", proxy/discovery_agent.h): the
// routing built from the config's backends and what the [[discover]] sources found (the
// shared sets with gossip), the names followed, what this instance shares, and which
// SRV priority serves. Control thread only, as the rest of Server.
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "proxy/log.h"
#include "proxy/server.h"

namespace ringproxy {

void Server::copy_states(const Routing& routing) {
  for (const Pool& pool : routing.pools) copy_states(pool);
}

void Server::copy_states(const Pool& pool) {
  // SRV priority first (discovery.h, serving_set): of each source's nodes, those of the
  // best priority that has a usable node serve; the others stand by, still checked.
  std::map<std::string_view, std::vector<DiscoveredNode>> by_source;
  for (const Backend& b : pool.backends) {
    if (!b.source.empty()) {
      by_source[b.source].push_back({b.name, {}, 0, pool.ring->nodes()[*pool.ring->find(b.name)].weight, b.priority});
    }
  }
  for (const auto& [source, nodes] : by_source) {
    const auto usable = [&](const DiscoveredNode& n) {
      const NodeHealth* h = node_health(pool, n.name);
      const Backend& b = pool.backends[*pool.ring->find(n.name)];
      // A weight-0 record takes no keys: it is drained, not usable.
      return h && h->usable() && n.weight > 0 && !b.sockaddrs.empty() &&
             !b.state->draining.load(std::memory_order_relaxed) &&
             !(gossip_ && majority_down_.count(pool.qualified(n.name)) > 0);
    };
    const std::vector<DiscoveredNode> serving = serving_set(nodes, usable);
    // By name, not a scan of `serving` per node: a 1,000-record source is looked at on
    // every health event of one of its nodes.
    std::unordered_set<std::string_view> serving_names;
    serving_names.reserve(serving.size());
    for (const DiscoveredNode& s : serving) serving_names.insert(s.name);
    for (const DiscoveredNode& n : nodes) {
      // Only a node usable on its own stands by; another is what makes it unusable.
      const bool standby = !serving_names.contains(n.name) && usable(n);
      pool.backends[*pool.ring->find(n.name)].state->standby.store(standby, std::memory_order_relaxed);
    }
  }
  for (const Backend& b : pool.backends) {
    if (b.source.empty()) b.state->standby.store(false, std::memory_order_relaxed);
    copy_state(pool, b.name);
  }
}

std::vector<FoundNode> Server::current_found() const {
  std::vector<FoundNode> out;
  if (!discovery_) return out;
  for (const DiscoverConfig& source : all_sources(*config_)) {
    std::vector<FoundNode> some;
    // With gossip, what the instances share (each writes what its resolver found, see
    // on_discovered) while some instance's lease on it is current; a source nobody has
    // shared yet, or one no instance has resolved for dns.hold_ms: this instance's own
    // (empty after its own hold).
    if (auto shared = gossip_ && shared_counts(source.name) ? gossip_->found(source) : std::nullopt) {
      some = std::move(*shared);
    } else {
      some = discovery_->found(source.name);
    }
    const std::string pool = source_pool(*config_, source.name);
    for (FoundNode& f : some) f.pool = pool;
    out.insert(out.end(), std::make_move_iterator(some.begin()), std::make_move_iterator(some.end()));
  }
  return out;
}

void Server::follow_names(const std::vector<FoundNode>& found) {
  if (!discovery_) return;
  std::set<std::string> names;
  std::set<std::string> configured;
  for (const PoolConfig& pool : config_->pools) {
    for (const BackendConfig& b : pool.backends) {
      if (b.address.is_name) configured.insert(b.address.host);
    }
  }
  for (const BackendConfig& b : config_->backends) {
    if (b.address.is_name) configured.insert(b.address.host);
  }
  names = configured;
  std::set<std::string> targets;  // SRV targets: held by their source, not by themselves
  for (const FoundNode& f : found) {
    if (f.backend.address.is_name && !configured.count(f.backend.address.host)) targets.insert(f.backend.address.host);
  }
  names.insert(targets.begin(), targets.end());
  discovery_->set_names(names, targets);
}

std::shared_ptr<Routing> Server::build(std::shared_ptr<const Config> config, std::string* error) {
  const std::shared_ptr<const Routing> current = routing();
  static const ResolvedNames kNone;
  std::vector<std::string> skipped;
  // Only the sources `config` has (a reload that removes one drops its nodes now).
  std::vector<FoundNode> found;
  for (const FoundNode& f : found_) {
    if (source_pool(*config, f.source) == f.pool) found.push_back(f);
  }
  auto next = build_routing(std::move(config), found, discovery_ ? discovery_->names() : kNone, current.get(),
                            generation_ + 1, worker_count_, error, &skipped);
  std::set<std::string> now(skipped.begin(), skipped.end());
  for (const std::string& name : now) {
    if (!skipped_.count(name)) {
      RP_LOG(LogLevel::kWarn, "discover: node " + name + " has the name of a configured backend: the configured one stands");
    }
  }
  if (next) skipped_ = std::move(now);  // said once, until it changes
  return next;
}

void Server::on_discovered(const DiscoveryAgent::Change& change) {
  if (draining_) return;
  const std::string& source = change.source;
  // Only good answers are shared: a resolver failing here past hold_ms empties the
  // source for this instance alone, never for the cluster (whose other resolvers may
  // answer well; with gossip this instance then follows what they share). Each good
  // answer, the same set or not, renews this instance's lease: once no instance's
  // lease changes for TTL + hold_ms, the shared set no longer counts (observe_leases).
  if (!source.empty() && gossip_ && change.good) {
    // Its lease: the shared set counts while some instance still resolves the source.
    if (const DiscoverConfig* s = source_config(source)) {
      applying_ = true;  // refresh_found() below takes it in
      gossip_->renew_lease(*s, change.ttl_ms);
      applying_ = false;
      leases_[source].renewed(change.ttl_ms, config_->dns.hold_ms, uv_now(&loop_));
    }
    if (!change.same) {
      // What this resolver found now goes to every instance, so that all route alike
      // even when their resolvers see the change at different moments. Its first answer
      // after a start does not overwrite a set the cluster already shares: a restarted
      // instance's resolver may lag the one that wrote it (it adopts it instead). Nor
      // is it written before this instance has the cluster's state (share_first_answers).
      if (change.first) {
        first_answers_.insert(source);
        share_first_answers();
      } else {
        share(source);
      }
    }
  } else if (change.same) {
    return;  // the same set, and no lease to renew: nothing to rebuild
  }
  refresh_found();
}

const DiscoverConfig* Server::source_config(const std::string& source) const {
  const auto find = [&](const std::vector<DiscoverConfig>& d) -> const DiscoverConfig* {
    const auto it = std::find_if(d.begin(), d.end(), [&](const DiscoverConfig& s) { return s.name == source; });
    return it == d.end() ? nullptr : &*it;
  };
  if (const DiscoverConfig* s = find(config_->discover)) return s;
  for (const PoolConfig& pool : config_->pools) {
    if (const DiscoverConfig* s = find(pool.discover)) return s;
  }
  return nullptr;
}

void Server::share(const std::string& source) {
  if (const DiscoverConfig* s = source_config(source)) {
    applying_ = true;
    gossip_->share_found(*s, discovery_->found(source));
    applying_ = false;
  }
}

void Server::share_first_answers() {
  if (!gossip_ || !gossip_->settled()) return;
  for (const std::string& source : std::exchange(first_answers_, {})) {
    if (const DiscoverConfig* s = source_config(source); s && !gossip_->found(*s)) share(source);
  }
}

bool Server::shared_counts(const std::string& source) const {
  const auto it = leases_.find(source);
  return it == leases_.end() || it->second.counts(uv_now(&loop_));
}

void Server::observe_leases() {
  if (!gossip_) return;
  const uint64_t now = uv_now(&loop_);
  const uint32_t hold = config_->dns.hold_ms;
  uint64_t wake = UINT64_MAX;
  std::map<std::string, SharedLease> kept;
  for (const DiscoverConfig& source : all_sources(*config_)) {
    SharedLease& lease = kept[source.name] = std::move(leases_[source.name]);
    if (lease.observe(gossip_->leases(source), hold, now)) {
      if (lease.counts(now)) {
        RP_LOG(LogLevel::kInfo, "discover " + source.name + ": an instance resolved it again: its shared set is taken back");
      } else {
        RP_LOG(LogLevel::kError, "discover " + source.name + ": no instance has resolved it for dns.hold_ms (" +
                                     std::to_string(hold) + " ms): its shared set is dropped");
      }
    }
    if (lease.seen() && lease.counts(now)) wake = std::min(wake, lease.valid_until_ms() + 1);
  }
  leases_ = std::move(kept);  // sources a reload removed are forgotten
  if (lease_timer_.loop == nullptr) return;
  if (wake == UINT64_MAX) {
    uv_timer_stop(&lease_timer_);
  } else {
    uv_timer_start(&lease_timer_, on_lease_timer, wake > now ? wake - now : 0, 0);
  }
}

void Server::on_lease_timer(uv_timer_t* t) { static_cast<Server*>(t->data)->refresh_found(); }

void Server::refresh_found() {
  if (!discovery_ || draining_) return;
  observe_leases();
  std::vector<FoundNode> found = current_found();
  follow_names(found);
  const auto current = routing();
  // Rebuilt when the nodes or any named node's addresses changed.
  bool same = found == found_;
  for (const Pool& pool : current->pools) {
    for (const Backend& b : pool.backends) {
      if (same && b.address.is_name && resolved_text(discovery_->names(), b.address.host) != b.resolved) same = false;
    }
  }
  if (same) return;
  const std::vector<FoundNode> before = std::exchange(found_, std::move(found));
  std::string error;
  auto next = build(config_, &error);
  if (!next) {
    found_ = before;
    RP_LOG(LogLevel::kError, "discover: the ring cannot be built with what was found: " + error);
    return;
  }
  // A discovered node that left takes its admin drain with it: a record that comes
  // back later is a new node.
  for (const Pool& pool : current->pools) {
    const Pool* after = next->find_pool(pool.name());
    for (const Backend& b : pool.backends) {
      if (!b.source.empty() && (!after || !after->ring->find(b.name)) && b.state->draining.load()) {
        set_drained(pool.name(), b.name, false);
      }
    }
  }
  // Pool "default"'s ring, and each other pool's whose ring changed: its fingerprint and
  // the share of its keys that moved. Before the workers start (the first answers)
  // nothing has been routed: nothing moved.
  std::string rings;
  for (const Pool& pool : next->pools) {
    const Pool* was = current->find_pool(pool.name());
    if (!pool.is_default() && was && was->ring->fingerprint() == pool.ring->fingerprint()) continue;
    char pct[32];
    std::snprintf(pct, sizeof pct, ", %.2f%% of keys moved", was ? Ring::moved_fraction(*was->ring, *pool.ring) * 100.0 : 100.0);
    rings += (pool.is_default() ? ", ring " : "; pool " + pool.name() + ": ring ") + pool.ring->fingerprint() +
             (workers_.empty() ? "" : pct);
  }
  ++generation_;
  publish(std::move(next));
  if (found_ != before) {
    RP_LOG(LogLevel::kInfo, "discover: " + std::to_string(found_.size()) + " discovered nodes, " +
                                std::to_string(routing()->node_count()) + " in all" + rings);
  }
}

std::vector<DiscoveryAgent::Status> Server::discovery_status() const {
  if (!discovery_) return {};
  std::vector<DiscoveryAgent::Status> out = discovery_->status();
  if (!gossip_) return out;
  for (DiscoveryAgent::Status& st : out) {
    if (!st.is_source) continue;
    const DiscoverConfig* s = source_config(st.name);
    if (!s || !gossip_->found(*s)) continue;  // nobody shared it: this instance's own set
    if (shared_counts(st.name)) {
      st.shared = "shared";
    } else {
      st.shared = "dropped";  // no instance resolves it: nothing is held
      st.holding = false;
    }
  }
  return out;
}

}  // namespace ringproxy
