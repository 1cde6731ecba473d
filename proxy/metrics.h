// Counters for /metrics, cheap on the request path: each worker writes only its own
// cache line (a relaxed load and store, no locked instruction), and a scrape sums the
// workers' lines on the control thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace ringproxy {

// Single-writer increment: only the owning worker writes this counter.
inline void bump(std::atomic<uint64_t>& c, uint64_t by = 1) {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// Per node, per worker: responses by status class (index status / 100; 0 is unused).
struct alignas(64) NodeCounters {
  std::atomic<uint64_t> by_class[6] = {};
  std::atomic<uint64_t> failures{0};  // connect errors, resets, timeouts, malformed responses
};

// Request durations, seconds: Prometheus histogram bucket bounds.
inline constexpr double kDurationBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                             0.05,   0.1,   0.25,   0.5,   1,     2.5,
                                             5,      10};
inline constexpr size_t kDurationBuckets = sizeof(kDurationBounds) / sizeof(kDurationBounds[0]);

// Per worker.
struct alignas(64) WorkerStats {
  std::atomic<uint64_t> duration_buckets[kDurationBuckets + 1] = {};  // last: +Inf
  std::atomic<uint64_t> duration_sum_us{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> no_node{0};  // 503s: no usable node
  std::atomic<uint64_t> client_errors{0};  // 400, 408, 431, 505 answered by the proxy

  void observe_duration_us(uint64_t us) {
    size_t i = 0;
    while (i < kDurationBuckets && static_cast<double>(us) > kDurationBounds[i] * 1e6) ++i;
    bump(duration_buckets[i]);
    bump(duration_sum_us, us);
  }
};

}  // namespace ringproxy
