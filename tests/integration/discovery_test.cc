// Backends by name (SPEC "Backends by name (DNS)") end to end: a real ringproxy asks a
// real dnsmasq on loopback, which the test restarts on the same port with other
// records to change the answers at run time. Checked: [[discover]] SRV and A sources
// become nodes named from their records, placed where the reference ring
// (tools/ring_reference.py, sharing no code with ring/) says over thousands of keys;
// changes move only the keys they must; SRV priorities stand by; a [[backend]] with a
// DNS name keeps its ring place when its address changes; failures keep the last good
// set for dns.hold_ms, each counted as what it was, and not one request fails under wrk
// meanwhile; admin and the command line see discovered nodes. Reloads add,
// remove and edit sources (drains kept); an admin DELETE of a named backend forgets its
// name (once a use after free: run under ASan too); a weight-0 SRV record is no serving
// priority; an AAAA-only name is a node "[::1]:PORT"; a TTL change is followed.
//
// Waits are polls of the admin API or the proxy's log lines, bounded by a timeout.
// dnsmasq answers every record with TTL 1 s (--local-ttl=1); the proxies clamp it to
// dns.max_ttl_ms = 200, so they ask again about five times a second.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <atomic>
#include <thread>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/load.h"

namespace ringproxy::integration {
namespace {

using nlohmann::json;

constexpr char kSrv[] = "_http._tcp.svc.test";

std::string srv(const std::string& target, uint16_t port, int priority, int weight) {
  return "--srv-host=" + std::string(kSrv) + "," + target + "," + std::to_string(port) + "," +
         std::to_string(priority) + "," + std::to_string(weight);
}
std::string host(const std::string& name, const std::string& ip) { return "--host-record=" + name + "," + ip; }

std::vector<std::string> keys(int n, const std::string& prefix = "/k") {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// Node name -> what it weighs and its state, as GET /discovery lists a source's nodes.
using NodeView = std::map<std::string, std::pair<uint32_t, std::string>>;

class DiscoveryIntegration : public ::testing::Test {
 protected:
  // `body`: everything after [proxy], [admin], [health] and [dns]'s resolvers: more
  // [dns] keys first, then [[discover]] and [[backend]] tables.
  void start_proxy(const std::string& body, uint32_t hold_ms = 600000, uint32_t max_ttl_ms = 200) {
    port_ = free_port();
    admin_ = free_port();
    hold_ms_ = hold_ms;
    max_ttl_ms_ = max_ttl_ms;
    config_path_ = dir_.write_file("ringproxy.toml", config_text(body));
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", config_path_},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  // The config file start_proxy wrote, with `body` instead, reloaded (POST /reload):
  // applied when it answers.
  void reload(const std::string& body) {
    dir_.write_file("ringproxy.toml", config_text(body));
    Response r = http_request(admin_, "POST", "/reload");
    ASSERT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->describe();
    ASSERT_EQ(json::parse(r.body)["ok"], true) << r.body;
  }

  std::string config_text(const std::string& body) {
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 2\n" << proxy_extra_
      << "[admin]\nlisten = \"127.0.0.1:" << admin_ << "\"\n"
      // Killed backends refuse the checks' connections: down in two checks. Not fall = 1
      // with 100 ms: on a loaded machine a slow check then took every node down (503s).
      << "[health]\ninterval_ms = 250\ntimeout_ms = 250\nfall = 2\nrise = 1\n"
      << "[dns]\nresolvers = [\"127.0.0.1:" << dns_.port() << "\"]\ntimeout_ms = 300\nmin_ttl_ms = 100\n"
      << "max_ttl_ms = " << max_ttl_ms_ << "\nhold_ms = " << hold_ms_ << "\n"
      << body;
    return c.str();
  }

  static std::string discover_srv() { return "\n[[discover]]\nname = \"" + std::string(kSrv) + "\"\ntype = \"srv\"\n"; }

  std::string proxy_extra_;  // more [proxy] keys

  json admin_json(const std::string& path) {
    Response r = http_get(admin_, path);
    if (r.status != 200) return json();
    try {
      return json::parse(r.body);
    } catch (const json::exception&) {
      return json();
    }
  }

  json source_status(const std::string& name = kSrv) {
    const json d = admin_json("/discovery");
    if (!d.is_object()) return json();
    for (const json& s : d["sources"]) {
      if (s["name"] == name) return s;
    }
    return json();
  }

  NodeView source_nodes(const std::string& name = kSrv) {
    NodeView out;
    const json s = source_status(name);
    if (!s.is_object()) return out;
    for (const json& n : s["nodes"]) out[n["name"]] = {n["weight"].get<uint32_t>(), n["state"].get<std::string>()};
    return out;
  }

  std::string describe(const NodeView& v) {
    std::string out;
    for (const auto& [n, ws] : v) out += n + " w" + std::to_string(ws.first) + " " + ws.second + "; ";
    return out.empty() ? "(none)" : out;
  }

  // Waits until the source lists exactly `want`.
  void wait_nodes(const NodeView& want, const std::string& name = kSrv, Millis timeout = Millis(8000)) {
    NodeView last;
    const bool ok = eventually(
        [&] {
          last = source_nodes(name);
          return last == want;
        },
        timeout);
    ASSERT_TRUE(ok) << "want " << describe(want) << "\nhave " << describe(last) << "\n" << proxy_->describe();
  }

  // key -> X-Backend for each key, through the proxy on one keep-alive connection;
  // every answer must be a 200.
  std::map<std::string, std::string> route(const std::vector<std::string>& ks) {
    std::map<std::string, std::string> out;
    Conn conn("127.0.0.1", port_);
    int failures = 0;
    for (const auto& k : ks) {
      Response r = conn.request("GET", k);
      if (r.status != 200 && ++failures <= 5) ADD_FAILURE() << k << ": " << r.describe();
      out[k] = r.status == 200 ? r.header("X-Backend") : "(status " + std::to_string(r.status) + ")";
      if (!r.keep_alive) conn.connect("127.0.0.1", port_);
    }
    EXPECT_EQ(failures, 0) << "of " << ks.size() << " requests";
    return out;
  }

  // The reference placement for `nodes` (ring name, weight), its node names turned into
  // the demo backends' names by `backend_of`.
  std::map<std::string, std::string> expected(const std::vector<std::pair<std::string, uint32_t>>& nodes,
                                              const std::vector<std::string>& ks) {
    std::map<std::string, std::string> out = reference_map_weighted(nodes, ks);
    EXPECT_EQ(out.size(), ks.size());
    for (auto& [k, node] : out) {
      auto it = backend_of_.find(node);
      EXPECT_NE(it, backend_of_.end()) << "no backend for node " << node;
      if (it != backend_of_.end()) node = it->second;
    }
    return out;
  }

  // Requests follow the routing the admin API shows once the workers have it: waits
  // until a sample of keys lands as `want` says (a bounded poll), so that a full sweep
  // afterwards can be held to every key.
  void wait_routing(const std::map<std::string, std::string>& want) {
    std::vector<std::string> sample;
    for (auto it = want.begin(); it != want.end() && sample.size() < 60; ++it) sample.push_back(it->first);
    std::string diff;
    const bool ok = eventually([&] {
      diff.clear();
      Conn conn("127.0.0.1", port_);
      for (const auto& k : sample) {
        Response r = conn.request("GET", k);
        if (r.header("X-Backend") != want.at(k)) {
          diff = k + " went to " + r.header("X-Backend") + " (" + std::to_string(r.status) + "), want " + want.at(k);
          return false;
        }
        if (!r.keep_alive) conn.connect("127.0.0.1", port_);
      }
      return true;
    });
    ASSERT_TRUE(ok) << diff;
  }

  // Keys routed otherwise than `want`, with the first few named.
  static int mismatches(const std::map<std::string, std::string>& got, const std::map<std::string, std::string>& want,
                        std::string* first) {
    int n = 0;
    for (const auto& [k, node] : want) {
      auto it = got.find(k);
      const std::string g = it == got.end() ? "(missing)" : it->second;
      if (g != node && ++n <= 5) *first += k + ": got " + g + ", want " + node + "\n";
    }
    return n;
  }

  void expect_routes(const std::map<std::string, std::string>& got, const std::map<std::string, std::string>& want) {
    std::string first;
    EXPECT_EQ(mismatches(got, want, &first), 0) << first;
  }

  std::string ring_fingerprint() {
    const json r = admin_json("/ring");
    return r.is_object() ? r["fingerprint"].get<std::string>() : "(no /ring)";
  }

  // The DnsAnswer results counted for `name` (a source or a node's host).
  uint64_t results(const std::string& name, const std::string& result) {
    const json d = admin_json("/discovery");
    if (!d.is_object()) return 0;
    for (const char* list : {"sources", "names"}) {
      for (const json& s : d[list]) {
        if (s["name"] == name && s["results"].contains(result)) return s["results"][result].get<uint64_t>();
      }
    }
    return 0;
  }

  TempDir dir_;
  Dnsmasq dns_{dir_};
  std::vector<std::unique_ptr<DemoBackend>> backends_;
  std::map<std::string, std::string> backend_of_;  // ring node name -> demo backend name
  uint16_t port_ = 0, admin_ = 0;
  uint32_t hold_ms_ = 600000, max_ttl_ms_ = 200;
  std::string config_path_;
  std::unique_ptr<Process> proxy_;

  // A demo backend named `name` on 127.0.0.1, known in DNS as `name`.test: returns its
  // SRV node name "NAME.test:PORT".
  std::string add_backend(const std::string& name) {
    backends_.push_back(std::make_unique<DemoBackend>(dir_, name));
    const std::string node = name + ".test:" + std::to_string(backends_.back()->port());
    backend_of_[node] = name;
    return node;
  }
  DemoBackend& backend(size_t i) { return *backends_[i]; }

  // The ways a resolver fails (SPEC: SERVFAIL, a timeout, NXDOMAIN, an empty answer),
  // each caused by what serves the DNS port, with the /discovery results it is counted
  // as (any of). `hosts`: the nodes' A records, which the NXDOMAIN and empty servers
  // keep, so that only the source's own answer fails. end_dns_failure() stops the
  // SERVFAIL server (dnsmasq cannot answer SERVFAIL: tests/integration/hostile_dns.py
  // takes its port meanwhile).
  struct DnsFailure {
    const char* what;
    std::function<void()> cause;
    std::vector<std::string> results;
  };
  std::vector<DnsFailure> dns_failures(const std::vector<std::string>& hosts) {
    std::vector<std::string> empty = hosts;  // the name exists with no SRV record
    empty.push_back("--txt-record=" + std::string(kSrv) + ",nothing");
    return {
        // The port closed: ICMP port unreachable, or no answer at all.
        {"stopped", [this] { dns_.stop(); }, {"timeout", "error"}},
        {"servfail", [this] { start_servfail_dns(); }, {"servfail"}},
        {"nxdomain", [this, hosts] { ASSERT_TRUE(dns_.start(hosts)); }, {"nxdomain"}},
        {"empty", [this, empty] { ASSERT_TRUE(dns_.start(empty)); }, {"empty"}},
        // c-ares 1.18 (Debian 12) ends a refused query as "could not contact DNS
        // servers"; the resolver notes the answer's rcode and says "refused"
        // (net/dns_resolver.h).
        {"refused", [this] { ASSERT_TRUE(dns_.start({}, false)); }, {"refused"}},
    };
  }
  void start_servfail_dns() {
    dns_.stop();
    hostile_dns_ = std::make_unique<Process>(
        "/usr/bin/python3", std::vector<std::string>{HOSTILE_DNS_PY, "servfail", "--port", std::to_string(dns_.port())},
        dir_.path(), "hostile_dns");
    const auto line = hostile_dns_->read_line(Millis(5000));
    ASSERT_TRUE(line && line->rfind("ready ", 0) == 0) << hostile_dns_->describe();
  }
  void end_dns_failure() { hostile_dns_.reset(); }
  // The /discovery results in `rs` counted for the source so far.
  uint64_t counted(const std::vector<std::string>& rs) {
    uint64_t n = 0;
    for (const auto& r : rs) n += results(kSrv, r);
    return n;
  }
  std::unique_ptr<Process> hostile_dns_;

  // Demo backends "PREFIX-IP" on each of `ips`, all on one port (retried on another
  // when a process holds it on one of them), each known as ring node "IP:PORT":
  // returns the port, 0 when none was found.
  uint16_t add_backends_on(const std::vector<std::string>& ips, const std::string& prefix) {
    const uint16_t port = start_backends_on_one_port(dir_, ips, prefix, &backends_);
    if (port != 0) {
      for (const std::string& ip : ips) backend_of_[ip + ":" + std::to_string(port)] = prefix + "-" + ip;
    }
    return port;
  }

  // start_proxy, with `health` ("key = value\n" lines) added to the [health] table, for
  // keys the fixture leaves at their defaults (slow_start_ms, eject_base_ms).
  void start_proxy_with_health(const std::string& health, const std::string& body, uint32_t hold_ms = 600000) {
    port_ = free_port();
    admin_ = free_port();
    hold_ms_ = hold_ms;
    std::string text = config_text(body);
    const std::string table = "[health]\n";
    text.insert(text.find(table) + table.size(), health);
    config_path_ = dir_.write_file("ringproxy.toml", text);
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", config_path_},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  // The value of `series` ("NAME{LABELS}", as GET /metrics writes it) in the scrape
  // `text`; nullopt when the scrape has no such series.
  static std::optional<double> metric_value(const std::string& text, const std::string& series) {
    const std::string line = "\n" + series + " ";
    const size_t at = text.find(line);
    if (at == std::string::npos) return std::nullopt;
    return std::stod(text.substr(at + line.size()));
  }
  static std::string dns_series(const std::string& name, const std::string& result) {
    return "ringproxy_dns_resolutions_total{source=\"" + name + "\",result=\"" + result + "\"}";
  }
  // The sum of `name`'s resolution counters of `results` in a scrape (absent ones 0).
  static double dns_count(const std::string& text, const std::string& name, const std::vector<std::string>& results) {
    double sum = 0;
    for (const std::string& r : results) sum += metric_value(text, dns_series(name, r)).value_or(0);
    return sum;
  }
  std::string scrape() { return http_get(admin_, "/metrics").body; }

  // GET /nodes's entry for node `name`; null when it lists none.
  json listed_node(const std::string& name) {
    const json all = admin_json("/nodes");
    if (!all.is_object()) return json();
    for (const json& n : all["nodes"]) {
      if (n["name"] == name) return n;
    }
    return json();
  }

  // The status page's table row of node `name` (pool default); "" when it has none.
  static std::string status_row(const std::string& page, const std::string& name) {
    const size_t at = page.find("<tr data-node=\"" + name + "\"");
    if (at == std::string::npos) return "";
    return page.substr(at, page.find("</tr>", at) - at);
  }
};

// 1. SRV records become nodes "TARGET:PORT" weighted as the records say, and requests
// land where the reference ring puts those nodes. A record of a worse priority stands
// by while a better one is usable, and serves when none is.
TEST_F(DiscoveryIntegration, SrvRecordsAreNodesWithTheirWeightsAndPriorities) {
  const std::string a = add_backend("a"), b = add_backend("b"), c = add_backend("c"), s = add_backend("s");
  ASSERT_TRUE(dns_.start({srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 2),
                          srv("c.test", backend(2).port(), 0, 3), srv("s.test", backend(3).port(), 1, 5),
                          host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1"), host("c.test", "127.0.0.1"),
                          host("s.test", "127.0.0.1")}));
  start_proxy(discover_srv());
  wait_nodes({{a, {1, "up"}}, {b, {2, "up"}}, {c, {3, "up"}}, {s, {5, "standby"}}});

  const json node = admin_json("/nodes/" + b);
  EXPECT_EQ(node["source"], std::string("discover:") + kSrv) << node.dump();
  EXPECT_EQ(node["resolved"], json::array({"127.0.0.1"})) << node.dump();
  EXPECT_EQ(node["address"], b) << node.dump();

  const auto ks = keys(2000);
  const auto want = expected({{a, 1}, {b, 2}, {c, 3}}, ks);
  wait_routing(want);
  const auto got = route(ks);
  expect_routes(got, want);
  std::map<std::string, int> per;
  for (const auto& [k, n] : got) ++per[n];
  EXPECT_EQ(per.count("s"), 0u) << "the standby record took keys";
  // Weights 1:2:3 show in the shares (a loose check; the exact one is above).
  EXPECT_LT(per["a"], per["c"]);

  // Every record of priority 0 down: the priority-1 record serves every key.
  for (size_t i = 0; i < 3; ++i) backend(i).process().kill();
  NodeView last;
  ASSERT_TRUE(eventually([&] {
    last = source_nodes();
    return last.count(s) && last[s].second == "up" && last[a].second != "up" && last[b].second != "up" &&
           last[c].second != "up";
  })) << describe(last);
  // The killed nodes are down (what is wrong with them), not standing by.
  EXPECT_EQ(last[a].second, "down") << describe(last);
  std::map<std::string, std::string> all_s;
  for (const auto& k : keys(500, "/p")) all_s[k] = "s";
  wait_routing(all_s);
  expect_routes(route(keys(500, "/p")), all_s);

  // One record of priority 0 back (a, on its port): priority 0 serves again, the
  // priority-1 record stands by, and a takes every key (b and c are down).
  DemoBackendOptions again;
  again.port = backend(0).port();
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "a", again));
  ASSERT_TRUE(eventually([&] {
    last = source_nodes();
    return last[a].second == "up" && last[s].second == "standby";
  })) << describe(last);
  EXPECT_EQ(last[b].second, "down") << describe(last);
  std::map<std::string, std::string> all_a;
  for (const auto& k : keys(500, "/q")) all_a[k] = "a";
  wait_routing(all_a);
  expect_routes(route(keys(500, "/q")), all_a);
}

// 2. Records changed at run time move only the keys they must: an added record takes
// only its share, a removed one gives up only its keys, a reordered answer moves none,
// a re-weighted record moves keys only to (or from) itself.
TEST_F(DiscoveryIntegration, ChangedRecordsMoveOnlyTheirKeys) {
  const std::string a = add_backend("a"), b = add_backend("b"), c = add_backend("c"), d = add_backend("d");
  const auto rec = [&](size_t i, int weight) {
    return srv(std::string(1, static_cast<char>('a' + i)) + ".test", backend(i).port(), 0, weight);
  };
  const std::vector<std::string> hosts = {host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1"),
                                          host("c.test", "127.0.0.1"), host("d.test", "127.0.0.1")};
  const auto with_hosts = [&](std::vector<std::string> r) {
    r.insert(r.end(), hosts.begin(), hosts.end());
    return r;
  };
  ASSERT_TRUE(dns_.start(with_hosts({rec(0, 1), rec(1, 1), rec(2, 1)})));
  start_proxy(discover_srv());
  wait_nodes({{a, {1, "up"}}, {b, {1, "up"}}, {c, {1, "up"}}});
  const auto ks = keys(2000);
  const auto m0 = expected({{a, 1}, {b, 1}, {c, 1}}, ks);
  wait_routing(m0);
  expect_routes(route(ks), m0);

  // Added: d takes its share, and every key that moved moved to d.
  ASSERT_TRUE(dns_.start(with_hosts({rec(0, 1), rec(1, 1), rec(2, 1), rec(3, 1)})));
  wait_nodes({{a, {1, "up"}}, {b, {1, "up"}}, {c, {1, "up"}}, {d, {1, "up"}}});
  const auto m1 = expected({{a, 1}, {b, 1}, {c, 1}, {d, 1}}, ks);
  wait_routing(m1);
  const auto got1 = route(ks);
  expect_routes(got1, m1);
  int moved = 0;
  for (const auto& [k, n] : got1) {
    if (n == m0.at(k)) continue;
    ++moved;
    EXPECT_EQ(n, "d") << k << " moved from " << m0.at(k) << " to a node that was there";
  }
  EXPECT_GT(moved, 300) << "d took too little";
  EXPECT_LT(moved, 700) << "d took too much";

  // Reordered: the same records in another order (dnsmasq answers them in reverse
  // flag order) move no key and leave the ring as it was.
  const std::string fingerprint = ring_fingerprint();
  const uint64_t ok_before = results(kSrv, "ok");
  ASSERT_TRUE(dns_.start(with_hosts({rec(3, 1), rec(1, 1), rec(0, 1), rec(2, 1)})));
  // Two good answers after the restart: the reordered one has been taken.
  ASSERT_TRUE(eventually([&] { return results(kSrv, "ok") >= ok_before + 2; }));
  EXPECT_EQ(ring_fingerprint(), fingerprint);
  expect_routes(route(ks), m1);

  // Removed: b's keys, and only they, move; each where the ring without b says.
  ASSERT_TRUE(dns_.start(with_hosts({rec(0, 1), rec(2, 1), rec(3, 1)})));
  wait_nodes({{a, {1, "up"}}, {c, {1, "up"}}, {d, {1, "up"}}});
  const auto m2 = expected({{a, 1}, {c, 1}, {d, 1}}, ks);
  wait_routing(m2);
  const auto got2 = route(ks);
  expect_routes(got2, m2);
  for (const auto& [k, n] : got2) {
    EXPECT_EQ(n != m1.at(k), m1.at(k) == "b") << k << ": was on " << m1.at(k) << ", now on " << n;
  }

  // Re-weighted: c from 1 to 3 takes keys, and only c gains them.
  ASSERT_TRUE(dns_.start(with_hosts({rec(0, 1), rec(2, 3), rec(3, 1)})));
  wait_nodes({{a, {1, "up"}}, {c, {3, "up"}}, {d, {1, "up"}}});
  const auto m3 = expected({{a, 1}, {c, 3}, {d, 1}}, ks);
  wait_routing(m3);
  const auto got3 = route(ks);
  expect_routes(got3, m3);
  moved = 0;
  for (const auto& [k, n] : got3) {
    if (n == m2.at(k)) continue;
    ++moved;
    EXPECT_EQ(n, "c") << k << " moved from " << m2.at(k) << " to " << n;
  }
  EXPECT_GT(moved, 0);
}

// 3. A source of type "a": every address is a node "ADDRESS:PORT" with the source's
// port and weight.
TEST_F(DiscoveryIntegration, AddressSourceNodesAreAddressAndPort) {
  // One port for all, on three loopback addresses (retried if another process holds it
  // on one of them).
  uint16_t port = 0;
  for (int attempt = 0; attempt < 5 && backends_.size() < 3; ++attempt) {
    backends_.clear();
    port = free_port();
    try {
      for (const char* ip : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
        DemoBackendOptions o;
        o.host = ip;
        o.port = port;
        backends_.push_back(std::make_unique<DemoBackend>(dir_, std::string("at-") + ip, o));
        backend_of_[std::string(ip) + ":" + std::to_string(port)] = std::string("at-") + ip;
      }
    } catch (const std::exception& e) {
      std::cerr << "retrying on another port: " << e.what() << "\n";
    }
  }
  ASSERT_EQ(backends_.size(), 3u);
  ASSERT_TRUE(dns_.start({host("pool.test", "127.0.0.2"), host("pool.test", "127.0.0.3"),
                          host("pool.test", "127.0.0.4")}));
  start_proxy("\n[[discover]]\nname = \"pool.test\"\ntype = \"a\"\nport = " + std::to_string(port) + "\nweight = 2\n");
  const std::string p = ":" + std::to_string(port);
  wait_nodes({{"127.0.0.2" + p, {2, "up"}}, {"127.0.0.3" + p, {2, "up"}}, {"127.0.0.4" + p, {2, "up"}}}, "pool.test");
  const json node = admin_json("/nodes/127.0.0.3" + p);
  EXPECT_EQ(node["source"], "discover:pool.test") << node.dump();

  const auto ks = keys(2000);
  const auto want = expected({{"127.0.0.2" + p, 2}, {"127.0.0.3" + p, 2}, {"127.0.0.4" + p, 2}}, ks);
  wait_routing(want);
  expect_routes(route(ks), want);

  // One address fewer: only its keys move.
  ASSERT_TRUE(dns_.start({host("pool.test", "127.0.0.2"), host("pool.test", "127.0.0.4")}));
  wait_nodes({{"127.0.0.2" + p, {2, "up"}}, {"127.0.0.4" + p, {2, "up"}}}, "pool.test");
  const auto want2 = expected({{"127.0.0.2" + p, 2}, {"127.0.0.4" + p, 2}}, ks);
  wait_routing(want2);
  const auto got2 = route(ks);
  expect_routes(got2, want2);
  for (const auto& [k, n] : got2) {
    EXPECT_EQ(n != want.at(k), want.at(k) == "at-127.0.0.3") << k;
  }
}

// 4. A [[backend]] whose address is a DNS name: unresolved (its keys elsewhere, no
// 5xx) until the name resolves; then it serves, and when the name's address changes
// the node keeps its name and ring place while requests follow the new address.
TEST_F(DiscoveryIntegration, NamedBackendKeepsItsPlaceWhenItsAddressChanges) {
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "fixed"));
  const uint16_t port = start_backends_on_one_port(dir_, {"127.0.0.2", "127.0.0.3"}, "cache-at", &backends_);
  ASSERT_EQ(backends_.size(), 3u);
  backend_of_ = {{"fixed", "fixed"}, {"cache", "cache-at-127.0.0.2"}};
  // No DNS server yet: the resolver's port answers nothing (refused).
  start_proxy("\n[[backend]]\nname = \"fixed\"\naddress = \"" + backend(0).address() +
              "\"\n\n[[backend]]\nname = \"cache\"\naddress = \"cache.test:" + std::to_string(port) + "\"\n");
  json node = admin_json("/nodes/cache");
  EXPECT_EQ(node["state"], "unresolved") << node.dump();
  EXPECT_EQ(node["resolved"], json::array()) << node.dump();
  EXPECT_EQ(node["source"], "config") << node.dump();
  std::map<std::string, std::string> all_fixed;
  for (const auto& k : keys(500, "/early")) all_fixed[k] = "fixed";
  expect_routes(route(keys(500, "/early")), all_fixed);

  // The name resolves: the node serves its share at 127.0.0.2.
  ASSERT_TRUE(dns_.start({host("cache.test", "127.0.0.2")}));
  ASSERT_TRUE(eventually([&] {
    node = admin_json("/nodes/cache");
    return node.is_object() && node["state"] == "up" && node["resolved"] == json::array({"127.0.0.2"});
  })) << node.dump();
  const std::string fingerprint = ring_fingerprint();
  const auto ks = keys(2000);
  const auto want = expected({{"fixed", 1}, {"cache", 1}}, ks);
  wait_routing(want);
  expect_routes(route(ks), want);

  // The name moves to 127.0.0.3: the same ring, the same keys on "cache", now served
  // there.
  ASSERT_TRUE(dns_.start({host("cache.test", "127.0.0.3")}));
  ASSERT_TRUE(eventually([&] {
    node = admin_json("/nodes/cache");
    return node.is_object() && node["state"] == "up" && node["resolved"] == json::array({"127.0.0.3"});
  })) << node.dump();
  EXPECT_EQ(ring_fingerprint(), fingerprint);
  EXPECT_EQ(node["address"], "cache.test:" + std::to_string(port));
  backend_of_["cache"] = "cache-at-127.0.0.3";
  const auto want2 = expected({{"fixed", 1}, {"cache", 1}}, ks);
  wait_routing(want2);
  expect_routes(route(ks), want2);
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "cache.test: 127.0.0.3")) << proxy_->stderr_text();
}

// A named node whose name has two addresses, one where nothing listens: it is up (a
// check passes when any address answers), and every request is served: a connect
// refused at one address goes on to the next before the node is charged a failure.
TEST_F(DiscoveryIntegration, ANamedNodeWithADeadAddressServesFromTheOther) {
  const uint16_t port = start_backends_on_one_port(dir_, {"127.0.0.2"}, "cache-at", &backends_);
  ASSERT_TRUE(dns_.start({host("cache.test", "127.0.0.2"), host("cache.test", "127.0.0.4")}));
  proxy_extra_ = "log_level = \"debug\"\nretries = 0\n";
  start_proxy("\n[[backend]]\nname = \"cache\"\naddress = \"cache.test:" + std::to_string(port) + "\"\n");
  json node;
  ASSERT_TRUE(eventually([&] {
    node = admin_json("/nodes/cache");
    return node.is_object() && node["state"] == "up" && node["resolved"].size() == 2;
  })) << node.dump() << "\n" << proxy_->describe();
  // Concurrent clients, so that each worker opens several upstream connections: they
  // take the two addresses in turn, and every other one is refused.
  std::atomic<int> bad{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 12; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        const Response r = http_get(port_, "/k" + std::to_string(t) + "-" + std::to_string(i));
        if (r.status != 200 || r.header("X-Backend") != "cache-at-127.0.0.2") ++bad;
      }
    });
  }
  for (std::thread& c : clients) c.join();
  EXPECT_EQ(bad.load(), 0) << proxy_->stderr_text();
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "trying the next")) << proxy_->stderr_text();
  node = admin_json("/nodes/cache");
  EXPECT_EQ(node["failures"], 0) << node.dump();
  EXPECT_EQ(node["state"], "up") << node.dump();
}

// 5. Failures keep what works: a stopped server, NXDOMAIN, an empty answer, a SERVFAIL
// (hostile_dns.py on the same port: dnsmasq has no way to answer one) and a refusal each
// keep the last good set; traffic goes on; the holding shows in /discovery, the metrics
// (each failure counted under its own result) and the log.
TEST_F(DiscoveryIntegration, FailuresKeepTheLastGoodSet) {
  const std::string a = add_backend("a"), b = add_backend("b");
  const std::vector<std::string> hosts = {host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1")};
  std::vector<std::string> good = {srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 2)};
  good.insert(good.end(), hosts.begin(), hosts.end());
  ASSERT_TRUE(dns_.start(good));
  start_proxy(discover_srv());
  const NodeView set = {{a, {1, "up"}}, {b, {2, "up"}}};
  wait_nodes(set);
  const auto ks = keys(500);
  const auto want = expected({{a, 1}, {b, 2}}, ks);
  wait_routing(want);
  const std::string metric = "ringproxy_dns_holding{source=\"" + std::string(kSrv) + "\"} ";

  for (const DnsFailure& f : dns_failures(hosts)) {
    SCOPED_TRACE(f.what);
    const size_t from = proxy_->output_size(Output::err);
    const uint64_t before = counted(f.results);
    f.cause();
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "keeping the last good", kDefaultTimeout, from))
        << proxy_->stderr_text().substr(from);
    // Restarting dnsmasq closes its port a moment: an "error" may come first.
    json st;
    ASSERT_TRUE(eventually([&] {
      st = source_status();
      if (!st.is_object() || st["holding"] != true || !st["last_error"].is_string()) return false;
      if (counted(f.results) <= before) return false;
      return f.results.size() > 1 || st["last_error"].get<std::string>().rfind(f.results[0] + ": ", 0) == 0;
    })) << st.dump();
    const std::string m = http_get(admin_, "/metrics").body;
    EXPECT_NE(m.find(metric + "1"), std::string::npos) << m.substr(m.find("ringproxy_dns"), 2000);
    if (f.results.size() == 1) {  // the failure told apart: in words and in the counter
      const std::string& result = f.results[0];
      const std::string counter =
          "ringproxy_dns_resolutions_total{source=\"" + std::string(kSrv) + "\",result=\"" + result + "\"} ";
      EXPECT_NE(m.find(counter), std::string::npos) << counter << "\n" << m.substr(m.find("ringproxy_dns"), 2000);
    }
    EXPECT_EQ(source_nodes(), set);
    expect_routes(route(ks), want);

    // Good answers again: holding ends.
    end_dns_failure();
    ASSERT_TRUE(dns_.start(good));
    ASSERT_TRUE(eventually([&] {
      st = source_status();
      return st.is_object() && st["holding"] == false && st["last_error"].is_null();
    })) << st.dump();
    const std::string m2 = http_get(admin_, "/metrics").body;
    EXPECT_NE(m2.find(metric + "0"), std::string::npos);
  }
  EXPECT_EQ(source_nodes(), set);
  expect_routes(route(ks), want);
}

// 5a. The same failures one after another under load (wrk, 8 keep-alive connections),
// each lasting until the proxy has counted two failed answers, then good answers
// again: not one request fails or stalls, the ring never changes, and a [[backend]] by
// DNS name (whose own name fails along with the source's) keeps serving beside the
// discovered nodes.
TEST_F(DiscoveryIntegration, NoRequestFailsUnderLoadThroughEveryDnsFailure) {
  const std::string a = add_backend("a"), b = add_backend("b");
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "named"));
  backend_of_["named"] = "named";
  const std::vector<std::string> hosts = {host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1"),
                                          host("named.test", "127.0.0.1")};
  std::vector<std::string> good = {srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 2)};
  good.insert(good.end(), hosts.begin(), hosts.end());
  ASSERT_TRUE(dns_.start(good));
  start_proxy(discover_srv() + "\n[[backend]]\nname = \"named\"\naddress = \"named.test:" +
              std::to_string(backend(2).port()) + "\"\n");
  wait_nodes({{a, {1, "up"}}, {b, {2, "up"}}});
  const auto ks = keys(300);
  wait_routing(expected({{a, 1}, {b, 2}, {"named", 1}}, ks));
  const std::string ring = ring_fingerprint();

  Wrk load = start_wrk(dir_, "wrk", port_, 8);
  for (const DnsFailure& f : dns_failures(hosts)) {
    SCOPED_TRACE(f.what);
    const uint64_t before = counted(f.results);
    f.cause();
    // Queries come every dns.min_ttl_ms (100 ms) while failing.
    ASSERT_TRUE(eventually([&] { return counted(f.results) >= before + 2; })) << source_status().dump();
    ASSERT_TRUE(load.running()) << load.describe();
    end_dns_failure();
    const uint64_t ok = results(kSrv, "ok");
    ASSERT_TRUE(dns_.start(good));
    ASSERT_TRUE(eventually([&] { return results(kSrv, "ok") > ok; })) << source_status().dump();
  }
  const WrkResult w = stop_wrk(load);
  ASSERT_TRUE(w.parsed);
  std::cout << "[ load ] " << w.requests << " requests: " << w.statuses << "; " << w.backends << "\n";
  EXPECT_GT(w.requests, 0);
  EXPECT_EQ(w.errors(), "0 0 0 0 0") << "socket errors (connect read write), non-2xx (status), timeouts:\n"
                                     << w.describe() << "\n" << proxy_->stderr_text();
  const auto by = w.by_backend();
  for (const char* name : {"a", "b", "named"}) {
    EXPECT_GT(by.count(name) ? by.at(name) : 0, 0) << name << " answered nothing: " << w.backends;
  }
  EXPECT_EQ(ring_fingerprint(), ring);
}

// 5b. Past dns.hold_ms the last good set is dropped; when DNS answers again the nodes
// come back, in the same places.
TEST_F(DiscoveryIntegration, TheHoldEndsAndTheNodesComeBack) {
  const std::string a = add_backend("a"), b = add_backend("b");
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "fixed"));
  backend_of_["fixed"] = "fixed";
  const std::vector<std::string> good = {srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 1),
                                         host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1")};
  ASSERT_TRUE(dns_.start(good));
  start_proxy(discover_srv() + "\n[[backend]]\nname = \"fixed\"\naddress = \"" + backend(2).address() + "\"\n",
              /*hold_ms=*/1500);
  const NodeView set = {{a, {1, "up"}}, {b, {1, "up"}}};
  wait_nodes(set);
  const auto ks = keys(1000);
  const auto want = expected({{a, 1}, {b, 1}, {"fixed", 1}}, ks);
  wait_routing(want);
  expect_routes(route(ks), want);

  const size_t from = proxy_->output_size(Output::err);
  dns_.stop();
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "keeping the last good", kDefaultTimeout, from))
      << proxy_->stderr_text().substr(from);
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "are dropped", kDefaultTimeout, from))
      << proxy_->stderr_text().substr(from);
  wait_nodes({});
  // With the set gone, the configured backend takes every key.
  std::map<std::string, std::string> all_fixed;
  for (const auto& k : ks) all_fixed[k] = "fixed";
  wait_routing(all_fixed);
  expect_routes(route(ks), all_fixed);
  const json st = source_status();
  EXPECT_EQ(st["holding"], false) << st.dump();
  EXPECT_TRUE(st["last_error"].is_string()) << st.dump();

  ASSERT_TRUE(dns_.start(good));
  wait_nodes(set);
  wait_routing(want);
  expect_routes(route(ks), want);
}

// 6. Admin on discovered nodes: drain works, removal and re-weighting are refused
// (the record says); the command line's --lookup and --shares count them.
TEST_F(DiscoveryIntegration, AdminAndCommandLineOnDiscoveredNodes) {
  const std::string a = add_backend("a"), b = add_backend("b"), c = add_backend("c");
  ASSERT_TRUE(dns_.start({srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 2),
                          srv("c.test", backend(2).port(), 0, 1), host("a.test", "127.0.0.1"),
                          host("b.test", "127.0.0.1"), host("c.test", "127.0.0.1")}));
  start_proxy(discover_srv());
  wait_nodes({{a, {1, "up"}}, {b, {2, "up"}}, {c, {1, "up"}}});
  const auto ks = keys(2000);
  const auto want = expected({{a, 1}, {b, 2}, {c, 1}}, ks);
  wait_routing(want);

  // Refused: the DNS record owns these.
  Response del = http_request(admin_, "DELETE", "/nodes/" + a);
  EXPECT_EQ(del.status, 409) << del.describe();
  Response w = http_request(admin_, "PUT", "/nodes/" + a + "/weight", {{"Content-Type", "application/json"}},
                            R"({"weight": 5})");
  EXPECT_EQ(w.status, 409) << w.describe();
  EXPECT_EQ(source_nodes()[a], std::make_pair(1u, std::string("up")));

  // Drained by name: a's keys go where the ring without a says; no other key moves.
  Response drain = http_request(admin_, "POST", "/nodes/" + a + "/drain");
  ASSERT_EQ(drain.status, 200) << drain.describe();
  wait_nodes({{a, {1, "draining"}}, {b, {2, "up"}}, {c, {1, "up"}}});
  const auto without = expected({{b, 2}, {c, 1}}, ks);
  wait_routing(without);
  const auto got = route(ks);
  expect_routes(got, without);
  for (const auto& [k, n] : got) EXPECT_EQ(n != want.at(k), want.at(k) == "a") << k;
  ASSERT_EQ(http_request(admin_, "POST", "/nodes/" + a + "/undrain").status, 200);
  wait_nodes({{a, {1, "up"}}, {b, {2, "up"}}, {c, {1, "up"}}});

  // The command line resolves the source itself.
  std::vector<std::string> args = {"-c", config_path_, "--lookup"};
  const auto some = keys(200);
  args.insert(args.end(), some.begin(), some.end());
  Process lookup(std::string(RINGPROXY_BIN), args, dir_.path(), "lookup");
  auto st = lookup.wait();
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->describe(), "exit 0") << lookup.stderr_text();
  const auto ref = reference_map_weighted({{a, 1}, {b, 2}, {c, 1}}, some);
  std::istringstream out(lookup.stdout_text());
  std::string line;
  int lines = 0;
  while (std::getline(out, line)) {
    const std::string key = line.substr(0, line.find(' '));
    const size_t at = line.find("node=");
    ASSERT_NE(at, std::string::npos) << line;
    const std::string n = line.substr(at + 5, line.find(' ', at) - at - 5);
    EXPECT_EQ(n, ref.at(key)) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 200) << lookup.stdout_text();

  Process shares(std::string(RINGPROXY_BIN), {"-c", config_path_, "--shares"}, dir_.path(), "shares");
  st = shares.wait();
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->describe(), "exit 0") << shares.stderr_text();
  const std::string text = shares.stdout_text();
  EXPECT_NE(text.find("3 nodes"), std::string::npos) << text;
  EXPECT_NE(text.find("\n" + a + "  1  "), std::string::npos) << text;
  EXPECT_NE(text.find("\n" + b + "  2  "), std::string::npos) << text;
  EXPECT_NE(text.find("\n" + c + "  1  "), std::string::npos) << text;
}

// 7. Reloads: a [[discover]] source added joins when it answers; removed, its nodes
// leave at once (the reload's answer) and its keys go where the reference ring of what
// remains says, no other key moving; re-added, its nodes come back to the same places.
// A type "a" source whose port changes renames its nodes ADDRESS:NEWPORT. An admin
// drain of a discovered node outlives reloads that keep its source (as it is, or with
// its weight edited).
TEST_F(DiscoveryIntegration, ReloadAddsRemovesAndChangesSources) {
  const std::string a = add_backend("a"), b = add_backend("b");
  const uint16_t p1 = add_backends_on({"127.0.0.2", "127.0.0.3"}, "pool");
  const uint16_t p2 = add_backends_on({"127.0.0.2", "127.0.0.3"}, "pool2");
  ASSERT_NE(p1, 0);
  ASSERT_NE(p2, 0);
  ASSERT_TRUE(dns_.start({srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 1),
                          host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1"), host("pool.test", "127.0.0.2"),
                          host("pool.test", "127.0.0.3")}));
  const auto pool = [](uint16_t port) {
    return "\n[[discover]]\nname = \"pool.test\"\ntype = \"a\"\nport = " + std::to_string(port) + "\n";
  };
  const auto n = [](const char* ip, uint16_t port) { return std::string(ip) + ":" + std::to_string(port); };
  start_proxy(discover_srv());
  const NodeView srv_set = {{a, {1, "up"}}, {b, {1, "up"}}};
  wait_nodes(srv_set);
  EXPECT_FALSE(source_status("pool.test").is_object());
  const auto ks = keys(1500);
  const auto only_srv = expected({{a, 1}, {b, 1}}, ks);
  wait_routing(only_srv);

  // Added: its nodes join when it answers; only they take keys.
  ASSERT_NO_FATAL_FAILURE(reload(discover_srv() + pool(p1)));
  const NodeView pool_set = {{n("127.0.0.2", p1), {1, "up"}}, {n("127.0.0.3", p1), {1, "up"}}};
  wait_nodes(pool_set, "pool.test");
  EXPECT_EQ(source_nodes(), srv_set);
  const auto with_pool = expected({{a, 1}, {b, 1}, {n("127.0.0.2", p1), 1}, {n("127.0.0.3", p1), 1}}, ks);
  wait_routing(with_pool);
  const auto got1 = route(ks);
  expect_routes(got1, with_pool);
  for (const auto& [k, node] : got1) {
    EXPECT_EQ(node != only_srv.at(k), node.starts_with("pool-")) << k << ": was on " << only_srv.at(k);
  }
  const std::string fingerprint_with_pool = ring_fingerprint();

  // Removed: gone when the reload has answered, not at the next resolution.
  ASSERT_NO_FATAL_FAILURE(reload(discover_srv()));
  EXPECT_FALSE(source_status("pool.test").is_object()) << source_status("pool.test").dump();
  const json ring_now = admin_json("/ring");
  EXPECT_EQ(ring_now["nodes"].size(), 2u) << ring_now.dump();
  wait_routing(only_srv);
  const auto got2 = route(ks);
  expect_routes(got2, only_srv);
  for (const auto& [k, node] : got2) {
    EXPECT_EQ(node != got1.at(k), got1.at(k).starts_with("pool-")) << k << ": was on " << got1.at(k);
  }

  // Re-added: the same nodes in the same places.
  ASSERT_NO_FATAL_FAILURE(reload(discover_srv() + pool(p1)));
  wait_nodes(pool_set, "pool.test");
  EXPECT_EQ(ring_fingerprint(), fingerprint_with_pool);
  wait_routing(with_pool);
  expect_routes(route(ks), with_pool);

  // A drain of a discovered node, then the source's port changes: the pool's nodes are
  // renamed to the new port; a stays drained.
  ASSERT_EQ(http_request(admin_, "POST", "/nodes/" + a + "/drain").status, 200);
  wait_nodes({{a, {1, "draining"}}, {b, {1, "up"}}});
  ASSERT_NO_FATAL_FAILURE(reload(discover_srv() + pool(p2)));
  const NodeView pool2_set = {{n("127.0.0.2", p2), {1, "up"}}, {n("127.0.0.3", p2), {1, "up"}}};
  wait_nodes(pool2_set, "pool.test");
  EXPECT_EQ(source_nodes(), (NodeView{{a, {1, "draining"}}, {b, {1, "up"}}}));
  EXPECT_EQ(admin_json("/nodes/" + n("127.0.0.2", p1)).is_object(), false) << "the old name stays";
  const auto renamed = expected({{b, 1}, {n("127.0.0.2", p2), 1}, {n("127.0.0.3", p2), 1}}, ks);
  wait_routing(renamed);
  expect_routes(route(ks), renamed);

  // The same file again (the source kept as it is): still drained.
  ASSERT_NO_FATAL_FAILURE(reload(discover_srv() + pool(p2)));
  EXPECT_EQ(source_nodes(), (NodeView{{a, {1, "draining"}}, {b, {1, "up"}}}));
  const uint64_t ok_before = results(kSrv, "ok");
  ASSERT_TRUE(eventually([&] { return results(kSrv, "ok") >= ok_before + 2; }));
  EXPECT_EQ(source_nodes(), (NodeView{{a, {1, "draining"}}, {b, {1, "up"}}}));
  expect_routes(route(ks), renamed);

  // A drained node of the source a reload edits (its weight): the nodes keep their
  // names, take the new weight, and the drain stays.
  const std::string x2 = n("127.0.0.2", p2), x3 = n("127.0.0.3", p2);
  ASSERT_EQ(http_request(admin_, "POST", "/nodes/" + x2 + "/drain").status, 200);
  wait_nodes({{x2, {1, "draining"}}, {x3, {1, "up"}}}, "pool.test");
  ASSERT_NO_FATAL_FAILURE(reload(discover_srv() + pool(p2) + "weight = 2\n"));
  wait_nodes({{x2, {2, "draining"}}, {x3, {2, "up"}}}, "pool.test");
  EXPECT_EQ(source_nodes(), (NodeView{{a, {1, "draining"}}, {b, {1, "up"}}}));
  const auto reweighted = expected({{b, 1}, {x3, 2}}, ks);
  wait_routing(reweighted);
  expect_routes(route(ks), reweighted);
}

// 8. A configured [[backend]] by name removed by the admin API while its name is being
// resolved; then its record changes. The proxy forgets the name (no longer in
// GET /discovery "names") and serves on (this was a use after free: the agent's answer
// to a forgotten entry). Done a few times over (a reload brings it back) so that some
// removals land with a query in flight.
TEST_F(DiscoveryIntegration, AdminRemovalOfANamedBackendForgetsItsName) {
  const uint16_t port = add_backends_on({"127.0.0.2", "127.0.0.3"}, "cache");
  ASSERT_NE(port, 0);
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "fixed"));
  const uint16_t fixed_port = backends_.back()->port();
  backend_of_ = {{"fixed", "fixed"}, {"cache", "cache-127.0.0.2"}};
  ASSERT_TRUE(dns_.start({host("cache.test", "127.0.0.2"), host("fixed.test", "127.0.0.1")}));
  const std::string cache_address = "cache.test:" + std::to_string(port);
  const std::string body = "\n[[backend]]\nname = \"fixed\"\naddress = \"fixed.test:" + std::to_string(fixed_port) +
                           "\"\n\n[[backend]]\nname = \"cache\"\naddress = \"" + cache_address + "\"\n";
  start_proxy(body);
  const auto listed = [&](const std::string& name) {
    const json d = admin_json("/discovery");
    if (!d.is_object()) return true;  // no answer: counted as listed (the poll goes on)
    for (const json& x : d["names"]) {
      if (x["name"] == name) return true;
    }
    return false;
  };
  const auto ks = keys(500);
  std::map<std::string, std::string> all_fixed;
  for (const auto& k : ks) all_fixed[k] = "fixed";

  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string ip = round % 2 == 0 ? "127.0.0.2" : "127.0.0.3";
    json node;
    ASSERT_TRUE(eventually([&] {
      node = admin_json("/nodes/cache");
      return node.is_object() && node["state"] == "up" && node["resolved"] == json::array({ip});
    })) << node.dump() << "\n" << proxy_->describe();
    backend_of_["cache"] = "cache-" + ip;
    const auto both = expected({{"fixed", 1}, {"cache", 1}}, ks);
    wait_routing(both);

    Response del = http_request(admin_, "DELETE", "/nodes/cache");
    ASSERT_EQ(del.status, 200) << del.describe();
    // (EXPECT: a proxy that still follows the name is then to survive its change.)
    EXPECT_TRUE(eventually([&] { return !listed("cache.test"); }, Millis(3000))) << admin_json("/discovery").dump();
    // Its record changes meanwhile (the other address): nobody asks for it now.
    const std::string next_ip = round % 2 == 0 ? "127.0.0.3" : "127.0.0.2";
    ASSERT_TRUE(dns_.start({host("cache.test", next_ip), host("fixed.test", "127.0.0.1")}));
    const uint64_t ok_before = results("fixed.test", "ok");
    ASSERT_TRUE(eventually([&] { return results("fixed.test", "ok") >= ok_before + 3; }))
        << admin_json("/discovery").dump();
    ASSERT_TRUE(proxy_->running()) << proxy_->describe();
    EXPECT_FALSE(listed("cache.test"));
    wait_routing(all_fixed);
    expect_routes(route(ks), all_fixed);

    // Back by a reload of the file (which still has it; POST /nodes takes IP addresses
    // only): its name is followed again, at the new address.
    ASSERT_NO_FATAL_FAILURE(reload(body));
  }
  ASSERT_TRUE(proxy_->running()) << proxy_->describe();
  EXPECT_EQ(proxy_->stderr_text().find("AddressSanitizer"), std::string::npos) << proxy_->stderr_text();
}

// 9. A weight-0 SRV record is drained, not usable: when the best priority has only
// such records, the next priority serves.
TEST_F(DiscoveryIntegration, WeightZeroAtTheBestPriorityLetsTheNextServe) {
  const std::string a = add_backend("a"), b = add_backend("b");
  ASSERT_TRUE(dns_.start({srv("a.test", backend(0).port(), 10, 0), srv("b.test", backend(1).port(), 20, 5),
                          host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1")}));
  start_proxy(discover_srv());
  wait_nodes({{a, {0, "draining"}}, {b, {5, "up"}}});
  const json node = admin_json("/nodes/" + b);
  EXPECT_EQ(node["state"], "up") << node.dump();
  const auto ks = keys(500);
  std::map<std::string, std::string> all_b;
  for (const auto& k : ks) all_b[k] = "b";
  wait_routing(all_b);
  expect_routes(route(ks), all_b);
}

// 10. A type "a" source whose name has only an AAAA record: the node is "[::1]:PORT"
// and serves. Then the records' TTL grows (1 s to 3 s): the next resolution follows it
// (GET /discovery's next_in_seconds goes above 1.5 s, more than TTL 1 s allows).
TEST_F(DiscoveryIntegration, AaaaOnlyNameAndTtlChange) {
  DemoBackendOptions o;
  o.host = "::1";
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "v6", o));
  const uint16_t port = backend(0).port();
  const std::string node = "[::1]:" + std::to_string(port);
  backend_of_[node] = "v6";
  ASSERT_TRUE(dns_.start({host("v6.test", "::1")}));
  start_proxy("\n[[discover]]\nname = \"v6.test\"\ntype = \"a\"\nport = " + std::to_string(port) + "\n",
              /*hold_ms=*/600000, /*max_ttl_ms=*/10000);
  wait_nodes({{node, {1, "up"}}}, "v6.test");
  const json n = admin_json("/nodes/" + node);
  EXPECT_EQ(n["source"], "discover:v6.test") << n.dump();
  const auto ks = keys(200);
  std::map<std::string, std::string> all_v6;
  for (const auto& k : ks) all_v6[k] = "v6";
  wait_routing(all_v6);
  expect_routes(route(ks), all_v6);
  // TTL 1 s: asked again within a second.
  json st = source_status("v6.test");
  EXPECT_LE(st["next_in_seconds"].get<double>(), 1.0) << st.dump();

  dns_.set_ttl(3);
  ASSERT_TRUE(dns_.start({host("v6.test", "::1")}));
  ASSERT_TRUE(eventually([&] {
    st = source_status("v6.test");
    return st.is_object() && st["next_in_seconds"].get<double>() > 1.5;
  })) << st.dump();
  EXPECT_EQ(source_nodes("v6.test"), (NodeView{{node, {1, "up"}}}));
  expect_routes(route(ks), all_v6);
}

// 11. A discovered node whose process dies is taken out as a configured one is (README
// "Health"): at once, before a check has failed, every request is a 200 (a refused
// connect goes on to the next node of the ring, README "Retries") and its keys land
// where the reference ring without it says; then its checks, or those requests'
// failures (passive ejection), take it out, and no other key moves. Started again on
// its port, it is up and takes back exactly its keys.
TEST_F(DiscoveryIntegration, AKilledDiscoveredNodeLeavesAndReturnsWithItsKeys) {
  const std::string a = add_backend("a"), b = add_backend("b"), c = add_backend("c");
  ASSERT_TRUE(dns_.start({srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 1),
                          srv("c.test", backend(2).port(), 0, 2), host("a.test", "127.0.0.1"),
                          host("b.test", "127.0.0.1"), host("c.test", "127.0.0.1")}));
  // The requests for a's keys once it is dead fail there before going on: five in a row
  // eject it for eject_base_ms, 30 s by default; 1 s here, so that it returns soon.
  start_proxy_with_health("eject_base_ms = 1000\n", discover_srv());
  const NodeView all_up = {{a, {1, "up"}}, {b, {1, "up"}}, {c, {2, "up"}}};
  wait_nodes(all_up);
  const auto ks = keys(2000);
  const auto want = expected({{a, 1}, {b, 1}, {c, 2}}, ks);
  wait_routing(want);
  expect_routes(route(ks), want);

  const uint16_t port = backend(0).port();
  const size_t from = proxy_->output_size(Output::err);
  backend(0).process().kill();
  const auto without = expected({{b, 1}, {c, 2}}, ks);
  expect_routes(route(ks), without);
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=" + a + " up -> ", kDefaultTimeout, from))
      << proxy_->stderr_text().substr(from);
  NodeView now;
  ASSERT_TRUE(eventually([&] {
    now = source_nodes();
    return now.count(a) && (now[a].second == "down" || now[a].second == "ejected");
  })) << describe(now);
  EXPECT_EQ(now[b], std::make_pair(1u, std::string("up"))) << describe(now);
  EXPECT_EQ(now[c], std::make_pair(2u, std::string("up"))) << describe(now);
  const auto got = route(ks);
  expect_routes(got, without);
  int moved = 0;
  for (const auto& [k, n] : got) {
    if (n == want.at(k)) continue;
    ++moved;
    EXPECT_EQ(want.at(k), "a") << k << " moved from " << want.at(k) << " to " << n;
  }
  EXPECT_GT(moved, 250) << "a had too few keys";

  DemoBackendOptions same;
  same.port = port;
  backends_[0] = std::make_unique<DemoBackend>(dir_, "a", same);
  wait_nodes(all_up);
  wait_routing(want);
  expect_routes(route(ks), want);
}

// 12. Slow start (health.slow_start_ms) treats discovered nodes as configured ones
// (README "Like configured nodes"; "Health": a returning node, and one added at run
// time, takes back a growing, fixed subset of its keys, from 10%). The nodes the proxy
// starts with serve all their keys at once, whether from the file or from the first
// DNS answers. A discovered node and a configured one that return (killed, then started
// on their ports) and a record added at run time each serve about 10% of their keys,
// the same ones on a second pass; the others go on to the next node that is not
// ramping (every ramp here is at its floor, and a key's admission depends on the key
// alone: a key one ramping node turns away, all do).
TEST_F(DiscoveryIntegration, DiscoveredNodesSlowStartLikeConfiguredOnes) {
  const std::string a = add_backend("a"), b = add_backend("b"), d = add_backend("d");
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "fixed"));
  backend_of_["fixed"] = "fixed";
  const auto records = [&](bool with_d) {
    std::vector<std::string> r = {srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 1),
                                  host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1"),
                                  host("d.test", "127.0.0.1")};
    if (with_d) r.push_back(srv("d.test", backend(2).port(), 0, 1));
    return r;
  };
  ASSERT_TRUE(dns_.start(records(false)));
  // Ten minutes: a returning node stays at the ramp's floor, 10% of its keys, for the
  // whole test (as in HealthFixture.SlowStartReturnsAGrowingSubsetOfKeys).
  start_proxy_with_health("slow_start_ms = 600000\n", discover_srv() + "\n[[backend]]\nname = \"fixed\"\naddress = \"" +
                                                           backend(3).address() + "\"\n");
  wait_nodes({{a, {1, "up"}}, {b, {1, "up"}}});
  const auto ks = keys(3000);
  const auto at_start = expected({{a, 1}, {b, 1}, {"fixed", 1}}, ks);
  wait_routing(at_start);
  expect_routes(route(ks), at_start);

  // Backend i (ring node `node`) dies, is down, and comes back on its port, ramping.
  const auto bounce = [&](size_t i, const std::string& node) {
    const uint16_t port = backend(i).port();
    const std::string demo = backend(i).name();
    size_t from = proxy_->output_size(Output::err);
    backend(i).process().kill();
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=" + node + " up -> down", kDefaultTimeout, from))
        << proxy_->stderr_text().substr(from);
    from = proxy_->output_size(Output::err);
    DemoBackendOptions same;
    same.port = port;
    backends_[i] = std::make_unique<DemoBackend>(dir_, demo, same);
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=" + node + " down -> up", kDefaultTimeout, from))
        << proxy_->stderr_text().substr(from);
    const std::string said = proxy_->stderr_text().substr(from);
    const size_t at = said.find("health: node=" + node + " down -> up");
    const std::string line = said.substr(at, said.find('\n', at) - at);
    EXPECT_NE(line.find("slow start over 600000 ms"), std::string::npos) << line;
  };
  // Requests land as slow start says: a key of a node not ramping where `full` (the
  // reference ring of every node) says; a key of a ramping node there too, or where
  // `rest` (the ring of the nodes not ramping) says. Counts each ramping node's keys
  // and those it served; the first few keys elsewhere go to *wrong.
  struct Share {
    int own = 0, served = 0;
  };
  const auto landed = [&](const std::map<std::string, std::string>& got, const std::map<std::string, std::string>& full,
                          const std::map<std::string, std::string>& rest, const std::set<std::string>& ramping,
                          std::map<std::string, Share>* shares, std::string* wrong) {
    int bad = 0;
    shares->clear();
    for (const auto& [k, owner] : full) {
      const std::string& g = got.at(k);
      const bool fine = ramping.count(owner) ? g == owner || g == rest.at(k) : g == owner;
      if (ramping.count(owner)) {
        ++(*shares)[owner].own;
        if (g == owner) ++(*shares)[owner].served;
      }
      if (!fine && ++bad <= 5) *wrong += k + ": " + g + ", want " + owner + " or " + rest.at(k) + "\n";
    }
    return bad;
  };
  const auto expect_ramps = [&](const std::map<std::string, std::string>& full,
                                const std::map<std::string, std::string>& rest, const std::set<std::string>& ramping) {
    std::map<std::string, std::string> got;
    std::map<std::string, Share> shares;
    std::string wrong;
    // Polled until the workers have the routing the admin API shows.
    ASSERT_TRUE(eventually([&] {
      wrong.clear();
      got = route(ks);
      return landed(got, full, rest, ramping, &shares, &wrong) == 0;
    })) << wrong;
    for (const std::string& n : ramping) {
      const Share& s = shares[n];
      ASSERT_GT(s.own, 400) << n;
      const double fraction = static_cast<double>(s.served) / s.own;
      EXPECT_GT(fraction, 0.04) << n << ": " << s.served << " of " << s.own;
      EXPECT_LT(fraction, 0.2) << n << ": " << s.served << " of " << s.own;
    }
    // The same keys on a second pass: the subset is fixed.
    expect_routes(route(ks), got);
  };

  // a (discovered), then fixed (configured) come back: they ramp alike.
  ASSERT_NO_FATAL_FAILURE(bounce(0, a));
  ASSERT_NO_FATAL_FAILURE(expect_ramps(at_start, expected({{b, 1}, {"fixed", 1}}, ks), {"a"}));
  ASSERT_NO_FATAL_FAILURE(bounce(3, "fixed"));
  const auto only_b = expected({{b, 1}}, ks);
  ASSERT_NO_FATAL_FAILURE(expect_ramps(at_start, only_b, {"a", "fixed"}));

  // A record added at run time: a cold node, ramping too.
  ASSERT_TRUE(dns_.start(records(true)));
  wait_nodes({{a, {1, "up"}}, {b, {1, "up"}}, {d, {1, "up"}}});
  ASSERT_NO_FATAL_FAILURE(
      expect_ramps(expected({{a, 1}, {b, 1}, {d, 1}, {"fixed", 1}}, ks), only_b, {"a", "fixed", "d"}));
}

// 12b. Slow start in a pool whose every node comes from a source that first answers
// after the start (its DNS server was down): the nodes arrive together, with no other
// node to take the keys a ramp turns away. They serve every key at once, where the
// reference ring says, each request a 200 (not the 503 of "no usable node" for the
// keys no ramp admits yet).
TEST_F(DiscoveryIntegration, NodesArrivingTogetherServeEveryKeyWithSlowStart) {
  const std::string a = add_backend("a"), b = add_backend("b"), c = add_backend("c");
  // No DNS server yet: the resolver's port answers nothing (refused).
  start_proxy_with_health("slow_start_ms = 600000\n", discover_srv());
  ASSERT_TRUE(dns_.start({srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 1),
                          srv("c.test", backend(2).port(), 0, 1), host("a.test", "127.0.0.1"),
                          host("b.test", "127.0.0.1"), host("c.test", "127.0.0.1")}));
  wait_nodes({{a, {1, "up"}}, {b, {1, "up"}}, {c, {1, "up"}}});
  const auto ks = keys(1500);
  const auto want = expected({{a, 1}, {b, 1}, {c, 1}}, ks);
  wait_routing(want);
  expect_routes(route(ks), want);
}

// 13. An admin drain of a discovered node lasts while its record exists (README "Like
// configured nodes") and no longer: answers that keep the record keep the drain; the
// record gone, the node is gone (GET /nodes/NAME and a drain of it are 404, its
// metrics gone); the record back, the node is a new one: up, not drained, with exactly
// its keys back.
TEST_F(DiscoveryIntegration, ADrainEndsWhenItsRecordLeaves) {
  const std::string a = add_backend("a"), b = add_backend("b"), c = add_backend("c");
  const auto records = [&](bool with_a) {
    std::vector<std::string> r = {srv("b.test", backend(1).port(), 0, 1), srv("c.test", backend(2).port(), 0, 1),
                                  host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1"),
                                  host("c.test", "127.0.0.1")};
    if (with_a) r.push_back(srv("a.test", backend(0).port(), 0, 1));
    return r;
  };
  ASSERT_TRUE(dns_.start(records(true)));
  start_proxy(discover_srv());
  const NodeView all_up = {{a, {1, "up"}}, {b, {1, "up"}}, {c, {1, "up"}}};
  wait_nodes(all_up);
  const auto ks = keys(1500);
  const auto want = expected({{a, 1}, {b, 1}, {c, 1}}, ks);
  const auto without = expected({{b, 1}, {c, 1}}, ks);
  wait_routing(want);
  const std::string draining_a = "ringproxy_backend_draining{pool=\"default\",backend=\"" + a + "\"}";

  Response drain = http_request(admin_, "POST", "/nodes/" + a + "/drain");
  ASSERT_EQ(drain.status, 200) << drain.describe();
  const NodeView drained = {{a, {1, "draining"}}, {b, {1, "up"}}, {c, {1, "up"}}};
  wait_nodes(drained);
  // Answers that list it: it stays drained.
  const uint64_t ok_before = results(kSrv, "ok");
  ASSERT_TRUE(eventually([&] { return results(kSrv, "ok") >= ok_before + 3; }));
  EXPECT_EQ(source_nodes(), drained);
  EXPECT_EQ(metric_value(scrape(), draining_a), 1.0);
  wait_routing(without);
  expect_routes(route(ks), without);

  // Its record leaves: the node goes, and its drain with it.
  ASSERT_TRUE(dns_.start(records(false)));
  wait_nodes({{b, {1, "up"}}, {c, {1, "up"}}});
  EXPECT_EQ(http_get(admin_, "/nodes/" + a).status, 404);
  EXPECT_EQ(http_request(admin_, "POST", "/nodes/" + a + "/drain").status, 404);
  EXPECT_FALSE(metric_value(scrape(), draining_a).has_value()) << scrape();
  expect_routes(route(ks), without);

  // Its record back: a new node, up, with its keys.
  ASSERT_TRUE(dns_.start(records(true)));
  wait_nodes(all_up);
  const json node = admin_json("/nodes/" + a);
  EXPECT_EQ(node["state"], "up") << node.dump();
  EXPECT_EQ(metric_value(scrape(), draining_a), 0.0);
  wait_routing(want);
  expect_routes(route(ks), want);
}

// 14. A [[backend]] by name whose DNS fails (the server stopped) keeps its last
// addresses for dns.hold_ms (SPEC: "when resolution fails the last good address is kept
// for dns.hold_ms"; README "Named nodes"): up, serving its keys, the name holding in
// GET /discovery. Past the hold its addresses are dropped, with an error line, as a
// source's set is: the node is unresolved (README: "down, its keys on the next nodes,
// never a 5xx for it"), and every request is a 200. It keeps its ring place all along:
// the DNS back, it resolves again and takes back exactly its keys.
TEST_F(DiscoveryIntegration, ANamedBackendHoldsItsAddressesThenIsUnresolved) {
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "fixed"));
  const uint16_t port = start_backends_on_one_port(dir_, {"127.0.0.2"}, "cache-at", &backends_);
  ASSERT_NE(port, 0);
  backend_of_ = {{"fixed", "fixed"}, {"cache", "cache-at-127.0.0.2"}};
  const std::vector<std::string> records = {host("cache.test", "127.0.0.2")};
  ASSERT_TRUE(dns_.start(records));
  // 4 s: time to look at the node during the hold, on a loaded machine too.
  start_proxy("\n[[backend]]\nname = \"fixed\"\naddress = \"" + backend(0).address() +
                  "\"\n\n[[backend]]\nname = \"cache\"\naddress = \"cache.test:" + std::to_string(port) + "\"\n",
              /*hold_ms=*/4000);
  json node;
  const auto node_becomes = [&](const std::string& state, const json& resolved) {
    return eventually([&] {
      node = admin_json("/nodes/cache");
      return node.is_object() && node["state"] == state && node["resolved"] == resolved;
    });
  };
  const auto name_status = [&] {
    const json d = admin_json("/discovery");
    if (d.is_object()) {
      for (const json& n : d["names"]) {
        if (n["name"] == "cache.test") return n;
      }
    }
    return json();
  };
  ASSERT_TRUE(node_becomes("up", json::array({"127.0.0.2"}))) << node.dump() << "\n" << proxy_->describe();
  const std::string fingerprint = ring_fingerprint();
  const auto ks = keys(1000);
  const auto want = expected({{"fixed", 1}, {"cache", 1}}, ks);
  wait_routing(want);
  expect_routes(route(ks), want);

  // Held.
  const size_t from = proxy_->output_size(Output::err);
  dns_.stop();
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "keeping the last good 1 address for up to dns.hold_ms (4000 ms)",
                                      kDefaultTimeout, from))
      << proxy_->stderr_text().substr(from);
  json st = name_status();
  EXPECT_EQ(st["holding"], true) << st.dump();
  EXPECT_TRUE(st["last_error"].is_string()) << st.dump();
  node = admin_json("/nodes/cache");
  EXPECT_EQ(node["state"], "up") << node.dump();
  EXPECT_EQ(node["resolved"], json::array({"127.0.0.2"})) << node.dump();
  expect_routes(route(ks), want);
  // (All of the above within the hold.)
  EXPECT_EQ(proxy_->stderr_text().find("dropped here", from), std::string::npos) << "the hold ended too soon to look";

  // Past the hold: unresolved, in its ring place, its keys on fixed.
  ASSERT_TRUE(proxy_->wait_for_output(
      Output::err, "for longer than dns.hold_ms (4000 ms): its 1 address is dropped here", kDefaultTimeout, from))
      << proxy_->stderr_text().substr(from);
  ASSERT_TRUE(node_becomes("unresolved", json::array())) << node.dump();
  EXPECT_EQ(node["address"], "cache.test:" + std::to_string(port)) << node.dump();
  EXPECT_EQ(ring_fingerprint(), fingerprint);
  st = name_status();
  EXPECT_EQ(st["holding"], false) << st.dump();
  EXPECT_TRUE(st["last_error"].is_string()) << st.dump();
  std::map<std::string, std::string> all_fixed;
  for (const auto& k : ks) all_fixed[k] = "fixed";
  wait_routing(all_fixed);
  expect_routes(route(ks), all_fixed);

  // Resolving again: the same node, the same keys.
  ASSERT_TRUE(dns_.start(records));
  ASSERT_TRUE(node_becomes("up", json::array({"127.0.0.2"}))) << node.dump() << "\n" << proxy_->describe();
  EXPECT_EQ(ring_fingerprint(), fingerprint);
  wait_routing(want);
  expect_routes(route(ks), want);
}

// 15. GET /metrics counts the answers of a [[discover]] source and of a backend's name
// by result (ringproxy_dns_resolutions_total{source,result}) and says which hold
// (ringproxy_dns_holding{source}). "ok" grows while the server answers; stopped, a
// failure ("error" or "timeout": what c-ares makes of a closed port) appears and grows
// while "ok" stands still, and both hold; a missing SRV name counts "nxdomain" while the
// name answers "ok" again; answers again, the source's "ok" grows and no one holds.
// The counts are GET /discovery's.
TEST_F(DiscoveryIntegration, ResolutionsAreCountedInTheMetrics) {
  const std::string a = add_backend("a");
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "cache"));
  const std::vector<std::string> hosts = {host("a.test", "127.0.0.1"), host("cache.test", "127.0.0.1")};
  std::vector<std::string> good = hosts;
  good.push_back(srv("a.test", backend(0).port(), 0, 1));
  ASSERT_TRUE(dns_.start(good));
  start_proxy(discover_srv() + "\n[[backend]]\nname = \"cache\"\naddress = \"cache.test:" +
              std::to_string(backend(1).port()) + "\"\n");
  const std::string name = "cache.test";
  const std::vector<std::string> both = {kSrv, name};
  const std::vector<std::string> failed = {"error", "timeout"};
  const auto holding = [](const std::string& text, const std::string& n) {
    return metric_value(text, "ringproxy_dns_holding{source=\"" + n + "\"}");
  };
  std::string m;
  std::map<std::string, double> ok, bad;
  // Answers every 200 ms or so (TTL 1 s, max_ttl_ms 200): "ok" grows.
  ASSERT_TRUE(eventually([&] {
    m = scrape();
    for (const std::string& n : both) ok[n] = dns_count(m, n, {"ok"});
    return ok[kSrv] >= 1 && ok[name] >= 1;
  })) << m;
  EXPECT_NE(m.find("# TYPE ringproxy_dns_resolutions_total counter"), std::string::npos) << m;
  EXPECT_NE(m.find("# TYPE ringproxy_dns_holding gauge"), std::string::npos) << m;
  for (const std::string& n : both) EXPECT_EQ(holding(m, n), 0.0) << n;
  ASSERT_TRUE(eventually([&] {
    m = scrape();
    return dns_count(m, kSrv, {"ok"}) >= ok[kSrv] + 2 && dns_count(m, name, {"ok"}) >= ok[name] + 2;
  })) << m;
  // GET /discovery's counts, read after the scrape: as many or more.
  for (const std::string& n : both) EXPECT_GE(results(n, "ok"), dns_count(m, n, {"ok"})) << n;

  // Stopped: failures, counted and growing; no "ok"; holding.
  dns_.stop();
  ASSERT_TRUE(eventually([&] {
    m = scrape();
    for (const std::string& n : both) bad[n] = dns_count(m, n, failed);
    return bad[kSrv] >= 1 && bad[name] >= 1 && holding(m, kSrv) == 1.0 && holding(m, name) == 1.0;
  })) << m;
  for (const std::string& n : both) ok[n] = dns_count(m, n, {"ok"});
  ASSERT_TRUE(eventually([&] {
    m = scrape();
    return dns_count(m, kSrv, failed) >= bad[kSrv] + 2 && dns_count(m, name, failed) >= bad[name] + 2;
  })) << m;
  for (const std::string& n : both) {
    EXPECT_EQ(dns_count(m, n, {"ok"}), ok[n]) << n;
    EXPECT_GE(results(n, "error") + results(n, "timeout"), dns_count(m, n, failed)) << n;
  }

  // The SRV name gone (NXDOMAIN), the host still there.
  ASSERT_TRUE(dns_.start(hosts));
  ASSERT_TRUE(eventually([&] {
    m = scrape();
    return dns_count(m, kSrv, {"nxdomain"}) >= 2 && dns_count(m, name, {"ok"}) >= ok[name] + 2 &&
           holding(m, name) == 0.0;
  })) << m;
  EXPECT_EQ(holding(m, kSrv), 1.0);
  EXPECT_EQ(dns_count(m, kSrv, {"ok"}), ok[kSrv]);

  // Good answers again.
  ASSERT_TRUE(dns_.start(good));
  ASSERT_TRUE(eventually([&] {
    m = scrape();
    return dns_count(m, kSrv, {"ok"}) >= ok[kSrv] + 2 && holding(m, kSrv) == 0.0 && holding(m, name) == 0.0;
  })) << m;
  EXPECT_GE(results(kSrv, "nxdomain"), dns_count(m, kSrv, {"nxdomain"}));
}

// 16. Where each node comes from, seen from outside (README "Seen from outside"):
// GET /nodes gives each node's `source` ("config" for the file's, "discover:NAME" for
// a source's) and its `resolved` addresses (an SRV node's target's, a named backend's;
// none for an IP address), and the status page (GET /) shows the source, the address
// and the state in each node's row.
TEST_F(DiscoveryIntegration, NodesAndTheStatusPageShowEachNodesSource) {
  const std::string a = add_backend("a"), b = add_backend("b");
  backends_.push_back(std::make_unique<DemoBackend>(dir_, "fixed"));
  const uint16_t port = start_backends_on_one_port(dir_, {"127.0.0.2", "127.0.0.3"}, "at", &backends_);
  ASSERT_NE(port, 0);
  ASSERT_TRUE(dns_.start({srv("a.test", backend(0).port(), 0, 1), srv("b.test", backend(1).port(), 0, 1),
                          host("a.test", "127.0.0.1"), host("b.test", "127.0.0.1"), host("cache.test", "127.0.0.2"),
                          host("pool.test", "127.0.0.3")}));
  const std::string p = std::to_string(port);
  const std::string pool_node = "127.0.0.3:" + p;
  start_proxy(discover_srv() + "\n[[discover]]\nname = \"pool.test\"\ntype = \"a\"\nport = " + p +
              "\n\n[[backend]]\nname = \"fixed\"\naddress = \"" + backend(2).address() +
              "\"\n\n[[backend]]\nname = \"cache\"\naddress = \"cache.test:" + p + "\"\n");
  wait_nodes({{a, {1, "up"}}, {b, {1, "up"}}});
  wait_nodes({{pool_node, {1, "up"}}}, "pool.test");
  json cache;
  ASSERT_TRUE(eventually([&] {
    cache = admin_json("/nodes/cache");
    return cache.is_object() && cache["state"] == "up";
  })) << cache.dump();

  struct Want {
    std::string name, address, source;
    json resolved;
  };
  const std::string srv_source = std::string("discover:") + kSrv;
  const std::vector<Want> wants = {
      {a, a, srv_source, json::array({"127.0.0.1"})},
      {b, b, srv_source, json::array({"127.0.0.1"})},
      {pool_node, pool_node, "discover:pool.test", json::array()},
      {"fixed", backend(2).address(), "config", json::array()},
      {"cache", "cache.test:" + p, "config", json::array({"127.0.0.2"})},
  };
  const json all = admin_json("/nodes");
  ASSERT_TRUE(all.is_object());
  EXPECT_EQ(all["nodes"].size(), wants.size()) << all.dump();
  Response page = http_get(admin_, "/");
  ASSERT_EQ(page.status, 200) << page.describe();
  EXPECT_NE(page.header("Content-Type").find("text/html"), std::string::npos) << page.describe();
  for (const Want& w : wants) {
    SCOPED_TRACE(w.name);
    const json n = listed_node(w.name);
    ASSERT_TRUE(n.is_object()) << all.dump();
    EXPECT_EQ(n["source"], w.source) << n.dump();
    EXPECT_EQ(n["resolved"], w.resolved) << n.dump();
    EXPECT_EQ(n["address"], w.address) << n.dump();
    EXPECT_EQ(n["state"], "up") << n.dump();
    EXPECT_EQ(admin_json("/nodes/" + w.name)["source"], w.source);

    const std::string row = status_row(page.body, w.name);
    ASSERT_FALSE(row.empty()) << page.body;
    EXPECT_NE(row.find("</span>" + w.name + "</td>"), std::string::npos) << row;
    EXPECT_NE(row.find("<td>" + w.address + "</td><td>" + w.source + "</td><td class=\"up\">up</td>"),
              std::string::npos)
        << row;
  }
}

}  // namespace
}  // namespace ringproxy::integration
