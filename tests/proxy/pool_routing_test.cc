// Several tiers in the routing (proxy/backends.h, SPEC "Several tiers"): each pool gets its
// own ring from its own nodes and settings, node states follow a node within its pool,
// and match_route picks the pool of a request from its Host and target.
#include <gtest/gtest.h>

#include <memory>
#include <string>

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

TEST(PoolRouting, DefaultIsUndeclaredWithPoolsAndNoTopLevelNodes) {
  std::string error;
  const auto r = build_routing(config_of("[[pool]]\nname = \"p\"\nbackends = [ { name = \"x\", address = \"127.0.0.1:9201\" } ]\n"
                                         "[[route]]\nhost = \"p.test\"\npool = \"p\"\n"),
                               nullptr, 1, 1, &error);
  ASSERT_NE(r, nullptr) << error;
  EXPECT_FALSE(r->default_pool().declared);
  EXPECT_TRUE(r->find_pool("p")->declared);
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

}  // namespace
}  // namespace ringproxy
