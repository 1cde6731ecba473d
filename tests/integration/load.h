// Load for the tests that reload under it (listeners_test.cc, pools_admin_test.cc):
// Debian's /usr/bin/wrk (scripts/install-deps.sh --bench) with a Lua script of ours that
// counts the answers by status and by X-Backend, so a test can say that no request
// failed while it reloaded and which backends answered.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {

inline constexpr const char* kWrk = "/usr/bin/wrk";
// wrk's --timeout: a request answered later than this counts as a timeout. Whole
// seconds (wrk's time units are s, m and h).
inline constexpr Millis kWrkTimeout{5000};
static_assert(kWrkTimeout.count() % 1000 == 0);

// Watches, from a thread of its own, for jumps of the wall clock: stretches in which
// nothing of the test can have run (the machine paused: a VM snapshot or migration, a
// SIGSTOP of the test's processes) or the wall clock was stepped forward. wrk times
// each request with the wall clock (gettimeofday), so a request in flight across a jump
// of J seconds comes out J seconds slower than it was and, past kWrkTimeout, counts as
// a timeout although the proxy answered it at once. (Seen once, in a full ctest run on
// a VM restored from a snapshot mid-test: the kernel logged "random: crng reseeded due
// to virtual machine fork"; the test took 2.6 s by gtest's steady clock while the
// proxy's log and wrk spanned 9.4 s of wall clock, and wrk reported 7 timeouts, one per
// connection with a request in flight, none of its recorded latencies over 70 ms.)
// The thread wakes every kTick (a clock sample, not a wait for behaviour) and keeps
// every gap of at least kMinJump between two wakeups on the wall clock, with what the
// monotonic clock measured meanwhile (both: the machine paused, or this process was not
// scheduled; the wall clock alone: it was stepped).
class WallClockWatch {
 public:
  static constexpr Millis kTick{20};
  static constexpr Millis kMinJump{1000};
  struct Jump {
    Millis wall{0};    // the wall clock's gap between two wakeups
    Millis steady{0};  // the monotonic clock's
    std::string at;    // when it ended, UTC (as the proxy's log stamps lines)
  };

  WallClockWatch();
  ~WallClockWatch();  // stop()
  WallClockWatch(const WallClockWatch&) = delete;
  WallClockWatch& operator=(const WallClockWatch&) = delete;

  void stop();  // idempotent
  std::vector<Jump> jumps() const;
  // "wall clock jumped 7412 ms (monotonic 7413 ms) at 2026-...Z; ..." ("" for none).
  std::string describe() const;

 private:
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<Jump> jumps_;
  std::thread thread_;
};

// How many of wrk's `timeouts` the wall clock's `jumps` account for: a jump of at least
// kWrkTimeout - 1 s stretched past the timeout at most the one request each of the
// `connections` had in flight across it (a shorter one cannot have pushed there a
// request answered within a second); never more than `timeouts`.
long excused_timeouts(long timeouts, const std::vector<WallClockWatch::Jump>& jumps, int connections);

// wrk started by start_wrk, and the watch of the wall clock over its run.
struct Wrk {
  Process process;
  int connections = 0;
  std::unique_ptr<WallClockWatch> clock;

  bool running() { return process.running(); }
  std::string describe() { return process.describe(); }
};

// Starts wrk on http://127.0.0.1:port/: one thread, `connections` keep-alive
// connections, a kWrkTimeout timeout per request, and 60 s in all, long enough never to
// end by itself during a test: stop_wrk ends it. Request n (counted from 1) is GET
// prefixes[n % prefixes.size()] + (n % 5000): with {"/obj/", "/new/"}, /new/1, /obj/2,
// /new/3 ... Prefixes are plain paths (no quote, no backslash). Its script is
// DIR/NAME.lua, its output DIR/NAME.stdout and .stderr.
Wrk start_wrk(const TempDir& dir, const std::string& name, uint16_t port, int connections,
              const std::vector<std::string>& prefixes = {"/k/"});

// The counts of wrk's summary and of the script's, from its one RESULT line.
struct WrkResult {
  bool parsed = false;  // a RESULT line was found (else a test failure was added)
  long requests = 0, connect = 0, read = 0, write = 0, status = 0, timeout = 0;
  // Of `timeout`, those the wall clock's jumps account for (WallClockWatch): each jump
  // of at least kWrkTimeout - 1 s stretched at most one request per connection (the one
  // it had in flight). The rest (stalled()) are requests that waited in the proxy.
  long excused = 0;
  std::string statuses;  // "200:N,502:M", sorted
  std::string backends;  // "def-a:N,def-b:M", sorted; "(none)" counts answers without X-Backend
  std::string text;      // wrk's whole stdout, for messages
  std::string clock;     // the wall clock's jumps over the run (WallClockWatch::describe)
  // Requests that took longer than kWrkTimeout, but for the excused ones.
  long stalled() const { return timeout - excused; }
  // "connect read write status stalled": wrk's socket errors, non-2xx and the timeouts
  // the proxy is answerable for.
  std::string errors() const;
  // wrk's stdout, and the wall clock's jumps and the timeouts they excuse, if any.
  std::string describe() const;
  // X-Backend name -> answers.
  std::map<std::string, long> by_backend() const;
};

// Stops wrk (SIGINT: it prints its summary and the script's done()) and reads its
// RESULT. A wrk that does not stop, exits non-zero or prints no RESULT is a test failure.
WrkResult stop_wrk(Wrk& wrk);

}  // namespace ringproxy::integration
