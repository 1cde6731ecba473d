// HTTP/2 clients against a real ringproxy in front of HTTP/1.1 demo backends (SPEC
// "HTTP/2 and gRPC"): by prior knowledge on a plain listener and by ALPN on a TLS one,
// with real clients from Debian: curl, nghttp and h2load (nghttp2-client), and Python's
// h2 state machine (python3-h2, tests/integration/h2_client.py) for several streams of
// one connection. Each stream is routed like a request: the ring reference says where.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/h2_support.h"
#include "tests/integration/harness.h"
#include "tests/support/tls_certs.h"

namespace ringproxy::integration {
namespace {

class H2Fixture : public ::testing::Test {
 protected:
  ~H2Fixture() override {
    if (cert_.cert != nullptr) test::free_cert(cert_);
  }
  void start(int backends, const std::string& proxy_extra = {}, bool tls = false) {
    for (int i = 1; i <= backends; ++i) {
      backends_.push_back(std::make_unique<DemoBackend>(dir_, "n" + std::to_string(i)));
    }
    port_ = free_port();
    ASSERT_NE(port_, 0);
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\nlog_level = \"" << log_level_ << "\"\n";
    // [proxy] keys first; a [[backend]] in proxy_extra goes after the TLS section.
    const size_t table = proxy_extra.find("\n[");
    c << proxy_extra.substr(0, table) << "\n";
    if (tls) {
      cert_ = test::make_cert(dir_.path(), "site", {"localhost"});
      c << "[proxy.tls]\ncertificates = [{ cert = \"" << cert_.cert_path << "\", key = \"" << cert_.key_path
        << "\" }]\n";
    }
    if (admin_port_ != 0) {
      c << "[admin]\nlisten = \"127.0.0.1:" << admin_port_ << "\"\n";
    } else {
      c << "[admin]\nlisten = \"\"\n";
    }
    c << "[health]\ninterval_ms = 3600000\n";
    if (table != std::string::npos) c << proxy_extra.substr(table + 1) << "\n";
    for (const auto& b : backends_) {
      c << "[[backend]]\nname = \"" << b->name() << "\"\naddress = \"" << b->address() << "\"\n";
    }
    config_ = dir_.write_file("ringproxy.toml", c.str());
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", config_},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& b : backends_) out.push_back(b->name());
    return out;
  }

  // h2_client.py ARGS PORT PATHS...
  H2Result h2(const std::string& args, const std::vector<std::string>& paths, const std::string& name = "h2") {
    std::string cmd = "/usr/bin/python3 " + std::string(H2_CLIENT) + " " + args + " " + std::to_string(port_);
    for (const std::string& p : paths) cmd += " '" + p + "'";
    const Ran r = run(dir_, name, cmd);
    EXPECT_EQ(r.code, 0) << r.out;
    return parse_h2(r.out);
  }

  TempDir dir_;
  std::string log_level_ = "debug";
  uint16_t admin_port_ = 0;  // 0: no admin endpoint
  std::vector<std::unique_ptr<DemoBackend>> backends_;
  test::TestCert cert_;
  uint16_t port_ = 0;
  std::string config_;
  std::unique_ptr<Process> proxy_;
};

// Many streams of one connection, each hashed on its own: every key lands on the node the
// independent ring reference names, as over HTTP/1.
TEST_F(H2Fixture, StreamsOfOneConnectionLandWhereTheRingSays) {
  start(3);
  std::vector<std::string> keys;
  for (int i = 0; i < 60; ++i) keys.push_back("/h2-key-" + std::to_string(i));
  const auto want = reference_map(names(), keys);
  ASSERT_EQ(want.size(), keys.size());
  const H2Result r = h2("", keys);
  ASSERT_EQ(r.streams.size(), keys.size()) << r.raw;
  std::vector<std::string> got;
  for (size_t i = 0; i < keys.size(); ++i) {
    const nlohmann::json& s = r.streams[i];
    ASSERT_EQ(s["status"], 200) << s.dump();
    const std::string node = s["headers"].value("x-backend", "");
    EXPECT_EQ(s["body"], node + " " + keys[i] + "\n");
    got.push_back(node);
  }
  EXPECT_EQ(placement_differences(keys, got, want, "", "h2 stream"), 0);
  EXPECT_EQ(r.connection["goaway"], nullptr);
}

// curl by prior knowledge and nghttp: the answer is HTTP/2, with the node's fields and
// without HTTP/1's connection-specific ones (RFC 9113 8.2.2).
TEST_F(H2Fixture, CurlAndNghttpSpeakH2cByPriorKnowledge) {
  start(1);
  const std::string url = "http://127.0.0.1:" + std::to_string(port_);
  const Ran curl = run(dir_, "curl", "curl -sS -i --http2-prior-knowledge " + url + "/hello");
  ASSERT_EQ(curl.code, 0) << curl.out;
  EXPECT_NE(curl.out.find("HTTP/2 200"), std::string::npos) << curl.out;
  EXPECT_NE(curl.out.find("x-backend: n1"), std::string::npos) << curl.out;
  EXPECT_NE(curl.out.find("n1 /hello"), std::string::npos) << curl.out;
  EXPECT_EQ(curl.out.find("connection:"), std::string::npos) << curl.out;

  const Ran nghttp = run(dir_, "nghttp", "nghttp -v " + url + "/a " + url + "/b " + url + "/c");
  ASSERT_EQ(nghttp.code, 0) << nghttp.out;
  EXPECT_NE(nghttp.out.find("n1 /a"), std::string::npos) << nghttp.out;
  EXPECT_NE(nghttp.out.find("n1 /c"), std::string::npos) << nghttp.out;

  // HTTP/1.1 on the same listener is untouched.
  const Response r = http_get(port_, "/plain");
  EXPECT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.body, "n1 /plain\n");
}

// A TLS listener offers h2 first by ALPN (proxy.alpn's default) and still serves a
// client that offers only HTTP/1.1.
TEST_F(H2Fixture, TlsListenerChoosesH2ByAlpn) {
  start(2, {}, /*tls=*/true);
  const std::string base = "https://localhost:" + std::to_string(port_);
  const std::string resolve = " --resolve localhost:" + std::to_string(port_) + ":127.0.0.1";
  const Ran over_h2 = run(dir_, "curl-h2", "curl -sS -k -i --http2" + resolve + " " + base + "/tls-key");
  ASSERT_EQ(over_h2.code, 0) << over_h2.out;
  EXPECT_NE(over_h2.out.find("HTTP/2 200"), std::string::npos) << over_h2.out;
  const Ran h1 = run(dir_, "curl-h1", "curl -sS -k -i --http1.1" + resolve + " " + base + "/tls-key");
  ASSERT_EQ(h1.code, 0) << h1.out;
  EXPECT_NE(h1.out.find("HTTP/1.1 200"), std::string::npos) << h1.out;

  const H2Result r = h2("--tls", {"/t1", "/t2", "/t3"});
  ASSERT_EQ(r.streams.size(), 3u) << r.raw;
  for (const auto& s : r.streams) EXPECT_EQ(s["status"], 200) << s.dump();
}

// The proxy with alpn = ["http/1.1"] never picks h2 (h2c = false: the plain listener's
// switch, H2cOffRefusesThePreface below).
TEST_F(H2Fixture, AlpnWithoutH2ServesHttp11) {
  start(1, "alpn = [\"http/1.1\"]", /*tls=*/true);
  const std::string resolve = " --resolve localhost:" + std::to_string(port_) + ":127.0.0.1";
  const Ran r = run(dir_, "curl", "curl -sS -k -i --http2" + resolve + " https://localhost:" + std::to_string(port_) + "/x");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("HTTP/1.1 200"), std::string::npos) << r.out;
}

TEST_F(H2Fixture, H2cOffRefusesThePreface) {
  start(1, "h2c = false");
  const Ran r = run(dir_, "curl", "curl -sS -i --http2-prior-knowledge http://127.0.0.1:" + std::to_string(port_) + "/x");
  EXPECT_NE(r.code, 0) << "an HTTP/2 client gets no HTTP/2 answer: " << r.out;
  EXPECT_EQ(r.out.find("HTTP/2 200"), std::string::npos) << r.out;
}

// Request bodies arrive as DATA frames: sized when the client gave content-length, else
// sent chunked to the HTTP/1.1 node; response bodies go back as DATA, decoded from
// chunked, with what the node sent byte for byte.
TEST_F(H2Fixture, BodiesAreReframedBothWays) {
  start(1);
  H2Result sized = h2("--method POST --body-bytes 1000000", {"/echo", "/sink", "/headers"}, "sized");
  ASSERT_EQ(sized.streams.size(), 3u) << sized.raw;
  EXPECT_EQ(sized.streams[0]["status"], 200);
  EXPECT_EQ(sized.streams[0]["body_len"], 1000000);
  EXPECT_EQ(sized.streams[0]["body"].get<std::string>().substr(0, 30), "abcdefghijklmnopqrstuvwxyzabcd");
  EXPECT_EQ(sized.streams[1]["body"], "1000000\n");
  const std::string sized_head = sized.streams[2]["body"];
  EXPECT_NE(sized_head.find("content-length: 1000000"), std::string::npos) << sized_head;
  EXPECT_EQ(sized_head.find("Transfer-Encoding"), std::string::npos) << sized_head;

  H2Result chunked = h2("--method POST --no-length --body-bytes 300000 --chunk 1000", {"/sink", "/headers"}, "chunked");
  ASSERT_EQ(chunked.streams.size(), 2u) << chunked.raw;
  EXPECT_EQ(chunked.streams[0]["body"], "300000\n");
  const std::string chunked_head = chunked.streams[1]["body"];
  EXPECT_NE(chunked_head.find("Transfer-Encoding: chunked"), std::string::npos) << chunked_head;

  // A chunked response comes back decoded, without Transfer-Encoding; its trailer is
  // HTTP/1's and stays behind for now.
  H2Result down = h2("", {"/chunked", "/bytes/3000000"}, "down");
  ASSERT_EQ(down.streams.size(), 2u) << down.raw;
  EXPECT_EQ(down.streams[0]["body"], "chunk 1\nchunk 2\nchunk 3\n");
  EXPECT_FALSE(down.streams[0]["headers"].contains("transfer-encoding")) << down.streams[0].dump();
  EXPECT_EQ(down.streams[1]["body_len"], 3000000);
}

// 1 GiB each way through an HTTP/2 client connection in flat memory: down as DATA from
// the node's Content-Length body, up sized (curl -T FILE) and chunked (curl -T -, no
// length). The proxy's peak RSS stays far below the body (flow control is the bound).
TEST_F(H2Fixture, GigabyteBodiesBothWaysInFlatMemory) {
  log_level_ = "info";
  start(1);
  const std::string url = "http://127.0.0.1:" + std::to_string(port_);
  const std::string file = dir_.file("gig.bin");
  ASSERT_EQ(run(dir_, "truncate", "truncate -s 1G " + file).code, 0);
  const Ran down = run(dir_, "down", "curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_version} %{size_download}' " +
                                         url + "/bytes/1073741824");
  EXPECT_EQ(down.out, "2 1073741824") << down.out;
  const Ran sized = run(dir_, "up-sized", "curl -sS --http2-prior-knowledge -T " + file + " " + url + "/sink");
  EXPECT_EQ(sized.out, "1073741824\n") << sized.out;
  const Ran chunked = run(dir_, "up-chunked", "sh -c 'head -c 1073741824 /dev/zero | curl -sS --http2-prior-knowledge -T - " +
                                                  url + "/sink'");
  EXPECT_EQ(chunked.out, "1073741824\n") << chunked.out;
  std::remove(file.c_str());
  const std::string status = read_file("/proc/" + std::to_string(proxy_->pid()) + "/status");
  const size_t at = status.find("VmHWM:");
  ASSERT_NE(at, std::string::npos);
  const long peak_kb = std::stol(status.substr(at + 6));
  if (!kSanitizedBuild) {
    EXPECT_LT(peak_kb, 64 * 1024) << "peak RSS " << peak_kb << " kB for 1 GiB bodies";
  }
}

// A chunked HTTP/1.1 response's trailers reach an HTTP/2 client as a HEADERS frame
// after the decoded body (RFC 9113 8.1).
TEST_F(H2Fixture, AnHttp1NodesTrailersReachHttp2Clients) {
  start(1);
  const H2Result r = h2("", {"/chunked"});
  ASSERT_EQ(r.streams.size(), 1u) << r.raw;
  const nlohmann::json& s = r.streams[0];
  ASSERT_EQ(s["status"], 200) << s.dump();
  EXPECT_EQ(s["body"], "chunk 1\nchunk 2\nchunk 3\n") << s.dump();
  ASSERT_TRUE(s.contains("trailers")) << s.dump();
  EXPECT_EQ(s["trailers"].value("x-trailer", ""), "done") << s.dump();
}

// RFC 9113 8.2.3 and 8.3.1: cookie crumbs are one field for HTTP/1; :authority is the
// Host; the node sees Via and X-Forwarded-* as from an HTTP/1 client.
TEST_F(H2Fixture, TheNodeSeesAnHttp1HeadWithHostAndOneCookie) {
  start(1);
  H2Result r = h2("--header cookie:a=1 --header cookie:b=2 --header x-thing:yes", {"/headers"});
  ASSERT_EQ(r.streams.size(), 1u) << r.raw;
  const std::string head = r.streams[0]["body"];
  EXPECT_NE(head.find("GET /headers HTTP/1.1\n"), std::string::npos) << head;
  EXPECT_NE(head.find("host: localhost:" + std::to_string(port_) + "\n"), std::string::npos) << head;
  EXPECT_NE(head.find("cookie: a=1; b=2\n"), std::string::npos) << head;
  EXPECT_NE(head.find("x-thing: yes\n"), std::string::npos) << head;
  EXPECT_NE(head.find("X-Forwarded-For: 127.0.0.1\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Via: 2 ringproxy\n"), std::string::npos) << "RFC 9110 7.6.3: " << head;
}

// What the proxy answers itself is an HTTP/2 response too: 503 with no usable node, a
// HEAD answered without a body, 204 and 304 without content.
TEST_F(H2Fixture, OwnAnswersAndBodilessResponses) {
  start(1);
  H2Result r = h2("", {"/status/204", "/status/304", "/status/503"});
  ASSERT_EQ(r.streams.size(), 3u) << r.raw;
  EXPECT_EQ(r.streams[0]["status"], 204);
  EXPECT_EQ(r.streams[0]["body_len"], 0);
  EXPECT_EQ(r.streams[1]["status"], 304);
  EXPECT_EQ(r.streams[2]["status"], 503);
  H2Result head = h2("--method HEAD", {"/bytes/5000"}, "head");
  ASSERT_EQ(head.streams.size(), 1u) << head.raw;
  EXPECT_EQ(head.streams[0]["status"], 200);
  EXPECT_EQ(head.streams[0]["body_len"], 0);
  EXPECT_EQ(head.streams[0]["headers"]["content-length"], "5000");
}

// A node that refuses connections: each stream gets the proxy's 502, logged, and the
// connection serves the next streams.
TEST_F(H2Fixture, AFailedNodeIsA502OverH2) {
  DeadPort dead;
  start(0, "retries = 0\n[[backend]]\nname = \"dead\"\naddress = \"127.0.0.1:" + std::to_string(dead.port()) + "\"");
  H2Result r = h2("", {"/x", "/y"});
  ASSERT_EQ(r.streams.size(), 2u) << r.raw;
  for (const auto& s : r.streams) {
    EXPECT_EQ(s["status"], 502) << s.dump();
    EXPECT_EQ(s["body"], "backend failed\n") << s.dump();
  }
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 502: connect failed"));
}

// ringproxy_requests_total counts each client protocol apart; the access log's request
// line says HTTP/2.0.
TEST_F(H2Fixture, MetricsAndAccessLogNameTheProtocol) {
  admin_port_ = free_port();
  start(1, "access_log = \"" + dir_.file("access.log") + "\"");
  H2Result r = h2("", {"/m1", "/m2", "/m3"});
  ASSERT_EQ(r.streams.size(), 3u) << r.raw;
  ASSERT_EQ(http_get(port_, "/m4").status, 200);
  const Response m = http_get(admin_port_, "/metrics");
  ASSERT_EQ(m.status, 200) << m.describe();
  EXPECT_NE(m.body.find("ringproxy_requests_total{pool=\"default\",backend=\"n1\",code=\"2xx\",protocol=\"h2\"} 3\n"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("ringproxy_requests_total{pool=\"default\",backend=\"n1\",code=\"2xx\",protocol=\"http1\"} 1\n"),
            std::string::npos)
      << m.body;
  ASSERT_TRUE(eventually([&] { return read_file(dir_.file("access.log")).find("/m4") != std::string::npos; }));
  const std::string log = read_file(dir_.file("access.log"));
  EXPECT_NE(log.find("\"GET /m1 HTTP/2.0\" 200 "), std::string::npos) << log;
  EXPECT_NE(log.find("\"GET /m4 HTTP/1.1\" 200 "), std::string::npos) << log;
}

// A response streamed from a node leaves the node's connection reusable: one after
// another, 40 requests with bodies take one upstream connection, none closed.
TEST_F(H2Fixture, UpstreamConnectionsAreReusedAfterH2Responses) {
  log_level_ = "info";
  start(1);
  const std::string port = std::to_string(backends_[0]->port());
  const auto lines = [](const std::string& t) { return std::count(t.begin(), t.end(), '\n'); };
  // The health check's connection, closed by the proxy at start, is there before.
  const std::string closed_query = "ss -Htan state time-wait '( dport = :" + port + " )'";
  const Ran closed_before = run(dir_, "ss-tw-before", closed_query);
  const Ran r = run(dir_, "h2load", "h2load -n 40 -c 1 -m 1 http://127.0.0.1:" + std::to_string(port_) + "/bytes/5000");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("40 succeeded"), std::string::npos) << r.out;
  const Ran closed = run(dir_, "ss-tw", closed_query);
  const Ran open = run(dir_, "ss-est", "ss -Htan state established '( dport = :" + port + " )'");
  EXPECT_EQ(lines(closed.out), lines(closed_before.out))
      << "connections to the node closed by the proxy:\n" << closed.out << "before:\n" << closed_before.out;
  EXPECT_EQ(lines(open.out), 1) << open.out;
}

// RFC 9113 8.1: a 100 Continue from the node goes to the client as an interim HEADERS
// frame, so a client waiting for it sends its body at once.
TEST_F(H2Fixture, ContinueIsRelayedAsInterimHeaders) {
  start(1);
  dir_.write_file("body.bin", std::string(100000, 'x'));
  const Ran r = run(dir_, "curl", "curl -sS -v --http2-prior-knowledge -H 'Expect: 100-continue' --data-binary @" +
                                      dir_.file("body.bin") + " http://127.0.0.1:" + std::to_string(port_) + "/sink");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("< HTTP/2 100"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("< HTTP/2 200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("100000"), std::string::npos) << r.out;
}

// A head the codec refuses is answered on its stream and logged like HTTP/1's (over
// max_header_list_bytes: 431); the connection serves the next stream.
TEST_F(H2Fixture, RefusedHeadsAreAnsweredAndLogged) {
  start(1, "[http2]\nmax_header_list_bytes = 4096");
  H2Result big = h2("--header x-big:" + std::string(5000, 'b'), {"/big"}, "big");
  ASSERT_EQ(big.streams.size(), 1u) << big.raw;
  EXPECT_EQ(big.streams[0]["status"], 431) << big.raw;
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 431: head over http2.max_header_list_bytes"));
  const Ran after = run(dir_, "curl", "curl -sS --http2-prior-knowledge http://127.0.0.1:" + std::to_string(port_) + "/after");
  EXPECT_EQ(after.out, "n1 /after\n");
}

// A TLS client that chooses h2 and then says nothing is closed at the HTTP/2 idle
// timeout, as a silent HTTP/1 client is at the header timeout.
TEST_F(H2Fixture, ASilentH2ClientOverTlsIsClosed) {
  start(1, "header_timeout_ms = 300\n[http2]\nidle_timeout_ms = 300", /*tls=*/true);
  const std::string script = dir_.write_file("silent.py", R"(import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20), server_hostname="localhost")
print(s.selected_alpn_protocol())
got = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    got += d
# the server's SETTINGS, then its GOAWAY (type 7) before the close
print("closed", len(got) > 0, b"\x07\x00\x00\x00\x00\x00" in got)
)");
  const Ran r = run(dir_, "silent", "/usr/bin/python3 " + script + " " + std::to_string(port_));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "h2\nclosed True True\n");
}

// gRPC (SPEC "HTTP/2 and gRPC"): what the proxy answers itself to a gRPC request is a
// grpc-status with HTTP status 200 (UNAVAILABLE for a failed node), and grpc-timeout,
// when shorter than proxy.upstream_timeout_ms, is the wait for the node's answer
// (DEADLINE_EXCEEDED after it).
TEST_F(H2Fixture, GrpcRequestsGetGrpcStatusesAndTheirDeadline) {
  DeadPort dead;
  backends_.push_back(std::make_unique<DemoBackend>(
      dir_, "slow", DemoBackendOptions{.mode = "normal", .delay_ms = 3000, .host = "127.0.0.1", .port = 0, .extra_args = {}}));
  start(0, "retries = 0\n[[pool]]\nname = \"dead\"\nbackends = [{ name = \"d\", address = \"127.0.0.1:" +
               std::to_string(dead.port()) + "\" }]\n[[route]]\npath_prefix = \"/dead.\"\npool = \"dead\"");
  const std::string grpc = "--method POST --header content-type:application/grpc --header te:trailers";
  H2Result failed = h2(grpc, {"/dead.Service/Call"}, "failed");
  ASSERT_EQ(failed.streams.size(), 1u) << failed.raw;
  EXPECT_EQ(failed.streams[0]["status"], 200) << failed.raw;
  EXPECT_EQ(failed.streams[0]["headers"]["grpc-status"], "14") << failed.raw;
  EXPECT_EQ(failed.streams[0]["headers"]["grpc-message"], "backend failed") << failed.raw;

  H2Result late = h2(grpc + " --header grpc-timeout:300m", {"/slow.Service/Call"}, "late");
  ASSERT_EQ(late.streams.size(), 1u) << late.raw;
  EXPECT_EQ(late.streams[0]["status"], 200) << late.raw;
  EXPECT_EQ(late.streams[0]["headers"]["grpc-status"], "4") << late.raw;
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 504: response timeout"));

  // Not gRPC: the plain 502.
  H2Result plain = h2("", {"/dead.x"}, "plain");
  ASSERT_EQ(plain.streams.size(), 1u) << plain.raw;
  EXPECT_EQ(plain.streams[0]["status"], 502) << plain.raw;
}

// h2load: many streams at once over a few connections, every one answered.
TEST_F(H2Fixture, H2loadStreamsAreAllAnswered) {
  log_level_ = "info";
  start(2);
  const Ran r = run(dir_, "h2load", "h2load -n 4000 -c 4 -m 50 http://127.0.0.1:" + std::to_string(port_) + "/load");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("4000 succeeded, 0 failed, 0 errored"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("status codes: 4000 2xx"), std::string::npos) << r.out;
}

// A drain (SIGTERM) sends GOAWAY and lets the open stream finish. (nghttp reads on
// after a GOAWAY; python3-h2 4.1 takes GOAWAY as the connection's end.)
TEST_F(H2Fixture, DrainSendsGoawayAndFinishesOpenStreams) {
  backends_.push_back(std::make_unique<DemoBackend>(
      dir_, "n1", DemoBackendOptions{.mode = "normal", .delay_ms = 1500, .host = "127.0.0.1", .port = 0, .extra_args = {}}));
  start(0, "shutdown_timeout_ms = 10000");
  Process client("/usr/bin/nghttp", {"-v", "http://127.0.0.1:" + std::to_string(port_) + "/slow"}, dir_.path(), "client");
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "routing /slow")) << proxy_->describe();
  ASSERT_TRUE(proxy_->send_signal(SIGTERM));
  const auto status = client.wait(Millis(20000));
  ASSERT_TRUE(status.has_value()) << client.describe();
  EXPECT_EQ(status->code, 0) << client.describe();
  const std::string out = client.stdout_text();
  EXPECT_NE(out.find("recv GOAWAY frame"), std::string::npos) << out;
  EXPECT_NE(out.find("error_code=NO_ERROR"), std::string::npos) << out;
  EXPECT_NE(out.find("n1 /slow"), std::string::npos) << "the open stream finished: " << out;
  const auto exit = proxy_->wait(Millis(20000));
  ASSERT_TRUE(exit.has_value()) << proxy_->describe();
  EXPECT_EQ(exit->code, 0);
}

}  // namespace
}  // namespace ringproxy::integration
