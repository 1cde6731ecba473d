// Several tiers in the routing (proxy/backends.h, SPEC "Several tiers"): each pool gets its
// own ring from its own nodes and settings, node states follow a node within its pool,
// and match_route picks the pool of a request from its Host and target.
#include <gtest/gtest.h>

#include <cctype>
#include <algorithm>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "proxy/backends.h"

namespace ringproxy {
namespace {

std::shared_ptr<const Config> config_of(std::string_view text) {
  ConfigResult r = load_config_string(text, "t.toml");
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors.front().to_string());
  return std::make_shared<const Config>(std::move(r.config));
}

constexpr std::string_view kTiers = R"(
[ring]
vnodes = 100
[[backend]]
name = "a"
address = "127.0.0.1:9001"
[[backend]]
name = "b"
address = "127.0.0.1:9002"
[[pool]]
name = "images"
ring = { vnodes = 40 }
hash_key = "path"
backends = [ { name = "a", address = "127.0.0.1:9101" }, { name = "i", address = "127.0.0.1:9001" } ]
[[pool]]
name = "api"
backends = [ { name = "x", address = "127.0.0.1:9201" } ]
[[route]]
host = "img.example.com"
pool = "images"
[[route]]
host = "*.static.test"
path_prefix = "/s/"
pool = "images"
[[route]]
path_prefix = "/api/"
pool = "api"
[[route]]
host = "::1"
pool = "api"
)";

TEST(PoolRouting, EachPoolHasItsOwnRingAndNumbering) {
  std::string error;
  const auto r = build_routing(config_of(kTiers), nullptr, 1, 2, &error);
  ASSERT_NE(r, nullptr) << error;
  ASSERT_EQ(r->pools.size(), 3u);
  EXPECT_EQ(r->default_pool().name(), "default");
  EXPECT_TRUE(r->default_pool().declared);
  const Pool& images = *r->find_pool("images");
  EXPECT_EQ(images.index, 1u);
  EXPECT_EQ(images.ring->vnodes(), 40u);
  EXPECT_EQ(r->default_pool().ring->vnodes(), 100u);
  EXPECT_EQ(images.config.hash_key.kind, HashKeyKind::kPath);
  EXPECT_EQ(r->find_pool("api")->config.ring.vnodes, 100u);  // the top level's
  // Flat numbering: default's 2 nodes, then images' 2, then api's 1.
  EXPECT_EQ(images.base, 2u);
  EXPECT_EQ(r->find_pool("api")->base, 4u);
  EXPECT_EQ(r->node_count(), 5u);
  // One name in two pools is two nodes, with their own states and connection pools.
  const Backend& a_default = r->default_pool().backends[*r->default_pool().ring->find("a")];
  const Backend& a_images = images.backends[*images.ring->find("a")];
  EXPECT_NE(a_default.state, a_images.state);
  EXPECT_NE(a_default.pool_key, a_images.pool_key);
  // The same address in two pools: two connection pools too (each pool's TLS rules).
  const Backend& i_images = images.backends[*images.ring->find("i")];
  EXPECT_EQ(i_images.address, a_default.address);
  EXPECT_NE(i_images.pool_key, a_default.pool_key);
  EXPECT_EQ(images.qualified("a"), "images/a");
  EXPECT_EQ(r->default_pool().qualified("a"), "a");
  EXPECT_EQ(r->find_pool("nope"), nullptr);
}

TEST(PoolRouting, StatesFollowANodeWithinItsPool) {
  std::string error;
  const auto config = config_of(kTiers);
  const auto first = build_routing(config, nullptr, 1, 1, &error);
  ASSERT_NE(first, nullptr) << error;
  const auto second = build_routing(config, first.get(), 2, 1, &error);
  ASSERT_NE(second, nullptr) << error;
  for (const Pool& pool : second->pools) {
    const Pool& before = *first->find_pool(pool.name());
    for (const Backend& b : pool.backends) EXPECT_EQ(b.state, before.backends[*before.ring->find(b.name)].state);
  }
}

TEST(PoolRouting, RoutesMatchInFileOrder) {
  std::string error;
  const auto r = build_routing(config_of(kTiers), nullptr, 1, 1, &error);
  ASSERT_NE(r, nullptr) << error;
  const uint32_t images = r->find_pool("images")->index, api = r->find_pool("api")->index;
  const auto match = [&](std::string_view host, std::string_view target) { return match_route(*r, host, target, 0); };
  EXPECT_EQ(match("img.example.com", "/x"), images);
  EXPECT_EQ(match("IMG.Example.COM:8080", "/x"), images);  // any case, without the port
  EXPECT_EQ(match("img.example.com.", "/x"), images);      // the root's dot
  EXPECT_EQ(match("img.example.com", "/api/x"), images);   // the first match wins
  EXPECT_EQ(match("sub.img.example.com", "/x"), 0u);
  EXPECT_EQ(match("a.static.test", "/s/x"), images);
  EXPECT_EQ(match("a.b.static.test:81", "/s/"), images);
  EXPECT_EQ(match("static.test", "/s/x"), 0u);  // "*." needs a label before the suffix
  EXPECT_EQ(match("astatic.test", "/s/x"), 0u);
  EXPECT_EQ(match("a.static.test", "/x"), 0u);  // host and path both match
  EXPECT_EQ(match("", "/api/v1"), api);
  EXPECT_EQ(match("any", "/api"), 0u);          // a prefix as written
  EXPECT_EQ(match("any", "/API/x"), 0u);        // paths are case-sensitive
  EXPECT_EQ(match("[::1]:8080", "/x"), api);    // an IPv6 literal without its brackets
  EXPECT_EQ(match("any", "/x"), 0u);
  EXPECT_EQ(match_route(*r, "any", "/x", 7), 7u);  // no match: the fallback
}

// match_route looks only at the routes its index says may match (bit sets by host length
// and by the target's second byte, proxy/backends.h): past 64 routes too, it finds the
// first match in file order, as a plain scan of every route does. Route i goes to pool
// i + 1 ("r<i>"), so the pool returned names the route.
TEST(PoolRouting, TheIndexFindsWhatAScanFinds) {
  std::string text = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  std::vector<RouteConfig> routes;
  const char* hosts[] = {"a.test", "*.test", "*.b.test", "b.test", "", "ab.test", ""};
  const char* paths[] = {"/a", "/a/", "/ab/c/d/e/f/g/h/", "/ab/c/d/e/f/g/h/i", "/b", "/abcdefgh", "/abcdefghij", "", "/"};
  for (int i = 0; i < 140; ++i) {
    RouteConfig r{hosts[i % 7], paths[(i / 7 + i) % 9], "r" + std::to_string(i)};
    // No route catches everything before the last few: later words of the sets decide too.
    if (r.host.empty() && r.path_prefix.size() < 2 && i < 130) r.path_prefix = "/q" + std::to_string(i) + "/";
    if (i >= 128 && i < 135) r.path_prefix = "/w" + std::to_string(i) + "/";  // reachable in the third word
    text += "[[pool]]\nname = \"" + r.pool + "\"\nbackends = [ { name = \"x\", address = \"127.0.0.1:9201\" } ]\n"
            "[[route]]\nhost = \"" + r.host + "\"\npath_prefix = \"" + r.path_prefix + "\"\npool = \"" + r.pool + "\"\n";
    routes.push_back(r);
  }
  ConfigResult loaded = load_config_string(text, "t.toml");  // warnings: routes covered by earlier ones
  ASSERT_TRUE(loaded.ok()) << loaded.errors.front().to_string();
  std::string error;
  const auto r = build_routing(std::make_shared<const Config>(std::move(loaded.config)), nullptr, 1, 1, &error);
  ASSERT_NE(r, nullptr) << error;
  ASSERT_EQ(r->route_words, 3u);
  // The reference: the first route (as configured) whose host and prefix match.
  const auto scan = [&](std::string host, std::string_view target) -> uint32_t {
    for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (const size_t colon = host.rfind(':'); colon != std::string::npos) host.resize(colon);
    for (size_t i = 0; i < routes.size(); ++i) {
      const std::string& h = routes[i].host;
      const bool host_ok = h.empty() || h == host ||
                           (h.starts_with("*.") && host.size() > h.size() - 1 && host.ends_with(h.substr(1)));
      if (host_ok && target.starts_with(routes[i].path_prefix)) return static_cast<uint32_t>(i + 1);
    }
    return 1000;
  };
  const char* req_hosts[] = {"", "a.test", "A.TEST:80", "x.test", "x.b.test", "b.test", "ab.test", "zz.example", "t",
                             "[::1]:8080"};
  const char* targets[] = {"*", "/", "/a", "/a/x", "/ab/c/d/e/f/g/h/i/j", "/ab/c/d/e/f/g/h/", "/b/c", "/abcdefgh",
                           "/abcdefghij?x", "/abcdefgh1", "/zz", "/q", "/q46/x", "/q104/", "/q129/y"};
  std::set<uint32_t> seen;
  for (const char* h : req_hosts) {
    for (const char* t : targets) {
      const uint32_t want = scan(h, t);
      seen.insert(want);
      EXPECT_EQ(match_route(*r, h, t, 1000), want) << h << " " << t;
    }
  }
  // And a request made to match each route (which an earlier one may take).
  for (const RouteConfig& route : routes) {
    const std::string host = route.host.starts_with("*.") ? "Z" + route.host.substr(1) : route.host;
    const std::string target = route.path_prefix + "x";
    const uint32_t want = scan(host, target);
    seen.insert(want);
    EXPECT_EQ(match_route(*r, host, target, 1000), want) << host << " " << target;
  }
  // The requests reach routes in every word of the sets, and some match none.
  EXPECT_TRUE(seen.count(1000)) << ::testing::PrintToString(seen);
  EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [](uint32_t p) { return p > 64 && p <= 128; })) << ::testing::PrintToString(seen);
  EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [](uint32_t p) { return p > 128 && p < 1000; }));
}

TEST(PoolRouting, DefaultIsUndeclaredWithPoolsAndNoTopLevelNodes) {
  std::string error;
  const auto r = build_routing(config_of("[[pool]]\nname = \"p\"\nbackends = [ { name = \"x\", address = \"127.0.0.1:9201\" } ]\n"
                                         "[[route]]\nhost = \"p.test\"\npool = \"p\"\n"),
                               nullptr, 1, 1, &error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_FALSE(r->default_pool().declared);
  const Pool* p = r->find_pool("p");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->declared);
}

// The file decides: removing the last top-level node over the admin API (or by gossip)
// leaves "default" a pool that answers 503 while empty, not one that answers 404.
// Every listener's client_subject_header, once each whatever its case: a client's copy
// is dropped on every listener (proxy/rewrite.h).
TEST(PoolRouting, EveryListenersSubjectHeaderIsKnown) {
  std::string error;
  Config c = *config_of(kTiers);
  c.proxy.tls.client_subject_header = "X-Client-Subject";
  ListenerConfig a, b;
  a.listen = Address{"127.0.0.1", 9443, false};
  a.tls.client_subject_header = "x-client-subject";
  b.listen = Address{"127.0.0.1", 9444, false};
  b.tls.client_subject_header = "X-Mtls-DN";
  c.listeners = {a, b};
  const auto r = build_routing(std::make_shared<const Config>(c), nullptr, 1, 1, &error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_EQ(r->subject_headers, (std::vector<std::string>{"X-Client-Subject", "X-Mtls-DN"}));
}

TEST(PoolRouting, DefaultStaysDeclaredWhenItsNodesAreRemovedAtRuntime) {
  std::string error;
  Config c = *config_of(kTiers);
  c.backends.clear();
  const auto r = build_routing(std::make_shared<const Config>(c), nullptr, 1, 1, &error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_TRUE(r->default_pool().declared);
  EXPECT_TRUE(r->default_pool().backends.empty());
}

TEST(PoolRouting, FoundNodesJoinTheirSourcesPool) {
  std::string error;
  FoundNode f;
  f.backend = {"10.0.0.9:80", Address{"10.0.0.9", 80, false}, 1, false, ""};
  f.source = "_http._tcp.img.test";
  f.pool = "images";
  const auto r = build_routing(config_of(kTiers), {f}, {}, nullptr, 1, 1, &error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_TRUE(r->find_pool("images")->ring->find("10.0.0.9:80"));
  EXPECT_FALSE(r->default_pool().ring->find("10.0.0.9:80"));
}

// The parts of a pool_key, as backends.cc joins them.
std::string nul_joined(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (const std::string_view part : parts) {
    if (!out.empty()) out += '\0';
    out += part;
  }
  return out;
}

TEST(PoolRouting, TheProtocolReachesTheNodeAndItsConnectionPoolKey) {
  // A node's connections are one worker pool per pool_key: a node whose protocol changes
  // must not be sent requests on connections opened for the other protocol. An http1
  // node's key is what it was before protocols (name NUL address [NUL "tls" NUL name]),
  // so a reload to this version reuses every open connection.
  const std::string head = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n"
                           "[[backend]]\nname = \"t\"\naddress = \"127.0.0.1:9002\"\ntls = true\n";
  const auto node = [](const Routing& r, std::string_view name) -> const Backend& {
    return r.default_pool().backends[*r.default_pool().ring->find(name)];
  };
  std::string error;
  const auto http1 = build_routing(config_of(head), nullptr, 1, 1, &error);
  ASSERT_NE(http1, nullptr) << error;
  EXPECT_EQ(node(*http1, "a").protocol, BackendProtocol::kHttp1);
  EXPECT_EQ(node(*http1, "a").pool_key, nul_joined({"a", "127.0.0.1:9001"}));
  EXPECT_EQ(node(*http1, "t").pool_key, nul_joined({"t", "127.0.0.1:9002", "tls", "127.0.0.1"}));

  const auto h2 = build_routing(
      config_of("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\nprotocol = \"h2c\"\n"
                "[[backend]]\nname = \"t\"\naddress = \"127.0.0.1:9002\"\ntls = true\nprotocol = \"h2\"\n"),
      http1.get(), 2, 1, &error);
  ASSERT_NE(h2, nullptr) << error;
  EXPECT_EQ(node(*h2, "a").protocol, BackendProtocol::kH2c);
  EXPECT_EQ(node(*h2, "t").protocol, BackendProtocol::kH2);
  EXPECT_EQ(node(*h2, "a").pool_key, nul_joined({"a", "127.0.0.1:9001", "h2c"}));
  EXPECT_EQ(node(*h2, "t").pool_key, nul_joined({"t", "127.0.0.1:9002", "tls", "127.0.0.1", "h2"}));
  // The same node otherwise: its ring points, health and counters go on.
  EXPECT_EQ(node(*h2, "a").state, node(*http1, "a").state);
  EXPECT_EQ(h2->default_pool().ring->fingerprint(), http1->default_pool().ring->fingerprint());
  // And back: the http1 key again.
  const auto back = build_routing(config_of(head), h2.get(), 3, 1, &error);
  ASSERT_NE(back, nullptr) << error;
  EXPECT_EQ(node(*back, "a").pool_key, node(*http1, "a").pool_key);
  EXPECT_EQ(node(*back, "t").pool_key, node(*http1, "t").pool_key);
}

}  // namespace
}  // namespace ringproxy
