// HealthChecker against a real socket on loopback: what a probe makes of an answer.
#include "health/checker.h"

#include <gtest/gtest.h>

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

// One probe of `server`; the loop runs until its verdict.
Verdict probe_once(const OneAnswerServer& server) {
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
  t.address = server.address();
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

}  // namespace
}  // namespace ringproxy
