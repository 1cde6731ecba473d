// A [[discover]] source whose resolver misbehaves (tests/integration/hostile_dns.py, a
// real UDP/TCP DNS server run with Debian's /usr/bin/python3): huge answers with and
// without the TC bit, answers cut mid-record, wrong query IDs, answers to another
// question, slow answers, garbage, compression-pointer loops, SERVFAIL and REFUSED, no
// answer at all. Whatever it does, the proxy keeps serving from its configured backend
// (every request answered, and in bounded time), its admin answers, GET /discovery names
// the error, counting each answer as what went wrong (a SERVFAIL as "servfail", not as
// c-ares 1.18's "could not contact"), and it exits cleanly on SIGTERM. Huge but valid
// answers are taken.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

const char kSource[] = "_http._tcp.tier.test";

struct Mode {
  std::string name;               // hostile_dns.py's mode
  std::vector<std::string> args;  // more of its arguments
  bool taken = false;             // a valid answer: its nodes join
  size_t nodes = 0;               // how many when taken
  std::string result = "ok";      // what /discovery counts its answers as
};

void PrintTo(const Mode& m, std::ostream* os) { *os << m.name; }

class DiscoveryHostile : public ::testing::TestWithParam<Mode> {
 protected:
  // hostile_dns.py MODE ..., its UDP (and TCP) port from its "ready PORT" line.
  uint16_t start_dns(const Mode& m) {
    std::vector<std::string> args = {std::string(HOSTILE_DNS_PY), m.name};
    args.insert(args.end(), m.args.begin(), m.args.end());
    dns_ = std::make_unique<Process>("/usr/bin/python3", args, dir_.path(), "hostile_dns");
    const auto line = dns_->read_line(Millis(5000));
    if (!line || line->rfind("ready ", 0) != 0) {
      ADD_FAILURE() << "hostile_dns.py did not start: " << dns_->describe();
      return 0;
    }
    return static_cast<uint16_t>(std::stoi(line->substr(6)));
  }

  void start_proxy(uint16_t dns_port) {
    port_ = free_port();
    admin_ = free_port();
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\n"
      << "[admin]\nlisten = \"127.0.0.1:" << admin_ << "\"\n"
      << "[health]\ninterval_ms = 200\ntimeout_ms = 100\nfall = 1\nrise = 1\n"
      << "[dns]\nresolvers = [\"127.0.0.1:" << dns_port << "\"]\ntimeout_ms = 300\nmin_ttl_ms = 200\n"
      << "max_ttl_ms = 1000\nhold_ms = 600000\n"
      << "[[discover]]\nname = \"" << kSource << "\"\ntype = \"srv\"\n"
      << "[[backend]]\nname = \"cfg-a\"\naddress = \"" << backend_->address() << "\"\n";
    const std::string path = dir_.write_file("ringproxy.toml", c.str());
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", path}, dir_.path(),
                                       "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on", Millis(5000))) << proxy_->describe();
  }

  // The source's entry in GET /discovery (null when the admin does not answer).
  json source_status() {
    ReadOptions o;
    o.timeout = Millis(2000);
    Response r = http_get(admin_, "/discovery", {}, o);
    if (r.status != 200) return json();
    const json body = json::parse(r.body);
    for (const json& s : body["sources"]) {
      if (s["name"] == kSource) return s;
    }
    return json();
  }

  // One request through the proxy, answered within 2 s; returns it.
  Response timed_request(int k) {
    ReadOptions o;
    o.timeout = Millis(2000);
    const auto t0 = Clock::now();
    Response r = http_get(port_, "/hostile/" + std::to_string(k), {}, o);
    const auto took = std::chrono::duration_cast<Millis>(Clock::now() - t0);
    EXPECT_TRUE(r.ok()) << "request " << k << ": " << r.describe();
    EXPECT_LT(took.count(), 2000) << "request " << k;
    return r;
  }

  TempDir dir_;
  std::unique_ptr<DemoBackend> backend_;
  std::unique_ptr<Process> dns_;
  std::unique_ptr<Process> proxy_;
  uint16_t port_ = 0, admin_ = 0;
};

TEST_P(DiscoveryHostile, KeepsServingAndSaysWhatWentWrong) {
  const Mode& m = GetParam();
  backend_ = std::make_unique<DemoBackend>(dir_, "cfg-a");
  const uint16_t dns_port = start_dns(m);
  ASSERT_NE(dns_port, 0);
  ASSERT_NO_FATAL_FAILURE(start_proxy(dns_port));

  // Poll /discovery until the source has had a few answers (good or bad), with requests
  // through the proxy in between: every one answered, in bounded time.
  const auto deadline = Clock::now() + Millis(6000);
  json st;
  int k = 0;
  bool settled = false;
  while (Clock::now() < deadline) {
    Response r = timed_request(k++);
    if (!m.taken) {
      EXPECT_EQ(r.status, 200) << r.describe();
      EXPECT_EQ(r.header("X-Backend"), "cfg-a");
    }
    ReadOptions o;
    o.timeout = Millis(2000);
    EXPECT_EQ(http_get(admin_, "/healthz", {}, o).status, 200);
    st = source_status();
    ASSERT_FALSE(st.is_null()) << "GET /discovery did not answer; " << proxy_->describe();
    size_t answers = 0;
    for (const auto& [result, n] : st["results"].items()) answers += n.get<size_t>();
    if (m.taken) {
      settled = st["nodes"].size() == m.nodes && st["last_error"].is_null();
    } else {
      settled = answers >= 3 && !st["last_error"].is_null();
    }
    if (settled && k >= 20) break;
  }
  ASSERT_TRUE(settled) << "mode " << m.name << ": /discovery says " << st.dump() << "\n"
                       << proxy_->describe() << "\ndns stderr (tail): "
                       << dns_->stderr_text().substr(dns_->stderr_text().size() > 600 ? dns_->stderr_text().size() - 600 : 0);
  std::cout << "[ mode " << m.name << " ] /discovery: " << st.dump().substr(0, 400) << "\n";
  // Every answer counted as the mode's result, and the last error says it.
  ASSERT_TRUE(st["results"].is_object()) << st.dump();
  EXPECT_EQ(st["results"].size(), 1u) << st.dump();
  EXPECT_TRUE(st["results"].contains(m.result)) << st.dump();
  if (!m.taken) {
    EXPECT_EQ(st["last_error"].get<std::string>().rfind(m.result + ": ", 0), 0u) << st.dump();
    EXPECT_TRUE(st["nodes"].empty()) << st.dump();
  } else {
    // The configured backend keeps serving its share; a key that lands on it is 200.
    Response nodes = http_get(admin_, "/nodes");
    ASSERT_EQ(nodes.status, 200);
    EXPECT_EQ(json::parse(nodes.body)["nodes"].size(), m.nodes + 1);
  }

  // Still running, and exits cleanly.
  ASSERT_TRUE(proxy_->running()) << proxy_->describe();
  ASSERT_TRUE(proxy_->send_signal(SIGTERM));
  const auto status = proxy_->wait(Millis(10000));
  ASSERT_TRUE(status.has_value()) << "no exit within 10 s of SIGTERM: " << proxy_->describe();
  EXPECT_EQ(status->describe(), "exit 0") << proxy_->stderr_text();
  const std::string err = proxy_->stderr_text();
  EXPECT_EQ(err.find("AddressSanitizer"), std::string::npos) << err;
  EXPECT_EQ(err.find("runtime error"), std::string::npos) << err;
}

INSTANTIATE_TEST_SUITE_P(
    Modes, DiscoveryHostile,
    ::testing::Values(
        // Control: a valid answer.
        Mode{"valid", {"--srv", "3"}, true, 3},
        // A huge valid answer (300 records, ~8 KB) sent whole over UDP without the TC
        // bit: past the 512 bytes the resolver asked for (c-ares 1.18 sends no EDNS), so
        // c-ares drops it and counts the server as failed ("Could not contact DNS
        // servers"): not taken, and survived.
        Mode{"huge", {"--srv", "300"}, false, 0, "error"},
        // Over 512 bytes with TC: retried over TCP, which answers whole ...
        Mode{"huge-tc", {"--srv", "300", "--tcp"}, true, 300},
        // ... or finds no TCP server.
        Mode{"huge-tc", {"--srv", "300"}, false, 0, "error"},
        Mode{"cut", {"--srv", "5"}, false, 0, "malformed"},
        // c-ares drops an answer with another ID or question and waits on: a timeout.
        Mode{"wrong-id", {}, false, 0, "timeout"}, Mode{"wrong-q", {}, false, 0, "timeout"},
        Mode{"slow", {"--delay-ms", "2000"}, false, 0, "timeout"}, Mode{"garbage", {}, false, 0, "timeout"},
        Mode{"loop", {}, false, 0, "malformed"},
        // What the server said, not c-ares 1.18's "Could not contact DNS servers".
        Mode{"servfail", {}, false, 0, "servfail"}, Mode{"refused", {}, false, 0, "refused"},
        Mode{"silent", {}, false, 0, "timeout"}),
    [](const ::testing::TestParamInfo<Mode>& p) {
      std::string n = p.param.name;
      for (char& ch : n) {
        if (ch == '-') ch = '_';
      }
      for (const std::string& a : p.param.args) {
        if (a == "--tcp") n += "_tcp";
      }
      return n + "_" + std::to_string(p.index);
    });

}  // namespace
}  // namespace ringproxy::integration
