#include "proxy/log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace ringproxy {

std::atomic<LogLevel> Log::level_{LogLevel::kInfo};
std::atomic<int> AccessLog::fd_{-1};
std::string AccessLog::path_;

namespace {

constexpr std::string_view kLevelNames[] = {"error", "warn", "info", "debug"};

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // a log that cannot be written must not take the proxy down
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

void Log::write(LogLevel level, std::string_view message) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm t{};
  gmtime_r(&tv.tv_sec, &t);
  char stamp[40];
  const size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &t);
  std::string line(stamp, n);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ ", static_cast<int>(tv.tv_usec / 1000));
  line += ms;
  line += kLevelNames[static_cast<int>(level)];
  line += ' ';
  line += message;
  line += '\n';
  write_all(STDERR_FILENO, line);
}

std::string AccessLog::open(const std::string& target) {
  path_ = target;
  int fd = -1;
  if (target == "-") {
    fd = ::dup(STDOUT_FILENO);
  } else if (!target.empty()) {
    fd = ::open(target.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return "cannot open access log " + target + ": " + std::strerror(errno);
  }
  // Workers may be writing to the current descriptor: never close it under them.
  // A new file is dup2()ed onto the same number; turning the log off leaves the old
  // descriptor open (one descriptor, once per such reload).
  const int old = fd_.load();
  if (old >= 0 && fd >= 0) {
    ::dup2(fd, old);
    ::close(fd);
  } else {
    fd_.store(fd);
  }
  return {};
}

std::string AccessLog::reopen() {
  const int fd = fd_.load();
  if (fd < 0 || path_ == "-") return {};
  const int fresh = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fresh < 0) return "cannot reopen access log " + path_ + ": " + std::strerror(errno);
  ::dup2(fresh, fd);
  ::close(fresh);
  return {};
}

void AccessLog::append(std::string_view lines) {
  const int fd = fd_.load(std::memory_order_relaxed);
  if (fd >= 0) write_all(fd, lines);
}

std::string clf_time(long unix_s) {
  const time_t s = unix_s;
  tm t{};
  gmtime_r(&s, &t);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "[%d/%b/%Y:%H:%M:%S +0000]", &t);
  return std::string(buf, n);
}

void append_log_escaped(std::string& out, std::string_view field) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const char ch : field) {
    const auto b = static_cast<unsigned char>(ch);
    if (b < 0x20 || b >= 0x7f || b == '"' || b == '\\') {
      const char esc[4] = {'\\', 'x', kHex[b >> 4], kHex[b & 15]};
      out.append(esc, 4);
    } else {
      out.push_back(ch);
    }
  }
}

}  // namespace ringproxy
