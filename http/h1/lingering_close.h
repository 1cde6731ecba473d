// Lingering close (RFC 9112 9.6) for an HTTP/1 server connection. After an answer that
// ends the connection while the client may still be sending (a refusal of the codec's,
// a body over the admin's limit), closing at once would make
// the kernel answer the unread bytes with a reset, which can destroy our answer in the
// client's receive buffer before it is read. So: shut down the write side (FIN after
// the answer), then read and drop what comes until the client's FIN, within bounds.
//
// The bounds, as nginx's lingering close has them: at most kLingerMs in all,
// kLingerIdleMs between reads, kLingerMaxBytes dropped. nginx's lingering_time and
// lingering_timeout are 30 s and 5 s; a client that has our answer needs only the time
// its last bytes take to arrive.
//
// Used by the HTTP/1 server codec (http/h1/server_conn.h), for the proxy's client
// connections and the admin endpoint's alike.
//
// LingerBudget is the rule alone (no socket, no clock of its own); the connection reads,
// drops, and closes when it says so. Thread: the connection's.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ringproxy::h1 {

inline constexpr uint32_t kLingerMs = 5000;
inline constexpr uint32_t kLingerIdleMs = 2000;
inline constexpr uint64_t kLingerMaxBytes = 4 * 1024 * 1024;

class LingerBudget {
 public:
  // The lingering starts at `now_ms` (loop time). Returns the wait for the first read.
  uint32_t start(uint64_t now_ms) {
    deadline_ = now_ms + kLingerMs;
    bytes_ = 0;
    return kLingerIdleMs;
  }
  // After a read of `n` bytes (dropped; n < 0: EOF or an error) at `now_ms`: 0 when the
  // connection should close now, else how long to wait for the next read.
  uint32_t on_read(int64_t n, uint64_t now_ms) {
    if (n < 0) return 0;
    bytes_ += static_cast<uint64_t>(n);
    if (bytes_ > kLingerMaxBytes || now_ms >= deadline_) return 0;
    return static_cast<uint32_t>(std::min<uint64_t>(kLingerIdleMs, deadline_ - now_ms));
  }

 private:
  uint64_t deadline_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace ringproxy::h1
