// Lifeguard's dynamic suspicion timeout against memberlist's figures.
#include "gossip/suspicion.h"

#include <gtest/gtest.h>

#include <cmath>

#include "gossip/broadcast_queue.h"

namespace ringproxy::gossip {
namespace {

TEST(Suspicion, MinTimeoutMatchesMemberlist) {
  // memberlist util_test.go TestSuspicionTimeout: suspicionTimeout(3, n, 1s) / 3 is
  // 1000 ms at n = 5 and 10, 1698 ms at 50, 2000 at 100, 2698 at 500, 3000 at 1000.
  const std::vector<std::pair<size_t, int64_t>> want = {{5, 1000}, {10, 1000}, {50, 1698},
                                                        {100, 2000}, {500, 2698}, {1000, 3000}};
  for (const auto& [n, ms] : want) {
    EXPECT_EQ(suspicion_timeouts(n, 1000, 3, 6, 0).min_ms / 3, ms) << "n=" << n;
  }
}

TEST(Suspicion, ExpectedConfirmationsAndMax) {
  SuspicionTimeouts t = suspicion_timeouts(100, 200, 4, 6, 0);
  EXPECT_EQ(t.min_ms, 1600);  // 4 * log10(100) * 200
  EXPECT_EQ(t.max_ms, 9600);
  EXPECT_EQ(t.k, 2u);         // SuspicionMult - 2
  EXPECT_EQ(suspicion_timeouts(3, 200, 4, 6, 0).k, 0u);  // n - 2 < k: nobody to confirm
  EXPECT_EQ(suspicion_timeouts(4, 200, 4, 6, 0).k, 2u);
  SuspicionTimeouts floored = suspicion_timeouts(100, 200, 4, 6, 4000);
  EXPECT_EQ(floored.min_ms, 4000);
  EXPECT_EQ(floored.max_ms, 24000);
}

TEST(Suspicion, TimeoutShrinksLogarithmicallyWithConfirmations) {
  const SuspicionTimeouts t{1000, 6000, 3};
  EXPECT_EQ(suspicion_timeout_ms(0, t), 6000);
  // max - (max - min) * log(c + 1) / log(k + 1)
  EXPECT_EQ(suspicion_timeout_ms(1, t), static_cast<int64_t>(std::floor(6000 - 5000 * std::log(2) / std::log(4))));
  EXPECT_EQ(suspicion_timeout_ms(1, t), 3500);
  EXPECT_EQ(suspicion_timeout_ms(3, t), 1000);
  EXPECT_EQ(suspicion_timeout_ms(9, t), 1000);  // never below min
  EXPECT_EQ(suspicion_timeout_ms(0, SuspicionTimeouts{1000, 6000, 0}), 1000);  // k = 0: min
}

TEST(Suspicion, CountsEachIndependentAccuserOnce) {
  Suspicion s("a", SuspicionTimeouts{1000, 6000, 3}, 500);
  EXPECT_EQ(s.deadline_ms(), 6500);
  EXPECT_FALSE(s.confirm("a"));  // the first accuser is not a confirmation
  EXPECT_TRUE(s.confirm("b"));
  EXPECT_FALSE(s.confirm("b"));
  EXPECT_EQ(s.confirmations(), 1u);
  EXPECT_EQ(s.deadline_ms(), 500 + 3500);
  EXPECT_TRUE(s.confirm("c"));
  EXPECT_TRUE(s.confirm("d"));
  EXPECT_FALSE(s.confirm("e"));  // k reached: nothing more to learn
  EXPECT_EQ(s.deadline_ms(), 1500);
  s.defer_until(2000);
  EXPECT_EQ(s.deadline_ms(), 2000);
}

TEST(BroadcastQueue, RetransmitLimitMatchesMemberlist) {
  EXPECT_EQ(retransmit_limit(4, 1), 4u);     // ceil(log10(2)) = 1
  EXPECT_EQ(retransmit_limit(4, 9), 4u);
  EXPECT_EQ(retransmit_limit(4, 10), 8u);    // ceil(log10(11)) = 2
  EXPECT_EQ(retransmit_limit(4, 100), 12u);
  EXPECT_EQ(retransmit_limit(4, 1000), 16u);
}

TEST(BroadcastQueue, LeastSentFirstNewestFirstReplacedBySubject) {
  BroadcastQueue q;
  q.push(MemberUpdate{"a", "addr", 1, MemberState::kAlive, ""});
  q.push(MemberUpdate{"b", "addr", 1, MemberState::kAlive, ""});
  auto first = q.take(1400, 2, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(std::get<MemberUpdate>(first[0]).name, "b");  // newest first
  auto second = q.take(1400, 2, 1);
  EXPECT_EQ(std::get<MemberUpdate>(second[0]).name, "a");  // then the least sent
  q.push(MemberUpdate{"a", "addr", 2, MemberState::kSuspect, "x"});  // replaces, count 0
  EXPECT_EQ(q.size(), 2u);
  auto third = q.take(1400, 2, 10);
  ASSERT_EQ(third.size(), 2u);
  EXPECT_EQ(std::get<MemberUpdate>(third[0]).incarnation, 2u);
  EXPECT_EQ(std::get<MemberUpdate>(third[1]).name, "b");
  EXPECT_EQ(q.size(), 1u);  // b reached its limit of 2 and left; a has one send left
}

TEST(BroadcastQueue, SkipsWhatDoesNotFitButTakesSmallerOnes) {
  BroadcastQueue q;
  q.push(KvUpdate{"small", KvEntry{"v", 1, "o", false}});
  q.push(KvUpdate{"big", KvEntry{std::string(400, 'x'), 1, "o", false}});  // newest: first choice
  auto got = q.take(100, 5, 10);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(std::get<KvUpdate>(got[0]).key, "small");
  EXPECT_EQ(q.size(), 2u);
}

}  // namespace
}  // namespace ringproxy::gossip
