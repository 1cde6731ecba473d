// [[pool]], [[route]] and [[listener]] (SPEC "Several tiers", issue 15): read with
// fallbacks to the top level, checked together, errors and warnings at their keys.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace ringproxy {
namespace {

using Lines = std::vector<std::string>;

constexpr std::string_view kTwoTiers = R"(
[proxy]
listen = "127.0.0.1:8080"
hash_key = "uri"
[ring]
vnodes = 100
[health]
path = "/health"
interval_ms = 2000
timeout_ms = 700
[[backend]]
name = "page-a"
address = "127.0.0.1:9001"

[[pool]]
name = "images"
hash_key = "path"
ring = { vnodes = 40 }
health = { path = "/ping" }
backends = [ { name = "img-a", address = "127.0.0.1:9101" },
             { name = "page-a", address = "127.0.0.1:9001", weight = 2 } ]

[[pool]]
name = "api_v2"
discover = [ { name = "_http._tcp.api.test", type = "srv" } ]
[pool.health]
interval_ms = 800

[[route]]
host = "IMG.example.com"
path_prefix = "/img/"
pool = "images"
[[route]]
host = "*.api.example.com"
pool = "api_v2"
[[route]]
path_prefix = "/static/"
pool = "default"

[[listener]]
listen = "127.0.0.1:8081"
pool = "images"
[[listener]]
listen = "[::1]:8082"
)";

ConfigResult load(std::string_view text) { return load_config_string(text, "t.toml"); }

Lines lines(const std::vector<ConfigError>& v) {
  Lines out;
  for (const ConfigError& e : v) out.push_back(e.to_string());
  return out;
}

Lines errors_of(std::string_view text) { return lines(load(text).errors); }
Lines warnings_of(std::string_view text) { return lines(load(text).warnings); }

TEST(Pools, ReadWithTheTopLevelAsDefaults) {
  const ConfigResult r = load(kTwoTiers);
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  EXPECT_TRUE(r.warnings.empty()) << r.warnings.front().to_string();
  ASSERT_EQ(r.config.pools.size(), 2u);
  const PoolConfig& images = r.config.pools[0];
  EXPECT_EQ(images.name, "images");
  EXPECT_EQ(images.hash_key.kind, HashKeyKind::kPath);
  EXPECT_EQ(images.ring.vnodes, 40u);
  EXPECT_EQ(images.health.path, "/ping");
  EXPECT_EQ(images.health.interval_ms, 2000u);  // the top level's
  EXPECT_EQ(images.health.timeout_ms, 700u);
  ASSERT_EQ(images.backends.size(), 2u);
  EXPECT_EQ(images.backends[1].name, "page-a");  // a name and an address another pool has too
  EXPECT_EQ(images.backends[1].weight, 2u);
  const PoolConfig& api = r.config.pools[1];
  EXPECT_EQ(api.hash_key.kind, HashKeyKind::kUri);
  EXPECT_EQ(api.ring.vnodes, 100u);
  EXPECT_EQ(api.health.interval_ms, 800u);
  EXPECT_EQ(api.health.timeout_ms, 700u);  // written at the top level: it stands
  ASSERT_EQ(api.discover.size(), 1u);
  EXPECT_EQ(api.discover[0].name, "_http._tcp.api.test");
  ASSERT_EQ(r.config.routes.size(), 3u);
  EXPECT_EQ(r.config.routes[0].host, "img.example.com");
  EXPECT_EQ(r.config.routes[0].path_prefix, "/img/");
  EXPECT_EQ(r.config.routes[1].host, "*.api.example.com");
  EXPECT_EQ(r.config.routes[2].host, "");
  EXPECT_EQ(r.config.routes[2].pool, "default");
  ASSERT_EQ(r.config.listeners.size(), 2u);
  EXPECT_EQ(r.config.listeners[0].pool, "images");
  EXPECT_EQ(r.config.listeners[1].pool, "default");
  EXPECT_EQ(r.config.listeners[1].listen.to_string(), "[::1]:8082");
  EXPECT_FALSE(r.config.listeners[0].tls.enabled);
}

TEST(Pools, APoolsHealthTimeoutFollowsItsIntervalWhenNoneIsWritten) {
  const ConfigResult r = load(R"(
[[backend]]
name = "a"
address = "127.0.0.1:9001"
[[pool]]
name = "fast"
health = { interval_ms = 200 }
backends = [ { name = "b", address = "127.0.0.1:9002" } ]
[[route]]
pool = "fast"
)");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  EXPECT_EQ(r.config.pools[0].health.timeout_ms, 200u);  // the smaller of 500 and the interval
  EXPECT_EQ(r.config.health.timeout_ms, 500u);
}

TEST(Pools, ErrorsAtTheirKeys) {
  const std::string base = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"default\"\n[[route]]\npool = \"default\"\n"),
            (Lines{"t.toml:5:8: pool[0].name: \"default\" is the top level's pool ([[backend]], [[discover]], "
                   "[ring], [health])"}));
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"img/s\"\n"),
            (Lines{"t.toml:5:8: pool[0].name: invalid pool name \"img/s\": letters, digits, - and _"}));
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"x\"\n[[pool]]\nname = \"x\"\n[[route]]\npool = \"x\"\n"),
            (Lines{"t.toml:7:8: pool[1].name: duplicate pool name \"x\" (first at pool[0])"}));
  EXPECT_EQ(errors_of(base + "[[pool]]\nbackends = []\n"),
            (Lines{"t.toml:4:1: pool[0].name: missing (every pool needs a name)"}));
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"x\"\nvnodes = 3\n"),
            (Lines{"t.toml:6:1: pool[0].vnodes: unknown key"}));
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"x\"\nring = { vnode = 3 }\n"),
            (Lines{"t.toml:6:10: pool[0].ring.vnode: unknown key (did you mean 'vnodes'?)"}));
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"x\"\nbackends = [ { name = \"b\", address = \"127.0.0.1:1\" }, "
                             "{ name = \"b\", address = \"127.0.0.1:2\" } ]\n[[route]]\npool = \"x\"\n"),
            (Lines{"t.toml:6:64: pool[0].backends[1].name: duplicate backend name \"b\" in this pool (first at "
                   "pool[0].backends[0])"}));
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"x\"\nbackends = [ { address = \"127.0.0.1:1\" } ]\n"),
            (Lines{"t.toml:6:14: pool[0].backends[0].name: missing (every backend needs a unique name)"}));
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"x\"\nhealth = { interval_ms = 100, timeout_ms = 300 }\n"),
            (Lines{"t.toml:6:44: pool[0].health.timeout_ms: must be at most the pool's health.interval_ms (100), "
                   "got 300"}));
  EXPECT_EQ(errors_of("[health]\ntimeout_ms = 700\n" + base + "[[pool]]\nname = \"x\"\nhealth = { interval_ms = 300 }\n"),
            (Lines{"t.toml:8:10: pool[0].health.timeout_ms: must be at most the pool's health.interval_ms (300), "
                   "got 700 (from [health]; give the pool its own health.timeout_ms)"}));
}

TEST(Routes, ErrorsAtTheirKeys) {
  const std::string base = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  EXPECT_EQ(errors_of(base + "[[route]]\nhost = \"x.test\"\npool = \"images\"\n"),
            (Lines{"t.toml:6:8: route[0].pool: no pool named \"images\" (\"default\" or a [[pool]]'s name)"}));
  EXPECT_EQ(errors_of(base + "[[route]]\nhost = \"x.test\"\n"),
            (Lines{"t.toml:4:1: route[0].pool: missing (the pool its requests go to)"}));
  EXPECT_EQ(errors_of(base + "[[route]]\nhost = \"a b\"\npool = \"default\"\n"),
            (Lines{"t.toml:5:8: route[0].host: invalid host \"a b\": a DNS name, \"*.\" and a DNS name, or \"\" "
                   "for any"}));
  EXPECT_EQ(errors_of(base + "[[route]]\npath_prefix = \"img/\"\npool = \"default\"\n"),
            (Lines{"t.toml:5:15: route[0].path_prefix: invalid path_prefix \"img/\": \"\" for any, or a path "
                   "starting with '/' (no spaces)"}));
}

TEST(Routes, ARouteAnEarlierOneCoversIsAWarning) {
  const std::string base = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  EXPECT_EQ(warnings_of(base + "[[route]]\npath_prefix = \"/img/\"\npool = \"default\"\n"
                               "[[route]]\npath_prefix = \"/img/big/\"\npool = \"default\"\n"),
            (Lines{"t.toml:7:1: route[1]: never matches: route[0] comes first and matches every request this "
                   "one does"}));
  EXPECT_EQ(warnings_of(base + "[[route]]\nhost = \"*.example.com\"\npool = \"default\"\n"
                               "[[route]]\nhost = \"img.example.com\"\npath_prefix = \"/x\"\npool = \"default\"\n"
                               "[[route]]\nhost = \"*.a.example.com\"\npool = \"default\"\n"),
            (Lines{"t.toml:7:1: route[1]: never matches: route[0] comes first and matches every request this "
                   "one does",
                   "t.toml:11:1: route[2]: never matches: route[0] comes first and matches every request this "
                   "one does"}));
  // Not covered: another host, a shorter prefix, the wildcard's own apex.
  EXPECT_EQ(warnings_of(base + "[[route]]\nhost = \"*.example.com\"\npath_prefix = \"/img/\"\npool = \"default\"\n"
                               "[[route]]\nhost = \"example.com\"\npool = \"default\"\n"
                               "[[route]]\nhost = \"x.example.com\"\npath_prefix = \"/\"\npool = \"default\"\n"),
            Lines{});
}

TEST(Pools, APoolNoRequestReachesAndAnEmptyPoolAreWarnings) {
  const std::string base = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  EXPECT_EQ(warnings_of(base + "[[pool]]\nname = \"lonely\"\nbackends = [ { name = \"b\", address = "
                               "\"127.0.0.1:9002\" } ]\n"),
            (Lines{"t.toml:4:1: pool[0]: no [[route]] or [[listener]] names pool \"lonely\": no request reaches "
                   "it"}));
  EXPECT_EQ(warnings_of(base + "[[pool]]\nname = \"empty\"\n[[route]]\npool = \"empty\"\n"),
            (Lines{"t.toml:4:1: pool[0]: pool \"empty\" has no backends and no discover source: its requests "
                   "get 503 until the admin API or gossip adds nodes"}));
}

TEST(Listeners, ErrorsAtTheirKeys) {
  const std::string base = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  EXPECT_EQ(errors_of(base + "[[listener]]\nlisten = \"127.0.0.1:8080\"\n"),
            (Lines{"t.toml:5:10: listener[0].listen: 127.0.0.1:8080 collides with proxy.listen 127.0.0.1:8080"}));
  EXPECT_EQ(errors_of(base + "[[listener]]\nlisten = \"127.0.0.1:9090\"\n"),
            (Lines{"t.toml:5:10: listener[0].listen: 127.0.0.1:9090 collides with admin.listen 127.0.0.1:9090"}));
  EXPECT_EQ(errors_of(base + "[[listener]]\nlisten = \"127.0.0.1:8443\"\n[[listener]]\nlisten = \"0.0.0.0:8443\"\n"),
            (Lines{"t.toml:7:10: listener[1].listen: 0.0.0.0:8443 collides with listener[0] 127.0.0.1:8443"}));
  EXPECT_EQ(errors_of(base + "[[listener]]\npool = \"x\"\n"),
            (Lines{"t.toml:4:1: listener[0].listen: missing (the address to listen on, as \"127.0.0.1:8443\")",
                   "t.toml:5:8: listener[0].pool: no pool named \"x\" (\"\" or \"default\", or a [[pool]]'s name)"}));
  EXPECT_EQ(errors_of(base + "[[listener]]\nlisten = \"127.0.0.1:8443\"\ntls = { min_version = \"TLSv1.3\" }\n"),
            (Lines{"t.toml:6:7: listener[0].tls.certificates: missing (a TLS listener needs a certificate: "
                   "certificates = [{ cert = \"...\", key = \"...\" }])"}));
}

TEST(Pools, ASourceNameIsInOnePool) {
  // /discovery, the resolver and gossip know a source by its name.
  const std::string base = "[[discover]]\nname = \"_http._tcp.a.test\"\ntype = \"srv\"\n";
  EXPECT_EQ(errors_of(base + "[[pool]]\nname = \"p\"\ndiscover = [ { name = \"_http._tcp.a.test\", type = \"srv\" } ]\n"),
            (Lines{"t.toml:6:23: pool[0].discover[0].name: \"_http._tcp.a.test\" is already discover[0]: one source "
                   "per name, in one pool"}));
  EXPECT_EQ(errors_of("[[pool]]\nname = \"p\"\ndiscover = [ { name = \"b.test\", type = \"a\", port = 80 } ]\n"
                      "[[pool]]\nname = \"q\"\ndiscover = [ { name = \"b.test\", type = \"a\", port = 81 } ]\n"),
            (Lines{"t.toml:6:23: pool[1].discover[0].name: \"b.test\" is already pool[0].discover[0]: one source per "
                   "name, in one pool"}));
}

TEST(Pools, DefaultPoolAndItsHelpers) {
  const ConfigResult r = load(kTwoTiers);
  ASSERT_TRUE(r.ok());
  const PoolConfig d = default_pool_config(r.config);
  EXPECT_EQ(d.name, "default");
  EXPECT_EQ(d.ring.vnodes, 100u);
  EXPECT_EQ(d.backends, r.config.backends);
  EXPECT_TRUE(default_pool_declared(r.config));
  Config c = r.config;
  EXPECT_EQ(pool_backends(c, "default"), &c.backends);
  EXPECT_EQ(pool_backends(c, "images"), &c.pools[0].backends);
  EXPECT_EQ(pool_backends(c, "nope"), nullptr);
  EXPECT_EQ(source_pool(c, "_http._tcp.api.test"), "api_v2");
  EXPECT_EQ(source_pool(c, "nope"), "");
  EXPECT_EQ(all_sources(c).size(), 1u);
  c.backends.clear();
  EXPECT_FALSE(default_pool_declared(c));  // pools and no top-level node: unrouted requests get 404
  c.pools.clear();
  EXPECT_TRUE(default_pool_declared(c));   // no pools: "default" as always (503 while empty)
}

}  // namespace
}  // namespace ringproxy
