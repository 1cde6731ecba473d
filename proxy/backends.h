// What every worker routes with: the ring, the node states, and the settings that a
// reload may change. Published as std::shared_ptr<const Routing>; a reload or an admin
// change builds a new one. Workers copy the pointer once per swap, never per request.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/metrics.h"
#include "ring/ring.h"

namespace ringproxy {

class ClientTlsContext;
class ServerTlsContext;

// A slow-start ramp as NodeState keeps it: one word, so that a worker reads the start
// and the end of the same ramp. (Two atomics let a worker read a new ramp's end with
// the previous start, or a live end with the 0 start of no ramp: for that request, an
// arbitrary share of the node's keys.) The start in the high 40 bits, the length in the
// low 24; 0 is no ramp.
// Ranges: a length below 2^24 ms (4.6 hours) holds any health.slow_start_ms (at most
// kMaxSlowStartMs, 1 hour: checked below); a start below 2^40 ms (34 years of uv_now,
// which counts from boot). A ramp outside them is stored as none (the node takes all
// its keys at once) rather than wrapped into another ramp.
struct SlowStartRamp {
  static constexpr int kLengthBits = 24;
  static constexpr uint64_t kMaxLengthMs = (uint64_t{1} << kLengthBits) - 1;
  static constexpr uint64_t kMaxStartMs = (uint64_t{1} << (64 - kLengthBits)) - 1;
  static_assert(kMaxSlowStartMs <= kMaxLengthMs, "health.slow_start_ms must fit a ramp's length bits");

  uint64_t start_ms = 0;
  uint64_t end_ms = 0;  // 0: no ramp

  // end_ms 0 (or not after start_ms): no ramp.
  static constexpr uint64_t pack(uint64_t start_ms, uint64_t end_ms) {
    if (end_ms <= start_ms || end_ms - start_ms > kMaxLengthMs || start_ms > kMaxStartMs) return 0;
    return start_ms << kLengthBits | (end_ms - start_ms);
  }
  static constexpr SlowStartRamp unpack(uint64_t word) {
    if (word == 0) return {};
    const uint64_t start = word >> kLengthBits;
    return {start, start + (word & kMaxLengthMs)};
  }
  bool operator==(const SlowStartRamp&) const = default;
};

// Live state of one backend, shared by every worker and kept across rebuilds of the
// ring for as long as the backend keeps its name. Written by the health checker and
// the admin endpoint; read lock-free on the request path.
struct NodeState {
  explicit NodeState(unsigned workers) : per_worker(std::make_unique<NodeCounters[]>(workers)), workers_(workers) {}

  // Read on every request, written rarely (by the control thread): one cache line.
  std::atomic<bool> up{true};          // active checks (starts up: see health/)
  std::atomic<bool> ejected{false};    // passive ejection
  std::atomic<bool> draining{false};   // admin drain
  // A usable SRV record of a priority that is not serving now (Server::copy_states).
  // The control thread folds it into `up`, so that the request path reads one flag; the
  // admin API shows it. Never set for a node unusable on its own (down, ejected,
  // drained, unresolved): that one shows as such.
  std::atomic<bool> standby{false};
  // Slow start: until the ramp's end (monotonic ms, uv_now), only a growing part of the
  // node's keys come back to it (see pick_node in proxy/router.h). SlowStartRamp::pack:
  // start and end are written and read together.
  std::atomic<uint64_t> ramp_word{0};
  void set_ramp(uint64_t start_ms, uint64_t end_ms) {
    ramp_word.store(SlowStartRamp::pack(start_ms, end_ms), std::memory_order_relaxed);
  }
  SlowStartRamp ramp() const { return SlowStartRamp::unpack(ramp_word.load(std::memory_order_relaxed)); }
  // Written by every worker on every request: lines of their own, so that they do not
  // drag the line above from core to core.
  alignas(64) std::atomic<uint32_t> in_flight{0};  // requests now at this node
  // Passive health: consecutive failed requests, all workers; reset by a success.
  alignas(64) std::atomic<uint32_t> consecutive_failures{0};
  std::atomic<uint64_t> ejections{0};          // written by the control thread
  std::atomic<uint64_t> ejections_refused{0};  // max_ejected_percent said no
  std::unique_ptr<NodeCounters[]> per_worker;  // indexed by worker id

  uint64_t requests() const { return sum([](const NodeCounters& c) {
    uint64_t n = 0;
    for (const auto& p : c.by_class) {
      for (const auto& b : p) n += b.load(std::memory_order_relaxed);
    }
    return n;
  }); }
  uint64_t failures() const {
    return sum([](const NodeCounters& c) { return c.failures.load(std::memory_order_relaxed); });
  }
  uint64_t responses(int status_class, int protocol) const {
    return sum([&](const NodeCounters& c) {
      return c.by_class[protocol][status_class].load(std::memory_order_relaxed);
    });
  }

  // The node's times to a response head (ringproxy_upstream_header_duration_seconds),
  // all workers, added to `buckets` and `sum_us`.
  void header_time(uint64_t (&buckets)[kDurationBuckets + 1], uint64_t* sum_us) const {
    for (unsigned i = 0; i < workers_; ++i) per_worker[i].header_time.add_to(buckets, sum_us);
  }
  // Their mean, milliseconds, since start; negative when it has answered nothing yet.
  double mean_header_ms() const {
    uint64_t buckets[kDurationBuckets + 1] = {};
    uint64_t sum_us = 0;
    header_time(buckets, &sum_us);
    uint64_t count = 0;
    for (const uint64_t n : buckets) count += n;
    return count == 0 ? -1 : static_cast<double>(sum_us) / static_cast<double>(count) / 1000.0;
  }

  bool usable() const {
    return up.load(std::memory_order_relaxed) && !ejected.load(std::memory_order_relaxed) &&
           !draining.load(std::memory_order_relaxed);
  }

 private:
  template <typename F>
  uint64_t sum(F f) const {
    uint64_t n = 0;
    for (unsigned i = 0; i < workers_; ++i) n += f(per_worker[i]);
    return n;
  }
  unsigned workers_;
};

struct Backend {
  std::string name;
  Address address;  // as configured or discovered: an IP and port, or a DNS name and port
  // Where connections go: the address itself, or what its name resolves to now (SPEC
  // "Backends by name"), taken in turn connection by connection. Empty: a name with no
  // address yet (or none left after dns.hold_ms): the node is down (Server::copy_state).
  std::vector<sockaddr_storage> sockaddrs;
  std::string resolved;  // a named node's: resolved_text() of its name, what sockaddrs hold
  // name, NUL, address (for a name, NUL and what it resolves to; for TLS, NUL "tls" NUL
  // tls name; for h2c or h2, NUL and that protocol_name): a worker's pool for this node,
  // so that a node whose TLS settings, protocol or resolved addresses change gets new
  // connections and the old ones are not reused. (An http1 node's key has no protocol
  // part: the same as before protocols existed.)
  std::string pool_key;
  std::string source;     // "" configured (file or admin API); else the [[discover]] name
  uint16_t priority = 0;  // SRV priority (discovered by an srv source), else 0
  bool tls = false;      // connections speak TLS (BackendConfig::tls)
  std::string tls_name;  // SNI and the name verified: tls_name, else the address's host
  // What requests to the node are sent as (BackendConfig::protocol): kH2 only with tls,
  // kH2c only without (config loading, the admin API and gossip refuse the rest).
  BackendProtocol protocol = BackendProtocol::kHttp1;
  std::shared_ptr<NodeState> state;
};

// One tier (SPEC "Several tiers"): its settings, ring and nodes. Routing::pools[0] is
// "default" (the top level's [[backend]]s, [[discover]]s, [ring] and [health]).
struct Pool {
  // name, hash_key, ring, health and upstream_tls as configured ("default": the top
  // level's); backends and discover are the config's, before discovery and gossip.
  PoolConfig config;
  uint32_t index = 0;  // in Routing::pools
  // Where this pool's nodes start in the routing's flat node numbering (a worker keeps
  // one upstream pool per node of every pool, Worker::pool): node i is base + i.
  uint32_t base = 0;
  // False for "default" when [[pool]]s are configured, the file's top level has no
  // [[backend]] and no [[discover]] (Config::default_declared), and it has no node
  // (none added at runtime): requests no route sends elsewhere get 404.
  bool declared = true;
  // Some node speaks HTTP/2 (protocol h2c or h2): the Exchange then keeps the request
  // head's parts (HeadSpans) for its fields.
  bool any_h2 = false;
  std::shared_ptr<const Ring> ring;
  std::vector<Backend> backends;  // indexed by NodeIndex of `ring`
  // The pool's [upstream_tls], loaded (as ListenerRouting::tls, kept by rebuilds that
  // are not reloads): what connections to its tls = true nodes are made with.
  std::shared_ptr<const ClientTlsContext> upstream_tls;

  const std::string& name() const { return config.name; }
  bool is_default() const { return index == 0; }
  // How a node is named where every pool's nodes meet (health keys, logs, gossip):
  // "NAME" in "default", else "POOL/NAME" (a backend name never has a '/').
  std::string qualified(std::string_view node) const {
    return is_default() ? std::string(node) : config.name + "/" + std::string(node);
  }
};

// A [[route]] as the request path matches it (match_route): pool index instead of name,
// and what decides most non-matches laid out to be read with a few loads and no call.
struct CompiledRoute {
  // The prefix's first 8 bytes (fewer when it is shorter: the mask says which), and for
  // a prefix over 8 bytes its last 8 (where paths that share a root differ), as
  // match_route loads a target's.
  uint64_t path_head = 0;
  uint64_t path_mask = 0;
  uint64_t path_tail = 0;
  uint32_t path_len = 0;
  // 0: any host; else the length of `host`.
  uint32_t host_len = 0;
  bool wildcard = false;  // host is a suffix, with at least one label before it
  uint32_t pool = 0;
  std::string host;  // "" any; else lower case: the exact name, or for "*.suffix" ".suffix"
  std::string path_prefix;
};

// Where clients connect (SPEC "Several tiers"): proxy.listen, then each [[listener]].
struct ListenerRouting {
  // The same for as long as the listener's address stays in the config (0:
  // proxy.listen): how a connection finds its listener in later routings.
  uint32_t id = 0;
  Address listen;
  ServerTlsConfig tls_config;  // enabled false: plain HTTP
  // tls_config's certificates, loaded (null: plain). Built at start and on every
  // reload; a routing built for another change keeps the previous one's.
  std::shared_ptr<const ServerTlsContext> tls;
  uint32_t pool = 0;  // index in Routing::pools: where requests no route matches go
  std::string pool_name = "default";  // that pool's name
};

struct Routing {
  std::shared_ptr<const Config> config;
  std::vector<Pool> pools;  // [0] "default", then the config's [[pool]]s in file order
  std::vector<CompiledRoute> routes;  // the config's [[route]]s in file order
  bool routes_by_host = false;        // some route names a host (the request's Host is read)
  // Which routes may match, as bit sets over `routes` (route i: bit i % 64 of word
  // i / 64; route_words words a set), so that a request looks only at those:
  //  - by host length L (0..255; 256 for 256 or longer): the routes without a host,
  //    those with an exact host of length L, and the "*." routes whose suffix is
  //    shorter than L;
  //  - by the target's second byte (256: a target shorter than 2 bytes): the routes
  //    whose prefix is "" or "/" or has that second byte.
  // A request's candidates are the AND of its two sets; the first that matches in full
  // wins (match_route).
  static constexpr size_t kRouteIndexRows = 257;
  size_t route_words = 0;
  std::vector<uint64_t> routes_by_host_len;   // kRouteIndexRows x route_words
  std::vector<uint64_t> routes_by_path_byte;  // kRouteIndexRows x route_words
  uint64_t generation = 0;  // increases with every publication
  std::vector<ListenerRouting> listeners;  // [0] proxy.listen, then the [[listener]]s
  // Every listener's client_subject_header, once each: a client's fields of these names
  // are dropped on every listener (proxy/rewrite.h).
  std::vector<std::string> subject_headers;
  uint32_t next_listener_id = 1;          // the id of the next listener added

  const Pool& default_pool() const { return pools[0]; }
  // The listener of id `id`; null when none has it (a listener a reload removed, whose
  // connections are finishing their responses).
  const ListenerRouting* listener(uint32_t id) const {
    for (const ListenerRouting& l : listeners) {
      if (l.id == id) return &l;
    }
    return nullptr;
  }
  // Null when no pool has that name.
  const Pool* find_pool(std::string_view name) const {
    for (const Pool& p : pools) {
      if (p.config.name == name) return &p;
    }
    return nullptr;
  }
  // Every pool's nodes together (the flat numbering of Pool::base).
  size_t node_count() const { return pools.empty() ? 0 : pools.back().base + pools.back().backends.size(); }
};

// The pool of a request: the first route matching `host` (a Host field value: any case,
// maybe a port) and `target` (the request target as sent, matched by prefix), else
// `fallback`. No allocation.
uint32_t match_route(const Routing& routing, std::string_view host, std::string_view target, uint32_t fallback);

// Fills a sockaddr for an IP literal address; false if it does not parse.
bool to_sockaddr(const Address& address, sockaddr_storage* out);

// A node the routing is built from besides the config's [[backend]]s: one a [[discover]]
// source found (proxy/discovery.h).
struct FoundNode {
  BackendConfig backend;  // address: the SRV target (a name) or the A/AAAA address, and port
  std::string source;     // the [[discover]] name
  uint16_t priority = 0;
  std::string pool = "default";  // the pool whose [[discover]] it is
  bool operator==(const FoundNode&) const = default;
};

// A node of `source`, before its name, address, weight and priority are filled in: what
// the source gives every node it finds (tls, tls_name and protocol, "as for [[backend]]")
// and the source's name. For the resolver's answers (DiscoveryAgent) and the other
// instances' (GossipAgent) alike, so that both carry the same settings.
FoundNode found_by(const DiscoverConfig& source);

// What DNS names resolve to now: lower-case name -> IP addresses as text. A name that
// is not in it (or maps to none) has no address.
using ResolvedNames = std::map<std::string, std::vector<std::string>, std::less<>>;

// What `host` resolves to in `names`, as Backend::resolved holds it: the addresses in
// order, each followed by a space ("" for none).
std::string resolved_text(const ResolvedNames& names, std::string_view host);

// Builds the routing for `config`, reusing the NodeState of every backend whose name
// appears in `previous` (so health and counters survive reloads). Returns null and
// sets *error when the ring cannot be built.
// `workers` sizes each new NodeState's per-worker counters. The TLS context is
// `previous`'s: a caller that (re)loads certificates sets its own.
std::shared_ptr<Routing> build_routing(std::shared_ptr<const Config> config,
                                       const Routing* previous, uint64_t generation,
                                       unsigned workers, std::string* error);
// The same with the nodes `found` by discovery after the config's, and the addresses
// of named nodes from `names`. A found node whose name a configured one has is left
// out (configured first); *skipped (when given) names each such node.
std::shared_ptr<Routing> build_routing(std::shared_ptr<const Config> config, const std::vector<FoundNode>& found,
                                       const ResolvedNames& names, const Routing* previous, uint64_t generation,
                                       unsigned workers, std::string* error,
                                       std::vector<std::string>* skipped = nullptr);

}  // namespace ringproxy
