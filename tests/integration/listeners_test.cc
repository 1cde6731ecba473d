// Listeners end to end (SPEC "Several tiers: pools, routes and listeners", issue 15): a
// real ringproxy with [[listener]]s, [[pool]]s and [[route]]s in front of demo backends
// on loopback, and clients of the test's own (the harness's Conn for plain HTTP,
// tls_client.h's OpenSSL client for TLS, Debian's /usr/bin/wrk for load: load.h).
// - Each listener's fallback pool, routes on every listener, the reference placement
//   (tools/ring_reference.py) per pool; plain HTTP on a TLS listener and TLS on a plain
//   one.
// - Each TLS listener its own certificate, and an expiry series per certificate file.
// - Reloads (SIGHUP and POST /reload) adding listeners under wrk's load.
// - A reload removing listeners while wrk runs against them and against proxy.listen:
//   refused connections, requests in flight finished, keep-alive connections closed.
// - A reload refused because a listener cannot bind: nothing changes.
// - `--check` on a listener's missing certificate files, at their keys and positions.
// - A request whose head is incomplete when its listener is removed (test 7), and the
//   listeners right after the reload's answer (test 8).
//
// Tests 7 and 8 fail on c40b580, where they were written; each found a bug, described
// above it.
//
// Which backend answered is its X-Backend: each demo backend is named POOLPREFIX-NODE
// ("def-a" is node "a" of pool "default", "img-a" node "a" of pool "images").
//
// Every wait is bounded and none sleeps: sockets with poll(), the proxy's output with
// Process::wait_for_output, everything another thread does with eventually() over
// admin requests or connects. The one slow backend (--delay-ms) stands for a slow
// origin, so that a response is certainly in flight while the test acts; the test
// checks that it still is.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/load.h"
#include "tests/integration/tls_client.h"
#include "tests/support/tls_certs.h"

namespace ringproxy::integration {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------
// Helpers

std::vector<std::string> keys(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// A connect to 127.0.0.1:port was refused (nothing listens there).
bool connect_refused(uint16_t port, std::string* error = nullptr) {
  Conn c;
  const bool connected = c.connect("127.0.0.1", port, Millis(2000));
  if (error) *error = connected ? "connected" : c.error();
  return !connected && c.error().find("refused") != std::string::npos;
}

// A connect to 127.0.0.1:port was accepted. The reload's answer (and its "now
// listening on" log line) comes before the workers listen on the sockets it added, so
// a test that is not about that moment waits for this (AfterTheReloadAnswer... is).
bool accepting(uint16_t port) {
  Conn c;
  return c.connect("127.0.0.1", port, Millis(2000));
}

// A socket of the test's own listening on 127.0.0.1:port (a plain bind, no
// SO_REUSEPORT): the port is held by "another process" as far as the proxy is concerned.
class HeldPort {
 public:
  explicit HeldPort(uint16_t port = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      error_ = std::strerror(errno);
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      return;
    }
    port_ = ntohs(sa.sin_port);
  }
  ~HeldPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  HeldPort(const HeldPort&) = delete;
  HeldPort& operator=(const HeldPort&) = delete;
  bool ok() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::string error_;
};

// ---------------------------------------------------------------------------------------
// The fixture: pool "default" (top-level a, b, c: def-a..def-c), pool "images" (a, b, c:
// img-a..img-c), pool "api" (a, b: api-a, api-b) reached by path_prefix "/api/"; all
// 160 vnodes, hash key the URI. proxy.listen is plain; the test adds [[listener]]s.

class Listeners : public ::testing::Test {
 protected:
  ~Listeners() override {
    for (test::TestCert& c : certs_) test::free_cert(c);
  }

  DemoBackend& backend(const std::string& name, DemoBackendOptions options = {}) {
    auto& slot = backends_[name];
    if (!slot) slot = std::make_unique<DemoBackend>(dir_, name, options);
    return *slot;
  }
  std::string address(const std::string& name) { return backend(name).address(); }

  const test::TestCert& make_cert(const std::string& stem, const std::string& name, long until_s = 86400L * 30) {
    certs_.push_back(test::make_cert(dir_.path(), stem, {name}, test::KeyType::kEc, nullptr, -3600, until_s));
    return certs_.back();
  }
  static std::string tls_of(const test::TestCert& c) {
    return "{ certificates = [ { cert = \"" + c.cert_path + "\", key = \"" + c.key_path + "\" } ] }";
  }
  static std::string listener(uint16_t port, const std::string& pool, const std::string& tls = "") {
    return "\n[[listener]]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\npool = \"" + pool + "\"\n" +
           (tls.empty() ? "" : "tls = " + tls + "\n");
  }

  // The three pools and the /api/ route, plus `more` (extra pools, routes, listeners).
  std::string tiers(const std::string& more = "", const std::string& extra_routes = "") {
    std::string out;
    for (const char* n : {"a", "b", "c"}) {
      out +=
          "\n[[backend]]\nname = \"" + std::string(n) + "\"\naddress = \"" + address("def-" + std::string(n)) + "\"\n";
    }
    out += "\n[[pool]]\nname = \"images\"\nbackends = [\n";
    for (const char* n : {"a", "b", "c"}) {
      out += "  { name = \"" + std::string(n) + "\", address = \"" + address("img-" + std::string(n)) + "\" },\n";
    }
    out += "]\n\n[[pool]]\nname = \"api\"\nbackends = [\n";
    for (const char* n : {"a", "b"}) {
      out += "  { name = \"" + std::string(n) + "\", address = \"" + address("api-" + std::string(n)) + "\" },\n";
    }
    out += "]\n" + extra_routes + "\n[[route]]\npath_prefix = \"/api/\"\npool = \"api\"\n" + more;
    return out;
  }

  std::string config(const std::string& body, int workers = 2) {
    if (port_ == 0) port_ = free_port();
    if (admin_port_ == 0) admin_port_ = free_port();
    return "[proxy]\nlisten = \"127.0.0.1:" + std::to_string(port_) + "\"\nworkers = " + std::to_string(workers) +
           "\n\n[admin]\nlisten = \"127.0.0.1:" + std::to_string(admin_port_) + "\"\n" + body;
  }

  void start(const std::string& body, int workers = 2) {
    const std::string text = config(body, workers);
    ASSERT_NE(port_, 0);
    ASSERT_NE(admin_port_, 0);
    workers_ = workers;
    path_ = dir_.write_file("ringproxy.toml", text);
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", path_}, dir_.path(),
                                       "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << "ringproxy did not start:\n"
                                                                      << proxy_->describe() << "\nconfig:\n"
                                                                      << text;
  }

  // Rewrites the file with `body` and POSTs /reload; the JSON answer.
  json reload(const std::string& body, int expect_status = 200) {
    dir_.write_file("ringproxy.toml", config(body, workers_));
    const Response r = http_request(admin_port_, "POST", "/reload");
    EXPECT_EQ(r.status, expect_status) << r.describe() << "\n" << proxy_->describe();
    try {
      return json::parse(r.body);
    } catch (const std::exception&) {
      ADD_FAILURE() << "POST /reload: not JSON: " << r.describe();
      return json::object();
    }
  }

  json admin_json(const std::string& target) {
    const Response r = http_get(admin_port_, target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.describe();
    try {
      return json::parse(r.body);
    } catch (const std::exception&) {
      ADD_FAILURE() << target << ": not JSON: " << r.describe();
      return json::object();
    }
  }

  // Every sample of GET /metrics, by series ("name{labels}").
  std::map<std::string, double> metrics() {
    std::map<std::string, double> out;
    const Response r = http_get(admin_port_, "/metrics");
    EXPECT_EQ(r.status, 200) << r.describe();
    std::istringstream lines(r.body);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line[0] == '#') continue;
      const size_t space = line.rfind(' ');
      if (space != std::string::npos) out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return out;
  }
  // The 2xx answers of pool `pool`'s nodes.
  double served(const std::string& pool) {
    double sum = 0;
    const std::string prefix = "ringproxy_requests_total{pool=\"" + pool + "\",";
    for (const auto& [series, value] : metrics()) {
      if (series.rfind(prefix, 0) == 0 && series.find("code=\"2xx\"") != std::string::npos) sum += value;
    }
    return sum;
  }
  double in_flight(const std::string& pool, const std::string& node) {
    const auto m = metrics();
    const auto it = m.find("ringproxy_backend_in_flight{pool=\"" + pool + "\",backend=\"" + node + "\"}");
    return it == m.end() ? -1 : it->second;
  }

  // Each target over one keep-alive plain connection to `port`: its X-Backend, or
  // "(status N)" / "(error ...)" when it was not a 200 with the demo backend's body.
  std::vector<std::string> served_by_plain(uint16_t port, const std::vector<std::string>& targets) {
    Conn conn;
    std::vector<std::string> out;
    int failures = 0;
    for (const std::string& t : targets) {
      if (!conn.connected()) conn.connect("127.0.0.1", port);
      const Response r = conn.request("GET", t);
      if (!r.ok() || !r.keep_alive) conn.close();
      const std::string b = r.header("X-Backend");
      if (!r.ok() || r.status != 200 || r.body != b + " " + t + "\n") {
        if (++failures <= 5) ADD_FAILURE() << "GET " << t << " on :" << port << ": " << r.describe();
        out.push_back(r.ok() ? "(status " + std::to_string(r.status) + ")" : "(error " + r.error + ")");
        continue;
      }
      out.push_back(b);
    }
    EXPECT_EQ(failures, 0) << "of " << targets.size() << " requests on :" << port;
    return out;
  }
  // The same over TLS (one connection, reopened when closed).
  std::vector<std::string> served_by_tls(uint16_t port, const std::vector<std::string>& targets) {
    std::unique_ptr<TlsClient> conn;
    std::vector<std::string> out;
    int failures = 0;
    for (const std::string& t : targets) {
      if (!conn) conn = std::make_unique<TlsClient>(port);
      const Response r = conn->request("GET", t);
      if (!r.ok() || !r.keep_alive) conn.reset();
      const std::string b = r.header("X-Backend");
      if (!r.ok() || r.status != 200 || r.body != b + " " + t + "\n") {
        if (++failures <= 5) ADD_FAILURE() << "GET " << t << " over TLS on :" << port << ": " << r.describe();
        out.push_back(r.ok() ? "(status " + std::to_string(r.status) + ")" : "(error " + r.error + ")");
        continue;
      }
      out.push_back(b);
    }
    EXPECT_EQ(failures, 0) << "of " << targets.size() << " requests over TLS on :" << port;
    return out;
  }

  // How many targets went elsewhere than `want` (node names, with demo prefix `prefix`).
  static int differences(const std::vector<std::string>& targets, const std::vector<std::string>& got,
                         const std::map<std::string, std::string>& want, const std::string& prefix,
                         const std::string& what) {
    return placement_differences(targets, got, want, prefix, what);
  }

  std::string host_port(uint16_t port) const { return "127.0.0.1:" + std::to_string(port); }

  TempDir dir_;
  std::deque<test::TestCert> certs_;
  std::map<std::string, std::unique_ptr<DemoBackend>> backends_;
  uint16_t port_ = 0, admin_port_ = 0;
  int workers_ = 2;
  std::string path_;
  std::unique_ptr<Process> proxy_;
};

const std::vector<std::string> kDefaultNodes{"a", "b", "c"};
const std::vector<std::string> kImagesNodes{"a", "b", "c"};
const std::vector<std::string> kApiNodes{"a", "b"};

// ---------------------------------------------------------------------------------------
// 1. A plain proxy.listen (pool default) and a TLS [[listener]] (pool images), with a
// route /api/ -> api: the route on both, each listener's own fallback, every request on
// the node the reference places its key on in that pool. Plain HTTP on the TLS
// listener gets the proxy's 400; TLS on the plain one fails.
TEST_F(Listeners, EachListenerFallsBackToItsPoolAndRoutesApplyOnAll) {
  const auto& site = make_cert("site", "images.test");
  const uint16_t tls_port = free_port();
  ASSERT_NE(tls_port, 0);
  start(tiers(listener(tls_port, "images", tls_of(site))));
  if (HasFatalFailure()) return;
  EXPECT_TRUE(proxy_->wait_for_output(
      Output::err, "listening on " + host_port(port_) + ", " + host_port(tls_port) + " with 2 workers"))
      << proxy_->stderr_text();

  const auto objs = keys("/k/", 300);
  const auto apis = keys("/api/", 150);
  const auto images_want = reference_map(kImagesNodes, objs);
  const auto default_want = reference_map(kDefaultNodes, objs);
  const auto api_want = reference_map(kApiNodes, apis);
  ASSERT_EQ(images_want.size(), objs.size());
  ASSERT_EQ(default_want.size(), objs.size());
  ASSERT_EQ(api_want.size(), apis.size());
  // Pools default and images have nodes of the same names, so one placement; which
  // pool served shows in the demo backend's name (def-a or img-a).

  EXPECT_EQ(differences(objs, served_by_tls(tls_port, objs), images_want, "img-", "unmatched on the TLS listener"), 0);
  EXPECT_EQ(differences(apis, served_by_tls(tls_port, apis), api_want, "api-", "/api/ on the TLS listener"), 0);
  EXPECT_EQ(differences(objs, served_by_plain(port_, objs), default_want, "def-", "unmatched on proxy.listen"), 0);
  EXPECT_EQ(differences(apis, served_by_plain(port_, apis), api_want, "api-", "/api/ on proxy.listen"), 0);

  {
    TlsClient c(tls_port);
    ASSERT_TRUE(c.ok()) << c.error();
    EXPECT_EQ(c.peer_cn, "images.test");
  }

  // Plain HTTP on the TLS listener: the proxy's plaintext 400, then the close.
  Conn plain("127.0.0.1", tls_port);
  ASSERT_TRUE(plain.connected()) << plain.error();
  const Response r = plain.request("GET", "/k/1");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.status, 400) << r.describe();
  EXPECT_NE(r.body.find("The plain HTTP request was sent to the HTTPS port"), std::string::npos) << r.body;
  EXPECT_FALSE(r.keep_alive);
  EXPECT_FALSE(r.has_header("X-Backend")) << "answered by the proxy itself";
  const CloseKind how = plain.wait_close(kTlsTimeout);
  EXPECT_TRUE(how == CloseKind::eof || how == CloseKind::reset) << to_string(how);
  EXPECT_TRUE(eventually([&] { return metrics()["ringproxy_tls_handshakes_total{result=\"plain_http\"}"] == 1; }))
      << "the plain request on the TLS listener counted as plain_http";

  // TLS on the plain listener: no handshake.
  {
    TlsClient wrong(port_);
    EXPECT_FALSE(wrong.ok()) << "a TLS handshake succeeded on the plain proxy.listen";
  }
  // Both still serve.
  EXPECT_EQ(http_get(port_, "/after").status, 200);
  TlsClient after(tls_port);
  ASSERT_TRUE(after.ok()) << after.error();
  EXPECT_EQ(after.request("GET", "/after").status, 200);
}

// ---------------------------------------------------------------------------------------
// 2. Three TLS listeners (proxy.listen with [proxy.tls], two [[listener]]s), each with
// its own certificate: each presents its own, whatever the SNI asks for, and the
// expiry gauge has one series per certificate file with that file's expiry.
TEST_F(Listeners, EachTlsListenerPresentsItsOwnCertificate) {
  const auto& main_cert = make_cert("main", "main.test", 86400L * 30);
  const auto& alpha = make_cert("alpha", "alpha.test", 86400L * 10);
  const auto& beta = make_cert("beta", "beta.test", 86400L * 50);
  const uint16_t alpha_port = free_port();
  const uint16_t beta_port = free_port();
  ASSERT_NE(alpha_port, 0);
  ASSERT_NE(beta_port, 0);
  start("\n[proxy.tls]\ncertificates = [ { cert = \"" + main_cert.cert_path + "\", key = \"" + main_cert.key_path +
        "\" } ]\n" + tiers(listener(alpha_port, "", tls_of(alpha)) + listener(beta_port, "images", tls_of(beta))));
  if (HasFatalFailure()) return;

  struct Case {
    uint16_t port;
    std::string cn;
    std::string prefix;  // the fallback pool's demo prefix
  };
  for (const Case& c : std::vector<Case>{
           {port_, "main.test", "def-"}, {alpha_port, "alpha.test", "def-"}, {beta_port, "beta.test", "img-"}}) {
    for (const std::string sni : {"", "main.test", "alpha.test", "beta.test", "other.test"}) {
      TlsClient client(c.port, {.sni = sni});
      ASSERT_TRUE(client.ok()) << ":" << c.port << " SNI \"" << sni << "\": " << client.error();
      EXPECT_EQ(client.peer_subject, "CN=" + c.cn) << ":" << c.port << " SNI \"" << sni << "\"";
      const Response r = client.request("GET", "/cert/" + c.cn);
      EXPECT_EQ(r.status, 200) << r.describe();
      EXPECT_EQ(r.header("X-Backend").rfind(c.prefix, 0), 0u) << ":" << c.port << ": " << r.describe();
    }
  }

  const auto m = metrics();
  for (const auto& [cert, days] :
       std::vector<std::pair<const test::TestCert*, long>>{{&main_cert, 30}, {&alpha, 10}, {&beta, 50}}) {
    const std::string series = "ringproxy_tls_certificate_expiry_seconds{certificate=\"" + cert->cert_path + "\"}";
    ASSERT_TRUE(m.count(series)) << "no series " << series;
    // Made moments ago to expire in `days` days: within a minute of that.
    EXPECT_NEAR(m.at(series), 86400.0 * static_cast<double>(days), 60.0) << series;
  }
  int series_count = 0;
  for (const auto& [s, v] : m) series_count += s.rfind("ringproxy_tls_certificate_expiry_seconds{", 0) == 0;
  EXPECT_EQ(series_count, 3);
}

// ---------------------------------------------------------------------------------------
// 3. Reloads adding listeners while wrk (8 keep-alive connections) loads proxy.listen:
// a TLS listener (pool images) by SIGHUP, then a plain one (pool "" = default) by POST
// /reload. No request of wrk's fails; each new listener answers once its reload is done,
// with its own pool's placement.
TEST_F(Listeners, ReloadAddsListenersUnderLoad) {
  ASSERT_EQ(access(kWrk, X_OK), 0) << "wrk missing: scripts/install-deps.sh --bench installs it";
  const auto& site = make_cert("added", "added.test");
  const uint16_t tls_port = free_port();
  const uint16_t plain_port = free_port();
  ASSERT_NE(tls_port, 0);
  ASSERT_NE(plain_port, 0);
  const std::string base = tiers();
  const std::string with_tls = tiers(listener(tls_port, "images", tls_of(site)));
  const std::string with_both = tiers(listener(tls_port, "images", tls_of(site)) + listener(plain_port, ""));
  start(base);
  if (HasFatalFailure()) return;
  EXPECT_TRUE(connect_refused(tls_port));
  EXPECT_TRUE(connect_refused(plain_port));

  Wrk load = start_wrk(dir_, "wrk", port_, 8);
  ASSERT_TRUE(eventually([&] { return served("default") >= 500; }, Millis(15000))) << "wrk's requests did not arrive\n"
                                                                                   << load.describe() << "\n"
                                                                                   << proxy_->describe();

  const auto ks = keys("/k/new", 60);
  const auto images_want = reference_map(kImagesNodes, ks);
  const auto default_want = reference_map(kDefaultNodes, ks);

  // SIGHUP: the TLS listener.
  size_t log_at = proxy_->output_size(Output::err);
  dir_.write_file("ringproxy.toml", config(with_tls));
  ASSERT_TRUE(proxy_->send_signal(SIGHUP));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "now listening on " + host_port(tls_port), kDefaultTimeout, log_at))
      << proxy_->stderr_text().substr(log_at);
  const std::string hup_log = proxy_->stderr_text().substr(log_at);
  EXPECT_NE(hup_log.find("reloaded " + path_ + ": "), std::string::npos) << hup_log;
  EXPECT_EQ(hup_log.find("no longer listening"), std::string::npos) << hup_log;
  ASSERT_TRUE(eventually([&] { return accepting(tls_port); })) << "the TLS listener a SIGHUP added does not accept";
  {
    TlsClient c(tls_port);
    ASSERT_TRUE(c.ok()) << "the TLS listener a SIGHUP added: " << c.error();
    EXPECT_EQ(c.peer_cn, "added.test");
  }
  EXPECT_EQ(differences(ks, served_by_tls(tls_port, ks), images_want, "img-", "the listener SIGHUP added"), 0);
  double seen = served("default");
  ASSERT_TRUE(eventually([&] { return served("default") >= seen + 1000; }, Millis(15000)))
      << "no load after the SIGHUP\n"
      << proxy_->describe();

  // POST /reload: the plain listener, the TLS one kept.
  log_at = proxy_->output_size(Output::err);
  const json r = reload(with_both);
  EXPECT_EQ(r.value("ok", false), true) << r.dump();
  ASSERT_TRUE(
      proxy_->wait_for_output(Output::err, "now listening on " + host_port(plain_port), kDefaultTimeout, log_at))
      << proxy_->stderr_text().substr(log_at);
  const std::string post_log = proxy_->stderr_text().substr(log_at);
  ASSERT_TRUE(eventually([&] { return accepting(plain_port); })) << "the listener POST /reload added does not accept";
  EXPECT_EQ(post_log.find("now listening on " + host_port(tls_port)), std::string::npos)
      << "the TLS listener was kept, not added again: " << post_log;
  EXPECT_EQ(differences(ks, served_by_plain(plain_port, ks), default_want, "def-", "the listener POST /reload added"),
            0);
  EXPECT_EQ(differences(ks, served_by_tls(tls_port, ks), images_want, "img-", "the kept TLS listener"), 0);
  seen = served("default");
  ASSERT_TRUE(eventually([&] { return served("default") >= seen + 1000; }, Millis(15000)))
      << "no load after the reload\n"
      << proxy_->describe();
  ASSERT_TRUE(load.running()) << "wrk ended early: " << load.describe();

  const WrkResult w = stop_wrk(load);
  ASSERT_TRUE(w.parsed);
  EXPECT_GT(w.requests, 2500) << w.text;
  EXPECT_EQ(w.errors(), "0 0 0 0 0") << "socket errors (connect read write), non-2xx (status), timeouts:\n"
                                     << w.describe();
  EXPECT_EQ(w.statuses, "200:" + std::to_string(w.requests)) << w.text;
  for (const auto& [b, n] : w.by_backend()) EXPECT_EQ(b.rfind("def-", 0), 0u) << b << ":" << n << " on proxy.listen";
  EXPECT_TRUE(proxy_->running()) << proxy_->describe();
}

// ---------------------------------------------------------------------------------------
// 4. A reload removing two listeners (a plain one and a TLS one, both pool images) while
// wrk loads the plain one and proxy.listen. One worker, so that "the worker has done the
// removal" is "the port refuses connections", and a request the test sends before
// another's answer has been read by then.
// - proxy.listen's wrk: no failure at all.
// - The removed plain listener: connections are refused once the worker has closed it
//   (waited for; the moment right after the reload's answer is test 8's); wrk's
//   answers there were all 200s from pool images; a response in flight at the reload
//   (a slow origin, 2 s) arrives whole, then the connection closes (FIN, not RST); a
//   64 MiB response the client had not read arrives whole too; an idle keep-alive
//   connection closes at once, cleanly.
// - The removed TLS listener: refused too; its idle connection closes without a reset.
TEST_F(Listeners, ReloadRemovesListenersAndTheirConnectionsDrain) {
  ASSERT_EQ(access(kWrk, X_OK), 0) << "wrk missing: scripts/install-deps.sh --bench installs it";
  DemoBackendOptions slow;
  slow.delay_ms = 2000;
  backend("slow-a", slow);
  backend("big-a");
  const auto& site = make_cert("gone", "gone.test");
  const uint16_t gone_port = free_port();
  const uint16_t gone_tls_port = free_port();
  ASSERT_NE(gone_port, 0);
  ASSERT_NE(gone_tls_port, 0);
  // Pool "slow" (/slow/) and pool "big" (Host big.test): one node each, so that their
  // in-flight gauges show the test's own requests only.
  const std::string extra_pools =
      "\n[[pool]]\nname = \"slow\"\nbackends = [ { name = \"s\", address = \"" + address("slow-a") +
      "\" } ]\n\n[[pool]]\nname = \"big\"\nbackends = [ { name = \"g\", " + "address = \"" + address("big-a") +
      "\" } ]\n" + "\n[[route]]\npath_prefix = \"/slow/\"\npool = \"slow\"\n" +
      "\n[[route]]\nhost = \"big.test\"\npool = \"big\"\n";
  const std::string kept = tiers(extra_pools);
  const std::string both =
      tiers(extra_pools + listener(gone_port, "images") + listener(gone_tls_port, "images", tls_of(site)));
  start(both, 1);
  if (HasFatalFailure()) return;

  Wrk main_load = start_wrk(dir_, "wrk-main", port_, 6);
  Wrk gone_load = start_wrk(dir_, "wrk-gone", gone_port, 6);
  ASSERT_TRUE(eventually([&] { return served("default") >= 500 && served("images") >= 500; }, Millis(15000)))
      << "wrk's requests did not arrive\n"
      << main_load.describe() << "\n"
      << gone_load.describe() << "\n"
      << proxy_->describe();

  // An idle keep-alive connection on each removed listener.
  Conn idle("127.0.0.1", gone_port);
  ASSERT_TRUE(idle.connected()) << idle.error();
  const Response first = idle.request("GET", "/k/idle");
  ASSERT_EQ(first.status, 200) << first.describe();
  EXPECT_EQ(first.header("X-Backend").rfind("img-", 0), 0u) << first.describe();
  ASSERT_TRUE(first.keep_alive);
  TlsClient idle_tls(gone_tls_port);
  ASSERT_TRUE(idle_tls.ok()) << idle_tls.error();
  const Response first_tls = idle_tls.request("GET", "/k/idle-tls");
  ASSERT_EQ(first_tls.status, 200) << first_tls.describe();
  ASSERT_TRUE(first_tls.keep_alive);

  // A 64 MiB response on the removed listener, not read: it stays in flight (the
  // proxy's buffers and the sockets' fill up long before).
  constexpr uint64_t kBig = 64ull << 20;
  Conn big("127.0.0.1", gone_port);
  ASSERT_TRUE(big.connected()) << big.error();
  ASSERT_TRUE(big.send_request("GET", "/bytes/" + std::to_string(kBig), {{"Host", "big.test"}}));
  // A slow response in flight on the removed listener.
  Conn slow_conn("127.0.0.1", gone_port);
  ASSERT_TRUE(slow_conn.connected()) << slow_conn.error();
  ASSERT_TRUE(slow_conn.send_request("GET", "/slow/1"));
  ASSERT_TRUE(eventually([&] { return in_flight("slow", "s") == 1 && in_flight("big", "g") == 1; }))
      << "slow " << in_flight("slow", "s") << ", big " << in_flight("big", "g");

  const size_t log_at = proxy_->output_size(Output::err);
  const json r = reload(kept);
  EXPECT_EQ(r.value("ok", false), true) << r.dump();
  // Right after the answer (the worker may not have acted yet): informational.
  std::string first_try;
  const bool refused_at_once = connect_refused(gone_port, &first_try);
  ASSERT_TRUE(eventually([&] { return connect_refused(gone_port) && connect_refused(gone_tls_port); }))
      << "the removed listeners still accept";
  if (!refused_at_once) std::cout << "note: the first connect right after the reload: " << first_try << "\n";
  ASSERT_TRUE(proxy_->wait_for_output(Output::err,
                                      "no longer listening on " + host_port(gone_port) + " (its connections drain)",
                                      kDefaultTimeout, log_at))
      << proxy_->stderr_text().substr(log_at);
  EXPECT_NE(proxy_->stderr_text().find(
                "no longer listening on " + host_port(gone_tls_port) + " (its connections drain)", log_at),
            std::string::npos);
  // The removal is done (one worker: its sockets are closed) and the slow answer has not
  // come yet: it was in flight when its connection was drained.
  EXPECT_EQ(in_flight("slow", "s"), 1) << "the slow response was no longer in flight at the removal";
  EXPECT_EQ(slow_conn.buffered(), "");

  // The idle ones close at once, without a reset.
  EXPECT_EQ(to_string(idle.wait_close(Millis(3000))), "eof") << "the idle keep-alive connection";
  EXPECT_EQ(idle.buffered(), "");
  const std::string tls_close = idle_tls.wait_close(Millis(3000));
  EXPECT_TRUE(tls_close == "close_notify" || tls_close == "eof") << "the idle TLS connection: " << tls_close;
  // The slow response, whole, then the close.
  ReadOptions slow_read;
  slow_read.timeout = Millis(10000);
  const Response slow_r = slow_conn.read_response(slow_read);
  ASSERT_TRUE(slow_r.ok()) << "the response in flight: " << slow_r.describe();
  EXPECT_EQ(slow_r.status, 200);
  EXPECT_EQ(slow_r.body, "slow-a /slow/1\n");
  EXPECT_FALSE(slow_r.keep_alive) << "the last response of a draining connection says Connection: close";
  EXPECT_EQ(to_string(slow_conn.wait_close(Millis(3000))), "eof");
  // The big one, whole, then the close.
  ReadOptions big_read;
  big_read.timeout = Millis(30000);
  big_read.keep_body = false;
  const Response big_r = big.read_response(big_read);
  ASSERT_TRUE(big_r.ok()) << "the 64 MiB response in flight: " << big_r.describe();
  EXPECT_EQ(big_r.status, 200);
  EXPECT_EQ(big_r.body_bytes, kBig);
  EXPECT_EQ(to_string(big.wait_close(Millis(3000))), "eof");

  // proxy.listen's load goes on after the removal.
  const double seen = served("default");
  ASSERT_TRUE(eventually([&] { return served("default") >= seen + 1000; }, Millis(15000)))
      << "no load on proxy.listen after the removal\n"
      << proxy_->describe();
  const WrkResult main_w = stop_wrk(main_load);
  const WrkResult gone_w = stop_wrk(gone_load);
  ASSERT_TRUE(main_w.parsed && gone_w.parsed);
  EXPECT_GT(main_w.requests, 1500) << main_w.text;
  EXPECT_EQ(main_w.errors(), "0 0 0 0 0") << "proxy.listen: socket errors (connect read write), non-2xx, timeouts:\n"
                                          << main_w.describe();
  EXPECT_EQ(main_w.statuses, "200:" + std::to_string(main_w.requests)) << main_w.text;
  for (const auto& [b, n] : main_w.by_backend()) EXPECT_EQ(b.rfind("def-", 0), 0u) << b << ":" << n;

  // The removed listener's load: every answer it got was a 200 from pool images; after
  // the removal its reconnects were refused.
  EXPECT_GT(gone_w.requests, 500) << gone_w.text;
  EXPECT_EQ(gone_w.statuses, "200:" + std::to_string(gone_w.requests)) << gone_w.text;
  EXPECT_EQ(gone_w.status, 0) << gone_w.text;
  EXPECT_EQ(gone_w.stalled(), 0) << gone_w.describe();
  // wrk connects without waiting: a refused connect shows as its next write's error.
  EXPECT_GT(gone_w.connect + gone_w.write, 0)
      << "wrk's reconnects to the removed listener were not refused: " << gone_w.text;
  for (const auto& [b, n] : gone_w.by_backend()) {
    EXPECT_EQ(b.rfind("img-", 0), 0u) << b << ":" << n << " answered on the removed images listener";
  }
  std::cout << "removed listener's wrk: " << gone_w.text;
  EXPECT_TRUE(proxy_->running()) << proxy_->describe();
}

// ---------------------------------------------------------------------------------------
// 5. A reload adding listeners one of which cannot bind (the port is another process's:
// a demo backend's, then a socket of the test's own) is refused with "cannot listen on
// ADDR: ..." in the /reload answer (and the log after SIGHUP), and nothing changes: the
// other changes of the file (a node, a route) are not applied, the ring fingerprints
// and /pools are the same, the listener it did bind before the failing one is closed
// again, the old listeners serve. A reload without the held port then applies. The
// same held port at start-up: ringproxy exits saying so.
TEST_F(Listeners, AReloadWhoseListenerCannotBindChangesNothing) {
  backend("def-d");
  const uint16_t kept_port = free_port();
  const uint16_t fresh_port = free_port();
  ASSERT_NE(kept_port, 0);
  ASSERT_NE(fresh_port, 0);
  const std::string base = tiers(listener(kept_port, "images"));
  start(base);
  if (HasFatalFailure()) return;

  const json ring_before = admin_json("/ring");
  const json pools_before = admin_json("/pools");
  const double generation = metrics()["ringproxy_config_generation"];
  ASSERT_TRUE(ring_before.contains("fingerprint")) << ring_before.dump();
  const auto ks = keys("/k/held", 40);
  const auto want = reference_map(kImagesNodes, ks);

  // Everything the refused file would change: a node "d" in pool default, a route
  // /new/ -> images, a listener on a free port, and one on the held port.
  const auto refused_body = [&](uint16_t held) {
    return tiers(listener(kept_port, "images") + listener(fresh_port, "") + listener(held, "api") +
                     "\n[[backend]]\nname = \"d\"\naddress = \"" + address("def-d") + "\"\n",
                 "\n[[route]]\npath_prefix = \"/new/\"\npool = \"images\"\n");
  };
  const auto nothing_changed = [&](const std::string& what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(admin_json("/ring").value("fingerprint", ""), ring_before.value("fingerprint", "?"));
    EXPECT_EQ(admin_json("/pools"), pools_before);
    EXPECT_EQ(metrics()["ringproxy_config_generation"], generation);
    EXPECT_TRUE(connect_refused(fresh_port)) << "the listener bound before the failing one stayed open";
    // Nothing of the proxy's is left on it: a plain bind of the test's own succeeds.
    const HeldPort probe(fresh_port);
    EXPECT_TRUE(probe.ok()) << "127.0.0.1:" << fresh_port << " still held: " << probe.error();
    EXPECT_EQ(differences(ks, served_by_plain(kept_port, ks), want, "img-", "the kept listener"), 0);
    const Response n = http_get(port_, "/new/1");
    EXPECT_EQ(n.status, 200) << n.describe();
    EXPECT_EQ(n.header("X-Backend").rfind("def-", 0), 0u) << "the refused route /new/ applied: " << n.describe();
    EXPECT_NE(n.header("X-Backend"), "def-d") << "the refused node d applied";
  };

  // (a) Another process's port: a demo backend's.
  DemoBackend& holder = backend("holder");
  size_t log_at = proxy_->output_size(Output::err);
  json r = reload(refused_body(holder.port()), 400);
  EXPECT_EQ(r.value("ok", true), false) << r.dump();
  const std::string held_a = host_port(holder.port());
  EXPECT_EQ(r.value("error", "").rfind(path_ + ": cannot listen on " + held_a + ": ", 0), 0u) << r.dump();
  EXPECT_NE(r.value("error", "").find("in use"), std::string::npos) << r.dump();
  nothing_changed("a demo backend's port");
  EXPECT_EQ(http_get(holder.port(), "/still-mine").header("X-Backend"), "holder") << "the holder's port was taken";
  std::string log = proxy_->stderr_text().substr(log_at);
  EXPECT_EQ(log.find("reloaded "), std::string::npos) << log;
  EXPECT_EQ(log.find("now listening"), std::string::npos) << log;

  // (b) A socket of the test's own, listening; by SIGHUP this time.
  const HeldPort held;
  ASSERT_TRUE(held.ok()) << held.error();
  log_at = proxy_->output_size(Output::err);
  dir_.write_file("ringproxy.toml", config(refused_body(held.port())));
  ASSERT_TRUE(proxy_->send_signal(SIGHUP));
  ASSERT_TRUE(proxy_->wait_for_output(
      Output::err, "reload refused: " + path_ + ": cannot listen on " + host_port(held.port()) + ": ", kDefaultTimeout,
      log_at))
      << proxy_->stderr_text().substr(log_at);
  nothing_changed("a port of the test's own, by SIGHUP");
  r = reload(refused_body(held.port()), 400);
  EXPECT_EQ(r.value("error", "").rfind(path_ + ": cannot listen on " + host_port(held.port()) + ": ", 0), 0u)
      << r.dump();
  nothing_changed("a port of the test's own, by POST /reload");
  log = proxy_->stderr_text().substr(log_at);
  EXPECT_EQ(log.find("reloaded "), std::string::npos) << log;

  // Without the held port the same file applies.
  r = reload(tiers(listener(kept_port, "images") + listener(fresh_port, "") +
                       "\n[[backend]]\nname = \"d\"\naddress = \"" + address("def-d") + "\"\n",
                   "\n[[route]]\npath_prefix = \"/new/\"\npool = \"images\"\n"));
  EXPECT_EQ(r.value("ok", false), true) << r.dump();
  EXPECT_NE(admin_json("/ring").value("fingerprint", ""), ring_before.value("fingerprint", "?"));
  EXPECT_EQ(metrics()["ringproxy_config_generation"], generation + 1);
  ASSERT_TRUE(eventually([&] { return accepting(fresh_port); })) << "the listener the reload added does not accept";
  const Response fresh = http_get(fresh_port, "/k/fresh");
  EXPECT_EQ(fresh.status, 200) << fresh.describe();
  EXPECT_EQ(fresh.header("X-Backend").rfind("def-", 0), 0u) << fresh.describe();
  EXPECT_EQ(http_get(port_, "/new/1").header("X-Backend").rfind("img-", 0), 0u);

  // At start-up: a second ringproxy with a listener on the held port does not start.
  const uint16_t other_port = free_port();
  const std::string other = "[proxy]\nlisten = \"127.0.0.1:" + std::to_string(other_port) +
                            "\"\nworkers = 1\n\n[admin]\nlisten = \"\"\n" + tiers(listener(held.port(), "images"));
  const std::string other_path = dir_.write_file("other.toml", other);
  Process second(std::string(RINGPROXY_BIN), {"-c", other_path}, dir_.path(), "ringproxy-second");
  const auto status = second.wait();
  ASSERT_TRUE(status.has_value()) << "ringproxy started on a held port: " << second.describe();
  EXPECT_NE(status->code, 0) << second.describe();
  EXPECT_NE(second.stderr_text().find("cannot listen on " + host_port(held.port()) + ": "), std::string::npos)
      << second.stderr_text();
  EXPECT_TRUE(connect_refused(other_port)) << "the failed start left proxy.listen open";
  EXPECT_TRUE(proxy_->running()) << proxy_->describe();
}

// ---------------------------------------------------------------------------------------
// 6. `ringproxy --check`: a listener's missing certificate files are reported at their
// keys (listener[N].tls.certificates[0].cert / .key) with file:line:col, in an inline
// table and in a [listener.tls] table; a valid file counts its listeners.
TEST_F(Listeners, CheckReportsAListenersCertificateFilesAtTheirKeys) {
  const auto& good = make_cert("good", "good.test");
  const std::string missing_cert = dir_.file("missing.pem");
  const std::string missing_key = dir_.file("missing.key");
  const std::string head =
      "[proxy]\nlisten = \"127.0.0.1:18080\"\n\n[admin]\nlisten = \"\"\n\n"
      "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n\n"
      "[[pool]]\nname = \"images\"\nbackends = [ { name = \"i\", address = \"127.0.0.1:9002\" } ]\n\n"
      "[[route]]\nhost = \"img.test\"\npool = \"images\"\n";
  const std::string inline_line =
      "tls = { certificates = [ { cert = \"" + missing_cert + "\", key = \"" + good.key_path + "\" } ] }";
  const std::string table_line =
      "certificates = [ { cert = \"" + good.cert_path + "\", key = \"" + missing_key + "\" } ]";
  const std::string text = head + "\n[[listener]]\nlisten = \"127.0.0.1:18443\"\npool = \"images\"\n" + inline_line +
                           "\n\n[[listener]]\nlisten = \"127.0.0.1:18444\"\n[listener.tls]\n" + table_line + "\n";
  const std::string path = dir_.write_file("check.toml", text);
  // Lines and columns, counted here: the value's opening quote.
  const auto line_of = [&](const std::string& line) {
    const size_t at = text.find(line);
    return std::to_string(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n') + 1);
  };
  const std::string cert_at = line_of(inline_line) + ":" + std::to_string(inline_line.find("cert = \"") + 8);
  const std::string key_at = line_of(table_line) + ":" + std::to_string(table_line.find("key = \"") + 7);

  Process check(std::string(RINGPROXY_BIN), {"--check", "-c", path}, dir_.path(), "check");
  auto status = check.wait();
  ASSERT_TRUE(status.has_value()) << check.describe();
  EXPECT_EQ(status->code, 1) << check.describe();
  EXPECT_EQ(check.stdout_text(), "");
  const std::string err = check.stderr_text();
  EXPECT_NE(
      err.find(path + ":" + cert_at + ": listener[0].tls.certificates[0].cert: cannot read \"" + missing_cert + "\""),
      std::string::npos)
      << err;
  EXPECT_NE(
      err.find(path + ":" + key_at + ": listener[1].tls.certificates[0].key: cannot read \"" + missing_key + "\""),
      std::string::npos)
      << err;
  EXPECT_EQ(err.find("proxy.tls"), std::string::npos) << "no proxy.tls in this file: " << err;

  // Fixed: ok, with the listeners counted.
  const std::string fixed_inline = "tls = " + tls_of(good);
  std::string fixed = text;
  fixed.replace(fixed.find(inline_line), inline_line.size(), fixed_inline);
  fixed.replace(fixed.find(table_line), table_line.size(),
                "certificates = [ { cert = \"" + good.cert_path + "\", key = \"" + good.key_path + "\" } ]");
  const std::string fixed_path = dir_.write_file("fixed.toml", fixed);
  Process ok(std::string(RINGPROXY_BIN), {"--check", "-c", fixed_path}, dir_.path(), "check-fixed");
  status = ok.wait();
  ASSERT_TRUE(status.has_value()) << ok.describe();
  EXPECT_EQ(status->code, 0) << ok.describe();
  EXPECT_EQ(ok.stdout_text(), fixed_path + ": ok (1 backends, 1 pool, 1 route, 2 listeners)\n") << ok.stderr_text();
}

// ---------------------------------------------------------------------------------------
// 7. A request in progress on a listener a reload removes, its head not yet complete at
// the removal (the connection is not idle, so it is not closed): SPEC "A request that
// no route matches goes to its listener's pool" and the reload's "each closes after the
// response in progress" say it is answered by its listener's pool, images. One worker,
// so that an answer on another connection read after the partial head was sent means
// the worker has read that head too.
//
// Fails on c40b580: the request is answered by pool default (X-Backend def-c), the
// pool of proxy.listen. Cause: the exchange is routed with the routing current when
// its head completes (Exchange, routing_ = worker_.routing_ptr()), which no longer has
// the removed listener, and Routing::listener(id) answers proxy.listen's
// ListenerRouting for an id it does not know (proxy/backends.h), so the fallback pool
// (and with it the request) moves to proxy.listen's. The same fallback serves any
// request that starts on a removed listener's connection after the worker took the new
// routing, as a head that arrives in pieces across the reload does here.
TEST_F(Listeners, ARequestInProgressOnARemovedListenerKeepsItsListenersPool) {
  const uint16_t gone_port = free_port();
  ASSERT_NE(gone_port, 0);
  start(tiers(listener(gone_port, "images")), 1);
  if (HasFatalFailure()) return;
  const std::string target = "/k/partial";
  const auto want = reference_map(kImagesNodes, {target});
  ASSERT_EQ(want.size(), 1u);

  Conn partial("127.0.0.1", gone_port);
  ASSERT_TRUE(partial.connected()) << partial.error();
  ASSERT_TRUE(partial.send_raw("GET " + target + " HTTP/1.1\r\nHost: gone.test\r\n"));
  const Response other = http_get(gone_port, "/k/other");
  ASSERT_EQ(other.status, 200) << other.describe();
  ASSERT_EQ(other.header("X-Backend").rfind("img-", 0), 0u) << other.describe();

  const json r = reload(tiers());
  EXPECT_EQ(r.value("ok", false), true) << r.dump();
  ASSERT_TRUE(eventually([&] { return connect_refused(gone_port); })) << "the removed listener still accepts";
  // Not closed: its request is in progress.
  EXPECT_EQ(to_string(partial.wait_close(Millis(0))), "timeout");

  ASSERT_TRUE(partial.send_raw("\r\n"));
  const Response answer = partial.read_response();
  ASSERT_TRUE(answer.ok()) << answer.describe();
  EXPECT_EQ(answer.status, 200) << answer.describe();
  EXPECT_EQ(answer.header("X-Backend"), "img-" + want.at(target))
      << "the request came on the images listener; answered by " << answer.header("X-Backend") << "\n"
      << answer.describe();
  EXPECT_FALSE(answer.keep_alive) << answer.describe();
  EXPECT_EQ(to_string(partial.wait_close(Millis(3000))), "eof");
}

// ---------------------------------------------------------------------------------------
// 8. The reload's answer as the moment listeners change: right after POST /reload says
// ok, a listener it added serves (a connect and a request, pool images) and one it
// removed refuses connections (SPEC: "a removed listener stops accepting at once (new
// connections refused)"). Twenty rounds of adding and removing; each probe is one
// connect made as soon as the answer is read. Between rounds the test waits (bounded)
// until the removed port refuses, so that each round starts from a closed port.
//
// Fails on c40b580 (the removal half in every run so far, the adding half in about
// half of them): Server::reload answers, and logs "now listening on" / "no longer
// listening on", once it has only notified the workers (Worker::notify_listeners, a
// uv_async_send). An added listener's sockets are bound but listen() only runs on each
// worker's thread later (Worker::open_listener), so a connect right after the answer
// can be refused; a removed listener's sockets still listen until each worker closes
// them (Worker::take_listener_changes), so a connect right after the answer is
// accepted by the kernel and then reset when the socket closes, not refused.
TEST_F(Listeners, AfterTheReloadAnswerAnAddedListenerServesAndARemovedOneRefuses) {
  const uint16_t port = free_port();
  ASSERT_NE(port, 0);
  const std::string without = tiers();
  const std::string with = tiers(listener(port, "images"));
  start(without);
  if (HasFatalFailure()) return;
  constexpr int kRounds = 20;
  std::map<std::string, int> after_add, after_remove;
  for (int round = 0; round < kRounds; ++round) {
    json r = reload(with);
    ASSERT_EQ(r.value("ok", false), true) << r.dump();
    const Response a = http_get(port, "/k/round" + std::to_string(round));
    after_add[a.ok() ? "status " + std::to_string(a.status) + " from " + a.header("X-Backend").substr(0, 4) + "*"
                     : a.error]++;
    r = reload(without);
    ASSERT_EQ(r.value("ok", false), true) << r.dump();
    Conn c;
    if (c.connect("127.0.0.1", port, Millis(2000))) {
      const Response g = c.request("GET", "/k/late");
      after_remove[g.ok() ? "connected, status " + std::to_string(g.status)
                          : "connected, then " + std::string(g.closed ? "closed" : "error") + ": " + g.error]++;
    } else {
      after_remove[c.error()]++;
    }
    ASSERT_TRUE(eventually([&] { return connect_refused(port); })) << "round " << round;
  }
  const auto describe = [](const std::map<std::string, int>& m) {
    std::string out;
    for (const auto& [k, n] : m) out += "\n  " + std::to_string(n) + "x " + k;
    return out;
  };
  EXPECT_EQ(after_add, (std::map<std::string, int>{{"status 200 from img-*", kRounds}}))
      << "the first request right after the reload that added the listener:" << describe(after_add);
  EXPECT_EQ(after_remove, (std::map<std::string, int>{{"connect: Connection refused", kRounds}}))
      << "the first connect right after the reload that removed the listener:" << describe(after_remove);
}

}  // namespace
}  // namespace ringproxy::integration
