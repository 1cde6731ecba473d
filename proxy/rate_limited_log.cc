#include "proxy/rate_limited_log.h"

#include <cstdio>

#include "proxy/log.h"

namespace ringproxy {

RateLimitedLog::RateLimitedLog(LogLevel level, uint64_t interval_ms, Sink sink)
    : level_(level), interval_ms_(interval_ms), sink_(std::move(sink)) {
  if (!sink_) {
    sink_ = [](LogLevel l, std::string_view line) {
      if (Log::enabled(l)) Log::write(l, line);
    };
  }
}

bool RateLimitedLog::note(uint64_t now_ms, std::string_view what) {
  ++total_;
  ++pending_;
  last_.assign(what);  // within the string's capacity after the first few: no allocation
  if (written_ && now_ms - last_line_ms_ < interval_ms_) return false;
  write(now_ms);
  return true;
}

bool RateLimitedLog::flush(uint64_t now_ms) {
  if (pending_ == 0 || now_ms - last_line_ms_ < interval_ms_) return false;
  write(now_ms);
  return true;
}

void RateLimitedLog::write(uint64_t now_ms) {
  std::string line = last_;
  if (written_) {
    // "(1234 times in the last 10.0 s)": since the previous line, this one included.
    char tail[96];
    std::snprintf(tail, sizeof tail, " (%llu time%s in the last %.1f s)", static_cast<unsigned long long>(pending_),
                  pending_ == 1 ? "" : "s", static_cast<double>(now_ms - last_line_ms_) / 1000.0);
    line += tail;
  }
  sink_(level_, line);
  pending_ = 0;
  last_line_ms_ = now_ms;
  written_ = true;
}

}  // namespace ringproxy
