#include "gossip/suspicion.h"

#include <algorithm>
#include <cmath>

namespace ringproxy::gossip {

SuspicionTimeouts suspicion_timeouts(size_t n, int64_t interval_ms, uint32_t suspicion_mult,
                                     uint32_t max_timeout_mult, int64_t floor_ms) {
  SuspicionTimeouts t;
  const double node_scale = std::max(1.0, std::log10(std::max(1.0, static_cast<double>(n))));
  t.min_ms = std::max(floor_ms, static_cast<int64_t>(suspicion_mult * node_scale *
                                                     static_cast<double>(interval_ms)));
  t.max_ms = t.min_ms * max_timeout_mult;
  t.k = suspicion_mult >= 2 ? suspicion_mult - 2 : 0;
  if (n < 2 + static_cast<size_t>(t.k)) t.k = 0;
  return t;
}

int64_t suspicion_timeout_ms(uint32_t confirmations, const SuspicionTimeouts& t) {
  if (t.k == 0) return t.min_ms;  // memberlist newSuspicion: "if k < 1 timeout = min"
  const uint32_t c = std::min(confirmations, t.k);
  const double frac = std::log(c + 1.0) / std::log(t.k + 1.0);
  const double raw = static_cast<double>(t.max_ms) - frac * static_cast<double>(t.max_ms - t.min_ms);
  return std::max(t.min_ms, static_cast<int64_t>(std::floor(raw)));
}

}  // namespace ringproxy::gossip
