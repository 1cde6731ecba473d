// RateLimitedLog in virtual time: the clock is a number the test moves, the sink a
// vector of lines. Nothing sleeps.
#include "proxy/rate_limited_log.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringproxy {
namespace {

struct Captured {
  std::vector<std::string> lines;
  std::vector<LogLevel> levels;
  RateLimitedLog::Sink sink() {
    return [this](LogLevel level, std::string_view line) {
      levels.push_back(level);
      lines.emplace_back(line);
    };
  }
};

constexpr uint64_t kInterval = 10000;
constexpr uint64_t kStart = 123456;  // uv_now() starts anywhere

TEST(RateLimitedLog, FirstOccurrenceIsWrittenAtOnceAsIs) {
  Captured out;
  RateLimitedLog log(LogLevel::kWarn, kInterval, out.sink());
  EXPECT_TRUE(log.note(kStart, "out of descriptors"));
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(out.lines[0], "out of descriptors");
  EXPECT_EQ(out.levels[0], LogLevel::kWarn);
  EXPECT_EQ(log.pending(), 0u);
  EXPECT_EQ(log.total(), 1u);
}

// The measured case: 30,012 occurrences in 4 s were 60,027 lines. Now one.
TEST(RateLimitedLog, BurstWithinTheIntervalIsOneLine) {
  Captured out;
  RateLimitedLog log(LogLevel::kWarn, kInterval, out.sink());
  for (uint64_t i = 0; i < 30012; ++i) log.note(kStart + i * 4000 / 30012, "EMFILE");
  EXPECT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(log.pending(), 30011u);
  EXPECT_EQ(log.total(), 30012u);
  // Before the interval is over a flush writes nothing; once it is, the count.
  EXPECT_FALSE(log.flush(kStart + kInterval - 1));
  EXPECT_TRUE(log.flush(kStart + kInterval));
  ASSERT_EQ(out.lines.size(), 2u);
  EXPECT_EQ(out.lines[1], "EMFILE (30011 times in the last 10.0 s)");
  EXPECT_EQ(log.pending(), 0u);
  // Nothing pending: flushes stay silent however late.
  EXPECT_FALSE(log.flush(kStart + 10 * kInterval));
  EXPECT_EQ(out.lines.size(), 2u);
}

TEST(RateLimitedLog, NextOccurrenceAfterTheIntervalCarriesTheCountAndTheLatestDescription) {
  Captured out;
  RateLimitedLog log(LogLevel::kError, kInterval, out.sink());
  log.note(kStart, "a");
  log.note(kStart + 1, "b");
  log.note(kStart + 2, "c");
  EXPECT_FALSE(log.note(kStart + kInterval - 1, "d"));
  EXPECT_TRUE(log.note(kStart + kInterval + 500, "e"));
  ASSERT_EQ(out.lines.size(), 2u);
  EXPECT_EQ(out.lines[1], "e (4 times in the last 10.5 s)");  // b, c, d and e
  EXPECT_EQ(out.levels[1], LogLevel::kError);
  // The interval runs from the last line: another 10 s of silence first.
  EXPECT_FALSE(log.note(kStart + kInterval + 501, "f"));
  EXPECT_FALSE(log.note(kStart + 2 * kInterval + 499, "g"));
  EXPECT_TRUE(log.note(kStart + 2 * kInterval + 500, "h"));
  EXPECT_EQ(out.lines.back(), "h (3 times in the last 10.0 s)");
}

TEST(RateLimitedLog, OneLaterOccurrenceSaysOneTime) {
  Captured out;
  RateLimitedLog log(LogLevel::kWarn, kInterval, out.sink());
  log.note(kStart, "x");
  log.note(kStart + 3 * kInterval, "x");
  ASSERT_EQ(out.lines.size(), 2u);
  EXPECT_EQ(out.lines[1], "x (1 time in the last 30.0 s)");
}

// A steady stream for a minute: a line per interval, never one per occurrence, and the
// counts in the lines add up to every occurrence.
TEST(RateLimitedLog, SteadyStreamIsOneLinePerIntervalAndCountsAddUp) {
  Captured out;
  RateLimitedLog log(LogLevel::kWarn, kInterval, out.sink());
  uint64_t now = kStart;
  for (int i = 0; i < 60000; ++i, ++now) {  // 1,000 a second for 60 s
    log.note(now, "EMFILE");
    if (i % 100 == 0) log.flush(now);  // the worker's 100 ms timer
  }
  log.flush(now + kInterval);
  EXPECT_EQ(out.lines.size(), 7u);  // t = 0, 10, 20, 30, 40, 50 s, and the final flush
  uint64_t counted = 1;             // the first line stands for one
  for (size_t i = 1; i < out.lines.size(); ++i) {
    const std::string& l = out.lines[i];
    const size_t open = l.find(" (");
    ASSERT_NE(open, std::string::npos) << l;
    counted += std::stoull(l.substr(open + 2));
  }
  EXPECT_EQ(counted, 60000u);
  EXPECT_EQ(log.total(), 60000u);
}

}  // namespace
}  // namespace ringproxy
