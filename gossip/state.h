// The application state every instance gossips: a map of last-writer-wins registers
// (a state-based CRDT, Shapiro et al. 2011, "A comprehensive study of Convergent and
// Commutative Replicated Data Types", LWW-Register and LWW-element map). The proxy puts
// backends in it ("backend/NAME" -> serialized {address, weight, drained}) and each
// instance's health view ("health/INSTANCE/BACKEND" -> "up" | "down"); values are opaque
// bytes here.
//
// Merge rule: entries are totally ordered by (version, origin, tombstone, value),
// compared lexicographically (strings bytewise); the larger entry wins. So:
//  - a higher version wins (the writer takes version = highest version it has seen in
//    the whole store + 1, a Lamport clock, so a write made after seeing another wins);
//  - at equal versions the larger origin name wins (concurrent writes, one winner
//    everywhere; arbitrary but deterministic);
//  - same version and origin can only differ if an instance restarted and lost its
//    state: a tombstone beats a value, then the bytewise larger value wins. This last
//    step makes the order total, hence merge is a join of a semilattice: commutative,
//    associative and idempotent (tests/gossip/state_test.cc checks all three), so every
//    instance that has seen the same entries, in any order and any number of times, holds
//    the same store and the same digest().
// Deletions are tombstones (an entry with tombstone = true and an empty value) that take
// part in the order like any write.
//
// Collecting tombstones. Keys churn (a [[discover]] source's nodes are pod addresses
// that change at every restart, and each leaves "found/", "health/" and "drain/"
// entries behind), so a tombstone cannot be kept for the life of the process. collect()
// drops a tombstone once this instance has held it for a horizon, measured on its own
// clock from when it stored it (no clock is compared with another instance's). The
// horizon is Swim's tombstone_ttl_ms, 48 h: twice the member reap time, as serf keeps a
// departed member's tombstone for TombstoneTimeout (24 h) and Cassandra a deletion for
// gc_grace_seconds (10 days by default), long enough for every replica to have seen it.
//
// The danger is resurrection: an instance cut off for longer than the horizon still
// holds a value the others deleted, and once they have dropped the tombstone its value
// would look new to them and spread again. Three answers were weighed:
//  (a) rely on the horizon exceeding the reap time (a member away that long is
//      forgotten). Not enough alone: a reaped member that comes back is simply a new
//      member, re-contact and push-pull merge its whole store, and the value returns
//      everywhere. We keep the relation (horizon = 2 x reap time) for what it does
//      give: a member still remembered, dead or left, has nothing to bring back.
//  (b) remember a floor per collected key. Correct, but it keeps a record per deleted
//      key: the unbounded growth we are removing.
//  (c) one floor per store: floor() is one above the highest version of any tombstone
//      this instance collected, and an entry below the floor for a key not held live here
//      is refused. This is what we do. It is exact against resurrection because
//      versions are a Lamport clock: every entry a tombstone overwrote has a version at
//      or below the tombstone's, hence below the floor once it is collected. Its cost is
//      that it cannot tell a stale value from a write made, concurrently, by a writer
//      that had not seen those collected tombstones: in practice only the other side of
//      a split longer than the horizon (its Lamport clock lagged) or an instance writing
//      before a whole push-pull has reached it (Swim::synced(); GossipAgent holds its
//      leases and health views back until then, and the owner of a refused health view
//      writes it again). Such a write, to a key this instance does not hold live, is
//      refused like a stale value.
//      We prefer losing a write made during a split of two days to bringing back a
//      deleted backend, whose address Kubernetes may have given to another pod. An
//      instance never partitioned longer than the horizon loses nothing: every
//      tombstone collected anywhere was written more than the horizon ago, before it was
//      cut off, and so reached it first (an update spreads in about a second, and
//      anti-entropy repairs a miss within seconds: swim.h).
// Refusing is not enough: the instance holding the refused value would keep it, the
// two stores would differ forever and anti-entropy would push-pull between them every
// settle time (a storm). So a refused live entry is answered with a tombstone that
// supersedes it: version floor() - 1 (the highest collected), origin the refused
// entry's (which wins a tie at that version, tombstone over value). It is a new local
// tombstone like any other: gossiped, it deletes the value at its holder and at any
// instance with a lower floor that took it, then ages out in its turn. It carries the
// floor's version, so its receiver's Lamport clock passes the floor and its next write
// is accepted. A refused tombstone is just dropped (it deletes nothing here); this is
// also why a collected tombstone that a peer which has not yet collected it sends back
// does not return. An instance with no floor yet (just started) takes such entries;
// those with a floor delete them again.
//
// Collection breaks the semilattice only below a floor, on purpose; above every
// floor merge is the join described above. Instances collect at different moments (each
// from its own arrival), so digest() and digest_upto() fingerprint the live entries
// only: two instances that agree on every live entry agree on the digest whether or not
// they still hold the same tombstones, and anti-entropy does not chase tombstones that
// one side has already collected. A tombstone still shows where it matters: a key live
// on one side and deleted on the other differs. The tombstone holding max_version() is
// never collected: push-pull then always carries the store's highest version, so what
// an instance writes once a whole push-pull has reached it (Swim::synced()) is above
// every floor. Not once it is merely joined: a push-pull carries the members first and
// the store after, in as many datagrams as it takes.
//
// Not thread-safe; one owner (the Swim instance).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace ringproxy::gossip {

struct KvEntry {
  std::string value;   // opaque bytes; empty for a tombstone
  uint64_t version = 0;
  std::string origin;  // name of the instance that wrote it
  bool tombstone = false;
  bool operator==(const KvEntry&) const = default;
};

// Whether `a` wins over `b` under the order above (strictly greater).
bool supersedes(const KvEntry& a, const KvEntry& b);

class KvStore {
 public:
  // Keeps the larger of the held entry and `entry`, unless `entry` is below floor() for a
  // key not held live (see "Collecting tombstones"): then a tombstone is refused, and a
  // live entry is refused and answered with a tombstone that supersedes it. `now_ms`
  // (this instance's clock) stamps a tombstone stored, for collect(). Returns true if the
  // store changed; find(key) is then what to pass on.
  bool merge(const std::string& key, const KvEntry& entry, int64_t now_ms);

  // A local write by `origin`: version = max_version() + 1. Returns the entry written.
  const KvEntry& put(const std::string& key, std::string value, const std::string& origin);
  // A local delete: a tombstone with version = max_version() + 1, stored at `now_ms`.
  // Deleting a key never seen still writes a tombstone (it may be in flight from
  // elsewhere).
  const KvEntry& erase(const std::string& key, const std::string& origin, int64_t now_ms);

  // Drops every tombstone stored at or before now_ms - horizon_ms, except those at
  // max_version(); raises floor() above the versions dropped. Returns how many it
  // dropped. O(tombstones). horizon_ms > 0.
  size_t collect(int64_t now_ms, int64_t horizon_ms);

  // The live value of `key`; nullopt if absent or deleted.
  std::optional<std::string_view> get(std::string_view key) const;
  // The entry, tombstones included; nullptr if never seen or collected.
  const KvEntry* find(std::string_view key) const;

  // Every entry, tombstones included, ordered by key.
  const std::map<std::string, KvEntry, std::less<>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  size_t tombstones() const { return tombstone_since_.size(); }
  uint64_t max_version() const { return max_version_; }
  // One above the highest version collected; 0 before the first collection.
  uint64_t floor() const { return floor_; }
  uint64_t collected() const { return collected_; }  // tombstones dropped, ever
  uint64_t refused() const { return refused_; }      // live entries refused below the floor, ever

  // A 64-bit fingerprint of the live entries (tombstones left out: see above): FNV-1a 64
  // over them in key order, each field length-prefixed so that no two different sets
  // serialize alike. Equal live entries give equal digests on every instance and
  // platform; tests use it to see convergence. Not collision resistant against an
  // adversary, and need not be: it compares states, it does not authenticate.
  uint64_t digest() const;

  // An order-free fingerprint of the live entries with version <= `max_version`: the
  // wrapping sum of a mixed 64-bit hash of each (key, entry), plus their count. Two
  // stores agree on it when they hold the same live entries up to that version,
  // whatever else they hold: Swim's anti-entropy compares the part of two stores that
  // has had time to spread. O(live entries); the last result is cached.
  uint64_t digest_upto(uint64_t max_version) const;

 private:
  void store(const std::string& key, const KvEntry& entry, int64_t now_ms);

  std::map<std::string, KvEntry, std::less<>> entries_;
  uint64_t max_version_ = 0;
  uint64_t floor_ = 0;
  uint64_t collected_ = 0;
  uint64_t refused_ = 0;
  // Per live key: (version, entry hash) for digest_upto, kept as entries change.
  std::map<std::string, std::pair<uint64_t, uint64_t>, std::less<>> hashes_;
  // Per tombstone: when this instance stored it (its own clock), for collect().
  std::map<std::string, int64_t, std::less<>> tombstone_since_;
  mutable uint64_t upto_version_ = 0;
  mutable uint64_t upto_digest_ = 0;
  mutable bool upto_valid_ = false;
};

}  // namespace ringproxy::gossip
