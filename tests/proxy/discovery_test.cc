// proxy/discovery.h in virtual time: answers fed with the instant they came, the set and
// the next query read back. The rules are its header's; each test names the bug it keeps
// out.
#include "proxy/discovery.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringproxy {
namespace {

DiscoverConfig srv_source() {
  DiscoverConfig s;
  s.name = "_http._tcp.cache.test";
  s.type = DiscoverConfig::Type::kSrv;
  return s;
}

DiscoverConfig a_source(uint16_t port = 6081, uint32_t weight = 2) {
  DiscoverConfig s;
  s.name = "cache.test";
  s.type = DiscoverConfig::Type::kA;
  s.port = port;
  s.weight = weight;
  return s;
}

DnsAnswer srv(std::vector<DnsAnswer::Srv> records, uint32_t ttl_s = 30) {
  DnsAnswer a;
  a.status = DnsAnswer::Status::kOk;
  a.srv = std::move(records);
  a.ttl_s = ttl_s;
  return a;
}

DnsAnswer failed(DnsAnswer::Status status) {
  DnsAnswer a;
  a.status = status;
  a.error = "what the resolver said";
  return a;
}

std::vector<std::string> names(const std::vector<DiscoveredNode>& nodes) {
  std::vector<std::string> out;
  for (const auto& n : nodes) out.push_back(n.name);
  return out;
}

TEST(Discovery, SrvRecordsBecomeNodesNamedByTargetAndPort) {
  const auto nodes = nodes_of(srv({{10, 5, 8080, "N2.cache.test."}, {10, 0, 8081, "n1.cache.test"}}), srv_source());
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0], (DiscoveredNode{"n1.cache.test:8081", "n1.cache.test", 8081, 0, 10}));  // weight 0: drained
  EXPECT_EQ(nodes[1], (DiscoveredNode{"n2.cache.test:8080", "n2.cache.test", 8080, 5, 10}));
}

TEST(Discovery, AddressesBecomeNodesWithTheSourcesPortAndWeight) {
  DnsAnswer a;
  a.status = DnsAnswer::Status::kOk;
  a.addresses = {"10.0.0.2", "fd00::1", "10.0.0.1"};
  EXPECT_EQ(names(nodes_of(a, a_source())),
            (std::vector<std::string>{"10.0.0.1:6081", "10.0.0.2:6081", "[fd00::1]:6081"}));
  EXPECT_EQ(nodes_of(a, a_source())[0].weight, 2u);
}

// haproxy#814, #1910: a reordered answer reshuffled the ring.
TEST(Discovery, AReorderedAnswerIsTheSameSet) {
  DiscoveryState state;
  const DnsConfig dns;
  EXPECT_EQ(state.on_answer(srv({{1, 1, 80, "a.test"}, {1, 1, 80, "b.test"}, {1, 1, 80, "c.test"}}), srv_source(), dns, 1000),
            DiscoveryState::Outcome::kChanged);
  EXPECT_EQ(state.on_answer(srv({{1, 1, 80, "c.test"}, {1, 1, 80, "a.test"}, {1, 1, 80, "b.test"}}), srv_source(), dns, 2000),
            DiscoveryState::Outcome::kSame);
  EXPECT_EQ(names(state.nodes()), (std::vector<std::string>{"a.test:80", "b.test:80", "c.test:80"}));
}

TEST(Discovery, ARepeatedRecordCountsOnce) {
  EXPECT_EQ(names(nodes_of(srv({{2, 1, 80, "a.test"}, {1, 7, 80, "A.test."}}), srv_source())),
            std::vector<std::string>{"a.test:80"});
  EXPECT_EQ(nodes_of(srv({{2, 1, 80, "a.test"}, {1, 7, 80, "A.test."}}), srv_source())[0].weight, 7u);
}

TEST(Discovery, TheNextQueryFollowsTheTtlClamped) {
  DnsConfig dns;
  dns.min_ttl_ms = 1000;
  dns.max_ttl_ms = 60000;
  DiscoveryState state;
  state.on_answer(srv({{1, 1, 80, "a.test"}}, 30), srv_source(), dns, 5000);
  EXPECT_EQ(state.next_query_ms(), 35000u);
  state.on_answer(srv({{1, 1, 80, "a.test"}}, 0), srv_source(), dns, 6000);
  EXPECT_EQ(state.next_query_ms(), 7000u);  // TTL 0: the floor
  state.on_answer(srv({{1, 1, 80, "a.test"}}, 86400), srv_source(), dns, 7000);
  EXPECT_EQ(state.next_query_ms(), 67000u);  // a day: the ceiling
}

// envoy#2691 (every host dropped on one NXDOMAIN), haproxy#3400 (no server left after an
// SRV answer emptied for a second): failures keep the last good set for hold_ms.
TEST(Discovery, FailuresKeepTheLastGoodSetForHoldMsThenEmptyIt) {
  DnsConfig dns;
  dns.hold_ms = 10000;
  dns.min_ttl_ms = 500;
  for (const DnsAnswer::Status status : {DnsAnswer::Status::kServFail, DnsAnswer::Status::kTimeout,
                                         DnsAnswer::Status::kNotFound, DnsAnswer::Status::kEmpty}) {
    SCOPED_TRACE(to_string(status));
    DiscoveryState state;
    state.on_answer(srv({{1, 1, 80, "a.test"}, {1, 1, 80, "b.test"}}), srv_source(), dns, 1000);
    EXPECT_EQ(state.on_answer(failed(status), srv_source(), dns, 2000), DiscoveryState::Outcome::kHeld);
    EXPECT_EQ(state.nodes().size(), 2u);
    EXPECT_TRUE(state.holding());
    EXPECT_NE(state.last_error().find(to_string(status)), std::string::npos) << state.last_error();
    EXPECT_EQ(state.next_query_ms(), 2500u);  // asked again soon: min_ttl_ms
    // hold_ms counts from the first failure (2000).
    EXPECT_EQ(state.on_answer(failed(status), srv_source(), dns, 12000), DiscoveryState::Outcome::kHeld);  // at the edge
    EXPECT_EQ(state.on_answer(failed(status), srv_source(), dns, 12001), DiscoveryState::Outcome::kExpired);
    EXPECT_TRUE(state.nodes().empty());
    EXPECT_EQ(state.on_answer(failed(status), srv_source(), dns, 13000), DiscoveryState::Outcome::kNothingYet);
    // A good answer afterwards brings the set back.
    EXPECT_EQ(state.on_answer(srv({{1, 1, 80, "a.test"}}), srv_source(), dns, 14000), DiscoveryState::Outcome::kChanged);
    EXPECT_FALSE(state.holding());
    EXPECT_EQ(state.last_error(), "");
  }
}

TEST(Discovery, FailuresInARowBackOffUpTo30Seconds) {
  // A resolver that is down is not asked at min_ttl_ms for ever (1,000 named targets
  // would be 2,000 queries a second): doubling, up to 30 s, back to the TTL once good.
  DnsConfig dns;
  dns.min_ttl_ms = 1000;
  DiscoveryState state;
  uint64_t now = 1000;
  state.on_answer(srv({{1, 1, 80, "a.test"}}), srv_source(), dns, now);
  std::vector<uint64_t> waits;
  for (int i = 0; i < 8; ++i) {
    now += 10;
    state.on_answer(failed(DnsAnswer::Status::kTimeout), srv_source(), dns, now);
    waits.push_back(state.next_query_ms() - now);
  }
  EXPECT_EQ(waits, (std::vector<uint64_t>{1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000}));
  state.on_answer(srv({{1, 1, 80, "a.test"}}, 5), srv_source(), dns, now);
  EXPECT_EQ(state.next_query_ms() - now, 5000u);
  state.on_answer(failed(DnsAnswer::Status::kTimeout), srv_source(), dns, now);
  EXPECT_EQ(state.next_query_ms() - now, 1000u);
  // A max_ttl_ms below 30 s caps it; never below min_ttl_ms.
  dns.max_ttl_ms = 3000;
  DiscoveryState capped;
  for (int i = 0; i < 4; ++i) capped.on_answer(failed(DnsAnswer::Status::kTimeout), srv_source(), dns, 100);
  EXPECT_EQ(capped.next_query_ms(), 3100u);
}

// A long TTL and a short hold: the first failed re-resolution, a TTL after the last good
// answer, is held, not the end of the set.
TEST(Discovery, TheHoldCountsFromTheFirstFailureNotTheLastGoodAnswer) {
  DnsConfig dns;
  dns.hold_ms = 60000;
  DiscoveryState state;
  state.on_answer(srv({{1, 1, 80, "a.test"}}, 300), srv_source(), dns, 1000);
  EXPECT_EQ(state.on_answer(failed(DnsAnswer::Status::kServFail), srv_source(), dns, 301000),
            DiscoveryState::Outcome::kHeld);
  EXPECT_EQ(state.on_answer(failed(DnsAnswer::Status::kServFail), srv_source(), dns, 361000),
            DiscoveryState::Outcome::kHeld);
  EXPECT_EQ(state.on_answer(failed(DnsAnswer::Status::kServFail), srv_source(), dns, 361001),
            DiscoveryState::Outcome::kExpired);
}

TEST(Discovery, AnAnswerWithOnlyUnusableRecordsIsAFailure) {
  DnsConfig dns;
  DiscoveryState state;
  state.on_answer(srv({{1, 1, 80, "a.test"}}), srv_source(), dns, 1000);
  // "." (RFC 2782: no service) and port 0 name no node.
  EXPECT_EQ(state.on_answer(srv({{1, 1, 80, "."}, {1, 1, 0, "b.test"}}), srv_source(), dns, 2000),
            DiscoveryState::Outcome::kHeld);
  EXPECT_EQ(names(state.nodes()), std::vector<std::string>{"a.test:80"});
}

// The hold is for failures, not for real removals.
TEST(Discovery, ASmallerGoodAnswerIsTakenAtOnce) {
  DnsConfig dns;
  DiscoveryState state;
  state.on_answer(srv({{1, 1, 80, "a.test"}, {1, 1, 80, "b.test"}}), srv_source(), dns, 1000);
  EXPECT_EQ(state.on_answer(srv({{1, 1, 80, "b.test"}}), srv_source(), dns, 2000), DiscoveryState::Outcome::kChanged);
  EXPECT_EQ(names(state.nodes()), std::vector<std::string>{"b.test:80"});
}

TEST(Discovery, NothingBeforeTheFirstGoodAnswer) {
  DnsConfig dns;
  DiscoveryState state;
  EXPECT_EQ(state.on_answer(failed(DnsAnswer::Status::kTimeout), srv_source(), dns, 1000),
            DiscoveryState::Outcome::kNothingYet);
  EXPECT_TRUE(state.nodes().empty());
  EXPECT_EQ(state.last_good_ms(), 0u);
}

TEST(Discovery, TheBestPriorityWithAUsableNodeServes) {
  const auto nodes = nodes_of(srv({{10, 1, 80, "primary-a.test"}, {10, 1, 80, "primary-b.test"},
                                   {20, 1, 80, "backup.test"}}),
                              srv_source());
  auto all_up = [](const DiscoveredNode&) { return true; };
  EXPECT_EQ(names(serving_set(nodes, all_up)), (std::vector<std::string>{"primary-a.test:80", "primary-b.test:80"}));
  // One primary down: the other still serves (it takes the keys of its peer by the walk).
  auto a_down = [](const DiscoveredNode& n) { return n.host != "primary-a.test"; };
  EXPECT_EQ(names(serving_set(nodes, a_down)), (std::vector<std::string>{"primary-a.test:80", "primary-b.test:80"}));
  // Both down: the backup serves.
  auto primaries_down = [](const DiscoveredNode& n) { return n.priority != 10; };
  EXPECT_EQ(names(serving_set(nodes, primaries_down)), std::vector<std::string>{"backup.test:80"});
  // Nothing usable: all of them, rather than none.
  auto none = [](const DiscoveredNode&) { return false; };
  EXPECT_EQ(serving_set(nodes, none).size(), 3u);
}

// Issue 14 with gossip: the shared set counted forever once every resolver failed (only
// good answers were shared). Leases: the shared set counts while some instance's lease
// changed within its TTL + hold_ms, on this instance's clock.
TEST(SharedLease, BeforeAnyLeaseTheSharedSetCounts) {
  SharedLease l;
  EXPECT_TRUE(l.counts(0));
  EXPECT_FALSE(l.observe({}, 1000, 5000));
  EXPECT_TRUE(l.counts(999999));
  EXPECT_FALSE(l.seen());
}

TEST(SharedLease, NoLeaseChangeForTtlPlusHoldDropsTheSharedSet) {
  SharedLease l;
  const uint32_t hold = 1000;
  EXPECT_FALSE(l.observe({{"a", 1, 200}, {"b", 4, 200}}, hold, 10000));  // first sight counts
  EXPECT_TRUE(l.counts(11200));
  EXPECT_EQ(l.valid_until_ms(), 11200u);
  // The same versions later are no news: the time does not move.
  EXPECT_FALSE(l.observe({{"a", 1, 200}, {"b", 4, 200}}, hold, 11000));
  EXPECT_EQ(l.valid_until_ms(), 11200u);
  EXPECT_TRUE(l.observe({{"a", 1, 200}, {"b", 4, 200}}, hold, 11201));  // flipped: dropped
  EXPECT_FALSE(l.counts(11201));
  EXPECT_FALSE(l.observe({{"a", 1, 200}, {"b", 4, 200}}, hold, 60000));  // said once
  EXPECT_FALSE(l.counts(60000));
  // A good answer anywhere (a lease's new version) brings it back.
  EXPECT_TRUE(l.observe({{"a", 1, 200}, {"b", 5, 200}}, hold, 60001));
  EXPECT_TRUE(l.counts(61201));
  EXPECT_FALSE(l.counts(61202));
}

TEST(SharedLease, OneInstanceStillResolvingKeepsItForAll) {
  SharedLease l;
  const uint32_t hold = 1000;
  l.observe({{"a", 1, 200}, {"b", 1, 200}}, hold, 0);
  // "a" stops (its resolver fails, or it left); "b" renews at every TTL.
  for (uint64_t t = 200, v = 2; t <= 100000; t += 200, ++v) {
    EXPECT_FALSE(l.observe({{"a", 1, 200}, {"b", v, 200}}, hold, t)) << t;
    EXPECT_TRUE(l.counts(t)) << t;
  }
}

TEST(SharedLease, ALongTtlKeepsTheSharedSetUntilItsWriterWouldHaveDroppedIt) {
  SharedLease l;
  l.observe({{"a", 7, 300000}}, 30000, 1000);
  EXPECT_TRUE(l.counts(1000 + 300000 + 30000));
  EXPECT_FALSE(l.counts(1000 + 300000 + 30001));
}

TEST(SharedLease, ThisInstancesOwnGoodAnswerRenewsIt) {
  SharedLease l;
  l.observe({{"a", 1, 200}}, 1000, 0);
  EXPECT_TRUE(l.observe({{"a", 1, 200}}, 1000, 5000));
  l.renewed(200, 1000, 5000);
  EXPECT_TRUE(l.counts(6200));
  EXPECT_TRUE(l.observe({{"a", 1, 200}}, 1000, 5100));
  EXPECT_FALSE(l.counts(6201));
}

TEST(SharedLease, ADeletedLeaseIsForgotten) {
  // An instance reaped by gossip has its lease deleted (gossip_agent.h): it leaves the
  // leases, and this map forgets it rather than keep a key per instance that ever ran.
  // So should it come back, even at the same version, that is news.
  SharedLease l;
  l.observe({{"a", 1, 200}, {"b", 1, 200}}, 1000, 0);
  EXPECT_FALSE(l.observe({{"b", 1, 200}}, 1000, 100));
  EXPECT_FALSE(l.observe({{"a", 1, 200}, {"b", 1, 200}}, 1000, 1100));
  EXPECT_TRUE(l.counts(1100 + 200 + 1000));
}

}  // namespace
}  // namespace ringproxy
