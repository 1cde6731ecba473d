// The proxy end to end: real ringproxy and demo-backend processes on loopback
// (STYLE rule 11). Each test asserts which backend served each request, against an
// independent computation of SPEC's placement (tools/ring_reference.py, run with
// Debian's python3-xxhash), never the proxy's own ring code.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

std::vector<std::string> keys(int n, const std::string& prefix = "/k/") {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// A backend run by the test on its threads, on loopback: a listening socket, a thread
// that accepts, and one thread per connection running serve(). Subclasses say what a
// connection gets; they call stop() first in their destructors, so no thread runs
// serve() on a half-destroyed object.
class LoopbackServer {
 public:
  LoopbackServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 || ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      ADD_FAILURE() << "test backend cannot listen";
      return;
    }
    port_ = ntohs(sa.sin_port);
  }
  virtual ~LoopbackServer() { stop(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 protected:
  void start() {
    // The listening socket by value: stop() clears fd_ while this thread runs.
    thread_ = std::thread([this, listener = fd_] {
      for (;;) {
        const int c = ::accept(listener, nullptr, nullptr);
        if (c < 0) return;
        std::lock_guard<std::mutex> lock(mu_);
        conns_.push_back(c);
        conn_threads_.emplace_back([this, c] { serve(c); });
      }
    });
  }
  // Stops accepting, then ends every connection (unblocking its serve()) and joins.
  void stop() {
    if (fd_ < 0) return;
    ::shutdown(fd_, SHUT_RDWR);  // wakes the accept() under way
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
    fd_ = -1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      on_stop();
      for (int c : conns_) ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : conn_threads_) t.join();
    for (int c : conns_) ::close(c);
  }
  virtual void serve(int conn) = 0;
  virtual void on_stop() {}  // under mu_, before the connections are shut down

  std::mutex mu_;

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::vector<int> conns_;
  std::vector<std::thread> conn_threads_;
};

// A backend that answers every request head with fixed bytes and keeps the connection
// open: for responses the demo backend does not make (304 with a Content-Length, a 101
// nobody asked for).
class ScriptedBackend final : public LoopbackServer {
 public:
  explicit ScriptedBackend(std::string response) : response_(std::move(response)) { start(); }
  ~ScriptedBackend() override { stop(); }
  int requests() const { return requests_.load(); }

 private:
  // Every request head on the connection gets the scripted bytes, until the peer goes.
  void serve(int c) override {
    std::string buf;
    char tmp[4096];
    for (;;) {
      const ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) return;
      buf.append(tmp, static_cast<size_t>(n));
      size_t end;
      while ((end = buf.find("\r\n\r\n")) != std::string::npos) {
        buf.erase(0, end + 4);
        ++requests_;
        if (::send(c, response_.data(), response_.size(), MSG_NOSIGNAL) < 0) return;
      }
    }
  }

  std::string response_;
  std::atomic<int> requests_{0};
};

struct ProxyOptions {
  std::string proxy_extra;  // more lines for [proxy]
  int workers = 2;
};

// A ringproxy in front of demo backends, in its own temp dir.
class ProxyFixture : public ::testing::Test {
 protected:
  void add_scripted(const std::string& name, const ScriptedBackend& b) { scripted_.emplace_back(name, b.address()); }

  DemoBackend& add_backend(const std::string& name, DemoBackendOptions options = {}) {
    backends_.push_back(std::make_unique<DemoBackend>(dir_, name, options));
    return *backends_.back();
  }

  std::string config_text() const {
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = " << options_.workers
      << "\nlog_level = \"debug\"\n"
      << options_.proxy_extra << "\n[admin]\nlisten = \"\"\n";
    for (const auto& b : backends_) {
      if (excluded_.count(b->name())) continue;
      c << "\n[[backend]]\nname = \"" << b->name() << "\"\naddress = \"" << b->address() << "\"\n";
    }
    for (const auto& [name, address] : scripted_) {
      c << "\n[[backend]]\nname = \"" << name << "\"\naddress = \"" << address << "\"\n";
    }
    return c.str();
  }

  void start_proxy(ProxyOptions options = {}) {
    options_ = options;
    port_ = free_port();
    ASSERT_NE(port_, 0);
    config_path_ = dir_.write_file("ringproxy.toml", config_text());
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN),
                                       std::vector<std::string>{"-c", config_path_}, dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& b : backends_) {
      if (!excluded_.count(b->name())) out.push_back(b->name());
    }
    return out;
  }

  // Sends every key over one keep-alive connection; checks each against the reference.
  void expect_routing(const std::vector<std::string>& ks, const std::vector<std::string>& nodes) {
    const auto expected = reference_map(nodes, ks);
    ASSERT_EQ(expected.size(), ks.size());
    Conn conn("127.0.0.1", port_);
    ASSERT_TRUE(conn.connected()) << conn.error();
    int wrong = 0;
    for (const auto& k : ks) {
      Response r = conn.request("GET", k);
      ASSERT_TRUE(r.ok()) << k << ": " << r.describe();
      ASSERT_EQ(r.status, 200) << r.describe();
      if (r.header("X-Backend") != expected.at(k)) {
        if (++wrong < 5) ADD_FAILURE() << k << " went to " << r.header("X-Backend") << ", ring says " << expected.at(k);
      }
      EXPECT_EQ(r.body, r.header("X-Backend") + " " + k + "\n");
    }
    EXPECT_EQ(wrong, 0);
  }

  long proxy_rss_peak_kb() const {
    std::ifstream status("/proc/" + std::to_string(proxy_->pid()) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }

  TempDir dir_;
  std::vector<std::unique_ptr<DemoBackend>> backends_;
  std::set<std::string> excluded_;
  std::vector<std::pair<std::string, std::string>> scripted_;
  ProxyOptions options_;
  uint16_t port_ = 0;
  std::string config_path_;
  std::unique_ptr<Process> proxy_;
};

TEST_F(ProxyFixture, EveryKeyReachesTheNodeTheRingSays) {
  add_backend("cache-a");
  add_backend("cache-b");
  add_backend("cache-c");
  add_backend("cache-d");
  start_proxy();
  expect_routing(keys(3000), names());
}

TEST_F(ProxyFixture, IPv6BackendsAndListener) {
  DemoBackendOptions v6;
  v6.host = "::1";
  add_backend("v6-a", v6);
  add_backend("v6-b", v6);
  start_proxy();
  expect_routing(keys(200), names());
}

TEST_F(ProxyFixture, HashKeyFromHeaderFallsBackToUri) {
  add_backend("h-a");
  add_backend("h-b");
  add_backend("h-c");
  start_proxy({.proxy_extra = "hash_key = \"header:X-User\""});
  // Every request carries X-User: u7, so every URI goes where "u7" goes.
  const auto by_user = reference_map(names(), {"u7"});
  for (const auto& k : keys(50)) {
    Response r = http_get(port_, k, {{"X-User", "u7"}});
    ASSERT_EQ(r.status, 200) << r.describe();
    EXPECT_EQ(r.header("X-Backend"), by_user.at("u7"));
  }
  // Without the header the URI decides.
  const auto by_uri = reference_map(names(), keys(50));
  for (const auto& k : keys(50)) {
    EXPECT_EQ(http_get(port_, k).header("X-Backend"), by_uri.at(k));
  }
}

TEST_F(ProxyFixture, KeepAlivePipeliningAndHeaders) {
  add_backend("p-a");
  add_backend("p-b");
  start_proxy();
  const auto expected = reference_map(names(), {"/x/1", "/x/2", "/x/3"});
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw(format_request("GET", "/x/1", {{"Host", "h"}}) +
                            format_request("GET", "/x/2", {{"Host", "h"}}) +
                            format_request("GET", "/x/3", {{"Host", "h"}})));
  for (const char* k : {"/x/1", "/x/2", "/x/3"}) {
    Response r = conn.read_response();
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.body, expected.at(k) + " " + k + "\n");
    EXPECT_TRUE(r.keep_alive);
  }
  // Header rewriting: hop-by-hop gone, X-Forwarded-* added, Host kept.
  Response h = conn.request("GET", "/headers",
                            {{"Host", "example.test"}, {"Connection", "keep-alive, X-Private"},
                             {"X-Private", "secret"}, {"Keep-Alive", "timeout=5"},
                             {"X-Forwarded-For", "10.1.2.3"}, {"TE", "trailers"}});
  ASSERT_EQ(h.status, 200) << h.describe();
  EXPECT_NE(h.body.find("Host: example.test\n"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find("X-Forwarded-For: 10.1.2.3, 127.0.0.1\n"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find("X-Forwarded-Proto: http\n"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find("X-Forwarded-Host: example.test\n"), std::string::npos) << h.body;
  EXPECT_EQ(h.body.find("X-Private"), std::string::npos) << h.body;
  EXPECT_EQ(h.body.find("Keep-Alive"), std::string::npos) << h.body;
  EXPECT_EQ(h.body.find("TE:"), std::string::npos) << h.body;
  // Connection: close is honoured.
  Response last = conn.request("GET", "/x/1", {{"Connection", "close"}});
  EXPECT_EQ(last.status, 200);
  EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
}

// RFC 9112 3.2.2: an absolute-form target goes on in origin form, with Host from its
// authority, and is routed as the same request in origin form.
TEST_F(ProxyFixture, AbsoluteFormGoesOnInOriginFormWithItsHost) {
  add_backend("abs-a");
  add_backend("abs-b");
  add_backend("abs-c");
  start_proxy();
  const std::vector<std::string> paths = {"/x/1?q=2", "/", "/?only-query", "/deep/er/path"};
  const auto expected = reference_map(names(), paths);
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.connected()) << conn.error();
  const std::pair<std::string, std::string> absolute[] = {
      {"http://example.test/x/1?q=2", "/x/1?q=2"},
      {"HTTP://example.test", "/"},
      {"http://example.test?only-query", "/?only-query"},
      {"https://example.test:8443/deep/er/path", "/deep/er/path"},
  };
  for (const auto& [target, path] : absolute) {
    Response r = conn.request("GET", target, {{"Host", "other.test"}});
    ASSERT_EQ(r.status, 200) << target << ": " << r.describe();
    EXPECT_EQ(r.body, expected.at(path) + " " + path + "\n") << target;
    EXPECT_EQ(r.header("X-Backend"), expected.at(path)) << target;
  }
  Response h = conn.request("GET", "http://example.test:8080/headers", {{"Host", "other.test"}});
  ASSERT_EQ(h.status, 200) << h.describe();
  EXPECT_NE(h.body.find("Host: example.test:8080\n"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find("X-Forwarded-Host: example.test:8080\n"), std::string::npos) << h.body;
  EXPECT_EQ(h.body.find("other.test"), std::string::npos) << h.body;
  // Forms a reverse proxy does not take: 400, and the connection closes.
  for (const char* bad : {"ftp://example.test/a", "http:///a", "http://user@example.test/a", "*", "http://:80/a",
                          "http://a,b:x:9/", "/a#fragment"}) {
    Conn c("127.0.0.1", port_);
    ASSERT_TRUE(c.send_raw(std::string("GET ") + bad + " HTTP/1.1\r\nHost: h\r\n\r\n"));
    Response r = c.read_response();
    EXPECT_EQ(r.status, 400) << bad << ": " << r.describe();
    EXPECT_EQ(c.wait_close(Millis(5000)), CloseKind::eof) << bad;
  }
  {
    Conn c("127.0.0.1", port_);
    ASSERT_TRUE(c.send_raw("GET /a HTTP/1.1\r\nHost: a,b\r\n\r\n"));
    EXPECT_EQ(c.read_response().status, 400);
  }
  // OPTIONS * is the one use of the asterisk form: it goes on as it is; and an OPTIONS
  // for the server in absolute form goes on as "*" (RFC 9112 3.2.4).
  for (const char* target : {"*", "http://example.test"}) {
    Response o = conn.request("OPTIONS", target, {{"Host", "h"}});
    ASSERT_EQ(o.status, 200) << target << ": " << o.describe();
    EXPECT_EQ(o.body, o.header("X-Backend") + " *\n") << target;
  }
}

// hash_key = "header:host": an absolute-form request is keyed by its authority, which
// is the Host the backend gets, as the same request in origin form would be.
TEST_F(ProxyFixture, AbsoluteFormIsKeyedByItsAuthority) {
  add_backend("ah-a");
  add_backend("ah-b");
  add_backend("ah-c");
  start_proxy({.proxy_extra = "hash_key = \"header:host\""});
  std::vector<std::string> hosts;
  for (int i = 0; i < 40; ++i) hosts.push_back("site" + std::to_string(i) + ".test");
  const auto expected = reference_map(names(), hosts);
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.connected()) << conn.error();
  for (const std::string& host : hosts) {
    Response origin = conn.request("GET", "/p", {{"Host", host}});
    Response absolute = conn.request("GET", "http://" + host + "/p", {{"Host", "decoy.test"}});
    ASSERT_EQ(origin.status, 200) << origin.describe();
    ASSERT_EQ(absolute.status, 200) << absolute.describe();
    EXPECT_EQ(origin.header("X-Backend"), expected.at(host)) << host;
    EXPECT_EQ(absolute.header("X-Backend"), expected.at(host)) << host;
  }
  // HTTP/1.0 without Host: the authority is the key, and the Host sent.
  Conn c10("127.0.0.1", port_);
  ASSERT_TRUE(c10.send_raw("GET http://site7.test/headers HTTP/1.0\r\n\r\n"));
  Response r = c10.read_response();
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.header("X-Backend"), expected.at("site7.test"));
  EXPECT_NE(r.body.find("Host: site7.test\n"), std::string::npos) << r.body;
}

TEST_F(ProxyFixture, Http10AndHeadAndBodilessStatuses) {
  add_backend("s-a");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("GET /s HTTP/1.0\r\n\r\n"));
  Response r10 = conn.read_response();
  EXPECT_EQ(r10.status, 200) << r10.describe();
  EXPECT_EQ(r10.body, "s-a /s\n");
  EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);

  Conn c2("127.0.0.1", port_);
  Response head = c2.request("HEAD", "/h");
  EXPECT_EQ(head.status, 200) << head.describe();
  EXPECT_EQ(head.body, "");
  EXPECT_EQ(c2.request("GET", "/status/204").status, 204);
  EXPECT_EQ(c2.request("GET", "/status/304").status, 304);
  Response after = c2.request("GET", "/after");
  EXPECT_EQ(after.body, "s-a /after\n") << after.describe();
}

TEST_F(ProxyFixture, ChunkedBothWaysWithTrailers) {
  add_backend("c-a");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  Response down = conn.request("GET", "/chunked", {{"TE", "trailers"}});
  ASSERT_EQ(down.status, 200) << down.describe();
  EXPECT_TRUE(down.chunked);
  EXPECT_EQ(down.trailer("X-Trailer"), "done");
  ASSERT_TRUE(conn.send_raw("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"));
  Response up = conn.read_response();
  ASSERT_EQ(up.status, 200) << up.describe();
  EXPECT_EQ(up.body, "hello world");
}

// A GiB each way through one connection with flat memory: backpressure holds what is
// buffered to a bound whatever the size (SO_SNDBUF-sized queues, not the body).
TEST_F(ProxyFixture, GibibyteEachWayInFlatMemory) {
  add_backend("big");
  start_proxy({.proxy_extra = "", .workers = 1});
  Conn conn("127.0.0.1", port_);
  ReadOptions counting;
  counting.keep_body = false;
  counting.timeout = Millis(120000);
  const auto download = [&](uint64_t size) {
    Response down = conn.request("GET", "/bytes/" + std::to_string(size), {}, {}, counting);
    ASSERT_TRUE(down.ok()) << down.describe();
    EXPECT_EQ(down.body_bytes, size);
  };
  const auto upload = [&](uint64_t size) {
    ASSERT_TRUE(conn.send_raw("POST /sink HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n"));
    const std::string chunk(1 << 20, 'x');
    for (uint64_t sent = 0; sent < size; sent += chunk.size()) ASSERT_TRUE(conn.send_raw(chunk, Millis(60000)));
    Response up = conn.read_response(counting);
    ASSERT_TRUE(up.ok()) << up.describe();
    EXPECT_EQ(up.status, 200);
  };
  // 64 MiB each way first: the buffers and pools are at their working size after it.
  download(64ull << 20);
  upload(64ull << 20);
  const long warm_kb = proxy_rss_peak_kb();
  ASSERT_GT(warm_kb, 0);
  download(1ull << 30);
  upload(1ull << 30);
  const long peak_kb = proxy_rss_peak_kb();
  EXPECT_LT(peak_kb - warm_kb, 2048) << "peak RSS " << warm_kb << " kB after 64 MiB each way, " << peak_kb
                                     << " kB after a further GiB each way";
  EXPECT_LT(peak_kb, 64 * 1024) << "peak RSS " << peak_kb << " kB";
  std::printf("peak RSS %ld kB after 64 MiB each way, %ld kB after a further GiB each way\n", warm_kb, peak_kb);
}

TEST_F(ProxyFixture, WebSocketUpgradeIsTunnelled) {
  add_backend("ws");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
  Response r = conn.read_response();
  ASSERT_EQ(r.status, 101) << r.describe();
  EXPECT_EQ(r.header("Upgrade"), "websocket");
  const std::string payload = std::string("\x81\x05hello", 7) + std::string(100000, 'z');
  ASSERT_TRUE(conn.send_raw(payload));
  auto echoed = conn.read_exact(payload.size());
  ASSERT_TRUE(echoed.has_value());
  EXPECT_EQ(*echoed, payload);
}

// ---- what the proxy answers itself ----

TEST_F(ProxyFixture, MalformedRequestsGet400AndClose) {
  add_backend("m-a");
  start_proxy();
  for (const char* raw : {"GARBAGE\r\n\r\n",
                          "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                          "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                          "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"}) {
    SCOPED_TRACE(raw);
    Conn conn("127.0.0.1", port_);
    ASSERT_TRUE(conn.send_raw(raw));
    Response r = conn.read_response();
    EXPECT_EQ(r.status, 400) << r.describe();
    EXPECT_EQ(r.header("Connection"), "close");
    EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
  }
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 400: malformed request"));
}

TEST_F(ProxyFixture, HeadTooLargeGets431) {
  add_backend("l-a");
  start_proxy({.proxy_extra = "max_header_bytes = 2048"});
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n"));
  Response r = conn.read_response();
  EXPECT_EQ(r.status, 431) << r.describe();
  EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
  // A head just under the limit passes.
  Response ok = http_get(port_, "/ok", {{"X-Fill", std::string(1500, 'b')}});
  EXPECT_EQ(ok.status, 200) << ok.describe();
}

TEST_F(ProxyFixture, SlowClientGets408) {
  add_backend("t-a");
  start_proxy({.proxy_extra = "header_timeout_ms = 200"});
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("GET / HTTP/1.1\r\nHost: h\r\n"));  // never finished
  Response r = conn.read_response();
  EXPECT_EQ(r.status, 408) << r.describe();
  EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 408: header timeout"));
}

TEST_F(ProxyFixture, NodeDownRetriesOnTheNextNode) {
  add_backend("r-a");
  add_backend("r-b");
  add_backend("r-c");
  start_proxy({.proxy_extra = "retries = 1"});
  const auto all = names();
  const auto ks = keys(300);
  // r-b dies: its keys go where a ring without it sends them; the rest stay.
  backends_[1]->process().kill();
  excluded_.insert("r-b");
  const auto without = reference_map(names(), ks);
  const auto with = reference_map(all, ks);
  int moved = 0;
  for (const auto& k : ks) {
    Response r = http_get(port_, k);
    ASSERT_EQ(r.status, 200) << k << ": " << r.describe();
    EXPECT_EQ(r.header("X-Backend"), without.at(k)) << k;
    moved += with.at(k) == "r-b";
  }
  EXPECT_GT(moved, 0);
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, ", retrying on node="));
}

TEST_F(ProxyFixture, NodeDownWithoutRetriesIs502) {
  add_backend("d-a");
  start_proxy({.proxy_extra = "retries = 0"});
  backends_[0]->process().kill();
  // The connection goes on after a 502 of ours: the request was read to its end.
  Conn conn("127.0.0.1", port_);
  Response r = conn.request("GET", "/gone");
  EXPECT_EQ(r.status, 502) << r.describe();
  EXPECT_TRUE(r.keep_alive);
  Response again = conn.request("POST", "/gone-too", {}, "body");
  EXPECT_EQ(again.status, 502) << again.describe();
  EXPECT_TRUE(again.keep_alive);
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 502: connect failed: ECONNREFUSED at node d-a"));
}

TEST_F(ProxyFixture, OurErrorToAHeadHasNoBody) {
  add_backend("h-a");
  start_proxy({.proxy_extra = "retries = 0"});
  backends_[0]->process().kill();
  // A body after the head would be read as the next response on this connection.
  Conn conn("127.0.0.1", port_);
  Response head = conn.request("HEAD", "/gone");
  EXPECT_EQ(head.status, 502) << head.describe();
  EXPECT_EQ(head.header("Content-Length"), "15");  // what a GET gets
  EXPECT_EQ(head.body, "");
  ASSERT_TRUE(head.keep_alive);
  Response get = conn.request("GET", "/gone");
  EXPECT_EQ(get.status, 502) << get.describe();
  EXPECT_EQ(get.body, "backend failed\n");
}

TEST_F(ProxyFixture, NoUsableNodeIs503) {
  add_backend("z-a");
  start_proxy();
  // Weight 0 everywhere: the ring has no points.
  dir_.write_file("ringproxy.toml", config_text() + "weight = 0\n");
  ASSERT_TRUE(proxy_->send_signal(SIGHUP));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "reloaded"));
  Response r = http_get(port_, "/any");
  EXPECT_EQ(r.status, 503) << r.describe();
}

TEST_F(ProxyFixture, HangingNodeIs504) {
  DemoBackendOptions hang;
  hang.mode = "hang";
  add_backend("hang", hang);
  start_proxy({.proxy_extra = "upstream_timeout_ms = 300\nretries = 0"});
  Response r = http_get(port_, "/slow");
  EXPECT_EQ(r.status, 504) << r.describe();
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "answered 504: response timeout at node hang"));
}

TEST_F(ProxyFixture, GarbageFromNodeIs502) {
  DemoBackendOptions garbage;
  garbage.mode = "garbage";
  add_backend("junk", garbage);
  start_proxy({.proxy_extra = "retries = 0"});
  Response r = http_get(port_, "/x");
  EXPECT_EQ(r.status, 502) << r.describe();
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "malformed response"));
}

TEST_F(ProxyFixture, ResetBeforeResponseRetriesIdempotentOnly) {
  DemoBackendOptions reset;
  reset.mode = "reset";
  add_backend("rst", reset);
  add_backend("fine");
  start_proxy({.proxy_extra = "retries = 1"});
  // Find a key the resetting node owns.
  const auto ks = keys(100);
  const auto map = reference_map(names(), ks);
  std::string key;
  for (const auto& k : ks) {
    if (map.at(k) == "rst") {
      key = k;
      break;
    }
  }
  ASSERT_FALSE(key.empty());
  Response get = http_get(port_, key);
  EXPECT_EQ(get.status, 200) << get.describe();
  EXPECT_EQ(get.header("X-Backend"), "fine");
  Response post = http_request(port_, "POST", key, {}, "body");
  EXPECT_EQ(post.status, 502) << post.describe();
}

TEST_F(ProxyFixture, HangingNodeRetriesIdempotentOnTheNextNode) {
  DemoBackendOptions hang;
  hang.mode = "hang";
  add_backend("stuck", hang);
  add_backend("alive");
  // Two failures stay below passive ejection (5) and active checks (3 s): both
  // requests below meet the hanging node first.
  start_proxy({.proxy_extra = "upstream_timeout_ms = 200\nretries = 1"});
  const auto ks = keys(100);
  const auto map = reference_map(names(), ks);
  std::string key;
  for (const auto& k : ks) {
    if (map.at(k) == "stuck") {
      key = k;
      break;
    }
  }
  ASSERT_FALSE(key.empty());
  // A GET that got no answer in time goes to the next node (nginx's default too) ...
  Response get = http_get(port_, key);
  EXPECT_EQ(get.status, 200) << get.describe();
  EXPECT_EQ(get.header("X-Backend"), "alive");
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "upstream response timeout at node stuck"));
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, ", retrying on node="));
  // ... a POST may have had its effect: 504.
  Response post = http_request(port_, "POST", key, {}, "body");
  EXPECT_EQ(post.status, 504) << post.describe();
}

// ---- operating it ----

TEST_F(ProxyFixture, SighupAddsANode) {
  add_backend("g-a");
  add_backend("g-b");
  DemoBackend& later = add_backend("g-c");
  excluded_.insert(later.name());
  start_proxy();
  const auto ks = keys(500);
  expect_routing(ks, names());
  excluded_.clear();
  dir_.write_file("ringproxy.toml", config_text());
  ASSERT_TRUE(proxy_->send_signal(SIGHUP));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "reloaded"));
  expect_routing(ks, names());
  // An invalid file is refused and the running config stays.
  dir_.write_file("ringproxy.toml", "[proxy]\nbogus = 1\n");
  ASSERT_TRUE(proxy_->send_signal(SIGHUP));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "reload refused"));
  expect_routing(keys(50), names());
}

TEST_F(ProxyFixture, SigtermDrainsRequestsInFlight) {
  DemoBackendOptions slow;
  slow.delay_ms = 400;
  add_backend("slow", slow);
  start_proxy();
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_request("GET", "/inflight"));
  // The signal must come while the request is in flight: the proxy's debug log says
  // when it has routed it (the backend then holds it for 400 ms).
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "routing /inflight to node=slow"));
  ASSERT_TRUE(proxy_->send_signal(SIGTERM));
  Response r = conn.read_response();
  EXPECT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.body, "slow /inflight\n");
  auto status = proxy_->wait(Millis(10000));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->describe(), "exit 0");
  Conn after("127.0.0.1", port_, Millis(1000));
  EXPECT_FALSE(after.connected());
}

TEST_F(ProxyFixture, ExpectContinueIsRelayed) {
  add_backend("e-a");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  ReadOptions interim;
  interim.skip_interim = false;
  Response cont = conn.read_response(interim);
  ASSERT_EQ(cont.status, 100) << cont.describe();
  ASSERT_TRUE(conn.send_raw("hello"));
  Response r = conn.read_response();
  EXPECT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.body, "hello");
}

TEST_F(ProxyFixture, PooledConnectionClosedByTheNodeIsNotUsed) {
  DemoBackend& b = add_backend("pool");
  start_proxy({.proxy_extra = "retries = 0", .workers = 1});
  EXPECT_EQ(http_get(port_, "/one").status, 200);  // leaves an idle pooled connection
  const uint16_t port = b.port();
  b.process().kill();  // the pooled connection is now closed at the far end
  DemoBackendOptions same;
  same.port = port;
  add_backend("pool", same);
  // With retries off, a stale pooled connection would surface as a 502.
  for (int i = 0; i < 5; ++i) {
    Response r = http_get(port_, "/again/" + std::to_string(i));
    EXPECT_EQ(r.status, 200) << r.describe();
  }
}

TEST_F(ProxyFixture, AccessLogInCombinedFormatAndReopenOnSigusr1) {
  add_backend("log-a");
  const std::string log = dir_.file("access.log");
  start_proxy({.proxy_extra = "access_log = \"" + log + "\"", .workers = 1});
  EXPECT_EQ(http_get(port_, "/logged?q=1", {{"User-Agent", "it/1.0"}, {"Referer", "http://r/"}}).status, 200);
  // Lines are flushed within 100 ms; the file grows, which the harness can wait on.
  Process tail("/usr/bin/tail", {"-F", "-n", "+1", log}, dir_.path(), "tail");
  ASSERT_TRUE(tail.wait_for_output(Output::out, "/logged?q=1"));
  const std::string line = tail.stdout_text();
  EXPECT_NE(line.find("127.0.0.1 - - ["), std::string::npos) << line;
  EXPECT_NE(line.find("] \"GET /logged?q=1 HTTP/1.1\" 200 "), std::string::npos) << line;
  EXPECT_NE(line.find(" \"http://r/\" \"it/1.0\" log-a "), std::string::npos) << line;
  // logrotate moves the file and sends SIGUSR1: the proxy writes to a new file.
  ASSERT_EQ(std::rename(log.c_str(), (log + ".1").c_str()), 0);
  ASSERT_TRUE(proxy_->send_signal(SIGUSR1));
  // The reopen happens on the control loop; poll with requests until the new file has one.
  bool reopened = false;
  for (int i = 0; i < 50 && !reopened; ++i) {
    EXPECT_EQ(http_get(port_, "/after-rotate").status, 200);
    Process t2("/usr/bin/tail", {"-F", "-n", "+1", log}, dir_.path(), "tail2");
    reopened = t2.wait_for_output(Output::out, "/after-rotate", Millis(300));
  }
  EXPECT_TRUE(reopened);
}

TEST_F(ProxyFixture, MaxConnectionsRefusesCleanly) {
  add_backend("mc");
  start_proxy({.proxy_extra = "max_connections = 2", .workers = 1});
  Conn a("127.0.0.1", port_), b("127.0.0.1", port_);
  EXPECT_EQ(a.request("GET", "/a").status, 200);
  EXPECT_EQ(b.request("GET", "/b").status, 200);
  Conn c("127.0.0.1", port_);
  EXPECT_NE(c.wait_close(Millis(5000)), CloseKind::timeout);
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "max_connections 2 reached"));
  // The two admitted connections still work; once one goes, a new one is admitted.
  EXPECT_EQ(a.request("GET", "/a2").status, 200);
  b.close();
  // The proxy sees b go when its loop gets to it: new connections are refused until
  // then. Each try is a full round trip to the proxy, bounded by a deadline.
  bool admitted = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!admitted && std::chrono::steady_clock::now() < deadline) {
    Conn d("127.0.0.1", port_);
    admitted = d.request("GET", "/d").status == 200;
  }
  EXPECT_TRUE(admitted);
}

TEST_F(ProxyFixture, CleanShutdownClosesEveryHandle) {
  add_backend("sd-a");
  add_backend("sd-b");
  start_proxy({.proxy_extra = "header_timeout_ms = 300", .workers = 3});
  // Pooled upstream connections, an idle keep-alive client and a half-sent request
  // (which the drain lets finish: it gets its 408 when its head time is up, unless the
  // signal wins the race with its bytes; then it is closed as idle).
  expect_routing(keys(100), names());
  Conn idle("127.0.0.1", port_);
  EXPECT_EQ(idle.request("GET", "/idle").status, 200);
  Conn partial("127.0.0.1", port_);
  ASSERT_TRUE(partial.send_raw("GET /partial HTTP/1.1\r\n"));
  ASSERT_TRUE(proxy_->send_signal(SIGTERM));
  auto status = proxy_->wait(Millis(15000));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->describe(), "exit 0");
  Response cut = partial.read_response();
  EXPECT_TRUE(cut.status == 408 || (cut.status == 0 && cut.closed)) << cut.describe();
  EXPECT_EQ(idle.wait_close(Millis(1000)), CloseKind::eof);
  EXPECT_EQ(proxy_->stderr_text().find("handles open"), std::string::npos) << proxy_->stderr_text();
  EXPECT_NE(proxy_->stderr_text().find("drained, exiting"), std::string::npos);
}

// ---- regressions from review ----

TEST_F(ProxyFixture, ConnectionCannotStripFramingHeaders) {
  add_backend("f-a");
  start_proxy({.proxy_extra = "", .workers = 1});
  // Were Content-Length dropped because Connection names it, the body would reach the
  // backend as a second request, and its answer would go to the next client.
  const std::string hidden = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
  Conn a("127.0.0.1", port_);
  ASSERT_TRUE(a.send_raw("POST /sink HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: " +
                         std::to_string(hidden.size()) + "\r\n\r\n" + hidden));
  Response ra = a.read_response();
  EXPECT_EQ(ra.status, 200) << ra.describe();
  EXPECT_EQ(ra.body, std::to_string(hidden.size()) + "\n");  // the backend read it as a body
  Response rb = http_get(port_, "/mine");
  EXPECT_EQ(rb.body, "f-a /mine\n") << rb.describe();
  Response h = http_get(port_, "/headers", {{"Connection", "host, transfer-encoding"}, {"Host", "kept.example"}});
  EXPECT_NE(h.body.find("Host: kept.example\n"), std::string::npos) << h.body;
}

TEST_F(ProxyFixture, NotModifiedWithContentLengthHasNoBody) {
  ScriptedBackend b("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 1234\r\n\r\n");
  add_scripted("nm", b);
  start_proxy({.proxy_extra = "", .workers = 1});
  Conn conn("127.0.0.1", port_);
  ReadOptions quick;
  quick.timeout = Millis(5000);
  Response first = conn.request("GET", "/x", {{"If-None-Match", "\"x\""}}, {}, quick);
  EXPECT_EQ(first.status, 304) << first.describe();
  // The connection is still usable at once: the 304 carried no body.
  Response second = conn.request("GET", "/y", {}, {}, quick);
  EXPECT_EQ(second.status, 304) << second.describe();
}

TEST_F(ProxyFixture, SwitchingProtocolsNobodyAskedForIs502) {
  ScriptedBackend b("HTTP/1.1 101 Switching Protocols\r\nUpgrade: nope\r\nConnection: Upgrade\r\n\r\n");
  add_scripted("sw", b);
  start_proxy({.proxy_extra = "retries = 0", .workers = 1});
  Response r = http_get(port_, "/plain");
  EXPECT_EQ(r.status, 502) << r.describe();
}

TEST_F(ProxyFixture, StatusCodeBelow100Is502) {
  for (const char* line : {"HTTP/1.1 20 OK", "HTTP/1.1 099 Odd"}) {
    ScriptedBackend b(std::string(line) + "\r\nContent-Length: 2\r\n\r\nok");
    scripted_.clear();
    add_scripted("odd", b);
    start_proxy({.proxy_extra = "retries = 0", .workers = 1});
    Response r = http_get(port_, "/status");
    EXPECT_EQ(r.status, 502) << line << ": " << r.describe();
    EXPECT_TRUE(proxy_->wait_for_output(Output::err, "status code below 100")) << line;
    proxy_.reset();
  }
}

TEST_F(ProxyFixture, HalfClosedClientsAreAnswered) {
  add_backend("hc");
  start_proxy();
  for (const std::string& raw : {std::string("GET /half HTTP/1.1\r\nHost: h\r\n\r\n"),
                                std::string("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
                                format_request("GET", "/p1", {{"Host", "h"}}) + format_request("GET", "/p2", {{"Host", "h"}})}) {
    Conn conn("127.0.0.1", port_);
    ASSERT_TRUE(conn.send_raw(raw));
    ASSERT_TRUE(conn.shutdown_write());
    RawRead all = conn.read_until_close(Millis(5000));
    EXPECT_EQ(all.how, CloseKind::eof) << all.bytes;
    EXPECT_NE(all.bytes.find("HTTP/1.1 200 OK"), std::string::npos) << all.bytes;
    if (raw.find("/p2") != std::string::npos) {
      EXPECT_NE(all.bytes.find("hc /p2"), std::string::npos) << all.bytes;
    }
  }
  // A body cut short by the half-close is not sent on as if whole.
  Conn cut("127.0.0.1", port_);
  ASSERT_TRUE(cut.send_raw("POST /sink HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nshort"));
  ASSERT_TRUE(cut.shutdown_write());
  EXPECT_EQ(cut.read_until_close(Millis(5000)).bytes, "");
}

TEST_F(ProxyFixture, DeclinedUpgradeClosesAfterTheResponse) {
  add_backend("du");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  Response r = conn.request("GET", "/not-ws", {{"Upgrade", "h2c"}, {"Connection", "Upgrade, HTTP2-Settings"},
                                               {"HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"}});
  EXPECT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_EQ(conn.wait_close(Millis(5000)), CloseKind::eof);
}

TEST_F(ProxyFixture, Http10WithTransferEncodingIs400) {
  add_backend("te");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("POST /sink HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
  Response r = conn.read_response();
  EXPECT_EQ(r.status, 400) << r.describe();
}

TEST_F(ProxyFixture, TunnelPassesHalfCloseOn) {
  add_backend("wsh");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"));
  ASSERT_EQ(conn.read_response().status, 101);
  const std::string payload(200000, 'q');
  ASSERT_TRUE(conn.send_raw(payload));
  ASSERT_TRUE(conn.shutdown_write());
  RawRead back = conn.read_until_close(Millis(10000));
  EXPECT_EQ(back.bytes.size(), payload.size());
  EXPECT_EQ(back.how, CloseKind::eof);
}

TEST_F(ProxyFixture, SignalsDuringADrainDoNotKill) {
  DemoBackendOptions slow;
  slow.delay_ms = 300;
  add_backend("sig", slow);
  start_proxy({.proxy_extra = "", .workers = 1});
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_request("GET", "/inflight"));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "routing /inflight to node=sig"));
  ASSERT_TRUE(proxy_->send_signal(SIGTERM));
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "draining"));
  ASSERT_TRUE(proxy_->send_signal(SIGUSR1));  // logrotate
  ASSERT_TRUE(proxy_->send_signal(SIGHUP));
  ASSERT_TRUE(proxy_->send_signal(SIGTERM));
  EXPECT_EQ(conn.read_response().status, 200);
  auto status = proxy_->wait(Millis(10000));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->describe(), "exit 0");
}

TEST_F(ProxyFixture, PortTakenIsAStartupFailure) {
  add_backend("p-a");
  start_proxy();
  Process second(std::string(RINGPROXY_BIN), {"-c", config_path_}, dir_.path(), "second");
  auto status = second.wait(Millis(10000));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->describe(), "exit 1");
  EXPECT_NE(second.stderr_text().find("cannot listen on 127.0.0.1:" + std::to_string(port_)), std::string::npos)
      << second.stderr_text();
}

// ---- HTTP conformance of an intermediary (RFC 9110, RFC 9112) and the defects of
// issue 12, each with its test. ----

// RFC 9110 7.6.1 with 5.3: every Connection line, and every token in each, names a
// field to drop, in requests and in responses.
TEST_F(ProxyFixture, ConnectionOptionsOfEveryLineAreDroppedBothWays) {
  add_backend("co-a");
  ScriptedBackend scripted(
      "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: X-Resp-Secret, x-resp-other\r\n"
      "X-Resp-Secret: 1\r\nX-Resp-Other: 2\r\nX-Kept: 3\r\nContent-Length: 2\r\n\r\nok");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  Response r = conn.request("GET", "/headers",
                            {{"Connection", "keep-alive"}, {"Connection", "X-Secret"}, {"X-Secret", "s"},
                             {"Connection", "x-two"}, {"X-Two", "t"}, {"X-Visible", "v"}});
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.body.find("X-Secret"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("X-Two"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("X-Visible: v\n"), std::string::npos) << r.body;

  backends_.clear();
  add_scripted("co-s", scripted);
  start_proxy();
  Response s = http_get(port_, "/any");
  ASSERT_EQ(s.status, 200) << s.describe();
  EXPECT_FALSE(s.has_header("X-Resp-Secret")) << s.describe();
  EXPECT_FALSE(s.has_header("X-Resp-Other")) << s.describe();
  EXPECT_EQ(s.header("X-Kept"), "3");
}

// RFC 9112 2.3 and 6.1: a 1.0 request goes upstream in HTTP/1.1 (with a Host, which 1.1
// needs); a chunked answer reaches the 1.0 client decoded and ended by the close.
TEST_F(ProxyFixture, Http10ClientGetsChunkedBodiesDecodedAndOurVersion) {
  DemoBackend& b = add_backend("v-a");
  start_proxy();
  {
    Conn conn("127.0.0.1", port_);
    ASSERT_TRUE(conn.send_raw("GET /headers HTTP/1.0\r\n\r\n"));
    const RawRead raw = conn.read_until_close(Millis(5000));
    EXPECT_EQ(raw.how, CloseKind::eof);
    EXPECT_EQ(raw.bytes.rfind("HTTP/1.1 200 ", 0), 0u) << raw.bytes;
    EXPECT_NE(raw.bytes.find("GET /headers HTTP/1.1\n"), std::string::npos) << raw.bytes;
    EXPECT_NE(raw.bytes.find("Host: " + b.address() + "\n"), std::string::npos) << raw.bytes;
  }
  for (const char* connection : {"", "Connection: keep-alive\r\n"}) {
    Conn conn("127.0.0.1", port_);
    ASSERT_TRUE(conn.send_raw(std::string("GET /chunked HTTP/1.0\r\nHost: h\r\n") + connection + "\r\n"));
    const RawRead raw = conn.read_until_close(Millis(5000));
    EXPECT_EQ(raw.how, CloseKind::eof) << "a close-delimited body must end with the close";
    const size_t end = raw.bytes.find("\r\n\r\n");
    ASSERT_NE(end, std::string::npos) << raw.bytes;
    const std::string head = raw.bytes.substr(0, end);
    EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos) << head;
    EXPECT_EQ(head.find("Trailer"), std::string::npos) << head;
    EXPECT_EQ(head.find("keep-alive"), std::string::npos) << head;
    EXPECT_EQ(raw.bytes.substr(end + 4), "chunk 1\nchunk 2\nchunk 3\n");
  }
  // With a length, a 1.0 client that asks for keep-alive keeps its connection.
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.send_raw("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  Response r = conn.read_response();
  EXPECT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(r.header("Connection"), "keep-alive");
  ASSERT_TRUE(conn.send_raw("GET /b HTTP/1.0\r\n\r\n"));
  Response r2 = conn.read_response();
  EXPECT_EQ(r2.body, "v-a /b\n") << r2.describe();
}

// RFC 9110 7.6.3: Via "1.1 NAME" after the client's members; proxy.via = "" sends none.
TEST_F(ProxyFixture, ViaIsAppendedAndCanBeTurnedOff) {
  add_backend("via-a");
  start_proxy({.proxy_extra = "via = \"rp-test\""});
  Response r = http_get(port_, "/headers", {{"Via", "1.0 fred"}, {"Via", ""}, {"Via", "1.1 p2:8080"}});
  ASSERT_EQ(r.status, 200) << r.describe();
  EXPECT_NE(r.body.find("\nVia: 1.0 fred, 1.1 p2:8080, 1.1 rp-test\n"), std::string::npos) << r.body;
  Response bare = http_get(port_, "/headers");
  EXPECT_NE(bare.body.find("\nVia: 1.1 rp-test\n"), std::string::npos) << bare.body;

  start_proxy({.proxy_extra = "via = \"\""});
  Response off = http_get(port_, "/headers", {{"Via", "1.0 fred"}});
  EXPECT_NE(off.body.find("\nVia: 1.0 fred\n"), std::string::npos) << off.body;
  EXPECT_EQ(http_get(port_, "/headers").body.find("Via:"), std::string::npos);
}

// RFC 9110 7.6.2: Max-Forwards on OPTIONS and TRACE: 0 is answered here, other values
// go on decremented; other methods pass it untouched.
TEST_F(ProxyFixture, MaxForwardsOnOptionsAndTrace) {
  add_backend("mf-a");
  start_proxy();
  Conn conn("127.0.0.1", port_);
  Response opt = conn.request("OPTIONS", "*", {{"Max-Forwards", "0"}});
  EXPECT_EQ(opt.status, 200) << opt.describe();
  EXPECT_FALSE(opt.has_header("X-Backend")) << opt.describe();
  EXPECT_NE(opt.header("Allow").find("GET"), std::string::npos) << opt.describe();
  Response trace = conn.request("TRACE", "/t", {{"Max-Forwards", "0"}, {"Cookie", "secret=1"}, {"X-Mine", "m"}});
  EXPECT_EQ(trace.status, 200) << trace.describe();
  EXPECT_EQ(trace.header("Content-Type"), "message/http");
  EXPECT_EQ(trace.body.rfind("TRACE /t HTTP/1.1\r\n", 0), 0u) << trace.body;
  EXPECT_NE(trace.body.find("X-Mine: m\r\n"), std::string::npos) << trace.body;
  EXPECT_EQ(trace.body.find("secret"), std::string::npos) << trace.body;
  // The connection goes on.
  Response fwd = conn.request("OPTIONS", "/headers", {{"Max-Forwards", "5"}});
  EXPECT_EQ(fwd.header("X-Backend"), "mf-a") << fwd.describe();
  EXPECT_NE(fwd.body.find("\nMax-Forwards: 4\n"), std::string::npos) << fwd.body;
  Response get = conn.request("GET", "/headers", {{"Max-Forwards", "0"}});
  EXPECT_NE(get.body.find("\nMax-Forwards: 0\n"), std::string::npos) << get.body;
  Response bad = conn.request("TRACE", "/t", {{"Max-Forwards", "x1"}});
  EXPECT_EQ(bad.status, 400) << bad.describe();
}

// RFC 9112 9.6: an answer that ends the connection while the client is still sending
// is read by the client, not lost to a reset (a 40 KB head against the 16 KiB limit).
TEST_F(ProxyFixture, ErrorAnswersAreReadNotLostToAReset) {
  add_backend("lc-a");
  start_proxy();
  const std::string big = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(40000, 'a') + "\r\n\r\n";
  for (int i = 0; i < 30; ++i) {
    Conn conn("127.0.0.1", port_);
    ASSERT_TRUE(conn.connected());
    conn.send_raw(big);  // may fail part-way once the proxy has half-closed: that is fine
    Response r = conn.read_response();
    ASSERT_EQ(r.status, 431) << "try " << i << ": " << r.describe();
    EXPECT_EQ(conn.wait_close(Millis(10000)), CloseKind::eof) << "try " << i;
  }
}

// Access-log fields are escaped: a '"' in the User-Agent cannot forge a field.
TEST_F(ProxyFixture, AccessLogEscapesWhatTheClientWrote) {
  add_backend("esc-a");
  const std::string log = dir_.file("access.log");
  start_proxy({.proxy_extra = "access_log = \"" + log + "\"", .workers = 1});
  EXPECT_EQ(http_get(port_, "/esc", {{"User-Agent", "x\" 500 \"forged"}, {"Referer", "a\\b"}}).status, 200);
  Process tail("/usr/bin/tail", {"-F", "-n", "+1", log}, dir_.path(), "tail");
  ASSERT_TRUE(tail.wait_for_output(Output::out, "/esc"));
  const std::string line = tail.stdout_text();
  EXPECT_NE(line.find(" \"a\\x5Cb\" \"x\\x22 500 \\x22forged\" esc-a "), std::string::npos) << line;
}

// An empty first X-Forwarded-For line keeps the later ones.
TEST_F(ProxyFixture, EmptyFirstXForwardedForKeepsTheRest) {
  add_backend("xff-a");
  start_proxy();
  Response r = http_get(port_, "/headers", {{"X-Forwarded-For", ""}, {"X-Forwarded-For", "10.0.0.1"}});
  EXPECT_NE(r.body.find("\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\n"), std::string::npos) << r.body;
}

// proxy.retries up to its maximum is honoured (a fixed array of 8 capped it at 7).
TEST_F(ProxyFixture, RetriesBeyondSevenAreHonoured) {
  add_backend("live");
  DeadPort dead[11];  // refused, and kept from other tests' servers, until the end
  for (int i = 0; i < 11; ++i) {
    scripted_.emplace_back("dead-" + std::to_string(i), "127.0.0.1:" + std::to_string(dead[i].port()));
  }
  start_proxy({.proxy_extra = "retries = 11\n[health]\ninterval_ms = 3600000\neject_after_failures = 0"});
  for (int i = 0; i < 40; ++i) {
    Response r = http_get(port_, "/r/" + std::to_string(i));
    EXPECT_EQ(r.status, 200) << "/r/" << i << ": " << r.describe();
  }
}

// A backend whose connections serve one request each and then close when a second
// request arrives on them, unanswered (a keep-alive race lost at every reuse). The
// first answers wait until `hold` connections have each sent a request, so that the
// proxy's pool ends up with that many idle connections. heads() counts the requests
// but the health probe's, which may come at any time.
class OneRequestPerConnBackend final : public LoopbackServer {
 public:
  explicit OneRequestPerConnBackend(int hold) : hold_(hold) { start(); }
  ~OneRequestPerConnBackend() override { stop(); }
  int heads() const { return heads_.load(); }

 private:
  void serve(int c) override {
    std::string buf;
    char tmp[4096];
    int served = 0;
    for (;;) {
      const ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) return;
      buf.append(tmp, static_cast<size_t>(n));
      size_t end;
      while ((end = buf.find("\r\n\r\n")) != std::string::npos) {
        // The health probe (GET /) is not counted: it may come at any time.
        if (buf.compare(0, 6, "GET / ") != 0) ++heads_;
        buf.erase(0, end + 4);
        if (served++ > 0) {
          ::shutdown(c, SHUT_RDWR);  // the second request on this connection: gone
          return;
        }
        {
          std::unique_lock<std::mutex> lock(mu_);
          ++waiting_;
          cv_.notify_all();
          cv_.wait_for(lock, std::chrono::seconds(5), [&] { return released_ || waiting_ >= hold_; });
        }
        const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if (::send(c, ok.data(), ok.size(), MSG_NOSIGNAL) < 0) return;
      }
    }
  }
  void on_stop() override {
    released_ = true;
    cv_.notify_all();
  }

  int hold_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool released_ = false;
  std::atomic<int> heads_{0};
};

// README: a pooled connection the backend closed is retried once, on a new connection.
// It took the next pooled connection instead, again and again, uncounted.
TEST_F(ProxyFixture, StalePooledConnectionIsRetriedOnceOnANewConnection) {
  OneRequestPerConnBackend b(3);
  scripted_.emplace_back("once", b.address());
  start_proxy({.proxy_extra = "retries = 0\n[health]\ninterval_ms = 3600000\npath = \"/\"", .workers = 1});
  {
    std::vector<std::thread> clients;
    for (int i = 0; i < 3; ++i) {
      clients.emplace_back([&, i] { EXPECT_EQ(http_get(port_, "/fill/" + std::to_string(i)).status, 200); });
    }
    for (auto& t : clients) t.join();
  }
  // Three idle pooled connections, each of which the backend closes on its next request.
  const int before = b.heads();
  Response r = http_get(port_, "/after");
  EXPECT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(b.heads() - before, 2) << "one pooled try, then one new connection";
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "on a pooled connection, reconnecting"));
}

}  // namespace
}  // namespace ringproxy::integration
