// What discovery hands the routing (proxy/discovery_agent.h, proxy/backends.h) and the
// instances share (proxy/gossip_agent.h), without a resolver or a socket: a name's A
// and AAAA answers merged into one, the routing built from configured and found nodes
// with named nodes' addresses, and found nodes through the gossip store's encoding.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/backends.h"
#include "proxy/discovery_agent.h"

namespace ringproxy {
namespace {

DnsAnswer answer(DnsAnswer::Status status, std::vector<std::string> addresses = {}, uint32_t ttl_s = 0) {
  DnsAnswer a;
  a.status = status;
  a.addresses = std::move(addresses);
  a.ttl_s = ttl_s;
  if (status != DnsAnswer::Status::kOk) a.error = "said so";
  return a;
}

TEST(MergeAddressAnswers, BothFamiliesWithTheSmallerTtl) {
  const DnsAnswer m = merge_address_answers(answer(DnsAnswer::Status::kOk, {"10.0.0.1", "10.0.0.2"}, 30),
                                            answer(DnsAnswer::Status::kOk, {"fd00::1"}, 10));
  EXPECT_EQ(m.status, DnsAnswer::Status::kOk);
  EXPECT_EQ(m.addresses, (std::vector<std::string>{"10.0.0.1", "10.0.0.2", "fd00::1"}));
  EXPECT_EQ(m.ttl_s, 10u);
}

TEST(MergeAddressAnswers, OneFamilyIsEnough) {
  // The common case: a name with A records only; its AAAA query is empty (NODATA), or
  // fails outright: the addresses stand, with their own TTL.
  for (const auto other : {DnsAnswer::Status::kEmpty, DnsAnswer::Status::kServFail, DnsAnswer::Status::kTimeout}) {
    const DnsAnswer m = merge_address_answers(answer(DnsAnswer::Status::kOk, {"10.0.0.1"}, 30), answer(other));
    EXPECT_EQ(m.status, DnsAnswer::Status::kOk);
    EXPECT_EQ(m.addresses, std::vector<std::string>{"10.0.0.1"});
    EXPECT_EQ(m.ttl_s, 30u);
    const DnsAnswer v6 = merge_address_answers(answer(other), answer(DnsAnswer::Status::kOk, {"fd00::1"}, 5));
    EXPECT_EQ(v6.addresses, std::vector<std::string>{"fd00::1"});
    EXPECT_EQ(v6.ttl_s, 5u);
  }
}

TEST(MergeAddressAnswers, NoAddressReportsTheFailureThatSaysMost) {
  // A SERVFAIL or a timeout for one family and "no record" for the other is a failure
  // of the server, not a name without addresses: the log and /discovery say SERVFAIL.
  EXPECT_EQ(merge_address_answers(answer(DnsAnswer::Status::kServFail), answer(DnsAnswer::Status::kEmpty)).status,
            DnsAnswer::Status::kServFail);
  EXPECT_EQ(merge_address_answers(answer(DnsAnswer::Status::kEmpty), answer(DnsAnswer::Status::kTimeout)).status,
            DnsAnswer::Status::kTimeout);
  EXPECT_EQ(merge_address_answers(answer(DnsAnswer::Status::kNotFound), answer(DnsAnswer::Status::kEmpty)).status,
            DnsAnswer::Status::kNotFound);
  EXPECT_EQ(merge_address_answers(answer(DnsAnswer::Status::kEmpty), answer(DnsAnswer::Status::kEmpty)).status,
            DnsAnswer::Status::kEmpty);
  // "ok" with no address (all records unusable) counts as empty.
  EXPECT_EQ(merge_address_answers(answer(DnsAnswer::Status::kOk), answer(DnsAnswer::Status::kNotFound)).status,
            DnsAnswer::Status::kNotFound);
}

TEST(FamilyMemory, AFamilyThatFailsKeepsItsAddressesForHoldMs) {
  // A resolver timing out on AAAA while A answers is no removal of the IPv6 addresses.
  FamilyMemory v6;
  EXPECT_EQ(v6.answer(answer(DnsAnswer::Status::kOk, {"fd00::1"}, 30), 1000, 5000).addresses,
            std::vector<std::string>{"fd00::1"});
  for (const auto failure : {DnsAnswer::Status::kTimeout, DnsAnswer::Status::kServFail, DnsAnswer::Status::kError,
                             DnsAnswer::Status::kMalformed}) {
    const DnsAnswer held = v6.answer(answer(failure), 2000, 5000);
    EXPECT_EQ(held.status, DnsAnswer::Status::kOk);
    EXPECT_EQ(held.addresses, std::vector<std::string>{"fd00::1"});
    EXPECT_EQ(held.ttl_s, 0u);  // asked again soon
  }
  // From the first failure in a row: past hold_ms, the failure stands.
  EXPECT_EQ(v6.answer(answer(DnsAnswer::Status::kTimeout), 7000, 5000).status, DnsAnswer::Status::kOk);
  EXPECT_EQ(v6.answer(answer(DnsAnswer::Status::kTimeout), 7001, 5000).status, DnsAnswer::Status::kTimeout);
}

TEST(FamilyMemory, DefinitiveAnswersAreTakenAsTheyAre) {
  // NODATA and NXDOMAIN say the addresses are gone: not held.
  FamilyMemory v4;
  v4.answer(answer(DnsAnswer::Status::kOk, {"10.0.0.1"}, 30), 1000, 5000);
  EXPECT_EQ(v4.answer(answer(DnsAnswer::Status::kEmpty), 2000, 5000).status, DnsAnswer::Status::kEmpty);
  EXPECT_EQ(v4.answer(answer(DnsAnswer::Status::kTimeout), 3000, 5000).status, DnsAnswer::Status::kTimeout);
  v4.answer(answer(DnsAnswer::Status::kOk, {"10.0.0.2"}, 30), 4000, 5000);
  EXPECT_EQ(v4.answer(answer(DnsAnswer::Status::kNotFound), 5000, 5000).status, DnsAnswer::Status::kNotFound);
  // A failure with nothing before it is a failure.
  FamilyMemory fresh;
  EXPECT_EQ(fresh.answer(answer(DnsAnswer::Status::kTimeout), 1000, 5000).status, DnsAnswer::Status::kTimeout);
}

BackendConfig backend(std::string name, std::string address) {
  std::string why;
  auto a = parse_address(address, &why, false, true);
  EXPECT_TRUE(a) << address << ": " << why;
  return {std::move(name), a.value_or(Address{}), 1, false, ""};
}

FoundNode found(std::string name, std::string address, std::string source, uint16_t priority = 0) {
  return {backend(std::move(name), std::move(address)), std::move(source), priority};
}

std::string ip_of(const sockaddr_storage& sa) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (sa.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&sa)->sin6_addr, buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in6*>(&sa)->sin6_port));
  }
  inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&sa)->sin_addr, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in*>(&sa)->sin_port));
}

TEST(DiscoveredRouting, NamedNodesConnectToWhatTheirNameResolvesTo) {
  auto config = std::make_shared<Config>();
  config->backends = {backend("a", "127.0.0.1:9001"), backend("b", "cache-b.test:6081"),
                      backend("c", "cache-c.test:6081")};
  const ResolvedNames names{{"cache-b.test", {"10.0.0.7", "fd00::7"}}};
  std::string error;
  auto r = build_routing(config, {}, names, nullptr, 1, 1, &error);
  ASSERT_NE(r, nullptr) << error;
  const Backend& a = r->default_pool().backends[*r->default_pool().ring->find("a")];
  const Backend& b = r->default_pool().backends[*r->default_pool().ring->find("b")];
  const Backend& c = r->default_pool().backends[*r->default_pool().ring->find("c")];
  ASSERT_EQ(a.sockaddrs.size(), 1u);
  EXPECT_EQ(ip_of(a.sockaddrs[0]), "127.0.0.1/9001");
  ASSERT_EQ(b.sockaddrs.size(), 2u);  // both, taken in turn by new connections
  EXPECT_EQ(ip_of(b.sockaddrs[0]), "10.0.0.7/6081");
  EXPECT_EQ(ip_of(b.sockaddrs[1]), "fd00::7/6081");
  EXPECT_TRUE(c.sockaddrs.empty());  // not resolved (yet): in the ring, down (Server::copy_state)
  EXPECT_EQ(b.address.to_string(), "cache-b.test:6081");
  EXPECT_EQ(b.source, "");
}

TEST(DiscoveredRouting, ANameKeepsItsRingPointsWhenItsAddressChanges) {
  auto config = std::make_shared<Config>();
  config->backends = {backend("a", "127.0.0.1:9001"), backend("b", "cache-b.test:6081")};
  std::string error;
  auto before = build_routing(config, {}, {{"cache-b.test", {"10.0.0.7"}}}, nullptr, 1, 1, &error);
  auto after = build_routing(config, {}, {{"cache-b.test", {"10.0.0.8"}}}, before.get(), 2, 1, &error);
  ASSERT_NE(before, nullptr);
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(before->default_pool().ring->fingerprint(), after->default_pool().ring->fingerprint());
  EXPECT_EQ(Ring::moved_fraction(*before->default_pool().ring, *after->default_pool().ring), 0.0);
  const Backend& b0 = before->default_pool().backends[*before->default_pool().ring->find("b")];
  const Backend& b1 = after->default_pool().backends[*after->default_pool().ring->find("b")];
  EXPECT_EQ(b0.state, b1.state);  // health and counters go on
  // Connections to the old address are not reused: another pool.
  EXPECT_NE(b0.pool_key, b1.pool_key);
  EXPECT_EQ(ip_of(b1.sockaddrs[0]), "10.0.0.8/6081");
}

TEST(DiscoveredRouting, FoundNodesJoinTheConfiguredOnesAndAConfiguredNameStands) {
  auto config = std::make_shared<Config>();
  config->backends = {backend("a", "127.0.0.1:9001"), backend("10.0.0.2:6081", "127.0.0.1:9002")};
  const std::vector<FoundNode> nodes = {found("10.0.0.1:6081", "10.0.0.1:6081", "cache.test"),
                                        found("10.0.0.2:6081", "10.0.0.2:6081", "cache.test"),
                                        found("web-1.test:80", "web-1.test:80", "_http._tcp.web.test", 10)};
  std::vector<std::string> skipped;
  std::string error;
  auto r = build_routing(config, nodes, {{"web-1.test", {"10.1.0.1"}}}, nullptr, 1, 1, &error, &skipped);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_EQ(r->default_pool().backends.size(), 4u);
  EXPECT_EQ(skipped, std::vector<std::string>{"10.0.0.2:6081"});
  const Backend& clash = r->default_pool().backends[*r->default_pool().ring->find("10.0.0.2:6081")];
  EXPECT_EQ(clash.source, "");  // the configured one
  EXPECT_EQ(ip_of(clash.sockaddrs[0]), "127.0.0.1/9002");
  const Backend& web = r->default_pool().backends[*r->default_pool().ring->find("web-1.test:80")];
  EXPECT_EQ(web.source, "_http._tcp.web.test");
  EXPECT_EQ(web.priority, 10);
  EXPECT_EQ(ip_of(web.sockaddrs[0]), "10.1.0.1/80");
  const Backend& a1 = r->default_pool().backends[*r->default_pool().ring->find("10.0.0.1:6081")];
  EXPECT_EQ(a1.source, "cache.test");
  EXPECT_EQ(ip_of(a1.sockaddrs[0]), "10.0.0.1/6081");
}

TEST(DiscoveredRouting, FoundNodesTakeTheirSourcesConnectionSettings) {
  // SPEC: a [[discover]]'s tls, tls_name and protocol are "as for [[backend]]": every
  // node it finds, from the resolver or from the other instances, is reached so.
  DiscoverConfig source;
  source.name = "_grpc._tcp.api.test";
  source.tls = true;
  source.tls_name = "api.internal";
  source.protocol = BackendProtocol::kH2;
  const FoundNode f = found_by(source);
  EXPECT_EQ(f.source, "_grpc._tcp.api.test");
  EXPECT_TRUE(f.backend.tls);
  EXPECT_EQ(f.backend.tls_name, "api.internal");
  EXPECT_EQ(f.backend.protocol, BackendProtocol::kH2);
  EXPECT_EQ(found_by(DiscoverConfig{}).backend.protocol, BackendProtocol::kHttp1);

  // Into the routing: the node of each source as it found it.
  const auto found_at = [](const DiscoverConfig& s, std::string address) {
    FoundNode n = found_by(s);
    n.backend.name = address;
    n.backend.address = backend(address, address).address;
    return n;
  };
  const FoundNode node = found_at(source, "api-1.test:8443");
  source.tls = false;
  source.tls_name.clear();
  source.protocol = BackendProtocol::kH2c;
  const FoundNode cleartext = found_at(source, "10.0.0.1:8080");
  std::string error;
  auto r = build_routing(std::make_shared<Config>(), {node, cleartext}, {{"api-1.test", {"10.0.0.9"}}}, nullptr, 1,
                         1, &error);
  ASSERT_NE(r, nullptr) << error;
  const Backend& h2 = r->default_pool().backends[*r->default_pool().ring->find("api-1.test:8443")];
  EXPECT_EQ(h2.protocol, BackendProtocol::kH2);
  EXPECT_TRUE(h2.tls);
  EXPECT_EQ(h2.tls_name, "api.internal");
  const Backend& h2c = r->default_pool().backends[*r->default_pool().ring->find("10.0.0.1:8080")];
  EXPECT_EQ(h2c.protocol, BackendProtocol::kH2c);
  EXPECT_FALSE(h2c.tls);
}

TEST(DiscoveredRouting, TheRingDependsOnTheSetNotItsOrder) {
  auto config = std::make_shared<Config>();
  std::vector<FoundNode> nodes;
  for (int i = 0; i < 20; ++i) {
    const std::string name = "10.0.0." + std::to_string(i + 1) + ":6081";
    nodes.push_back(found(name, name, "cache.test"));
  }
  std::string error;
  auto r1 = build_routing(config, nodes, {}, nullptr, 1, 1, &error);
  std::reverse(nodes.begin(), nodes.end());
  auto r2 = build_routing(config, nodes, {}, nullptr, 1, 1, &error);
  ASSERT_NE(r1, nullptr);
  ASSERT_NE(r2, nullptr);
  EXPECT_EQ(r1->default_pool().ring->fingerprint(), r2->default_pool().ring->fingerprint());
}

}  // namespace
}  // namespace ringproxy
