#include "gossip/state.h"

#include <algorithm>
#include <cassert>
#include <tuple>

namespace ringproxy::gossip {

namespace {
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

void fnv_u64(uint64_t& h, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= kFnvPrime;
  }
}
void fnv_str(uint64_t& h, std::string_view s) {
  fnv_u64(h, s.size());
  for (unsigned char c : s) {
    h ^= c;
    h *= kFnvPrime;
  }
}

uint64_t entry_hash(std::string_view key, const KvEntry& e) {
  uint64_t h = kFnvOffset;
  fnv_str(h, key);
  fnv_u64(h, e.version);
  fnv_str(h, e.origin);
  fnv_u64(h, e.tombstone ? 1 : 0);
  fnv_str(h, e.value);
  // splitmix64's finalizer: FNV's low bits are weak, and the digest adds hashes up.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

}  // namespace

bool supersedes(const KvEntry& a, const KvEntry& b) {
  return std::tie(a.version, a.origin, a.tombstone, a.value) >
         std::tie(b.version, b.origin, b.tombstone, b.value);
}

bool KvStore::merge(const std::string& key, const KvEntry& entry, int64_t now_ms) {
  auto it = entries_.find(key);
  if (it != entries_.end() && !supersedes(entry, it->second)) return false;
  const bool live_here = it != entries_.end() && !it->second.tombstone;
  if (entry.version < floor_ && !live_here) {
    // Below what we collected, for a key not live here: a deleted value coming back, or a
    // write of someone who had not seen our collected deletes (state.h). A tombstone
    // deletes nothing here: dropped (it may be one we collected, sent back).
    if (entry.tombstone) return false;
    ++refused_;
    // At version floor_ - 1 the refused entry's origin wins a tie (tombstone over value).
    store(key, KvEntry{std::string(), floor_ - 1, entry.origin, true}, now_ms);
    return true;
  }
  store(key, entry, now_ms);
  return true;
}

void KvStore::store(const std::string& key, const KvEntry& entry, int64_t now_ms) {
  if (entry.version > max_version_) max_version_ = entry.version;
  if (entry.tombstone) {
    hashes_.erase(key);
    tombstone_since_[key] = now_ms;  // a newer tombstone ages from its own arrival
  } else {
    hashes_[key] = {entry.version, entry_hash(key, entry)};
    tombstone_since_.erase(key);
  }
  upto_valid_ = false;
  entries_.insert_or_assign(key, entry);
}

const KvEntry& KvStore::put(const std::string& key, std::string value, const std::string& origin) {
  KvEntry entry{std::move(value), max_version_ + 1, origin, false};
  store(key, entry, 0);  // always wins: its version is above every held one
  return entries_.find(key)->second;
}

const KvEntry& KvStore::erase(const std::string& key, const std::string& origin, int64_t now_ms) {
  KvEntry entry{std::string(), max_version_ + 1, origin, true};
  store(key, entry, now_ms);
  return entries_.find(key)->second;
}

size_t KvStore::collect(int64_t now_ms, int64_t horizon_ms) {
  assert(horizon_ms > 0);
  size_t dropped = 0;
  for (auto it = tombstone_since_.begin(); it != tombstone_since_.end();) {
    auto e = entries_.find(it->first);
    assert(e != entries_.end() && e->second.tombstone);
    // The one at max_version stays: push-pull carries our clock through it (state.h).
    if (now_ms - it->second < horizon_ms || e->second.version == max_version_) {
      ++it;
      continue;
    }
    floor_ = std::max(floor_, e->second.version + 1);
    entries_.erase(e);
    it = tombstone_since_.erase(it);
    ++dropped;
  }
  collected_ += dropped;
  return dropped;
}

std::optional<std::string_view> KvStore::get(std::string_view key) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.tombstone) return std::nullopt;
  return std::string_view(it->second.value);
}

const KvEntry* KvStore::find(std::string_view key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}


uint64_t KvStore::digest_upto(uint64_t max_version) const {
  if (upto_valid_ && upto_version_ == max_version) return upto_digest_;
  uint64_t sum = 0, count = 0;
  for (const auto& [key, vh] : hashes_) {
    if (vh.first <= max_version) {
      sum += vh.second;
      ++count;
    }
  }
  upto_version_ = max_version;
  upto_digest_ = sum + count * 0x9e3779b97f4a7c15ULL;
  upto_valid_ = true;
  return upto_digest_;
}

uint64_t KvStore::digest() const {
  uint64_t h = kFnvOffset;
  fnv_u64(h, hashes_.size());  // the live entries
  for (const auto& [key, e] : entries_) {
    if (e.tombstone) continue;
    fnv_str(h, key);
    fnv_u64(h, e.version);
    fnv_str(h, e.origin);
    fnv_u64(h, e.tombstone ? 1 : 0);
    fnv_str(h, e.value);
  }
  return h;
}

}  // namespace ringproxy::gossip
