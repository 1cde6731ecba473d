#include "proxy/discovery_agent.h"

#include <algorithm>

#include "proxy/log.h"

namespace ringproxy {

namespace {

constexpr std::string_view kSourcePrefix = "s:";
constexpr std::string_view kNamePrefix = "n:";

bool ok_with_records(const DnsAnswer& a) { return a.status == DnsAnswer::Status::kOk && !a.addresses.empty(); }

// How much a failure says, for choosing which to report: a server or network failure
// over "no such name" over "no record of this type".
int weight_of(DnsAnswer::Status s) {
  switch (s) {
    case DnsAnswer::Status::kEmpty:
    case DnsAnswer::Status::kOk:  // with no address: as empty
      return 0;
    case DnsAnswer::Status::kNotFound:
      return 1;
    default:
      return 2;
  }
}

std::string plural(size_t n, std::string_view what) {
  std::string out = std::to_string(n) + " " + std::string(what);
  if (n != 1) out += what.ends_with('s') ? "es" : "s";  // nodes, addresses
  return out;
}

}  // namespace

DnsAnswer merge_address_answers(const DnsAnswer& a, const DnsAnswer& aaaa) {
  const bool a_ok = ok_with_records(a);
  const bool aaaa_ok = ok_with_records(aaaa);
  if (!a_ok && !aaaa_ok) return weight_of(aaaa.status) > weight_of(a.status) ? aaaa : a;
  DnsAnswer out;
  out.status = DnsAnswer::Status::kOk;
  out.ttl_s = UINT32_MAX;
  for (const DnsAnswer* x : {&a, &aaaa}) {
    if (!ok_with_records(*x)) continue;
    out.addresses.insert(out.addresses.end(), x->addresses.begin(), x->addresses.end());
    out.ttl_s = std::min(out.ttl_s, x->ttl_s);
  }
  return out;
}

bool FamilyMemory::definitive(const DnsAnswer& a) {
  using S = DnsAnswer::Status;
  return a.status == S::kOk || a.status == S::kEmpty || a.status == S::kNotFound;
}

DnsAnswer FamilyMemory::answer(const DnsAnswer& now_answer, uint64_t now_ms, uint32_t hold_ms) {
  using S = DnsAnswer::Status;
  if (definitive(now_answer)) {
    last = now_answer.status == S::kOk ? now_answer.addresses : std::vector<std::string>{};
    failing_since_ms = 0;
    return now_answer;
  }
  if (failing_since_ms == 0) failing_since_ms = std::max<uint64_t>(now_ms, 1);
  if (last.empty() || now_ms - failing_since_ms > hold_ms) return now_answer;
  DnsAnswer held;
  held.status = S::kOk;
  held.addresses = last;
  held.ttl_s = 0;  // asked again at min_ttl_ms, as after a failure
  return held;
}

DiscoveryAgent::DiscoveryAgent(uv_loop_t* loop, OnChange on_change) : loop_(loop), on_change_(std::move(on_change)) {
  timer_ = new uv_timer_t{};
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

DiscoveryAgent::~DiscoveryAgent() { close(); }

void DiscoveryAgent::close() {
  if (closed_) return;
  closed_ = true;
  if (resolver_) resolver_->close();
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  timer_ = nullptr;
}

std::string DiscoveryAgent::configure(const DnsConfig& dns, const std::vector<DiscoverConfig>& sources) {
  if (closed_) return "closed";
  const bool reload = configured_;
  if (!configured_ || dns.resolvers != dns_.resolvers || dns.timeout_ms != dns_.timeout_ms) {
    auto resolver = std::make_unique<DnsResolver>(loop_);
    std::vector<std::string> servers;
    for (const Address& a : dns.resolvers) servers.push_back(a.to_string());
    if (std::string e = resolver->init(servers, dns.timeout_ms); !e.empty()) {
      resolver->close();  // never inside one of its calls here: freed at once
      return e;
    }
    if (resolver_) resolver_->close();  // its pending queries are dropped: asked again below
    resolver_ = std::move(resolver);
    for (auto& [key, e] : entries_) {
      e.waiting = 0;
      e.state.ask_now();
    }
  }
  dns_ = dns;
  configured_ = true;
  // Sources by name. One whose type changed starts anew; one whose other settings
  // changed keeps what it found (no key moves for a port or weight edit until the
  // answer, asked now, says so) and drops the answers it is waiting for.
  std::set<std::string> keep;
  for (const DiscoverConfig& s : sources) {
    const std::string key = std::string(kSourcePrefix) + s.name;
    keep.insert(key);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.source == s) continue;
    if (it != entries_.end() && it->second.source.type == s.type) {
      Entry& e = it->second;
      e.source = s;
      e.serial = ++serial_;
      e.waiting = 0;
      e.state.ask_now();
      continue;
    }
    if (it != entries_.end()) entries_.erase(it);
    Entry e;
    e.source = s;
    e.is_source = true;
    e.serial = ++serial_;
    // A source a reload adds is new to every instance's routing: its first answer is
    // shared like any change (the hold-back of first answers is for restarts).
    e.first_done = reload;
    entries_.emplace(key, std::move(e));
  }
  std::erase_if(entries_, [&](const auto& kv) { return kv.first.starts_with(kSourcePrefix) && !keep.count(kv.first); });
  ask_due();
  return {};
}

void DiscoveryAgent::set_names(const std::set<std::string>& names, const std::set<std::string>& unheld) {
  if (closed_) return;
  bool removed = false;
  std::erase_if(entries_, [&](const auto& kv) {
    const bool gone = kv.first.starts_with(kNamePrefix) && !names.count(kv.first.substr(kNamePrefix.size()));
    removed |= gone;
    return gone;
  });
  for (const std::string& n : names) {
    const std::string key = std::string(kNamePrefix) + n;
    if (auto it = entries_.find(key); it != entries_.end()) {
      it->second.unheld = unheld.count(n) > 0;
      continue;
    }
    Entry e;
    e.source.name = n;
    e.source.type = DiscoverConfig::Type::kA;
    e.serial = ++serial_;
    e.unheld = unheld.count(n) > 0;
    entries_.emplace(key, std::move(e));
  }
  if (removed) refresh_resolved();
  ask_due();
}

DiscoveryAgent::Entry* DiscoveryAgent::find(const std::string& key, uint64_t serial) {
  auto it = entries_.find(key);
  return it == entries_.end() || it->second.serial != serial ? nullptr : &it->second;
}

void DiscoveryAgent::ask_due() {
  if (closed_ || !resolver_) return;
  const uint64_t now = uv_now(loop_);
  for (auto& [key, e] : entries_) {
    if (e.waiting == 0 && e.state.next_query_ms() <= now) ask(key, e);
  }
  arm();
}

void DiscoveryAgent::ask(const std::string& key, Entry& e) {
  // The callbacks find their entry by key and serial: an entry forgotten (or started
  // anew) meanwhile takes no answer meant for its predecessor.
  const uint64_t serial = e.serial;
  if (e.source.type == DiscoverConfig::Type::kSrv) {
    e.waiting = 1;
    resolver_->query(e.source.name, DnsResolver::Type::kSrv,
                     [this, key, serial](DnsAnswer answer) { on_answer(key, serial, std::move(answer)); });
    return;
  }
  // A and AAAA together; the entry takes their merged answer once both are in.
  e.waiting = 2;
  for (const DnsResolver::Type type : {DnsResolver::Type::kA, DnsResolver::Type::kAaaa}) {
    resolver_->query(e.source.name, type, [this, key, serial, type](DnsAnswer answer) {
      Entry* entry = find(key, serial);
      if (!entry || entry->waiting == 0) return;
      (type == DnsResolver::Type::kA ? entry->a : entry->aaaa) = std::move(answer);
      if (--entry->waiting > 0) return;
      const uint64_t now = uv_now(loop_);
      // One family failing while the other answers keeps the failing one's last
      // addresses for hold_ms (a resolver timing out on AAAA is no removal).
      // Both failing is the name's failure, held (or not) by its DiscoveryState.
      const uint32_t hold = entry->unheld ? UINT32_MAX : dns_.hold_ms;
      const DnsAnswer a = entry->v4.answer(entry->a, now, hold);
      const DnsAnswer aaaa = entry->v6.answer(entry->aaaa, now, hold);
      const bool both_failed = !FamilyMemory::definitive(entry->a) && !FamilyMemory::definitive(entry->aaaa);
      on_answer(key, serial, both_failed ? merge_address_answers(entry->a, entry->aaaa) : merge_address_answers(a, aaaa));
    });
  }
}

void DiscoveryAgent::on_answer(const std::string& key, uint64_t serial, DnsAnswer answer) {
  Entry* e = find(key, serial);
  if (!e || closed_) return;
  e->waiting = 0;
  ++e->results[to_string(answer.status)];
  const uint64_t now = uv_now(loop_);
  const size_t before = e->state.nodes().size();
  DnsConfig dns = dns_;
  if (e->unheld) dns.hold_ms = UINT32_MAX;  // its node's source holds; see set_names
  const DiscoveryState::Outcome outcome = e->state.on_answer(answer, e->source, dns, now);
  const std::string what = e->is_source ? "discover " + e->source.name : "dns: " + e->source.name;
  const char* unit = e->is_source ? "node" : "address";
  // Everything about the entry is done before on_change_: the server's answer to it may
  // forget this very entry (set_names).
  bool changed = false;
  bool first = false;
  switch (outcome) {
    case DiscoveryState::Outcome::kChanged: {
      // A name's addresses are few and worth seeing; a source's nodes are counted.
      std::string found = plural(e->state.nodes().size(), unit);
      if (!e->is_source) {
        found.clear();
        for (const DiscoveredNode& n : e->state.nodes()) found += (found.empty() ? "" : " ") + n.host;
      }
      RP_LOG(LogLevel::kInfo, what + ": " + found + " (was " + plural(before, unit) + "), next in " +
                                  std::to_string((e->state.next_query_ms() - now) / 1000) + " s");
      e->failure_said.clear();
      first = !e->first_done;
      e->first_done = true;
      changed = true;
      break;
    }
    case DiscoveryState::Outcome::kExpired:
      RP_LOG(LogLevel::kError, what + ": " + e->state.last_error() + " for longer than dns.hold_ms (" +
                                   std::to_string(dns_.hold_ms) + " ms): its " + plural(before, unit) +
                                   (before == 1 ? " is" : " are") + " dropped here");
      changed = true;
      break;
    case DiscoveryState::Outcome::kHeld:
    case DiscoveryState::Outcome::kNothingYet: {
      // Once per run of failures, and again when the cause changes.
      const std::string line =
          outcome == DiscoveryState::Outcome::kHeld
              ? what + ": " + e->state.last_error() + "; keeping the last good " + plural(before, unit) +
                    " for up to dns.hold_ms (" + std::to_string(dns_.hold_ms) + " ms)"
              : what + ": " + e->state.last_error() + "; nothing resolved yet";
      if (e->failure_said != line) RP_LOG(LogLevel::kWarn, line);
      e->failure_said = line;
      break;
    }
    case DiscoveryState::Outcome::kSame:
      e->first_done = true;
      if (!e->failure_said.empty()) {
        RP_LOG(LogLevel::kInfo, what + ": resolving again, " + plural(e->state.nodes().size(), unit));
        e->failure_said.clear();
      }
      break;
  }
  const bool is_source = e->is_source;
  const std::string source = is_source ? e->source.name : std::string();
  const bool good = outcome == DiscoveryState::Outcome::kChanged;
  const bool same = outcome == DiscoveryState::Outcome::kSame;
  const uint64_t ttl_ms = e->state.next_query_ms() > now ? e->state.next_query_ms() - now : 0;
  e = nullptr;  // may be gone after on_change_
  if (changed) {
    if (!is_source) refresh_resolved();
    if (on_change_) on_change_({source, first, good, false, ttl_ms});
  } else if (same && is_source && on_change_) {
    // Nothing to rebuild, but a good answer: with gossip, this instance's lease.
    on_change_({source, false, true, true, ttl_ms});
  }
  arm();
}

void DiscoveryAgent::refresh_resolved() {
  resolved_.clear();
  for (const auto& [key, e] : entries_) {
    if (e.is_source || e.state.nodes().empty()) continue;
    auto& addresses = resolved_[e.source.name];
    for (const DiscoveredNode& n : e.state.nodes()) addresses.push_back(n.host);
  }
}

void DiscoveryAgent::arm() {
  if (closed_ || !resolver_) return;
  uint64_t next = UINT64_MAX;
  for (const auto& [key, e] : entries_) {
    if (e.waiting == 0) next = std::min(next, e.state.next_query_ms());
  }
  if (next == UINT64_MAX) {
    uv_timer_stop(timer_);
    return;
  }
  const uint64_t now = uv_now(loop_);
  uv_timer_start(timer_, on_timer, next > now ? next - now : 0, 0);
}

void DiscoveryAgent::on_timer(uv_timer_t* t) { static_cast<DiscoveryAgent*>(t->data)->ask_due(); }

std::vector<FoundNode> DiscoveryAgent::found(const std::string& source) const {
  std::vector<FoundNode> out;
  auto it = entries_.find(std::string(kSourcePrefix) + source);
  if (it == entries_.end()) return out;
  const DiscoverConfig& s = it->second.source;
  for (const DiscoveredNode& n : it->second.state.nodes()) {
    FoundNode f = found_by(s);
    f.backend.name = n.name;
    f.backend.address.host = n.host;
    f.backend.address.port = n.port;
    f.backend.address.ipv6 = n.host.find(':') != std::string::npos;
    f.backend.address.is_name = s.type == DiscoverConfig::Type::kSrv;
    f.backend.weight = n.weight;
    f.priority = n.priority;
    out.push_back(std::move(f));
  }
  return out;
}

bool DiscoveryAgent::await_first_answers() {
  const uint32_t tries = std::max<uint32_t>(1, static_cast<uint32_t>(dns_.resolvers.size()));
  const uint64_t deadline = uv_now(loop_) + uint64_t{dns_.timeout_ms} * tries + 100;
  const auto answered = [&] {
    return std::all_of(entries_.begin(), entries_.end(), [](const auto& kv) { return !kv.second.results.empty(); });
  };
  while (!answered() && uv_now(loop_) < deadline) {
    uv_run(loop_, UV_RUN_ONCE);
    uv_update_time(loop_);
  }
  return answered();
}

std::vector<DiscoveryAgent::Status> DiscoveryAgent::status() const {
  std::vector<Status> out;
  for (const auto& [key, e] : entries_) {
    Status s;
    s.name = e.source.name;
    s.is_source = e.is_source;
    s.type = e.source.type;
    s.found = e.state.nodes().size();
    s.resolved_ms = e.state.last_good_ms();
    s.next_ms = e.state.next_query_ms();
    s.holding = e.state.holding();
    s.last_error = e.state.last_error();
    s.results = e.results;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace ringproxy

namespace ringproxy {

std::vector<FoundNode> resolve_once(const Config& config, std::vector<std::string>* problems) {
  std::vector<FoundNode> out;
  if (config.discover.empty()) return out;
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    DiscoveryAgent agent(&loop, nullptr);
    if (std::string e = agent.configure(config.dns, config.discover); !e.empty()) {
      problems->push_back("dns: " + e);
    } else {
      agent.await_first_answers();
      for (const DiscoveryAgent::Status& st : agent.status()) {
        if (st.found == 0) {
          problems->push_back("discover " + st.name + ": " +
                              (st.last_error.empty() ? std::string("no answer in time") : st.last_error));
        }
      }
      for (const DiscoverConfig& source : config.discover) {
        std::vector<FoundNode> nodes = agent.found(source.name);
        std::vector<DiscoveredNode> plain;
        for (const FoundNode& f : nodes) plain.push_back({f.backend.name, {}, 0, f.backend.weight, f.priority});
        // Every node counts as up offline; a weight-0 record (drained) does not serve.
        const std::vector<DiscoveredNode> serving =
            serving_set(plain, [](const DiscoveredNode& n) { return n.weight > 0; });
        for (FoundNode& f : nodes) {
          if (std::any_of(serving.begin(), serving.end(), [&](const DiscoveredNode& s) { return s.name == f.backend.name; })) {
            out.push_back(std::move(f));
          }
        }
      }
    }
    agent.close();
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the handles' close callbacks
  uv_loop_close(&loop);
  return out;
}

}  // namespace ringproxy
