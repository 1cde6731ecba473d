#include "proxy/discovery.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string_view>
#include <utility>

namespace ringproxy {

namespace {

std::string lower_without_trailing_dot(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<DiscoveredNode> nodes_of(const DnsAnswer& answer, const DiscoverConfig& source) {
  std::map<std::string, DiscoveredNode> by_name;  // sorted, one entry per name
  auto add = [&](DiscoveredNode n) {
    auto [it, inserted] = by_name.try_emplace(n.name, n);
    if (!inserted) {
      it->second.weight = std::max(it->second.weight, n.weight);
      it->second.priority = std::min(it->second.priority, n.priority);
    }
  };
  if (source.type == DiscoverConfig::Type::kSrv) {
    for (const DnsAnswer::Srv& s : answer.srv) {
      DiscoveredNode n;
      n.host = lower_without_trailing_dot(s.target);
      if (n.host.empty() || s.port == 0) continue;  // "." means "no service here" (RFC 2782)
      n.port = s.port;
      n.name = n.host + ":" + std::to_string(s.port);
      n.weight = std::min<uint32_t>(s.weight, 1000);  // the ring's weight bound (config: 0..1000)
      n.priority = s.priority;
      add(std::move(n));
    }
  } else {
    for (const std::string& address : answer.addresses) {
      DiscoveredNode n;
      n.host = address;
      n.port = source.port;
      const bool v6 = address.find(':') != std::string::npos;
      n.name = (v6 ? "[" + address + "]" : address) + ":" + std::to_string(source.port);
      n.weight = source.weight;
      add(std::move(n));
    }
  }
  std::vector<DiscoveredNode> out;
  out.reserve(by_name.size());
  for (auto& [name, node] : by_name) out.push_back(std::move(node));
  return out;
}

std::vector<DiscoveredNode> serving_set(const std::vector<DiscoveredNode>& nodes,
                                        const std::function<bool(const DiscoveredNode&)>& usable) {
  // The best priority with a usable node; every node of it serves (its unusable ones
  // are skipped by the ring walk like any down node).
  bool found = false;
  uint16_t best = 0;
  for (const DiscoveredNode& n : nodes) {
    if (usable(n) && (!found || n.priority < best)) {
      best = n.priority;
      found = true;
    }
  }
  if (!found) return nodes;
  std::vector<DiscoveredNode> out;
  for (const DiscoveredNode& n : nodes) {
    if (n.priority == best) out.push_back(n);
  }
  return out;
}

DiscoveryState::Outcome DiscoveryState::on_answer(const DnsAnswer& answer, const DiscoverConfig& source,
                                                  const DnsConfig& dns, uint64_t now_ms) {
  last_answer_ms_ = now_ms;
  std::vector<DiscoveredNode> nodes;
  if (answer.status == DnsAnswer::Status::kOk) nodes = nodes_of(answer, source);
  if (!nodes.empty()) {
    const uint64_t ttl_ms = uint64_t{answer.ttl_s} * 1000;
    next_query_ms_ = now_ms + std::clamp<uint64_t>(ttl_ms, dns.min_ttl_ms, dns.max_ttl_ms);
    last_good_ms_ = now_ms;
    have_good_ = true;
    holding_ = false;
    failing_since_ms_ = 0;
    failures_in_row_ = 0;
    last_error_.clear();
    if (nodes == nodes_) return Outcome::kSame;
    nodes_ = std::move(nodes);
    return Outcome::kChanged;
  }
  // A failure, or an answer with no usable record (the same to us: nothing to route to).
  last_error_ = answer.status == DnsAnswer::Status::kOk ? "no usable record in the answer"
                                                        : std::string(to_string(answer.status)) +
                                                              (answer.error.empty() ? "" : ": " + answer.error);
  // Asked again after min_ttl_ms, doubling with each failure in a row up to 30 s (or
  // max_ttl_ms when smaller): 1,000 named targets of a resolver that is down are not
  // asked 2,000 times a second.
  const uint64_t cap = std::max<uint64_t>(dns.min_ttl_ms, std::min<uint64_t>(dns.max_ttl_ms, kMaxFailureBackoffMs));
  next_query_ms_ = now_ms + std::min<uint64_t>(uint64_t{dns.min_ttl_ms} << std::min(failures_in_row_, 20u), cap);
  ++failures_in_row_;
  if (failing_since_ms_ == 0) failing_since_ms_ = std::max<uint64_t>(now_ms, 1);
  if (!have_good_) return Outcome::kNothingYet;
  if (now_ms - failing_since_ms_ <= dns.hold_ms) {
    holding_ = true;
    return Outcome::kHeld;
  }
  holding_ = false;
  if (nodes_.empty()) return Outcome::kNothingYet;
  nodes_.clear();
  return Outcome::kExpired;
}

bool SharedLease::observe(const std::vector<Lease>& leases, uint32_t hold_ms, uint64_t now_ms) {
  for (const Lease& l : leases) {
    auto [it, inserted] = versions_.try_emplace(l.key, l.version);
    if (!inserted && it->second == l.version) continue;  // unchanged: no news of a good answer
    it->second = l.version;
    renewed(l.ttl_ms, hold_ms, now_ms);
  }
  // A lease deleted (its instance was reaped, gossip_agent.h) is forgotten here too: the
  // map would otherwise grow by one key per instance that ever ran. If it comes back,
  // its new version is news anyway.
  if (versions_.size() > leases.size()) {
    std::set<std::string_view> present;
    for (const Lease& l : leases) present.insert(l.key);
    std::erase_if(versions_, [&](const auto& v) { return !present.count(v.first); });
  }
  const bool now_counts = counts(now_ms);
  const bool flipped = now_counts != counted_;
  counted_ = now_counts;
  return flipped;
}

void SharedLease::renewed(uint64_t ttl_ms, uint32_t hold_ms, uint64_t now_ms) {
  valid_until_ms_ = std::max(valid_until_ms_, now_ms + ttl_ms + hold_ms);
  seen_ = true;
}

}  // namespace ringproxy
