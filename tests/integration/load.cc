#include "tests/integration/load.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <ctime>
#include <iostream>
#include <regex>
#include <sstream>

namespace ringproxy::integration {
namespace {

// start_wrk writes the `prefixes` table in front of it. wrk runs setup() once per thread
// in its main Lua state, request() and response() in each thread's own state, done() in
// the main one again: done() adds up the threads' counts, fetched with thread:get.
constexpr const char* kCountScript = R"lua(local n = 0
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) statuses = {}; backends = {} end
request = function()
  n = n + 1
  return wrk.format("GET", prefixes[n % #prefixes + 1] .. (n % 5000))
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local b = headers["X-Backend"] or headers["x-backend"] or "(none)"
  backends[b] = (backends[b] or 0) + 1
end
done = function(summary, latency, requests)
  local st, be = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do st[k] = (st[k] or 0) + v end
    for k, v in pairs(t:get("backends")) do be[k] = (be[k] or 0) + v end
  end
  local s, b = {}, {}
  for k, v in pairs(st) do table.insert(s, k .. ":" .. v) end
  for k, v in pairs(be) do table.insert(b, k .. ":" .. v) end
  table.sort(s); table.sort(b)
  io.write(string.format("RESULT requests=%d connect=%d read=%d write=%d status=%d timeout=%d statuses=%s backends=%s\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, table.concat(s, ","), table.concat(b, ",")))
end
)lua";

// "2026-12-07T19:25:35.840Z", as the proxy stamps its log lines.
std::string utc(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<Millis>(t.time_since_epoch()).count();
  const std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms % 1000));
  return std::string(buf, n) + frac;
}

}  // namespace

WallClockWatch::WallClockWatch() : thread_([this] { run(); }) {}

WallClockWatch::~WallClockWatch() { stop(); }

void WallClockWatch::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WallClockWatch::run() {
  using std::chrono::steady_clock;
  using std::chrono::system_clock;
  auto wall = system_clock::now();
  auto steady = steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, kTick, [&] { return stop_; });
    const auto w = system_clock::now();
    const auto s = steady_clock::now();
    const auto gap = std::chrono::duration_cast<Millis>(w - wall);
    if (gap >= kMinJump) jumps_.push_back({gap, std::chrono::duration_cast<Millis>(s - steady), utc(w)});
    wall = w;
    steady = s;
  }
}

std::vector<WallClockWatch::Jump> WallClockWatch::jumps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return jumps_;
}

std::string WallClockWatch::describe() const {
  std::string out;
  for (const Jump& j : jumps()) {
    if (!out.empty()) out += "; ";
    out += "wall clock jumped " + std::to_string(j.wall.count()) + " ms (monotonic " +
           std::to_string(j.steady.count()) + " ms) at " + j.at;
  }
  return out;
}

long excused_timeouts(long timeouts, const std::vector<WallClockWatch::Jump>& jumps, int connections) {
  const long long_jumps = std::count_if(jumps.begin(), jumps.end(), [](const WallClockWatch::Jump& j) {
    return j.wall >= kWrkTimeout - Millis(1000);
  });
  return std::clamp(long_jumps * connections, 0L, std::max(timeouts, 0L));
}

Wrk start_wrk(const TempDir& dir, const std::string& name, uint16_t port, int connections,
              const std::vector<std::string>& prefixes) {
  std::string table = "prefixes = {";
  for (const std::string& p : prefixes) {
    EXPECT_EQ(p.find_first_of("\"\\"), std::string::npos) << "not a plain path: " << p;
    table += "\"" + p + "\", ";
  }
  table += "}\n";
  // One file per wrk: a second wrk writing the same file could truncate it while the
  // first one still reads it.
  const std::string script = dir.write_file(name + ".lua", table + kCountScript);
  // Watching before wrk's first request.
  auto clock = std::make_unique<WallClockWatch>();
  Process process(kWrk,
                  {"-t1", "-c" + std::to_string(connections), "-d60s", "--timeout",
                   std::to_string(kWrkTimeout.count() / 1000) + "s", "-s", script,
                   "http://127.0.0.1:" + std::to_string(port) + "/"},
                  dir.path(), name);
  return Wrk{std::move(process), connections, std::move(clock)};
}

std::string WrkResult::errors() const {
  return std::to_string(connect) + " " + std::to_string(read) + " " + std::to_string(write) + " " +
         std::to_string(status) + " " + std::to_string(stalled());
}

std::string WrkResult::describe() const {
  std::string out = text;
  if (!clock.empty()) {
    out += "\n" + clock + "; wrk timeouts " + std::to_string(timeout) + ", of which " + std::to_string(excused) +
           " are the jumps' (at most one per connection for each jump of at least " +
           std::to_string((kWrkTimeout - Millis(1000)).count()) + " ms)";
  }
  return out;
}

std::map<std::string, long> WrkResult::by_backend() const {
  std::map<std::string, long> out;
  std::istringstream in(backends);
  for (std::string item; std::getline(in, item, ',');) {
    const size_t colon = item.rfind(':');
    if (colon != std::string::npos) out[item.substr(0, colon)] = std::stol(item.substr(colon + 1));
  }
  return out;
}

WrkResult stop_wrk(Wrk& wrk) {
  WrkResult out;
  EXPECT_TRUE(wrk.process.send_signal(SIGINT)) << wrk.process.describe();
  const auto status = wrk.process.wait(Millis(15000));
  EXPECT_TRUE(status.has_value()) << "wrk did not stop on SIGINT";
  if (status) {
    EXPECT_EQ(status->code, 0) << wrk.process.describe();
  }
  std::vector<WallClockWatch::Jump> jumps;
  if (wrk.clock) {
    wrk.clock->stop();
    jumps = wrk.clock->jumps();
    out.clock = wrk.clock->describe();
  }
  out.text = wrk.process.stdout_text();
  std::smatch m;
  if (!std::regex_search(out.text, m,
                         std::regex(R"(RESULT requests=(\d+) connect=(\d+) read=(\d+) write=(\d+) )"
                                    R"(status=(\d+) timeout=(\d+) statuses=(\S*) backends=(\S*))"))) {
    ADD_FAILURE() << "no RESULT line from wrk:\n" << out.text << "\n" << wrk.process.stderr_text();
    return out;
  }
  out.parsed = true;
  out.requests = std::stol(m[1]);
  out.connect = std::stol(m[2]);
  out.read = std::stol(m[3]);
  out.write = std::stol(m[4]);
  out.status = std::stol(m[5]);
  out.timeout = std::stol(m[6]);
  out.statuses = m[7];
  out.backends = m[8];
  out.excused = excused_timeouts(out.timeout, jumps, wrk.connections);
  if (out.excused > 0) {
    std::cerr << "[harness] " << out.excused << " of wrk's " << out.timeout
              << " timeouts are requests in flight across a jump of the wall clock, by which wrk times them "
                 "(the machine paused or the clock was stepped; not the proxy): "
              << out.clock << "\n";
  }
  return out;
}

}  // namespace ringproxy::integration
