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

}  // namespace ringproxy
