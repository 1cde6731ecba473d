// What a [[discover]] source holds between resolutions (SPEC "Backends by name", issue
// 14): the nodes its last good answer named, when to ask again, and what to do when an
// answer fails. Pure: no loop, no clock, no socket; the control loop feeds it answers
// (net/dns_resolver.h) with the time, and it says what the set is now and when to ask
// next. Tested in virtual time.
//
// The rules, each against a bug seen in other proxies' issue trackers:
//  - A node's name comes from its record, never its place in the answer: "TARGET:PORT"
//    for SRV (the target in lower case, without a trailing dot), "ADDRESS:PORT" for
//    A/AAAA. The set is sorted by name, so a reordered answer is the same set, moves no
//    key, and every instance builds the same ring (HAProxy hashed a server's position
//    in the answer: haproxy#814, #1910).
//  - A failure (SERVFAIL, timeout, NXDOMAIN, an empty answer) keeps the last good set for
//    dns.hold_ms from the first failure in a row (not from the last good answer, which
//    may be a long TTL ago), then empties it (Envoy dropped every host on one NXDOMAIN, envoy#2691;
//    HAProxy was left with no server when an SRV answer emptied for a second,
//    haproxy#3400). A good answer with fewer records is taken at once: the hold is for
//    failures, not for real removals.
//  - The next resolution follows the answer's TTL, clamped to [min_ttl_ms, max_ttl_ms];
//    after a failure, min_ttl_ms, doubling with each failure in a row up to 30 s.
//  - SRV priority: records of the best (lowest) priority serve while any of them is
//    usable; the others only when none is (serving_set()).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "config/config.h"
#include "net/dns_resolver.h"

namespace ringproxy {

struct DiscoveredNode {
  std::string name;  // "TARGET:PORT" or "ADDRESS:PORT" ("[V6]:PORT"): the ring name
  std::string host;  // what to connect to: an address (A/AAAA) or a name to resolve (SRV target)
  uint16_t port = 0;
  uint32_t weight = 1;    // SRV weight (0 = drained), or the source's weight
  uint16_t priority = 0;  // SRV priority; 0 for A/AAAA
  bool operator==(const DiscoveredNode&) const = default;
};

// The nodes an answer names, sorted by name; a record repeated (same name) counts once,
// with its largest weight and best priority.
std::vector<DiscoveredNode> nodes_of(const DnsAnswer& answer, const DiscoverConfig& source);

// Of `nodes`, the ones that serve: those of the best priority that has a usable node
// (usable(node) says whether health, ejection and drains leave it any traffic); all of
// them when none is usable anywhere (better a tier that may be down than no tier).
std::vector<DiscoveredNode> serving_set(const std::vector<DiscoveredNode>& nodes,
                                        const std::function<bool(const DiscoveredNode&)>& usable);

class DiscoveryState {
 public:
  enum class Outcome {
    kChanged,    // a good answer with another set: the routing is to be rebuilt
    kSame,       // a good answer with the same set (reordered, other TTLs)
    kHeld,       // a failure within hold_ms: the last good set stays
    kExpired,    // a failure past hold_ms: the set is now empty
    kNothingYet  // a failure before any good answer: still empty
  };

  // An answer at `now_ms` (any clock in milliseconds, as long as it is one clock).
  Outcome on_answer(const DnsAnswer& answer, const DiscoverConfig& source, const DnsConfig& dns, uint64_t now_ms);

  const std::vector<DiscoveredNode>& nodes() const { return nodes_; }
  // Asks again at once (settings or the resolver changed), keeping what it has.
  void ask_now() { next_query_ms_ = 0; }
  uint64_t next_query_ms() const { return next_query_ms_; }
  uint64_t last_good_ms() const { return last_good_ms_; }  // 0: never
  uint64_t last_answer_ms() const { return last_answer_ms_; }
  const std::string& last_error() const { return last_error_; }  // "" after a good answer
  bool holding() const { return holding_; }

 private:
  std::vector<DiscoveredNode> nodes_;
  uint64_t next_query_ms_ = 0;
  uint64_t last_good_ms_ = 0;
  uint64_t last_answer_ms_ = 0;
  uint64_t failing_since_ms_ = 0;  // the first failure of the current run (0: none)
  uint32_t failures_in_row_ = 0;
  static constexpr uint64_t kMaxFailureBackoffMs = 30000;
  bool have_good_ = false;
  bool holding_ = false;
  std::string last_error_;
};

// With gossip (issue 14): whether the set the instances share for a source still counts.
// Each instance that gets a good answer for the source refreshes its own lease entry
// ("found-ok/H(SOURCE)/H(INSTANCE)" -> "SEQ TTL_MS": a new SEQ per good answer, TTL_MS
// the clamped TTL until it asks again). Every instance watches the leases on its own
// clock: a lease seen to change (a new version of its entry, or a lease not seen
// before) makes the shared set count until now + TTL_MS + hold_ms, the moment its
// writer, failing from its next query on, would have dropped the set itself. So no
// clock is compared with another's; a lease of an instance that left stops changing
// and ages out by the same rule; and when no instance resolves the source for longer
// than hold_ms, the shared set no longer counts and the source falls back to this
// instance's own DiscoveryState (empty after its own hold). A good answer anywhere
// brings it back. Before any lease is seen (instances from before leases) the shared
// set counts as it always did. Pure, tested in virtual time.
class SharedLease {
 public:
  struct Lease {
    std::string key;       // whose lease (one per instance)
    uint64_t version = 0;  // its entry's version: changes with each refresh
    uint64_t ttl_ms = 0;   // from its value
  };
  // The leases as they stand at `now_ms`. Returns true when whether the shared set
  // counts changed (for the caller's log line).
  bool observe(const std::vector<Lease>& leases, uint32_t hold_ms, uint64_t now_ms);
  // This instance's own good answer at `now_ms`, asked again in `ttl_ms`.
  void renewed(uint64_t ttl_ms, uint32_t hold_ms, uint64_t now_ms);
  // Whether the shared set counts at `now_ms`.
  bool counts(uint64_t now_ms) const { return !seen_ || now_ms <= valid_until_ms_; }
  bool seen() const { return seen_; }
  // When it stops counting (for a timer); 0 before any lease.
  uint64_t valid_until_ms() const { return seen_ ? valid_until_ms_ : 0; }

 private:
  std::map<std::string, uint64_t> versions_;  // key -> version last seen
  uint64_t valid_until_ms_ = 0;
  bool seen_ = false;
  bool counted_ = true;  // counts() when last observed
};

}  // namespace ringproxy
