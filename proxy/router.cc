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
    return pool.backends[i].state->usable();
  };
  const auto admits = [&](NodeIndex i) {
    if (!fresh_and_usable(i)) return false;
    // Slow start: a returning node takes a growing, fixed subset of its keys; the
    // others walk on to the next node, as if it were still away.
    const SlowStartRamp ramp = pool.backends[i].state->ramp();
    return ramp.end_ms == 0 || now_ms >= ramp.end_ms ||
           slow_start_admits(key_hash, ramp.start_ms, ramp.end_ms, now_ms);
  };
  // Each counter is read where the rule needs it: no snapshot, no copy per request.
  const auto in_flight = [&](NodeIndex i) {
    return pool.backends[i].state->in_flight.load(std::memory_order_relaxed);
  };
  if (auto node = ring.pick_bounded(key_hash, admits, in_flight, load_factor)) return node;
  // Every node that may take the key is ramping and turns it away (nodes that came
  // together: a [[discover]] source's first answer after the start, or a pool's one
  // node back after an outage). There is no next node to walk on to: the key goes
  // where the ring says, ramps aside, rather than to the 503 of "no usable node".
  return ring.pick_bounded(key_hash, fresh_and_usable, in_flight, load_factor);
}

}  // namespace ringproxy
