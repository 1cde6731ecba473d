#include "tests/integration/load.h"

#include <gtest/gtest.h>
#include <signal.h>

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

}  // namespace

Process start_wrk(const TempDir& dir, const std::string& name, uint16_t port, int connections,
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
  return Process(kWrk,
                 {"-t1", "-c" + std::to_string(connections), "-d60s", "--timeout", "5s", "-s", script,
                  "http://127.0.0.1:" + std::to_string(port) + "/"},
                 dir.path(), name);
}

std::string WrkResult::errors() const {
  return std::to_string(connect) + " " + std::to_string(read) + " " + std::to_string(write) + " " +
         std::to_string(status) + " " + std::to_string(timeout);
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

WrkResult stop_wrk(Process& wrk) {
  WrkResult out;
  EXPECT_TRUE(wrk.send_signal(SIGINT)) << wrk.describe();
  const auto status = wrk.wait(Millis(15000));
  EXPECT_TRUE(status.has_value()) << "wrk did not stop on SIGINT";
  if (status) {
    EXPECT_EQ(status->code, 0) << wrk.describe();
  }
  out.text = wrk.stdout_text();
  std::smatch m;
  if (!std::regex_search(out.text, m,
                         std::regex(R"(RESULT requests=(\d+) connect=(\d+) read=(\d+) write=(\d+) )"
                                    R"(status=(\d+) timeout=(\d+) statuses=(\S*) backends=(\S*))"))) {
    ADD_FAILURE() << "no RESULT line from wrk:\n" << out.text << "\n" << wrk.stderr_text();
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
  return out;
}

}  // namespace ringproxy::integration
