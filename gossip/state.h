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
// part in the order like any write. They are kept for the life of the process: the key
// set is small (backends, health views) and dropping a tombstone early would let an
// instance that missed the delete bring the key back. A restarted instance relearns them
// by push-pull.
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
  // Keeps the larger of the held entry and `entry`. Returns true if the store changed.
  bool merge(const std::string& key, const KvEntry& entry);

  // A local write by `origin`: version = max_version() + 1. Returns the entry written.
  const KvEntry& put(const std::string& key, std::string value, const std::string& origin);
  // A local delete: a tombstone with version = max_version() + 1. Deleting a key never
  // seen still writes a tombstone (it may be in flight from elsewhere).
  const KvEntry& erase(const std::string& key, const std::string& origin);

  // The live value of `key`; nullopt if absent or deleted.
  std::optional<std::string_view> get(std::string_view key) const;
  // The entry, tombstones included; nullptr if never seen.
  const KvEntry* find(std::string_view key) const;

  // Every entry, tombstones included, ordered by key.
  const std::map<std::string, KvEntry, std::less<>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  uint64_t max_version() const { return max_version_; }

  // A 64-bit fingerprint of the whole store (every key and entry, tombstones included):
  // FNV-1a 64 over the entries in key order, each field length-prefixed so that no two
  // different stores serialize alike. Equal stores give equal digests on every instance
  // and platform; tests and GET /ring use it to see convergence. Not collision resistant
  // against an adversary, and need not be: it compares states, it does not authenticate.
  uint64_t digest() const;

  // An order-free fingerprint of the entries with version <= `max_version` (tombstones
  // included): the wrapping sum of a mixed 64-bit hash of each (key, entry), plus their
  // count. Two stores agree on it when they hold the same entries up to that version,
  // whatever else they hold: Swim's anti-entropy compares the part of two stores that
  // has had time to spread. O(entries); the last result is cached.
  uint64_t digest_upto(uint64_t max_version) const;

 private:
  std::map<std::string, KvEntry, std::less<>> entries_;
  uint64_t max_version_ = 0;
  // Per key: (version, entry hash) for digest_upto, kept as entries change.
  std::map<std::string, std::pair<uint64_t, uint64_t>, std::less<>> hashes_;
  mutable uint64_t upto_version_ = 0;
  mutable uint64_t upto_digest_ = 0;
  mutable bool upto_valid_ = false;
};

}  // namespace ringproxy::gossip
