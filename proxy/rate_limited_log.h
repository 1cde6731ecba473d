// A log line for a condition that can happen thousands of times a second (out of
// descriptors under load: 30,000 refused connects in 4 s were once 60,000 lines). The
// first occurrence is written at once; later ones within `interval_ms` of the last line
// are only counted; the next line (at the first occurrence after the interval, or at a
// flush() after it) describes the latest occurrence and says how many there were since
// the previous line. So a burst costs a line per interval, and its end is reported even
// when nothing follows it (the owner calls flush() from a timer).
//
// The clock is the caller's: every call takes `now_ms` (uv_now() in the proxy, plain
// numbers in tests), and the sink that writes a line is injected. Thread: one owner (a
// worker's loop).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "config/config.h"

namespace ringproxy {

class RateLimitedLog {
 public:
  using Sink = std::function<void(LogLevel, std::string_view line)>;
  // The default sink is the error log (Log::write, when `level` is enabled).
  RateLimitedLog(LogLevel level, uint64_t interval_ms, Sink sink = {});

  // One occurrence at `now_ms`, described by `what`. Writes a line when none has been
  // written in the last interval. Returns whether it wrote one.
  bool note(uint64_t now_ms, std::string_view what);
  // Writes the occurrences counted since the last line, if any, once the interval since
  // that line has passed. Returns whether it wrote a line.
  bool flush(uint64_t now_ms);

  uint64_t total() const { return total_; }      // occurrences ever noted
  uint64_t pending() const { return pending_; }  // noted, not yet in a line

 private:
  void write(uint64_t now_ms);

  LogLevel level_;
  uint64_t interval_ms_;
  Sink sink_;
  std::string last_;  // the latest occurrence's description
  uint64_t pending_ = 0;
  uint64_t total_ = 0;
  uint64_t last_line_ms_ = 0;
  bool written_ = false;  // a line has been written (last_line_ms_ is meaningful)
};

}  // namespace ringproxy
