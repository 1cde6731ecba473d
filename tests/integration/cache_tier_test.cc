// A cache tier end to end (examples/cache-tier, issue 7): three real Varnish caches in
// front of one slow origin, ringproxy in front of them, and nginx round-robin for
// comparison. What a consistent-hash tier is for, checked with real caches: a second
// pass over the same URIs hits (each URI went to the one cache that holds it), which
// round-robin does not give; and when a cache dies, only its own URIs miss, no others.
//
// Hits and misses are read from X-Cache, which examples/cache-tier/cache.vcl sets from
// obj.hits; X-Cache-Node names the cache (varnishd -i). The test uses that same VCL
// file, so it also checks the example. Varnish is Debian's /usr/sbin/varnishd (package
// varnish), nginx is nginx-light: scripts/install-deps.sh --test installs both.
//
// Thresholds, from examples/cache-tier/run.sh runs (3,000 URIs, 32 connections): the
// second pass through ringproxy hit 100%, through round-robin 33% (a URI cached on one
// of three caches, asked of a cache that does not depend on where it went the first
// time). The test asks >= 95% and <= 60%: far from both measured values, and on the
// right side of each other, so a ring that placed keys at random per request (or a
// tier with round-robin behind the proxy) fails. After a kill the hits are 1 - the dead
// cache's share (68% measured); >= 50% is asked, and, exactly, that the misses are the
// dead cache's URIs and nothing else.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

constexpr const char* kVarnishd = "/usr/sbin/varnishd";
constexpr const char* kNginx = "/usr/sbin/nginx";
constexpr int kUris = 2000;
constexpr size_t kConnections = 16;  // requests in flight at once, so misses overlap
const std::vector<std::string> kCaches = {"cache-a", "cache-b", "cache-c"};

struct Served {
  bool hit = false;
  std::string node;  // X-Cache-Node
};

struct Pass {
  std::map<std::string, Served> by_uri;
  int hits = 0;
  double hit_ratio() const { return by_uri.empty() ? 0.0 : static_cast<double>(hits) / by_uri.size(); }
  std::set<std::string> misses() const {
    std::set<std::string> out;
    for (const auto& [uri, s] : by_uri) {
      if (!s.hit) out.insert(uri);
    }
    return out;
  }
};

std::vector<std::string> uris(const std::string& prefix) {
  std::vector<std::string> out;
  for (int i = 0; i < kUris; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

class CacheTier : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* exe : {kVarnishd, kNginx}) {
      ASSERT_EQ(::access(exe, X_OK), 0) << exe << " is missing: this test runs real Varnish caches and nginx; "
                                        << "run scripts/install-deps.sh --test (it installs varnish and nginx-light)";
    }
    DemoBackendOptions slow;
    slow.delay_ms = 20;  // a slow origin, as in run.sh: a miss costs 20 ms
    origin_ = std::make_unique<DemoBackend>(dir_, "origin", slow);
    std::string vcl = read_file(std::string(RINGPROXY_SOURCE_DIR) + "/examples/cache-tier/cache.vcl");
    // Every ORIGIN_PORT, as run.sh's sed does (the file's comments name it too).
    const std::string placeholder = "ORIGIN_PORT", port = std::to_string(origin_->port());
    ASSERT_NE(vcl.find(placeholder), std::string::npos) << "examples/cache-tier/cache.vcl has no " << placeholder;
    for (size_t at = vcl.find(placeholder); at != std::string::npos; at = vcl.find(placeholder, at + port.size())) {
      vcl.replace(at, placeholder.size(), port);
    }
    vcl_ = dir_.write_file("cache.vcl", vcl);
    for (const auto& name : kCaches) {
      cache_ports_[name] = free_port();
      ASSERT_NE(cache_ports_[name], 0);
      start_cache(name);
      ASSERT_FALSE(HasFailure());
    }
  }

  // varnishd in the foreground, as run.sh starts it: -j none because the temp dir is
  // 0700 and the default jail's unprivileged user could not read the VCL; -T none: no
  // management port. It prints "said Child starts" on stderr once the child serves.
  void start_cache(const std::string& name) {
    const std::string log = name + "-" + std::to_string(++cache_starts_);
    caches_[name] = std::make_unique<Process>(
        kVarnishd,
        std::vector<std::string>{"-F", "-j", "none", "-T", "none", "-n", dir_.file("varnish-" + name), "-a",
                                 "127.0.0.1:" + std::to_string(cache_ports_[name]), "-f", vcl_, "-s", "malloc,64m",
                                 "-i", name},
        dir_.path(), log);
    // Compiling the VCL (cc) takes a second or two; allow for a loaded machine.
    EXPECT_TRUE(caches_[name]->wait_for_output(Output::err, "said Child starts", Millis(60000)))
        << caches_[name]->describe();
  }

  // SIGTERM: the manager stops its child (the one that holds the objects), then exits.
  void stop_cache(const std::string& name) {
    ASSERT_TRUE(caches_[name]->send_signal(SIGTERM));
    const auto status = caches_[name]->wait(Millis(30000));
    ASSERT_TRUE(status.has_value()) << caches_[name]->describe();
  }

  void start_ringproxy() {
    port_ = free_port();
    admin_port_ = free_port();
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 2\nhash_key = \"uri\"\n"
      << "\n[admin]\nlisten = \"127.0.0.1:" << admin_port_ << "\"\n"
      << "\n[health]\npath = \"/health\"\ninterval_ms = 100\ntimeout_ms = 100\nfall = 2\nrise = 2\n";
    for (const auto& name : kCaches) {
      c << "\n[[backend]]\nname = \"" << name << "\"\naddress = \"127.0.0.1:" << cache_ports_[name] << "\"\n";
    }
    const std::string conf = dir_.write_file("ringproxy.toml", c.str());
    ringproxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", conf},
                                           dir_.path(), "ringproxy");
    ASSERT_TRUE(ringproxy_->wait_for_output(Output::err, "listening on")) << ringproxy_->describe();
  }

  // nginx's default balancing, round-robin, one process in the foreground.
  void start_nginx() {
    nginx_port_ = free_port();
    std::string upstream;
    for (const auto& name : kCaches) upstream += "    server 127.0.0.1:" + std::to_string(cache_ports_[name]) + ";\n";
    nginx_ = start_private_nginx(dir_, nginx_port_, upstream + "    keepalive 32;\n");
    ASSERT_FALSE(HasFailure());
  }

  // One GET per URI, in order, kConnections at a time (each round sends one request on
  // every connection, then reads the answers), all 200s.
  Pass run_pass(uint16_t port, const std::vector<std::string>& list, const char* who) {
    Pass out;
    std::vector<Conn> conns(kConnections);
    for (auto& c : conns) {
      if (!c.connect("127.0.0.1", port)) ADD_FAILURE() << who << ": " << c.error();
    }
    for (size_t i = 0; i < list.size(); i += kConnections) {
      const size_t n = std::min(kConnections, list.size() - i);
      for (size_t j = 0; j < n; ++j) {
        if (!conns[j].send_request("GET", list[i + j])) ADD_FAILURE() << who << ": " << conns[j].error();
      }
      for (size_t j = 0; j < n; ++j) {
        const Response r = conns[j].read_response();
        if (!r.ok() || r.status != 200) {
          ADD_FAILURE() << who << ": " << list[i + j] << ": " << r.describe();
          return out;
        }
        const bool hit = r.header("X-Cache") == "HIT";
        out.hits += hit ? 1 : 0;
        out.by_uri[list[i + j]] = Served{hit, r.header("X-Cache-Node")};
        if (!r.keep_alive) conns[j].connect("127.0.0.1", port);
      }
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<DemoBackend> origin_;
  std::string vcl_;
  std::map<std::string, uint16_t> cache_ports_;
  std::map<std::string, std::unique_ptr<Process>> caches_;
  int cache_starts_ = 0;
  std::unique_ptr<Process> ringproxy_;
  std::unique_ptr<Process> nginx_;
  uint16_t port_ = 0, admin_port_ = 0, nginx_port_ = 0;
};

TEST_F(CacheTier, SecondPassHitsThroughTheRingNotThroughRoundRobin) {
  start_ringproxy();
  start_nginx();
  ASSERT_FALSE(HasFailure());

  // Through ringproxy: every URI to the cache the reference ring names, twice.
  const auto rp = uris("/rp/");
  const auto owner = reference_map(kCaches, rp);
  ASSERT_EQ(owner.size(), rp.size());
  const Pass first = run_pass(port_, rp, "ringproxy pass 1");
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(first.hits, 0) << "fresh URIs cannot hit: is the origin's answer cached under another key?";
  int misplaced = 0;
  for (const auto& [uri, s] : first.by_uri) {
    if (s.node != owner.at(uri) && ++misplaced <= 5) {
      ADD_FAILURE() << uri << " served by " << s.node << ", the ring says " << owner.at(uri);
    }
  }
  EXPECT_EQ(misplaced, 0);
  const Pass second = run_pass(port_, rp, "ringproxy pass 2");
  ASSERT_FALSE(HasFailure());
  EXPECT_GE(second.hit_ratio(), 0.95) << second.hits << " of " << rp.size();

  // Through round-robin, on URIs no cache holds yet. The second pass goes in another
  // order: nginx's round-robin sends the i-th request to cache i mod 3, so the same
  // order twice could land every URI where it was by accident, which real traffic never
  // does (with 16 connections in flight the order is blurred anyway).
  auto rr = uris("/rr/");
  const Pass rr_first = run_pass(nginx_port_, rr, "round-robin pass 1");
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(rr_first.hits, 0);
  std::shuffle(rr.begin(), rr.end(), std::mt19937(1));
  const Pass rr_second = run_pass(nginx_port_, rr, "round-robin pass 2");
  ASSERT_FALSE(HasFailure());
  EXPECT_LE(rr_second.hit_ratio(), 0.6) << rr_second.hits << " of " << rr.size();
  std::cout << "second-pass hit ratio: ringproxy " << second.hit_ratio() << ", round-robin " << rr_second.hit_ratio()
            << "\n";
}

TEST_F(CacheTier, AKilledCacheCostsOnlyItsOwnUris) {
  start_ringproxy();
  ASSERT_FALSE(HasFailure());
  const auto list = uris("/k/");
  const auto owner = reference_map(kCaches, list);
  const auto without_b = reference_map({"cache-a", "cache-c"}, list);
  ASSERT_EQ(owner.size(), list.size());
  ASSERT_EQ(without_b.size(), list.size());
  run_pass(port_, list, "warm-up");
  const Pass warm = run_pass(port_, list, "warm");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(warm.hits, kUris) << "the tier is not warm; nothing below would mean anything";

  stop_cache("cache-b");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(ringproxy_->wait_for_output(Output::err, "health: node=cache-b up -> down")) << ringproxy_->stderr_text();

  const Pass after = run_pass(port_, list, "after the kill");
  ASSERT_FALSE(HasFailure());
  std::set<std::string> owned_by_b;
  for (const auto& [uri, node] : owner) {
    if (node == "cache-b") owned_by_b.insert(uri);
  }
  ASSERT_GT(owned_by_b.size(), 300u);
  EXPECT_GE(after.hit_ratio(), 0.5) << after.hits << " of " << list.size();
  // Exactly cache-b's URIs miss: none of the others moved, so none lost its cache.
  const std::set<std::string> misses = after.misses();
  std::vector<std::string> collateral, not_missed;
  std::set_difference(misses.begin(), misses.end(), owned_by_b.begin(), owned_by_b.end(),
                      std::back_inserter(collateral));
  std::set_difference(owned_by_b.begin(), owned_by_b.end(), misses.begin(), misses.end(),
                      std::back_inserter(not_missed));
  EXPECT_TRUE(collateral.empty()) << collateral.size() << " URIs of live caches missed, e.g. " << collateral.front();
  EXPECT_TRUE(not_missed.empty()) << not_missed.size() << " of cache-b's URIs hit somewhere, e.g. "
                                  << not_missed.front();
  // And each went where the ring without cache-b puts it.
  int misplaced = 0;
  for (const auto& [uri, s] : after.by_uri) {
    if (s.node != without_b.at(uri) && ++misplaced <= 5) {
      ADD_FAILURE() << uri << " served by " << s.node << ", the ring without cache-b says " << without_b.at(uri);
    }
  }
  EXPECT_EQ(misplaced, 0);
  std::cout << "after killing cache-b: hit ratio " << after.hit_ratio() << ", " << misses.size()
            << " misses, all cache-b's (" << owned_by_b.size() << ")\n";
}

}  // namespace
}  // namespace ringproxy::integration
