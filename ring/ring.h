// The consistent-hash ring: SPEC.md "The ring". A pure, immutable value with no I/O and
// no clock. A membership change builds a new Ring and publishes it as
// std::shared_ptr<const Ring>; lookups never lock. Health does not rebuild the ring:
// it skips nodes by walking it (pick() with a predicate), so a node leaving moves only
// its own keys and a node returning takes back exactly those.
//
// Placement, so that any tool can compute the same mapping:
//   node N of weight w owns vnodes*w points; point j sits at XXH3_64bits("N#j"), seed 0;
//   a key's hash is XXH3_64bits(key); its owner is the node of the first point at or
//   after that hash, wrapping to the smallest point; equal points: smaller name first.
//
// Placement::kNginx instead places points and keys as nginx's `hash $key consistent`
// (ngx_http_upstream_hash_module), so that a tier moving from nginx keeps every key on
// its cache: the node's address string A (as nginx's `server` is written) is split at
// its last ':' followed only by digits into host H and port P; base = the CRC-32 state
// after H, one NUL byte and P; a node of weight w owns 160*w points (vnodes does not
// apply), point j = CRC-32 of base continued with the 4 little-endian bytes of point
// j-1 (point -1 = 0). A key's hash is CRC-32(key). Both are 32-bit; here they sit in the
// top half of the 64-bit space (h << 32), which keeps their order, so lookups are the
// same code. Equal points: smaller name first (nginx keeps one of them arbitrarily; at
// 32 bits, a tie is about a 1-in-a-million event per pair of points).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringproxy {

enum class Placement : uint8_t {
  kXxh3,   // SPEC "The ring" (the default)
  kNginx,  // nginx's `hash ... consistent` (above)
};

struct RingNode {
  std::string name;     // unique, any bytes but empty; ring positions derive from it
  std::string address;  // carried for the caller and the fingerprint; placed by kNginx
  uint32_t weight = 1;  // 0 = owns no points (drained)
  bool operator==(const RingNode&) const = default;
};

// Index of a node in Ring::nodes(); stable for the life of one Ring.
using NodeIndex = uint32_t;

class Ring;

struct RingBuildResult {
  std::shared_ptr<const Ring> ring;  // null exactly when error is non-empty
  std::string error;
};

class Ring {
 public:
  // Builds a ring. Nodes are kept sorted by name, so the order they are given in changes
  // nothing, including NodeIndex values. Refuses duplicate or empty names, vnodes == 0,
  // and more than kMaxPoints points in all. Cost: O(P) for P points (hashes are uniform;
  // ring/point_sort.h), O(P log P) at worst.
  static RingBuildResult build(std::vector<RingNode> nodes, uint32_t vnodes,
                               Placement placement = Placement::kXxh3);

  static constexpr size_t kMaxPoints = size_t{1} << 26;
  static constexpr uint32_t kNginxPointsPerWeight = 160;  // ngx_http_upstream_hash_module

  // XXH3_64bits(key), seed 0: the hash SPEC places keys with.
  static uint64_t hash(std::string_view key);
  // CRC-32(key) << 32: where kNginx places a key.
  static uint64_t nginx_hash(std::string_view key);
  // The hash this ring places `key` with (one of the two above).
  uint64_t key_hash(std::string_view key) const {
    return placement_ == Placement::kNginx ? nginx_hash(key) : hash(key);
  }
  Placement placement() const { return placement_; }

  // The owner of `hash`, ignoring health; nullopt when the ring has no points (no
  // nodes, or every weight 0). Allocation-free.
  std::optional<NodeIndex> lookup(uint64_t hash) const;
  std::optional<NodeIndex> lookup(std::string_view key) const { return lookup(key_hash(key)); }

  // The first node at or after `hash` in ring order for which usable(node) is true;
  // nullopt when none is. Nodes are tested point by point, so a node may be tested more
  // than once; the predicate must be cheap and pure. Allocation-free. This is how
  // down, ejected and drained nodes are skipped without a rebuild.
  template <typename Usable>
  std::optional<NodeIndex> pick(uint64_t hash, Usable&& usable) const;

  // Visits the distinct nodes that own points, in ring order from `hash`, each once,
  // until visit(node) returns false or every node was visited. Retries and fallbacks
  // walk this sequence. Allocates only when the ring has more than 256 nodes.
  template <typename Visit>
  void walk(uint64_t hash, Visit&& visit) const;

  // The node to use under bounded loads (Mirrokni, Thorup, Zadimoghaddam 2016,
  // "Consistent Hashing with Bounded Loads"): with load_factor c > 1, a usable node is
  // skipped when in_flight(node) >= ceil(c * (total + 1) / usable_count), where total
  // sums in_flight over the usable nodes of weight > 0 and usable_count counts them.
  // c <= 1 means no bound: pick(). `in_flight(i)` is node i's requests in flight, read
  // where needed (twice per node at most), so that the caller's counters need no
  // snapshot: the proxy passes its shared atomics (proxy/router.cc). When every usable
  // node is at the bound (possible only when the counts move between the two reads) the
  // plain pick is returned. The one implementation of SPEC's load_factor rule.
  template <typename Usable, typename InFlight>
  std::optional<NodeIndex> pick_bounded(uint64_t hash, Usable&& usable, InFlight&& in_flight,
                                        double load_factor) const;

  // ceil(c * (total + 1) / usable_count): the in-flight bound of SPEC's load_factor.
  static uint64_t load_bound(double load_factor, uint64_t total_in_flight,
                             size_t usable_count);

  std::span<const RingNode> nodes() const { return nodes_; }
  std::optional<NodeIndex> find(std::string_view name) const;
  uint32_t vnodes() const { return vnodes_; }
  size_t points() const { return points_.size(); }
  bool empty() const { return points_.empty(); }

  // 128-bit digest of (vnodes, every node's name, address and weight, and the placement
  // when it is not the default) as hex. Two rings have equal fingerprints exactly when
  // they were built from the same nodes (in any order), vnodes and placement, and so
  // place every key alike.
  const std::string& fingerprint() const { return fingerprint_; }

  // The fraction of the 2^64 hash space each node owns, indexed by NodeIndex; sums to 1
  // unless the ring is empty.
  std::vector<double> shares() const;

  // The fraction of hash space whose owner's name differs between two rings: the share
  // of keys a switch from `a` to `b` would move. Both empty: 0; one empty: 1.
  static double moved_fraction(const Ring& a, const Ring& b);

  // Bytes held by this ring (points, index and nodes), for benchmarks.
  size_t memory_bytes() const;

  // Point i of the sorted points; for tests and tools.
  uint64_t point_hash(size_t i) const { return points_[i].hash; }
  NodeIndex point_owner(size_t i) const { return points_[i].owner; }

 private:
  Ring() = default;

  // Index of the first point with hash >= h, wrapped to 0 past the last. Precondition:
  // the ring has points.
  size_t first_point(uint64_t h) const;

  std::vector<RingNode> nodes_;   // sorted by name
  // Sorted by hash; ties ordered by owner (= name). Hash and owner side by side: a
  // lookup that misses the cache pays for one line, not two.
  struct Point {
    uint64_t hash;
    NodeIndex owner;
  };
  std::vector<Point> points_;
  // index_[b] = first point whose top index_bits_ bits are >= b; index_.size() = 2^bits+1.
  // Narrows the search for a hash to ~4 points, one cache line (see build()).
  std::vector<uint32_t> index_;
  unsigned index_shift_ = 64;  // 64 - index bits
  uint32_t vnodes_ = 0;
  Placement placement_ = Placement::kXxh3;
  uint32_t nodes_with_points_ = 0;
  std::string fingerprint_;
};

inline size_t Ring::first_point(uint64_t h) const {
  const uint64_t bucket = index_shift_ >= 64 ? 0 : h >> index_shift_;
  size_t lo = index_[bucket];
  const size_t hi = index_[bucket + 1];
  // Buckets hold ~4 points: a linear scan beats a binary search's branches.
  while (lo < hi && points_[lo].hash < h) ++lo;
  return lo == points_.size() ? 0 : lo;
}

inline std::optional<NodeIndex> Ring::lookup(uint64_t h) const {
  if (points_.empty()) return std::nullopt;
  return points_[first_point(h)].owner;
}

template <typename Usable>
std::optional<NodeIndex> Ring::pick(uint64_t h, Usable&& usable) const {
  const size_t n = points_.size();
  if (n == 0) return std::nullopt;
  size_t i = first_point(h);
  for (size_t step = 0; step < n; ++step) {
    const NodeIndex owner = points_[i].owner;
    if (usable(owner)) return owner;
    if (++i == n) i = 0;
  }
  return std::nullopt;
}

template <typename Visit>
void Ring::walk(uint64_t h, Visit&& visit) const {
  const size_t n = points_.size();
  if (n == 0) return;
  // Seen-set: a bitmap on the stack for up to 256 nodes, the heap beyond.
  constexpr size_t kInlineNodes = 256;
  uint64_t inline_bits[kInlineNodes / 64] = {};
  std::vector<uint64_t> heap_bits;
  uint64_t* bits = inline_bits;
  if (nodes_.size() > kInlineNodes) {
    heap_bits.assign((nodes_.size() + 63) / 64, 0);
    bits = heap_bits.data();
  }
  uint32_t seen = 0;
  size_t i = first_point(h);
  for (size_t step = 0; step < n && seen < nodes_with_points_; ++step) {
    const NodeIndex owner = points_[i].owner;
    uint64_t& word = bits[owner / 64];
    const uint64_t bit = uint64_t{1} << (owner % 64);
    if ((word & bit) == 0) {
      word |= bit;
      ++seen;
      if (!visit(owner)) return;
    }
    if (++i == n) i = 0;
  }
}

template <typename Usable, typename InFlight>
std::optional<NodeIndex> Ring::pick_bounded(uint64_t h, Usable&& usable, InFlight&& in_flight,
                                            double load_factor) const {
  if (!(load_factor > 1.0)) return pick(h, usable);
  uint64_t total = 0;
  size_t usable_count = 0;
  for (NodeIndex i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].weight > 0 && usable(i)) {
      total += in_flight(i);
      ++usable_count;
    }
  }
  if (usable_count == 0) return std::nullopt;
  const uint64_t bound = load_bound(load_factor, total, usable_count);
  auto under = pick(h, [&](NodeIndex i) { return usable(i) && in_flight(i) < bound; });
  return under ? under : pick(h, usable);
}

}  // namespace ringproxy
