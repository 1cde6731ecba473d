#include "proxy/router.h"

#include <atomic>

#include "health/node_health.h"

namespace ringproxy {

std::optional<NodeIndex> pick_node(const Pool& pool, uint64_t key_hash,
                                   std::span<const NodeIndex> tried, uint64_t now_ms) {
  const Ring& ring = *pool.ring;
  const double load_factor = pool.config.ring.load_factor;
  const auto fresh_and_usable = [&](NodeIndex i) {
    for (const NodeIndex t : tried) {
      if (t == i) return false;
    }
    const NodeState& st = *pool.backends[i].state;
    if (!st.usable()) return false;
    // Slow start: a returning node takes a growing, fixed subset of its keys; the
    // others walk on to the next node, as if it were still away.
    const SlowStartRamp ramp = st.ramp();
    return ramp.end_ms == 0 || now_ms >= ramp.end_ms ||
           slow_start_admits(key_hash, ramp.start_ms, ramp.end_ms, now_ms);
  };
  // Each counter is read where the rule needs it: no snapshot, no copy per request.
  const auto in_flight = [&](NodeIndex i) {
    return pool.backends[i].state->in_flight.load(std::memory_order_relaxed);
  };
  return ring.pick_bounded(key_hash, fresh_and_usable, in_flight, load_factor);
}

}  // namespace ringproxy
