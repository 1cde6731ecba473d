#include "proxy/gossip_agent.h"

#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <utility>

#include "config/tls.h"
#include "gossip/codec.h"
#include "proxy/log.h"

namespace ringproxy {
namespace {

constexpr std::string_view kBackendPrefix = "backend/";
constexpr std::string_view kDrainPrefix = "drain/";
constexpr std::string_view kHealthPrefix = "health/";

constexpr std::string_view kPoolPrefix = "pool/";

// A node's shared entry: "backend/NAME" in pool "default", "pool/POOL/NAME" in another.
// Not "backend/POOL/NAME": an instance from before pools reads every "backend/" key as
// a node of its one ring (it would take "images/img-a" into it) and a reload there
// would erase the keys it does not know; it ignores "pool/".
std::string backend_key(std::string_view pool, std::string_view name) {
  std::string key(pool == "default" ? kBackendPrefix : kPoolPrefix);
  if (pool != "default") {
    key += pool;
    key += '/';
  }
  key += name;
  return key;
}

// The pool of a node's key ("" for any other key).
std::string_view pool_of_key(std::string_view key) {
  if (key.starts_with(kBackendPrefix)) {
    const std::string_view name = key.substr(kBackendPrefix.size());
    return name.find('/') == std::string_view::npos ? std::string_view("default") : std::string_view();
  }
  if (!key.starts_with(kPoolPrefix)) return {};
  const std::string_view rest = key.substr(kPoolPrefix.size());
  const size_t slash = rest.find('/');
  return slash == std::string_view::npos ? std::string_view() : rest.substr(0, slash);
}
constexpr std::string_view kFoundPrefix = "found/";

// "found/" 16 hex digits of the source's name, "/", 16 of the node's: 39 bytes whatever
// the names' lengths (a key is at most gossip::kMaxName, 128 bytes, and an SRV owner
// name and a target may each be 253). The node's name is its address, in the value.
std::string hash_hex(std::string_view s) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits(s.data(), s.size())));
  return buf;
}

std::string found_prefix(const std::string& source) { return std::string(kFoundPrefix) + hash_hex(source) + "/"; }

// "found-ok/H(SOURCE)/H(INSTANCE)" -> "SEQ TTL_MS": an instance's lease on a source,
// refreshed at each of its good answers (proxy/discovery.h, SharedLease).
constexpr std::string_view kLeasePrefix = "found-ok/";
std::string lease_prefix(const std::string& source) { return std::string(kLeasePrefix) + hash_hex(source) + "/"; }

std::string found_key(const std::string& source, const std::string& node) {
  return found_prefix(source) + (node.empty() ? std::string() : hash_hex(node));
}

// "ADDRESS WEIGHT PRIORITY" <-> a found node (name from the key; tls, tls_name and
// protocol from the source: found_by).
std::string encode_found(const FoundNode& f) {
  return f.backend.address.to_string() + " " + std::to_string(f.backend.weight) + " " + std::to_string(f.priority);
}

std::optional<FoundNode> decode_found(const DiscoverConfig& source, std::string_view value) {
  const size_t first = value.find(' ');
  const size_t second = first == std::string_view::npos ? first : value.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  std::string why;
  auto address = parse_address(value.substr(0, first), &why, false, true);
  FoundNode f = found_by(source);
  const std::string_view w = value.substr(first + 1, second - first - 1);
  const std::string_view p = value.substr(second + 1);
  const auto [wend, wec] = std::from_chars(w.data(), w.data() + w.size(), f.backend.weight);
  const auto [pend, pec] = std::from_chars(p.data(), p.data() + p.size(), f.priority);
  if (!address || wec != std::errc() || wend != w.data() + w.size() || f.backend.weight > 1000 ||
      pec != std::errc() || pend != p.data() + p.size()) {
    return std::nullopt;
  }
  // A found node's name is its record's "TARGET:PORT" or "ADDRESS:PORT": its address.
  f.backend.name = address->to_string();
  if (!is_valid_backend_name(f.backend.name)) return std::nullopt;
  f.backend.address = *address;
  return f;
}

// How long a starting instance waits for its seeds' state before it seeds the shared
// backends from its own file (it is then taken to be the first instance).
constexpr int64_t kSeedGraceMs = 2000;

// At most one line a minute about entries refused below the collected floor (a healed
// split sends them by the hundred); the count is in ringproxy_gossip_refused_total.
constexpr int64_t kRefusedLogMs = 60000;

// Writing back our own health view when another writes it (tidy): at once, then at
// most once a second per key, the wait doubling up to 5 minutes while the overwrites
// go on; after twice that without one, at once again. Two processes with one name
// then write a view twice in 10 minutes, not at gossip speed.
constexpr int64_t kRestoreFirstWaitMs = 1000;
constexpr int64_t kRestoreMaxWaitMs = 300000;
constexpr uint64_t kTwinLogMs = 600000;  // the warning about it, at most once in this

// "48 h", "20 min", "5 s": a duration for a log line.
std::string duration_text(int64_t ms) {
  if (ms >= 3600000 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + " h";
  if (ms >= 60000 && ms % 60000 == 0) return std::to_string(ms / 60000) + " min";
  if (ms >= 1000 && ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

// "POOL@NAME" (a health key's node) <-> "POOL/NAME" (Pool::qualified).
std::string health_node(std::string_view qualified) {
  std::string node(qualified);
  if (const size_t slash = node.find('/'); slash != std::string::npos) node[slash] = '@';
  return node;
}
std::string qualified_node(std::string_view node) {
  std::string q(node);
  if (const size_t at = q.find('@'); at != std::string::npos) q[at] = '/';
  return q;
}

}  // namespace

std::string encode_backend(const BackendConfig& b) {
  std::string out = b.address.to_string() + " " + std::to_string(b.weight);
  if (b.tls) {
    out += " tls";
    if (!b.tls_name.empty()) out += "=" + b.tls_name;
  }
  if (b.protocol != BackendProtocol::kHttp1) {
    out += ' ';
    out += protocol_name(b.protocol);
  }
  return out;
}

std::optional<BackendConfig> decode_backend(const std::string& name, std::string_view value) {
  BackendConfig b{name, {}, 0, false, ""};
  std::vector<std::string_view> words;
  for (size_t at = 0;;) {
    const size_t space = value.find(' ', at);
    words.push_back(value.substr(at, space == std::string_view::npos ? space : space - at));
    if (space == std::string_view::npos) break;
    at = space + 1;
  }
  if (words.size() < 2) return std::nullopt;
  size_t next = 2;
  // Optional words, in this order: "tls" or "tls=NAME"; then a protocol (a value
  // without one, as written before protocols, is http1).
  if (next < words.size() && (words[next] == "tls" || words[next].starts_with("tls="))) {
    b.tls = true;
    if (words[next].size() > 4) {
      std::string why;
      auto tls_name = config_internal::parse_tls_name(words[next].substr(4), &why);
      if (!tls_name || tls_name->empty()) return std::nullopt;
      b.tls_name = std::move(*tls_name);
    }
    ++next;
  }
  if (next < words.size()) {
    std::string why;
    const auto protocol = parse_backend_protocol(words[next], &why);
    if (!protocol || !protocol_fits_tls(*protocol, b.tls)) return std::nullopt;
    b.protocol = *protocol;
    ++next;
  }
  if (next != words.size()) return std::nullopt;
  std::string why;
  // A DNS name too: a [[backend]] by name is shared like any other (its address then
  // follows each instance's resolver).
  auto address = parse_address(words[0], &why, false, true);
  const std::string_view w = words[1];
  const auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), b.weight);
  if (!address || ec != std::errc() || end != w.data() + w.size() || b.weight > 1000) return std::nullopt;
  b.address = *address;
  return b;
}

std::vector<std::string> instance_keys(const gossip::KvStore& store, const std::string& instance) {
  std::vector<std::string> out;
  const auto& entries = store.entries();
  // "health/INSTANCE/NODE": NODE holds no '/' (an instance's name may: "health/a/b/x" is
  // instance "a/b"'s, not "a"'s).
  const std::string health = std::string(kHealthPrefix) + instance + "/";
  for (auto it = entries.lower_bound(health); it != entries.end() && it->first.starts_with(health); ++it) {
    if (!it->second.tombstone && it->first.find('/', health.size()) == std::string::npos) out.push_back(it->first);
  }
  const std::string lease = "/" + hash_hex(instance);
  for (auto it = entries.lower_bound(kLeasePrefix); it != entries.end() && it->first.starts_with(kLeasePrefix); ++it) {
    if (!it->second.tombstone && it->first.ends_with(lease)) out.push_back(it->first);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> stale_health_keys(const gossip::KvStore& store, const std::string& self,
                                           const std::set<std::string>& backends) {
  std::vector<std::string> out;
  const auto& entries = store.entries();
  const std::string prefix = std::string(kHealthPrefix) + self + "/";
  for (auto it = entries.lower_bound(prefix); it != entries.end() && it->first.starts_with(prefix); ++it) {
    const std::string_view node = std::string_view(it->first).substr(prefix.size());
    if (it->second.tombstone || node.find('/') != std::string_view::npos) continue;
    if (!backends.count(qualified_node(node))) out.push_back(it->first);
  }
  return out;
}

// The Io on the control loop: a UdpTransport (messages through the codec, signed when a
// secret is set) and a uv timer. The timer is on the heap and freed by its close
// callback, so that the Io (and the agent) may go before the loop runs again.
class GossipAgent::LoopIo final : public GossipAgent::Io {
 public:
  LoopIo(uv_loop_t* loop, GossipAgent& agent)
      : loop_(loop), agent_(agent), transport_(loop, [this](const std::string& from, std::string_view bytes) {
          on_datagram(from, bytes);
        }) {}
  ~LoopIo() override {
    if (timer_) close_timer(nullptr);
    transport_.close();
  }

  // Binds gossip.bind and sets the secrets. Returns "" or what went wrong.
  std::string bind(const GossipConfig& config) {
    if (std::string e = transport_.bind(config.bind.to_string()); !e.empty()) return e;
    if (!config.secret.empty()) {
      // Signs with the secret; accepts it and the previous ones (key rotation).
      transport_.set_secrets({config.secret, config.previous_secrets});
      flags_ = gossip::kFlagAuthenticated;
    }
    timer_ = new uv_timer_t{};  // freed in its close callback (close_timer)
    uv_timer_init(loop_, timer_);
    timer_->data = this;
    return {};
  }
  const std::string& address() const { return transport_.local_address(); }
  bool authenticated() const { return flags_ != 0; }
  const gossip::UdpStats& stats() const { return transport_.stats(); }
  uint64_t decode_errors() const { return decode_errors_; }

  int64_t now() const override { return static_cast<int64_t>(uv_now(loop_)); }
  void send(const std::string& to, const gossip::Message& message) override {
    // Swim packs each message to its packet budget, which leaves room for the trailer,
    // so every update it chose fits.
    const gossip::Encoded enc = gossip::encode(message, budget_, flags_);
    transport_.send(to, std::string_view(reinterpret_cast<const char*>(enc.bytes.data()), enc.bytes.size()));
  }
  void wake_at(int64_t at_ms) override {
    if (!timer_) return;
    const int64_t wait = std::max<int64_t>(0, at_ms - now());
    uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<LoopIo*>(t->data)->agent_.on_tick(); },
                   static_cast<uint64_t>(wait), 0);
  }
  void close(std::function<void()> done) override {
    transport_.close();
    if (timer_) {
      close_timer(std::move(done));
    } else if (done) {
      done();
    }
  }

 private:
  void on_datagram(const std::string& from, std::string_view bytes) {
    const auto decoded = gossip::decode(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), flags_);
    if (!decoded.message) {
      ++decode_errors_;
      RP_LOG(LogLevel::kDebug, "gossip: dropped a datagram from " + from + ": " + std::string(decoded.error));
      return;
    }
    agent_.on_message(from, *decoded.message);
  }
  // `done` runs from the timer's close callback, after which it is freed.
  void close_timer(std::function<void()> done) {
    timer_->data = new std::function<void()>(std::move(done));  // owned by the callback
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) {
      std::unique_ptr<std::function<void()>> then(static_cast<std::function<void()>*>(h->data));
      delete reinterpret_cast<uv_timer_t*>(h);
      if (*then) (*then)();
    });
    timer_ = nullptr;
  }

  uv_loop_t* loop_;
  GossipAgent& agent_;
  gossip::UdpTransport transport_;
  uv_timer_t* timer_ = nullptr;  // heap: see close_timer()
  uint8_t flags_ = 0;
  size_t budget_ = gossip::SwimConfig{}.packet_budget;  // what start() gives Swim
  uint64_t decode_errors_ = 0;
};

GossipAgent::GossipAgent(uv_loop_t* loop, OnShared on_shared)
    : loop_(loop), on_shared_(std::move(on_shared)), twin_log_(LogLevel::kWarn, kTwinLogMs) {}

// The Io goes first (its destructor closes the socket and the timer); Swim after.
GossipAgent::~GossipAgent() { io_.reset(); }

std::string GossipAgent::start(const GossipConfig& config, const PoolBackends& file_backends) {
  auto io = std::make_unique<LoopIo>(loop_, *this);
  if (std::string e = io->bind(config); !e.empty()) return e;
  gossip::SwimConfig sc;
  sc.name = config.name.empty() ? config.bind.to_string() : config.name;
  sc.address = io->address();
  sc.probe_interval_ms = config.interval_ms;
  sc.probe_timeout_ms = std::max<int64_t>(1, config.interval_ms / 2);
  // Wall-clock seconds: a restarted instance starts above its former incarnation.
  sc.incarnation = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  std::vector<std::string> seeds;
  for (const Address& a : config.seeds) seeds.push_back(a.to_string());
  RP_LOG(LogLevel::kInfo, "gossip: " + sc.name + " on " + sc.address + ", " + std::to_string(seeds.size()) +
                              " seeds" + (io->authenticated() ? ", authenticated" : ""));
  loop_io_ = io.get();
  std::random_device rd;
  start(std::move(io), std::move(sc), gossip::Rng((uint64_t{rd()} << 32) | rd()), seeds, file_backends);
  return {};
}

void GossipAgent::start(std::unique_ptr<Io> io, gossip::SwimConfig config, gossip::Rng rng,
                        const std::vector<std::string>& seeds, const PoolBackends& file_backends) {
  io_ = std::move(io);
  file_backends_ = file_backends;
  own_health_prefix_ = std::string(kHealthPrefix) + config.name + "/";
  swim_ = std::make_unique<gossip::Swim>(std::move(config), rng, now());
  states_[name()] = gossip::MemberState::kAlive;
  seed_deadline_ms_ = now() + kSeedGraceMs;
  handle(swim_->join(seeds, now()));
}

const gossip::UdpStats& GossipAgent::transport_stats() const {
  static const gossip::UdpStats kNone;
  return loop_io_ ? loop_io_->stats() : kNone;
}

uint64_t GossipAgent::decode_errors() const { return loop_io_ ? loop_io_->decode_errors() : 0; }

void GossipAgent::leave(std::function<void()> done) {
  if (!swim_ || swim_->has_left()) {
    if (done) done();
    return;
  }
  left_ = std::move(done);
  handle(swim_->leave(now()));
  // Keep answering for a few probe intervals so the leave gets around, then close.
  io_->wake_at(now() + swim_->leave_grace_ms());
}

void GossipAgent::on_tick() {
  if (closed_) return;
  if (swim_->has_left()) {
    // The grace is over: close, and tell the caller (if it asked) once the handles are
    // gone. Nothing keeps the loop alive after this.
    closed_ = true;
    io_->close(std::move(left_));
    return;
  }
  handle(swim_->tick(now()));
}

void GossipAgent::on_message(const std::string& from, const gossip::Message& message) {
  if (closed_) return;
  handle(swim_->receive(from, message, now()));
}

void GossipAgent::handle(gossip::Output out) {
  for (const gossip::Outgoing& o : out.messages) io_->send(o.to, o.message);
  next_tick_ms_ = out.next_tick_ms;  // the latest is right: Swim computes it from all it holds
  for (const std::string& name : out.members_changed) {
    if (const gossip::Member* m = swim_->member(name)) {
      RP_LOG(m->state == gossip::MemberState::kAlive ? LogLevel::kInfo : LogLevel::kWarn,
             "gossip: member " + m->name + " at " + m->address + " is " + std::string(gossip::to_string(m->state)) +
                 " (incarnation " + std::to_string(m->incarnation) + ")");
    }
  }
  // Members matter too: the health majority counts only alive instances.
  bool shared_changed = !out.members_changed.empty();
  for (const std::string& key : out.keys_changed) {
    if (key.starts_with(kBackendPrefix) || key.starts_with(kPoolPrefix) || key.starts_with(kDrainPrefix) ||
        key.starts_with(kHealthPrefix) || key.starts_with(kFoundPrefix) || key.starts_with(kLeasePrefix)) {
      shared_changed = true;
    }
  }
  maybe_seed();
  const uint64_t refused = swim_->store().refused();
  if (refused > refused_logged_ && now() - refused_log_ms_ >= kRefusedLogMs) {
    // The deletes that answer them carry each refused entry's own origin (state.h): a
    // store dump shows that instance, not this one, as the writer of the delete.
    RP_LOG(LogLevel::kWarn, "gossip: refused " + std::to_string(refused - refused_logged_) +
                                " entries older than deletes this instance has forgotten (a value deleted over " +
                                duration_text(swim_->config().tombstone_ttl_ms) +
                                " ago coming back, or a write from an instance cut off that long): deleted everywhere, "
                                "each by a delete in the name of the instance that wrote it (its origin)");
    refused_logged_ = refused;
    refused_log_ms_ = now();
  }
  if (shared_changed) {
    if (batch_ > 0) {
      shared_pending_ = true;  // told once, when the batch of writes is done
    } else if (on_shared_) {
      on_shared_();
    }
  }
  tidy(out);
  wake();
}

void GossipAgent::wake() {
  if (closed_ || swim_->has_left()) return;  // leave() set the grace's end
  int64_t at = next_tick_ms_;
  // Deadlines of ours, when still ahead (one that has passed was handled, or waits for
  // something else: a past one here would spin).
  const int64_t t = now();
  auto consider = [&](int64_t due) {
    if (due > t) at = std::min(at, due);
  };
  if (!seeded_) consider(seed_deadline_ms_);  // come back when the grace is over
  consider(restore_at_);
  io_->wake_at(at);
}

void GossipAgent::tidy(const gossip::Output& out) {
  const int64_t t = now();
  note_live(t);
  const bool restore_due = restore_at_ <= t;
  // Most datagrams change nothing: nothing to build or look up then.
  if (out.members_changed.empty() && out.keys_changed.empty() && !restore_due) return;
  if (swim_->has_left()) return;
  Batch batch(*this);
  for (const std::string& name : out.members_changed) {
    if (name == this->name()) continue;
    const auto s = states_.find(name);
    const bool was_live = s != states_.end() && (s->second == gossip::MemberState::kAlive ||
                                                 s->second == gossip::MemberState::kSuspect);
    if (const gossip::Member* m = swim_->member(name)) {
      if (m->state == gossip::MemberState::kLeft && was_live) {
        // It told us it went: not a sign that we are the ones cut off.
        for (auto& [period, live] : live_peaks_) live = std::max<size_t>(1, live - 1);
      }
      states_[name] = m->state;
      continue;
    }
    // Reaped: gone (dead or left) for reap_after_ms.
    const gossip::MemberState last = s == states_.end() ? gossip::MemberState::kDead : s->second;
    if (s != states_.end()) states_.erase(s);
    reaped(name, last);
  }
  if (!seeded_) return;  // nothing of ours is written before (reaped() waits too)
  if (!orphans_.empty() && !out.members_changed.empty()) {
    // Members kept while we were cut off: back (their keys are their own again), or
    // gone for good now that we see a majority of what we saw then.
    const size_t live = swim_->live_count();
    std::vector<std::string> gone;
    std::erase_if(orphans_, [&](const auto& o) {
      if (swim_->member(o.first)) return true;
      if (live <= 1 || 2 * live <= o.second) return false;
      gone.push_back(o.first);
      return true;
    });
    for (const std::string& name : gone) {
      const std::vector<std::string> keys = instance_keys(swim_->store(), name);
      if (keys.empty()) continue;  // deleted by those that forgot it first
      RP_LOG(LogLevel::kInfo, "gossip: " + std::to_string(live) + " instances alive: the " +
                                  std::to_string(keys.size()) + " entries of forgotten member " + name + " are deleted");
      for (const std::string& key : keys) handle(swim_->erase(key, now()));
    }
  }
  for (const std::string& key : out.keys_changed) {
    const auto r = key.starts_with(own_health_prefix_) ? reported_.find(key) : reported_.end();
    if (r == reported_.end()) continue;
    const gossip::KvEntry* e = swim_->store().find(key);
    if ((e && !e->tombstone) != r->second) restore_health(key);  // someone else wrote it
  }
  if (restore_due) {
    restore_at_ = INT64_MAX;
    std::vector<std::string> due;
    for (auto& [key, r] : restores_) {
      if (r.due && r.next_ms <= t) {
        due.push_back(key);
      } else if (r.due) {
        restore_at_ = std::min(restore_at_, r.next_ms);
      }
    }
    for (const std::string& key : due) {
      Restore& r = restores_[key];
      r.due = false;
      const auto rep = reported_.find(key);
      const gossip::KvEntry* e = swim_->store().find(key);
      if (rep == reported_.end() || (e && !e->tombstone) == rep->second) continue;  // nothing to undo now
      r.next_ms = t + r.backoff_ms;
      r.backoff_ms = std::min(2 * r.backoff_ms, kRestoreMaxWaitMs);
      write_health(key, rep->second);
    }
  }
}

void GossipAgent::reaped(const std::string& name, gossip::MemberState last) {
  const std::vector<std::string> keys = instance_keys(swim_->store(), name);
  const size_t live = swim_->live_count();
  const size_t peak = peak_live();
  // A member that left told us so; one found dead may be alive on the other side of a
  // split that cut us off: alone, or no more than half of the most we saw alive at once.
  // (And before settled() nothing is written: none is reaped then in practice.)
  if (!keys.empty() && (!seeded_ || (last != gossip::MemberState::kLeft && (live <= 1 || 2 * live <= peak)))) {
    RP_LOG(LogLevel::kWarn, "gossip: member " + name + " forgotten; its " + std::to_string(keys.size()) +
                                " entries are kept while this instance sees " + std::to_string(live) + " of the " +
                                std::to_string(peak) + " instances it saw alive lately (it may be the one cut off)");
    orphans_[name] = peak;
    return;
  }
  RP_LOG(LogLevel::kInfo, "gossip: member " + name + " forgotten" +
                              (keys.empty() ? std::string() : ", and its " + std::to_string(keys.size()) + " entries"));
  for (const std::string& key : keys) handle(swim_->erase(key, now()));
}

void GossipAgent::note_live(int64_t now) {
  // Periods of a 24th of the reap time, over two reap times: a member cut off is reaped
  // by us a reap time (and the few seconds of its suspicion) after the split.
  const int64_t period_ms = std::max<int64_t>(1, swim_->config().reap_after_ms / 24);
  const int64_t period = now / period_ms;
  const size_t live = swim_->live_count();
  if (live_peaks_.empty() || live_peaks_.back().first != period) {
    live_peaks_.emplace_back(period, live);
    while (live_peaks_.front().first < period - 48) live_peaks_.pop_front();
  } else if (live > live_peaks_.back().second) {
    live_peaks_.back().second = live;
  }
}

size_t GossipAgent::peak_live() const {
  size_t peak = 1;
  for (const auto& [period, live] : live_peaks_) peak = std::max(peak, live);
  return peak;
}

void GossipAgent::restore_health(const std::string& key) {
  const int64_t t = now();
  Restore& r = restores_[key];
  if (r.backoff_ms == 0 || t - r.last_ms >= 2 * kRestoreMaxWaitMs) r.backoff_ms = kRestoreFirstWaitMs;  // quiet: anew
  r.last_ms = t;
  if (t >= r.next_ms) {
    r.due = false;
    r.next_ms = t + r.backoff_ms;
    r.backoff_ms = std::min(2 * r.backoff_ms, kRestoreMaxWaitMs);
    write_health(key, reported_[key]);
    return;
  }
  // Overwritten again within the wait: written back when it is over. Twice in a row is
  // what a cleanup or a refusal does not do, and another process with our name does.
  r.due = true;
  restore_at_ = std::min(restore_at_, r.next_ms);
  twin_log_.note(static_cast<uint64_t>(t), "gossip: another process writes this instance's health views (" + key +
                                               "): are two instances named " + name() +
                                               "? Each is written back less and less often, down to once in " +
                                               duration_text(kRestoreMaxWaitMs));
}

void GossipAgent::write_health(const std::string& key, bool down) {
  handle(down ? swim_->put(key, "down", now()) : swim_->erase(key, now()));
}

void GossipAgent::maybe_seed() {
  if (on_settled_ran_) return;
  // Settled: a full state has reached us whole, or nobody answered within the grace (or
  // a local write of backends made this instance's set the shared one: seeded_ then).
  const bool alone = swim_->live_count() <= 1;
  if (!seeded_ && !swim_->synced() && !(alone && now() >= seed_deadline_ms_)) return;  // wake() comes back
  on_settled_ran_ = true;  // before any write below: each comes back here
  const bool seed = !seeded_;
  seeded_ = true;
  // Whoever waits for the cluster's state (a [[discover]] source's first answer,
  // Server::on_discovered) is told, writes or not.
  shared_pending_ = true;
  Batch settle(*this);
  for (const auto& [pool, backends] : file_backends_) {
    if (!seed || has_pool(pool)) continue;  // the cluster has a set for it (tombstones and markers count)
    RP_LOG(LogLevel::kInfo, "gossip: no shared backends yet" + (pool == "default" ? std::string() : " in pool " + pool) +
                                "; seeding " + std::to_string(backends.size()) + " from the config file");
    for (const BackendConfig& b : backends) put_backend(pool, b);
  }
  on_settled();
}

void GossipAgent::on_settled() {
  // Sets shared before markers (by an older version) get theirs now, while their
  // deletes are still held: they are collected 48 h after they arrived here at the
  // earliest, and this instance has just learned them.
  std::set<std::string> markers;
  for (const auto& [key, entry] : swim_->store().entries()) {
    if (const std::string_view pool = pool_of_key(key); !pool.empty()) {
      markers.insert(backend_key(pool, ""));
    } else if (key.starts_with(kFoundPrefix)) {
      const size_t slash = key.find('/', kFoundPrefix.size());
      if (slash != std::string::npos) markers.insert(key.substr(0, slash + 1));
    }
  }
  for (const std::string& marker : markers) own(marker);
  // Leases renewed and health views reported before we had the cluster's clock.
  for (const auto& [key, ttl] : std::exchange(unsent_leases_, {})) {
    handle(swim_->put(key, std::to_string(++lease_seq_) + " " + std::to_string(ttl), now()));
  }
  for (const auto& [key, down] : reported_) {
    const gossip::KvEntry* e = swim_->store().find(key);
    if ((e && !e->tombstone) != down) write_health(key, down);
  }
  if (auto nodes = std::exchange(unforgotten_, std::nullopt)) forget_health(*nodes);
}

void GossipAgent::own(const std::string& marker) {
  if (fits(marker) && !swim_->store().get(marker)) handle(swim_->put(marker, "", now()));
}

bool GossipAgent::has_pool(std::string_view pool) const {
  for (const auto& [key, entry] : swim_->store().entries()) {
    if (pool_of_key(key) == pool) return true;
  }
  return false;
}

GossipAgent::Batch::~Batch() {
  if (--agent_.batch_ == 0 && agent_.shared_pending_) {
    agent_.shared_pending_ = false;
    if (agent_.on_shared_) agent_.on_shared_();
  }
}

std::optional<std::vector<BackendConfig>> GossipAgent::backends(std::string_view pool) const {
  if (!seeded_) return std::nullopt;
  std::vector<BackendConfig> out;
  bool any = false;
  for (const auto& [key, entry] : swim_->store().entries()) {
    if (pool_of_key(key) != pool) continue;
    any = true;  // the marker too: no name, no node, but the set is the cluster's
    if (entry.tombstone) continue;
    const std::string name = key.substr(key.rfind('/') + 1);
    if (!is_valid_backend_name(name)) continue;
    if (auto b = decode_backend(name, entry.value)) out.push_back(std::move(*b));
  }
  // "default" has been shared once seeded (an empty set is a set); another pool only
  // once someone wrote it: until then this instance's file stands for it.
  if (!any && pool != "default") return std::nullopt;
  return out;
}

std::set<std::string> GossipAgent::drained() const {
  std::set<std::string> out;
  for (const auto& [key, entry] : swim_->store().entries()) {
    if (key.starts_with(kDrainPrefix) && !entry.tombstone) out.insert(key.substr(kDrainPrefix.size()));
  }
  return out;
}

// Keys are at most gossip::kMaxName bytes: a longer backend name cannot be shared.
bool GossipAgent::fits(const std::string& key) {
  if (key.size() <= gossip::kMaxName) return true;
  RP_LOG(LogLevel::kError, "gossip: key " + key.substr(0, 40) + "... over " + std::to_string(gossip::kMaxName) +
                               " bytes: not shared");
  return false;
}

void GossipAgent::put_backend(std::string_view pool, const BackendConfig& backend) {
  seeded_ = true;
  const std::string key = backend_key(pool, backend.name);
  if (!fits(key)) return;
  Batch batch(*this);
  handle(swim_->put(key, encode_backend(backend), now()));
  own(backend_key(pool, ""));
}

void GossipAgent::erase_backend(std::string_view pool, const std::string& name) {
  seeded_ = true;
  const std::string key = backend_key(pool, name);
  if (!fits(key)) return;
  Batch batch(*this);
  handle(swim_->erase(key, now()));
  own(backend_key(pool, ""));  // emptied or not, the set stays the cluster's
}

void GossipAgent::set_drained(const std::string& name, bool drained) {
  const std::string key = std::string(kDrainPrefix) + name;
  if (fits(key)) handle(drained ? swim_->put(key, "1", now()) : swim_->erase(key, now()));
}

void GossipAgent::replace_backends(std::string_view pool, const std::vector<BackendConfig>& backends) {
  Batch batch(*this);
  const bool shared = seeded_ && has_pool(pool);
  const auto current = shared ? this->backends(pool).value_or(std::vector<BackendConfig>{}) : std::vector<BackendConfig>{};
  for (const BackendConfig& old : current) {
    const bool kept = std::any_of(backends.begin(), backends.end(), [&](const BackendConfig& b) { return b.name == old.name; });
    if (!kept) erase_backend(pool, old.name);
  }
  for (const BackendConfig& b : backends) {
    const bool same = shared && std::any_of(current.begin(), current.end(), [&](const BackendConfig& c) { return c == b; });
    if (!same) put_backend(pool, b);
  }
  seeded_ = true;
  maybe_seed();  // settles now, when there was nothing to write
}

std::optional<std::vector<FoundNode>> GossipAgent::found(const DiscoverConfig& source) const {
  const std::string prefix = found_prefix(source.name);
  bool written = false;
  std::vector<FoundNode> out;
  const auto& entries = swim_->store().entries();
  for (auto it = entries.lower_bound(prefix); it != entries.end() && it->first.starts_with(prefix); ++it) {
    // Tombstones and the marker too (gossip_agent.h): a source whose records all went
    // away is shared as empty, after its deletes are collected too.
    written = true;
    if (it->second.tombstone) continue;
    if (auto f = decode_found(source, it->second.value)) out.push_back(std::move(*f));
  }
  if (!written) return std::nullopt;
  std::sort(out.begin(), out.end(), [](const FoundNode& a, const FoundNode& b) { return a.backend.name < b.backend.name; });
  return out;
}

void GossipAgent::share_found(const DiscoverConfig& source, const std::vector<FoundNode>& nodes) {
  Batch batch(*this);
  const auto current = found(source).value_or(std::vector<FoundNode>{});
  for (const FoundNode& old : current) {
    const bool kept = std::any_of(nodes.begin(), nodes.end(), [&](const FoundNode& n) { return n.backend.name == old.backend.name; });
    const std::string key = found_key(source.name, old.backend.name);
    if (!kept && fits(key)) handle(swim_->erase(key, now()));
  }
  for (const FoundNode& n : nodes) {
    const bool same = std::any_of(current.begin(), current.end(), [&](const FoundNode& c) { return c == n; });
    const std::string key = found_key(source.name, n.backend.name);
    if (!same && fits(key)) handle(swim_->put(key, encode_found(n), now()));
  }
  // Shared from now on, for good: even empty (nothing else written), even once the
  // deletes of its nodes are collected.
  own(found_key(source.name, ""));
}

void GossipAgent::renew_lease(const DiscoverConfig& source, uint64_t ttl_ms) {
  const std::string key = lease_prefix(source.name) + hash_hex(name());
  if (!fits(key)) return;
  if (!seeded_) {
    unsent_leases_[key] = ttl_ms;  // written once settled (on_settled)
    return;
  }
  handle(swim_->put(key, std::to_string(++lease_seq_) + " " + std::to_string(ttl_ms), now()));
}

std::vector<SharedLease::Lease> GossipAgent::leases(const DiscoverConfig& source) const {
  std::vector<SharedLease::Lease> out;
  const std::string prefix = lease_prefix(source.name);
  const auto& entries = swim_->store().entries();
  for (auto it = entries.lower_bound(prefix); it != entries.end() && it->first.starts_with(prefix); ++it) {
    if (it->second.tombstone) continue;
    SharedLease::Lease l;
    l.key = it->first;
    l.version = it->second.version;
    const std::string& v = it->second.value;
    const size_t space = v.find(' ');
    if (space == std::string::npos) continue;
    l.ttl_ms = std::strtoull(v.c_str() + space + 1, nullptr, 10);
    out.push_back(std::move(l));
  }
  return out;
}

void GossipAgent::report_health(const std::string& backend, bool down) {
  // "POOL/NAME" goes in as "POOL@NAME": the instance's name may hold '/', so the node
  // is what follows the key's last '/'.
  const std::string key = own_health_prefix_ + health_node(backend);
  if (!fits(key)) return;
  reported_[key] = down;
  if (!seeded_) return;  // written once settled (on_settled)
  const gossip::KvEntry* e = swim_->store().find(key);
  const bool reported_down = e && !e->tombstone;
  if (reported_down == down) return;
  write_health(key, down);
}

void GossipAgent::forget_health(const std::set<std::string>& backends) {
  if (swim_->has_left()) return;
  const size_t prefix = own_health_prefix_.size();
  for (auto it = reported_.begin(); it != reported_.end();) {
    if (backends.count(qualified_node(std::string_view(it->first).substr(prefix)))) {
      ++it;
    } else {
      restores_.erase(it->first);
      it = reported_.erase(it);
    }
  }
  if (!seeded_) {
    unforgotten_ = backends;  // the store's views are deleted once settled (on_settled)
    return;
  }
  const std::vector<std::string> stale = stale_health_keys(swim_->store(), name(), backends);
  if (stale.empty()) return;
  Batch batch(*this);
  for (const std::string& key : stale) write_health(key, false);
}

std::set<std::string> GossipAgent::majority_down() const {
  std::set<std::string> alive;
  for (const gossip::Member& m : swim_->members()) {
    if (m.state == gossip::MemberState::kAlive || m.state == gossip::MemberState::kSuspect) alive.insert(m.name);
  }
  std::map<std::string, size_t> votes;
  for (const auto& [key, entry] : swim_->store().entries()) {
    if (!key.starts_with(kHealthPrefix) || entry.tombstone) continue;
    const std::string_view rest = std::string_view(key).substr(kHealthPrefix.size());
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos) continue;
    // Instance names may hold '/', backend names may not (config/): split at the last.
    const size_t last = rest.rfind('/');
    if (!alive.count(std::string(rest.substr(0, last)))) continue;  // the dead do not vote
    ++votes[qualified_node(rest.substr(last + 1))];  // "POOL@NAME"
  }
  std::set<std::string> out;
  for (const auto& [backend, n] : votes) {
    if (2 * n > alive.size()) out.insert(backend);
  }
  return out;
}

const std::string& GossipAgent::name() const { return swim_->config().name; }

std::vector<gossip::Member> GossipAgent::members() const { return swim_->members(); }

}  // namespace ringproxy
