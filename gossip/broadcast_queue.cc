#include "gossip/broadcast_queue.h"

#include <algorithm>
#include <cmath>

#include "gossip/codec.h"

namespace ringproxy::gossip {

uint32_t retransmit_limit(uint32_t retransmit_mult, size_t n) {
  const double node_scale = std::ceil(std::log10(static_cast<double>(n) + 1.0));
  return retransmit_mult * static_cast<uint32_t>(node_scale);
}

namespace {
std::string subject(const Update& u) {
  if (const auto* m = std::get_if<MemberUpdate>(&u)) return "m" + m->name;
  return "k" + std::get<KvUpdate>(u).key;
}
}  // namespace

void BroadcastQueue::push(Update update) {
  Item& item = items_[subject(update)];
  item.update = std::move(update);
  item.transmits = 0;
  item.id = next_id_++;
}

std::vector<Update> BroadcastQueue::take(size_t budget, uint32_t limit, size_t max_count) {
  std::vector<Update> out;
  if (items_.empty() || max_count == 0) return out;
  std::vector<std::map<std::string, Item>::iterator> order;
  order.reserve(items_.size());
  for (auto it = items_.begin(); it != items_.end(); ++it) order.push_back(it);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    if (a->second.transmits != b->second.transmits) return a->second.transmits < b->second.transmits;
    return a->second.id > b->second.id;
  });
  size_t used = 0;
  for (auto it : order) {
    if (out.size() == max_count) break;
    const size_t size = encoded_size(it->second.update);
    if (used + size > budget) continue;
    used += size;
    out.push_back(it->second.update);
    if (++it->second.transmits >= limit) items_.erase(it);
  }
  return out;
}

}  // namespace ringproxy::gossip
