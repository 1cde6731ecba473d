// Out of file descriptors, end to end: a real ringproxy under a low RLIMIT_NOFILE (set by
// util-linux prlimit, which sets the limit and execs ringproxy, or lowered on the running
// process with prlimit(2)) in front of real demo backends.
//
// What is checked: a shortage here is never a node's failure (GET /nodes failures do not
// grow, no node is ejected, no retry), the answers are 200 or 503 (never 502, never a
// connection closed unanswered), the log has a few lines about it rather than one per
// request, accepting pauses without spinning and resumes, and the proxy serves normally
// once descriptors are free. Every wait is on a socket, a file or the process, bounded.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kPrlimit = "/usr/bin/prlimit";

// ---- the proxy's process, seen from outside ----

// Descriptor numbers open in `pid` now.
std::set<int> open_fds(pid_t pid) {
  std::set<int> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    out.insert(std::stoi(e.path().filename().string()));
  }
  return out;
}

// The lowest descriptor number free in `pid`: with the soft limit set to it, every
// socket() there fails with EMFILE until one below it is closed.
int lowest_free_fd(pid_t pid) {
  const std::set<int> fds = open_fds(pid);
  int n = 0;
  while (fds.count(n)) ++n;
  return n;
}

bool set_soft_nofile(pid_t pid, rlim_t soft, rlimit* old = nullptr) {
  rlimit cur{};
  if (::prlimit(pid, RLIMIT_NOFILE, nullptr, &cur) != 0) return false;
  if (old) *old = cur;
  rlimit next = cur;
  next.rlim_cur = soft;
  return ::prlimit(pid, RLIMIT_NOFILE, &next, nullptr) == 0;
}

// User plus system CPU time of `pid`, in ms (/proc/PID/stat fields 14 and 15).
long cpu_ms(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close_paren + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return (utime + stime) * 1000 / sysconf(_SC_CLK_TCK);
}

// Lines of `text` containing `needle`.
int count_lines(const std::string& text, std::string_view needle) {
  int n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos ? 1 : 0;
  return n;
}

// Occurrences the lines containing `needle` account for: a line stands for one, or for
// the N of its "(N times in the last S s)" (RateLimitedLog).
uint64_t occurrences_logged(const std::string& text, std::string_view needle) {
  uint64_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) == std::string::npos) continue;
    const size_t open = line.rfind(" (");
    const bool counted = open != std::string::npos && line.find(" in the last ", open) != std::string::npos;
    n += counted ? std::stoull(line.substr(open + 2)) : 1;
  }
  return n;
}

// ---- many clients at once, on one thread ----

struct LoadResult {
  std::map<int, int> by_status;  // status -> answers
  int unanswered = 0;            // closed or reset before a status line
  int connect_failed = 0;
  int unfinished = 0;            // still waiting at the deadline
  std::vector<std::string> unanswered_samples;
  int count(int status) const {
    auto it = by_status.find(status);
    return it == by_status.end() ? 0 : it->second;
  }
  std::string describe() const {
    std::string s;
    for (auto [status, n] : by_status) s += std::to_string(status) + ": " + std::to_string(n) + ", ";
    s += "unanswered: " + std::to_string(unanswered) + ", connect failed: " + std::to_string(connect_failed) +
         ", unfinished: " + std::to_string(unfinished);
    for (const auto& u : unanswered_samples) s += "\n  unanswered: " + u;
    return s;
  }
};

// `total` requests, `concurrency` of them in flight at any time, each on its own
// connection ("Connection: close", read to the end): the way 300 clients at once look to
// a proxy. Non-blocking sockets and one poll() loop; ends by `budget` at the latest.
LoadResult run_load(uint16_t port, int concurrency, int total, Millis budget) {
  struct Slot {
    int fd = -1;
    bool connected = false;
    std::string in;
    int key = 0;
  };
  LoadResult result;
  std::vector<Slot> slots(static_cast<size_t>(concurrency));
  int started = 0, finished = 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const auto start_one = [&](Slot& s) {
    s = Slot{};
    s.key = started++;
    s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0 || (::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS)) {
      ++result.connect_failed;
      ++finished;
      if (s.fd >= 0) ::close(s.fd);
      s.fd = -1;
    }
  };
  // `how`: "eof", or the error that ended the connection.
  const auto end_one = [&](Slot& s, const std::string& how) {
    if (s.in.rfind("HTTP/1.1 ", 0) == 0 && s.in.size() >= 12) {
      ++result.by_status[std::stoi(s.in.substr(9, 3))];
    } else {
      ++result.unanswered;
      if (result.unanswered_samples.size() < 5) {
        result.unanswered_samples.push_back("key " + std::to_string(s.key) + ": " + std::to_string(s.in.size()) +
                                            " bytes, then " + how);
      }
    }
    ::close(s.fd);
    s.fd = -1;
    ++finished;
  };
  for (auto& s : slots) {
    if (started < total) start_one(s);
  }
  const auto deadline = Clock::now() + budget;
  while (finished < total && Clock::now() < deadline) {
    std::vector<pollfd> fds;
    std::vector<Slot*> owners;
    for (auto& s : slots) {
      if (s.fd < 0) continue;
      fds.push_back({s.fd, static_cast<short>(s.connected ? POLLIN : POLLOUT), 0});
      owners.push_back(&s);
    }
    if (fds.empty()) {
      for (auto& s : slots) {
        if (s.fd < 0 && started < total) start_one(s);
      }
      continue;
    }
    if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) break;
    for (size_t i = 0; i < fds.size(); ++i) {
      Slot& s = *owners[i];
      if (fds[i].revents == 0) continue;
      if (!s.connected) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          ++result.connect_failed;
          ::close(s.fd);
          s.fd = -1;
          ++finished;
        } else {
          s.connected = true;
          const std::string req = "GET /load/" + std::to_string(s.key) +
                                  " HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n";
          if (::send(s.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
            end_one(s, std::string("send: ") + std::strerror(errno));
          }
        }
      } else {
        char buf[4096];
        const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
        if (n > 0) {
          s.in.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        end_one(s, n == 0 ? "eof" : std::strerror(errno));  // complete (Connection: close) or unanswered
      }
      if (s.fd < 0 && started < total) start_one(s);
    }
  }
  for (auto& s : slots) {
    if (s.fd >= 0) {
      ++result.unfinished;
      ::close(s.fd);
    }
  }
  return result;
}

// ---- the fixture ----

class LocalResourcesFixture : public ::testing::Test {
 protected:
  // Backends n0..n(N-1), then ringproxy with `proxy_extra` under [proxy], run through
  // `prlimit --nofile=LIMIT` when `nofile` is not empty.
  void start(int nodes, const std::string& nofile, const std::string& proxy_extra = "") {
    for (int i = 0; i < nodes; ++i) backends_.push_back(std::make_unique<DemoBackend>(dir_, "n" + std::to_string(i)));
    port_ = free_port();
    admin_port_ = free_port();
    ASSERT_NE(port_, 0);
    ASSERT_NE(admin_port_, 0);
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 2\nretries = 1\nlog_level = \"info\"\n"
      << proxy_extra << "\n[admin]\nlisten = \"127.0.0.1:" << admin_port_ << "\"\n"
      << "[health]\ninterval_ms = 1000\nfall = 3\neject_after_failures = 5\n";
    for (const auto& b : backends_) {
      c << "\n[[backend]]\nname = \"" << b->name() << "\"\naddress = \"" << b->address() << "\"\n";
    }
    const std::string config = dir_.write_file("ringproxy.toml", c.str());
    if (nofile.empty()) {
      proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", config},
                                         dir_.path(), "ringproxy");
    } else {
      ASSERT_EQ(::access(kPrlimit, X_OK), 0) << kPrlimit << " (util-linux) is needed";
      proxy_ = std::make_unique<Process>(
          kPrlimit, std::vector<std::string>{"--nofile=" + nofile, "--", RINGPROXY_BIN, "-c", config}, dir_.path(),
          "ringproxy");
    }
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  json nodes() {
    const Response r = http_get(admin_port_, "/nodes");
    EXPECT_EQ(r.status, 200) << r.describe();
    return r.status == 200 ? json::parse(r.body)["nodes"] : json::array();
  }
  std::map<std::string, uint64_t> failures() {
    std::map<std::string, uint64_t> out;
    for (const json& n : nodes()) out[n["name"]] = n["failures"];
    return out;
  }
  void expect_all_up() {
    for (const json& n : nodes()) EXPECT_EQ(n["state"], "up") << n.dump();
  }
  // A metric's value (the first sample whose line starts with `series`), -1 if absent.
  double metric(const std::string& series) {
    const Response r = http_get(admin_port_, "/metrics");
    std::istringstream in(r.body);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
  }

  TempDir dir_;
  std::vector<std::unique_ptr<DemoBackend>> backends_;
  uint16_t port_ = 0, admin_port_ = 0;
  std::unique_ptr<Process> proxy_;
};

// The measured case: under ulimit -n 100, 300 clients at once. Before, every upstream
// connect failed with EMFILE: 502s, a failure counted against healthy nodes, a retry
// onto the next node that failed alike, and two log lines per request.
TEST_F(LocalResourcesFixture, ThreeHundredClientsUnderNofile100) {
  start(3, "100:100");
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  const auto failures_before = failures();
  const double retries_before = metric("ringproxy_retries_total");
  const size_t log_from = proxy_->output_size(Output::err);

  const auto t0 = Clock::now();
  const LoadResult load = run_load(port_, 300, 3000, Millis(60000));
  const auto took = std::chrono::duration_cast<Millis>(Clock::now() - t0).count();

  ASSERT_TRUE(proxy_->running()) << proxy_->describe();
  const std::string log = proxy_->stderr_text().substr(log_from);
  std::cout << "[measured] 3000 requests, 300 at a time, in " << took << " ms: " << load.describe() << "\n"
            << "[measured] ringproxy_local_resource_errors_total{op=\"connect\"} "
            << metric("ringproxy_local_resource_errors_total{op=\"connect\"}") << ", {op=\"accept\"} "
            << metric("ringproxy_local_resource_errors_total{op=\"accept\"}") << ", ringproxy_accept_pauses_total "
            << metric("ringproxy_accept_pauses_total") << "\n"
            << "[measured] log lines during the load: " << count_lines(log, "") << ", of which "
            << count_lines(log, "out of local resources") << " 'out of local resources' and "
            << count_lines(log, "accepting paused") << " 'accepting paused'\n";

  EXPECT_EQ(load.count(200) + load.count(503), 3000) << load.describe();
  EXPECT_EQ(load.count(502), 0);
  EXPECT_EQ(load.unanswered, 0) << load.describe();
  EXPECT_EQ(load.unfinished, 0);
  EXPECT_EQ(load.connect_failed, 0);
  EXPECT_GT(load.count(200), 0);
  EXPECT_EQ(failures(), failures_before);
  expect_all_up();
  EXPECT_EQ(metric("ringproxy_retries_total"), retries_before);
  // A few lines per worker and interval (10 s), never one per request.
  EXPECT_LE(count_lines(log, ""), 24) << log;
  EXPECT_EQ(count_lines(log, "answered 502:"), 0);
  EXPECT_EQ(count_lines(log, "answered 503:"), 0);
  EXPECT_EQ(count_lines(log, "retrying"), 0);
  // The clients are gone: a normal request is served.
  const Response after = http_get(port_, "/after");
  EXPECT_EQ(after.status, 200) << after.describe();
}

// The proxy runs out of descriptors under it (its limit lowered at run time to the
// lowest free descriptor number, so every socket() fails with EMFILE) while clients it
// has accepted send their requests: each is a 503 of ours, no node's failure, no retry,
// a few log lines. New clients then wait in the listen queue while the proxy uses no
// CPU to speak of, and are served once the limit is back.
TEST_F(LocalResourcesFixture, UpstreamConnectOutOfDescriptorsIs503AndAcceptingPauses) {
  start(3, "");
  ASSERT_EQ(http_get(port_, "/warm").status, 200);
  const auto failures_before = failures();
  const double retries_before = metric("ringproxy_retries_total");

  // 60 clients in, accepted (the proxy counts them), no request yet.
  constexpr int kHeld = 60;
  std::vector<std::unique_ptr<Conn>> held;
  for (int i = 0; i < kHeld; ++i) {
    held.push_back(std::make_unique<Conn>("127.0.0.1", port_));
    ASSERT_TRUE(held.back()->connected()) << held.back()->error();
  }
  // Polled every 10 ms: nothing else says that the proxy has accepted them.
  for (const auto deadline = Clock::now() + Millis(10000);
       metric("ringproxy_connections_active") != kHeld && Clock::now() < deadline;) {
    ::poll(nullptr, 0, 10);
  }
  ASSERT_EQ(metric("ringproxy_connections_active"), kHeld);

  const size_t log_from = proxy_->output_size(Output::err);
  rlimit saved{};
  ASSERT_TRUE(set_soft_nofile(proxy_->pid(), lowest_free_fd(proxy_->pid()), &saved));
  for (int i = 0; i < kHeld; ++i) ASSERT_TRUE(held[i]->send_request("GET", "/held/" + std::to_string(i)));
  std::map<int, int> by_status;
  for (int i = 0; i < kHeld; ++i) {
    const Response r = held[i]->read_response(ReadOptions{.timeout = Millis(10000), .head = false});
    ++by_status[r.status];
    if (r.status == 503) {
      EXPECT_EQ(r.body, "proxy out of local resources (file descriptors or memory)\n");
      EXPECT_EQ(r.header("Content-Type"), "text/plain");
      EXPECT_FALSE(r.keep_alive);  // closed: a descriptor back
    } else {
      EXPECT_EQ(r.status, 200) << i << ": " << r.describe();
    }
  }
  std::string summary;
  for (auto [s, n] : by_status) summary += std::to_string(s) + ": " + std::to_string(n) + " ";
  std::cout << "[measured] " << kHeld << " held clients' requests while out of descriptors: " << summary << "\n";
  EXPECT_GT(by_status[503], 0);
  EXPECT_EQ(by_status[200] + by_status[503], kHeld);

  // Out again, to the last descriptor; new clients now wait: nothing answers them and
  // nothing closes them, and the proxy is not spinning meanwhile.
  ASSERT_TRUE(set_soft_nofile(proxy_->pid(), lowest_free_fd(proxy_->pid())));
  constexpr int kWaiting = 20;
  std::vector<std::unique_ptr<Conn>> waiting;
  for (int i = 0; i < kWaiting; ++i) {
    waiting.push_back(std::make_unique<Conn>("127.0.0.1", port_));  // the kernel completes the handshake
    ASSERT_TRUE(waiting.back()->connected()) << waiting.back()->error();
    ASSERT_TRUE(waiting.back()->send_request("GET", "/waiting/" + std::to_string(i)));
  }
  const long cpu_before = cpu_ms(proxy_->pid());
  std::vector<pollfd> fds;
  for (auto& c : waiting) fds.push_back({c->fd(), POLLIN, 0});
  const auto wait_start = Clock::now();
  int woke = 0;
  for (auto remaining = Millis(1000); remaining.count() > 0;
       remaining = Millis(1000) - std::chrono::duration_cast<Millis>(Clock::now() - wait_start)) {
    woke = ::poll(fds.data(), fds.size(), static_cast<int>(remaining.count()));
    if (woke != 0) break;
  }
  const long cpu_used = cpu_ms(proxy_->pid()) - cpu_before;
  std::cout << "[measured] while " << kWaiting << " clients waited 1 s for a descriptor: proxy CPU " << cpu_used
            << " ms\n";
  EXPECT_EQ(woke, 0) << "a waiting client was answered or closed while the proxy had no descriptor";
  EXPECT_LT(cpu_used, 100) << "ms of CPU in 1 s while out of descriptors";

  // Descriptors back: accepting resumes (within kAcceptRetryMs) and the waiting clients
  // are served.
  ASSERT_TRUE(set_soft_nofile(proxy_->pid(), saved.rlim_cur));
  for (int i = 0; i < kWaiting; ++i) {
    const Response r = waiting[i]->read_response(ReadOptions{.timeout = Millis(10000), .head = false});
    EXPECT_EQ(r.status, 200) << i << ": " << r.describe();
  }

  ASSERT_TRUE(proxy_->running()) << proxy_->describe();
  const std::string log = proxy_->stderr_text().substr(log_from);
  std::cout << "[measured] ringproxy_local_resource_errors_total{op=\"connect\"} "
            << metric("ringproxy_local_resource_errors_total{op=\"connect\"}") << ", accept pauses "
            << metric("ringproxy_accept_pauses_total") << ", log lines " << count_lines(log, "") << ":\n"
            << log;
  EXPECT_GE(metric("ringproxy_local_resource_errors_total{op=\"connect\"}"), by_status[503]);
  EXPECT_EQ(failures(), failures_before);
  expect_all_up();
  EXPECT_EQ(metric("ringproxy_retries_total"), retries_before);
  EXPECT_LE(count_lines(log, "out of local resources"), 4) << log;  // 2 workers, first line and a flush each
  EXPECT_EQ(count_lines(log, "answered 502:"), 0);
  EXPECT_EQ(count_lines(log, "answered 503:"), 0) << "one line per request";
  EXPECT_EQ(http_get(port_, "/after").status, 200);

  // The lines account for every occurrence: the rest of the burst is written with its
  // count once its worker's 10 s are over (the flush timer), though nothing follows it.
  const auto connect_errors = static_cast<uint64_t>(metric("ringproxy_local_resource_errors_total{op=\"connect\"}"));
  const char* kNeedle = "out of local resources: cannot connect to node=";
  const auto deadline = Clock::now() + Millis(15000);
  size_t seen = log_from;
  while (occurrences_logged(proxy_->stderr_text().substr(log_from), kNeedle) < connect_errors &&
         Clock::now() < deadline) {
    const size_t now_size = proxy_->output_size(Output::err);
    (void)proxy_->wait_for_output(Output::err, "in the last",
                                  std::chrono::duration_cast<Millis>(deadline - Clock::now()), seen);
    seen = now_size;
  }
  const std::string all = proxy_->stderr_text().substr(log_from);
  EXPECT_EQ(occurrences_logged(all, kNeedle), connect_errors) << all;
  EXPECT_LE(count_lines(all, kNeedle), 4) << all;
  std::cout << "[measured] " << connect_errors << " connect errors in " << count_lines(all, kNeedle) << " lines:\n";
  std::istringstream lines(all);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(kNeedle) != std::string::npos) std::cout << "  " << line << "\n";
  }
}

// At start the soft limit is raised to the hard one; when even that cannot serve a
// proxy.max_connections the operator chose, a warning says the numbers. The proxy
// serves all the same.
TEST_F(LocalResourcesFixture, StartupWarningWhenAChosenMaxConnectionsExceedsTheLimit) {
  start(2, "64:64", "max_connections = 500");
  const std::string err = proxy_->stderr_text();
  EXPECT_NE(err.find("Z warn proxy.max_connections = 500 needs about "), std::string::npos) << err;
  EXPECT_NE(err.find("but RLIMIT_NOFILE is 64 (hard limit 64): about "), std::string::npos) << err;
  EXPECT_NE(err.find("raise the limit (ulimit -n, systemd LimitNOFILE=) or lower proxy.max_connections"),
            std::string::npos);
  EXPECT_EQ(count_lines(err, "needs about"), 1);
  EXPECT_EQ(http_get(port_, "/served").status, 200);
}

// The default (10000) that does not fit, but leaves room to serve: the same numbers as
// an info line, not a warning on every start.
TEST_F(LocalResourcesFixture, StartupInfoWhenTheDefaultMaxConnectionsExceedsTheLimit) {
  start(2, "64:64");
  const std::string err = proxy_->stderr_text();
  EXPECT_NE(err.find("Z info the default proxy.max_connections = 10000 needs about "), std::string::npos) << err;
  EXPECT_EQ(count_lines(err, "needs about"), 1);
  EXPECT_EQ(http_get(port_, "/served").status, 200);
}

TEST_F(LocalResourcesFixture, NoWarningWhenMaxConnectionsFits) {
  start(2, "64:64", "max_connections = 8");  // 16 + what is open + 16 <= 64
  const std::string err = proxy_->stderr_text();
  EXPECT_EQ(err.find("needs about"), std::string::npos) << err;
  EXPECT_EQ(http_get(port_, "/served").status, 200);
}

TEST_F(LocalResourcesFixture, SoftLimitIsRaisedToTheHardLimit) {
  start(1, "100:4096", "max_connections = 100");
  rlimit now{};
  ASSERT_EQ(::prlimit(proxy_->pid(), RLIMIT_NOFILE, nullptr, &now), 0);
  EXPECT_EQ(now.rlim_cur, 4096u);
  EXPECT_EQ(now.rlim_max, 4096u);
  const std::string err = proxy_->stderr_text();
  EXPECT_NE(err.find("RLIMIT_NOFILE raised from 100 to 4096 (the hard limit)"), std::string::npos) << err;
  EXPECT_EQ(err.find("needs about"), std::string::npos) << err;
}

}  // namespace
}  // namespace ringproxy::integration
