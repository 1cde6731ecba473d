// Hostile clients against a real ringproxy in front of a demo backend: slowloris, the
// connection limit, a client that never reads, half-closed connections and a
// pipelining flood. Timeouts are configured short so the tests are quick; nothing
// sleeps: every wait is on a socket, the proxy's log or a process, bounded. No test
// asserts a duration: "promptly" is checked as "answered while the slow connections
// are still open".
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

using Clock = std::chrono::steady_clock;

class HostileFixture : public ::testing::Test {
 protected:
  void start(const std::string& proxy_extra) {
    backend_ = std::make_unique<DemoBackend>(dir_, "origin");
    port_ = free_port();
    ASSERT_NE(port_, 0);
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\nlog_level = \"info\"\n"
      << proxy_extra << "\n[admin]\nlisten = \"\"\n"
      << "[[backend]]\nname = \"origin\"\naddress = \"" << backend_->address() << "\"\n";
    const std::string config = dir_.write_file("ringproxy.toml", c.str());
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", config},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  // A /proc/PID/status field in kB (VmRSS, VmHWM), -1 when unreadable.
  long proc_kb(const char* field) const {
    std::ifstream status("/proc/" + std::to_string(proxy_->pid()) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string(field).size()));
    }
    return -1;
  }

  TempDir dir_;
  std::unique_ptr<DemoBackend> backend_;
  uint16_t port_ = 0;
  std::unique_ptr<Process> proxy_;
};

// Without waiting: has the peer sent something or closed?
bool readable_now(const Conn& c) {
  pollfd p{c.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Slowloris: hundreds of connections send their heads a byte at a time. A normal client
// is answered meanwhile, and every slow one gets 408 once header_timeout_ms has passed
// since its first byte, however steadily it keeps trickling.
TEST_F(HostileFixture, SlowlorisTricklersTimeOutAndOthersAreServed) {
  start("header_timeout_ms = 2000\nmax_header_bytes = 16384");
  constexpr int kSlow = 300;
  const std::string prefix = "GET /slow HTTP/1.1\r\nHost: h\r\nX-Pad: ";
  std::vector<std::unique_ptr<Conn>> slow;
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(std::make_unique<Conn>("127.0.0.1", port_));
    ASSERT_TRUE(slow.back()->connected()) << i << ": " << slow.back()->error();
  }
  // Each round sends the next byte on every connection: the prefix, then 'a's.
  size_t round = 0;
  const auto trickle = [&](Conn& c) {
    const char byte = round < prefix.size() ? prefix[round] : 'a';
    return c.send_raw(std::string_view(&byte, 1), Millis(1000));
  };
  for (; round < 12; ++round) {
    for (auto& c : slow) ASSERT_TRUE(trickle(*c)) << c->error();
  }
  // A normal client now: answered while all the slow ones are still open and waiting.
  const Response normal = http_get(port_, "/normal");
  ASSERT_EQ(normal.status, 200) << normal.describe();
  EXPECT_EQ(normal.body, "origin /normal\n");
  int still_open = 0;
  for (auto& c : slow) still_open += readable_now(*c) ? 0 : 1;
  EXPECT_EQ(still_open, kSlow) << "slow connections were answered or closed before the normal client";

  // Keep trickling; each must get a 408 and be closed. A poll of at most 20 ms per round
  // paces the trickle on the proxy's answers, not on a sleep.
  std::vector<bool> done(kSlow, false);
  int answered = 0;
  const auto deadline = Clock::now() + Millis(20000);
  for (; answered < kSlow && Clock::now() < deadline; ++round) {
    std::vector<pollfd> fds;
    for (int i = 0; i < kSlow; ++i) {
      if (!done[i]) fds.push_back({slow[i]->fd(), POLLIN, 0});
    }
    ::poll(fds.data(), fds.size(), 20);
    for (int i = 0; i < kSlow; ++i) {
      if (done[i]) continue;
      if (readable_now(*slow[i])) {
        const Response r = slow[i]->read_response(ReadOptions{.timeout = Millis(2000), .head = false});
        EXPECT_EQ(r.status, 408) << i << ": " << r.describe();
        EXPECT_NE(slow[i]->wait_close(Millis(2000)), CloseKind::timeout) << i;
        done[i] = true;
        ++answered;
        continue;
      }
      ASSERT_TRUE(trickle(*slow[i])) << i << ": " << slow[i]->error();
    }
  }
  EXPECT_EQ(answered, kSlow);
  EXPECT_GT(round, prefix.size()) << "the trickle ended before the header timeout could be tested";
  // And the proxy still serves.
  EXPECT_EQ(http_get(port_, "/after").status, 200);
}

// max_connections: the connection over the limit is closed at once (no bytes), the ones
// within it keep working, and a freed slot is usable again.
TEST_F(HostileFixture, MaxConnectionsRefusesCleanly) {
  start("max_connections = 4");
  std::vector<std::unique_ptr<Conn>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<Conn>("127.0.0.1", port_));
    const Response r = held.back()->request("GET", "/held/" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.describe();
  }
  Conn over("127.0.0.1", port_);
  ASSERT_TRUE(over.connected()) << over.error();  // the kernel accepts; the proxy closes
  const RawRead refused = over.read_until_close(Millis(5000));
  EXPECT_TRUE(refused.how == CloseKind::eof || refused.how == CloseKind::reset) << to_string(refused.how);
  EXPECT_EQ(refused.bytes, "");
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "connection refused: max_connections 4 reached"));
  // Those within the limit are untouched.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(held[i]->request("GET", "/again").status, 200);
  // Free one slot: a new connection gets in once the proxy has seen the close. Each
  // attempt waits on its socket; the proxy may take the new connection before the close.
  held[0]->close();
  bool served = false;
  const auto deadline = Clock::now() + Millis(10000);
  while (!served && Clock::now() < deadline) {
    Conn next("127.0.0.1", port_);
    served = next.connected() && next.request("GET", "/freed", {}, {}, ReadOptions{.timeout = Millis(2000), .head = false}).status == 200;
  }
  EXPECT_TRUE(served);
}

// A client that asks for a huge response and never reads it: the proxy stops reading
// the backend when its write to the client is stuck (no queue grows), and drops the
// client after idle_timeout_ms.
TEST_F(HostileFixture, ClientThatNeverReadsIsBoundedAndDropped) {
  start("idle_timeout_ms = 1000");
  const long rss_before = proc_kb("VmRSS:");
  Conn c("127.0.0.1", port_);
  ASSERT_TRUE(c.send_request("GET", "/bytes/2000000000")) << c.error();  // 2 GB
  // The proxy gives up on the connection: the log says so, naming the client.
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "not reading", Millis(15000))) << proxy_->describe();
  const long rss_after = proc_kb("VmRSS:");
  const long hwm = proc_kb("VmHWM:");
  EXPECT_LT(rss_after - rss_before, 32 * 1024) << "kB; before " << rss_before << " after " << rss_after;
  EXPECT_LT(hwm, 128 * 1024) << "kB peak";
  // What was in flight (kernel buffers only) then the end of the connection.
  const RawRead rest = c.read_until_close(Millis(10000));
  EXPECT_NE(rest.how, CloseKind::timeout);
  EXPECT_LT(rest.bytes.size(), 64u << 20);
  EXPECT_EQ(http_get(port_, "/after").status, 200);
}

// Half-close after the request (shutdown(SHUT_WR)): the answers still come, then the
// proxy closes. Also with pipelined requests and with a body.
TEST_F(HostileFixture, HalfClosedClientsGetTheirResponses) {
  start("");
  {
    Conn c("127.0.0.1", port_);
    ASSERT_TRUE(c.send_request("GET", "/half")) << c.error();
    ASSERT_TRUE(c.shutdown_write());
    const Response r = c.read_response();
    ASSERT_EQ(r.status, 200) << r.describe();
    EXPECT_EQ(r.body, "origin /half\n");
    EXPECT_EQ(c.wait_close(), CloseKind::eof);
  }
  {
    Conn c("127.0.0.1", port_);
    ASSERT_TRUE(c.send_request("GET", "/p1"));
    ASSERT_TRUE(c.send_request("POST", "/echo", {}, "body bytes"));
    ASSERT_TRUE(c.send_request("GET", "/p3"));
    ASSERT_TRUE(c.shutdown_write());
    EXPECT_EQ(c.read_response().body, "origin /p1\n");
    EXPECT_EQ(c.read_response().body, "body bytes");
    EXPECT_EQ(c.read_response().body, "origin /p3\n");
    EXPECT_EQ(c.wait_close(), CloseKind::eof);
  }
}

// Thousands of pipelined requests on one connection, sent before any answer is read:
// all answered, in order, and the proxy's memory stays flat (it reads the client only
// as fast as it answers).
TEST_F(HostileFixture, PipeliningFloodIsAnsweredInOrderInBoundedMemory) {
  start("");
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  const long hwm_before = proc_kb("VmHWM:");
  constexpr int kRequests = 5000;
  std::string batch;
  for (int i = 0; i < kRequests; ++i) batch += format_request("GET", "/p/" + std::to_string(i), {{"Host", "h"}});
  Conn c("127.0.0.1", port_);
  ASSERT_TRUE(c.send_raw(batch, Millis(60000))) << c.error();
  for (int i = 0; i < kRequests; ++i) {
    const Response r = c.read_response(ReadOptions{.timeout = Millis(30000), .head = false});
    ASSERT_TRUE(r.ok()) << i << ": " << r.describe();
    ASSERT_EQ(r.body, "origin /p/" + std::to_string(i) + "\n") << i;
  }
  const long hwm_after = proc_kb("VmHWM:");
  EXPECT_LT(hwm_after - hwm_before, 16 * 1024) << "kB; peak before " << hwm_before << " after " << hwm_after;
  EXPECT_EQ(c.request("GET", "/still-open").status, 200);
}

}  // namespace
}  // namespace ringproxy::integration
