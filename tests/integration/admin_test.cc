// The admin endpoint end to end (SPEC "Admin HTTP endpoint"): a real ringproxy with
// demo backends; routing after each mutation checked against the reference placement
// (tools/ring_reference.py), /metrics checked with a real Prometheus parser
// (Debian's python3-prometheus-client).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

using nlohmann::json;


std::vector<std::string> keys(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("/obj/" + std::to_string(i));
  return out;
}

class AdminFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* n : {"a-1", "a-2", "a-3"}) backends_.push_back(std::make_unique<DemoBackend>(dir_, n));
    extra_ = std::make_unique<DemoBackend>(dir_, "a-4");
  }

  std::string config(const std::string& admin_extra = "", bool with_fourth = false) {
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 2\n"
      << "[admin]\nlisten = \"127.0.0.1:" << admin_port_ << "\"\n" << admin_extra;
    for (const auto& b : backends_) {
      c << "\n[[backend]]\nname = \"" << b->name() << "\"\naddress = \"" << b->address() << "\"\n";
    }
    if (with_fourth) c << "\n[[backend]]\nname = \"a-4\"\naddress = \"" << extra_->address() << "\"\n";
    return c.str();
  }

  void start(const std::string& admin_extra = "") {
    port_ = free_port();
    admin_port_ = free_port();
    path_ = dir_.write_file("ringproxy.toml", config(admin_extra));
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", path_},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  Response admin(std::string_view method, std::string_view target, std::string_view body = {},
                 Headers headers = {}) {
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return http_request(admin_port_, method, target, headers, body);
  }

  json admin_json(std::string_view method, std::string_view target, int expect_status, std::string_view body = {},
                  Headers headers = {}) {
    Response r = admin(method, target, body, headers);
    EXPECT_EQ(r.status, expect_status) << method << " " << target << ": " << r.describe();
    EXPECT_EQ(r.header("Content-Type"), "application/json");
    try {
      return json::parse(r.body);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not JSON: " << r.body;
      return json();
    }
  }

  // Routes every key through the proxy and compares with the reference for `nodes`.
  void expect_routing(const std::vector<std::string>& nodes, int count = 300) {
    const auto ks = keys(count);
    const auto expected = reference_map(nodes, ks);
    Conn conn("127.0.0.1", port_);
    int wrong = 0;
    for (const auto& k : ks) {
      Response r = conn.request("GET", k);
      ASSERT_EQ(r.status, 200) << r.describe();
      wrong += r.header("X-Backend") != expected.at(k);
    }
    EXPECT_EQ(wrong, 0) << "keys routed otherwise than the ring of " << nodes.size() << " nodes says";
  }

  TempDir dir_;
  std::vector<std::unique_ptr<DemoBackend>> backends_;
  std::unique_ptr<DemoBackend> extra_;
  uint16_t port_ = 0, admin_port_ = 0;
  std::string path_;
  std::unique_ptr<Process> proxy_;
};

TEST_F(AdminFixture, HealthzNodesAndRing) {
  start();
  Response h = admin("GET", "/healthz");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "ok\n");
  json nodes = admin_json("GET", "/nodes", 200);
  ASSERT_EQ(nodes["nodes"].size(), 3u);
  double total = 0;
  for (const json& n : nodes["nodes"]) {
    for (const char* field : {"name", "address", "weight", "state", "in_flight", "requests", "failures", "share",
                              "response_ms_mean"}) {
      EXPECT_TRUE(n.contains(field)) << field;
    }
    EXPECT_TRUE(n["response_ms_mean"].is_null()) << "no request yet";
    EXPECT_EQ(n["state"], "up");
    total += n["share"].get<double>();
  }
  EXPECT_NEAR(total, 1.0, 1e-9);
  json one = admin_json("GET", "/nodes/a-2", 200);
  EXPECT_EQ(one["name"], "a-2");
  EXPECT_EQ(one["address"], backends_[1]->address());
  EXPECT_EQ(admin_json("GET", "/nodes/nope", 404)["error"], "no node named \"nope\"");
  json ring = admin_json("GET", "/ring", 200);
  EXPECT_EQ(ring["points"], 480);
  EXPECT_EQ(ring["fingerprint"].get<std::string>().size(), 32u);
  EXPECT_EQ(admin_json("POST", "/ring", 405)["error"], "method not allowed; allowed: GET, HEAD");
  EXPECT_EQ(admin("GET", "/nothing").status, 404);
}

TEST_F(AdminFixture, LookupMatchesTheReference) {
  start();
  const auto ks = keys(40);
  const auto expected = reference_map({"a-1", "a-2", "a-3"}, ks);
  for (const auto& k : ks) {
    json j = admin_json("GET", "/ring/lookup?key=" + k, 200);
    EXPECT_EQ(j["key"], k);
    EXPECT_EQ(j["node"], expected.at(k));
    EXPECT_EQ(j["hash"].get<std::string>().size(), 16u);
    EXPECT_EQ(j["fallbacks"].size(), 2u);
  }
  EXPECT_EQ(admin_json("GET", "/ring/lookup", 400)["error"], "missing ?key=");
  // Percent-encoded keys are decoded.
  EXPECT_EQ(admin_json("GET", "/ring/lookup?key=%2Fobj%2F3", 200)["node"], expected.at("/obj/3"));
}

TEST_F(AdminFixture, AddRemoveMoveOnlyTheirKeys) {
  start();
  expect_routing({"a-1", "a-2", "a-3"});
  const std::string fingerprint = admin_json("GET", "/ring", 200)["fingerprint"];
  json added = admin_json("POST", "/nodes", 201, json{{"name", "a-4"}, {"address", extra_->address()}}.dump());
  EXPECT_EQ(added["name"], "a-4");
  EXPECT_EQ(added["state"], "up");
  expect_routing({"a-1", "a-2", "a-3", "a-4"});
  EXPECT_EQ(admin_json("POST", "/nodes", 409, json{{"name", "a-4"}, {"address", "127.0.0.1:1"}}.dump())["error"],
            "a node named \"a-4\" exists");
  EXPECT_EQ(admin_json("DELETE", "/nodes/a-4", 200)["removed"], "a-4");
  expect_routing({"a-1", "a-2", "a-3"});
  // The same nodes again: the same ring.
  EXPECT_EQ(admin_json("GET", "/ring", 200)["fingerprint"], fingerprint);
  EXPECT_EQ(admin("DELETE", "/nodes/a-4").status, 404);
}

TEST_F(AdminFixture, InvalidInputIsRefusedWithTheReason) {
  start();
  // A DNS name is an address (followed as a [[backend]]'s is); this is neither.
  EXPECT_EQ(admin_json("POST", "/nodes", 400, R"({"name": "x", "address": "no_where:1"})")["error"],
            "invalid address \"no_where:1\": not an IP address nor a DNS name");
  EXPECT_EQ(admin_json("POST", "/nodes", 400, R"({"name": "bad name", "address": "127.0.0.1:5"})")["error"],
            "invalid name \"bad name\": use letters, digits and - . _ ~ : [ ] only");
  EXPECT_EQ(admin_json("POST", "/nodes", 400, R"({"name": "x", "address": "127.0.0.1:5", "weight": -1})")["error"],
            "\"weight\" must be between 0 and 1000, got -1");
  EXPECT_EQ(admin_json("POST", "/nodes", 400, R"({"name": "x", "address": "127.0.0.1:5", "colour": 1})")["error"],
            "unknown field \"colour\"");
  const std::string bad = admin_json("POST", "/nodes", 400, R"({"name": )")["error"];
  EXPECT_EQ(bad.rfind("invalid JSON: ", 0), 0u) << bad;
  EXPECT_EQ(admin_json("POST", "/nodes", 400, "[1, 2]")["error"], "expected a JSON object");
  Response big = admin("POST", "/nodes", std::string(70000, ' '));
  EXPECT_EQ(big.status, 413) << big.describe();
  EXPECT_EQ(admin_json("PUT", "/nodes/a-1/weight", 400, R"({"weight": "two"})")["error"],
            "\"weight\" must be an integer");
}

TEST_F(AdminFixture, ProtocolIsShownAndTakenOnAdd) {
  // SPEC "HTTP/2 and gRPC": a node's protocol, as a [[backend]] has it. The added nodes
  // listen nowhere (port 1) and are sent no request: only what the API says is checked.
  start();
  EXPECT_EQ(admin_json("GET", "/nodes/a-1", 200)["protocol"], "http1");
  const json all = admin_json("GET", "/nodes", 200);  // kept: a range-for over a temporary's member dangles
  for (const json& n : all["nodes"]) EXPECT_EQ(n["protocol"], "http1") << n.dump();
  json h2c = admin_json("POST", "/nodes", 201,
                        json{{"name", "p-h2c"}, {"address", "127.0.0.1:1"}, {"protocol", "h2c"}}.dump());
  EXPECT_EQ(h2c["protocol"], "h2c");
  EXPECT_EQ(h2c["tls"], false);
  json h2 = admin_json(
      "POST", "/nodes", 201,
      json{{"name", "p-h2"}, {"address", "127.0.0.1:2"}, {"tls", true}, {"protocol", "h2"}}.dump());
  EXPECT_EQ(h2["protocol"], "h2");
  EXPECT_EQ(h2["tls"], true);
  EXPECT_EQ(admin_json("POST", "/nodes", 201,
                       json{{"name", "p-h1"}, {"address", "127.0.0.1:3"}, {"protocol", "http1"}}.dump())["protocol"],
            "http1");
  EXPECT_EQ(admin_json("GET", "/nodes/p-h2c", 200)["protocol"], "h2c");
  EXPECT_EQ(admin_json("GET", "/nodes/p-h2", 200)["protocol"], "h2");

  // Refused as the config file refuses it, naming why; nothing is added.
  const auto refused = [&](const json& body) {
    json b = body;
    b["name"] = "x";
    b["address"] = "127.0.0.1:4";
    return admin_json("POST", "/nodes", 400, b.dump())["error"];
  };
  EXPECT_EQ(refused({{"protocol", "h3"}}), "invalid protocol: expected http1, h2c or h2, got \"h3\"");
  EXPECT_EQ(refused({{"protocol", 2}}), "\"protocol\" must be a string");
  EXPECT_EQ(refused({{"protocol", "h2"}}),
            "\"protocol\": \"h2\" is HTTP/2 over TLS: add \"tls\": true, or use \"h2c\" for cleartext");
  EXPECT_EQ(refused({{"protocol", "h2"}, {"tls", false}}),
            "\"protocol\": \"h2\" is HTTP/2 over TLS: add \"tls\": true, or use \"h2c\" for cleartext");
  EXPECT_EQ(refused({{"protocol", "h2c"}, {"tls", true}}),
            "\"protocol\": \"h2c\" is cleartext HTTP/2: use \"h2\" with \"tls\": true");
  EXPECT_EQ(admin("GET", "/nodes/x").status, 404);
  EXPECT_EQ(admin_json("GET", "/nodes", 200)["nodes"].size(), 6u);
}

TEST_F(AdminFixture, DrainSkipsAndUndrainRestoresExactly) {
  start();
  json drained = admin_json("POST", "/nodes/a-2/drain", 200);
  EXPECT_EQ(drained["state"], "draining");
  expect_routing({"a-1", "a-3"});
  json lookup = admin_json("GET", "/ring/lookup?key=/obj/1", 200);
  EXPECT_NE(lookup["node"], "a-2");
  admin_json("POST", "/nodes/a-2/undrain", 200);
  expect_routing({"a-1", "a-2", "a-3"});
  EXPECT_EQ(admin("GET", "/nodes/a-2/drain").status, 405);
}

TEST_F(AdminFixture, WeightChangesShare) {
  start();
  json j = admin_json("PUT", "/nodes/a-1/weight", 200, R"({"weight": 3})");
  EXPECT_EQ(j["weight"], 3);
  EXPECT_GT(j["share"].get<double>(), 0.45);
  json zero = admin_json("PUT", "/nodes/a-1/weight", 200, R"({"weight": 0})");
  EXPECT_EQ(zero["share"], 0.0);
  EXPECT_EQ(zero["state"], "draining");
  expect_routing({"a-2", "a-3"});
}

TEST_F(AdminFixture, TokenGuardsMutationsOnly) {
  start("token = \"0123456789abcdef\"\n");
  EXPECT_EQ(admin("GET", "/nodes").status, 200);
  Response none = admin("POST", "/nodes/a-1/drain");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(admin("POST", "/nodes/a-1/drain", {}, {{"Authorization", "Bearer 0123456789abcdeX"}}).status, 401);
  EXPECT_EQ(admin("POST", "/nodes/a-1/drain", {}, {{"Authorization", "Bearer 0123456789abcde"}}).status, 401);
  EXPECT_EQ(admin("POST", "/nodes/a-1/drain", {}, {{"Authorization", "Basic 0123456789abcdef"}}).status, 401);
  EXPECT_EQ(admin("POST", "/nodes/a-1/drain", {}, {{"Authorization", "Bearer 0123456789abcdef"}}).status, 200);
  EXPECT_EQ(admin("POST", "/reload", {}, {}).status, 401);
}

TEST_F(AdminFixture, ReloadDryRunReportsMovementAndChangesNothing) {
  start();
  dir_.write_file("ringproxy.toml", config("", /*with_fourth=*/true));
  json dry = admin_json("POST", "/reload?dry_run=1", 200);
  EXPECT_EQ(dry["ok"], true);
  EXPECT_EQ(dry["errors"].size(), 0u);
  // One node joining three takes about a quarter of the key space.
  EXPECT_GT(dry["moved_fraction"].get<double>(), 0.15);
  EXPECT_LT(dry["moved_fraction"].get<double>(), 0.35);
  EXPECT_EQ(admin_json("GET", "/nodes", 200)["nodes"].size(), 3u);
  json real = admin_json("POST", "/reload", 200);
  EXPECT_EQ(real["moved_fraction"], dry["moved_fraction"]);
  EXPECT_EQ(admin_json("GET", "/nodes", 200)["nodes"].size(), 4u);
  expect_routing({"a-1", "a-2", "a-3", "a-4"});
  // An invalid file: 400 with every error, nothing changes.
  dir_.write_file("ringproxy.toml", "[proxy]\nlisten = 5\nbogus = true\n");
  json bad = admin_json("POST", "/reload", 400);
  EXPECT_EQ(bad["ok"], false);
  EXPECT_EQ(bad["errors"].size(), 3u) << bad.dump();
  EXPECT_EQ(admin_json("GET", "/nodes", 200)["nodes"].size(), 4u);
}

TEST_F(AdminFixture, MetricsParseAndCount) {
  start();
  for (const auto& k : keys(30)) ASSERT_EQ(http_get(port_, k).status, 200);
  Response m = admin("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string file = dir_.write_file("metrics.txt", m.body);
  // A real parser: every family must parse; print what the test checks.
  const std::string script = dir_.write_file("check.py", R"(import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
req = sum(s.value for s in fams['ringproxy_requests'].samples if s.name == 'ringproxy_requests_total' and s.labels['code'] == '2xx')
hist = [s for s in fams['ringproxy_request_duration_seconds'].samples if s.name.endswith('_count')][0].value
shares = sum(s.value for s in fams['ringproxy_ring_share'].samples)
up = sum(s.value for s in fams['ringproxy_backend_up'].samples)
need = ['ringproxy_connections_active', 'ringproxy_retries', 'ringproxy_ejections', 'ringproxy_gossip_members']
missing = [n for n in need if n not in fams]
print(int(req), int(hist), round(shares, 6), int(up), ','.join(missing) or 'none')
)");
  const std::string out = dir_.file("check.out");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " " + file + " > " + out + " 2>&1").c_str()), 0)
      << read_file(out);
  EXPECT_EQ(read_file(out), "30 30 1.0 3 none\n") << m.body.substr(0, 2000);
}

// ringproxy_upstream_header_duration_seconds{backend}: one observation per response,
// under the backend that gave it, and a slow backend's in the buckets above its delay.
TEST_F(AdminFixture, UpstreamHeaderTimePerBackend) {
  DemoBackendOptions slow;
  slow.delay_ms = 60;
  backends_[2] = std::make_unique<DemoBackend>(dir_, "a-3", slow);
  start();
  for (const auto& k : keys(30)) ASSERT_EQ(http_get(port_, k).status, 200);
  Response m = admin("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  const std::string file = dir_.write_file("metrics.txt", m.body);
  const std::string script = dir_.write_file("check.py", R"(import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
ok = {s.labels['backend']: int(s.value) for s in fams['ringproxy_requests'].samples
      if s.name == 'ringproxy_requests_total' and s.labels['code'] == '2xx' and s.labels['backend']
      and s.labels['protocol'] == 'http1'}
h = fams['ringproxy_upstream_header_duration_seconds'].samples
count = {s.labels['backend']: int(s.value) for s in h if s.name.endswith('_count')}
total = {s.labels['backend']: s.value for s in h if s.name.endswith('_sum')}
under_50ms = {s.labels['backend']: int(s.value) for s in h if s.name.endswith('_bucket') and s.labels['le'] == '0.05'}
inf = {s.labels['backend']: int(s.value) for s in h if s.name.endswith('_bucket') and s.labels['le'] == '+Inf'}
print(sum(count.values()), count == ok, inf == count, ok['a-3'] > 0, under_50ms['a-3'], total['a-3'] >= 0.06 * ok['a-3'])
)");
  const std::string out = dir_.file("check.out");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " " + file + " > " + out + " 2>&1").c_str()), 0)
      << read_file(out);
  EXPECT_EQ(read_file(out), "30 True True True 0 True\n") << m.body.substr(0, 4000);
  // The same in /nodes and on the status page: the slow node's mean is over its delay.
  json slow_node = admin_json("GET", "/nodes/a-3", 200);
  ASSERT_TRUE(slow_node["response_ms_mean"].is_number()) << slow_node.dump();
  EXPECT_GE(slow_node["response_ms_mean"].get<double>(), 60.0);
  EXPECT_NE(admin("GET", "/").body.find("<th>response ms (mean)</th>"), std::string::npos);
}

TEST_F(AdminFixture, StatusPageIsSelfContainedHtml) {
  start();
  Response page = admin("GET", "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<svg"), std::string::npos);
  EXPECT_NE(page.body.find("http-equiv=\"refresh\""), std::string::npos);
  for (const char* n : {"a-1", "a-2", "a-3"}) EXPECT_NE(page.body.find(n), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos) << "no external assets";
  EXPECT_EQ(page.body.find("https://"), std::string::npos) << "no external assets";
}

// The status page in a real browser (Debian's chromium, headless, offline): it must
// render, with the ring drawn and the rates script run.
TEST_F(AdminFixture, StatusPageRendersInHeadlessChromium) {
  start();
  admin("POST", "/nodes/a-2/drain");
  const std::string chromium = "/usr/bin/chromium";
  ASSERT_EQ(access(chromium.c_str(), X_OK), 0) << "chromium missing: scripts/install-deps.sh --test installs it";
  const std::string flags = " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                            " --disable-background-networking --disable-component-update --disable-sync"
                            " --user-data-dir=" + dir_.file("chromium-profile") + " --window-size=1200,600 ";
  const std::string url = "http://127.0.0.1:" + std::to_string(admin_port_) + "/";
  const std::string dom = dir_.file("dom.html");
  ASSERT_EQ(std::system((chromium + flags + "--dump-dom " + url + " > " + dom + " 2>/dev/null").c_str()), 0);
  const std::string rendered = read_file(dom);
  EXPECT_NE(rendered.find("<svg"), std::string::npos);
  size_t lines = 0;
  for (size_t at = rendered.find("<line"); at != std::string::npos; at = rendered.find("<line", at + 1)) ++lines;
  EXPECT_EQ(lines, 480u);  // every point of 3 nodes x 160
  EXPECT_NE(rendered.find("stroke=\"#bbb\""), std::string::npos) << "the drained node's points are grey";
  EXPECT_NE(rendered.find(">draining<"), std::string::npos);
  const std::string png = dir_.file("status.png");
  ASSERT_EQ(std::system((chromium + flags + "--screenshot=" + png + " " + url + " > /dev/null 2>&1").c_str()), 0);
  const std::string image = read_file(png);
  ASSERT_GT(image.size(), 10000u);
  EXPECT_EQ(image.substr(1, 3), "PNG");
}

TEST_F(AdminFixture, MalformedAdminRequestsAreAnswered) {
  start();
  Conn conn("127.0.0.1", admin_port_);
  ASSERT_TRUE(conn.send_raw("NOT HTTP\r\n\r\n"));
  Response r = conn.read_response();
  EXPECT_EQ(r.status, 400) << r.describe();
  EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
  // Keep-alive and pipelining on the admin port.
  Conn ka("127.0.0.1", admin_port_);
  ASSERT_TRUE(ka.send_raw(format_request("GET", "/healthz", {{"Host", "h"}}) +
                          format_request("GET", "/healthz", {{"Host", "h"}})));
  EXPECT_EQ(ka.read_response().status, 200);
  EXPECT_EQ(ka.read_response().status, 200);
}


// The admin port reads requests with the proxy's codec (h1::RequestParser): what the
// proxy refuses, it refuses with the same status and the same canned answer, then ends
// the connection with a FIN (lingering close), not a reset.
TEST_F(AdminFixture, MalformedRequestsGetTheProxysAnswer) {
  start();
  struct Case {
    std::string name;
    std::string bytes;
    int status;
  };
  const std::vector<Case> cases = {
      {"obs-fold", "GET /healthz HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400},
      {"HTTP/1.2", "GET /healthz HTTP/1.2\r\nHost: h\r\n\r\n", 505},
      {"head over 16 KiB", "GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n", 431},
      {"Content-Length and Transfer-Encoding",
       "POST /nodes HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"unknown transfer coding", "POST /nodes HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n",
       501},
      {"HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\n\r\n", 400},
      {"two spaces in the request line", "GET  /healthz HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"bad chunk size", "POST /nodes HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
  };
  for (const Case& c : cases) {
    Response answers[2];
    const uint16_t ports[2] = {port_, admin_port_};
    for (int i = 0; i < 2; ++i) {
      Conn conn("127.0.0.1", ports[i]);
      ASSERT_TRUE(conn.send_raw(c.bytes)) << c.name << ": " << conn.error();
      answers[i] = conn.read_response();
      EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof) << c.name << (i ? " (admin)" : " (proxy)");
    }
    EXPECT_EQ(answers[0].status, c.status) << c.name << " (proxy): " << answers[0].describe();
    EXPECT_EQ(answers[1].status, c.status) << c.name << " (admin): " << answers[1].describe();
    EXPECT_EQ(answers[1].body, answers[0].body) << c.name;
    EXPECT_EQ(answers[1].header("Connection"), "close") << c.name;
  }
}

// A body over the limit is answered 413 while the client is still sending it; the
// admin reads and drops the rest (RFC 9112 9.6), so the answer reaches the client
// instead of being lost to a reset, and the connection then ends with a FIN.
TEST_F(AdminFixture, A413IsReadableBeforeTheClose) {
  start();
  const Headers head = {{"Host", "h"}, {"Content-Type", "application/json"}};
  {
    Conn conn("127.0.0.1", admin_port_);
    ASSERT_TRUE(conn.send_raw(format_request("POST", "/nodes", head, std::string(1 << 20, 'x')))) << conn.error();
    Response r = conn.read_response();
    EXPECT_EQ(r.status, 413) << r.describe();
    EXPECT_EQ(r.header("Content-Type"), "application/json");
    EXPECT_EQ(json::parse(r.body)["error"], "request body over 65536 bytes");
    EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
  }
  {
    // Chunked: the answer comes at the byte past the limit; 64 KiB more follow it.
    Headers chunked = head;
    chunked.emplace_back("Transfer-Encoding", "chunked");
    Conn conn("127.0.0.1", admin_port_);
    ASSERT_TRUE(conn.send_raw(format_request("POST", "/nodes", chunked) + "20000\r\n" + std::string(0x20000, 'x')))
        << conn.error();
    Response r = conn.read_response();
    EXPECT_EQ(r.status, 413) << r.describe();
    EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
  }
}

// Requests sent back to back on one connection, with bodies by length and chunked, are
// answered one by one in order; after one with Connection: close, nothing more is.
TEST_F(AdminFixture, PipelinedRequestsAreAnsweredInOrder) {
  start();
  const Headers host = {{"Host", "h"}};
  const Headers json_body = {{"Host", "h"}, {"Content-Type", "application/json"}};
  Headers chunked = json_body;
  chunked.emplace_back("Transfer-Encoding", "chunked");
  const std::string all = format_request("GET", "/nodes/a-1", host) +
                          format_request("PUT", "/nodes/a-2/weight", chunked) + "5\r\n{\"wei\r\n8\r\nght\": 3}\r\n0\r\n\r\n" +
                          format_request("GET", "/nodes/a-2", host) +
                          format_request("PUT", "/nodes/a-3/weight", json_body, R"({"weight": 2})") +
                          format_request("HEAD", "/nodes/a-3", host) +
                          format_request("GET", "/nodes/nope", {{"Host", "h"}, {"Connection", "close"}}) +
                          format_request("GET", "/healthz", host);
  Conn conn("127.0.0.1", admin_port_);
  ASSERT_TRUE(conn.send_raw(all)) << conn.error();
  Response r = conn.read_response();
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(json::parse(r.body)["name"], "a-1");
  r = conn.read_response();
  EXPECT_EQ(r.status, 200) << r.describe();
  r = conn.read_response();
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(json::parse(r.body)["name"], "a-2");
  EXPECT_EQ(json::parse(r.body)["weight"], 3) << r.body;
  r = conn.read_response();
  EXPECT_EQ(r.status, 200) << r.describe();
  ReadOptions head;
  head.head = true;
  r = conn.read_response(head);
  EXPECT_EQ(r.status, 200) << r.describe();
  EXPECT_TRUE(r.body.empty());
  EXPECT_NE(r.header("Content-Length"), "0");  // the length GET would have
  r = conn.read_response();
  EXPECT_EQ(r.status, 404) << r.describe();
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
  EXPECT_EQ(conn.buffered(), "");  // the /healthz after it was not answered
  EXPECT_EQ(json::parse(admin("GET", "/nodes/a-3").body)["weight"], 2);
}

}  // namespace
}  // namespace ringproxy::integration
