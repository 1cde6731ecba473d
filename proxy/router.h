// Which node a request goes to: a pure function of the pool, the key's hash, the
// nodes already tried and the time. No I/O, no clock of its own, no allocation: it runs
// once per attempt of every request (DESIGN.md, "router").
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "proxy/backends.h"

namespace ringproxy {

// The node of `pool` for a request whose key hashes to `key_hash` (pool.ring->key_hash(key)),
// or nullopt when no node may take it. A node may take it when it is
//   - not in `tried` (the nodes earlier attempts of this request went to),
//   - usable (NodeState::usable(): up, not ejected, not draining), and
//   - admits the key at `now_ms` if it is ramping (slow start, slow_start_admits():
//     no ramp, or its end reached, admits every key; before that a fixed, growing subset).
// Of those, the first in ring order from `key_hash` (Ring::pick), so a node leaving
// moves only its own keys, each to the next node of the ring. When no node admits the
// key only because of its ramp (every other one is ramping too), the first of those
// that are not tried and usable: a cold node rather than no node.
//
// With ring.load_factor c > 1 (bounded loads, Ring::pick_bounded): the bound is
// Ring::load_bound(c, total, count) over the nodes of weight > 0 that may take this key
// (so it depends on the key and on `tried`), total summing their in_flight; the first
// such node in ring order whose in_flight is below the bound is chosen. When none is
// (only possible when in_flight moves between the two reads: other workers), the plain
// pick above is used.
//
// `now_ms` is uv_now()'s clock, the one NodeState's ramp times are in. Node states are
// read with relaxed loads: a decision on a value a moment old is fine. Any thread.
std::optional<NodeIndex> pick_node(const Pool& pool, uint64_t key_hash,
                                   std::span<const NodeIndex> tried, uint64_t now_ms);

}  // namespace ringproxy
