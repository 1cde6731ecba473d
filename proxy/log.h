// The error log (levels, one line per event, to stderr) and the access log (combined
// log format). Thread-safe: each line is one write(2). Workers buffer access-log lines
// and flush them in batches, so a request costs no syscall for logging.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include "config/config.h"

namespace ringproxy {

class Log {
 public:
  static void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  static bool enabled(LogLevel level) {
    return static_cast<int>(level) <= static_cast<int>(level_.load(std::memory_order_relaxed));
  }
  // "2026-11-22T09:43:05.123Z warn upstream refused: node=cache-a ..." to stderr.
  static void write(LogLevel level, std::string_view message);

 private:
  static std::atomic<LogLevel> level_;
};

#define RP_LOG(level, msg)                                   \
  do {                                                       \
    if (::ringproxy::Log::enabled(level)) ::ringproxy::Log::write(level, (msg)); \
  } while (0)

// The access-log file. open() and reopen() run on the control thread; append() from any
// worker. Reopening dup2()s the new file onto the same descriptor number, so workers
// never see a closed descriptor.
class AccessLog {
 public:
  // "" disables, "-" is stdout, else a path opened for append. Returns an error text.
  static std::string open(const std::string& target);
  static std::string reopen();  // SIGUSR1: after logrotate moved the file
  static bool enabled() { return fd_.load(std::memory_order_relaxed) >= 0; }
  // Writes whole lines (each ending in '\n') in one write(2).
  static void append(std::string_view lines);

 private:
  static std::atomic<int> fd_;
  static std::string path_;
};

// "[22/Nov/2026:09:43:05 +0000]": the combined log format's time field for `unix_s`.
std::string clf_time(long unix_s);

// An access-log field: bytes that could forge fields or lines ('"', '\\', controls,
// and bytes >= 0x7f) written as \xHH, as nginx escapes them. Appends to `out`.
void append_log_escaped(std::string& out, std::string_view field);

}  // namespace ringproxy
