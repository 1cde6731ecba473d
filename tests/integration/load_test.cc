// The harness's reading of wrk's timeouts (load.h): which of them a jump of the wall
// clock, by which wrk times requests, accounts for, and which stay the proxy's.
#include <gtest/gtest.h>

#include "tests/integration/load.h"

namespace ringproxy::integration {
namespace {

WallClockWatch::Jump jump(int wall_ms, int steady_ms = 20) {
  return {Millis(wall_ms), Millis(steady_ms), "2026-12-07T19:25:35.840Z"};
}

TEST(WrkTimeouts, WithoutAJumpEveryTimeoutIsTheProxys) {
  EXPECT_EQ(excused_timeouts(0, {}, 8), 0);
  EXPECT_EQ(excused_timeouts(7, {}, 8), 0);
}

// A request answered within a second is not pushed past 5 s by a jump under 4 s.
TEST(WrkTimeouts, AShortJumpExcusesNothing) {
  EXPECT_EQ(excused_timeouts(7, {jump(1000), jump(3999)}, 8), 0);
}

// The failure that made this (a VM snapshot mid-test): the wall clock jumped 6.8 s
// while the monotonic clock did not; 7 of 8 connections had a request in flight.
TEST(WrkTimeouts, AJumpExcusesAtMostOneRequestPerConnection) {
  EXPECT_EQ(excused_timeouts(7, {jump(6840)}, 8), 7);
  EXPECT_EQ(excused_timeouts(8, {jump(4000, 4000)}, 8), 8);
  // More than one per connection: the rest waited in the proxy.
  EXPECT_EQ(excused_timeouts(9, {jump(6840)}, 8), 8);
  EXPECT_EQ(excused_timeouts(20, {jump(6840), jump(1500)}, 6), 6);
  EXPECT_EQ(excused_timeouts(20, {jump(6840), jump(9000)}, 6), 12);
}

TEST(WallClockWatch, AQuietRunHasNoJump) {
  WallClockWatch watch;
  watch.stop();
  watch.stop();  // idempotent
  EXPECT_TRUE(watch.jumps().empty());
  EXPECT_EQ(watch.describe(), "");
}

}  // namespace
}  // namespace ringproxy::integration
