// examples/demo-backend as a real process on loopback, through the harness. These pin
// the backend's contract (the comment at the top of demo_backend.cc) that the proxy's
// end-to-end tests rely on, and exercise the harness itself.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

using std::chrono::steady_clock;

// 'a'..'z' repeating from offset 0: what /bytes/N sends.
std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

// Deterministic bytes of every value, for bodies and tunnels.
std::string noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// A field of /proc/PID/status in kB (VmHWM: peak resident memory), or -1.
long proc_status_kb(pid_t pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.starts_with(field + ":")) return std::stol(line.substr(field.size() + 1));
  return -1;
}

class DemoBackendTest : public ::testing::Test {
 protected:
  TempDir dir;
};

// ---- start-up and command line ----

TEST_F(DemoBackendTest, PrintsExactlyOneListeningLine) {
  DemoBackend b(dir, "a");
  EXPECT_NE(b.port(), 0);
  EXPECT_EQ(b.address(), "127.0.0.1:" + std::to_string(b.port()));
  Response r = http_get(b.port(), "/health");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(b.process().stdout_text(), "listening 127.0.0.1:" + std::to_string(b.port()) + "\n");
}

TEST_F(DemoBackendTest, ListensOnIpv6Loopback) {
  DemoBackendOptions o;
  o.host = "::1";
  DemoBackend b(dir, "six", o);
  EXPECT_EQ(b.address(), "[::1]:" + std::to_string(b.port()));
  Response r = http_get(b.port(), "/x", {}, {}, "::1");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.body, "six /x\n");
  EXPECT_EQ(r.header("Host"), "");  // sanity: header() is per response, not request
  Conn c("[::1]", b.port());
  ASSERT_TRUE(c.connected()) << c.error();
  EXPECT_EQ(c.request("GET", "/headers").body.find("Host: [::1]:" + std::to_string(b.port()) + "\n") !=
                std::string::npos,
            true);
}

TEST_F(DemoBackendTest, BadUsageExits2) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"--name", "a"},
      {"--listen", "127.0.0.1:0"},
      {"--name", "a", "--listen", "nonsense"},
      {"--name", "a", "--listen", "127.0.0.1:70000"},
      {"--name", "a", "--listen", "::1:80"},
      {"--name", "a", "--listen", "127.0.0.1:0", "--mode", "sideways"},
      {"--name", "a", "--listen", "127.0.0.1:0", "--delay-ms", "-5"},
      {"--name", "a", "--listen", "127.0.0.1:0", "--bogus"},
      {"--name", "a", "--listen"},
  };
  int i = 0;
  for (const auto& args : cases) {
    Process p(DemoBackend::binary(), args, dir.path(), "usage-" + std::to_string(i++));
    const auto st = p.wait();
    ASSERT_TRUE(st.has_value()) << p.describe();
    EXPECT_EQ(st->describe(), "exit 2") << p.describe();
    EXPECT_NE(p.stderr_text().find("usage: ringproxy-demo-backend"), std::string::npos) << p.describe();
    EXPECT_EQ(p.stdout_text(), "");
  }
}

TEST_F(DemoBackendTest, PortTakenExits1WithOneLine) {
  DemoBackend first(dir, "first");
  Process p(DemoBackend::binary(), {"--name", "second", "--listen", first.address()}, dir.path(), "second");
  const auto st = p.wait();
  ASSERT_TRUE(st.has_value()) << p.describe();
  EXPECT_EQ(st->describe(), "exit 1");
  const std::string err = p.stderr_text();
  EXPECT_NE(err.find("cannot listen on " + first.address()), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(p.stdout_text(), "");
}

TEST_F(DemoBackendTest, SigtermAndSigintExit0EvenWithOpenConnections) {
  for (int sig : {SIGTERM, SIGINT}) {
    DemoBackend b(dir, "sig" + std::to_string(sig));
    Conn idle("127.0.0.1", b.port());
    Conn busy("127.0.0.1", b.port());
    ASSERT_TRUE(idle.connected() && busy.connected());
    ASSERT_TRUE(busy.send_raw("GET /health HTTP/1.1\r\nHost: x\r\n"));  // half a head
    ASSERT_TRUE(http_get(b.port(), "/health").ok());
    ASSERT_TRUE(b.process().send_signal(sig));
    const auto st = b.process().wait();
    ASSERT_TRUE(st.has_value()) << b.process().describe();
    EXPECT_EQ(st->describe(), "exit 0") << b.process().describe();
    EXPECT_EQ(idle.wait_close(), CloseKind::eof);
    EXPECT_EQ(b.process().stderr_text(), "");  // no "loop closed with handles open"
  }
}

TEST_F(DemoBackendTest, ProcessReportsExecFailureAndKillsOnDestruction) {
  EXPECT_THROW(Process("/nonexistent/binary", {}, dir.path()), std::runtime_error);
  pid_t pid;
  {
    DemoBackend b(dir, "doomed");
    pid = b.process().pid();
    EXPECT_TRUE(b.process().running());
  }
  EXPECT_NE(::kill(pid, 0), 0);  // killed and reaped: no such process (or someone else's)
}

// ---- routes ----

TEST_F(DemoBackendTest, Health) {
  DemoBackend b(dir, "a");
  Response r = http_get(b.port(), "/health");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
  EXPECT_EQ(r.header("X-Backend"), "a");
  EXPECT_EQ(r.header("content-length"), "3");
  EXPECT_TRUE(r.keep_alive);
}

TEST_F(DemoBackendTest, AnyOtherTargetAnswersNameAndTarget) {
  DemoBackend b(dir, "cache-b");
  for (const std::string target : {"/", "/some/path", "/q?x=1&y=%20z", "/health/not", "/echoes"}) {
    Response r = http_get(b.port(), target);
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "cache-b " + target + "\n");
    EXPECT_EQ(r.header("X-Backend"), "cache-b");
  }
  Response del = http_request(b.port(), "DELETE", "/thing");
  EXPECT_EQ(del.body, "cache-b /thing\n");
}

TEST_F(DemoBackendTest, HeadGetsTheHeadOfGetWithoutBody) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  for (const std::string target : {"/x", "/health", "/bytes/1000", "/chunked", "/status/503"}) {
    Response get = c.request("GET", target);
    Response head = c.request("HEAD", target);
    ASSERT_TRUE(get.ok() && head.ok()) << get.describe() << head.describe();
    EXPECT_EQ(head.status, get.status) << target;
    EXPECT_EQ(head.header("Content-Length"), get.header("Content-Length")) << target;
    EXPECT_EQ(head.header("Transfer-Encoding"), get.header("Transfer-Encoding")) << target;
    EXPECT_EQ(head.body_bytes, 0u) << target;
  }
  // And the connection is still in step: nothing was sent after the HEAD heads.
  EXPECT_EQ(c.request("GET", "/health").body, "ok\n");
}

TEST_F(DemoBackendTest, EchoReturnsTheBody) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  Response r = c.request("POST", "/echo", {{"Content-Type", "text/plain"}}, "hello, world");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello, world");
  EXPECT_EQ(r.header("Content-Length"), "12");
  EXPECT_EQ(r.header("X-Backend"), "a");
  Response empty = c.request("GET", "/echo");
  EXPECT_EQ(empty.body, "");
  EXPECT_EQ(empty.header("Content-Length"), "0");
  const std::string binary = noise(5000, 1);
  EXPECT_EQ(c.request("PUT", "/echo?x=1", {}, binary).body, binary);
}

TEST_F(DemoBackendTest, EchoOfAChunkedRequestIsChunked) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  ASSERT_TRUE(c.send_raw("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\nX-Req-Trailer: 1\r\n\r\n"));
  Response r = c.read_response();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(r.chunked);
  EXPECT_EQ(r.body, "hello, world");
  EXPECT_FALSE(r.has_header("Content-Length"));
  EXPECT_EQ(c.request("GET", "/health").body, "ok\n");
}

TEST_F(DemoBackendTest, Echo10MiBStreams) {
  DemoBackend b(dir, "a");
  const std::string body = noise(10 << 20, 2);
  Conn c("127.0.0.1", b.port());
  Response r = c.request("POST", "/echo", {}, body);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.body_bytes, body.size());
  EXPECT_TRUE(r.body == body);
}

TEST_F(DemoBackendTest, Sink10MiBCountsTheBody) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  Response r = c.request("POST", "/sink", {}, std::string(10 << 20, 'x'));
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.body, std::to_string(10 << 20) + "\n");
  // Chunked uploads count the decoded body.
  ASSERT_TRUE(c.send_raw("PUT /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n"));
  EXPECT_EQ(c.read_response().body, "13\n");
  EXPECT_EQ(c.request("POST", "/sink").body, "0\n");
}

TEST_F(DemoBackendTest, BytesSendsTheAlphabetPattern) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  for (size_t n : {size_t{0}, size_t{1}, size_t{27}, size_t{65536 + 5}, size_t{10} << 20}) {
    Response r = c.request("GET", "/bytes/" + std::to_string(n));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.header("Content-Length"), std::to_string(n));
    EXPECT_EQ(r.body.size(), n);
    EXPECT_TRUE(r.body == pattern(n)) << n;
  }
  Response bad = c.request("GET", "/bytes/lots");
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(bad.keep_alive);  // a well-formed request: the connection stays
  EXPECT_EQ(c.request("GET", "/health").status, 200);
}

TEST_F(DemoBackendTest, BigTransfersRunInFlatMemory) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  ReadOptions count_only;
  count_only.keep_body = false;
  count_only.timeout = Millis(60000);
  Response down = c.request("GET", "/bytes/" + std::to_string(256 << 20), {}, {}, count_only);
  ASSERT_TRUE(down.ok()) << down.error;
  EXPECT_EQ(down.body_bytes, 256u << 20);
  Response up = c.request("POST", "/sink", {}, std::string(64 << 20, 'u'), count_only);
  EXPECT_EQ(up.body_bytes, std::to_string(64 << 20).size() + 1);
  // Backpressure bounds each connection to about 1 MiB of queued output.
  const long peak_kb = proc_status_kb(b.process().pid(), "VmHWM");
  ASSERT_GT(peak_kb, 0);
  EXPECT_LT(peak_kb, 32 * 1024) << "peak RSS " << peak_kb << " kB";
}

TEST_F(DemoBackendTest, ClientLeavingMidDownloadDoesNotHurt) {
  DemoBackend b(dir, "a");
  {
    Conn c("127.0.0.1", b.port());
    ASSERT_TRUE(c.send_request("GET", "/bytes/1073741824"));
    ASSERT_TRUE(c.read_exact(100000).has_value());
    c.abort();
  }
  {
    Conn c("127.0.0.1", b.port());
    ASSERT_TRUE(c.send_request("GET", "/bytes/1073741824"));
    ASSERT_TRUE(c.read_exact(1000).has_value());
  }  // plain close with unread data
  Response r = http_get(b.port(), "/health");
  EXPECT_EQ(r.body, "ok\n") << r.describe();
}

TEST_F(DemoBackendTest, ChunkedWithTrailer) {
  DemoBackend b(dir, "a");
  Response r = http_get(b.port(), "/chunked");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(r.chunked);
  EXPECT_EQ(r.header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(r.header("Trailer"), "X-Trailer");
  EXPECT_FALSE(r.has_header("Content-Length"));
  EXPECT_EQ(r.body, "chunk 1\nchunk 2\nchunk 3\n");
  EXPECT_EQ(r.trailer("x-trailer"), "done");
  EXPECT_EQ(r.header("X-Backend"), "a");
}

TEST_F(DemoBackendTest, StatusRoute) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  for (int status : {200, 201, 302, 404, 500, 502, 503, 504, 599}) {
    Response r = c.request("GET", "/status/" + std::to_string(status));
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.status, status);
    EXPECT_EQ(r.body.substr(0, 4), std::to_string(status) + " ");
    EXPECT_EQ(r.header("X-Backend"), "a");
  }
  for (int status : {204, 304}) {
    Response r = c.request("GET", "/status/" + std::to_string(status));
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.status, status);
    EXPECT_EQ(r.body, "");
    EXPECT_FALSE(r.has_header("Content-Length"));
  }
  EXPECT_EQ(c.request("GET", "/status/503").reason, "Service Unavailable");
  for (const std::string bad : {"/status/99", "/status/101", "/status/600", "/status/x", "/status/"})
    EXPECT_EQ(c.request("GET", bad).status, 400) << bad;
  EXPECT_EQ(c.request("GET", "/health").status, 200);  // still in step
}

TEST_F(DemoBackendTest, HeadersEchoesTheRequestHead) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  ASSERT_TRUE(c.send_raw("GET /headers?a=b HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"
                         "x-lower: v\r\nX-Empty:\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n"));
  Response r = c.read_response();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.body,
            "GET /headers?a=b HTTP/1.1\nHost: example.test\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\n"
            "x-lower: v\nX-Empty: \nX-Dup: 1\nX-Dup: 2\n");
}

TEST_F(DemoBackendTest, WebSocketUpgradeBecomesARawEchoTunnel) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  // The first tunnel bytes ride in the same packet as the upgrade request.
  ASSERT_TRUE(c.send_raw("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly"));
  Response r = c.read_response();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.status, 101);
  EXPECT_TRUE(r.upgrade);
  EXPECT_EQ(r.header("Upgrade"), "websocket");
  EXPECT_EQ(r.header("Connection"), "Upgrade");
  EXPECT_EQ(r.header("X-Backend"), "a");
  EXPECT_EQ(c.read_exact(5), "early");
  // Anything at all, HTTP-looking bytes included, comes back unchanged.
  for (const std::string& chunk :
       {std::string("GET / HTTP/1.1\r\n\r\n"), std::string("\0\x81\xff\r\n", 5), noise(3 << 20, 3)}) {
    ASSERT_TRUE(c.send_raw(chunk));
    EXPECT_TRUE(c.read_exact(chunk.size()) == chunk);
  }
  ASSERT_TRUE(c.send_raw("last"));
  ASSERT_TRUE(c.shutdown_write());
  RawRead rest = c.read_until_close();
  EXPECT_EQ(rest.bytes, "last");
  EXPECT_EQ(rest.how, CloseKind::eof);
}

TEST_F(DemoBackendTest, WsWithoutUpgradeIs426) {
  DemoBackend b(dir, "a");
  Response r = http_get(b.port(), "/ws");
  EXPECT_EQ(r.status, 426) << r.describe();
  EXPECT_EQ(r.header("Upgrade"), "websocket");
}

TEST_F(DemoBackendTest, UpgradeElsewhereIsAnsweredThenClosed) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  Response r = c.request("GET", "/other", {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_EQ(c.wait_close(), CloseKind::eof);
}

// ---- connections ----

TEST_F(DemoBackendTest, KeepAliveServesManyRequestsOnOneConnection) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  for (int i = 0; i < 50; ++i) {
    Response r = c.request("GET", "/k" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.body, "a /k" + std::to_string(i) + "\n");
    EXPECT_TRUE(r.keep_alive);
    EXPECT_FALSE(r.has_header("Connection"));
  }
}

TEST_F(DemoBackendTest, PipelinedRequestsAreAnsweredInOrder) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  // All in one write, mixing routes, bodies and a HEAD.
  std::string batch = format_request("GET", "/one", {{"Host", "x"}}) +
                      format_request("HEAD", "/bytes/100", {{"Host", "x"}}) +
                      format_request("POST", "/echo", {{"Host", "x"}}, "pipelined body") +
                      format_request("GET", "/bytes/300000", {{"Host", "x"}}) +
                      format_request("GET", "/chunked", {{"Host", "x"}});
  for (int i = 0; i < 200; ++i) batch += format_request("GET", "/n" + std::to_string(i), {{"Host", "x"}});
  batch += format_request("GET", "/last", {{"Host", "x"}, {"Connection", "close"}});
  ASSERT_TRUE(c.send_raw(batch));
  EXPECT_EQ(c.read_response().body, "a /one\n");
  ReadOptions head;
  head.head = true;
  Response h = c.read_response(head);
  EXPECT_EQ(h.header("Content-Length"), "100");
  EXPECT_EQ(h.body_bytes, 0u);
  EXPECT_EQ(c.read_response().body, "pipelined body");
  EXPECT_TRUE(c.read_response().body == pattern(300000));
  EXPECT_EQ(c.read_response().trailer("X-Trailer"), "done");
  for (int i = 0; i < 200; ++i) {
    Response r = c.read_response();
    ASSERT_TRUE(r.ok()) << i << ": " << r.describe();
    EXPECT_EQ(r.body, "a /n" + std::to_string(i) + "\n");
  }
  Response last = c.read_response();
  EXPECT_EQ(last.body, "a /last\n");
  EXPECT_EQ(last.header("Connection"), "close");
  EXPECT_FALSE(last.keep_alive);
  EXPECT_EQ(c.wait_close(), CloseKind::eof);
}

TEST_F(DemoBackendTest, ConnectionCloseIsHonoured) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  Response r = c.request("GET", "/health", {{"Connection", "close"}});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_FALSE(r.keep_alive);
  EXPECT_EQ(c.wait_close(), CloseKind::eof);
}

TEST_F(DemoBackendTest, Http10ClosesUnlessAskedToKeepAlive) {
  DemoBackend b(dir, "a");
  {
    Conn c("127.0.0.1", b.port());
    ASSERT_TRUE(c.send_raw("GET /old HTTP/1.0\r\n\r\n"));
    Response r = c.read_response();
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.body, "a /old\n");
    EXPECT_EQ(r.header("Connection"), "close");
    EXPECT_EQ(c.wait_close(), CloseKind::eof);
  }
  {
    Conn c("127.0.0.1", b.port());
    ASSERT_TRUE(c.send_raw("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    Response r = c.read_response();
    EXPECT_EQ(r.header("Connection"), "keep-alive");
    EXPECT_TRUE(r.keep_alive);
    ASSERT_TRUE(c.send_raw("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    Response ch = c.read_response();
    EXPECT_FALSE(ch.chunked);  // HTTP/1.0 has no chunked coding
    EXPECT_EQ(ch.body, "chunk 1\nchunk 2\nchunk 3\n");
  }
}

TEST_F(DemoBackendTest, ExpectContinueGets100First) {
  DemoBackend b(dir, "a");
  Conn c("127.0.0.1", b.port());
  ASSERT_TRUE(c.send_raw("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
  ReadOptions interim;
  interim.skip_interim = false;
  Response cont = c.read_response(interim);
  ASSERT_TRUE(cont.ok()) << cont.describe();
  EXPECT_EQ(cont.status, 100);
  ASSERT_TRUE(c.send_raw("body"));
  ReadOptions final_only;
  final_only.head = false;  // the 100 used up nothing recorded; be explicit anyway
  Response r = c.read_response(final_only);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "body");
  // By default read_response skips the 1xx and notes it.
  Response again = c.request("POST", "/sink", {{"Expect", "100-continue"}}, "xyz");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.interim, std::vector<int>{100});
  EXPECT_EQ(again.body, "3\n");
}

TEST_F(DemoBackendTest, MalformedRequestsGet400AndClose) {
  DemoBackend b(dir, "a");
  const std::vector<std::string> bad = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\r\nHost x\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST /sink HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "POST /sink HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
      "POST /sink HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "GET /\x01 HTTP/1.1\r\n\r\n",
      std::string("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 24),
  };
  for (const auto& req : bad) {
    Conn c("127.0.0.1", b.port());
    ASSERT_TRUE(c.send_raw(req));
    Response r = c.read_response();
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.status, 400) << req;
    EXPECT_EQ(r.header("Connection"), "close");
    EXPECT_EQ(r.header("X-Backend"), "a");
    EXPECT_EQ(c.wait_close(), CloseKind::eof) << req;
  }
  // /echo has sent its head by the time bad chunking shows: the answer is cut short.
  {
    Conn c("127.0.0.1", b.port());
    ASSERT_TRUE(c.send_raw("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n"));
    Response r = c.read_response();
    EXPECT_EQ(r.error, "connection closed in the middle of a response") << r.describe();
    EXPECT_EQ(r.body, "ok");
  }
  // A head over 64 KiB gets 431.
  Conn c("127.0.0.1", b.port());
  ASSERT_TRUE(c.send_raw("GET / HTTP/1.1\r\nX-Big: " + std::string(70000, 'b') + "\r\n\r\n"));
  Response big = c.read_response();
  EXPECT_EQ(big.status, 431) << big.describe();
  EXPECT_EQ(c.wait_close(), CloseKind::eof);
}

TEST_F(DemoBackendTest, SurvivesRandomInput) {
  DemoBackend b(dir, "a");
  for (uint32_t seed = 0; seed < 40; ++seed) {
    Conn c("127.0.0.1", b.port());
    ASSERT_TRUE(c.connected());
    // Half of them start like a request, so the parser gets past the method.
    std::string junk = (seed % 2 ? "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" : "") + noise(4096, seed);
    c.send_raw(junk);  // may fail once the server answered 400 and closed
    c.shutdown_write();
    c.read_until_close(Millis(5000));
  }
  Response r = http_get(b.port(), "/health");
  EXPECT_EQ(r.body, "ok\n") << r.describe();
  EXPECT_TRUE(b.process().running());
}

TEST_F(DemoBackendTest, HalfClosedClientStillGetsItsAnswers) {
  DemoBackendOptions o;
  o.delay_ms = 50;
  DemoBackend b(dir, "a", o);
  Conn c("127.0.0.1", b.port());
  ASSERT_TRUE(c.send_raw(format_request("GET", "/x", {{"Host", "h"}}) + format_request("GET", "/y", {{"Host", "h"}})));
  ASSERT_TRUE(c.shutdown_write());
  EXPECT_EQ(c.read_response().body, "a /x\n");
  EXPECT_EQ(c.read_response().body, "a /y\n");
  EXPECT_EQ(c.wait_close(), CloseKind::eof);
}

// ---- --delay-ms and --mode ----

TEST_F(DemoBackendTest, DelayHoldsEachAnswer) {
  DemoBackendOptions o;
  o.delay_ms = 200;
  DemoBackend b(dir, "slow", o);
  Conn c("127.0.0.1", b.port());
  for (const std::string target : {"/health", "/echo"}) {
    const auto start = steady_clock::now();
    Response r = c.request("POST", target, {}, "x");
    const auto took = steady_clock::now() - start;
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.status, 200);
    // libuv keeps loop time in whole milliseconds, truncated: a 200 ms timer may fire
    // after 199.x ms of real time. The bound says "held", not "to the microsecond".
    EXPECT_GE(took, Millis(190)) << target;
  }
  // A short read timeout sees nothing yet; the answer is then still on its way.
  ASSERT_TRUE(c.send_request("GET", "/late"));
  ReadOptions quick;
  quick.timeout = Millis(20);
  EXPECT_NE(c.read_response(quick).error.find("timeout"), std::string::npos);
}

TEST_F(DemoBackendTest, HangModeReadsButNeverAnswers) {
  DemoBackendOptions o;
  o.mode = "hang";
  DemoBackend b(dir, "h", o);
  Conn c("127.0.0.1", b.port());
  ASSERT_TRUE(c.send_request("GET", "/health", {}, {}));
  ASSERT_TRUE(c.send_raw(std::string(1 << 20, 'x')));  // it keeps reading
  ReadOptions quick;
  quick.timeout = Millis(300);
  Response r = c.read_response(quick);
  EXPECT_NE(r.error.find("timeout"), std::string::npos) << r.describe();
  EXPECT_EQ(r.status, 0);
}

TEST_F(DemoBackendTest, GarbageModeAnswersNonHttpThenCloses) {
  DemoBackendOptions o;
  o.mode = "garbage";
  DemoBackend b(dir, "g", o);
  {
    Conn c("127.0.0.1", b.port());
    ASSERT_TRUE(c.send_request("GET", "/health"));
    RawRead raw = c.read_until_close();
    EXPECT_EQ(raw.bytes, "this is not http\r\n\r\n");
    EXPECT_EQ(raw.how, CloseKind::eof);
  }
  Response r = http_get(b.port(), "/x");
  EXPECT_NE(r.error.find("bad response"), std::string::npos) << r.describe();
}

TEST_F(DemoBackendTest, ResetModeSendsRstAfterTheHead) {
  DemoBackendOptions o;
  o.mode = "reset";
  DemoBackend b(dir, "r", o);
  Conn c("127.0.0.1", b.port());
  ASSERT_TRUE(c.send_request("GET", "/health"));
  EXPECT_EQ(c.wait_close(), CloseKind::reset);
  Response r = http_get(b.port(), "/x");
  EXPECT_EQ(r.error, "connection reset by peer") << r.describe();
}

TEST_F(DemoBackendTest, CloseModeClosesCleanlyWithoutAnswer) {
  DemoBackendOptions o;
  o.mode = "close";
  DemoBackend b(dir, "c", o);
  Conn c("127.0.0.1", b.port());
  // The head alone triggers it: the announced body never comes.
  ASSERT_TRUE(c.send_raw("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"));
  RawRead raw = c.read_until_close();
  EXPECT_EQ(raw.bytes, "");
  EXPECT_EQ(raw.how, CloseKind::eof);
  Response r = http_get(b.port(), "/x");
  EXPECT_EQ(r.error, "connection closed before a response") << r.describe();
  EXPECT_TRUE(r.closed);
}

// ---- harness pieces the proxy tests lean on ----

TEST(Harness, FreePortAndWaitForPort) {
  TempDir dir;
  const uint16_t port = free_port();
  ASSERT_NE(port, 0);
  EXPECT_FALSE(wait_for_port(port, Millis(50)));  // nothing there yet
  DemoBackendOptions o;
  o.port = port;
  DemoBackend b(dir, "fixed", o);
  EXPECT_EQ(b.port(), port);
  EXPECT_TRUE(wait_for_port(port, Millis(1000), "127.0.0.1", &b.process()));
}

TEST(Harness, ProcessOutputAndExit) {
  TempDir dir;
  const std::string script = dir.write_file("script.sh", "echo one\necho two\necho oops >&2\nexit 3\n");
  Process p("/bin/sh", {script}, dir.path(), "sh");
  EXPECT_EQ(p.read_line(), "one");
  EXPECT_EQ(p.read_line(), "two");
  EXPECT_EQ(p.read_line(), std::nullopt);
  EXPECT_TRUE(p.wait_for_output(Output::err, "oops"));
  const auto st = p.wait();
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->code, 3);
  EXPECT_FALSE(p.running());
  EXPECT_FALSE(p.send_signal(SIGTERM));  // reaped

  Process sleeper("/bin/sleep", {"60"}, dir.path(), "sleeper");
  EXPECT_EQ(sleeper.wait(Millis(50)), std::nullopt);
  ASSERT_TRUE(sleeper.send_signal(SIGTERM));
  const auto killed = sleeper.wait();
  ASSERT_TRUE(killed.has_value());
  EXPECT_EQ(killed->signal, SIGTERM);
  EXPECT_EQ(killed->code, -1);
}

TEST(Harness, SplitHostPort) {
  EXPECT_EQ(split_host_port("127.0.0.1:80"), (std::pair<std::string, uint16_t>{"127.0.0.1", 80}));
  EXPECT_EQ(split_host_port("[::1]:9090"), (std::pair<std::string, uint16_t>{"::1", 9090}));
  EXPECT_EQ(split_host_port("127.0.0.1"), std::nullopt);
  EXPECT_EQ(split_host_port("[::1]9090"), std::nullopt);
  EXPECT_EQ(split_host_port("h:65536"), std::nullopt);
}

TEST(Harness, ConnectRefusedIsAnError) {
  const uint16_t port = free_port();
  Conn c;
  EXPECT_FALSE(c.connect("127.0.0.1", port, Millis(1000)));
  EXPECT_NE(c.error().find("refused"), std::string::npos) << c.error();
  Response r = http_get(port, "/");
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(c.connect("not-an-ip", 80));
}

}  // namespace
}  // namespace ringproxy::integration
