// The updates waiting to be piggybacked, after memberlist's TransmitLimitedQueue
// (queue.go): one entry per subject (a member name or a store key), a newer update about
// the same subject replacing the queued one; each entry is sent at most `limit` times,
// the least-sent first and, among equals, the newest first, so fresh news overtakes
// news that has already gone around. limit = RetransmitMult * ceil(log10(n + 1))
// (memberlist util.go retransmitLimit; SWIM's lambda * log n, Das et al. 2002 section
// 4.1: that many rounds reach every member with high probability).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gossip/message.h"

namespace ringproxy::gossip {

// memberlist util.go retransmitLimit.
uint32_t retransmit_limit(uint32_t retransmit_mult, size_t n);

class BroadcastQueue {
 public:
  // Queues `update` with a transmit count of 0, replacing any queued update about the
  // same subject.
  void push(Update update);

  // Picks updates for one packet: in priority order, each update whose encoded size
  // still fits in `budget` bytes is taken (a large one is skipped, not a barrier), at most
  // `max_count`. Each taken update counts one transmission; one reaching `limit` leaves the
  // queue. Returns them in the order picked.
  std::vector<Update> take(size_t budget, uint32_t limit, size_t max_count);

  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  void clear() { items_.clear(); }

 private:
  struct Item {
    Update update;
    uint32_t transmits = 0;
    uint64_t id = 0;  // insertion order: higher is newer
  };
  std::map<std::string, Item> items_;  // by subject
  uint64_t next_id_ = 0;
};

}  // namespace ringproxy::gossip
