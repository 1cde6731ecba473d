// TLS to backends end to end (SPEC "TLS", [upstream_tls], [[backend]] tls/tls_name): a
// real ringproxy in front of real TLS servers on loopback, Debian's nginx
// (/usr/sbin/nginx, one process in the foreground, every path in the test's temp dir)
// and, where a server must refuse the handshake itself, `openssl s_server`.
//
// Each nginx answers every request itself with headers that say what it saw of the TLS
// connection: X-Backend (its name), X-Connection ($connection, its serial number of the
// connection), X-Connection-Requests, X-Session-Reused ($ssl_session_reused: "r" or
// "."), X-Client-DN ($ssl_client_s_dn) and X-SNI ($ssl_server_name). Its access log
// (stdout) shows the health checks too. Certificates are made by the test
// (tests/support/tls_certs.h); no key is committed.
//
// No sleeps: every wait is on a log line, a port or an answer, bounded.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/support/tls_certs.h"

namespace ringproxy::integration {
namespace {

constexpr const char* kNginx = "/usr/sbin/nginx";
constexpr const char* kOpenssl = "/usr/bin/openssl";

size_t count_lines(const std::string& text, const std::string& needle) {
  size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

struct NginxOptions {
  std::string client_ca;         // set: ssl_verify_client on against it
  int keepalive_requests = 100000;  // 1: nginx closes the connection after each answer
  std::string protocols = "TLSv1.2 TLSv1.3";  // ssl_protocols
};

class UpstreamTls : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kNginx, X_OK), 0)
        << kNginx << " is missing: run scripts/install-deps.sh --test (it installs Debian's nginx-light)";
    const std::string d = dir_.path();
    ca_ = test::make_cert(d, "ca", {"Test CA"}, test::KeyType::kEc, nullptr, -3600, 86400L * 365, true);
    other_ca_ = test::make_cert(d, "other-ca", {"Other CA"}, test::KeyType::kEc, nullptr, -3600, 86400L * 365, true);
    client_ca_ = test::make_cert(d, "client-ca", {"Client CA"}, test::KeyType::kEc, nullptr, -3600, 86400L * 365, true);
    client_ = test::make_cert(d, "client", {"proxy-client"}, test::KeyType::kEc, &client_ca_);
  }
  void TearDown() override {
    for (test::TestCert* c : {&ca_, &other_ca_, &client_ca_, &client_}) test::free_cert(*c);
    for (test::TestCert& c : certs_) test::free_cert(c);
  }

  // A certificate for `names` ("IP:..." for an address), signed by `issuer` (our CA by
  // default), valid from `from_s` to `until_s` from now.
  const test::TestCert& cert(const std::string& stem, const std::vector<std::string>& names,
                             const test::TestCert* issuer = nullptr, long from_s = -3600,
                             long until_s = 86400L * 30) {
    certs_.push_back(test::make_cert(dir_.path(), stem, names, test::KeyType::kEc, issuer ? issuer : &ca_, from_s,
                                     until_s));
    return certs_.back();
  }
  const test::TestCert& self_signed(const std::string& stem, const std::vector<std::string>& names) {
    certs_.push_back(test::make_cert(dir_.path(), stem, names));
    return certs_.back();
  }

  // An nginx named `name` serving TLS with `c` on a port of its own; its port once it
  // accepts.
  uint16_t start_nginx(const std::string& name, const test::TestCert& c, const NginxOptions& o = {}) {
    const std::string d = dir_.path();
    const uint16_t port = free_port();
    EXPECT_NE(port, 0);
    std::ostringstream conf;
    conf << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
         << "pid " << d << "/nginx-" << name << ".pid;\nerror_log " << d << "/nginx-" << name << "-error.log info;\n"
         << "events { worker_connections 256; }\n"
         << "http {\n"
         << "  log_format seen '$connection $connection_requests $ssl_session_reused \"$ssl_client_s_dn\" "
            "\"$ssl_server_name\" \"$http_user_agent\" $request_uri';\n"
         << "  access_log /dev/stdout seen;\n"
         << "  client_body_temp_path " << d << "/nginx-" << name << "-body;\n"
         << "  proxy_temp_path " << d << "/nginx-" << name << "-proxy;\n"
         << "  fastcgi_temp_path " << d << "/nginx-" << name << "-fastcgi;\n"
         << "  uwsgi_temp_path " << d << "/nginx-" << name << "-uwsgi;\n"
         << "  scgi_temp_path " << d << "/nginx-" << name << "-scgi;\n"
         << "  server {\n"
         << "    listen 127.0.0.1:" << port << " ssl;\n"
         << "    ssl_certificate " << c.cert_path << ";\n"
         << "    ssl_certificate_key " << c.key_path << ";\n"
         << "    ssl_protocols " << o.protocols << ";\n"
         << "    keepalive_requests " << o.keepalive_requests << ";\n";
    if (!o.client_ca.empty()) {
      conf << "    ssl_verify_client on;\n    ssl_client_certificate " << o.client_ca << ";\n";
    }
    conf << "    location / {\n"
         << "      add_header X-Backend " << name << " always;\n"
         << "      add_header X-Connection $connection always;\n"
         << "      add_header X-Connection-Requests $connection_requests always;\n"
         << "      add_header X-Session-Reused $ssl_session_reused always;\n"
         << "      add_header X-Client-DN $ssl_client_s_dn always;\n"
         << "      add_header X-SNI $ssl_server_name always;\n"
         << "      add_header X-Protocol $ssl_protocol always;\n"
         << "      return 200 \"" << name << " $request_uri\\n\";\n"
         << "    }\n  }\n}\n";
    const std::string path = dir_.write_file("nginx-" + name + ".conf", conf.str());
    auto p = std::make_unique<Process>(
        kNginx, std::vector<std::string>{"-p", d, "-e", d + "/nginx-" + name + "-error.log", "-c", path}, d,
        "nginx-" + name);
    EXPECT_TRUE(wait_for_port(port, kDefaultTimeout, "127.0.0.1", p.get()))
        << p->describe() << "\nerror log: " << read_file(d + "/nginx-" + name + "-error.log");
    nginx_[name] = std::move(p);
    return port;
  }
  Process& nginx(const std::string& name) { return *nginx_.at(name); }

  struct Node {
    std::string name;
    uint16_t port;
    bool tls = true;
    std::string tls_name;
  };

  // ringproxy with one worker (one pool per node: keep-alive and resumption are per
  // worker), retries = `retries`, `health` and `upstream_tls` as given.
  void start_proxy(const std::vector<Node>& nodes, const std::string& upstream_tls, const std::string& health,
                   int retries = 0) {
    port_ = free_port();
    admin_port_ = free_port();
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\nretries = " << retries << "\n"
      << "\n[admin]\nlisten = \"127.0.0.1:" << admin_port_ << "\"\n"
      << "\n[health]\n" << health << "\n";
    if (!upstream_tls.empty()) c << "\n[upstream_tls]\n" << upstream_tls << "\n";
    for (const Node& n : nodes) {
      c << "\n[[backend]]\nname = \"" << n.name << "\"\naddress = \"127.0.0.1:" << n.port << "\"\n";
      if (n.tls) c << "tls = true\n";
      if (!n.tls_name.empty()) c << "tls_name = \"" << n.tls_name << "\"\n";
    }
    config_ = dir_.write_file("ringproxy.toml", c.str());
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", config_},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }
  std::string ca_setting() const { return "ca = \"" + ca_.cert_path + "\"\n"; }

  nlohmann::json node_json(const std::string& name) {
    Response r = http_get(admin_port_, "/nodes/" + name);
    EXPECT_EQ(r.status, 200) << r.describe();
    return r.status == 200 ? nlohmann::json::parse(r.body) : nlohmann::json::object();
  }

  // The one stderr line of the proxy naming `cause`; fails unless there is exactly one.
  std::string the_line(const std::string& cause) {
    const auto lines = lines_with(proxy_->stderr_text(), cause);
    EXPECT_EQ(lines.size(), 1u) << proxy_->stderr_text();
    return lines.empty() ? std::string() : lines.front();
  }

  TempDir dir_;
  test::TestCert ca_, other_ca_, client_ca_, client_;
  std::deque<test::TestCert> certs_;
  std::map<std::string, std::unique_ptr<Process>> nginx_;
  uint16_t port_ = 0, admin_port_ = 0;
  std::string config_;
  std::unique_ptr<Process> proxy_;
};

// Health checks every 200 ms, down after 2 failures.
constexpr const char* kFastHealth = "interval_ms = 200\ntimeout_ms = 200\nfall = 2\nrise = 2\n";
// One check at start, then none for a minute; 3 failures to go down, no passive ejection:
// a failing node stays up, so its requests reach it (and fail) rather than being routed
// around it.
constexpr const char* kQuietHealth = "interval_ms = 60000\ntimeout_ms = 1000\nfall = 3\neject_after_failures = 0\n";

TEST_F(UpstreamTls, RequestsAndHealthChecksGoOverTls) {
  // One node verified by DNS name (SNI sent), one by its address (IP SAN, no SNI).
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}));
  const uint16_t b = start_nginx("b", cert("b", {"IP:127.0.0.1"}));
  start_proxy({{"a", a, true, "a.example"}, {"b", b, true, ""}}, ca_setting(), kFastHealth);
  // Health checks reached both over TLS (nginx speaks nothing else) and passed.
  for (const char* name : {"a", "b"}) {
    ASSERT_TRUE(nginx(name).wait_for_output(Output::out, "\"ringproxy-health\" /health"))
        << name << ": " << nginx(name).stdout_text();
  }
  std::set<std::string> served;
  Conn conn("127.0.0.1", port_);
  for (int i = 0; i < 40; ++i) {
    Response r = conn.request("GET", "/k/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
    const std::string backend = r.header("X-Backend");
    EXPECT_EQ(r.body, backend + " /k/" + std::to_string(i) + "\n");
    EXPECT_EQ(r.header("X-SNI"), backend == "a" ? "a.example" : "") << r.describe();
    served.insert(backend);
  }
  EXPECT_EQ(served, (std::set<std::string>{"a", "b"}));
  Response nodes = http_get(admin_port_, "/nodes");
  ASSERT_EQ(nodes.status, 200);
  const auto list = nlohmann::json::parse(nodes.body)["nodes"];
  ASSERT_EQ(list.size(), 2u);
  for (const auto& n : list) {
    EXPECT_EQ(n["state"], "up") << n.dump();
    EXPECT_EQ(n["tls"], true) << n.dump();
    EXPECT_EQ(n["tls_name"], n["name"] == "a" ? "a.example" : "127.0.0.1") << n.dump();
  }
  // No failure was logged on the way.
  EXPECT_EQ(count_lines(proxy_->stderr_text(), "TLS handshake failed"), 0u) << proxy_->stderr_text();
}

// Each [[pool]] has its own [upstream_tls] (SPEC "Several tiers"): pool images verifies
// its node against another CA than the top level's, by which pool "default"'s node is
// signed. Each tier's requests and health checks pass with their own CA; a pool that
// takes the top level's CA for images' node refuses it (a 502 naming the handshake).
TEST_F(UpstreamTls, EachPoolVerifiesWithItsOwnUpstreamTls) {
  const uint16_t page = start_nginx("page", cert("page", {"IP:127.0.0.1"}));
  const uint16_t img = start_nginx("img", cert("img", {"IP:127.0.0.1"}, &other_ca_));
  port_ = free_port();
  admin_port_ = free_port();
  std::ostringstream c;
  c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\nretries = 0\n"
    << "[admin]\nlisten = \"127.0.0.1:" << admin_port_ << "\"\n"
    << "[health]\n" << kFastHealth << "\n[upstream_tls]\n" << ca_setting()
    << "[[backend]]\nname = \"page\"\naddress = \"127.0.0.1:" << page << "\"\ntls = true\n"
    << "[[pool]]\nname = \"images\"\nupstream_tls = { ca = \"" << other_ca_.cert_path << "\" }\n"
    << "backends = [ { name = \"img\", address = \"127.0.0.1:" << img << "\", tls = true } ]\n"
    << "[[pool]]\nname = \"mismatch\"\nhealth = { eject_after_failures = 0 }\n"
    << "backends = [ { name = \"img\", address = \"127.0.0.1:" << img << "\", tls = true } ]\n"
    << "[[route]]\npath_prefix = \"/img/\"\npool = \"images\"\n"
    << "[[route]]\npath_prefix = \"/mismatch/\"\npool = \"mismatch\"\n";
  config_ = dir_.write_file("ringproxy.toml", c.str());
  proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", config_},
                                     dir_.path(), "ringproxy");
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  // Health checks over each pool's TLS: images' and default's pass.
  for (const char* name : {"page", "img"}) {
    ASSERT_TRUE(nginx(name).wait_for_output(Output::out, "\"ringproxy-health\" /health")) << name;
  }
  ASSERT_TRUE(eventually([&] {
    const Response r = http_get(admin_port_, "/pools/images/nodes/img");
    return r.status == 200 && nlohmann::json::parse(r.body)["state"] == "up";
  })) << proxy_->stderr_text();
  Conn conn("127.0.0.1", port_);
  for (int i = 0; i < 10; ++i) {
    Response r = conn.request("GET", "/img/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
    EXPECT_EQ(r.header("X-Backend"), "img");
    r = conn.request("GET", "/p/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
    EXPECT_EQ(r.header("X-Backend"), "page");
  }
  // The same node under the top level's CA: not verified. Its checks fail too (down), and
  // a request then finds no node (503), or, before the checks say so, the handshake fails.
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "node=mismatch/img up -> down")) << proxy_->stderr_text();
  EXPECT_NE(proxy_->stderr_text().find("TLS handshake failed"), std::string::npos) << proxy_->stderr_text();
  const Response r = http_get(port_, "/mismatch/1");
  EXPECT_TRUE(r.status == 503 || r.status == 502) << r.describe();
  EXPECT_EQ(r.header("X-Backend"), "");
}

// Per protocol version: TLS 1.2 (its ticket in the handshake) and TLS 1.3 (tickets after
// it, read with the first answer).
class UpstreamTlsVersion : public UpstreamTls, public ::testing::WithParamInterface<const char*> {};

TEST_P(UpstreamTlsVersion, KeepAliveReusesOneTlsConnection) {
  NginxOptions o;
  o.protocols = GetParam();
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}), o);
  start_proxy({{"a", a, true, "a.example"}}, ca_setting(), kQuietHealth);
  std::set<std::string> connections;
  int last_requests = 0;
  // Sequential requests, over several client connections: one worker, one pool, one
  // upstream connection reused every time.
  for (int c = 0; c < 5; ++c) {
    Conn conn("127.0.0.1", port_);
    for (int i = 0; i < 20; ++i) {
      Response r = conn.request("GET", "/r/" + std::to_string(c * 20 + i));
      ASSERT_EQ(r.status, 200) << r.describe();
      EXPECT_EQ(r.header("X-Protocol"), GetParam());
      connections.insert(r.header("X-Connection"));
      last_requests = std::stoi(r.header("X-Connection-Requests"));
    }
  }
  EXPECT_EQ(connections.size(), 1u) << "nginx saw " << connections.size() << " connections for 100 requests";
  EXPECT_EQ(last_requests, 100);
}

TEST_P(UpstreamTlsVersion, NewUpstreamConnectionsResumeTheSession) {
  // nginx closes after every answer: each request is a new upstream connection.
  NginxOptions o;
  o.keepalive_requests = 1;
  o.protocols = GetParam();
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}), o);
  start_proxy({{"a", a, true, "a.example"}}, ca_setting(), kFastHealth);
  std::vector<std::string> reused;
  std::set<std::string> connections;
  for (int i = 0; i < 6; ++i) {
    Response r = http_get(port_, "/s/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
    EXPECT_EQ(r.header("X-Protocol"), GetParam());
    reused.push_back(r.header("X-Session-Reused"));
    connections.insert(r.header("X-Connection"));
  }
  EXPECT_EQ(connections.size(), 6u);
  EXPECT_EQ(reused, (std::vector<std::string>{".", "r", "r", "r", "r", "r"}))
      << "nginx's $ssl_session_reused per new upstream connection";
  // The health checks (Connection: close, a session cache of their own) resume too:
  // every probe after the first.
  size_t from = 0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(nginx("a").wait_for_output(Output::out, "\"ringproxy-health\"", kDefaultTimeout, from));
    from = nginx("a").stdout_text().rfind("\"ringproxy-health\"") + 1;
  }
  const auto probes = lines_with(nginx("a").stdout_text(), "\"ringproxy-health\"");
  ASSERT_GE(probes.size(), 3u);
  for (size_t i = 1; i < probes.size(); ++i) {
    EXPECT_NE(probes[i].find(" r \"-\" \"a.example\""), std::string::npos) << "probe " << i << ": " << probes[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Protocols, UpstreamTlsVersion, ::testing::Values("TLSv1.2", "TLSv1.3"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string name = p.param;  // "TLSv1_2"
                           name[name.find('.')] = '_';
                           return name;
                         });

// A backend whose certificate does not pass: the client gets a 502, the log one line
// naming the node and why.
struct BadCase {
  const char* label;
  const char* reason;  // what follows "TLS handshake failed: "
};

class UpstreamTlsFailure : public UpstreamTls, public ::testing::WithParamInterface<BadCase> {
 protected:
  // The failing backend, per case: a certificate of another CA, one for another name,
  // an expired one.
  uint16_t start_bad() {
    const std::string label = GetParam().label;
    if (label == "wrong_ca") return start_nginx("bad", cert("bad", {"bad.example"}, &other_ca_));
    if (label == "wrong_name") return start_nginx("bad", cert("bad", {"other.example"}));
    return start_nginx("bad", cert("bad", {"bad.example"}, nullptr, -86400L * 30, -86400L));
  }
};

TEST_P(UpstreamTlsFailure, IsA502AndOneLogLine) {
  const uint16_t bad = start_bad();
  start_proxy({{"bad", bad, true, "bad.example"}}, ca_setting(), kQuietHealth, /*retries=*/0);
  const size_t from = proxy_->output_size(Output::err);
  Response r = http_get(port_, "/x");
  EXPECT_EQ(r.status, 502) << r.describe();
  const std::string cause = std::string("TLS handshake failed: ") + GetParam().reason;
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "answered 502", kDefaultTimeout, from)) << proxy_->stderr_text();
  const std::string line = the_line("TLS handshake failed");
  EXPECT_NE(line.find("answered 502: " + cause + " at node bad"), std::string::npos) << line;
  EXPECT_NE(line.find("node=bad address=127.0.0.1:" + std::to_string(bad)), std::string::npos) << line;
  // Nothing reached nginx's HTTP side: the handshake never finished.
  EXPECT_EQ(count_lines(nginx("bad").stdout_text(), "/x"), 0u) << nginx("bad").stdout_text();
  // The node is still up (quiet health): it failed one request, nothing more.
  EXPECT_EQ(node_json("bad")["state"], "up");
}

TEST_P(UpstreamTlsFailure, WithRetriesButNoOtherNodeIsA502AndOneLogLine) {
  const uint16_t bad = start_bad();
  start_proxy({{"bad", bad, true, "bad.example"}}, ca_setting(), kQuietHealth, /*retries=*/1);
  const size_t from = proxy_->output_size(Output::err);
  Response r = http_get(port_, "/x");
  EXPECT_EQ(r.status, 502) << r.describe();
  const std::string cause = std::string("TLS handshake failed: ") + GetParam().reason;
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "answered 502", kDefaultTimeout, from)) << proxy_->stderr_text();
  const std::string line = the_line("TLS handshake failed");
  EXPECT_NE(line.find("answered 502: " + cause + " at node bad address=127.0.0.1:" + std::to_string(bad) +
                      "; no further node to retry on"),
            std::string::npos)
      << line;
}

TEST_P(UpstreamTlsFailure, IsRetriedOnTheNextNodeWithOneLogLine) {
  const uint16_t bad = start_bad();
  const uint16_t good = start_nginx("good", cert("good", {"good.example"}));
  start_proxy({{"bad", bad, true, "bad.example"}, {"good", good, true, "good.example"}}, ca_setting(), kQuietHealth,
              /*retries=*/1);
  // Keys whose first pick is "bad" (an independent computation of the ring).
  std::vector<std::string> ks;
  for (int i = 0; i < 200; ++i) ks.push_back("/item/" + std::to_string(i));
  const auto placement = reference_map({"bad", "good"}, ks);
  size_t on_bad = 0;
  Conn conn("127.0.0.1", port_);
  for (const auto& k : ks) {
    Response r = conn.request("GET", k);
    ASSERT_EQ(r.status, 200) << k << ": " << r.describe();
    EXPECT_EQ(r.header("X-Backend"), "good") << k;
    if (!r.keep_alive) conn.connect("127.0.0.1", port_);
    if (placement.at(k) == "bad") ++on_bad;
  }
  ASSERT_GT(on_bad, 20u);
  const std::string log = proxy_->stderr_text();
  const std::string cause = std::string("upstream TLS handshake failed: ") + GetParam().reason + " at node bad address=127.0.0.1:" +
                            std::to_string(bad) + ", retrying on node=good";
  // One line per failed attempt, each naming the node and the reason; nothing else.
  EXPECT_EQ(count_lines(log, cause), on_bad) << log;
  EXPECT_EQ(count_lines(log, "TLS handshake failed"), on_bad) << log;
}

TEST_P(UpstreamTlsFailure, HealthChecksMarkTheNodeDownWithTheReason) {
  const uint16_t bad = start_bad();
  start_proxy({{"bad", bad, true, "bad.example"}}, ca_setting(), kFastHealth);
  const std::string detail = std::string("TLS handshake failed: ") + GetParam().reason;
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=bad up -> down")) << proxy_->stderr_text();
  const std::string line = lines_with(proxy_->stderr_text(), "health: node=bad up -> down").at(0);
  EXPECT_NE(line.find("(last: " + detail + ")"), std::string::npos) << line;
  EXPECT_EQ(node_json("bad")["state"], "down");
}

INSTANTIATE_TEST_SUITE_P(
    Certificates, UpstreamTlsFailure,
    ::testing::Values(BadCase{"wrong_ca", "certificate verify failed: unable to get local issuer certificate"},
                      BadCase{"wrong_name", "certificate verify failed: hostname mismatch"},
                      BadCase{"expired", "certificate verify failed: certificate has expired"}),
    [](const ::testing::TestParamInfo<BadCase>& p) { return std::string(p.param.label); });

TEST_F(UpstreamTls, APlainHttpBackendMarkedTlsIsA502NamingTheHandshake) {
  DemoBackend plain(dir_, "plain");
  start_proxy({{"plain", plain.port(), true, ""}}, ca_setting(), kQuietHealth);
  Response r = http_get(port_, "/x");
  EXPECT_EQ(r.status, 502) << r.describe();
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "answered 502")) << proxy_->stderr_text();
  const std::string line = the_line("answered 502");
  EXPECT_NE(line.find("TLS handshake failed: "), std::string::npos) << line;
  EXPECT_NE(line.find("at node plain"), std::string::npos) << line;
}

TEST_F(UpstreamTls, MutualTlsWithTheClientCertificate) {
  NginxOptions o;
  o.client_ca = client_ca_.cert_path;
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}), o);
  start_proxy({{"a", a, true, "a.example"}},
              ca_setting() + "cert = \"" + client_.cert_path + "\"\nkey = \"" + client_.key_path + "\"\n",
              kFastHealth);
  for (int i = 0; i < 3; ++i) {
    Response r = http_get(port_, "/m/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
    EXPECT_EQ(r.header("X-Client-DN"), "CN=proxy-client");
  }
  // The health checks present it too.
  ASSERT_TRUE(nginx("a").wait_for_output(Output::out, "\"CN=proxy-client\" \"a.example\" \"ringproxy-health\""))
      << nginx("a").stdout_text();
  EXPECT_EQ(node_json("a")["state"], "up");
}

TEST_F(UpstreamTls, WithoutTheClientCertificateNginxRefuses) {
  // nginx lets the handshake finish and refuses at the HTTP level: its own 400 ("No
  // required SSL certificate was sent"), passed on; never an answer of the location.
  NginxOptions o;
  o.client_ca = client_ca_.cert_path;
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}), o);
  start_proxy({{"a", a, true, "a.example"}}, ca_setting(), kFastHealth);
  Response r = http_get(port_, "/m");
  EXPECT_EQ(r.status, 400) << r.describe();
  EXPECT_NE(r.body.find("No required SSL certificate was sent"), std::string::npos) << r.describe();
  EXPECT_EQ(r.header("X-Backend"), "");
  // Health checks see the 400: the node goes down.
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=a up -> down")) << proxy_->stderr_text();
  EXPECT_NE(the_line("health: node=a up -> down").find("status 400"), std::string::npos);
}

TEST_F(UpstreamTls, AServerRequiringAClientCertificateFailsTheHandshakeWithoutOne) {
  // openssl s_server -Verify 1 refuses the handshake itself (TLS 1.2: before its
  // Finished), unlike nginx: a 502 and one line.
  const test::TestCert& c = cert("strict", {"strict.example"});
  for (const bool with_cert : {true, false}) {
    SCOPED_TRACE(with_cert ? "with the client certificate" : "without");
    const uint16_t port = free_port();
    Process server(kOpenssl,
                   {"s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert", c.cert_path, "-key",
                    c.key_path, "-CAfile", client_ca_.cert_path, "-Verify", "1", "-tls1_2", "-www"},
                   dir_.path(), with_cert ? "s_server-cert" : "s_server-nocert");
    ASSERT_TRUE(server.wait_for_output(Output::out, "ACCEPT")) << server.describe();
    std::string tls = ca_setting();
    if (with_cert) tls += "cert = \"" + client_.cert_path + "\"\nkey = \"" + client_.key_path + "\"\n";
    start_proxy({{"strict", port, true, "strict.example"}}, tls, kQuietHealth);
    const size_t from = proxy_->output_size(Output::err);
    Response r = http_get(port_, "/x");
    if (with_cert) {
      EXPECT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
    } else {
      EXPECT_EQ(r.status, 502) << r.describe();
      ASSERT_TRUE(proxy_->wait_for_output(Output::err, "answered 502", kDefaultTimeout, from));
      const std::string line = the_line("TLS handshake failed: ");
      EXPECT_NE(line.find("at node strict"), std::string::npos) << line;
      EXPECT_NE(line.find("alert"), std::string::npos) << line;  // the server's alert, named
    }
    proxy_.reset();
  }
}

TEST_F(UpstreamTls, VerifyFalseWarnsAndConnectsToASelfSignedBackend) {
  const uint16_t a = start_nginx("a", self_signed("a", {"whoever.invalid"}));
  start_proxy({{"a", a, true, "a.example"}}, "verify = false\n", kFastHealth);
  const std::string warning = "upstream_tls.verify = false: TLS backends' certificates and names are not checked";
  EXPECT_EQ(count_lines(proxy_->stderr_text(), warning), 1u) << proxy_->stderr_text();
  Response r = http_get(port_, "/v");
  EXPECT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
  EXPECT_EQ(r.header("X-Backend"), "a");
  EXPECT_EQ(r.header("X-SNI"), "a.example");
  ASSERT_TRUE(nginx("a").wait_for_output(Output::out, "\"ringproxy-health\" /health"));
  EXPECT_EQ(node_json("a")["state"], "up");
}

TEST_F(UpstreamTls, VerifyTrueIsSilentAtStart) {
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}));
  start_proxy({{"a", a, true, "a.example"}}, ca_setting(), kQuietHealth);
  EXPECT_EQ(count_lines(proxy_->stderr_text(), "upstream_tls.verify"), 0u) << proxy_->stderr_text();
}

TEST_F(UpstreamTls, ANodeAddedAtRuntimeIsReachedOverTls) {
  DemoBackend plain(dir_, "plain");
  const uint16_t late = start_nginx("late", cert("late", {"late.example"}));
  start_proxy({{"plain", plain.port(), false, ""}}, ca_setting(), kFastHealth);
  const std::string body = "{\"name\":\"late\",\"address\":\"127.0.0.1:" + std::to_string(late) +
                           "\",\"tls\":true,\"tls_name\":\"late.example\"}";
  Response added = http_request(admin_port_, "POST", "/nodes", {{"Content-Type", "application/json"}}, body);
  ASSERT_EQ(added.status, 201) << added.describe();
  auto j = nlohmann::json::parse(added.body);
  EXPECT_EQ(j["tls"], true);
  EXPECT_EQ(j["tls_name"], "late.example");
  auto listed = nlohmann::json::parse(http_get(admin_port_, "/nodes").body)["nodes"];
  bool found = false;
  for (const auto& n : listed) {
    if (n["name"] == "late") {
      found = true;
      EXPECT_EQ(n["tls"], true);
      EXPECT_EQ(n["tls_name"], "late.example");
    } else {
      EXPECT_EQ(n["tls"], false);
      EXPECT_EQ(n["tls_name"], "");
    }
  }
  EXPECT_TRUE(found) << listed.dump();
  // Its health checks go over TLS too.
  ASSERT_TRUE(nginx("late").wait_for_output(Output::out, "\"late.example\" \"ringproxy-health\" /health"))
      << nginx("late").stdout_text();
  // The plain node leaves: every key is the TLS node's.
  ASSERT_EQ(http_request(admin_port_, "DELETE", "/nodes/plain").status, 200);
  Conn conn("127.0.0.1", port_);
  for (int i = 0; i < 20; ++i) {
    Response r = conn.request("GET", "/late/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
    EXPECT_EQ(r.header("X-Backend"), "late");
    EXPECT_EQ(r.header("X-SNI"), "late.example");
  }
  EXPECT_EQ(node_json("late")["state"], "up");
}

TEST_F(UpstreamTls, ARuntimeNodeWithTheWrongNameFailsItsHealthChecks) {
  DemoBackend plain(dir_, "plain");
  const uint16_t late = start_nginx("late", cert("late", {"late.example"}));
  start_proxy({{"plain", plain.port(), false, ""}}, ca_setting(), kFastHealth);
  const std::string body = "{\"name\":\"late\",\"address\":\"127.0.0.1:" + std::to_string(late) +
                           "\",\"tls\":true,\"tls_name\":\"wrong.example\"}";
  ASSERT_EQ(http_request(admin_port_, "POST", "/nodes", {{"Content-Type", "application/json"}}, body).status, 201);
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=late up -> down")) << proxy_->stderr_text();
  EXPECT_NE(the_line("health: node=late up -> down").find("TLS handshake failed: certificate verify failed: hostname mismatch"),
            std::string::npos);
}

TEST_F(UpstreamTls, AReloadReadsTheCaFileAgain) {
  // upstream_tls.ca first holds another CA: the node fails; the file is replaced by the
  // right CA and the config reloaded: new handshakes verify against it.
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}));
  const std::string ca_file = dir_.write_file("upstream-ca.pem", read_file(other_ca_.cert_path));
  start_proxy({{"a", a, true, "a.example"}}, "ca = \"" + ca_file + "\"\n", kQuietHealth);
  EXPECT_EQ(http_get(port_, "/before").status, 502);
  dir_.write_file("upstream-ca.pem", read_file(ca_.cert_path));
  Response reload = http_request(admin_port_, "POST", "/reload");
  ASSERT_EQ(reload.status, 200) << reload.describe();
  Response r = http_get(port_, "/after");
  EXPECT_EQ(r.status, 200) << r.describe() << "\n" << proxy_->stderr_text();
}

// SPEC: "Certificates and keys are re-read on SIGHUP and POST /reload: new handshakes use
// the new ones". A reload that stops trusting a backend must stop new connections to
// it, including those that would resume a session made under the old settings.
TEST_F(UpstreamTls, AReloadThatStopsTrustingABackendRefusesItsNewConnections) {
  NginxOptions o;
  o.keepalive_requests = 1;  // every request a new upstream connection
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}), o);
  const std::string ca_file = dir_.write_file("upstream-ca.pem", read_file(ca_.cert_path));
  start_proxy({{"a", a, true, "a.example"}}, "ca = \"" + ca_file + "\"\n", kQuietHealth);
  // Two requests, two connections: a session is cached for the node (whether it was
  // resumed is NewUpstreamConnectionsResumeTheSession's concern).
  for (int i = 0; i < 2; ++i) {
    Response r = http_get(port_, "/trusted/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe();
  }
  dir_.write_file("upstream-ca.pem", read_file(other_ca_.cert_path));
  ASSERT_EQ(http_request(admin_port_, "POST", "/reload").status, 200);
  Response r = http_get(port_, "/untrusted");
  EXPECT_EQ(r.status, 502) << "a new connection after the reload was made without verifying against the new CA: "
                           << r.describe();
}

TEST_F(UpstreamTls, AReloadFromVerifyFalseToTrueVerifiesNewConnections) {
  NginxOptions o;
  o.keepalive_requests = 1;  // every request a new upstream connection
  const uint16_t a = start_nginx("a", self_signed("a", {"a.example"}), o);
  start_proxy({{"a", a, true, "a.example"}}, "verify = false\n", kQuietHealth);
  for (int i = 0; i < 2; ++i) {
    Response r = http_get(port_, "/unverified/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe();
  }
  // The same file, now verifying against our CA, which did not sign the backend's.
  std::string text = read_file(config_);
  text.replace(text.find("verify = false"), 14, "verify = true\n" + ca_setting());
  dir_.write_file("ringproxy.toml", text);
  ASSERT_EQ(http_request(admin_port_, "POST", "/reload").status, 200);
  Response r = http_get(port_, "/verified");
  EXPECT_EQ(r.status, 502) << "a new connection after verify = true was made without verification "
                              "(an unverified session resumed): "
                           << r.describe();
}

TEST_F(UpstreamTls, AReloadThatChangesTlsNameVerifiesTheNewName) {
  // The node keeps its name; its tls_name changes to one its certificate does not have.
  // Requests and health checks must verify the new name, whatever session they kept.
  NginxOptions o;
  o.keepalive_requests = 1;  // every request a new upstream connection
  const uint16_t a = start_nginx("a", cert("a", {"a.example"}), o);
  start_proxy({{"a", a, true, "a.example"}}, ca_setting(), kFastHealth);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(http_get(port_, "/before/" + std::to_string(i)).status, 200);
  // Probes made (and left sessions) under the old name.
  size_t from = 0;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(nginx("a").wait_for_output(Output::out, "\"ringproxy-health\"", kDefaultTimeout, from));
    from = nginx("a").stdout_text().rfind("\"ringproxy-health\"") + 1;
  }
  std::string text = read_file(config_);
  text.replace(text.find("tls_name = \"a.example\""), 22, "tls_name = \"wrong.example\"");
  dir_.write_file("ringproxy.toml", text);
  const size_t log_from = proxy_->output_size(Output::err);
  ASSERT_EQ(http_request(admin_port_, "POST", "/reload").status, 200);
  EXPECT_EQ(node_json("a")["tls_name"], "wrong.example");
  Response r = http_get(port_, "/after");
  EXPECT_EQ(r.status, 502) << r.describe();
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=a up -> down", kDefaultTimeout, log_from))
      << proxy_->stderr_text();
  EXPECT_NE(the_line("health: node=a up -> down").find("certificate verify failed: hostname mismatch"),
            std::string::npos);
}

}  // namespace
}  // namespace ringproxy::integration
