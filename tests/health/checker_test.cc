// HealthChecker against a real socket on loopback: what a probe makes of an answer.
#include "health/checker.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/support/loopback.h"

namespace ringproxy {
namespace {

using test::OneAnswerServer;

struct Verdict {
  bool seen = false;
  bool ok = false;
  std::string detail;
};

// A loopback address where nothing listens (a socket bound and not listening: a
// connect to it is refused) for as long as this lives.
struct RefusingAddress {
  RefusingAddress() : fd(test::bound_loopback_socket(SOCK_CLOEXEC)) {
    socklen_t len = sizeof address;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len);
  }
  ~RefusingAddress() { ::close(fd); }
  int fd;
  sockaddr_storage address{};
};

// One probe of a target at `addresses` in order (or `server`'s address alone); the loop
// runs until its verdict.
Verdict probe_at(std::vector<sockaddr_storage> addresses);
Verdict probe_once(const OneAnswerServer& server) { return probe_at({server.address()}); }

Verdict probe_at(std::vector<sockaddr_storage> addresses) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Poller poller;
  EXPECT_EQ(poller.init(&loop), 0);
  Verdict v;
  std::unique_ptr<HealthChecker> checker;
  checker = std::make_unique<HealthChecker>(poller, [&](const std::string&, bool ok, const std::string& detail) {
    if (v.seen) return;
    v = {true, ok, detail};
    checker->stop();
  });
  CheckTarget t;
  t.name = "a";
  t.address = addresses.front();
  t.more_addresses.assign(addresses.begin() + 1, addresses.end());
  t.host = "127.0.0.1";
  CheckSettings s;
  s.path = "/health";
  s.interval_ms = 60000;
  s.timeout_ms = 5000;
  std::vector<CheckTarget> targets;
  targets.push_back(t);
  checker->configure(std::move(targets), s);
  checker->start();
  uv_run(&loop, UV_RUN_DEFAULT);
  checker.reset();
  poller.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  return v;
}

TEST(HealthChecker, TwoHundredPasses) {
  OneAnswerServer server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  const Verdict v = probe_once(server);
  ASSERT_TRUE(v.seen);
  EXPECT_TRUE(v.ok) << v.detail;
}

TEST(HealthChecker, FiveHundredFails) {
  OneAnswerServer server("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  const Verdict v = probe_once(server);
  ASSERT_TRUE(v.seen);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.detail, "status 503");
}

// A head longer than the first read buffer (16 KiB) but within the probe's limit (which
// counts names and values, not the line breaks): the probe read a buffer full, the
// parser grew it, and nothing read on; the check failed on its timeout.
TEST(HealthChecker, AHeadLongerThanTheReadBufferIsReadOn) {
  std::string head = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 3000; ++i) head += "X: y\r\n";  // 18,000 bytes, 6,000 of fields
  head += "Content-Length: 0\r\n\r\n";
  OneAnswerServer server(head);
  const Verdict v = probe_once(server);
  ASSERT_TRUE(v.seen);
  EXPECT_TRUE(v.ok) << v.detail;
}

// A named node's addresses (SPEC "Backends by name"): a refused connect goes on to the
// next address in the same round, so the node passes while any of them answers; when
// all refuse, one failure says so.
TEST(HealthChecker, ANodePassesWhenAnyOfItsAddressesAnswers) {
  OneAnswerServer server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  const RefusingAddress dead1, dead2;
  const Verdict v = probe_at({dead1.address, dead2.address, server.address()});
  ASSERT_TRUE(v.seen);
  EXPECT_TRUE(v.ok) << v.detail;
  EXPECT_EQ(v.detail, "status 200");
}

TEST(HealthChecker, EveryAddressRefusingFailsOnce) {
  const RefusingAddress dead1, dead2, dead3;
  const Verdict v = probe_at({dead1.address, dead2.address, dead3.address});
  ASSERT_TRUE(v.seen);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.detail, "connect: ECONNREFUSED (each of 3 addresses)");
}

}  // namespace
}  // namespace ringproxy
