#include "proxy/router.h"

#include <atomic>

#include "health/node_health.h"

namespace ringproxy {

std::optional<NodeIndex> pick_node(const Routing& routing, uint64_t key_hash,
                                   std::span<const NodeIndex> tried, uint64_t now_ms) {
  const Ring& ring = *routing.ring;
  const double load_factor = routing.config->ring.load_factor;
  const auto fresh_and_usable = [&](NodeIndex i) {
    for (const NodeIndex t : tried) {
      if (t == i) return false;
    }
    const NodeState& st = *routing.backends[i].state;
    if (!st.usable()) return false;
    // Slow start: a returning node takes a growing, fixed subset of its keys; the
    // others walk on to the next node, as if it were still away.
    const SlowStartRamp ramp = st.ramp();
    return ramp.end_ms == 0 || now_ms >= ramp.end_ms ||
           slow_start_admits(key_hash, ramp.start_ms, ramp.end_ms, now_ms);
  };
  std::optional<NodeIndex> node;
  if (load_factor > 1.0) {
    // Not Ring::pick_bounded: that takes a snapshot of in_flight, which would be a copy
    // per request; here each counter is read where it is needed.
    uint64_t total = 0;
    size_t usable = 0;
    for (NodeIndex i = 0; i < routing.backends.size(); ++i) {
      if (ring.nodes()[i].weight > 0 && fresh_and_usable(i)) {
        total += routing.backends[i].state->in_flight.load(std::memory_order_relaxed);
        ++usable;
      }
    }
    const uint64_t bound = Ring::load_bound(load_factor, total, usable);
    node = ring.pick(key_hash, [&](NodeIndex i) {
      return fresh_and_usable(i) &&
             routing.backends[i].state->in_flight.load(std::memory_order_relaxed) < bound;
    });
  }
  if (!node) node = ring.pick(key_hash, fresh_and_usable);
  return node;
}

}  // namespace ringproxy
