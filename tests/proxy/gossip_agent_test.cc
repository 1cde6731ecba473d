// proxy/gossip_agent.h's encoding of a shared node ("backend/NAME" -> "ADDRESS WEIGHT
// [tls[=NAME]] [h2c|h2]"), without a socket: what each kind of node is written as, that
// it reads back the same, that values written before protocols (or before TLS) still
// read as they did, and that what no instance writes is refused; the housekeeping that
// keeps the store small (which keys are an instance's, which health views are stale);
// and one agent alone on a loopback UDP socket (no peer, nothing awaited).
#include "proxy/gossip_agent.h"

#include <gtest/gtest.h>

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <vector>

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

}  // namespace
}  // namespace ringproxy
