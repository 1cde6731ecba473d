// h1::LingerBudget: the bounds of a lingering close (RFC 9112 9.6), in virtual time.
#include "http/h1/lingering_close.h"

#include <gtest/gtest.h>

namespace ringproxy::h1 {
namespace {

TEST(H1LingerBudget, WaitsBetweenReadsUpToTheTotal) {
  LingerBudget l;
  EXPECT_EQ(l.start(1000), kLingerIdleMs);
  EXPECT_EQ(l.on_read(100, 1500), kLingerIdleMs);
  // Near the end, the wait is what is left.
  EXPECT_EQ(l.on_read(100, 1000 + kLingerMs - 300), 300u);
  EXPECT_EQ(l.on_read(100, 1000 + kLingerMs), 0u);
}

TEST(H1LingerBudget, EndsOnEofErrorOrTooManyBytes) {
  LingerBudget l;
  l.start(0);
  EXPECT_EQ(l.on_read(-1, 10), 0u);  // EOF (UV_EOF is negative) or an error
  l.start(0);
  EXPECT_NE(l.on_read(static_cast<int64_t>(kLingerMaxBytes), 10), 0u);  // exactly the bound: still dropping
  EXPECT_EQ(l.on_read(1, 20), 0u);
}

}  // namespace
}  // namespace ringproxy::h1
