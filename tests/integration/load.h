// Load for the tests that reload under it (listeners_test.cc, pools_admin_test.cc):
// Debian's /usr/bin/wrk (scripts/install-deps.sh --bench) with a Lua script of ours that
// counts the answers by status and by X-Backend, so a test can say that no request
// failed while it reloaded and which backends answered.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {

inline constexpr const char* kWrk = "/usr/bin/wrk";

// Starts wrk on http://127.0.0.1:port/: one thread, `connections` keep-alive
// connections, a 5 s timeout per request, and 60 s in all, long enough never to end by
// itself during a test: stop_wrk ends it. Request n (counted from 1) is GET
// prefixes[n % prefixes.size()] + (n % 5000): with {"/obj/", "/new/"}, /new/1, /obj/2,
// /new/3 ... Prefixes are plain paths (no quote, no backslash). Its script is
// DIR/NAME.lua, its output DIR/NAME.stdout and .stderr.
Process start_wrk(const TempDir& dir, const std::string& name, uint16_t port, int connections,
                  const std::vector<std::string>& prefixes = {"/k/"});

// The counts of wrk's summary and of the script's, from its one RESULT line.
struct WrkResult {
  bool parsed = false;  // a RESULT line was found (else a test failure was added)
  long requests = 0, connect = 0, read = 0, write = 0, status = 0, timeout = 0;
  std::string statuses;  // "200:N,502:M", sorted
  std::string backends;  // "def-a:N,def-b:M", sorted; "(none)" counts answers without X-Backend
  std::string text;      // wrk's whole stdout, for messages
  // "connect read write status timeout": wrk's socket errors, non-2xx and timeouts.
  std::string errors() const;
  // X-Backend name -> answers.
  std::map<std::string, long> by_backend() const;
};

// Stops wrk (SIGINT: it prints its summary and the script's done()) and reads its
// RESULT. A wrk that does not stop, exits non-zero or prints no RESULT is a test failure.
WrkResult stop_wrk(Process& wrk);

}  // namespace ringproxy::integration
