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

// Durations, seconds: Prometheus histogram bucket bounds (the same for every histogram).
inline constexpr double kDurationBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                             0.05,   0.1,   0.25,   0.5,   1,     2.5,
                                             5,      10};
inline constexpr size_t kDurationBuckets = sizeof(kDurationBounds) / sizeof(kDurationBounds[0]);

// One histogram's counts, written by one worker: per bucket (not cumulative; the last
// is +Inf) and the sum in microseconds.
struct DurationCounts {
  std::atomic<uint64_t> buckets[kDurationBuckets + 1] = {};
  std::atomic<uint64_t> sum_us{0};

  void observe_us(uint64_t us) {
    size_t i = 0;
    while (i < kDurationBuckets && static_cast<double>(us) > kDurationBounds[i] * 1e6) ++i;
    bump(buckets[i]);
    bump(sum_us, us);
  }
  // Adds these counts to a total (a scrape sums the workers' counts).
  void add_to(uint64_t (&total)[kDurationBuckets + 1], uint64_t* total_sum_us) const {
    for (size_t i = 0; i <= kDurationBuckets; ++i) total[i] += buckets[i].load(std::memory_order_relaxed);
    *total_sum_us += sum_us.load(std::memory_order_relaxed);
  }
};

// The client protocols ringproxy_requests_total counts apart (its `protocol` label).
enum ClientProtocol : uint8_t { kProtoHttp1, kProtoH2, kClientProtocols };
inline constexpr const char* kClientProtocolNames[kClientProtocols] = {"http1", "h2"};

// Per node, per worker: responses by client protocol and status class (index
// status / 100; 0 is unused).
struct alignas(64) NodeCounters {
  std::atomic<uint64_t> by_class[kClientProtocols][6] = {};
  std::atomic<uint64_t> failures{0};  // connect errors, resets, timeouts, malformed responses
  // From the request head written to the node to its response head parsed: the node's
  // time to answer (and the request body's upload, when there is one).
  DurationCounts header_time;
  // Which of a named node's addresses the worker's next connection goes to (they are
  // taken in turn). The worker's own: not atomic, never read by another thread.
  uint32_t address_turn = 0;
};

// Per worker.
struct alignas(64) WorkerStats {
  DurationCounts duration;  // first request byte to the end of the response
  std::atomic<uint64_t> retries{0};
  // A pooled connection the backend had closed, tried again once on a new connection.
  std::atomic<uint64_t> reconnects{0};
  // 503s answered by the proxy (no usable node, or out of local resources), by protocol.
  std::atomic<uint64_t> no_node[kClientProtocols] = {};
  // Connects to a backend (socket or connect) and accepts that failed for want of
  // descriptors or memory here (net/local_error.h), and the times a worker stopped
  // accepting for want of descriptors (Worker::pause_accepting).
  std::atomic<uint64_t> local_errors_connect{0};
  std::atomic<uint64_t> local_errors_accept{0};
  std::atomic<uint64_t> accept_pauses{0};
  // 400, 408, 431, 505 answered by the proxy, by protocol.
  std::atomic<uint64_t> client_errors[kClientProtocols] = {};
  // Client TLS handshakes by result (ringproxy_tls_handshakes_total{result}).
  enum TlsResult { kTlsFull, kTlsResumed, kTlsError, kTlsTimeout, kTlsClosed, kTlsPlainHttp, kTlsResults };
  static constexpr const char* kTlsResultNames[kTlsResults] = {"full",   "resumed", "error",
                                                              "timeout", "closed",  "plain_http"};
  std::atomic<uint64_t> tls_handshakes[kTlsResults] = {};
};

}  // namespace ringproxy
