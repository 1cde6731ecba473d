// The health of backend nodes as a pure state machine (STYLE rule 1): a value, and
// functions of (state, event, now) that return what changed. No libuv, no clock, no
// threads, no I/O. The checker feeds it probe results, the proxy feeds it the outcome of
// proxied requests, and both carry out the HealthEvents it returns (one log line, a
// metric, a new usable set for the ring walk). Times are milliseconds of a monotonic
// clock passed in as `now`; tests drive it in virtual time (STYLE rule 3).
//
// Per node, three states (SPEC GET /nodes "up, down, ejected"; "draining" is an admin
// overlay kept by the proxy, not a health state):
//
//        ┌──── `fall` consecutive failed checks ──────────────────────▶ down
//        │ ◀── `rise` consecutive passing checks, not held ────────────┘
//   up ──┤
//        │ ─── `eject_after_failures` consecutive failed requests ────▶ ejected
//        └ ◀── ejection time over, THEN `rise` passing checks, not held ┘
//
// Decisions, each with where it comes from:
//  - A node starts up. A proxy started with backends serves at once, as nginx does with
//    its upstreams; the first `fall` failed checks take it down. HAProxy's default
//    (`init-state up`) takes a new server down on its first failed check; we take
//    HAProxy's `init-state fully-up` instead, because for a cache every state change
//    moves keys and turns them cold, so one lost probe at start must not do that.
//  - rise/fall are consecutive counts, any opposite result restarts the count
//    (HAProxy `rise`/`fall`).
//  - Passive ejection follows Envoy's consecutive-5xx outlier detection
//    (source/common/upstream/outlier_detection_impl.cc): the caller says what a failed
//    request is; a success resets the count; after an ejection attempt the count starts
//    over whether or not the attempt was allowed (Envoy onConsecutiveErrorWorker), so a
//    refused ejection is reported once per `eject_after_failures` failures, not once
//    per failed request. Outcomes of requests to a node that is not up are ignored:
//    they are stragglers sent before it left and must neither re-eject it nor extend
//    its ejection (Envoy ignores a host already ejected).
//  - Ejection time doubles: eject_base_ms * 2^(k-1) for the k-th ejection (SPEC
//    "doubles on each repeat"; Envoy multiplies instead), capped at
//    health_policy::ejection_cap_ms(). k is forgiven (reset to 0) once the node has been
//    up without a break for health_policy::healthy_spell_ms(); shorter spells keep k.
//  - An ejected node returns only after its ejection time is over AND then `rise`
//    consecutive checks pass: checks that pass before expiry do not count, since a node
//    ejected for failing real requests can still answer a health probe. Envoy by default
//    returns a host at expiry alone; the issue asks for checks too. Expiry alone
//    therefore changes nothing, and needs no deadline.
//  - An ejected node whose checks fail stays "ejected" (it does not turn "down"): the
//    percentage guard counts exactly the nodes GET /nodes shows as ejected, and the
//    way back is the same (`rise` passes after expiry imply the checks are up again).
//  - max_ejected_percent is a set-level guard, as Envoy's max_ejection_percent: an
//    ejection is allowed only if afterwards ejected * 100 <= max_ejected_percent * nodes.
//    Only ejected nodes count; nodes down by active checks do not (a dead node is dead,
//    the guard only limits what real-traffic errors may take out). So 1 node at 50% is
//    never ejected, 4 nodes at 50% allow 2. Removing nodes never un-ejects one, even if
//    the share is then above the maximum.
//  - Flap damping after RFC 2439 (BGP Route Flap Damping) section 4: every transition
//    from up to down or ejected adds a penalty (the RFC's figure of merit) that decays
//    exponentially; a transition that takes it above the suppress threshold holds the
//    node down until it has decayed to the reuse threshold, even if checks pass. While
//    held, a flap of the checks themselves (`rise` passes, then `fall` failures) adds
//    penalty too and extends the hold, as a route withdrawn while suppressed does; the
//    penalty has a ceiling so that no hold exceeds kFlapMaxHoldMs after the last flap
//    (the RFC's maximum hold down time). Constants: health_policy below.
//  - Slow start after Envoy's slow start mode (aggression 1, i.e. linear, and its
//    default min_weight_percent 10%): a node that returns from down or ejected ramps its
//    share over slow_start_ms; a node present from the start does not. A node added at
//    runtime may be asked to ramp (HealthTable::Start::kSlowStart).
//
// Not thread-safe: one owner (the control loop) calls everything. Never throws;
// asserts only its own invariants.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace ringproxy {

enum class HealthState : uint8_t { kUp, kDown, kEjected };

// "up", "down", "ejected": the words SPEC GET /nodes uses.
std::string_view to_string(HealthState state);

// Whether a probe or a proxied request succeeded; the caller decides (a check passes on
// a 2xx or 3xx within timeout_ms (health/checker.cc); a request fails on connect error, reset, timeout or a 5xx).
enum class Outcome : uint8_t { kSuccess, kFailure };

enum class HealthEventKind : uint8_t {
  kDown,             // up -> down: `fall` failed checks
  kEjected,          // up -> ejected: consecutive failed requests
  kUp,               // down | ejected -> up
  kEjectionRefused,  // up -> up: an ejection was due but max_ejected_percent refused it
  kHeldDown,         // no state change: flap damping keeps the node out although its
                     // checks pass, or a flap while held extended the hold
};

// "down", "ejected", "up", "ejection_refused", "held_down".
std::string_view to_string(HealthEventKind kind);

// What an event changed: enough for one log line and the metrics. from == to for
// kEjectionRefused and kHeldDown.
struct HealthEvent {
  std::string node;
  HealthEventKind kind = HealthEventKind::kUp;
  HealthState from = HealthState::kUp;
  HealthState to = HealthState::kUp;
  // Why, for the log line, e.g. "3 failed checks", "5 consecutive request failures,
  // ejected for 30000 ms (ejection 1)", "5 consecutive request failures, ejection
  // refused: max_ejected_percent 50 reached (2 of 4 nodes ejected)".
  std::string reason;
  bool operator==(const HealthEvent&) const = default;
};

// The policy's constants and arithmetic, public so that tests and docs can quote them.
namespace health_policy {

// Ejection cap: Envoy's default max_ejection_time is 300 s (gRPC's outlier detection
// uses the same). A configured base above 30 s would leave no room to double under it,
// and SPEC promises doubling, so the cap is never below 10 x the base (three doublings).
inline constexpr uint64_t kEjectionCapMs = 300'000;
inline constexpr uint64_t kEjectionCapBaseMultiple = 10;
uint64_t ejection_cap_ms(uint32_t eject_base_ms);

// How long the k-th ejection (k >= 1) lasts: base * 2^(k-1), at most the cap.
uint64_t ejection_duration_ms(uint32_t eject_base_ms, uint32_t k);

// A node up without a break for this long has its ejection count forgiven: as long as
// the longest ejection we would impose. With the defaults (base 30 s) that is 300 s, so
// a node failing every few minutes keeps doubling, one failing once an hour never does.
uint64_t healthy_spell_ms(uint32_t eject_base_ms);

// Flap damping, RFC 2439 section 4 parameters with Cisco's long-standing BGP defaults
// for the figure of merit (1000 per flap, suppress above 2000, reuse at 750; so the
// third flap in quick succession suppresses, one or two never do). Cisco's 15 min
// half-life and 60 min maximum suppression are for Internet routes; with 1 s checks a
// full flap (fall + rise probes) takes about 5 s, so we keep their 1:4 ratio at 60 s and
// 240 s: three flaps within about a minute hold a node for about two minutes.
inline constexpr double kFlapPenalty = 1000.0;
inline constexpr double kFlapSuppress = 2000.0;  // held when the penalty goes above this
inline constexpr double kFlapReuse = 750.0;      // released when it has decayed to this
inline constexpr uint64_t kFlapHalfLifeMs = 60'000;
inline constexpr uint64_t kFlapMaxHoldMs = 240'000;
// RFC 2439 section 4 "ceiling": reuse * 2^(max hold / half-life).
inline constexpr double kFlapCeiling = kFlapReuse * 16.0;
static_assert(kFlapMaxHoldMs == 4 * kFlapHalfLifeMs, "kFlapCeiling assumes 2^4");

// `penalty` after `elapsed_ms` of exponential decay with kFlapHalfLifeMs.
double decayed_penalty(double penalty, uint64_t elapsed_ms);

// Milliseconds until `penalty` has decayed to kFlapReuse (rounded up); 0 if it is
// already there.
uint64_t hold_ms(double penalty);

// Envoy slow start's default min_weight_percent: a ramping node starts at 10% of its
// share, not 0, so it is exercised at once.
inline constexpr double kSlowStartFloor = 0.1;

}  // namespace health_policy

// One node's health. Read it through HealthTable::find() / nodes(); only HealthTable
// changes it. Values without `now` are as of the last event or tick() for this node.
class NodeHealth {
 public:
  HealthState state() const { return state_; }
  // True when up: the ring may give it keys (a ramping node only some, see admits()).
  // Needs no `now`: expiry of an ejection or of a hold changes nothing by itself, only
  // the checks that follow do.
  bool usable() const { return state_ == HealthState::kUp; }

  // Passing checks in a row that count toward `rise`. While an ejection runs passes do
  // not count (see the file comment), so this stays 0 until it is over.
  uint32_t consecutive_passes() const { return passes_; }
  uint32_t consecutive_failures() const { return failures_; }  // failed checks in a row
  uint32_t consecutive_request_failures() const { return request_failures_; }

  // k: ejections since the count was last forgiven (healthy_spell_ms()).
  uint32_t ejections() const { return ejections_; }
  // End of the current or last ejection; 0 if never ejected.
  uint64_t ejected_until() const { return ejected_until_; }

  // Flap damping: held means kept out even if checks pass, until held_until().
  bool held() const { return held_; }
  uint64_t held_until() const { return held_ ? held_until_ : 0; }
  // The RFC 2439 figure of merit at `now` (0 for a node that never left).
  double penalty(uint64_t now) const;

  // When it last became up (or was added). Meaningful while up.
  uint64_t up_since() const { return up_since_; }

  // Slow start: the share of its keys the node should take at `now`, in
  // [kSlowStartFloor, 1]; 1 when no ramp runs. Meaningful only while usable().
  double weight_fraction(uint64_t now) const;
  // When the current ramp ends; 0 if none ran since it last became up.
  uint64_t slow_start_until() const { return ramp_end_; }
  // Whether the key with ring hash `key_hash` (Ring::hash) may go to this node at `now`:
  // a deterministic subset of weight_fraction(now) of all keys that only grows as the
  // ramp proceeds, the same on every worker and every instance; keys not admitted walk
  // on to the next node of the ring. Always true without a ramp.
  bool admits(uint64_t key_hash, uint64_t now) const;

  bool operator==(const NodeHealth&) const = default;

 private:
  friend class HealthTable;

  HealthState state_ = HealthState::kUp;
  uint32_t passes_ = 0;
  uint32_t failures_ = 0;
  uint32_t request_failures_ = 0;
  uint32_t ejections_ = 0;
  uint64_t ejected_until_ = 0;
  uint64_t up_since_ = 0;
  // Flap damping: the figure of merit as of penalty_at_.
  double penalty_ = 0.0;
  uint64_t penalty_at_ = 0;
  bool held_ = false;
  uint64_t held_until_ = 0;
  // While held: the checks alone would have it up (`rise` passes seen); `fall` failures
  // after that are a flap while held.
  bool up_while_held_ = false;
  uint64_t ramp_start_ = 0;
  uint64_t ramp_end_ = 0;  // 0 = no ramp
};

// NodeHealth::admits() from the ramp's bounds alone, for threads that see only copies
// of them (the proxy's workers): whether the key with ring hash `key_hash` may go to a
// node ramping from ramp_start to ramp_end (ms) at `now`. ramp_end 0: no ramp.
bool slow_start_admits(uint64_t key_hash, uint64_t ramp_start, uint64_t ramp_end, uint64_t now);

// Every node's health by name, so that the max_ejected_percent guard can be computed.
// A value: copyable, comparable, no callbacks.
class HealthTable {
 public:
  using Nodes = std::map<std::string, NodeHealth, std::less<>>;

  // rise or fall of 0 act as 1, max_ejected_percent above 100 as 100 (the config loader
  // refuses those; they are not worth an assert).
  explicit HealthTable(HealthConfig config = {});

  const HealthConfig& config() const { return config_; }
  // On reload. Node states stay; the new values apply from the next event (a node with
  // 3 failures and a new fall of 2 goes down at its next failure). Ejections, holds and
  // ramps already running keep their end times. eject_after_failures = 0 stops new
  // ejections; those running finish as usual.
  void set_config(const HealthConfig& config) { config_ = config; }

  // How a node added after start begins: at once (as at start), or ramping over
  // slow_start_ms like a returning node (a new node's cache is cold too).
  enum class Start : uint8_t { kServing, kSlowStart };

  // Adds `name` in state up at `now`. False, changing nothing, if it is already there.
  bool add(std::string_view name, uint64_t now, Start start = Start::kServing);
  // Forgets `name` and all its history; false if unknown. Adding it back starts afresh.
  bool remove(std::string_view name);
  // Makes the set exactly `names` (duplicates allowed): names that stay keep their
  // state, new ones are added as by add(name, now, start), the others removed.
  void set_nodes(std::span<const std::string> names, uint64_t now,
                 Start start = Start::kServing);

  // A health check result. nullopt when nothing worth a log line happened, or `name` is
  // unknown (a probe that finished after its node was removed).
  std::optional<HealthEvent> on_check(std::string_view name, Outcome outcome, uint64_t now);
  // The outcome of a proxied request. nullopt as above; also for nodes not up.
  std::optional<HealthEvent> on_request(std::string_view name, Outcome outcome,
                                        uint64_t now);
  // Applies what time alone changes: holds that are over (a held node whose checks
  // already pass comes up here, as a kUp event) and ejection counts forgiven. Events in
  // name order. Call it at next_deadline(); calling it more often is harmless.
  std::vector<HealthEvent> tick(uint64_t now);
  // The earliest time at which tick() has something to do; nullopt if nothing is
  // pending. May be <= the current time if tick() is overdue: call it then.
  std::optional<uint64_t> next_deadline() const;

  const NodeHealth* find(std::string_view name) const;
  const Nodes& nodes() const { return nodes_; }
  size_t size() const { return nodes_.size(); }
  size_t ejected_count() const { return ejected_; }

  bool operator==(const HealthTable&) const = default;

 private:
  uint32_t rise() const;
  uint32_t fall() const;
  // Applies the changes due by `now` that need no event: a hold that is over is
  // released, an ejection count is forgiven.
  void advance(NodeHealth& node, uint64_t now) const;
  void set_state(NodeHealth& node, HealthState to);
  // up -> down | ejected: counters, penalty and perhaps a hold. Returns the text to
  // append to the reason ("" or "; flapping: held down ...").
  std::string leave_up(NodeHealth& node, HealthState to, uint64_t now);
  HealthEvent come_up(const std::string& name, NodeHealth& node, uint64_t now,
                      std::string reason);

  HealthConfig config_;
  Nodes nodes_;
  size_t ejected_ = 0;  // nodes in state ejected; kept with every state change
};

}  // namespace ringproxy
