// HTTP/2 to the nodes (SPEC "HTTP/2 and gRPC", issue 16): a real ringproxy in front of
// nodes with protocol = "h2c", each an HTTP/2 server of the tests' own
// (tests/integration/h2_node.py, Debian's python3-h2) that answers with what it saw, or
// Debian's nginx speaking h2c. HTTP/1.1 clients (curl, the harness's) and HTTP/2 ones
// (h2_client.py, h2load) reach them; each request is a stream on one of the node's few
// connections, hashed as always.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/h2_support.h"
#include "tests/integration/harness.h"
#include "tests/support/tls_certs.h"

namespace ringproxy::integration {
namespace {

// One h2_node.py: an h2c node on an ephemeral port.
class H2Node {
 public:
  H2Node(const TempDir& dir, std::string name, const std::vector<std::string>& extra = {}) : name_(std::move(name)) {
    tls_ = std::find(extra.begin(), extra.end(), "--tls") != extra.end();
    std::vector<std::string> args{H2_NODE, "--port", "0", "--name", name_};
    args.insert(args.end(), extra.begin(), extra.end());
    process_ = std::make_unique<Process>("/usr/bin/python3", args, dir.path(), "h2node-" + name_);
    const std::optional<std::string> ready = process_->read_line(Millis(10000));
    if (!ready || ready->rfind("READY ", 0) != 0) {
      throw std::runtime_error("h2_node.py did not start: " + process_->describe());
    }
    port_ = static_cast<uint16_t>(std::stoi(ready->substr(6)));
  }
  const std::string& name() const { return name_; }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  Process& process() { return *process_; }
  // The node's /stats, asked directly (HTTP/2 by prior knowledge).
  nlohmann::json stats(const TempDir& dir) const {
    const Ran r = run(dir, "stats-" + name_,
                      tls_ ? "curl -sS -k --http2 https://127.0.0.1:" + std::to_string(port_) + "/stats"
                           : "curl -sS --http2-prior-knowledge http://127.0.0.1:" + std::to_string(port_) + "/stats");
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_discarded() ? nlohmann::json::object() : j;
  }
  // GOAWAY on each of the node's connections that carried requests; how many.
  int goaway_all(const TempDir& dir) const {
    const Ran r = run(dir, "goaway-" + name_, "curl -sS --http2-prior-knowledge http://127.0.0.1:" +
                                                  std::to_string(port_) + "/goaway-all");
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_discarded() ? -1 : j.value("goaways", -1);
  }
  // Answers the node's held /hold streams, and every later one at once; how many.
  int release(const TempDir& dir) const {
    const Ran r = run(dir, "release-" + name_, "curl -sS --http2-prior-knowledge http://127.0.0.1:" +
                                                   std::to_string(port_) + "/release");
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_discarded() ? -1 : j.value("released", -1);
  }

  // SETTINGS_MAX_CONCURRENT_STREAMS n now on every open connection of the node, and on
  // new ones; how many connections were told.
  int set_max_streams(const TempDir& dir, int n) const {
    const Ran r = run(dir, "max-streams-" + name_, "curl -sS --http2-prior-knowledge 'http://127.0.0.1:" +
                                                       std::to_string(port_) + "/max-streams?n=" + std::to_string(n) + "'");
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_discarded() ? -1 : j.value("connections", -1);
  }

 private:
  std::string name_;
  bool tls_ = false;
  uint16_t port_ = 0;
  std::unique_ptr<Process> process_;
};

// The node's connections that carried requests (not only health checks nor /stats).
int request_connections(const nlohmann::json& stats) {
  int n = 0;
  if (!stats.contains("per_connection")) return -1;
  for (const nlohmann::json& c : stats["per_connection"]) {
    if (c.value("control", false) || !c.contains("paths")) continue;
    for (auto it = c["paths"].begin(); it != c["paths"].end(); ++it) {
      if (it.key() != "/health" && it.key() != "/stats") {
        ++n;
        break;
      }
    }
  }
  return n;
}

nlohmann::json body_json(const std::string& body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

class H2UpstreamFixture : public ::testing::Test {
  friend nlohmann::json pile_up_and_release(H2UpstreamFixture& f, int count, int held, int connections);

 protected:
  ~H2UpstreamFixture() override {
    if (cert_.cert != nullptr) test::free_cert(cert_);
  }
  // Nodes speak h2 over TLS (ALPN h2) with a certificate for "localhost" that the
  // proxy's [upstream_tls] trusts.
  void use_tls() {
    cert_ = test::make_cert(dir_.path(), "node", {"localhost"}, test::KeyType::kEc, nullptr, -3600, 86400L * 30,
                            /*ca=*/true);
    tls_ = true;
  }
  void add_nodes(int n, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = extra;
    if (tls_) args.insert(args.end(), {"--tls", cert_.cert_path, cert_.key_path});
    for (int i = 1; i <= n; ++i) nodes_.push_back(std::make_unique<H2Node>(dir_, "n" + std::to_string(i), args));
  }
  void start(const std::string& proxy_extra = {}, const std::string& tail = {}) {
    port_ = free_port();
    admin_port_ = free_port();
    ASSERT_NE(port_, 0);
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\nlog_level = \"info\"\n" << proxy_extra << "\n";
    c << "[admin]\nlisten = \"127.0.0.1:" << admin_port_ << "\"\n";
    c << "[health]\ninterval_ms = " << health_interval_ms_ << "\n";
    c << tail << "\n";
    if (tls_) c << "[upstream_tls]\nca = \"" << cert_.cert_path << "\"\n";
    for (const auto& n : nodes_) {
      c << "[[backend]]\nname = \"" << n->name() << "\"\naddress = \"" << n->address() << "\"\n";
      c << (tls_ ? "protocol = \"h2\"\ntls = true\ntls_name = \"localhost\"\n" : "protocol = \"h2c\"\n");
    }
    config_ = dir_.write_file("ringproxy.toml", c.str());
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", config_},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& n : nodes_) out.push_back(n->name());
    return out;
  }
  H2Result h2(const std::string& args, const std::vector<std::string>& paths, const std::string& name = "h2") {
    std::string cmd = "/usr/bin/python3 " + std::string(H2_CLIENT) + " " + args + " " + std::to_string(port_);
    for (const std::string& p : paths) cmd += " '" + p + "'";
    const Ran r = run(dir_, name, cmd);
    EXPECT_EQ(r.code, 0) << r.out;
    return parse_h2(r.out);
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

  TempDir dir_;
  test::TestCert cert_;
  bool tls_ = false;
  uint32_t health_interval_ms_ = 3600000;
  std::vector<std::unique_ptr<H2Node>> nodes_;
  uint16_t port_ = 0;
  uint16_t admin_port_ = 0;
  std::string config_;
  std::unique_ptr<Process> proxy_;
};

// HTTP/1.1 clients to h2c nodes: every key on the node the ring reference names, the
// request re-framed as RFC 9113 wants it (pseudo-header fields, :authority from Host, no
// connection-specific field), the forwarding fields added as for HTTP/1 nodes.
TEST_F(H2UpstreamFixture, Http1ClientsReachH2cNodesWhereTheRingSays) {
  add_nodes(3);
  start();
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) keys.push_back("/h2up-key-" + std::to_string(i));
  const auto want = reference_map(names(), keys);
  std::vector<std::string> got;
  Conn conn("127.0.0.1", port_);
  for (const std::string& k : keys) {
    const Response r = conn.request("GET", k, {{"Host", "cache.test"}, {"Connection", "keep-alive, X-Private"},
                                               {"X-Private", "1"}, {"TE", "trailers"}});
    ASSERT_EQ(r.status, 200) << r.describe();
    const nlohmann::json j = body_json(r.body);
    got.push_back(j.value("node", ""));
    EXPECT_EQ(j["path"], k);
    EXPECT_EQ(j["violations"], nlohmann::json::array()) << j.dump();
    const nlohmann::json& h = j["headers"];
    EXPECT_EQ(h.value(":authority", ""), "cache.test") << h.dump();
    EXPECT_EQ(h.value(":scheme", ""), "http") << h.dump();
    EXPECT_EQ(h.value(":method", ""), "GET");
    EXPECT_FALSE(h.contains("host")) << h.dump();
    EXPECT_FALSE(h.contains("connection")) << h.dump();
    EXPECT_FALSE(h.contains("x-private")) << h.dump();
    EXPECT_EQ(h.value("te", ""), "trailers") << h.dump();
    EXPECT_EQ(h.value("x-forwarded-for", ""), "127.0.0.1");
    EXPECT_EQ(h.value("x-forwarded-host", ""), "cache.test");
    EXPECT_EQ(h.value("via", ""), "1.1 ringproxy") << h.dump();
    EXPECT_TRUE(r.keep_alive);
  }
  EXPECT_EQ(placement_differences(keys, got, want, "", "h1 to h2c"), 0);
  // One connection per node carried them all.
  for (const auto& n : nodes_) EXPECT_EQ(request_connections(n->stats(dir_)), 1) << n->stats(dir_).dump();
}

// HTTP/2 clients to h2c nodes: streams of one connection hashed each on its own.
TEST_F(H2UpstreamFixture, H2ClientsReachH2cNodesWhereTheRingSays) {
  add_nodes(3);
  start();
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.push_back("/h2h2-key-" + std::to_string(i));
  const auto want = reference_map(names(), keys);
  const H2Result r = h2("", keys);
  ASSERT_EQ(r.streams.size(), keys.size()) << r.raw;
  std::vector<std::string> got;
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(r.streams[i]["status"], 200) << r.streams[i].dump();
    got.push_back(r.streams[i]["headers"].value("x-node", ""));
  }
  EXPECT_EQ(placement_differences(keys, got, want, "", "h2 to h2c"), 0);
}

// A chunked HTTP/1.1 upload goes to the node decoded (its DATA), and the node's
// trailers come back to the HTTP/1.1 client in the last chunk.
TEST_F(H2UpstreamFixture, ChunkedUploadGoesDecodedAndTrailersComeBackChunked) {
  add_nodes(1);
  start();
  std::string body;
  for (int i = 0; i < 20000; ++i) body += static_cast<char>('a' + i % 26);
  const std::string file = dir_.write_file("upload.bin", body);
  const Ran sum = run(dir_, "sha", "sha256sum " + file);
  const std::string sha = sum.out.substr(0, 64);
  const Ran r = run(dir_, "curl", "curl -sS --raw -i -H 'Transfer-Encoding: chunked' -H 'TE: trailers' --data-binary @" +
                                      file + " " + url("/trailers"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("HTTP/1.1 200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Transfer-Encoding: chunked"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"body_len\": 20000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"body_sha256\": \"" + sha + "\""), std::string::npos) << r.out;
  // The trailer section after the last chunk.
  EXPECT_NE(r.out.find("0\r\nx-checksum: " + sha + "\r\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("x-trailer: yes\r\n"), std::string::npos) << r.out;
}

// Trailers pass from an h2c node to an HTTP/2 client.
TEST_F(H2UpstreamFixture, TrailersPassToH2Clients) {
  add_nodes(1);
  start();
  const H2Result r = h2("--method POST --body-bytes 5000 --no-length --header te:trailers", {"/trailers"});
  ASSERT_EQ(r.streams.size(), 1u) << r.raw;
  const nlohmann::json& s = r.streams[0];
  ASSERT_EQ(s["status"], 200) << s.dump();
  ASSERT_TRUE(s.contains("trailers")) << s.dump();
  EXPECT_EQ(s["trailers"].value("x-trailer", ""), "yes") << s.dump();
  EXPECT_EQ(s["trailers"].value("x-checksum", "").size(), 64u) << s.dump();
  EXPECT_EQ(body_json(s["body"]).value("body_len", 0), 5000) << s.dump();
}

// 1 GiB each way between an HTTP/1.1 client and an h2c node in flat memory: down as
// the node's DATA (sized, and without a length: chunked to the client), up sized and
// chunked (decoded into DATA). The proxy's peak RSS stays far below the body: the
// stream windows are the bound.
TEST_F(H2UpstreamFixture, GigabyteBodiesBothWaysInFlatMemory) {
  add_nodes(1, {"--window", "4194304"});
  start();
  const std::string gig = std::to_string(1u << 30);
  const Ran down = run(dir_, "down", "curl -sS -o /dev/null -w '%{http_code} %{size_download}' '" +
                                         url("/big?bytes=" + gig) + "'");
  EXPECT_EQ(down.out, "200 " + gig) << down.out;
  const Ran chunked_down = run(dir_, "down-chunked", "curl -sS -D - -o /dev/null -w '%{size_download}' '" +
                                                         url("/big?bytes=" + gig + "&nolength=1") + "'");
  EXPECT_NE(chunked_down.out.find("Transfer-Encoding: chunked"), std::string::npos) << chunked_down.out;
  EXPECT_TRUE(chunked_down.out.ends_with("\r\n" + gig)) << chunked_down.out;
  const std::string file = dir_.file("gig.bin");
  ASSERT_EQ(run(dir_, "truncate", "truncate -s 1G " + file).code, 0);
  const Ran sized = run(dir_, "up-sized", "curl -sS -T " + file + " " + url("/upload"));
  EXPECT_EQ(body_json(sized.out).value("body_len", 0ull), 1ull << 30) << sized.out;
  const Ran chunked = run(dir_, "up-chunked", "sh -c 'head -c " + gig + " /dev/zero | curl -sS -T - " + url("/upload") + "'");
  EXPECT_EQ(body_json(chunked.out).value("body_len", 0ull), 1ull << 30) << chunked.out;
  EXPECT_EQ(body_json(chunked.out).value("body_sha256", ""), body_json(sized.out).value("body_sha256", "-"));
  std::remove(file.c_str());
  const std::string status = read_file("/proc/" + std::to_string(proxy_->pid()) + "/status");
  const size_t at = status.find("VmHWM:");
  ASSERT_NE(at, std::string::npos);
  const long peak_kb = std::stol(status.substr(at + 6));
  if (!kSanitizedBuild) {
    EXPECT_LT(peak_kb, 64 * 1024) << "peak RSS " << peak_kb << " kB for 1 GiB bodies";
  }
}

// A node's GOAWAY: the streams above its last stream id were not processed and go again
// on a new connection; every request is answered.
TEST_F(H2UpstreamFixture, GoawayRetriesTheStreamsTheNodeDidNotProcess) {
  add_nodes(1, {"--goaway-after", "20"});
  start();
  std::vector<std::string> paths;
  for (int i = 0; i < 60; ++i) paths.push_back("/g" + std::to_string(i));
  const H2Result r = h2("", paths);
  ASSERT_EQ(r.streams.size(), paths.size()) << r.raw;
  for (const auto& s : r.streams) EXPECT_EQ(s["status"], 200) << s.dump();
  const nlohmann::json stats = nodes_[0]->stats(dir_);
  EXPECT_GE(request_connections(stats), 3) << stats.dump();
  EXPECT_GT(stats.value("refused_streams", 0), 0) << stats.dump();
}

// Many concurrent streams share few connections: a connection is opened only when the
// others are full, and past [http2] upstream_connections (2 by default) streams wait on
// them up to twice the node's limit. 400 streams in flight (h2load -c 40 -m 10) to one
// node that allows 128 a connection take 2 connections, each filled to the node's limit
// (before the node's SETTINGS are known, nghttp2's assumption of 100). Issue 16's figure
// (at most 4 per node under 1,000 streams, with nginx nodes) is bench/compare/h2.sh's.
TEST_F(H2UpstreamFixture, StreamsFillAConnectionBeforeTheNextOpens) {
  add_nodes(1, {"--max-streams", "128"});
  start();
  const Ran r = run(dir_, "h2load", "h2load -c 40 -m 10 -n 4000 " + url("/load"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("4000 succeeded"), std::string::npos) << r.out;
  const nlohmann::json s = nodes_[0]->stats(dir_);
  EXPECT_LE(request_connections(s), 2) << s.dump();
  EXPECT_LE(s.value("max_concurrent_streams", 999), 128) << s.dump();
  EXPECT_EQ(s.value("max_streams_violations", 1), 0) << s.dump();
  // Every request connection but one was filled to the limit (128, or 100 before the
  // node's SETTINGS came).
  int short_of_full = 0;
  for (const nlohmann::json& c : s["per_connection"]) {
    if (c.value("streams", 0) > 1 && c.value("max_concurrent", 0) < 100) ++short_of_full;
  }
  EXPECT_LE(short_of_full, 1) << s.dump();
}

// ---- [http2] upstream_connections: the soft cap on connections per node ----

// The node's in-flight requests as the proxy counts them (GET /nodes/NAME).
int in_flight(uint16_t admin_port, const std::string& node) {
  const Response r = http_get(admin_port, "/nodes/" + node);
  const nlohmann::json j = body_json(r.body);
  return j.value("in_flight", -1);
}

// `count` requests at once, on one HTTP/2 client connection, to a node (n1, allowing 4
// streams a connection) that holds every answer until released: the streams pile up
// without a clock. Waits until the node holds `held` (the open ones) and checks that they
// came on `connections` connections, releases them, and checks that every request got its
// own answer and that the node's limit was never exceeded. The node's stats at the end.
nlohmann::json pile_up_and_release(H2UpstreamFixture& f, int count, int held, int connections);

// Streams past the node's limit wait on the connections the cap allows: 16 requests at
// once to a node allowing 4 streams a connection, with upstream_connections = 2, go on
// 2 connections (4 open and 4 waiting on each), and all are answered.
TEST_F(H2UpstreamFixture, StreamsWaitOnTheConnectionsTheCapAllows) {
  add_nodes(1, {"--max-streams", "4"});
  start("", "[http2]\nupstream_connections = 2\n");
  // One request first: the pool learns the node's limit (4), which the next
  // connections assume until their own SETTINGS come.
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  const nlohmann::json s = pile_up_and_release(*this, 16, 8, 2);
  EXPECT_EQ(request_connections(s), 2) << s.dump();
  EXPECT_LE(s.value("max_connections_open", 99), 2) << s.dump();
  EXPECT_EQ(s.value("max_streams_early", 1), 0) << s.dump();
}

// The cap is soft: 40 requests at once, more than 2 connections x 2 x 4 streams can
// hold, open more connections (one per 8 streams: 4 open, 4 waiting, so 5 connections
// holding 4 each), and all are answered; none is refused or failed because of the cap.
TEST_F(H2UpstreamFixture, PastTwiceTheLimitMoreConnectionsOpen) {
  add_nodes(1, {"--max-streams", "4"});
  start("", "[http2]\nupstream_connections = 2\n");
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  pile_up_and_release(*this, 40, 20, 5);
}

nlohmann::json pile_up_and_release(H2UpstreamFixture& f, int count, int held, int connections) {
  std::vector<std::string> paths;
  for (int i = 0; i < count; ++i) paths.push_back("/hold?i=" + std::to_string(i));
  std::vector<std::string> args{H2_CLIENT, std::to_string(f.port_)};
  args.insert(args.end(), paths.begin(), paths.end());
  Process client("/usr/bin/python3", args, f.dir_.path(), "h2-" + std::to_string(count));
  EXPECT_TRUE(eventually([&] { return in_flight(f.admin_port_, "n1") == count; })) << in_flight(f.admin_port_, "n1");
  EXPECT_TRUE(eventually([&] { return f.nodes_[0]->stats(f.dir_).value("held", 0) == held; }))
      << f.nodes_[0]->stats(f.dir_).dump();
  EXPECT_EQ(request_connections(f.nodes_[0]->stats(f.dir_)), connections) << f.nodes_[0]->stats(f.dir_).dump();
  EXPECT_EQ(f.nodes_[0]->release(f.dir_), held);
  EXPECT_TRUE(client.wait(Millis(20000))) << client.describe();
  const H2Result r = parse_h2(client.stdout_text());
  EXPECT_EQ(r.streams.size(), paths.size()) << r.raw;
  for (size_t i = 0; i < paths.size() && i < r.streams.size(); ++i) {
    EXPECT_EQ(r.streams[i]["status"], 200) << r.streams[i].dump();
    EXPECT_EQ(body_json(r.streams[i]["body"]).value("path", ""), paths[i]) << r.streams[i].dump();
  }
  nlohmann::json s = f.nodes_[0]->stats(f.dir_);
  EXPECT_LE(s.value("max_concurrent_streams", 99), 4) << s.dump();
  EXPECT_EQ(s.value("max_streams_violations", 1), 0) << s.dump();
  return s;
}

// A client that goes away while its request waits for a slot: the stream is taken back
// unsent (the node never sees it), and the requests around it get their own answers,
// also on the connection that client's exchange shared.
TEST_F(H2UpstreamFixture, AWaitingStreamsClientGoingAwayLeavesTheOthersRight) {
  add_nodes(1, {"--max-streams", "2"});
  start("", "[http2]\nupstream_connections = 1\n");
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  // One at a time, so the order is known: 1 and 2 open on the node, 3 and 4 wait.
  std::vector<Conn> conns;
  for (int i = 1; i <= 4; ++i) {
    conns.emplace_back("127.0.0.1", port_);
    ASSERT_TRUE(conns.back().send_request("GET", "/hold?i=" + std::to_string(i)));
    ASSERT_TRUE(eventually([&] { return in_flight(admin_port_, "n1") == i; })) << i;
  }
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("held", 0) == 2; }));
  conns[2].abort();  // /hold?i=3, waiting
  ASSERT_TRUE(eventually([&] { return in_flight(admin_port_, "n1") == 3; }));
  EXPECT_EQ(nodes_[0]->release(dir_), 2);
  for (int i : {1, 2, 4}) {
    const Response r = conns[i - 1].read_response();
    ASSERT_EQ(r.status, 200) << i << ": " << r.describe();
    EXPECT_EQ(body_json(r.body).value("path", ""), "/hold?i=" + std::to_string(i)) << r.describe();
  }
  // The exchanges go on serving their connections.
  for (int i : {1, 2, 4}) {
    const Response r = conns[i - 1].request("GET", "/again?i=" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << i << ": " << r.describe();
    EXPECT_EQ(body_json(r.body).value("path", ""), "/again?i=" + std::to_string(i)) << r.describe();
  }
  const nlohmann::json s = nodes_[0]->stats(dir_);
  int holds = 0;
  for (const nlohmann::json& c : s["per_connection"]) holds += c["paths"].value("/hold", 0);
  EXPECT_EQ(holds, 3) << "the abandoned request reached the node: " << s.dump();
  EXPECT_EQ(request_connections(s), 1) << s.dump();
  EXPECT_EQ(s.value("max_streams_violations", 1), 0) << s.dump();
}

// A stream that times out still waiting for a slot is a 504 like any other, but not
// the node's failure (passive health): the node never saw it. The slot is held by an
// upload whose client pauses mid-body (its deadline is idle_timeout_ms), so the waiting
// request's upstream_timeout_ms passes first.
TEST_F(H2UpstreamFixture, AStreamThatTimesOutWaitingIsNotTheNodesFailure) {
  add_nodes(1, {"--max-streams", "1"});
  start("upstream_timeout_ms = 400\nidle_timeout_ms = 30000\nretries = 0",
        "[http2]\nupstream_connections = 1\n");
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  const int before = nodes_[0]->stats(dir_).value("total_streams", -1);
  Conn upload("127.0.0.1", port_);
  ASSERT_TRUE(upload.send_raw("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345"));
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("total_streams", 0) == before + 1; }));
  const Response waited = http_get(port_, "/waits");
  EXPECT_EQ(waited.status, 504) << waited.describe();
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "waited for a stream slot, never sent")) << proxy_->stderr_text();
  const nlohmann::json node = body_json(http_get(admin_port_, "/nodes/n1").body);
  EXPECT_EQ(node.value("failures", -1), 0) << node.dump();
  EXPECT_EQ(node.value("state", ""), "up") << node.dump();
  // The upload finishes on its slot.
  ASSERT_TRUE(upload.send_raw("67890"));
  const Response done = upload.read_response();
  EXPECT_EQ(done.status, 200) << done.describe();
  EXPECT_EQ(body_json(done.body).value("body_len", 0), 10) << done.describe();
}

// The two "four held uploads" tests (a GOAWAY, a lowered limit): four POSTs of 100
// bytes to /hold, in one h2c client connection, and the check that each was answered
// 200 with its path and its whole body.
std::vector<std::string> held_upload_paths() {
  std::vector<std::string> paths;
  for (int i = 0; i < 4; ++i) paths.push_back("/hold?i=" + std::to_string(i));
  return paths;
}
std::vector<std::string> held_upload_args(uint16_t port, const std::vector<std::string>& paths) {
  std::vector<std::string> args{H2_CLIENT, "--method", "POST", "--body-bytes", "100", std::to_string(port)};
  args.insert(args.end(), paths.begin(), paths.end());
  return args;
}
void expect_uploads_answered(const Process& client, const std::vector<std::string>& paths) {
  const H2Result r = parse_h2(client.stdout_text());
  ASSERT_EQ(r.streams.size(), paths.size()) << r.raw;
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(r.streams[i]["status"], 200) << r.streams[i].dump();
    EXPECT_EQ(body_json(r.streams[i]["body"]).value("path", ""), paths[i]) << r.streams[i].dump();
    EXPECT_EQ(body_json(r.streams[i]["body"]).value("body_len", 0), 100) << r.streams[i].dump();
  }
}

// A GOAWAY from the node while streams wait on its connection: they were never sent, so
// they go again on another connection, whatever the method, with the body bytes they
// held (pinned in the client's buffer, unframed), and all are answered. Two uploads
// held on the node's one connection, two waiting behind them with their bodies given,
// then the node's GOAWAY.
TEST_F(H2UpstreamFixture, StreamsWaitingAtAGoawayGoAgain) {
  add_nodes(1, {"--max-streams", "2"});
  start("", "[http2]\nupstream_connections = 1\n");
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  const std::vector<std::string> paths = held_upload_paths();
  const std::vector<std::string> args = held_upload_args(port_, paths);
  Process client("/usr/bin/python3", args, dir_.path(), "h2-goaway");
  ASSERT_TRUE(eventually([&] { return in_flight(admin_port_, "n1") == 4; })) << in_flight(admin_port_, "n1");
  // The held ones had their bodies: the others', sent with them, have reached the proxy.
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("held", 0) == 2; }));
  EXPECT_EQ(nodes_[0]->goaway_all(dir_), 1);
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("held", 0) == 4; }))
      << nodes_[0]->stats(dir_).dump() << proxy_->stderr_text();
  const nlohmann::json held = nodes_[0]->stats(dir_);
  EXPECT_EQ(request_connections(held), 2) << held.dump();
  EXPECT_EQ(held.value("refused_streams", 1), 0) << "a waiting stream was sent after the GOAWAY: " << held.dump();
  EXPECT_EQ(nodes_[0]->release(dir_), 4);
  ASSERT_TRUE(client.wait(Millis(20000))) << client.describe();
  expect_uploads_answered(client, paths);
  EXPECT_EQ(nodes_[0]->stats(dir_).value("max_streams_violations", 1), 0);
}

// ---- a node allowing no stream: SETTINGS_MAX_CONCURRENT_STREAMS 0 ----

// A node announcing SETTINGS_MAX_CONCURRENT_STREAMS 0 (RFC 9113 6.5.2) takes no
// stream: its requests go to the next node at once, not counted against it, and no
// connection opens beyond the one that learnt the limit (before, each request opened
// another: 2 x 0 leaves no room to wait). Once the node raises its limit, its keys come
// back to it on that same connection. n1 allows none; n2 and n3 serve.
TEST_F(H2UpstreamFixture, ANodeAllowingNoStreamSendsItsRequestsElsewhereUntilItAllowsSome) {
  nodes_.push_back(std::make_unique<H2Node>(dir_, "n1", std::vector<std::string>{"--max-streams", "0"}));
  nodes_.push_back(std::make_unique<H2Node>(dir_, "n2"));
  nodes_.push_back(std::make_unique<H2Node>(dir_, "n3"));
  start();
  std::vector<std::string> keys;
  for (int i = 0; i < 60; ++i) keys.push_back("/zero-key-" + std::to_string(i));
  const auto want = reference_map(names(), keys);
  std::vector<std::string> on_n1;
  for (const std::string& k : keys) {
    if (want.count(k) && want.at(k) == "n1") on_n1.push_back(k);
  }
  ASSERT_GE(on_n1.size(), 5u) << "too few keys on n1 to show anything";
  // Twice over, HTTP/1.1 keep-alive: none fails, n1's go elsewhere, the others where the
  // ring says.
  Conn conn("127.0.0.1", port_);
  for (int round = 0; round < 2; ++round) {
    for (const std::string& k : keys) {
      const Response r = conn.request("GET", k);
      ASSERT_EQ(r.status, 200) << k << ": " << r.describe() << proxy_->stderr_text();
      const std::string node = body_json(r.body).value("node", "");
      if (want.at(k) == "n1") {
        EXPECT_NE(node, "n1") << k;
      } else {
        EXPECT_EQ(node, want.at(k)) << k;
      }
    }
  }
  const nlohmann::json zero = nodes_[0]->stats(dir_);
  // One connection carried requests: the first request's, which learnt the limit (its
  // stream, sent before the node's SETTINGS came, was refused: early_refused); none
  // opened after it. (The other the node accepted is the health checker's probe, whose
  // first check the proxy makes at its start.)
  EXPECT_EQ(request_connections(zero), 1) << zero.dump();
  EXPECT_LE(zero.value("connections_accepted", 99), 2) << zero.dump();
  // And it carried that one stream only: none was sent once the limit was known.
  int streams = 0;
  for (const nlohmann::json& c : zero["per_connection"]) {
    if (!c.value("control", false) && !c["paths"].contains("/health")) streams += c.value("streams", 0);
  }
  EXPECT_EQ(streams, 1) << zero.dump();
  EXPECT_EQ(zero.value("max_streams_violations", 1), 0) << zero.dump();
  EXPECT_EQ(zero.value("responses", -1), 0) << zero.dump();
  // Not the node's failure: it is up and was never charged.
  const nlohmann::json n1 = body_json(http_get(admin_port_, "/nodes/n1").body);
  EXPECT_EQ(n1.value("failures", -1), 0) << n1.dump();
  EXPECT_EQ(n1.value("state", ""), "up") << n1.dump();

  // The node allows 4 streams a connection now: its SETTINGS reach the proxy's open
  // connection, and its keys come back to it there.
  const Ran raised = run(dir_, "raise", "curl -sS --http2-prior-knowledge 'http://127.0.0.1:" +
                                            std::to_string(nodes_[0]->port()) + "/max-streams?n=4'");
  EXPECT_GE(body_json(raised.out).value("connections", -1), 1) << raised.out;
  ASSERT_TRUE(eventually([&] { return body_json(conn.request("GET", on_n1[0]).body).value("node", "") == "n1"; }))
      << proxy_->stderr_text();
  for (const std::string& k : on_n1) {
    const Response r = conn.request("GET", k);
    ASSERT_EQ(r.status, 200) << k << ": " << r.describe();
    EXPECT_EQ(body_json(r.body).value("node", ""), "n1") << k;
  }
  const nlohmann::json after = nodes_[0]->stats(dir_);
  EXPECT_EQ(request_connections(after), 1) << after.dump();
  EXPECT_LE(after.value("connections_accepted", 99), 2) << after.dump();
  EXPECT_EQ(after.value("max_streams_violations", 1), 0) << after.dump();
  EXPECT_GE(after.value("responses", 0), static_cast<int>(on_n1.size())) << after.dump();
}

// With no other node to go to, requests to a node that allows no stream wait on its
// connection (as a stream waits for a slot: nghttp2 holds its HEADERS), their deadline
// running, and go as soon as the node allows some; one connection all along. HTTP/2
// clients, 12 requests at once.
TEST_F(H2UpstreamFixture, AloneANodeAllowingNoStreamHoldsItsRequestsUntilItAllowsSome) {
  add_nodes(1, {"--max-streams", "0"});
  start("upstream_timeout_ms = 30000");
  std::vector<std::string> paths;
  for (int i = 0; i < 12; ++i) paths.push_back("/wait-for-room?i=" + std::to_string(i));
  std::vector<std::string> args{H2_CLIENT, std::to_string(port_)};
  args.insert(args.end(), paths.begin(), paths.end());
  Process client("/usr/bin/python3", args, dir_.path(), "h2-zero");
  ASSERT_TRUE(eventually([&] { return in_flight(admin_port_, "n1") == 12; })) << in_flight(admin_port_, "n1");
  const nlohmann::json held = nodes_[0]->stats(dir_);
  EXPECT_EQ(request_connections(held), 1) << held.dump();
  EXPECT_LE(held.value("connections_accepted", 99), 2) << held.dump();  // and the health probe's
  EXPECT_EQ(held.value("responses", -1), 0) << held.dump();
  const Ran raised = run(dir_, "raise", "curl -sS --http2-prior-knowledge 'http://127.0.0.1:" +
                                            std::to_string(nodes_[0]->port()) + "/max-streams?n=4'");
  EXPECT_GE(body_json(raised.out).value("connections", -1), 1) << raised.out;
  ASSERT_TRUE(client.wait(Millis(20000))) << client.describe();
  const H2Result r = parse_h2(client.stdout_text());
  ASSERT_EQ(r.streams.size(), paths.size()) << r.raw;
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(r.streams[i]["status"], 200) << r.streams[i].dump();
    EXPECT_EQ(body_json(r.streams[i]["body"]).value("path", ""), paths[i]) << r.streams[i].dump();
  }
  const nlohmann::json s = nodes_[0]->stats(dir_);
  EXPECT_EQ(request_connections(s), 1) << s.dump();
  EXPECT_LE(s.value("connections_accepted", 99), 2) << s.dump();
  EXPECT_LE(s.value("max_concurrent_streams", 99), 4) << s.dump();
  EXPECT_EQ(s.value("max_streams_violations", 1), 0) << s.dump();
  const nlohmann::json n1 = body_json(http_get(admin_port_, "/nodes/n1").body);
  EXPECT_EQ(n1.value("failures", -1), 0) << n1.dump();
}

// ---- a limit that drops while streams wait on the connection ----

// The node lowers its limit to 0 on a connection where streams wait (RFC 9113 6.5.2: a
// node shedding load): the waiting ones, never sent, are taken off it and go to the
// next node at once (as at node_full), long before the upstream timeout (30 s here;
// the waits below are 8 s at most); the open ones finish on the node; none fails and
// the node is not charged. Once it allows streams again, its keys come back to it.
// n1 allows 2 a connection, one connection (cap 1): 2 of its 4 /hold requests open
// (held), 2 wait; n2 and n3 hold what they get until released.
TEST_F(H2UpstreamFixture, StreamsWaitingWhenTheLimitDropsToZeroGoToTheNextNode) {
  nodes_.push_back(std::make_unique<H2Node>(dir_, "n1", std::vector<std::string>{"--max-streams", "2"}));
  nodes_.push_back(std::make_unique<H2Node>(dir_, "n2"));
  nodes_.push_back(std::make_unique<H2Node>(dir_, "n3"));
  start("upstream_timeout_ms = 30000", "[http2]\nupstream_connections = 1\n");
  std::vector<std::string> candidates;
  for (int i = 0; i < 80; ++i) candidates.push_back("/hold?k=" + std::to_string(i));
  const auto want = reference_map(names(), candidates);
  std::vector<std::string> paths;
  for (const std::string& k : candidates) {
    if (want.count(k) && want.at(k) == "n1" && paths.size() < 4) paths.push_back(k);
  }
  ASSERT_EQ(paths.size(), 4u) << "too few keys on n1";
  std::vector<std::string> args{H2_CLIENT, std::to_string(port_)};
  args.insert(args.end(), paths.begin(), paths.end());
  Process client("/usr/bin/python3", args, dir_.path(), "h2-drop-zero");
  ASSERT_TRUE(eventually([&] { return in_flight(admin_port_, "n1") == 4; })) << in_flight(admin_port_, "n1");
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("held", 0) == 2; }));
  // (Streams the node refused before the proxy had its SETTINGS count here too.)
  const int streams_before = nodes_[0]->stats(dir_).value("total_streams", -1);
  EXPECT_GE(nodes_[0]->set_max_streams(dir_, 0), 1);
  // The two waiting ones reach the other nodes, well before the upstream timeout.
  ASSERT_TRUE(eventually([&] {
    return nodes_[1]->stats(dir_).value("held", 0) + nodes_[2]->stats(dir_).value("held", 0) == 2;
  })) << proxy_->stderr_text();
  EXPECT_EQ(in_flight(admin_port_, "n1"), 2);
  const nlohmann::json n1_held = nodes_[0]->stats(dir_);
  EXPECT_EQ(n1_held.value("held", 0), 2) << n1_held.dump();
  EXPECT_EQ(n1_held.value("total_streams", 0), streams_before) << "a waiting stream reached n1: " << n1_held.dump();
  EXPECT_EQ(n1_held.value("max_streams_violations", 1), 0) << n1_held.dump();
  for (const auto& n : nodes_) EXPECT_GE(n->release(dir_), 0);
  ASSERT_TRUE(client.wait(Millis(8000))) << client.describe();
  const H2Result r = parse_h2(client.stdout_text());
  ASSERT_EQ(r.streams.size(), paths.size()) << r.raw;
  int on_n1 = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(r.streams[i]["status"], 200) << r.streams[i].dump();
    EXPECT_EQ(body_json(r.streams[i]["body"]).value("path", ""), paths[i]) << r.streams[i].dump();
    if (body_json(r.streams[i]["body"]).value("node", "") == "n1") ++on_n1;
  }
  EXPECT_EQ(on_n1, 2);
  const nlohmann::json n1 = body_json(http_get(admin_port_, "/nodes/n1").body);
  EXPECT_EQ(n1.value("failures", -1), 0) << n1.dump();
  EXPECT_EQ(n1.value("state", ""), "up") << n1.dump();
  // n1 allows streams again (and /hold answers at once since the release): its keys
  // come back to it.
  EXPECT_GE(nodes_[0]->set_max_streams(dir_, 4), 1);
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(eventually([&] { return body_json(conn.request("GET", paths[0]).body).value("node", "") == "n1"; }))
      << proxy_->stderr_text();
  for (const std::string& k : paths) {
    const Response got = conn.request("GET", k);
    ASSERT_EQ(got.status, 200) << k << ": " << got.describe();
    EXPECT_EQ(body_json(got.body).value("node", ""), "n1") << k;
  }
}

// The node lowers its limit from 2 to 1 while two streams wait behind two open ones,
// and it is the only node: the waiting ones are placed again on the node, on a new
// connection (which learns the limit 1 from the node's SETTINGS), and the first of them
// is sent there at once rather than waiting for both open ones to end. With uploads:
// the body bytes the waiting streams held go with them. All are answered, none fails.
TEST_F(H2UpstreamFixture, StreamsWaitingWhenTheLimitDropsToOneArePlacedAgain) {
  add_nodes(1, {"--max-streams", "2"});
  start("upstream_timeout_ms = 30000", "[http2]\nupstream_connections = 1\n");
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  const std::vector<std::string> paths = held_upload_paths();
  const std::vector<std::string> args = held_upload_args(port_, paths);
  Process client("/usr/bin/python3", args, dir_.path(), "h2-drop-one");
  ASSERT_TRUE(eventually([&] { return in_flight(admin_port_, "n1") == 4; })) << in_flight(admin_port_, "n1");
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("held", 0) == 2; }));
  EXPECT_GE(nodes_[0]->set_max_streams(dir_, 1), 1);
  // One moved stream is sent on a new connection while the first two are still held.
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("held", 0) == 3; }))
      << nodes_[0]->stats(dir_).dump() << proxy_->stderr_text();
  const nlohmann::json held = nodes_[0]->stats(dir_);
  EXPECT_EQ(request_connections(held), 2) << held.dump();
  EXPECT_EQ(held.value("max_streams_violations", 1), 0) << held.dump();
  EXPECT_EQ(nodes_[0]->release(dir_), 3);
  ASSERT_TRUE(client.wait(Millis(8000))) << client.describe();
  expect_uploads_answered(client, paths);
  const nlohmann::json after = nodes_[0]->stats(dir_);
  EXPECT_EQ(after.value("max_streams_violations", 1), 0) << after.dump();
  const nlohmann::json n1 = body_json(http_get(admin_port_, "/nodes/n1").body);
  EXPECT_EQ(n1.value("failures", -1), 0) << n1.dump();
  EXPECT_EQ(n1.value("state", ""), "up") << n1.dump();
}

// Reloads under HTTP/2 load lose no stream: h2load's streams keep flowing while a
// reload adds an h2c node and another changes a weight (the pools of unchanged nodes
// keep their connections).
TEST_F(H2UpstreamFixture, ReloadsUnderHttp2LoadLoseNoStream) {
  add_nodes(3);
  // The third node joins with the first reload.
  std::unique_ptr<H2Node> third = std::move(nodes_.back());
  nodes_.pop_back();
  start();
  Process load("/usr/bin/h2load", {"-c", "10", "-m", "10", "-n", "30000", url("/reload-load")}, dir_.path(), "h2load");
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("total_streams", 0) +
                                          nodes_[1]->stats(dir_).value("total_streams", 0) >= 2000; },
                         Millis(20000)));
  std::string cfg = read_file(config_);
  cfg += "[[backend]]\nname = \"" + third->name() + "\"\naddress = \"" + third->address() + "\"\nprotocol = \"h2c\"\n";
  dir_.write_file("ringproxy.toml", cfg);
  ASSERT_TRUE(proxy_->send_signal(SIGHUP));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "reloaded"));
  const size_t from = proxy_->output_size(Output::err);
  const size_t at = cfg.find("name = \"n1\"");
  ASSERT_NE(at, std::string::npos);
  cfg.insert(cfg.find('\n', at) + 1, "weight = 2\n");
  dir_.write_file("ringproxy.toml", cfg);
  ASSERT_TRUE(proxy_->send_signal(SIGHUP));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "reloaded", kDefaultTimeout, from));
  const std::optional<ExitStatus> done = load.wait(Millis(60000));
  ASSERT_TRUE(done) << load.describe();
  const std::string out = load.stdout_text();
  EXPECT_NE(out.find("30000 succeeded, 0 failed, 0 errored"), std::string::npos) << out;
  EXPECT_NE(out.find("status codes: 30000 2xx"), std::string::npos) << out;
}

// grpc-timeout shorter than upstream_timeout_ms is the wait for the node: the proxy
// answers the gRPC status DEADLINE_EXCEEDED (4) itself, HTTP 200, trailers-only, when it
// passes (SPEC "HTTP/2 and gRPC"); the client here has no deadline of its own.
TEST_F(H2UpstreamFixture, GrpcTimeoutIsTheWaitForTheNode) {
  add_nodes(1);
  start("upstream_timeout_ms = 30000\nretries = 0");
  const auto t0 = std::chrono::steady_clock::now();
  const H2Result r = h2("--method POST --body-bytes 5 --header content-type:application/grpc --header te:trailers "
                        "--header grpc-timeout:300m",
                        {"/stall"});
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.streams.size(), 1u) << r.raw;
  EXPECT_EQ(r.streams[0]["status"], 200) << r.streams[0].dump();
  EXPECT_EQ(r.streams[0]["headers"].value("grpc-status", ""), "4") << r.streams[0].dump();
  EXPECT_LT(ms, 10000) << "the proxy waited for upstream_timeout_ms, not grpc-timeout";
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 504")) << proxy_->stderr_text();
}

// A node that never answers: 504 after upstream_timeout_ms (each stream times out on
// its own; the connection stays for the others).
TEST_F(H2UpstreamFixture, AStalledStreamTimesOutAlone) {
  add_nodes(1);
  start("upstream_timeout_ms = 300\nretries = 0");
  const Response stalled = http_get(port_, "/stall");
  EXPECT_EQ(stalled.status, 504) << stalled.describe();
  const Response fine = http_get(port_, "/after");
  EXPECT_EQ(fine.status, 200) << fine.describe();
  EXPECT_EQ(request_connections(nodes_[0]->stats(dir_)), 1);
}

// A node killed while a request waits: the client gets 502 at once, not a hang, and the
// next request goes to a node that is up.
TEST_F(H2UpstreamFixture, ANodeKilledMidRequestGives502) {
  add_nodes(2);
  start("upstream_timeout_ms = 30000\nretries = 0");
  // A key of n1's.
  std::string key;
  for (int i = 0; i < 100 && key.empty(); ++i) {
    const std::string k = "/stall?k=" + std::to_string(i);
    if (reference_map(names(), {k}).at(k) == "n1") key = k;
  }
  ASSERT_FALSE(key.empty());
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("GET " + key + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return nodes_[0]->stats(dir_).value("total_streams", 0) >= 1; }));
  nodes_[0]->process().kill();
  ReadOptions ro;
  ro.timeout = Millis(5000);
  const Response r = conn.read_response(ro);
  EXPECT_EQ(r.status, 502) << r.describe();
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 502"));
}

// Review: a client stream reset in the same read as its HEADERS is cancelled while the
// node-bound HEADERS are still queued in nghttp2 (not yet sent). The queued request must
// not go out carrying the exchange's stream: its answer would land in the next request
// the slot serves (crosstalk) or, once the client is gone, in freed memory (ASan).
TEST_F(H2UpstreamFixture, AStreamCancelledBeforeItsHeadersWentReachesNoOtherRequest) {
  add_nodes(1);
  start();
  const Ran r = run(dir_, "race", "/usr/bin/python3 " + std::string(H2_CANCEL_RACE) + " " + std::to_string(port_) +
                                      " crosstalk '/slow?ms=400' '/slow?ms=1500'");
  EXPECT_NE(r.out.find("body path: /slow?ms=1500"), std::string::npos) << r.out;
  const Ran closed = run(dir_, "race-close", "/usr/bin/python3 " + std::string(H2_CANCEL_RACE) + " " +
                                                 std::to_string(port_) + " close '/slow?ms=300'");
  EXPECT_EQ(closed.code, 0) << closed.out;
  std::this_thread::sleep_for(std::chrono::milliseconds(800));  // the node answers the queued one
  const Response after = http_get(port_, "/after");
  EXPECT_EQ(after.status, 200) << after.describe() << proxy_->describe();
}

// Review: the node closes the connection (GOAWAY after one request) while a slow client
// still drains the ended stream's last bytes: the exchange must not touch the freed
// H2Upstream (its deadline) afterwards.
TEST_F(H2UpstreamFixture, ASlowClientOutlivesTheNodesConnection) {
  add_nodes(1, {"--goaway-after", "1"});
  start();
  const Ran r = run(dir_, "slow", "/usr/bin/python3 " + std::string(SLOW_READER) + " " + std::to_string(port_) +
                                      " '/big?bytes=3000000' 800000");
  EXPECT_NE(r.out.find("read 3000"), std::string::npos) << r.out;
  const Response after = http_get(port_, "/after");
  EXPECT_EQ(after.status, 200) << after.describe() << proxy_->describe();
}

// A chunked HTTP/1.1 body is decoded for an h2c node; when the first attempt fails
// (the node refuses the connect) and the request goes to an HTTP/1.1 node, the body goes
// there chunked again: the codec has consumed chunk lines that the raw bytes would lack,
// and the rest of the client's framing sent on as it came would let a chunk's content
// pass for framing and smuggle a request past the proxy (the review found it).
TEST_F(H2UpstreamFixture, ARetryFromAnH2NodeToAnHttp1NodeKeepsTheBodyFramed) {
  DeadPort dead;
  DemoBackend h1(dir_, "h1");
  std::ostringstream tail;
  tail << "[[backend]]\nname = \"dead\"\naddress = \"127.0.0.1:" << dead.port() << "\"\nprotocol = \"h2c\"\n"
       << "[[backend]]\nname = \"h1\"\naddress = \"" << h1.address() << "\"\n";
  start("retries = 1\nhash_key = \"uri\"", tail.str());
  // A key of the dead h2c node's, the HTTP/1.1 node next.
  std::string key;
  for (int i = 0; i < 200 && key.empty(); ++i) {
    const std::string k = "/sink?k=" + std::to_string(i);
    if (reference_map({"dead", "h1"}, {k}).at(k) == "dead") key = k;
  }
  ASSERT_FALSE(key.empty());
  const std::string inner = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x.test\r\n\r\n";
  Conn conn("127.0.0.1", port_);
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", inner.size());
  // The head and the chunk's size line first: decoded for the h2c node, whose connect
  // fails meanwhile; the content later.
  ASSERT_TRUE(conn.send_raw("PUT " + key + " HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
                            size_line));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "retrying on node=h1"));
  ASSERT_TRUE(conn.send_raw(inner + "\r\n0\r\n\r\n"));
  ReadOptions ro;
  ro.timeout = Millis(5000);
  const Response r = conn.read_response(ro);
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.body, std::to_string(inner.size()) + "\n") << "the node must get the chunk's content as body";
  EXPECT_FALSE(proxy_->wait_for_output(Output::err, "/smuggled", Millis(300))) << proxy_->stderr_text();
}

// Health checks go over HTTP/2 to an h2c node (an HTTP/1 probe would fail it).
TEST_F(H2UpstreamFixture, HealthChecksSpeakHttp2) {
  add_nodes(2);
  health_interval_ms_ = 100;
  start();
  const auto up = [&](const std::string& name) {
    const Response m = http_get(admin_port_, "/metrics");
    return m.body.find("ringproxy_backend_up{pool=\"default\",backend=\"" + name + "\"} 1") != std::string::npos;
  };
  EXPECT_TRUE(eventually([&] { return up("n1") && up("n2"); }));
  nodes_[1]->process().kill();
  EXPECT_TRUE(eventually([&] { return !up("n2"); }));
  EXPECT_TRUE(up("n1"));
}

// protocol = "h2": HTTP/2 over TLS, the node chosen by ALPN h2 and verified; both
// client protocols, and the health checks, go over it.
TEST_F(H2UpstreamFixture, H2OverTlsToNodesThatChooseH2ByAlpn) {
  use_tls();
  add_nodes(2);
  health_interval_ms_ = 100;
  start();
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) keys.push_back("/tls-key-" + std::to_string(i));
  const auto want = reference_map(names(), keys);
  std::vector<std::string> got;
  for (const std::string& k : keys) {
    const Response r = http_get(port_, k);
    ASSERT_EQ(r.status, 200) << r.describe();
    const nlohmann::json j = body_json(r.body);
    EXPECT_EQ(j["headers"].value(":scheme", ""), "https") << j.dump();
    got.push_back(j.value("node", ""));
  }
  EXPECT_EQ(placement_differences(keys, got, want, "", "h1 to h2 over TLS"), 0);
  const H2Result h = h2("", {"/over-h2-1", "/over-h2-2"});
  ASSERT_EQ(h.streams.size(), 2u) << h.raw;
  for (const auto& st : h.streams) EXPECT_EQ(st["status"], 200) << st.dump();
  for (const auto& n : nodes_) {
    const nlohmann::json s = n->stats(dir_);
    for (const nlohmann::json& c : s["per_connection"]) {
      // A health probe's connection still in its handshake (no ALPN yet, no stream)
      // may be caught by the snapshot: every connection that carried a stream chose h2.
      if (!c.value("control", false) && c.value("streams", 0) > 0) {
        EXPECT_EQ(c["alpn"], "h2") << s.dump();
      }
    }
  }
  // Health probes over the same TLS and HTTP/2: both nodes stay up.
  EXPECT_FALSE(proxy_->wait_for_output(Output::err, "health: node=", Millis(500))) << proxy_->stderr_text();
}

// A TLS node that does not choose h2 by ALPN (a server that ignores ALPN): no HTTP/2 on
// it (RFC 9113 3.2); the request gets a 502 saying why. (A server that refuses "h2"
// outright fails the handshake: "no application protocol".)
TEST_F(H2UpstreamFixture, ATlsNodeWithoutAlpnH2IsRefused) {
  use_tls();
  const uint16_t node_port = free_port();
  Process server("/usr/bin/openssl",
                 {"s_server", "-accept", "127.0.0.1:" + std::to_string(node_port), "-cert", cert_.cert_path, "-key",
                  cert_.key_path, "-www", "-quiet"},
                 dir_.path(), "s_server");
  ASSERT_TRUE(eventually([&] { return Conn("127.0.0.1", node_port, Millis(200)).connected(); })) << server.describe();
  std::ostringstream tail;
  tail << "[upstream_tls]\nca = \"" << cert_.cert_path << "\"\n[[backend]]\nname = \"plain11\"\naddress = \"127.0.0.1:"
       << node_port << "\"\nprotocol = \"h2\"\ntls = true\ntls_name = \"localhost\"\n";
  tls_ = false;  // the node above is the only one
  start("retries = 0", tail.str());
  const Response r = http_get(port_, "/x");
  EXPECT_EQ(r.status, 502) << r.describe();
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "did not choose h2 by ALPN")) << proxy_->stderr_text();
}

// Debian's nginx as an h2c node (`listen ... http2`, prior knowledge): a real server's
// HTTP/2, through HTTP/1.1 and HTTP/2 clients.
TEST(H2UpstreamNginx, RealNginxSpeaksH2cToTheProxy) {
  TempDir dir;
  const uint16_t nginx_port = free_port();
  const std::string d = dir.path();
  std::ostringstream conf;
  // One process (master_process off): the pid Process started is nginx's own, so stopping
  // it by that pid leaves no orphaned worker behind (with a master, SIGKILL left one).
  conf << "worker_processes 1;\ndaemon off;\nmaster_process off;\npid " << d << "/nginx.pid;\nerror_log " << d << "/nginx-error.log;\n"
       << "events { worker_connections 256; }\nhttp {\n  access_log off;\n"
       << "  client_body_temp_path " << d << "/body;\n  proxy_temp_path " << d << "/proxy;\n"
       << "  fastcgi_temp_path " << d << "/fcgi;\n  uwsgi_temp_path " << d << "/uwsgi;\n  scgi_temp_path " << d
       << "/scgi;\n  server {\n    listen 127.0.0.1:" << nginx_port << " http2;\n"
       << "    location / { add_header x-proto $server_protocol; return 200 \"nginx $request_uri $http_host\\n\"; }\n"
       << "  }\n}\n";
  const std::string conf_path = dir.write_file("nginx.conf", conf.str());
  Process nginx("/usr/sbin/nginx", {"-p", d, "-e", d + "/nginx-error.log", "-c", conf_path}, d, "nginx");
  ASSERT_TRUE(eventually([&] { return read_file(d + "/nginx.pid").size() > 0; })) << nginx.describe();
  const uint16_t port = free_port();
  std::ostringstream c;
  c << "[proxy]\nlisten = \"127.0.0.1:" << port << "\"\nworkers = 1\n[admin]\nlisten = \"\"\n"
    << "[health]\ninterval_ms = 200\n"
    << "[[backend]]\nname = \"ng\"\naddress = \"127.0.0.1:" << nginx_port << "\"\nprotocol = \"h2c\"\n";
  const std::string cfg = dir.write_file("ringproxy.toml", c.str());
  Process proxy(std::string(RINGPROXY_BIN), {"-c", cfg}, d, "ringproxy");
  ASSERT_TRUE(proxy.wait_for_output(Output::err, "listening on")) << proxy.describe();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  const Ran h1 = run(dir, "curl-h1", "curl -sS -i -H 'Host: site.test' " + base + "/one");
  EXPECT_NE(h1.out.find("HTTP/1.1 200"), std::string::npos) << h1.out;
  EXPECT_NE(h1.out.find("x-proto: HTTP/2.0"), std::string::npos) << h1.out;
  EXPECT_NE(h1.out.find("nginx /one site.test"), std::string::npos) << h1.out;
  const Ran h2 = run(dir, "curl-h2", "curl -sS -i --http2-prior-knowledge " + base + "/two");
  EXPECT_NE(h2.out.find("HTTP/2 200"), std::string::npos) << h2.out;
  EXPECT_NE(h2.out.find("x-proto: HTTP/2.0"), std::string::npos) << h2.out;
  // The health checks pass over HTTP/2 (a refused probe would log the node down).
  EXPECT_FALSE(proxy.wait_for_output(Output::err, "health: node=ng", Millis(800))) << proxy.stderr_text();
}

// ---- gRPC through the proxy (python3-grpcio on both sides) ----

// Runs grpc_client.py through the proxy; its JSON lines.
std::vector<nlohmann::json> grpc_calls(const TempDir& dir, uint16_t port, const std::string& args,
                                       const std::string& name) {
  const Ran r = run(dir, name,
                    "/usr/bin/python3 " + std::string(GRPC_CLIENT) + " --target 127.0.0.1:" + std::to_string(port) +
                        " " + args);
  EXPECT_EQ(r.code, 0) << r.out;
  std::vector<nlohmann::json> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("code")) out.push_back(j);
  }
  EXPECT_FALSE(out.empty()) << r.out;
  return out;
}

class GrpcTier : public ::testing::Test {
 protected:
  void add_nodes(int n) {
    for (int i = 1; i <= n; ++i) {
      const std::string name = "g" + std::to_string(i);
      auto p = std::make_unique<Process>("/usr/bin/python3",
                                         std::vector<std::string>{GRPC_NODE, "--port", "0", "--name", name},
                                         dir_.path(), "grpc-" + name);
      const std::optional<std::string> ready = p->read_line(Millis(15000));
      ASSERT_TRUE(ready && ready->rfind("READY ", 0) == 0) << p->describe();
      ports_.push_back(static_cast<uint16_t>(std::stoi(ready->substr(6))));
      names_.push_back(name);
      nodes_.push_back(std::move(p));
    }
  }
  void start(const std::string& proxy_extra = {}) {
    port_ = free_port();
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\nlog_level = \"info\"\n"
      << "hash_key = \"header:x-user\"\n" << proxy_extra << "\n[admin]\nlisten = \"\"\n[health]\ninterval_ms = 3600000\n";
    for (size_t i = 0; i < nodes_.size(); ++i) {
      c << "[[backend]]\nname = \"" << names_[i] << "\"\naddress = \"127.0.0.1:" << ports_[i]
        << "\"\nprotocol = \"h2c\"\n";
    }
    const std::string cfg = dir_.write_file("ringproxy.toml", c.str());
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", cfg}, dir_.path(),
                                       "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  TempDir dir_;
  std::vector<std::unique_ptr<Process>> nodes_;
  std::vector<uint16_t> ports_;
  std::vector<std::string> names_;
  uint16_t port_ = 0;
  std::unique_ptr<Process> proxy_;
};

// A consistent-hash tier of stateful gRPC services (SPEC "HTTP/2 and gRPC"): unary and
// bidirectional streaming calls hashed by a metadata field land on the node the ring
// reference names, with the node's trailers (grpc-status, its own metadata) passed on.
TEST_F(GrpcTier, CallsHashedByMetadataLandWhereTheRingSays) {
  add_nodes(3);
  start();
  std::vector<std::string> users;
  for (int i = 0; i < 12; ++i) users.push_back("user-" + std::to_string(i));
  const auto want = reference_map(names_, users);
  std::vector<std::string> got_unary, got_bidi;
  for (const std::string& u : users) {
    const auto unary = grpc_calls(dir_, port_, "--method Unary --metadata x-user=" + u + " --message hi", "unary-" + u);
    ASSERT_EQ(unary.size(), 1u);
    ASSERT_EQ(unary[0]["code"], "OK") << unary[0].dump();
    got_unary.push_back(unary[0]["trailing"].value("x-node", ""));
    EXPECT_EQ(unary[0]["replies"][0], got_unary.back() + ":hi") << unary[0].dump();
    // Ping-pong: each message waits for the previous reply, so a proxy that held the
    // stream's DATA back would stall it.
    const auto bidi = grpc_calls(dir_, port_, "--method Bidi --count 5 --metadata x-user=" + u + " --message m",
                                 "bidi-" + u);
    ASSERT_EQ(bidi.size(), 1u);
    ASSERT_EQ(bidi[0]["code"], "OK") << bidi[0].dump();
    ASSERT_EQ(bidi[0]["replies"].size(), 5u) << bidi[0].dump();
    const std::string first = bidi[0]["replies"][0];
    got_bidi.push_back(first.substr(0, first.find(':')));
    for (int m = 0; m < 5; ++m) EXPECT_EQ(bidi[0]["replies"][m], got_bidi.back() + ":m-" + std::to_string(m));
  }
  EXPECT_EQ(placement_differences(users, got_unary, want, "", "grpc unary"), 0);
  EXPECT_EQ(placement_differences(users, got_bidi, want, "", "grpc bidi"), 0);
}

// A node killed in the middle of a streaming call: the client gets UNAVAILABLE at once
// (grpc-status 14 in trailers from the proxy), not a hang nor an INTERNAL reset.
TEST_F(GrpcTier, ANodeKilledMidStreamGivesUnavailable) {
  add_nodes(1);
  start();
  Process client("/usr/bin/python3",
                 {GRPC_CLIENT, "--target", "127.0.0.1:" + std::to_string(port_), "--method", "Hang", "--progress",
                  "--timeout", "20", "--metadata", "x-user=k"},
                 dir_.path(), "grpc-hang");
  const std::optional<std::string> progress = client.read_line(Millis(15000));
  ASSERT_TRUE(progress && progress->find("progress") != std::string::npos) << client.describe();
  nodes_[0]->kill();
  const std::optional<std::string> result = client.read_line(Millis(8000));
  ASSERT_TRUE(result) << client.describe();
  const nlohmann::json j = nlohmann::json::parse(*result, nullptr, false);
  EXPECT_EQ(j.value("code", ""), "UNAVAILABLE") << *result;
  EXPECT_LT(j.value("elapsed_ms", 99999), 8000) << *result;
}

// What the proxy answers itself to gRPC is a gRPC status: no node gives UNAVAILABLE;
// a call past its deadline ends DEADLINE_EXCEEDED (the client's deadline and the
// proxy's, from grpc-timeout, are the same instant: either may say it first;
// GrpcTimeoutIsTheWaitForTheNode below checks the proxy's alone).
TEST_F(GrpcTier, TheProxysOwnAnswersAreGrpcStatuses) {
  add_nodes(1);
  start("upstream_timeout_ms = 30000\nretries = 0");
  const auto slow = grpc_calls(dir_, port_, "--method Slow --message 5000 --timeout 1 --metadata x-user=a", "slow");
  ASSERT_EQ(slow.size(), 1u);
  EXPECT_EQ(slow[0]["code"], "DEADLINE_EXCEEDED") << slow[0].dump();
  nodes_[0]->kill();
  const auto down = grpc_calls(dir_, port_, "--method Unary --metadata x-user=a", "down");
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0]["code"], "UNAVAILABLE") << down[0].dump();
}

}  // namespace
}  // namespace ringproxy::integration
