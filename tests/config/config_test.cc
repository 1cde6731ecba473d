#include "config/config.h"

#include <gtest/gtest.h>

#include <regex>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ringproxy {
namespace {

// Appended after the text under test, so the positions of errors in that text are the
// lines as written in each test.
constexpr std::string_view kOneBackend = R"(
[[backend]]
name = "a"
address = "127.0.0.1:9001"
)";

// Every error of loading `text` as "t.toml", as printed.
std::vector<std::string> errors_of(std::string_view text) {
  std::vector<std::string> out;
  for (const ConfigError& error : load_config_string(text, "t.toml").errors) {
    out.push_back(error.to_string());
  }
  return out;
}

std::vector<std::string> errors_with_backend(std::string_view text) {
  return errors_of(std::string(text) + std::string(kOneBackend));
}

using Errors = std::vector<std::string>;

// A backend as the keys name, address and weight alone give it (no TLS).
BackendConfig plain_backend(std::string name, Address address, uint32_t weight) {
  BackendConfig b;
  b.name = std::move(name);
  b.address = std::move(address);
  b.weight = weight;
  return b;
}

// ---------------------------------------------------------------------------------
// Valid files

TEST(Config, OneBackendGivesEveryDefaultOfSpec) {
  const ConfigResult result = load_config_string(kOneBackend, "t.toml");
  ASSERT_TRUE(result.ok()) << result.errors[0].to_string();
  const Config& c = result.config;
  EXPECT_EQ(c.path, "t.toml");

  EXPECT_EQ(c.proxy.listen, (Address{"127.0.0.1", 8080, false}));
  EXPECT_EQ(c.proxy.workers, 0u);
  EXPECT_EQ(c.proxy.hash_key, (HashKey{HashKeyKind::kUri, ""}));
  EXPECT_EQ(c.proxy.retries, 1u);
  EXPECT_EQ(c.proxy.connect_timeout_ms, 1000u);
  EXPECT_EQ(c.proxy.header_timeout_ms, 10000u);
  EXPECT_EQ(c.proxy.idle_timeout_ms, 60000u);
  EXPECT_EQ(c.proxy.upstream_timeout_ms, 30000u);
  EXPECT_EQ(c.proxy.max_header_bytes, 16384u);
  EXPECT_EQ(c.proxy.max_connections, 10000u);
  EXPECT_EQ(c.proxy.shutdown_timeout_ms, 10000u);
  EXPECT_EQ(c.proxy.access_log, "");
  EXPECT_EQ(c.proxy.log_level, LogLevel::kInfo);

  EXPECT_EQ(c.ring.vnodes, 160u);
  EXPECT_EQ(c.ring.load_factor, 0.0);

  EXPECT_EQ(c.health.path, "/health");
  EXPECT_EQ(c.health.interval_ms, 1000u);
  EXPECT_EQ(c.health.timeout_ms, 500u);
  EXPECT_EQ(c.health.rise, 2u);
  EXPECT_EQ(c.health.fall, 3u);
  EXPECT_EQ(c.health.eject_after_failures, 5u);
  EXPECT_EQ(c.health.eject_base_ms, 30000u);
  EXPECT_EQ(c.health.max_ejected_percent, 50u);
  EXPECT_EQ(c.health.slow_start_ms, 0u);

  EXPECT_TRUE(c.admin.enabled);
  EXPECT_EQ(c.admin.listen, (Address{"127.0.0.1", 9090, false}));
  EXPECT_EQ(c.admin.token, "");

  EXPECT_FALSE(c.gossip.enabled);
  EXPECT_EQ(c.gossip.name, "");
  EXPECT_TRUE(c.gossip.seeds.empty());
  EXPECT_EQ(c.gossip.interval_ms, 200u);
  EXPECT_EQ(c.gossip.secret, "");

  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0], (plain_backend("a", Address{"127.0.0.1", 9001, false}, 1)));

  // The struct defaults and the file defaults are one and the same.
  Config expected;
  expected.path = "t.toml";
  expected.backends = c.backends;
  EXPECT_EQ(c, expected);
}

TEST(Config, EveryKeySet) {
  const ConfigResult result = load_config_string(R"(
[proxy]
listen = "[::]:8443"
workers = 8
hash_key = "header:X-User-Id"
retries = 3
connect_timeout_ms = 250
header_timeout_ms = 5000
idle_timeout_ms = 30000
upstream_timeout_ms = 15000
max_header_bytes = 32768
max_connections = 50000
shutdown_timeout_ms = 0
access_log = "/var/log/ringproxy/access.log"
log_level = "debug"

[ring]
vnodes = 100
load_factor = 1.25

[health]
path = "/ping?deep=1"
interval_ms = 2000
timeout_ms = 2000
rise = 1
fall = 5
eject_after_failures = 0
eject_base_ms = 1000
max_ejected_percent = 100
slow_start_ms = 60000

[admin]
listen = "[::1]:9191"
token = "s3cret token"

[gossip]
bind = "10.0.0.1:7946"
name = "edge-1"
seeds = ["10.0.0.2:7946", "[fd00::3]:7946", "localhost:7947"]
interval_ms = 500
secret = "0123456789abcdef"

[[backend]]
name = "cache-a"
address = "10.0.1.1:9001"
weight = 2

[[backend]]
name = "cache-b"
address = "[fd00::b]:9001"
weight = 0
)",
                                                 "full.toml");
  ASSERT_TRUE(result.ok()) << result.errors[0].to_string();
  const Config& c = result.config;
  EXPECT_EQ(c.path, "full.toml");

  EXPECT_EQ(c.proxy.listen, (Address{"::", 8443, true}));
  EXPECT_EQ(c.proxy.workers, 8u);
  EXPECT_EQ(c.proxy.hash_key, (HashKey{HashKeyKind::kHeader, "X-User-Id"}));
  EXPECT_EQ(c.proxy.retries, 3u);
  EXPECT_EQ(c.proxy.connect_timeout_ms, 250u);
  EXPECT_EQ(c.proxy.header_timeout_ms, 5000u);
  EXPECT_EQ(c.proxy.idle_timeout_ms, 30000u);
  EXPECT_EQ(c.proxy.upstream_timeout_ms, 15000u);
  EXPECT_EQ(c.proxy.max_header_bytes, 32768u);
  EXPECT_EQ(c.proxy.max_connections, 50000u);
  EXPECT_EQ(c.proxy.shutdown_timeout_ms, 0u);
  EXPECT_EQ(c.proxy.access_log, "/var/log/ringproxy/access.log");
  EXPECT_EQ(c.proxy.log_level, LogLevel::kDebug);

  EXPECT_EQ(c.ring.vnodes, 100u);
  EXPECT_EQ(c.ring.load_factor, 1.25);

  EXPECT_EQ(c.health.path, "/ping?deep=1");
  EXPECT_EQ(c.health.interval_ms, 2000u);
  EXPECT_EQ(c.health.timeout_ms, 2000u);
  EXPECT_EQ(c.health.rise, 1u);
  EXPECT_EQ(c.health.fall, 5u);
  EXPECT_EQ(c.health.eject_after_failures, 0u);
  EXPECT_EQ(c.health.eject_base_ms, 1000u);
  EXPECT_EQ(c.health.max_ejected_percent, 100u);
  EXPECT_EQ(c.health.slow_start_ms, 60000u);

  EXPECT_TRUE(c.admin.enabled);
  EXPECT_EQ(c.admin.listen, (Address{"::1", 9191, true}));
  EXPECT_EQ(c.admin.token, "s3cret token");

  EXPECT_TRUE(c.gossip.enabled);
  EXPECT_EQ(c.gossip.bind, (Address{"10.0.0.1", 7946, false}));
  EXPECT_EQ(c.gossip.name, "edge-1");
  EXPECT_EQ(c.gossip.seeds, (std::vector<Address>{{"10.0.0.2", 7946, false},
                                                  {"fd00::3", 7946, true},
                                                  {"127.0.0.1", 7947, false}}));
  EXPECT_EQ(c.gossip.interval_ms, 500u);
  EXPECT_EQ(c.gossip.secret, "0123456789abcdef");

  ASSERT_EQ(c.backends.size(), 2u);
  EXPECT_EQ(c.backends[0], (plain_backend("cache-a", Address{"10.0.1.1", 9001, false}, 2)));
  EXPECT_EQ(c.backends[1], (plain_backend("cache-b", Address{"fd00::b", 9001, true}, 0)));
}

// The TOML block of SPEC.md "Config file", verbatim.
constexpr std::string_view kSpecExample = R"(
[proxy]
listen = "127.0.0.1:8080"     # host:port; IPv6 as "[::1]:8080"
workers = 0                   # event-loop threads; 0 = one per CPU core
hash_key = "uri"              # uri | path | header:NAME | cookie:NAME | query:NAME | client_ip
retries = 1                   # further attempts, each on the next distinct node; idempotent requests only
connect_timeout_ms = 1000
header_timeout_ms = 10000     # a client must send its whole request head in this time
idle_timeout_ms = 60000       # keep-alive idle, both sides
upstream_timeout_ms = 30000   # from request sent to first response byte
max_header_bytes = 16384
max_connections = 10000
shutdown_timeout_ms = 10000
access_log = ""               # "" off, "-" stdout, or a path
log_level = "info"            # error | warn | info | debug

[ring]
vnodes = 160                  # ring points per unit of weight
load_factor = 0.0             # bounded loads: 0 off; c > 1 = no node above c x mean in-flight

[health]
path = "/health"              # active check: GET path on each backend
interval_ms = 1000
timeout_ms = 500               # default: the smaller of 500 and interval_ms
rise = 2                      # consecutive passes to mark up
fall = 3                      # consecutive failures to mark down
eject_after_failures = 5      # passive: consecutive failed proxied requests eject a node
eject_base_ms = 30000         # first ejection time; doubles on each repeat
max_ejected_percent = 50      # never eject more than this share of nodes
slow_start_ms = 0             # ramp a returning node's share over this time

[admin]
listen = "127.0.0.1:9090"     # "" disables the admin endpoint
token = ""                    # when set, every mutating endpoint needs "Authorization: Bearer TOKEN"

[gossip]
bind = ""                     # "" disables gossip; else "host:port" (UDP)
name = ""                     # this instance's unique name; default: the bind address
seeds = []                    # ["host:port", ...] of instances to join; may list this one too
interval_ms = 200
secret = ""                   # shared key; when set, unauthenticated messages are dropped

[[backend]]
name = "cache-a"              # unique and stable: ring positions derive from it
address = "127.0.0.1:9001"
weight = 1                    # integer >= 0; 0 = takes no keys (drained)
)";

TEST(Config, SpecExampleLoadsAsTheDefaults) {
  const ConfigResult result = load_config_string(kSpecExample, "spec.toml");
  ASSERT_TRUE(result.ok()) << result.errors[0].to_string();
  Config expected;
  expected.path = "spec.toml";
  expected.backends = {plain_backend("cache-a", Address{"127.0.0.1", 9001, false}, 1)};
  EXPECT_EQ(result.config, expected);
}

TEST(Config, EmptyAndCommentOnlyFilesNeedABackend) {
  const Errors expected = {
      "t.toml:1:1: no backends: add a [[backend]] table, a [[discover]] source, or a [gossip] "
      "section with seeds to learn them from peers"};
  EXPECT_EQ(errors_of(""), expected);
  EXPECT_EQ(errors_of("# nothing here\n\n[proxy]\n"), expected);
  EXPECT_EQ(errors_of("backend = []\n"), expected);
}

TEST(Config, GossipWithSeedsNeedsNoBackend) {
  const ConfigResult result = load_config_string(R"(
[gossip]
bind = "[fd00::1]:7946"
seeds = ["[fd00::2]:7946"]
)",
                                                 "t.toml");
  ASSERT_TRUE(result.ok()) << result.errors[0].to_string();
  EXPECT_TRUE(result.config.backends.empty());
  EXPECT_TRUE(result.config.gossip.enabled);
  // The default name is the bind address as printed, brackets included.
  EXPECT_EQ(result.config.gossip.name, "[fd00::1]:7946");
}

TEST(Config, GossipWithoutSeedsStillNeedsABackend) {
  EXPECT_EQ(errors_of("[gossip]\nbind = \"10.0.0.1:7946\"\n"),
            (Errors{"t.toml:1:1: no backends: add a [[backend]] table, a [[discover]] source, or a "
                    "[gossip] section with seeds to learn them from peers"}));
}

TEST(Config, SeedsWithoutBindAreAnError) {
  EXPECT_EQ(errors_of("[gossip]\nseeds = [\"10.0.0.2:7946\"]\n"),
            (Errors{"t.toml:2:9: gossip.seeds: gossip is off (gossip.bind is \"\"): set "
                    "gossip.bind to use seeds"}));
}

// proxy.via: the Via pseudonym (RFC 9110 7.6.3); "" sends none; unset, the gossip name
// (made a token) when gossip is on, else "ringproxy".
TEST(Config, ViaNameDefaultsAndChecks) {
  const auto via_of = [](const std::string& text) {
    const ConfigResult r = load_config_string(text + std::string(kOneBackend), "t");
    EXPECT_TRUE(r.ok()) << text;
    return r.config.proxy.via;
  };
  EXPECT_EQ(via_of(""), "ringproxy");
  EXPECT_EQ(via_of("[proxy]\nvia = \"edge-1:8080\"\n"), "edge-1:8080");
  EXPECT_EQ(via_of("[proxy]\nvia = \"\"\n"), "");
  EXPECT_EQ(via_of("[gossip]\nbind = \"127.0.0.1:7946\"\nname = \"pa\"\n"), "pa");
  EXPECT_EQ(via_of("[gossip]\nbind = \"[::1]:7946\"\n"), "---1--7946");
  EXPECT_EQ(errors_of("[proxy]\nvia = \"a b\"\n" + std::string(kOneBackend)),
            (Errors{"t.toml:2:7: proxy.via: must be a token (letters, digits and !#$%&'*+-.^_`|~), optionally "
                    "with :PORT, or \"\" to send no Via; got \"a b\""}));
}

// SPEC "HTTP/2 and gRPC": proxy.alpn, proxy.h2c and [http2], with their defaults.
TEST(Config, Http2KeysDefaultsAndChecks) {
  const ConfigResult defaults = load_config_string(std::string(kOneBackend), "t");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults.config.proxy.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_TRUE(defaults.config.proxy.h2c);
  EXPECT_EQ(defaults.config.http2, Http2Config{});
  EXPECT_EQ(defaults.config.http2.max_concurrent_streams, 128u);
  EXPECT_EQ(defaults.config.http2.initial_window_bytes, 65535u);
  EXPECT_EQ(defaults.config.http2.upstream_connections, 2u);

  const ConfigResult set = load_config_string(R"([proxy]
alpn = ["http/1.1", "h2"]
h2c = false
[http2]
max_concurrent_streams = 16
initial_window_bytes = 1048576
max_header_list_bytes = 8192
idle_timeout_ms = 5000
upstream_connections = 8
)" + std::string(kOneBackend),
                                              "t");
  ASSERT_TRUE(set.ok()) << set.errors[0].to_string();
  EXPECT_EQ(set.config.proxy.alpn, (std::vector<std::string>{"http/1.1", "h2"}));
  EXPECT_FALSE(set.config.proxy.h2c);
  EXPECT_EQ(set.config.http2.max_concurrent_streams, 16u);
  EXPECT_EQ(set.config.http2.initial_window_bytes, 1048576u);
  EXPECT_EQ(set.config.http2.max_header_list_bytes, 8192u);
  EXPECT_EQ(set.config.http2.idle_timeout_ms, 5000u);
  EXPECT_EQ(set.config.http2.upstream_connections, 8u);

  EXPECT_EQ(errors_with_backend("[proxy]\nalpn = [\"h3\", \"h2\", \"h2\"]\n"),
            (Errors{"t.toml:2:9: proxy.alpn[0]: must be \"h2\" or \"http/1.1\", got \"h3\"",
                    "t.toml:2:21: proxy.alpn[2]: names \"h2\" twice"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nalpn = []\n"), (Errors{"t.toml:2:8: proxy.alpn: must name at least one protocol"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nh2c = \"yes\"\n").size(), 1u);
  EXPECT_EQ(errors_with_backend("[http2]\nmax_concurrent_streams = 0\ninitial_window_bytes = 100\n").size(), 2u);
  EXPECT_EQ(errors_with_backend("[http2]\nmax_streams = 4\n").size(), 1u);
  // Per node, per worker: at least one, and a stray digit caught.
  EXPECT_EQ(errors_with_backend("[http2]\nupstream_connections = 0\n"),
            (Errors{"t.toml:2:24: http2.upstream_connections: must be between 1 and 1024, got 0"}));
  EXPECT_EQ(errors_with_backend("[http2]\nidle_timeout_ms = 100\nupstream_connections = 2000\n"),
            (Errors{"t.toml:3:24: http2.upstream_connections: must be between 1 and 1024, got 2000"}));
  EXPECT_EQ(errors_with_backend("[http2]\nupstream_connections = \"2\"\n").size(), 1u);
  EXPECT_EQ(errors_with_backend("[http2]\nupstream_connections = 1\n"), Errors{});
}

TEST(Config, Ipv6Listen) {
  const ConfigResult result =
      load_config_string("[proxy]\nlisten = \"[::1]:8080\"\n" + std::string(kOneBackend), "t");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.config.proxy.listen, (Address{"::1", 8080, true}));
  EXPECT_EQ(result.config.proxy.listen.to_string(), "[::1]:8080");
}

TEST(Config, LocalhostListen) {
  const ConfigResult result =
      load_config_string("[proxy]\nlisten = \"localhost:8080\"\n" + std::string(kOneBackend), "t");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.config.proxy.listen, (Address{"127.0.0.1", 8080, false}));
}

TEST(Config, EmptyAdminListenDisablesAdmin) {
  const ConfigResult result =
      load_config_string("[admin]\nlisten = \"\"\n" + std::string(kOneBackend), "t");
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result.config.admin.enabled);
}

TEST(Config, EmptyGossipBindKeepsGossipOff) {
  const ConfigResult result =
      load_config_string("[gossip]\nbind = \"\"\nname = \"x\"\n" + std::string(kOneBackend), "t");
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result.config.gossip.enabled);
}

TEST(Config, BackendWeightZeroIsAllowed) {
  const ConfigResult result = load_config_string(R"(
[[backend]]
name = "drained"
address = "127.0.0.1:9001"
weight = 0
)",
                                                 "t");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.config.backends[0].weight, 0u);
}

TEST(Config, BackendsAsInlineTablesAreAccepted) {
  const ConfigResult result = load_config_string(
      R"(backend = [{name = "a", address = "127.0.0.1:1"}, {name = "b", address = "127.0.0.1:2"}])",
      "t");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.config.backends.size(), 2u);
}

TEST(Config, LoadFactorTakesIntegersAndFloats) {
  for (const auto& [text, value] : std::vector<std::pair<std::string, double>>{
           {"0", 0.0}, {"0.0", 0.0}, {"2", 2.0}, {"1.0001", 1.0001}, {"100", 100.0}}) {
    const ConfigResult result = load_config_string(
        "[ring]\nload_factor = " + text + "\n" + std::string(kOneBackend), "t");
    ASSERT_TRUE(result.ok()) << text << ": " << result.errors[0].to_string();
    EXPECT_EQ(result.config.ring.load_factor, value) << text;
  }
}

TEST(Config, HashKeyForms) {
  const std::vector<std::pair<std::string, HashKey>> cases = {
      {"uri", {HashKeyKind::kUri, ""}},
      {"path", {HashKeyKind::kPath, ""}},
      {"client_ip", {HashKeyKind::kClientIp, ""}},
      {"header:X-Tenant", {HashKeyKind::kHeader, "X-Tenant"}},
      {"cookie:session_id", {HashKeyKind::kCookie, "session_id"}},
      {"query:user id", {HashKeyKind::kQuery, "user id"}},
  };
  for (const auto& [text, expected] : cases) {
    const ConfigResult result = load_config_string(
        "[proxy]\nhash_key = \"" + text + "\"\n" + std::string(kOneBackend), "t");
    ASSERT_TRUE(result.ok()) << text << ": " << result.errors[0].to_string();
    EXPECT_EQ(result.config.proxy.hash_key, expected) << text;
  }
}

TEST(Config, LogLevels) {
  const std::vector<std::pair<std::string, LogLevel>> cases = {
      {"error", LogLevel::kError}, {"warn", LogLevel::kWarn},
      {"info", LogLevel::kInfo},   {"debug", LogLevel::kDebug}};
  for (const auto& [text, expected] : cases) {
    const ConfigResult result = load_config_string(
        "[proxy]\nlog_level = \"" + text + "\"\n" + std::string(kOneBackend), "t");
    ASSERT_TRUE(result.ok()) << text;
    EXPECT_EQ(result.config.proxy.log_level, expected) << text;
  }
}

// SPEC "Config file": health.timeout_ms, when not written, is the smaller of 500 and
// interval_ms (as HAProxy's check timeout defaults to `inter`).
TEST(Config, HealthTimeoutDefaultsToTheSmallerOf500AndTheInterval) {
  const auto health = [](const std::string& section) {
    const ConfigResult result = load_config_string(section + std::string(kOneBackend), "t.toml");
    EXPECT_TRUE(result.ok()) << section << (result.ok() ? "" : result.errors[0].to_string());
    return result.config.health;
  };
  EXPECT_EQ(health("").timeout_ms, 500u);
  EXPECT_EQ(health("[health]\n").timeout_ms, 500u);
  const std::vector<std::pair<uint32_t, uint32_t>> interval_timeout = {
      {10, 10}, {200, 200}, {499, 499}, {500, 500}, {501, 500}, {1000, 500}, {3600000, 500}};
  for (const auto& [interval, timeout] : interval_timeout) {
    const HealthConfig h = health("[health]\ninterval_ms = " + std::to_string(interval) + "\n");
    EXPECT_EQ(h.interval_ms, interval);
    EXPECT_EQ(h.timeout_ms, timeout) << "interval_ms = " << interval;
  }
  // A written timeout_ms stands, whatever the interval.
  EXPECT_EQ(health("[health]\ninterval_ms = 200\ntimeout_ms = 50\n").timeout_ms, 50u);
  EXPECT_EQ(health("[health]\ninterval_ms = 200\ntimeout_ms = 200\n").timeout_ms, 200u);
  EXPECT_EQ(health("[health]\ninterval_ms = 5000\ntimeout_ms = 2000\n").timeout_ms, 2000u);
  EXPECT_EQ(health("[health]\ntimeout_ms = 800\n").timeout_ms, 800u);
  EXPECT_EQ(health("[health]\ntimeout_ms = 800\n").interval_ms, 1000u);
}

TEST(Config, Placement) {
  EXPECT_EQ(load_config_string(std::string(kOneBackend), "t").config.ring.placement, Placement::kXxh3);
  for (const auto& [text, expected] : {std::pair{"xxh3", Placement::kXxh3}, std::pair{"nginx", Placement::kNginx}}) {
    const ConfigResult result =
        load_config_string("[ring]\nplacement = \"" + std::string(text) + "\"\n" + std::string(kOneBackend), "t");
    ASSERT_TRUE(result.ok()) << text;
    EXPECT_EQ(result.config.ring.placement, expected) << text;
  }
  EXPECT_EQ(errors_with_backend("[ring]\nplacement = \"ketama\"\n"),
            (Errors{"t.toml:2:13: ring.placement: expected xxh3 or nginx, got \"ketama\""}));
  // The ring's size counts nginx's 160 points per unit of weight, not vnodes: 7 x 1000 x
  // 10,000 would be too many points under xxh3 (see tests/regressions/fuzz_config).
  std::string heavy = "[ring]\nplacement = \"nginx\"\nvnodes = 10000\n";
  for (int i = 0; i < 7; ++i) {
    heavy += "[[backend]]\nname = \"b" + std::to_string(i) + "\"\naddress = \"127.0.0.1:" +
             std::to_string(9001 + i) + "\"\nweight = 1000\n";
  }
  EXPECT_EQ(errors_of(heavy), Errors{});
  const std::string as_xxh3 = std::regex_replace(heavy, std::regex("\"nginx\""), "\"xxh3\"");
  ASSERT_EQ(errors_of(as_xxh3).size(), 1u);
}

TEST(Config, LoadConfigFileReadsTheFile) {
  const std::string path = testing::TempDir() + "/ringproxy_config_test.toml";
  {
    std::ofstream out(path);
    out << "[proxy]\nworkers = 3\n" << kOneBackend;
  }
  const ConfigResult result = load_config_file(path);
  std::remove(path.c_str());
  ASSERT_TRUE(result.ok()) << result.errors[0].to_string();
  EXPECT_EQ(result.config.path, path);
  EXPECT_EQ(result.config.proxy.workers, 3u);
}

TEST(Config, LoadConfigFileReportsErrorsWithItsPath) {
  const std::string path = testing::TempDir() + "/ringproxy_config_test_bad.toml";
  {
    std::ofstream out(path);
    out << "[proxy]\nworkers = -1\n" << kOneBackend;
  }
  const ConfigResult result = load_config_file(path);
  std::remove(path.c_str());
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].to_string(),
            path + ":2:11: proxy.workers: must be between 0 and 1024, got -1");
}

// ---------------------------------------------------------------------------------
// Errors, one kind at a time, with the exact text

TEST(ConfigError, ToStringOmitsAnEmptyKey) {
  EXPECT_EQ((ConfigError{"f", 3, 7, "proxy.listen", "bad"}).to_string(), "f:3:7: proxy.listen: bad");
  EXPECT_EQ((ConfigError{"f", 1, 1, "", "bad"}).to_string(), "f:1:1: bad");
}

TEST(ConfigErrors, CannotReadFile) {
  const ConfigResult missing = load_config_file("/nonexistent/ringproxy.toml");
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0].to_string(),
            "/nonexistent/ringproxy.toml:1:1: cannot read file: No such file or directory");
  EXPECT_EQ(missing.errors[0].key, "");

  const std::string dir = testing::TempDir();
  const ConfigResult directory = load_config_file(dir);
  ASSERT_EQ(directory.errors.size(), 1u);
  EXPECT_EQ(directory.errors[0].to_string(), dir + ":1:1: cannot read file: Is a directory");

  // A path that never ends (config/read_file.h caps what is read: 16 MiB).
  const ConfigResult endless = load_config_file("/dev/zero");
  ASSERT_EQ(endless.errors.size(), 1u);
  EXPECT_EQ(endless.errors[0].to_string(), "/dev/zero:1:1: cannot read file: File too large");
}

TEST(ConfigErrors, TomlSyntax) {
  EXPECT_EQ(errors_of("[proxy]\nworkers = \n"),
            (Errors{"t.toml:2:11: TOML syntax error: Error while parsing key-value pair: "
                    "expected value, saw '\\n'"}));
  EXPECT_EQ(errors_of("[proxy\n"),
            (Errors{"t.toml:1:7: TOML syntax error: Error while parsing table header: "
                    "expected ']', saw '\\n'"}));
  EXPECT_EQ(errors_of("[proxy]\nworkers = 1\nworkers = 2\n"),
            (Errors{"t.toml:3:11: TOML syntax error: Error while parsing key-value pair: "
                    "cannot redefine existing integer 'workers'"}));
}

TEST(ConfigErrors, NotTomlAtAll) {
  const Errors errors = errors_of("\x7f" "ELF\x02\x01\x01");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].starts_with("t.toml:1:1: TOML syntax error: ")) << errors[0];
}

TEST(ConfigErrors, UnknownKeyWithSuggestion) {
  EXPECT_EQ(errors_with_backend("[proxy]\nlisen = \"127.0.0.1:80\"\n"),
            (Errors{"t.toml:2:1: proxy.lisen: unknown key (did you mean 'listen'?)"}));
  EXPECT_EQ(errors_with_backend("[health]\ntimeout = 100\n"),
            (Errors{"t.toml:2:1: health.timeout: unknown key (did you mean 'timeout_ms'?)"}));
  EXPECT_EQ(errors_with_backend("[ring]\nVnodes = 100\n"),
            (Errors{"t.toml:2:1: ring.Vnodes: unknown key (did you mean 'vnodes'?)"}));
  EXPECT_EQ(errors_with_backend("[health]\nrsie = 1\n"),
            (Errors{"t.toml:2:1: health.rsie: unknown key (did you mean 'rise'?)"}));
}

TEST(ConfigErrors, UnknownKeyWithoutSuggestion) {
  EXPECT_EQ(errors_with_backend("[proxy]\ntls_cert = \"x.pem\"\n"),
            (Errors{"t.toml:2:1: proxy.tls_cert: unknown key"}));
  EXPECT_EQ(errors_with_backend("[proxy.tcp]\nnodelay = true\n"),
            (Errors{"t.toml:1:8: proxy.tcp: unknown key"}));
}

TEST(ConfigErrors, UnknownKeyInBackendNamesItsIndex) {
  EXPECT_EQ(errors_of(R"([[backend]]
name = "a"
address = "127.0.0.1:9001"

[[backend]]
name = "b"
adress = "127.0.0.1:9002"
address = "127.0.0.1:9003"
)"),
            (Errors{"t.toml:7:1: backend[1].adress: unknown key (did you mean 'address'?)"}));
}

TEST(ConfigErrors, UnknownSection) {
  EXPECT_EQ(errors_of("[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n"),
            (Errors{"t.toml:1:1: no backends: add a [[backend]] table, a [[discover]] source, or a "
                    "[gossip] section with seeds to learn them from peers",
                    "t.toml:1:3: backends: unknown section (did you mean 'backend'?)"}));
  EXPECT_EQ(errors_with_backend("[prxy]\nlisten = \"127.0.0.1:80\"\n"),
            (Errors{"t.toml:1:2: prxy: unknown section (did you mean 'proxy'?)"}));
  EXPECT_EQ(errors_with_backend("[tls]\n"), (Errors{"t.toml:1:2: tls: unknown section"}));
  EXPECT_EQ(errors_with_backend("listen = \"127.0.0.1:80\"\n"),
            (Errors{"t.toml:1:1: listen: unknown key (did you mean proxy.listen, under [proxy]?)"}));
}

TEST(ConfigErrors, WrongType) {
  EXPECT_EQ(errors_with_backend("[proxy]\nworkers = \"4\"\n"),
            (Errors{"t.toml:2:11: proxy.workers: expected an integer, got a string"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nretries = 1.0\n"),
            (Errors{"t.toml:2:11: proxy.retries: expected an integer, got a float"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = 8080\n"),
            (Errors{"t.toml:2:10: proxy.listen: expected a string, got an integer"}));
  EXPECT_EQ(errors_with_backend("[proxy]\naccess_log = false\n"),
            (Errors{"t.toml:2:14: proxy.access_log: expected a string, got a boolean"}));
  EXPECT_EQ(errors_with_backend("[ring]\nload_factor = \"1.5\"\n"),
            (Errors{"t.toml:2:15: ring.load_factor: expected a number, got a string"}));
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 1979-05-27\n"),
            (Errors{"t.toml:2:15: health.interval_ms: expected an integer, got a date/time"}));
  EXPECT_EQ(errors_with_backend("[admin]\ntoken = [\"a\"]\n"),
            (Errors{"t.toml:2:9: admin.token: expected a string, got an array"}));
  EXPECT_EQ(errors_with_backend("[gossip]\nname = { x = 1 }\n"),
            (Errors{"t.toml:2:8: gossip.name: expected a string, got a table"}));
}

TEST(ConfigErrors, WrongTypeOfSections) {
  EXPECT_EQ(errors_with_backend("proxy = 1\n"),
            (Errors{"t.toml:1:9: proxy: expected a table, got an integer"}));
  EXPECT_EQ(errors_with_backend("[[health]]\n"),
            (Errors{"t.toml:1:1: health: expected a table, got an array"}));
  EXPECT_EQ(errors_of("[backend]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n"),
            (Errors{"t.toml:1:1: backend: expected an array of tables ([[backend]]), got a "
                    "table"}));
  EXPECT_EQ(errors_of("backend = [\"127.0.0.1:9001\"]\n"),
            (Errors{"t.toml:1:12: backend[0]: expected a table, got a string"}));
}

TEST(ConfigErrors, WrongTypeOfSeeds) {
  EXPECT_EQ(errors_with_backend("[gossip]\nbind = \"127.0.0.1:7946\"\nseeds = \"10.0.0.1:7946\"\n"),
            (Errors{"t.toml:3:9: gossip.seeds: expected an array, got a string"}));
  EXPECT_EQ(errors_with_backend("[gossip]\nbind = \"127.0.0.1:7946\"\nseeds = [\"10.0.0.1:1\", 7946]\n"),
            (Errors{"t.toml:3:24: gossip.seeds[1]: expected a string, got an integer"}));
}

// Every integer key: the bounds are accepted, one past each is refused with the text.
struct IntegerKey {
  std::string section;
  std::string key;
  int64_t min;
  int64_t max;
};

TEST(ConfigErrors, IntegerRanges) {
  const std::vector<IntegerKey> keys = {
      {"proxy", "workers", 0, 1024},
      {"proxy", "retries", 0, 100},
      {"proxy", "connect_timeout_ms", 1, 3600000},
      {"proxy", "header_timeout_ms", 1, 3600000},
      {"proxy", "idle_timeout_ms", 1, 3600000},
      {"proxy", "upstream_timeout_ms", 1, 3600000},
      {"proxy", "max_header_bytes", 1024, 1048576},
      {"proxy", "max_connections", 1, 1000000},
      {"proxy", "shutdown_timeout_ms", 0, 3600000},
      {"ring", "vnodes", 1, 10000},
      {"health", "rise", 1, 100},
      {"health", "fall", 1, 100},
      {"health", "eject_after_failures", 0, 1000},
      {"health", "eject_base_ms", 1, 86400000},
      {"health", "max_ejected_percent", 0, 100},
      {"health", "slow_start_ms", 0, 3600000},
      {"gossip", "interval_ms", 10, 60000},
  };
  for (const IntegerKey& k : keys) {
    const std::string head = "[" + k.section + "]\n" + k.key + " = ";
    const std::string column = std::to_string(k.key.size() + 4);
    for (const int64_t ok : {k.min, k.max}) {
      EXPECT_EQ(errors_with_backend(head + std::to_string(ok) + "\n"), Errors{})
          << k.section << "." << k.key << " = " << ok;
    }
    for (const int64_t bad : {k.min - 1, k.max + 1}) {
      const std::string range = std::to_string(k.min) + " and " + std::to_string(k.max);
      EXPECT_EQ(errors_with_backend(head + std::to_string(bad) + "\n"),
                (Errors{"t.toml:2:" + column + ": " + k.section + "." + k.key +
                        ": must be between " + range + ", got " + std::to_string(bad)}))
          << k.section << "." << k.key << " = " << bad;
    }
  }
}

TEST(ConfigErrors, OutOfRangeExamples) {
  EXPECT_EQ(errors_with_backend("[proxy]\nretries = 500\n"),
            (Errors{"t.toml:2:11: proxy.retries: must be between 0 and 100, got 500"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nworkers = -9223372036854775808\n"),
            (Errors{"t.toml:2:11: proxy.workers: must be between 0 and 1024, got "
                    "-9223372036854775808"}));
  // The health bounds, which the table above cannot test alone: timeout <= interval.
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 9\ntimeout_ms = 1\n"),
            (Errors{"t.toml:2:15: health.interval_ms: must be between 10 and 3600000, got 9"}));
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 10\ntimeout_ms = 1\n"), Errors{});
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 3600000\ntimeout_ms = 3600000\n"),
            Errors{});
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 3600001\n"),
            (Errors{"t.toml:2:15: health.interval_ms: must be between 10 and 3600000, got 3600001"}));
  EXPECT_EQ(errors_with_backend("[health]\ntimeout_ms = 0\n"),
            (Errors{"t.toml:2:14: health.timeout_ms: must be between 1 and 3600000, got 0"}));
  EXPECT_EQ(errors_with_backend("[health]\ntimeout_ms = 3600001\n"),
            (Errors{"t.toml:2:14: health.timeout_ms: must be between 1 and 3600000, got 3600001"}));
}

TEST(ConfigErrors, BackendWeightRange) {
  EXPECT_EQ(errors_of("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 1001\n"),
            (Errors{"t.toml:4:10: backend[0].weight: must be between 0 and 1000, got 1001"}));
  EXPECT_EQ(errors_of("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = -1\n"),
            (Errors{"t.toml:4:10: backend[0].weight: must be between 0 and 1000, got -1"}));
  EXPECT_EQ(errors_of("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 1.5\n"),
            (Errors{"t.toml:4:10: backend[0].weight: expected an integer, got a float"}));
}

TEST(ConfigErrors, LoadFactor) {
  for (const std::string bad : {"1", "1.0", "0.5", "-1", "100.5", "nan", "inf", "-0.001"}) {
    const std::string shown = bad == "1.0" ? "1" : bad;
    EXPECT_EQ(errors_with_backend("[ring]\nload_factor = " + bad + "\n"),
              (Errors{"t.toml:2:15: ring.load_factor: must be 0 (off) or above 1 and at most "
                      "100, got " + shown}))
        << bad;
  }
}

TEST(ConfigErrors, HealthTimeoutMustNotExceedInterval) {
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 1000\ntimeout_ms = 1001\n"),
            (Errors{"t.toml:3:14: health.timeout_ms: must be at most health.interval_ms (1000), "
                    "got 1001"}));
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 200\ntimeout_ms = 500\n"),
            (Errors{"t.toml:3:14: health.timeout_ms: must be at most health.interval_ms (200), "
                    "got 500"}));
  // Only the timeout written: the default interval (1000) is what it clashes with.
  EXPECT_EQ(errors_with_backend("[health]\ntimeout_ms = 1001\n"),
            (Errors{"t.toml:2:14: health.timeout_ms: must be at most health.interval_ms (1000), "
                    "got 1001"}));
  // Only the interval written is no clash: the timeout defaults to at most the interval
  // (Config.HealthTimeoutDefaultsToTheSmallerOf500AndTheInterval).
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 100\n"), Errors{});
  // An invalid value is reported once, not again as a clash.
  EXPECT_EQ(errors_with_backend("[health]\ninterval_ms = 1\ntimeout_ms = 600\n"),
            (Errors{"t.toml:2:15: health.interval_ms: must be between 10 and 3600000, got 1"}));
}

TEST(ConfigErrors, HashKey) {
  EXPECT_EQ(errors_with_backend("[proxy]\nhash_key = \"foo\"\n"),
            (Errors{"t.toml:2:12: proxy.hash_key: expected uri, path, header:NAME, cookie:NAME, "
                    "query:NAME, client_ip or client_subject, got \"foo\""}));
  EXPECT_EQ(errors_with_backend("[proxy]\nhash_key = \"URI\"\n"),
            (Errors{"t.toml:2:12: proxy.hash_key: expected uri, path, header:NAME, cookie:NAME, "
                    "query:NAME, client_ip or client_subject, got \"URI\""}));
  EXPECT_EQ(errors_with_backend("[proxy]\nhash_key = \"header:\"\n"),
            (Errors{"t.toml:2:12: proxy.hash_key: missing the name after \"header:\""}));
  EXPECT_EQ(errors_with_backend("[proxy]\nhash_key = \"cookie:\"\n"),
            (Errors{"t.toml:2:12: proxy.hash_key: missing the name after \"cookie:\""}));
  EXPECT_EQ(errors_with_backend("[proxy]\nhash_key = \"query:\"\n"),
            (Errors{"t.toml:2:12: proxy.hash_key: missing the name after \"query:\""}));
  EXPECT_EQ(errors_with_backend("[proxy]\nhash_key = \"header:X User\"\n"),
            (Errors{"t.toml:2:12: proxy.hash_key: \"X User\" is not a valid header name"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nhash_key = \"cookie:a=b\"\n"),
            (Errors{"t.toml:2:12: proxy.hash_key: \"a=b\" is not a valid cookie name"}));
  // A client certificate's subject is there only when client certificates are asked for.
  EXPECT_EQ(errors_with_backend("[proxy]\nhash_key = \"client_subject\"\n"),
            (Errors{"t.toml:2:12: proxy.hash_key: client_subject needs proxy.tls.client_ca: without it no "
                    "client presents a certificate"}));
}

TEST(ConfigErrors, LogLevel) {
  EXPECT_EQ(errors_with_backend("[proxy]\nlog_level = \"verbose\"\n"),
            (Errors{"t.toml:2:13: proxy.log_level: expected error, warn, info or debug, got "
                    "\"verbose\""}));
}

TEST(ConfigErrors, InvalidAddressEverywhere) {
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = \"example.com:80\"\n"),
            (Errors{"t.toml:2:10: proxy.listen: invalid address \"example.com:80\": hostnames "
                    "are not resolved; use an IP address"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = \"127.0.0.1:0\"\n"),
            (Errors{"t.toml:2:10: proxy.listen: invalid address \"127.0.0.1:0\": port out of "
                    "range 1..65535"}));
  EXPECT_EQ(errors_with_backend("[admin]\nlisten = \"::1:9090\"\n"),
            (Errors{"t.toml:2:10: admin.listen: invalid address \"::1:9090\": an IPv6 address "
                    "needs brackets, as in [::1]:8080"}));
  EXPECT_EQ(errors_with_backend("[gossip]\nbind = \"10.0.0.1\"\n"),
            (Errors{"t.toml:2:8: gossip.bind: invalid address \"10.0.0.1\": missing port, as "
                    "in 127.0.0.1:8080"}));
  EXPECT_EQ(errors_with_backend(
                "[gossip]\nbind = \"10.0.0.1:7946\"\nseeds = [\"10.0.0.2:7946\", \"peer:7946\"]\n"),
            (Errors{"t.toml:3:27: gossip.seeds[1]: invalid address \"peer:7946\": hostnames are "
                    "not resolved; use an IP address"}));
  EXPECT_EQ(errors_of("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:99999\"\n"),
            (Errors{"t.toml:3:11: backend[0].address: invalid address \"127.0.0.1:99999\": port "
                    "out of range 1..65535"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = \"\"\n"),
            (Errors{"t.toml:2:10: proxy.listen: invalid address \"\": empty address"}));
}

TEST(ConfigErrors, QuotesInMessagesAreEscaped) {
  EXPECT_EQ(errors_with_backend("[proxy]\nlog_level = \"a\\\"b\\n\"\n"),
            (Errors{"t.toml:2:13: proxy.log_level: expected error, warn, info or debug, got "
                    "\"a\\\"b\\x0a\""}));
}

TEST(ConfigErrors, HealthPath) {
  EXPECT_EQ(errors_with_backend("[health]\npath = \"health\"\n"),
            (Errors{"t.toml:2:8: health.path: must start with '/', got \"health\""}));
  EXPECT_EQ(errors_with_backend("[health]\npath = \"\"\n"),
            (Errors{"t.toml:2:8: health.path: must start with '/', got \"\""}));
  EXPECT_EQ(errors_with_backend("[health]\npath = \"/a b\"\n"),
            (Errors{"t.toml:2:8: health.path: must not contain spaces or control characters, "
                    "got \"/a b\""}));
}

TEST(ConfigErrors, GossipSecret) {
  EXPECT_EQ(errors_with_backend("[gossip]\nsecret = \"short\"\n"),
            (Errors{"t.toml:2:10: gossip.secret: too short (16 bytes at least), got 5"}));
  EXPECT_EQ(errors_with_backend("[gossip]\nsecret = \"0123456789abcde\"\n"),
            (Errors{"t.toml:2:10: gossip.secret: too short (16 bytes at least), got 15"}));
  EXPECT_EQ(errors_with_backend("[gossip]\nsecret = \"0123456789abcdef\"\n"), Errors{});
}

TEST(ConfigErrors, GossipPreviousSecrets) {
  EXPECT_EQ(errors_with_backend("[gossip]\nprevious_secrets = [\"short\", \"\", 5]\n"),
            (Errors{"t.toml:2:21: gossip.previous_secrets[0]: too short (16 bytes at least), got 5",
                    "t.toml:2:30: gossip.previous_secrets[1]: must not be empty",
                    "t.toml:2:34: gossip.previous_secrets[2]: expected a string, got an integer"}));
  EXPECT_EQ(errors_with_backend("[gossip]\nprevious_secrets = \"x\"\n"),
            (Errors{"t.toml:2:20: gossip.previous_secrets: expected an array, got a string"}));
  const ConfigResult ok = load_config_string(
      std::string("[gossip]\nsecret = \"0123456789abcdef\"\nprevious_secrets = [\"fedcba9876543210\"]\n") +
          std::string(kOneBackend),
      "t.toml");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.config.gossip.previous_secrets, std::vector<std::string>{"fedcba9876543210"});
}

TEST(ConfigErrors, BackendMissingNameAndAddress) {
  EXPECT_EQ(errors_of(R"([[backend]]
name = "a"
address = "127.0.0.1:9001"

[[backend]]
weight = 2
)"),
            (Errors{"t.toml:5:1: backend[1].name: missing (every backend needs a unique name)",
                    "t.toml:5:1: backend[1].address: missing (every backend needs an address, "
                    "as in \"127.0.0.1:9001\")"}));
}

TEST(ConfigErrors, BackendName) {
  EXPECT_EQ(errors_of("[[backend]]\nname = \"\"\naddress = \"127.0.0.1:9001\"\n"),
            (Errors{"t.toml:2:8: backend[0].name: must not be empty (every backend needs a "
                    "unique name)"}));
  EXPECT_EQ(errors_of("[[backend]]\nname = \"cache a/1\"\naddress = \"127.0.0.1:9001\"\n"),
            (Errors{"t.toml:2:8: backend[0].name: invalid name \"cache a/1\": use letters, "
                    "digits and - . _ ~ : [ ] only (names appear in admin URLs /nodes/NAME)"}));
  // Operators name backends after their address, IPv6 included.
  EXPECT_EQ(errors_of("[[backend]]\nname = \"[::1]:9001\"\naddress = \"[::1]:9001\"\n"), Errors{});
}

TEST(ConfigErrors, DuplicateBackendName) {
  EXPECT_EQ(errors_of(R"([[backend]]
name = "cache-a"
address = "127.0.0.1:9001"

[[backend]]
name = "cache-b"
address = "127.0.0.1:9002"

[[backend]]
name = "cache-a"
address = "127.0.0.1:9003"
)"),
            (Errors{"t.toml:10:8: backend[2].name: duplicate backend name \"cache-a\" (first at "
                    "line 2)"}));
}

TEST(ConfigErrors, DuplicateBackendAddress) {
  EXPECT_EQ(errors_of(R"([[backend]]
name = "cache-a"
address = "127.0.0.1:9001"

[[backend]]
name = "cache-b"
address = "localhost:9001"
)"),
            (Errors{"t.toml:7:11: backend[1].address: address 127.0.0.1:9001 already used by "
                    "backend \"cache-a\""}));
  EXPECT_EQ(errors_of(R"([[backend]]
name = "v6-a"
address = "[::1]:9001"

[[backend]]
name = "v6-b"
address = "[0::1]:9001"
)"),
            (Errors{"t.toml:7:11: backend[1].address: address [::1]:9001 already used by "
                    "backend \"v6-a\""}));
}

TEST(ConfigErrors, DuplicateAddressOfANamelessBackendNamesItsIndex) {
  EXPECT_EQ(errors_of(R"([[backend]]
address = "127.0.0.1:9001"

[[backend]]
name = "b"
address = "127.0.0.1:9001"
)"),
            (Errors{"t.toml:1:1: backend[0].name: missing (every backend needs a unique name)",
                    "t.toml:6:11: backend[1].address: address 127.0.0.1:9001 already used by "
                    "backend[0]"}));
}

TEST(ConfigErrors, ListenersCollide) {
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = \"0.0.0.0:9000\"\n[admin]\nlisten = "
                                "\"127.0.0.1:9000\"\n"),
            (Errors{"t.toml:4:10: admin.listen: 127.0.0.1:9000 collides with proxy.listen "
                    "0.0.0.0:9000"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = \"127.0.0.1:9090\"\n"),
            (Errors{"t.toml:2:10: proxy.listen: 127.0.0.1:9090 collides with admin.listen "
                    "127.0.0.1:9090 (the default; set admin.listen to move it, or \"\" to "
                    "disable it)"}));
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = \"127.0.0.1:9090\"\n[admin]\nlisten = \"\"\n"),
            Errors{});
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = \"127.0.0.2:9090\"\n"), Errors{});
}

TEST(ConfigErrors, ManyErrorsAllReportedInFileOrder) {
  // toml++ hands keys over alphabetically; the report must follow the file instead.
  EXPECT_EQ(errors_of(R"([proxy]
workers = "many"
retries = 500
lisen = "127.0.0.1:80"

[ring]
vnodes = 0

[[backend]]
name = "a"
address = "a_example:80"

[[backend]]
name = "a"
address = "127.0.0.1:9002"
weight = -2
)"),
            (Errors{
                "t.toml:2:11: proxy.workers: expected an integer, got a string",
                "t.toml:3:11: proxy.retries: must be between 0 and 100, got 500",
                "t.toml:4:1: proxy.lisen: unknown key (did you mean 'listen'?)",
                "t.toml:7:10: ring.vnodes: must be between 1 and 10000, got 0",
                "t.toml:11:11: backend[0].address: invalid address \"a_example:80\": not an IP "
                "address nor a DNS name",
                "t.toml:14:8: backend[1].name: duplicate backend name \"a\" (first at line 10)",
                "t.toml:16:10: backend[1].weight: must be between 0 and 1000, got -2",
            }));
}

TEST(ConfigErrors, ErrorsCarryTheirParts) {
  const ConfigResult result =
      load_config_string("[proxy]\nretries = 500\n" + std::string(kOneBackend), "p.toml");
  ASSERT_EQ(result.errors.size(), 1u);
  const ConfigError& error = result.errors[0];
  EXPECT_EQ(error.file, "p.toml");
  EXPECT_EQ(error.line, 2u);
  EXPECT_EQ(error.column, 11u);
  EXPECT_EQ(error.key, "proxy.retries");
  EXPECT_EQ(error.message, "must be between 0 and 100, got 500");
}

TEST(ConfigErrors, NulAndBinaryInputDoNotThrow) {
  const std::string text("[proxy]\0workers = 1\n", 20);
  EXPECT_FALSE(load_config_string(text, "t.toml").ok());
  EXPECT_FALSE(load_config_string("\xff\xfe\xfd", "t.toml").ok());
}

TEST(BackendName, Validity) {
  for (const std::string_view ok : {"cache-a", "a", "A.b_c~d:1", "10.0.0.1:9001", "..."}) {
    EXPECT_TRUE(is_valid_backend_name(ok)) << ok;
  }
  for (const std::string_view bad : {"", ".", "..", "a b", "a/b", "a?b", "a#b", "a%20", "é"}) {
    EXPECT_FALSE(is_valid_backend_name(bad)) << bad;
  }
}

// Caught by fuzz_config's check (tests/regressions/fuzz_config/): every key in range, but more points
// than a ring can have; the proxy could not start with what --check passed.
TEST(Config, RingLargerThanARingCanBeIsAnError) {
  std::string text = "[ring]\nvnodes = 10000\n";
  for (int i = 0; i < 7; ++i) {
    text += "[[backend]]\nname = \"n" + std::to_string(i) + "\"\naddress = \"127.0.0.1:" + std::to_string(9000 + i) +
            "\"\nweight = 1000\n";
  }
  EXPECT_EQ(errors_of(text), (Errors{"t.toml:2:10: ring.vnodes: vnodes x total weight is 70000000 ring points, "
                                     "above the 67108864 a ring can have"}));
}

}  // namespace
}  // namespace ringproxy
