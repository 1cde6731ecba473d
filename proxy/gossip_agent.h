// The proxy's gossip shell: runs the pure Swim state machine (gossip/swim.h) on the
// control loop over a UdpTransport, and keeps the instances' shared state: the backend
// set and the admin drains, as last-writer-wins entries of Swim's store:
//   "backend/NAME" -> "ADDRESS WEIGHT"   (a tombstone when removed; "pool/POOL/NAME"
//                                        for a node of a [[pool]] other than "default")
//   "drain/NAME"   -> "1"                (a tombstone when undrained; NAME is
//                                        Pool::qualified, "POOL/NAME" beyond "default")
//   "health/INSTANCE/NAME" -> "down"     (a tombstone when INSTANCE sees it usable; a
//                                        pool's node as "POOL@NAME")
//   "found/H(SOURCE)/H(NODE)" -> "ADDRESS WEIGHT PRIORITY"  (a node a [[discover]]
//                                        source found, named by its ADDRESS; H: XXH3 in
//                                        hex; a tombstone when its record went away)
//   "found-ok/H(SOURCE)/H(INSTANCE)" -> "SEQ TTL_MS"  (INSTANCE's lease on the source:
//                                        rewritten at each of its good answers; the
//                                        shared set counts while some lease changes,
//                                        proxy/discovery.h SharedLease)
// Every instance builds its ring from these entries, so all route each key alike once
// the entries have spread (GET /ring shows one fingerprint everywhere).
//
// Each set also has a marker, a live entry with an empty node name: "backend/" for pool
// "default", "pool/POOL/" for another, "found/H(SOURCE)/" (empty value). It says "this
// set is the cluster's" for as long as the cluster runs, however long the set has been
// empty: the deletes of its nodes are collected after 48 h (gossip/state.h), and a set
// that read as never written would be seeded again from an instance's file that still
// lists the removed nodes (or a source's first answer at one instance would be taken
// over the cluster's "nothing"). No version reads a marker as a node (an empty name is
// not a valid backend name, and "" is not a found value), and every version counts it
// as the set's (pool_of_key, found()), so instances from before markers read them right.
// Written with the set's first entry, at every change of it, and at settle for every set
// the store shows (sets shared before markers), never deleted.
//
// Keeping the store small: Swim drops a tombstone 48 h after it stored it
// (gossip/state.h, "Collecting tombstones"), but keys must be deleted first, and under
// pod churn two kinds would otherwise stay live for ever:
//  - an instance's own keys, "health/INSTANCE/..." and "found-ok/.../H(INSTANCE)", after
//    it has gone: when Swim reaps a member (24 h after it was last seen dead or left),
//    every instance deletes what is still live of them (the first to reap does it; the
//    others find them deleted). The instance, if it comes back, writes them again: its
//    lease at its next good answer, its health views at once (below). Not for a member
//    reaped dead while this instance sees itself alone, or no more than half of the most
//    instances it saw alive at once in the last two reap times (less those that left):
//    then it is the one cut off, most likely, and its deletes would win over views and
//    leases the others keep writing; the keys wait until it sees a majority again.
//  - this instance's "health/SELF/NODE" = "down" for a node no longer in any pool (a pod
//    that failed its checks, then left the DNS answer): deleted at each new routing.
// An instance owns its "health/SELF/..." keys: when another writes one (a cleanup as
// above, or a refusal below the collected floor), it writes its own view back: at once
// the first time, then at most once per key in 1 s, 2 s, 4 s ... up to 5 min, so that
// two processes started with the same gossip name do not write each other's views back
// for ever at gossip speed (said once in 10 minutes, as a warning).
//
// Health agreement: a backend is skipped by an instance when its own checks (or passive
// ejection) say so, or when more than half of the alive instances report it down; it
// comes back only when its own checks pass and no majority says down. So a backend that
// one instance cannot reach (a partial network fault) still gets that instance's keys
// elsewhere, while a node that most instances see down is avoided by all, and every
// instance routes each key alike within a few gossip periods of a change.
//
// Who writes what:
//  - At start the file's backends are used at once, and written to the shared state
//    only if, once settled, the cluster has no backends yet: a restarted instance adopts
//    the cluster's state instead of imposing its file. Settled: it holds a full state
//    another instance sent (Swim::synced(), every part of a push-pull: "someone
//    answered" is not enough, the store comes after the members), or nobody answered
//    within a short grace (it is then taken to be the first instance).
//  - Its own keys (leases, health views) wait until settled: written before, at a
//    clock behind the cluster's, they could be refused below a collected floor.
//  - Admin mutations (add, remove, weight, drain) and reloads (the file's backends
//    become the shared set) are written at the instance that got them and spread. A
//    write of backends before settled settles it (its set is the shared one from then).
//
// Thread: the control loop's.
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "gossip/swim.h"
#include "gossip/udp_transport.h"
#include "proxy/backends.h"
#include "proxy/discovery.h"
#include "proxy/rate_limited_log.h"

namespace ringproxy {

class GossipAgent {
 public:
  // Called after the shared backends or drains changed (by anyone).
  using OnShared = std::function<void()>;

  // The agent's outside world (STYLE rule 3): the clock, the wire and a timer. start()
  // below makes one on the loop (a UdpTransport, messages through the codec, a uv
  // timer); tests run agents on a simulated network in virtual time.
  class Io {
   public:
    virtual ~Io() = default;
    virtual int64_t now() const = 0;  // ms, monotonic
    virtual void send(const std::string& to, const gossip::Message& message) = 0;
    // on_tick() is due at `at_ms` (at once if that has passed); replaces the last request.
    virtual void wake_at(int64_t at_ms) = 0;
    // Nothing is sent, received or ticked any more; `done` (may be empty) runs once
    // whatever the Io holds is released (on the loop: from a close callback).
    virtual void close(std::function<void()> done) = 0;
  };

  // `loop`: the control loop, for start(config, ...); null for an agent started on an Io.
  GossipAgent(uv_loop_t* loop, OnShared on_shared);
  ~GossipAgent();

  // Each pool's backends, by pool name.
  using PoolBackends = std::map<std::string, std::vector<BackendConfig>, std::less<>>;
  // Binds gossip.bind and joins gossip.seeds. `file_backends` are the ones to seed the
  // shared state with (see above), per pool: a pool the cluster has no entry for is
  // seeded from this instance's file. Returns "" or what went wrong.
  std::string start(const GossipConfig& config, const PoolBackends& file_backends);
  // The same on `io`: a Swim with `config` (name, address, timings) joins through
  // `seeds` (addresses). start() above ends here.
  void start(std::unique_ptr<Io> io, gossip::SwimConfig config, gossip::Rng rng, const std::vector<std::string>& seeds,
             const PoolBackends& file_backends);
  // Announces the leave, lets it spread for a few probe intervals, then closes; `done`
  // runs on the loop once the handles are closed.
  void leave(std::function<void()> done);
  // From the Io: a message that came from `from` (an address), and the timer.
  void on_message(const std::string& from, const gossip::Message& message);
  void on_tick();

  // The shared backend set of `pool`, sorted by name; nullopt until it has been seeded
  // (until then the file's backends stand), and for a pool other than "default" while
  // no instance has written it.
  std::optional<std::vector<BackendConfig>> backends(std::string_view pool = "default") const;
  std::set<std::string> drained() const;
  // Holds a whole copy of the cluster's state (Swim::synced()), or found no one within
  // the start's grace, or wrote backends of its own: what it shares now is the
  // cluster's. on_shared is called when it becomes so.
  bool settled() const { return seeded_; }

  // Local writes, spread to every instance.
  void put_backend(std::string_view pool, const BackendConfig& backend);
  void erase_backend(std::string_view pool, const std::string& name);
  // `name`: Pool::qualified.
  void set_drained(const std::string& name, bool drained);
  // Makes the shared set of `pool` exactly `backends` (a reload or an admin change at
  // this instance).
  void replace_backends(std::string_view pool, const std::vector<BackendConfig>& backends);
  // The nodes of a [[discover]] source as the instances share them (the source's tls
  // settings are this instance's), sorted by name; nullopt when no instance has written
  // the source yet.
  std::optional<std::vector<FoundNode>> found(const DiscoverConfig& source) const;
  // Makes the shared set of `source` exactly `nodes` (what this instance's resolver
  // found): new and changed nodes written, those gone erased.
  void share_found(const DiscoverConfig& source, const std::vector<FoundNode>& nodes);
  // This instance's lease on `source` (proxy/discovery.h, SharedLease): written at each
  // of its good answers for it, `ttl_ms` until it asks again. One key per instance and
  // source: "found-ok/H(SOURCE)/H(INSTANCE)" -> "SEQ TTL_MS".
  void renew_lease(const DiscoverConfig& source, uint64_t ttl_ms);
  // Every instance's lease on `source`, as the store holds them.
  std::vector<SharedLease::Lease> leases(const DiscoverConfig& source) const;
  // This instance's view of a backend, by Pool::qualified name (written only when it
  // changes; before settled(), kept and written then).
  void report_health(const std::string& backend, bool down);
  // Deletes this instance's health views of nodes not in `backends` (Pool::qualified
  // names: every node of every pool in the routing now). Before settled(), done then.
  void forget_health(const std::set<std::string>& backends);
  // Backends that more than half of the alive instances (this one included) report down.
  std::set<std::string> majority_down() const;

  const std::string& name() const;
  std::vector<gossip::Member> members() const;
  // The socket's counters and the datagrams that did not decode (zero on an Io other
  // than the loop's).
  const gossip::UdpStats& transport_stats() const;
  const gossip::KvStore& store() const { return swim_->store(); }
  uint64_t decode_errors() const;

 private:
  class LoopIo;
  void handle(gossip::Output out);
  void maybe_seed();
  // Once settled: what waited for it (leases, health views), and markers for the sets
  // the store shows without one.
  void on_settled();
  // After a handle(): deletes what is live of reaped members, and writes back our own
  // health views that someone else overwrote.
  void tidy(const gossip::Output& out);
  void reaped(const std::string& name, gossip::MemberState last);
  void restore_health(const std::string& key);
  void write_health(const std::string& key, bool down);
  void wake();
  static bool fits(const std::string& key);
  bool has_pool(std::string_view pool) const;  // any entry of the pool's: tombstones, marker too
  void own(const std::string& marker);          // writes the set's marker unless live
  // The most instances (this one included) seen alive at once over the last two reap
  // times, less those that left since: what "a majority" is judged against in tidy().
  void note_live(int64_t now);
  size_t peak_live() const;
  // Several writes, one on_shared call at the end.
  struct Batch {
    explicit Batch(GossipAgent& agent) : agent_(agent) { ++agent_.batch_; }
    ~Batch();
    GossipAgent& agent_;
  };
  int batch_ = 0;
  bool shared_pending_ = false;
  int64_t now() const { return io_->now(); }

  uv_loop_t* loop_;
  OnShared on_shared_;
  std::unique_ptr<Io> io_;
  LoopIo* loop_io_ = nullptr;  // io_, when start() made it on the loop
  bool closed_ = false;        // io_ closed: the leave's grace is over
  std::unique_ptr<gossip::Swim> swim_;
  int64_t next_tick_ms_ = 0;   // what Swim last asked for
  PoolBackends file_backends_;
  bool seeded_ = false;          // settled(): backends() answers
  bool on_settled_ran_ = false;
  int64_t seed_deadline_ms_ = 0;
  uint64_t lease_seq_ = 0;
  // Leases renewed before settled(): written once settled, so that their version follows
  // the cluster's clock (a write below a collected floor would be refused). Key -> TTL.
  std::map<std::string, uint64_t> unsent_leases_;
  // Our own health views as last reported: key -> down. Before settled(), not written
  // yet; and the nodes of the last forget_health(), to apply then.
  std::map<std::string, bool> reported_;
  std::optional<std::set<std::string>> unforgotten_;
  std::string own_health_prefix_;  // "health/SELF/"
  // Writing back our own views (tidy): per key, when the next write may go, the wait
  // after it, and whether one is due then.
  struct Restore {
    int64_t next_ms = 0;
    int64_t backoff_ms = 0;
    int64_t last_ms = 0;  // the last overwrite seen
    bool due = false;
  };
  std::map<std::string, Restore> restores_;
  int64_t restore_at_ = INT64_MAX;  // the earliest due, INT64_MAX when none
  RateLimitedLog twin_log_;
  // Reaping (tidy): each member's last state as we saw it; those reaped dead while we
  // were cut off, with peak_live() then, whose keys wait for a majority; live counts.
  std::map<std::string, gossip::MemberState> states_;
  std::map<std::string, size_t> orphans_;
  std::deque<std::pair<int64_t, size_t>> live_peaks_;  // (period, most alive in it)
  uint64_t refused_logged_ = 0;
  int64_t refused_log_ms_ = INT64_MIN / 2;
  std::function<void()> left_;
};

// The live keys an instance named `instance` owns: its health views
// ("health/INSTANCE/NODE") and its leases ("found-ok/H(SOURCE)/H(INSTANCE)"), in key
// order. What to delete once it has been reaped.
std::vector<std::string> instance_keys(const gossip::KvStore& store, const std::string& instance);
// This instance's live health views ("health/SELF/NODE") of nodes not in `backends`
// (Pool::qualified names), in key order.
std::vector<std::string> stale_health_keys(const gossip::KvStore& store, const std::string& self,
                                           const std::set<std::string>& backends);

// "ADDRESS WEIGHT", then " tls" or " tls=NAME" for a TLS node, then " h2c" or " h2" for
// a node spoken to in HTTP/2 <-> BackendConfig (name from the key). A value without a
// protocol word is an http1 node (so an http1 node's value is what it was before
// protocols). nullopt when malformed, or when the protocol does not fit tls. (An
// instance before TLS to backends finds a TLS node's value malformed and leaves it out,
// as one before protocols does an h2c or h2 node's: it could not reach it anyway.)
std::string encode_backend(const BackendConfig& b);
std::optional<BackendConfig> decode_backend(const std::string& name, std::string_view value);

}  // namespace ringproxy
