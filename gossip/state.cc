#include "gossip/state.h"

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

bool KvStore::merge(const std::string& key, const KvEntry& entry) {
  auto it = entries_.find(key);
  if (it != entries_.end() && !supersedes(entry, it->second)) return false;
  if (entry.version > max_version_) max_version_ = entry.version;
  hashes_[key] = {entry.version, entry_hash(key, entry)};
  upto_valid_ = false;
  if (it == entries_.end()) {
    entries_.emplace(key, entry);
  } else {
    it->second = entry;
  }
  return true;
}

const KvEntry& KvStore::put(const std::string& key, std::string value, const std::string& origin) {
  KvEntry entry{std::move(value), max_version_ + 1, origin, false};
  merge(key, entry);  // always wins: its version is above every held one
  return entries_.find(key)->second;
}

const KvEntry& KvStore::erase(const std::string& key, const std::string& origin) {
  KvEntry entry{std::string(), max_version_ + 1, origin, true};
  merge(key, entry);
  return entries_.find(key)->second;
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
  fnv_u64(h, entries_.size());
  for (const auto& [key, e] : entries_) {
    fnv_str(h, key);
    fnv_u64(h, e.version);
    fnv_str(h, e.origin);
    fnv_u64(h, e.tombstone ? 1 : 0);
    fnv_str(h, e.value);
  }
  return h;
}

}  // namespace ringproxy::gossip
