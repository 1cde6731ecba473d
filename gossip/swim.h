// SWIM membership with the Lifeguard refinements, as a pure state machine (STYLE rule
// 1): one Swim per instance, driven by join / tick / receive / leave / put / erase, each
// taking the current time and returning what to send and when to be ticked next. No
// sockets, no clock, no threads; randomness is the Rng passed in (STYLE rule 3). The
// UDP shell encodes each Outgoing with codec.h and calls tick() at next_tick_ms; the
// simulator (sim.h) does the same in virtual time.
//
// Protocol, with sources (SWIM: Das, Gupta, Motivala 2002; Lifeguard: Dadgar, Phillips,
// Currey 2018; memberlist: hashicorp/memberlist state.go, which we follow where the
// papers leave a choice):
//  - Probing (SWIM 4.3): each probe period, ping the next member of a shuffled list of
//    the alive and suspect members, reshuffled at the end of each pass, new members
//    inserted at a random place ahead (memberlist probe/resetNodes). No ack within the
//    probe timeout: ping-req through `indirect_checks` random alive others, who ping the
//    target and relay its ack, or (Lifeguard IV-A) answer nack when they got none. No
//    ack by the end of the period: the target becomes suspect.
//  - Suspicion (SWIM 4.2): a suspect is declared dead when its suspicion times out; a
//    member that hears it is suspected (or dead) refutes with a higher incarnation.
//    Claims are ordered by (incarnation, alive < suspect < dead < left), member.h.
//  - Lifeguard (config.lifeguard): (a) the local health multiplier (IV-A; memberlist
//    awareness.go): a score in [0, awareness_max - 1] that rises by one per missing nack
//    after a failed probe (by one when there was nobody to ask), by one when we refute a
//    suspicion of ourselves, by one when our own timer fired over a probe interval late,
//    and falls by one per successful probe; the probe interval and timeout are scaled by
//    (score + 1), so a member that is itself slow probes less often and waits longer
//    before accusing. (b) Dynamic suspicion (IV-B): suspicion.h. (c) Buddy system (IV-C):
//    a ping to a suspect carries that suspicion first, so it refutes at once.
//    With lifeguard off: score fixed at 0, suspicion timeout fixed at min, no nacks, no
//    buddy priority (plain SWIM with memberlist's timeouts).
//  - Late timers (ours, in Lifeguard's spirit): a tick more than a probe interval after
//    the wakeup we asked for means this process was stalled (GC pause, overloaded host);
//    the messages that arrived meanwhile are still unread, so that tick judges nobody:
//    every deadline already due is pushed to now + the scaled probe timeout.
//  - Dissemination (SWIM 4.1): membership changes and store updates are piggybacked on
//    every ping, ack, ping-req and nack (broadcast_queue.h, lambda * log n sends each), and
//    gossiped each probe interval to `gossip_nodes` random members (alive, suspect, or
//    dead less than gossip_to_the_dead_ms ago) while the queue is not empty (memberlist
//    gossip(), GossipNodes 3, GossipInterval 200 ms).
//  - Push-pull (memberlist pushPull): every push_pull_periods probe intervals (scaled up
//    for large clusters as memberlist pushPullScale), a full-state exchange with one
//    random member; also how a member joins (to each seed). In a merged remote state,
//    "dead" counts as "suspect" (memberlist mergeState) so that a healed partition does
//    not declare one side dead at once, but lets every accused member refute. A joiner
//    holds the cluster's state only once every part of one has arrived (synced()); it
//    asks again every join_retry_ms until then (ours: a lost part would otherwise wait
//    for the next periodic push-pull).
//  - Anti-entropy (ours): a member whose update burst missed someone (every one of its
//    lambda * log n sends lost or sent elsewhere) would otherwise wait for the periodic
//    push-pull, 6 s at 200 ms and 100 members (the simulator measured 11 to 24 s worst
//    cases before this). So every ping and ack carries the sender's settled bound B, the
//    highest store version such that every entry it holds at or below B arrived at
//    least anti_entropy_settle_periods probe intervals ago (longer than an update takes
//    to spread: p99 0.6 s at 100 and 1,000 members, README; B is infinite when nothing
//    arrived lately), and a digest of its entries at or below B. A receiver whose own bound is at least B compares its digest of the
//    same range; if they differ, one side lacks an entry the other has held too long for
//    it still to be spreading, and the receiver starts a push-pull with the sender (at
//    most one per settle time). Store versions are a Lamport clock (state.h), so under a
//    steady stream of updates the bound trails the newest by about a settle time and an
//    old miss is still caught. It covers the store only (membership has its own repair:
//    refutation, the buddy system, push-pull).
//  - Re-contact (memberlist#222, serf#605: without it a healed partition stays split
//    forever): every reconnect_interval_ms, ping each seed address that is not the
//    address of a member alive to us, and one random dead member; an ack from someone we
//    do not hold alive starts a push-pull with it. While we know no other member, seeds
//    are retried every join_retry_ms.
//  - Leave: the member goes to "left" at its incarnation (final for that incarnation),
//    gossips it to retransmit_limit random members at once, and from then on stops
//    probing but still gossips and answers, so the shell should keep it running for a
//    few probe intervals (leave_grace_ms()) before closing the socket.
//  - Restart: a member restarted with the same name and a new address or incarnation is
//    taken back: its alive claim with a higher incarnation replaces whatever we hold;
//    and if it started below its former incarnation, the first claim about its former
//    life it hears makes it refute above it. Names are trusted (the transport
//    authenticates instances, next session).
//  - Reaping: dead and left members are forgotten reap_after_ms after their last change
//    (serf's ReconnectTimeout and TombstoneTimeout, 24 h); until then they are shown,
//    re-contacted (dead) and kept from being resurrected by stale alive claims.
//  - Store tombstones are collected tombstone_ttl_ms (48 h) after this instance stored
//    them, on the reap timer; an entry below the collected floor is refused and answered
//    with a tombstone (state.h, "Collecting tombstones"), which is gossiped like any
//    change and sent back at once to the sender as a correction.
//
// Not thread-safe: one owner (the control loop) calls everything. Never throws on
// network input: any decoded Message is acceptable input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "gossip/broadcast_queue.h"
#include "gossip/codec.h"
#include "gossip/member.h"
#include "gossip/message.h"
#include "gossip/rng.h"
#include "gossip/state.h"
#include "gossip/suspicion.h"

namespace ringproxy::gossip {

// Bytes kept free in every packet for the transport's authentication trailer: key id 1,
// boot id 8, counter 8, HMAC-SHA256 32 = 49 (udp_transport.h asserts it fits), rounded
// up to 56. (At exactly 49 one seeded simulator run shows a slow tail in spreading an
// update; 50 to 64 all pass. Worth a look; the seven spare bytes cost nothing.)
inline constexpr size_t kAuthTrailerReserve = 56;

struct SwimConfig {
  std::string name;     // unique; <= kMaxName bytes
  std::string address;  // where we receive, as others should reach us; <= kMaxName bytes
  // The incarnation to start at. The shell passes something that grows across restarts
  // (e.g. wall-clock seconds) so that a restarted member is at once newer than its former
  // life; refutation makes it right anyway, only later.
  uint64_t incarnation = 0;

  int64_t probe_interval_ms = 200;  // SPEC gossip.interval_ms
  // memberlist DefaultLANConfig: ProbeTimeout 500 ms for ProbeInterval 1 s; same ratio.
  int64_t probe_timeout_ms = 100;
  uint32_t indirect_checks = 3;     // memberlist IndirectChecks; SWIM's k
  uint32_t retransmit_mult = 4;     // memberlist RetransmitMult; SWIM's lambda
  uint32_t suspicion_mult = 4;      // memberlist SuspicionMult
  uint32_t suspicion_max_timeout_mult = 6;  // memberlist SuspicionMaxTimeoutMult
  // A floor under the suspicion timeout's min. memberlist's formula is in probe
  // intervals, tuned for its 1 s interval (min 4 s at 10 members); at our 200 ms it would
  // give 1.6 s at 100 members, shorter than the 2 s stalls the issue requires us to
  // survive without a false death. A stall is measured in seconds, not in periods, so the
  // floor is in ms: 4 s, measured with the simulator (see sim_test: a member paused for
  // 2 s again and again is never declared dead at 10% loss).
  int64_t suspicion_floor_ms = 4000;
  uint32_t gossip_nodes = 3;             // memberlist GossipNodes
  int64_t gossip_to_the_dead_ms = 30000; // memberlist GossipToTheDeadTime
  uint32_t push_pull_periods = 30;       // memberlist PushPullInterval 30 s / ProbeInterval 1 s
  // Anti-entropy (above): how long both stores must have been still, in probe
  // intervals; 0 turns it off.
  uint32_t anti_entropy_settle_periods = 5;
  // serf's ReconnectInterval is 30 s; ours is shorter because a healed partition should
  // re-merge within seconds, and each attempt is one ping per seed not known alive plus
  // one ping to one dead member.
  int64_t reconnect_interval_ms = 10000;
  int64_t join_retry_ms = 1000;
  int64_t reap_after_ms = 24LL * 3600 * 1000;  // serf ReconnectTimeout / TombstoneTimeout
  // How long this instance keeps a store tombstone after it stored it (state.h,
  // "Collecting tombstones"); 0 keeps them forever; kTombstoneTtlDefault (the default)
  // is twice reap_after_ms, taken when Swim is made, so that a raised reap_after_ms
  // raises it too. Otherwise it must be longer than reap_after_ms (Swim refuses it):
  // a member the others still remember, dead or left, has been away for less than this,
  // so nothing it may bring back has been collected. Twice that, 48 h, leaves a day for
  // a member found dead (a full partition) to come back before anything it may have
  // missed is forgotten. Checked at the reap timer (every reconnect_interval_ms).
  static constexpr int64_t kTombstoneTtlDefault = -1;
  int64_t tombstone_ttl_ms = kTombstoneTtlDefault;
  bool lifeguard = true;
  uint32_t awareness_max = 8;  // memberlist AwarenessMaxMultiplier: scale 1..8
  size_t packet_budget = kMaxPacket - kAuthTrailerReserve;
};

struct Outgoing {
  std::string to;  // an address
  Message message;
};

struct Output {
  std::vector<Outgoing> messages;
  int64_t next_tick_ms = 0;                // call tick() at or after this time
  std::vector<std::string> members_changed;  // names whose state, incarnation or address changed
  std::vector<std::string> keys_changed;     // store keys whose entry changed
};

// Counters for metrics and tests.
struct SwimStats {
  uint64_t probes = 0;
  uint64_t probes_failed = 0;
  uint64_t ping_reqs_sent = 0;
  uint64_t suspicions_raised = 0;  // by our own failed probes
  uint64_t refutations = 0;
  uint64_t deaths_declared = 0;    // by our own suspicion timeouts
  uint64_t late_ticks = 0;
  uint64_t push_pulls_started = 0;  // all of them, anti-entropy ones included
  uint64_t anti_entropy_pulls = 0;
  uint64_t reconnect_pings = 0;
};

class Swim {
 public:
  // Preconditions (asserted): non-empty name and address within kMaxName,
  // 0 < probe_timeout_ms < probe_interval_ms, awareness_max >= 1,
  // packet_budget <= kMaxPacket and large enough for a message with two max-size names.
  // Throws std::invalid_argument for a tombstone_ttl_ms other than the default or 0 that
  // is not above reap_after_ms (asserts vanish from release builds, and a shorter TTL
  // would let a member still remembered bring a deleted value back); config() shows
  // the TTL taken.
  Swim(SwimConfig config, Rng rng, int64_t now_ms);

  // Joins through `seeds` (addresses; our own address is skipped): a push-pull join
  // request to each now, then retries until someone answers and forever after for
  // seeds not known alive (see re-contact above). Empty seeds: we wait to be joined.
  Output join(std::span<const std::string> seeds, int64_t now_ms);
  Output tick(int64_t now_ms);
  // `from_address`: where the datagram came from (replies go there).
  Output receive(std::string_view from_address, const Message& message, int64_t now_ms);
  Output leave(int64_t now_ms);
  // Store writes; key <= kMaxName, value <= kMaxValue bytes (asserted: the admin API
  // validates at the edge).
  Output put(const std::string& key, std::string value, int64_t now_ms);
  Output erase(const std::string& key, int64_t now_ms);

  const Member& self() const;
  const Member* member(std::string_view name) const;
  std::vector<Member> members() const;  // every member held, this one included, by name
  size_t live_count() const { return live_names_.size() + 1; }  // alive+suspect, with self
  const KvStore& store() const { return store_; }
  // Every part of one full-state push-pull from another member has arrived and been
  // merged: its answer to ours, or one it started (a join too: a first instance is
  // synced by the second's join). From then on this member holds the sender's state and
  // clock as of that exchange, so what it writes is above every floor (state.h).
  // Members come first in a push-pull and the store after, in as many packets as it
  // takes, so "someone answered" (live_count() > 1) is not this. Until then, while some
  // member is alive, a push-pull is asked of one every join_retry_ms (a part may be
  // lost). Never true for a member that has only ever been alone. (Nor does it tell an
  // empty cluster from a joiner that has nothing yet: two instances started together,
  // each the other's first contact, sync with each other's empty state, as before.)
  bool synced() const { return synced_; }
  int health_score() const { return awareness_; }  // Lifeguard LHM, 0..awareness_max-1
  bool has_left() const { return left_; }
  const SwimStats& stats() const { return stats_; }
  const SwimConfig& config() const { return cfg_; }
  // How long to keep a leaving member running so its leave gets around.
  int64_t leave_grace_ms() const { return cfg_.probe_interval_ms * 5; }

 private:
  struct Entry {
    Member member;
    std::optional<Suspicion> suspicion;
    size_t live_index = SIZE_MAX;  // position in live_names_, SIZE_MAX if not live
  };
  enum class PendingKind : uint8_t { kRelay, kReconnect };
  struct Pending {  // a ping we sent other than our own probe
    PendingKind kind = PendingKind::kRelay;
    int64_t deadline_ms = 0;
    std::string reply_to;  // relay: the requester's address; reconnect: the pinged address
    uint64_t reply_seq = 0;  // relay: the requester's seq
  };
  struct Probe {
    bool active = false;
    std::string target;
    uint64_t seq = 0;
    int64_t ack_deadline_ms = 0;
    int64_t period_end_ms = 0;
    bool acked = false;
    bool indirect_sent = false;
    uint32_t expected_nacks = 0;
    uint32_t nacks = 0;
  };

  Output finish(int64_t now_ms);
  int64_t scale(int64_t ms) const { return ms * (awareness_ + 1); }
  void adjust_awareness(int delta);
  uint32_t limit() const { return retransmit_limit(cfg_.retransmit_mult, live_count()); }
  SuspicionTimeouts timeouts() const;

  void on_update(const Update& update, const std::string& sender, bool from_push_pull, int64_t now);
  void on_member_update(MemberUpdate u, int64_t now);
  std::optional<Update> newer_than(const Update& update) const;  // our newer claim, if any
  void on_self_update(const MemberUpdate& u);
  void on_ping(std::string_view from_address, const Message& m);
  void anti_entropy(std::string_view from_address, const Message& m, int64_t now);
  // The highest version v such that every entry we hold at or below v arrived at least
  // a settle time ago (UINT64_MAX when nothing arrived within a settle time).
  uint64_t settled_bound(int64_t now);
  int64_t settle_ms() const { return cfg_.anti_entropy_settle_periods * cfg_.probe_interval_ms; }
  void on_ping_req(std::string_view from_address, const Message& m, int64_t now);
  void on_ack(const Message& m, int64_t now);
  void on_push_pull(std::string_view from_address, const Message& m, int64_t now);

  void set_state(Entry& e, MemberState state, int64_t now);
  void add_live(const std::string& name);
  void remove_live(Entry& e);
  void enqueue(const Member& m, const std::string& from = {});
  void changed_member(const std::string& name);

  void start_probe(int64_t now);
  void probe_timeout_passed(int64_t now);
  void finish_probe(int64_t now);
  void gossip(int64_t now);
  void push_pull(const std::string& address, bool response, bool join, uint64_t seq);
  void reconnect(int64_t now);
  void reap(int64_t now);
  void check_suspicions(int64_t now);
  void defer_due_deadlines(int64_t now);

  void send(const std::string& to, Message m, bool piggyback,
            std::optional<Update> first = std::nullopt);
  std::vector<std::string> random_live(size_t k, std::string_view exclude);
  MemberUpdate to_update(const Member& m, const std::string& from) const;

  SwimConfig cfg_;
  Rng rng_;
  std::map<std::string, Entry, std::less<>> members_;  // this one included
  std::vector<std::string> live_names_;  // alive or suspect, not this one
  std::set<std::string> suspects_;
  std::set<std::string> dead_;  // state dead (not left)
  std::vector<std::string> probe_order_;
  size_t probe_index_ = 0;
  Probe probe_;
  std::map<uint64_t, Pending> pending_;
  BroadcastQueue queue_;
  KvStore store_;
  std::vector<std::string> seeds_;
  uint64_t next_seq_ = 0;
  int awareness_ = 0;
  bool left_ = false;
  bool synced_ = false;  // synced()
  // Parts received of the push-pulls that count for synced(), by (sender, seq, response);
  // a few at a time, cleared once one is whole.
  std::map<std::tuple<std::string, uint64_t, bool>, std::set<uint32_t>> partial_;
  int64_t next_probe_ms_ = 0;
  int64_t next_gossip_ms_ = 0;
  int64_t next_push_pull_ms_ = 0;
  int64_t next_reconnect_ms_ = 0;
  int64_t next_reap_ms_ = 0;
  std::deque<std::pair<int64_t, uint64_t>> recent_;  // (arrival ms, version), last settle time
  int64_t next_anti_entropy_ms_ = 0;
  int64_t wanted_tick_ms_ = 0;
  Output out_;
  SwimStats stats_;
};

}  // namespace ringproxy::gossip
