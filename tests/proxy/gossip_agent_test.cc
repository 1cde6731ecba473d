// proxy/gossip_agent.h's encoding of a shared node ("backend/NAME" -> "ADDRESS WEIGHT
// [tls[=NAME]] [h2c|h2]"), without a socket: what each kind of node is written as, that
// it reads back the same, that values written before protocols (or before TLS) still
// read as they did, and that what no instance writes is refused; the housekeeping that
// keeps the store small (which keys are an instance's, which health views are stale);
// one agent alone on a loopback UDP socket (no peer, nothing awaited); and agents on a
// simulated network in virtual time (Net, below): when an instance writes its own keys,
// which sets stay the cluster's past the tombstone horizon, which keys a reaped member
// leaves, and who writes a health view back.
#include "proxy/gossip_agent.h"

#include <gtest/gtest.h>

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "gossip/codec.h"
#include "proxy/log.h"

namespace ringproxy {
namespace {

BackendConfig node(std::string address, uint32_t weight, bool tls = false, std::string tls_name = "",
                   BackendProtocol protocol = BackendProtocol::kHttp1) {
  std::string why;
  auto a = parse_address(address, &why, false, true);
  EXPECT_TRUE(a) << address << ": " << why;
  return {"n", a.value_or(Address{}), weight, tls, std::move(tls_name), protocol};
}

TEST(GossipBackendValue, EachKindOfNodeRoundTrips) {
  const struct {
    BackendConfig backend;
    std::string value;
  } cases[] = {
      {node("127.0.0.1:9001", 3), "127.0.0.1:9001 3"},
      {node("[::1]:9001", 0), "[::1]:9001 0"},
      {node("cache-a.test:6081", 1), "cache-a.test:6081 1"},
      {node("127.0.0.1:9001", 1, true), "127.0.0.1:9001 1 tls"},
      {node("127.0.0.1:9001", 1, true, "a.example"), "127.0.0.1:9001 1 tls=a.example"},
      {node("127.0.0.1:9001", 2, false, "", BackendProtocol::kH2c), "127.0.0.1:9001 2 h2c"},
      {node("127.0.0.1:9001", 1, true, "", BackendProtocol::kH2), "127.0.0.1:9001 1 tls h2"},
      {node("api.test:443", 5, true, "api.internal", BackendProtocol::kH2), "api.test:443 5 tls=api.internal h2"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.value);
    EXPECT_EQ(encode_backend(c.backend), c.value);
    EXPECT_EQ(decode_backend("n", c.value), c.backend);
  }
}

TEST(GossipBackendValue, ValuesWithoutAProtocolAreHttp1) {
  // What every instance wrote before protocols: an http1 node's value is unchanged, so
  // old and new instances share http1 nodes both ways.
  for (const char* value : {"10.0.0.1:80 2", "10.0.0.1:80 2 tls", "10.0.0.1:80 2 tls=cache.internal"}) {
    SCOPED_TRACE(value);
    const std::optional<BackendConfig> b = decode_backend("n", value);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->protocol, BackendProtocol::kHttp1);
    EXPECT_EQ(encode_backend(*b), value);
  }
  EXPECT_EQ(decode_backend("n", "10.0.0.1:80 2 tls=cache.internal")->tls_name, "cache.internal");
  // Written out, http1 reads the same (no instance writes it).
  EXPECT_EQ(decode_backend("n", "10.0.0.1:80 2 http1"), decode_backend("n", "10.0.0.1:80 2"));
}

TEST(GossipBackendValue, MalformedValuesAreRefused) {
  for (const char* value : {
           "", "10.0.0.1:80", "10.0.0.1:80 ", "10.0.0.1:80 x", "10.0.0.1:80 1001", "10.0.0.1:80  1",
           "10.0.0.1:80 1 ", "10.0.0.1:80 1 tlsx", "10.0.0.1:80 1 tls=-bad", "10.0.0.1:80 1 tls tls",
           "10.0.0.1:80 1 h3",            // an unknown protocol
           "10.0.0.1:80 1 H2C",           // words are exact
           "10.0.0.1:80 1 h2",            // h2 without TLS
           "10.0.0.1:80 1 tls h2c",       // h2c with it
           "10.0.0.1:80 1 h2 tls",        // the protocol comes last
           "10.0.0.1:80 1 tls h2 h2",     // once
           "10.0.0.1:80 1 tls h2 extra",  // nothing after it
           "10.0.0.1:80 1 h2c ",
       }) {
    EXPECT_EQ(decode_backend("n", value), std::nullopt) << '"' << value << '"';
  }
}

// Keeping the store small (gossip_agent.h): which keys an instance owns, for when it is
// reaped, and which of our health views are of nodes gone from every pool.
std::string hex(std::string_view s) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits(s.data(), s.size())));
  return buf;
}

TEST(GossipHousekeeping, AnInstancesKeysAreItsLiveHealthViewsAndLeases) {
  gossip::KvStore store;
  store.put("health/10.0.0.5:7946/cache-a", "down", "10.0.0.5:7946");
  store.put("health/10.0.0.5:7946/images@img-1", "down", "10.0.0.5:7946");
  store.erase("health/10.0.0.5:7946/cache-b", "10.0.0.5:7946", 0);  // already deleted
  store.put("health/10.0.0.5:7946x/cache-a", "down", "10.0.0.5:7946x");
  store.put("health/a/cache-a", "down", "a");
  store.put("health/a/b/cache-a", "down", "a/b");  // instance "a/b", not "a"
  store.put("found-ok/" + hex("tier") + "/" + hex("10.0.0.5:7946"), "3 30000", "10.0.0.5:7946");
  store.put("found-ok/" + hex("api") + "/" + hex("10.0.0.5:7946"), "9 5000", "10.0.0.5:7946");
  store.put("found-ok/" + hex("tier") + "/" + hex("a"), "1 30000", "a");
  store.put("found/" + hex("tier") + "/" + hex("10.0.0.5:7946"), "10.0.0.5:7946 1 0", "a");  // a node, not ours
  store.put("backend/10.0.0.5:7946", "10.0.0.5:7946 1", "a");
  const std::vector<std::string> want = {
      "found-ok/" + hex("api") + "/" + hex("10.0.0.5:7946"),
      "found-ok/" + hex("tier") + "/" + hex("10.0.0.5:7946"),
      "health/10.0.0.5:7946/cache-a",
      "health/10.0.0.5:7946/images@img-1",
  };
  auto sorted = want;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(instance_keys(store, "10.0.0.5:7946"), sorted);
  EXPECT_EQ(instance_keys(store, "a"),
            (std::vector<std::string>{"found-ok/" + hex("tier") + "/" + hex("a"), "health/a/cache-a"}));
  EXPECT_EQ(instance_keys(store, "a/b"), std::vector<std::string>{"health/a/b/cache-a"});
  EXPECT_TRUE(instance_keys(store, "nobody").empty());
}

TEST(GossipHousekeeping, StaleHealthViewsAreOursOfNodesInNoPool) {
  gossip::KvStore store;
  store.put("health/me/cache-a", "down", "me");
  store.put("health/me/10.1.2.3:8080", "down", "me");  // a pod that left the answer
  store.put("health/me/images@img-1", "down", "me");
  store.put("health/me/images@img-2", "down", "me");
  store.erase("health/me/cache-b", "me", 0);
  store.put("health/other/10.1.2.3:8080", "down", "other");  // not ours
  const std::set<std::string> pools = {"cache-a", "cache-b", "images/img-1"};
  EXPECT_EQ(stale_health_keys(store, "me", pools),
            (std::vector<std::string>{"health/me/10.1.2.3:8080", "health/me/images@img-2"}));
  EXPECT_TRUE(stale_health_keys(store, "me", {"cache-a", "10.1.2.3:8080", "images/img-1", "images/img-2"}).empty());
}

// The agent itself, on a real loop and a loopback UDP socket, alone (no seeds, so
// nothing is awaited): what it writes of its own and when.
TEST(GossipAgentAlone, HoldsLeasesUntilSettledAndForgetsViewsOfNodesInNoPool) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  {
    GossipAgent agent(&loop, [] {});
    GossipConfig gc;
    gc.enabled = true;
    std::string why;
    gc.bind = parse_address("127.0.0.1:0", &why, /*allow_port_zero=*/true).value();
    gc.name = "me";
    ASSERT_EQ(agent.start(gc, {}), "");
    DiscoverConfig tier;
    tier.name = "_http._tcp.tier.test";
    // Before it has the cluster's state (and clock), its lease waits.
    agent.renew_lease(tier, 30000);
    EXPECT_TRUE(agent.leases(tier).empty());
    EXPECT_FALSE(agent.settled());
    agent.replace_backends("default", {node("127.0.0.1:9001", 1)});  // settles it
    EXPECT_TRUE(agent.settled());
    ASSERT_EQ(agent.leases(tier).size(), 1u);
    EXPECT_EQ(agent.leases(tier)[0].ttl_ms, 30000u);

    agent.report_health("cache-a", true);
    agent.report_health("images/img-1", true);
    agent.report_health("10.1.2.3:8080", true);
    EXPECT_EQ(agent.store().get("health/me/images@img-1"), "down");
    EXPECT_EQ(agent.store().get("health/me/10.1.2.3:8080"), "down");
    // The pod left the answer, and the pool "images" went: their views go.
    agent.forget_health({"cache-a", "n"});
    EXPECT_EQ(agent.store().get("health/me/cache-a"), "down");
    EXPECT_EQ(agent.store().get("health/me/images@img-1"), std::nullopt);
    EXPECT_EQ(agent.store().get("health/me/10.1.2.3:8080"), std::nullopt);
    EXPECT_EQ(agent.store().tombstones(), 2u);
    EXPECT_EQ(agent.majority_down(), std::set<std::string>{"cache-a"});
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the agent's handles close
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// ---- agents on a simulated network, in virtual time -----------------------------------
//
// GossipAgent on an Io of the test's (STYLE rule 3): a clock the test moves; a network
// that delivers each message kDelayMs after it is sent, through the codec, unless sender
// and receiver are in different partition groups or the receiver has stopped; and each
// agent's timer. Nothing sleeps: minutes of gossip among 30 agents take a fifth of a second.
class Net {
 public:
  static constexpr int64_t kDelayMs = 2;

  // `swim`: every agent's Swim settings (name, address, incarnation set per agent).
  // The agents' log lines (members coming and going, by the hundred) are left out.
  explicit Net(gossip::SwimConfig swim) : swim_(std::move(swim)) { Log::set_level(LogLevel::kError); }
  ~Net() { Log::set_level(LogLevel::kInfo); }

  // Starts an agent named `name` that joins through the latest agents named in `seeds`,
  // with `file` as its config file's backends. Several may share a name (twins).
  GossipAgent& add(const std::string& name, const std::vector<std::string>& seeds = {},
                   const GossipAgent::PoolBackends& file = {}) {
    const size_t i = nodes_.size();
    nodes_.emplace_back();
    Node& n = nodes_.back();
    n.name = name;
    n.address = name + "#" + std::to_string(i) + ":7946";
    n.ticks = events_.end();
    by_address_[n.address] = i;
    n.agent = std::make_unique<GossipAgent>(nullptr, [] {});
    gossip::SwimConfig sc = swim_;
    sc.name = name;
    sc.address = n.address;
    sc.incarnation = 1;
    std::vector<std::string> seed_addresses;
    for (const std::string& s : seeds) seed_addresses.push_back(nodes_[index(s)].address);
    n.agent->start(std::make_unique<NodeIo>(*this, i), sc, gossip::Rng(1000 + i), seed_addresses, file);
    return *n.agent;
  }
  GossipAgent& operator[](const std::string& name) { return *nodes_[index(name)].agent; }
  GossipAgent& at(size_t i) { return *nodes_[i].agent; }
  size_t size() const { return nodes_.size(); }
  bool running(size_t i) const { return nodes_[i].running; }
  int64_t now() const { return now_; }

  void run_until(int64_t t) {
    while (!events_.empty() && events_.begin()->first.first <= t) {
      auto it = events_.begin();
      Event e = std::move(it->second);
      now_ = it->first.first;
      Node& n = nodes_[e.node];
      if (e.tick && n.ticks == it) n.ticks = events_.end();
      events_.erase(it);
      if (!n.running) continue;
      if (e.tick) {
        n.agent->on_tick();
        continue;
      }
      const gossip::Decoded d = gossip::decode(std::span<const uint8_t>(e.bytes.data(), e.bytes.size()));
      EXPECT_TRUE(d.message) << d.error;
      if (!d.message) continue;
      n.agent->on_message(e.from, *d.message);
      if (on_delivered) on_delivered(e.node, *d.message);
    }
    now_ = std::max(now_, t);
  }
  void run_for(int64_t ms) { run_until(now_ + ms); }

  // Each listed group apart from the others; agents not listed together.
  void partition(const std::vector<std::vector<std::string>>& groups) {
    for (Node& n : nodes_) n.group = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      for (const std::string& name : groups[g]) nodes_[index(name)].group = static_cast<int>(g) + 1;
    }
  }
  void heal() { partition({}); }
  void stop(const std::string& name) { nodes_[index(name)].running = false; }  // a crash
  // `m` reaches `to` now, as if sent from `from_address`.
  void inject(const std::string& to, const std::string& from_address, const gossip::Message& m) {
    nodes_[index(to)].agent->on_message(from_address, m);
  }
  const std::string& address(const std::string& name) const { return nodes_[index(name)].address; }

  // Called after an agent handled a delivered message.
  std::function<void(size_t node, const gossip::Message&)> on_delivered;

 private:
  struct Event {
    size_t node = 0;
    bool tick = false;
    std::string from;
    std::vector<uint8_t> bytes;
  };
  using Events = std::multimap<std::pair<int64_t, uint64_t>, Event>;  // (at, order): FIFO at equal times
  struct Node {
    std::string name, address;
    std::unique_ptr<GossipAgent> agent;
    bool running = true;
    int group = 0;
    Events::iterator ticks;  // its pending tick, or events_.end()
  };
  class NodeIo final : public GossipAgent::Io {
   public:
    NodeIo(Net& net, size_t node) : net_(net), node_(node) {}
    int64_t now() const override { return net_.now_; }
    void send(const std::string& to, const gossip::Message& message) override { net_.send(node_, to, message); }
    void wake_at(int64_t at_ms) override {
      Node& n = net_.nodes_[node_];
      if (n.ticks != net_.events_.end()) net_.events_.erase(n.ticks);
      n.ticks = net_.events_.emplace(std::make_pair(std::max(at_ms, net_.now_), net_.order_++), Event{node_, true, {}, {}});
    }
    void close(std::function<void()> done) override {
      net_.nodes_[node_].running = false;
      if (done) done();
    }

   private:
    Net& net_;
    size_t node_;
  };

  size_t index(const std::string& name) const {
    for (size_t i = nodes_.size(); i-- > 0;) {
      if (nodes_[i].name == name) return i;
    }
    ADD_FAILURE() << "no agent " << name;
    return 0;
  }
  void send(size_t from, const std::string& to, const gossip::Message& m) {
    const auto it = by_address_.find(to);
    if (it == by_address_.end() || nodes_[it->second].group != nodes_[from].group) return;
    const gossip::Encoded enc = gossip::encode(m, swim_.packet_budget);
    EXPECT_EQ(enc.updates_sent, m.updates.size());
    events_.emplace(std::make_pair(now_ + kDelayMs, order_++), Event{it->second, false, nodes_[from].address, enc.bytes});
  }

  gossip::SwimConfig swim_;
  std::vector<Node> nodes_;
  std::map<std::string, size_t> by_address_;
  Events events_;
  int64_t now_ = 0;
  uint64_t order_ = 0;
};

constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;

// A minute's reap time (and so a two-minute tombstone horizon) instead of 24 h, so that
// a test goes past both in a few virtual minutes.
gossip::SwimConfig short_horizon() {
  gossip::SwimConfig c;
  c.reap_after_ms = kMinute;
  return c;
}

BackendConfig named(std::string name, std::string address) {
  BackendConfig b = node(std::move(address), 1);
  b.name = std::move(name);
  return b;
}

DiscoverConfig source_named(std::string name) {
  DiscoverConfig s;
  s.name = std::move(name);
  return s;
}

FoundNode found_at(const DiscoverConfig& source, const std::string& address) {
  FoundNode f = found_by(source);
  f.backend.name = address;
  f.backend.address = node(address, 1).address;
  f.backend.weight = 1;
  return f;
}

std::string lease_key(const DiscoverConfig& source, const std::string& instance) {
  return "found-ok/" + hex(source.name) + "/" + hex(instance);
}

// The live entries with `prefix`, at every running agent: what would route.
size_t live_with_prefix(Net& net, const std::string& prefix) {
  size_t n = 0;
  for (size_t i = 0; i < net.size(); ++i) {
    if (!net.running(i)) continue;
    for (const auto& [key, e] : net.at(i).store().entries()) n += key.starts_with(prefix) && !e.tombstone;
  }
  return n;
}

// Agents `names` started, each joining through the first, settled; then each reports
// cache-a down and, given a `tier`, renews its lease on it; settled again.
void start_reporting(Net& net, const std::vector<std::string>& names, const DiscoverConfig* tier) {
  for (const std::string& n : names) {
    net.add(n, n == names.front() ? std::vector<std::string>{} : std::vector<std::string>{names.front()});
  }
  net.run_for(5 * kSecond);
  for (const std::string& n : names) {
    net[n].report_health("cache-a", true);
    if (tier != nullptr) net[n].renew_lease(*tier, 30000);
  }
  net.run_for(5 * kSecond);
}

// B1. An admin empties pool "images" and the default pool, and a [[discover]] source's
// records all go away; two days later (the horizon, here two minutes) every delete is
// collected. An instance whose config file still lists the old nodes then starts: the
// sets stay the cluster's (empty), nothing is seeded from the file, nothing comes back.
TEST(GossipAgentSim, AnEmptiedSetStaysTheClustersPastTheTombstoneHorizon) {
  Net net(short_horizon());
  const GossipAgent::PoolBackends file = {
      {"default", {named("cache-a", "10.0.0.1:80"), named("cache-b", "10.0.0.2:80")}},
      {"images", {named("img-1", "10.0.1.1:80"), named("img-2", "10.0.1.2:80")}},
  };
  const DiscoverConfig tier = source_named("_http._tcp.tier.test");
  GossipAgent& a = net.add("a", {}, file);
  net.add("b", {"a"}, file);
  net.run_for(5 * kSecond);  // a alone for its grace: seeds from its file; b adopts
  ASSERT_TRUE(a.settled());
  ASSERT_EQ(net["b"].backends("images")->size(), 2u);
  a.share_found(tier, {found_at(tier, "10.2.0.1:8080"), found_at(tier, "10.2.0.2:8080")});
  net.run_for(5 * kSecond);
  ASSERT_EQ(net["b"].found(tier)->size(), 2u);

  a.replace_backends("images", {});  // as a reload that removes the pool does
  a.replace_backends("default", {});
  a.share_found(tier, {});
  net.run_for(5 * kSecond);
  a.set_drained("cache-c", true);  // a later write holds the clock: every delete can go
  net.run_for(3 * kMinute);
  for (const char* who : {"a", "b"}) {
    SCOPED_TRACE(who);
    const gossip::KvStore& st = net[who].store();
    EXPECT_EQ(st.tombstones(), 0u) << "every delete collected";
    EXPECT_GT(st.floor(), 0u);
    EXPECT_EQ(st.find("pool/images/img-1"), nullptr);
    EXPECT_EQ(st.find("backend/cache-a"), nullptr);
    // Each set's marker is what is left of it.
    EXPECT_EQ(st.get("pool/images/"), "");
    EXPECT_EQ(st.get("backend/"), "");
    EXPECT_EQ(st.get("found/" + hex(tier.name) + "/"), "");
    EXPECT_EQ(net[who].backends("images"), std::vector<BackendConfig>{});
    EXPECT_EQ(net[who].found(tier), std::vector<FoundNode>{});
  }

  GossipAgent& c = net.add("c", {"a"}, file);  // its file still lists all four
  net.run_for(10 * kSecond);
  ASSERT_TRUE(c.settled());
  EXPECT_EQ(c.backends("images"), std::vector<BackendConfig>{});
  EXPECT_EQ(c.backends("default"), std::vector<BackendConfig>{});
  EXPECT_EQ(c.found(tier), std::vector<FoundNode>{}) << "shared, and empty: not this instance's first answer";
  EXPECT_EQ(live_with_prefix(net, "pool/images/img"), 0u);
  EXPECT_EQ(live_with_prefix(net, "backend/cache"), 0u);
  for (size_t i = 0; i < net.size(); ++i) EXPECT_EQ(net.at(i).store().refused(), 0u);
}

// B1, for sets shared before markers (by an older version): each gets its marker when
// an instance of this version settles, while the deletes that make it a set are held.
TEST(GossipAgentSim, SetsSharedBeforeMarkersGetOneAtSettle) {
  Net net(short_horizon());
  GossipAgent& a = net.add("a");
  gossip::Message old;  // what an older instance gossips: deletes only, no marker
  old.type = gossip::MessageType::kGossip;
  old.from = "old";
  old.updates.push_back(gossip::KvUpdate{"pool/video/v-1", {"", 4, "old", true}});
  old.updates.push_back(gossip::KvUpdate{"backend/cache-z", {"", 5, "old", true}});
  old.updates.push_back(gossip::KvUpdate{"found/" + hex("src") + "/" + hex("10.9.9.9:80"), {"", 6, "old", true}});
  net.inject("a", "old#9:7946", old);
  EXPECT_FALSE(a.settled());
  net.run_for(5 * kSecond);  // alone: settles after its grace
  ASSERT_TRUE(a.settled());
  EXPECT_EQ(a.store().get("pool/video/"), "");
  EXPECT_EQ(a.store().get("backend/"), "");
  EXPECT_EQ(a.store().get("found/" + hex("src") + "/"), "");
  EXPECT_EQ(a.backends("video"), std::vector<BackendConfig>{});
}

// R1. A joiner to a cluster whose state takes several packets (the members first, then
// the store) holds its lease and its health view until the last part has arrived: the
// cluster's deletes have been collected (every store has a floor), and a write at a
// clock behind the cluster's would be refused, answered with a delete and written again.
TEST(GossipAgentSim, AJoinerWritesItsOwnKeysOnlyOnceItHoldsTheWholeState) {
  Net net(short_horizon());
  const GossipAgent::PoolBackends file = {{"default", {named("cache-a", "10.0.0.1:80")}}};
  GossipAgent& first = net.add("m0", {}, file);
  for (int i = 1; i < 30; ++i) net.add("m" + std::to_string(i), {"m0"}, file);
  net.run_for(10 * kSecond);
  // Many entries early in key order and low in version, the collected deletes above
  // them: the first packets of a push-pull hold the members and entries below the floor.
  for (int i = 0; i < 60; ++i) first.set_drained("cache-with-a-longer-name-" + std::to_string(i), true);
  first.replace_backends("images", {named("img-1", "10.0.1.1:80"), named("img-2", "10.0.1.2:80")});
  first.replace_backends("images", {});
  net.run_for(3 * kMinute);
  for (size_t i = 0; i < net.size(); ++i) ASSERT_GT(net.at(i).store().floor(), 0u) << i;

  const DiscoverConfig tier = source_named("_http._tcp.tier.test");
  GossipAgent& joiner = net.add("joiner", {"m0"}, {{"default", {named("joiner-only", "10.0.9.9:80")}}});
  joiner.renew_lease(tier, 30000);      // its resolver answered at once
  joiner.report_health("cache-a", true);  // and its first check failed
  EXPECT_EQ(joiner.store().size(), 0u) << "both wait";
  size_t index = 0;
  while (&net.at(index) != &joiner) ++index;
  std::optional<gossip::Message> settled_by;
  net.on_delivered = [&](size_t to, const gossip::Message& m) {
    if (to == index && joiner.settled() && !settled_by) settled_by = m;
  };
  net.run_for(10 * kSecond);
  ASSERT_TRUE(settled_by);
  EXPECT_EQ(settled_by->type, gossip::MessageType::kPushPull);
  EXPECT_GT(settled_by->parts, 2u) << "the state took several packets";
  EXPECT_EQ(settled_by->part + 1, settled_by->parts) << "settled by the last of them, not the first";
  for (size_t i = 0; i < net.size(); ++i) {
    SCOPED_TRACE(i);
    const gossip::KvStore& st = net.at(i).store();
    EXPECT_EQ(st.refused(), 0u);
    EXPECT_TRUE(st.get(lease_key(tier, "joiner")));
    EXPECT_EQ(st.get("health/joiner/cache-a"), "down");
    EXPECT_EQ(st.find("backend/joiner-only"), nullptr) << "the cluster has backends: not seeded from its file";
  }
}

// R2. Seven instances, each with a health view and a lease. One is cut off alone, two
// together: each side forgets the others after the reap time. Those cut off (alone, or
// two of the seven they saw) keep the others' keys; the four delete the forgotten
// ones'. Once healed, every view is back everywhere (the owners write theirs again).
TEST(GossipAgentSim, AnInstanceCutOffDeletesNoneOfTheOthersKeys) {
  Net net(short_horizon());
  const DiscoverConfig tier = source_named("_http._tcp.tier.test");
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f", "g"};
  start_reporting(net, names, &tier);
  net.partition({{"a"}, {"b", "c"}});
  net.run_for(3 * kMinute);  // each side dead to the other, then forgotten (a minute later)
  for (const std::string who : {"a", "b", "c"}) {
    SCOPED_TRACE(who);
    EXPECT_EQ(net[who].members().size(), who == "a" ? 1u : 2u) << "forgotten";
    for (const std::string other : {"d", "e", "f", "g"}) {
      EXPECT_EQ(net[who].store().get("health/" + other + "/cache-a"), "down") << other;
      EXPECT_TRUE(net[who].store().get(lease_key(tier, other))) << other;
    }
  }
  for (const std::string who : {"d", "e", "f", "g"}) {
    SCOPED_TRACE(who);
    for (const std::string gone : {"a", "b", "c"}) {
      EXPECT_FALSE(net[who].store().get("health/" + gone + "/cache-a")) << gone;
      EXPECT_FALSE(net[who].store().get(lease_key(tier, gone))) << gone;
    }
  }
  net.heal();
  net.run_for(kMinute);
  for (const std::string& who : names) {
    SCOPED_TRACE(who);
    EXPECT_EQ(net[who].members().size(), names.size());
    for (const std::string& other : names) EXPECT_EQ(net[who].store().get("health/" + other + "/cache-a"), "down") << other;
    for (const std::string other : {"d", "e", "f", "g"}) EXPECT_TRUE(net[who].store().get(lease_key(tier, other))) << other;
  }
}

// R2, the other way: three of five crash for good. The two left see themselves in the
// minority and keep the three's keys; once two new instances make a majority of the
// five again, the keys go.
TEST(GossipAgentSim, KeysKeptWhileInTheMinorityGoOnceAMajorityIsBack) {
  Net net(short_horizon());
  const std::vector<std::string> names = {"a", "b", "c", "d", "e"};
  start_reporting(net, names, nullptr);
  for (const char* gone : {"c", "d", "e"}) net.stop(gone);
  net.run_for(3 * kMinute);
  EXPECT_EQ(net["a"].members().size(), 2u);
  for (const char* gone : {"c", "d", "e"}) EXPECT_EQ(net["a"].store().get(std::string("health/") + gone + "/cache-a"), "down");
  net.add("f", {"a"});
  net.add("g", {"a"});
  net.run_for(10 * kSecond);
  for (const std::string who : {"a", "b", "f", "g"}) {
    SCOPED_TRACE(who);
    for (const char* gone : {"c", "d", "e"}) EXPECT_FALSE(net[who].store().get(std::string("health/") + gone + "/cache-a"));
    EXPECT_EQ(net[who].store().get("health/a/cache-a"), "down");
  }
}

// What a reaped member leaves is deleted: its health views and its leases, whether it
// crashed or left (one that left said so: its keys go even at an instance left alone).
TEST(GossipAgentSim, AForgottenMembersKeysAreDeleted) {
  Net net(short_horizon());
  const DiscoverConfig tier = source_named("_http._tcp.tier.test");
  const std::vector<std::string> names = {"a", "b", "c", "d"};
  start_reporting(net, names, &tier);
  net.stop("d");
  net["c"].leave(nullptr);
  net.run_for(kMinute / 2);
  EXPECT_EQ(net["a"].store().get("health/d/cache-a"), "down") << "dead, not forgotten yet";
  net.run_for(2 * kMinute);
  for (const std::string who : {"a", "b"}) {
    SCOPED_TRACE(who);
    for (const std::string gone : {"c", "d"}) {
      EXPECT_FALSE(net[who].store().get("health/" + gone + "/cache-a")) << gone;
      EXPECT_FALSE(net[who].store().get(lease_key(tier, gone))) << gone;
    }
    EXPECT_EQ(net[who].store().get("health/a/cache-a"), "down");
    EXPECT_EQ(net[who].store().get("health/b/cache-a"), "down");
  }
  net["b"].leave(nullptr);
  net.run_for(3 * kMinute);
  EXPECT_EQ(net["a"].members().size(), 1u);
  EXPECT_FALSE(net["a"].store().get("health/b/cache-a"));
  EXPECT_FALSE(net["a"].store().get(lease_key(tier, "b")));
}

// An instance's health view overwritten by another (a cleanup, a refusal) is written
// back by its owner at once.
TEST(GossipAgentSim, AnOverwrittenHealthViewIsWrittenBackByItsOwner) {
  Net net(short_horizon());
  GossipAgent& a = net.add("a");
  GossipAgent& b = net.add("b", {"a"});
  net.run_for(5 * kSecond);
  a.report_health("cache-a", true);
  net.run_for(kSecond);
  ASSERT_EQ(b.store().get("health/a/cache-a"), "down");
  const uint64_t deleted_at = a.store().max_version() + 5;
  gossip::Message g;
  g.type = gossip::MessageType::kGossip;
  g.from = "b";
  g.updates.push_back(gossip::KvUpdate{"health/a/cache-a", {"", deleted_at, "b", true}});
  net.inject("a", net.address("b"), g);
  EXPECT_EQ(a.store().get("health/a/cache-a"), "down");
  EXPECT_GT(a.store().find("health/a/cache-a")->version, deleted_at);
  net.run_for(kSecond);
  EXPECT_EQ(b.store().get("health/a/cache-a"), "down");
}

// R3. Two processes started with the same gossip name disagree about a node: each
// writes its view back when the other overwrites it, but with a growing wait, not at
// gossip speed (which was tens of thousands of writes in ten minutes).
TEST(GossipAgentSim, TwoProcessesWithOneNameDoNotFightAtGossipSpeed) {
  Net net(short_horizon());
  GossipAgent& one = net.add("a");
  GossipAgent& b = net.add("b", {"a"});
  GossipAgent& two = net.add("a", {"b"});  // the same name, another process
  net.run_for(5 * kSecond);
  std::set<uint64_t> writes;  // the versions of health/a/cache-a that reached b
  net.on_delivered = [&](size_t, const gossip::Message&) {
    if (const gossip::KvEntry* e = b.store().find("health/a/cache-a")) writes.insert(e->version);
  };
  two.report_health("cache-a", false);  // it can reach the node (nothing written)
  one.report_health("cache-a", true);   // this one cannot
  net.run_for(10 * kMinute);
  RecordProperty("writes", static_cast<int>(writes.size()));
  EXPECT_GE(writes.size(), 10u) << "each still writes its view back";
  EXPECT_LE(writes.size(), 40u) << "about 11 each in 10 minutes: after 1, 2, 4 ... 256 s, then every 5 minutes";
}

}  // namespace
}  // namespace ringproxy
