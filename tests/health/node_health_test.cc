// The health state machine in virtual time: every test owns its clock (`now`) and moves
// it by hand; nothing sleeps, nothing reads a real clock.
#include "health/node_health.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace ringproxy {
namespace {

using health_policy::ejection_duration_ms;
using health_policy::healthy_spell_ms;
using health_policy::hold_ms;

constexpr uint64_t kInterval = 1000;  // one probe per second, as the default interval_ms

HealthConfig test_config() {
  HealthConfig c;
  c.rise = 2;
  c.fall = 3;
  c.eject_after_failures = 5;
  c.eject_base_ms = 1000;
  c.max_ejected_percent = 50;
  c.slow_start_ms = 0;
  return c;
}

class HealthTest : public ::testing::Test {
 protected:
  // Two nodes: at max_ejected_percent 50 a lone node could never be ejected.
  void SetUp() override { reset(test_config(), {"a", "b"}); }

  void reset(const HealthConfig& config, const std::vector<std::string>& names) {
    table = HealthTable(config);
    now = 1'000'000;  // not 0, so that "0 = never" fields cannot pass by accident
    for (const auto& n : names) ASSERT_TRUE(table.add(n, now));
  }

  const NodeHealth& node(const std::string& name = "a") {
    const NodeHealth* n = table.find(name);
    EXPECT_NE(n, nullptr) << name;
    static const NodeHealth missing;
    return n ? *n : missing;
  }

  // `count` probes one interval apart, the clock advancing before each; the events.
  std::vector<HealthEvent> checks(const std::string& name, Outcome outcome, int count) {
    std::vector<HealthEvent> events;
    for (int i = 0; i < count; ++i) {
      now += kInterval;
      if (auto e = table.on_check(name, outcome, now)) events.push_back(*e);
    }
    return events;
  }
  // Proxied requests at the current time.
  std::vector<HealthEvent> requests(const std::string& name, Outcome outcome, int count) {
    std::vector<HealthEvent> events;
    for (int i = 0; i < count; ++i) {
      if (auto e = table.on_request(name, outcome, now)) events.push_back(*e);
    }
    return events;
  }

  HealthEvent eject(const std::string& name) {
    auto events = requests(name, Outcome::kFailure, 5);
    EXPECT_EQ(events.size(), 1u);
    EXPECT_EQ(node(name).state(), HealthState::kEjected) << name;
    return events.empty() ? HealthEvent{} : events.back();
  }

  // Brings an ejected or down node back: waits for the end of its ejection, then
  // `rise` passing checks, then for the end of a flap-damping hold if there is one.
  void bring_back(const std::string& name) {
    now = std::max(now, node(name).ejected_until());
    checks(name, Outcome::kSuccess, 2);
    if (!node(name).usable() && node(name).held()) {
      now = node(name).held_until();
      table.tick(now);
    }
    ASSERT_TRUE(node(name).usable()) << name;
  }

  HealthTable table;
  uint64_t now = 0;
};

// --- starting state, rise and fall ---------------------------------------------------

TEST_F(HealthTest, NodeStartsUpAndServesAtOnce) {
  const NodeHealth& a = node();
  EXPECT_EQ(a.state(), HealthState::kUp);
  EXPECT_TRUE(a.usable());
  EXPECT_EQ(a.consecutive_passes(), 0u);
  EXPECT_EQ(a.consecutive_failures(), 0u);
  EXPECT_EQ(a.consecutive_request_failures(), 0u);
  EXPECT_EQ(a.ejections(), 0u);
  EXPECT_EQ(a.ejected_until(), 0u);
  EXPECT_FALSE(a.held());
  EXPECT_EQ(a.penalty(now), 0.0);
  EXPECT_EQ(a.up_since(), now);
  EXPECT_EQ(a.weight_fraction(now), 1.0);
  EXPECT_EQ(a.slow_start_until(), 0u);
  EXPECT_EQ(table.next_deadline(), std::nullopt);
  EXPECT_EQ(table.ejected_count(), 0u);
}

TEST_F(HealthTest, PassingChecksOnAnUpNodeSayNothing) {
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 10).empty());
  EXPECT_EQ(node().consecutive_passes(), 10u);
  EXPECT_TRUE(node().usable());
}

TEST_F(HealthTest, DownAfterExactlyFallFailures) {
  EXPECT_TRUE(checks("a", Outcome::kFailure, 2).empty());
  EXPECT_TRUE(node().usable());
  EXPECT_EQ(node().consecutive_failures(), 2u);

  auto events = checks("a", Outcome::kFailure, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0],
            (HealthEvent{"a", HealthEventKind::kDown, HealthState::kUp, HealthState::kDown,
                         "3 failed checks"}));
  EXPECT_EQ(node().state(), HealthState::kDown);
  EXPECT_FALSE(node().usable());

  // Further failures change nothing and say nothing.
  EXPECT_TRUE(checks("a", Outcome::kFailure, 5).empty());
  EXPECT_EQ(node().consecutive_failures(), 8u);
}

TEST_F(HealthTest, UpAfterExactlyRisePasses) {
  checks("a", Outcome::kFailure, 3);
  ASSERT_EQ(node().state(), HealthState::kDown);

  EXPECT_TRUE(checks("a", Outcome::kSuccess, 1).empty());
  EXPECT_FALSE(node().usable());
  auto events = checks("a", Outcome::kSuccess, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0],
            (HealthEvent{"a", HealthEventKind::kUp, HealthState::kDown, HealthState::kUp,
                         "2 passing checks"}));
  EXPECT_TRUE(node().usable());
  EXPECT_EQ(node().up_since(), now);
  EXPECT_EQ(node().consecutive_failures(), 0u);
}

TEST_F(HealthTest, InterleavedResultsRestartTheCounts) {
  // fail fail pass fail fail: never 3 in a row.
  checks("a", Outcome::kFailure, 2);
  checks("a", Outcome::kSuccess, 1);
  EXPECT_EQ(node().consecutive_failures(), 0u);
  EXPECT_TRUE(checks("a", Outcome::kFailure, 2).empty());
  EXPECT_TRUE(node().usable());
  EXPECT_EQ(checks("a", Outcome::kFailure, 1).size(), 1u);
  ASSERT_EQ(node().state(), HealthState::kDown);

  // pass fail pass: never 2 in a row.
  checks("a", Outcome::kSuccess, 1);
  checks("a", Outcome::kFailure, 1);
  EXPECT_EQ(node().consecutive_passes(), 0u);
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 1).empty());
  EXPECT_FALSE(node().usable());
  EXPECT_EQ(checks("a", Outcome::kSuccess, 1).size(), 1u);
  EXPECT_TRUE(node().usable());
}

TEST_F(HealthTest, RiseAndFallOfOneAndZero) {
  HealthConfig c = test_config();
  c.rise = 1;
  c.fall = 1;
  reset(c, {"a"});
  auto events = checks("a", Outcome::kFailure, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, "1 failed check");
  events = checks("a", Outcome::kSuccess, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, "1 passing check");

  // 0 never passes the config loader; here it acts as 1.
  c.rise = 0;
  c.fall = 0;
  reset(c, {"a"});
  EXPECT_EQ(checks("a", Outcome::kFailure, 1).size(), 1u);
  EXPECT_EQ(checks("a", Outcome::kSuccess, 1).size(), 1u);
}

TEST_F(HealthTest, UnknownNodesAreIgnored) {
  EXPECT_EQ(table.on_check("zz", Outcome::kFailure, now), std::nullopt);
  EXPECT_EQ(table.on_request("zz", Outcome::kFailure, now), std::nullopt);
  EXPECT_EQ(table.find("zz"), nullptr);
  EXPECT_EQ(table.size(), 2u);
}

// --- passive ejection ----------------------------------------------------------------

TEST_F(HealthTest, EjectedAfterExactlyNConsecutiveRequestFailures) {
  EXPECT_TRUE(requests("a", Outcome::kFailure, 4).empty());
  EXPECT_EQ(node().consecutive_request_failures(), 4u);
  EXPECT_TRUE(node().usable());

  auto events = requests("a", Outcome::kFailure, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (HealthEvent{"a", HealthEventKind::kEjected, HealthState::kUp,
                                    HealthState::kEjected,
                                    "5 consecutive request failures, ejected for 1000 ms "
                                    "(ejection 1)"}));
  EXPECT_EQ(node().state(), HealthState::kEjected);
  EXPECT_FALSE(node().usable());
  EXPECT_EQ(node().ejections(), 1u);
  EXPECT_EQ(node().ejected_until(), now + 1000);
  EXPECT_EQ(node().consecutive_request_failures(), 0u);
  EXPECT_EQ(table.ejected_count(), 1u);
}

TEST_F(HealthTest, ASuccessResetsTheRequestFailureCount) {
  requests("a", Outcome::kFailure, 4);
  requests("a", Outcome::kSuccess, 1);
  EXPECT_EQ(node().consecutive_request_failures(), 0u);
  EXPECT_TRUE(requests("a", Outcome::kFailure, 4).empty());
  EXPECT_TRUE(node().usable());
  EXPECT_EQ(requests("a", Outcome::kFailure, 1).size(), 1u);
  EXPECT_EQ(node().state(), HealthState::kEjected);
}

TEST_F(HealthTest, PassiveEjectionOffWhenZero) {
  HealthConfig c = test_config();
  c.eject_after_failures = 0;
  reset(c, {"a", "b", "c", "d"});
  EXPECT_TRUE(requests("a", Outcome::kFailure, 1000).empty());
  EXPECT_TRUE(node().usable());
}

TEST_F(HealthTest, RequestOutcomesForANodeNotUpAreIgnored) {
  checks("a", Outcome::kFailure, 3);
  ASSERT_EQ(node().state(), HealthState::kDown);
  EXPECT_TRUE(requests("a", Outcome::kFailure, 100).empty());
  EXPECT_EQ(node().state(), HealthState::kDown);
  EXPECT_EQ(node().consecutive_request_failures(), 0u);
  EXPECT_EQ(node().ejections(), 0u);

  bring_back("a");
  eject("a");
  const uint64_t until = node().ejected_until();
  // Stragglers neither extend the ejection nor count a second one.
  EXPECT_TRUE(requests("a", Outcome::kFailure, 100).empty());
  EXPECT_EQ(node().ejected_until(), until);
  EXPECT_EQ(node().ejections(), 1u);
}

TEST_F(HealthTest, EjectedNodeReturnsOnlyAfterExpiryAndThenRisePasses) {
  HealthConfig c = test_config();
  c.eject_base_ms = 10'000;
  reset(c, {"a", "b"});
  eject("a");
  const uint64_t until = node().ejected_until();
  ASSERT_EQ(until, now + 10'000);

  // Checks passing during the ejection do not count.
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 9).empty());
  EXPECT_EQ(now, until - 1000);
  EXPECT_EQ(node().consecutive_passes(), 0u);
  EXPECT_EQ(node().state(), HealthState::kEjected);

  // Expiry by itself changes nothing, and is no deadline.
  EXPECT_EQ(table.next_deadline(), std::nullopt);
  EXPECT_TRUE(table.tick(until).empty());
  EXPECT_EQ(node().state(), HealthState::kEjected);

  // At expiry: a pass, a failure (restarts), then `rise` passes.
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 1).empty());
  EXPECT_EQ(now, until);
  EXPECT_EQ(node().consecutive_passes(), 1u);
  EXPECT_TRUE(checks("a", Outcome::kFailure, 1).empty());
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 1).empty());
  auto events = checks("a", Outcome::kSuccess, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0],
            (HealthEvent{"a", HealthEventKind::kUp, HealthState::kEjected, HealthState::kUp,
                         "2 passing checks after the ejection ended"}));
  EXPECT_TRUE(node().usable());
  EXPECT_EQ(table.ejected_count(), 0u);
  // The ejection count stays until a healthy spell.
  EXPECT_EQ(node().ejections(), 1u);
}

TEST_F(HealthTest, FailingChecksWhileEjectedKeepItEjected) {
  HealthConfig c = test_config();
  c.eject_base_ms = 10'000;
  reset(c, {"a", "b"});
  eject("a");
  const uint64_t until = node().ejected_until();

  // `fall` and more failed checks: still ejected (the guard counts what GET /nodes shows).
  EXPECT_TRUE(checks("a", Outcome::kFailure, 5).empty());
  EXPECT_EQ(node().state(), HealthState::kEjected);
  EXPECT_EQ(node().consecutive_failures(), 5u);
  EXPECT_EQ(table.ejected_count(), 1u);

  // Past expiry, still failing: still out.
  now = until + 5000;
  EXPECT_TRUE(checks("a", Outcome::kFailure, 3).empty());
  EXPECT_EQ(node().state(), HealthState::kEjected);

  // The same way back: `rise` passes.
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 1).empty());
  auto events = checks("a", Outcome::kSuccess, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, HealthEventKind::kUp);
  EXPECT_EQ(events[0].from, HealthState::kEjected);
}

TEST(HealthPolicyTest, EjectionTimeDoublesUpToTheCap) {
  // base 1 s: the cap is Envoy's 300 s.
  EXPECT_EQ(ejection_duration_ms(1000, 1), 1000u);
  EXPECT_EQ(ejection_duration_ms(1000, 2), 2000u);
  EXPECT_EQ(ejection_duration_ms(1000, 3), 4000u);
  EXPECT_EQ(ejection_duration_ms(1000, 9), 256'000u);
  EXPECT_EQ(ejection_duration_ms(1000, 10), 300'000u);
  EXPECT_EQ(ejection_duration_ms(1000, 4'000'000'000u), 300'000u);
  // SPEC's default base 30 s: 30, 60, 120, 240, then 300 s.
  EXPECT_EQ(ejection_duration_ms(30'000, 1), 30'000u);
  EXPECT_EQ(ejection_duration_ms(30'000, 4), 240'000u);
  EXPECT_EQ(ejection_duration_ms(30'000, 5), 300'000u);
  // A long base still doubles three times: the cap is at least 10 x base.
  EXPECT_EQ(ejection_duration_ms(60'000, 4), 480'000u);
  EXPECT_EQ(ejection_duration_ms(60'000, 5), 600'000u);
  // The config's largest base (a day) and largest k: no overflow.
  EXPECT_EQ(ejection_duration_ms(86'400'000, 1), 86'400'000u);
  EXPECT_EQ(ejection_duration_ms(86'400'000, 4'294'967'295u), 864'000'000u);
  EXPECT_EQ(health_policy::ejection_cap_ms(1), 300'000u);
  EXPECT_EQ(healthy_spell_ms(30'000), 300'000u);
}

TEST_F(HealthTest, RepeatedEjectionsDoubleAndCap) {
  reset(test_config(), {"a", "b"});
  std::vector<uint64_t> durations;
  for (int i = 0; i < 11; ++i) {
    eject("a");
    durations.push_back(node().ejected_until() - now);
    bring_back("a");
  }
  EXPECT_EQ(durations, (std::vector<uint64_t>{1000, 2000, 4000, 8000, 16'000, 32'000, 64'000,
                                              128'000, 256'000, 300'000, 300'000}));
  EXPECT_EQ(node().ejections(), 11u);
}

TEST_F(HealthTest, EjectionCountForgivenAfterAHealthySpell) {
  reset(test_config(), {"a", "b"});
  const uint64_t spell = healthy_spell_ms(1000);
  ASSERT_EQ(spell, 300'000u);

  eject("a");
  bring_back("a");
  const uint64_t back = now;
  EXPECT_EQ(table.next_deadline(), back + spell);

  // Just short of the spell: the next ejection doubles.
  now = back + spell - 1;
  EXPECT_TRUE(table.tick(now).empty());
  EXPECT_EQ(node().ejections(), 1u);
  EXPECT_EQ(eject("a").reason,
            "5 consecutive request failures, ejected for 2000 ms (ejection 2)");
  bring_back("a");

  // A full spell up: tick forgives, the deadline goes away, the next is the first again.
  const uint64_t back2 = now;
  ASSERT_EQ(table.next_deadline(), back2 + spell);
  now = back2 + spell;
  EXPECT_TRUE(table.tick(now).empty());
  EXPECT_EQ(node().ejections(), 0u);
  EXPECT_EQ(table.next_deadline(), std::nullopt);
  EXPECT_EQ(eject("a").reason,
            "5 consecutive request failures, ejected for 1000 ms (ejection 1)");
}

TEST_F(HealthTest, EjectionCountForgivenWithoutATick) {
  reset(test_config(), {"a", "b"});
  eject("a");
  bring_back("a");
  eject("a");
  bring_back("a");
  ASSERT_EQ(node().ejections(), 2u);
  now += healthy_spell_ms(1000);
  // No tick: the event itself applies what is due first.
  eject("a");
  EXPECT_EQ(node().ejections(), 1u);
  EXPECT_EQ(node().ejected_until() - now, 1000u);
}

TEST_F(HealthTest, ADownSpellInterruptsTheHealthySpell) {
  reset(test_config(), {"a", "b"});
  eject("a");
  bring_back("a");
  now += 200'000;
  checks("a", Outcome::kFailure, 3);  // down by checks: no longer usable
  bring_back("a");
  now += 200'000;  // 400 s since the ejection, but only 200 s up without a break
  table.tick(now);
  EXPECT_EQ(node().ejections(), 1u);
}

// --- max_ejected_percent -------------------------------------------------------------

TEST_F(HealthTest, PercentageGuardRefusesTheThirdOfFourAtFiftyPercent) {
  reset(test_config(), {"a", "b", "c", "d"});
  eject("a");
  eject("b");
  EXPECT_EQ(table.ejected_count(), 2u);

  EXPECT_TRUE(requests("c", Outcome::kFailure, 4).empty());
  auto events = requests("c", Outcome::kFailure, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0],
            (HealthEvent{"c", HealthEventKind::kEjectionRefused, HealthState::kUp,
                         HealthState::kUp,
                         "5 consecutive request failures, ejection refused: "
                         "max_ejected_percent 50 reached (2 of 4 nodes ejected)"}));
  EXPECT_TRUE(node("c").usable());
  EXPECT_EQ(node("c").ejections(), 0u);
  EXPECT_EQ(table.ejected_count(), 2u);
  // The count starts over: one refusal per 5 failures, not one per failure.
  EXPECT_EQ(node("c").consecutive_request_failures(), 0u);
  EXPECT_TRUE(requests("c", Outcome::kFailure, 4).empty());
  EXPECT_EQ(requests("c", Outcome::kFailure, 1).size(), 1u);

  // Once one returns, the next ejection is allowed.
  bring_back("a");
  EXPECT_EQ(table.ejected_count(), 1u);
  EXPECT_TRUE(requests("c", Outcome::kFailure, 4).empty());
  events = requests("c", Outcome::kFailure, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, HealthEventKind::kEjected);
  EXPECT_EQ(table.ejected_count(), 2u);
}

TEST_F(HealthTest, PercentageGuardEdges) {
  // One node at 50%: never ejected (ejecting it would be 100%).
  reset(test_config(), {"a"});
  auto events = requests("a", Outcome::kFailure, 5);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, HealthEventKind::kEjectionRefused);

  // 100%: everything may go.
  HealthConfig c = test_config();
  c.max_ejected_percent = 100;
  reset(c, {"a", "b"});
  eject("a");
  eject("b");
  EXPECT_EQ(table.ejected_count(), 2u);

  // 0%: nothing may go; above 100 acts as 100.
  c.max_ejected_percent = 0;
  reset(c, {"a", "b"});
  events = requests("a", Outcome::kFailure, 5);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, HealthEventKind::kEjectionRefused);
  c.max_ejected_percent = 250;
  reset(c, {"a"});
  eject("a");

  // 3 nodes at 50%: 1 (33%) allowed, 2 (67%) refused.
  reset(test_config(), {"a", "b", "c"});
  eject("a");
  events = requests("b", Outcome::kFailure, 5);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, HealthEventKind::kEjectionRefused);
}

TEST_F(HealthTest, NodesDownByChecksDoNotCountTowardTheGuard) {
  reset(test_config(), {"a", "b", "c", "d"});
  checks("a", Outcome::kFailure, 3);
  checks("b", Outcome::kFailure, 3);
  ASSERT_EQ(node("a").state(), HealthState::kDown);
  eject("c");
  eject("d");
  EXPECT_EQ(table.ejected_count(), 2u);
}

// --- membership ----------------------------------------------------------------------

TEST_F(HealthTest, AddAndRemove) {
  EXPECT_FALSE(table.add("a", now));  // already there: unchanged
  EXPECT_TRUE(table.add("c", now));
  EXPECT_EQ(table.size(), 3u);
  EXPECT_TRUE(table.remove("c"));
  EXPECT_FALSE(table.remove("c"));
  EXPECT_EQ(table.size(), 2u);

  // A name added back starts afresh.
  reset(test_config(), {"a", "b"});
  eject("a");
  EXPECT_TRUE(table.remove("a"));
  EXPECT_EQ(table.ejected_count(), 0u);
  EXPECT_TRUE(table.add("a", now));
  EXPECT_TRUE(node("a").usable());
  EXPECT_EQ(node("a").ejections(), 0u);
  EXPECT_EQ(node("a").penalty(now), 0.0);
}

TEST_F(HealthTest, SetNodesKeepsTheStateOfNamesThatStay) {
  reset(test_config(), {"a", "b", "c", "d"});
  checks("a", Outcome::kFailure, 3);  // down
  eject("b");
  const NodeHealth b_before = node("b");
  table.on_check("c", Outcome::kFailure, now);
  table.on_check("c", Outcome::kFailure, now);  // up, 2 failures
  requests("d", Outcome::kFailure, 3);

  const std::vector<std::string> names = {"b", "c", "d", "e", "e"};
  table.set_nodes(names, now + 5);
  EXPECT_EQ(table.size(), 4u);
  EXPECT_EQ(table.find("a"), nullptr);
  EXPECT_EQ(node("b"), b_before);
  EXPECT_EQ(table.ejected_count(), 1u);
  EXPECT_EQ(node("c").consecutive_failures(), 2u);
  EXPECT_EQ(node("d").consecutive_request_failures(), 3u);
  EXPECT_TRUE(node("e").usable());
  EXPECT_EQ(node("e").up_since(), now + 5);

  // The survivors go on where they were: one more failure takes c down.
  EXPECT_EQ(checks("c", Outcome::kFailure, 1).size(), 1u);

  table.set_nodes({}, now);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.ejected_count(), 0u);
  EXPECT_EQ(table.next_deadline(), std::nullopt);
}

TEST_F(HealthTest, RemovingNodesNeverUnejectsButTheGuardFollows) {
  reset(test_config(), {"a", "b", "c", "d"});
  eject("a");
  eject("b");
  ASSERT_TRUE(table.remove("d"));  // now 2 of 3 ejected, above 50%
  EXPECT_EQ(node("a").state(), HealthState::kEjected);
  EXPECT_EQ(node("b").state(), HealthState::kEjected);
  auto events = requests("c", Outcome::kFailure, 5);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, HealthEventKind::kEjectionRefused);
  EXPECT_NE(events[0].reason.find("(2 of 3 nodes ejected)"), std::string::npos);

  // Growing the set makes room.
  table.add("e", now);
  table.add("f", now);
  table.add("g", now);
  eject("c");  // 3 of 6
}

// --- flap damping --------------------------------------------------------------------

TEST(HealthPolicyTest, PenaltyDecayAndHoldTimes) {
  using namespace health_policy;
  EXPECT_DOUBLE_EQ(decayed_penalty(1000, 0), 1000);
  EXPECT_DOUBLE_EQ(decayed_penalty(1000, kFlapHalfLifeMs), 500);
  EXPECT_DOUBLE_EQ(decayed_penalty(1000, 2 * kFlapHalfLifeMs), 250);
  EXPECT_EQ(decayed_penalty(0, 12345), 0.0);
  EXPECT_EQ(hold_ms(kFlapReuse), 0u);
  EXPECT_EQ(hold_ms(100), 0u);
  EXPECT_EQ(hold_ms(2 * kFlapReuse), kFlapHalfLifeMs);
  EXPECT_EQ(hold_ms(kFlapCeiling), kFlapMaxHoldMs);
  // From the suppress threshold: 60 s * log2(2000 / 750) = 84902.5 ms, rounded up.
  EXPECT_EQ(hold_ms(kFlapSuppress), 84'903u);
}

TEST_F(HealthTest, OneFailureIsNotAFlap) {
  auto down = checks("a", Outcome::kFailure, 3);
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0].reason, "3 failed checks");  // nothing about flapping
  EXPECT_FALSE(node().held());
  EXPECT_DOUBLE_EQ(node().penalty(now), health_policy::kFlapPenalty);
  auto up = checks("a", Outcome::kSuccess, 2);
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].kind, HealthEventKind::kUp);

  // Twice in quick succession is not a flap to hold either.
  checks("a", Outcome::kFailure, 3);
  EXPECT_FALSE(node().held());
  EXPECT_LT(node().penalty(now), health_policy::kFlapSuppress);
  EXPECT_EQ(checks("a", Outcome::kSuccess, 2).size(), 1u);
  EXPECT_TRUE(node().usable());

  // The penalty decays with a half-life.
  const double p = node().penalty(now);
  EXPECT_NEAR(node().penalty(now + health_policy::kFlapHalfLifeMs), p / 2, 1e-9);
}

TEST_F(HealthTest, AFlappingNodeIsHeldDownUntilThePenaltyDecays) {
  checks("a", Outcome::kFailure, 3);
  checks("a", Outcome::kSuccess, 2);
  checks("a", Outcome::kFailure, 3);
  checks("a", Outcome::kSuccess, 2);
  ASSERT_TRUE(node().usable());

  // Third flap within 12 s: held, and the down event says so.
  const double before = node().penalty(now + 3 * kInterval);
  auto down = checks("a", Outcome::kFailure, 3);
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0].kind, HealthEventKind::kDown);
  EXPECT_EQ(down[0].reason.rfind("3 failed checks; flapping: held down for ", 0), 0u)
      << down[0].reason;
  const double penalty = before + health_policy::kFlapPenalty;
  EXPECT_NEAR(node().penalty(now), penalty, 1e-6);
  ASSERT_TRUE(node().held());
  const uint64_t until = node().held_until();
  EXPECT_EQ(until, now + hold_ms(penalty));
  EXPECT_GT(until - now, 100'000u);  // about two minutes
  EXPECT_EQ(table.next_deadline(), until);

  // Checks pass: one event saying it is held, then silence; still down.
  auto held = checks("a", Outcome::kSuccess, 2);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].kind, HealthEventKind::kHeldDown);
  EXPECT_EQ(held[0].from, HealthState::kDown);
  EXPECT_EQ(held[0].to, HealthState::kDown);
  EXPECT_EQ(held[0].reason.rfind("2 passing checks, but flapping: held down for ", 0), 0u)
      << held[0].reason;
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 50).empty());
  EXPECT_FALSE(node().usable());

  // Released exactly at the deadline, by tick, with the checks already passing.
  EXPECT_TRUE(table.tick(until - 1).empty());
  EXPECT_FALSE(node().usable());
  auto released = table.tick(until);
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].kind, HealthEventKind::kUp);
  EXPECT_EQ(released[0].from, HealthState::kDown);
  EXPECT_EQ(released[0].reason, "52 passing checks, flap damping over");
  EXPECT_TRUE(node().usable());
  EXPECT_FALSE(node().held());
  EXPECT_LE(node().penalty(until), health_policy::kFlapReuse + 1e-6);
  EXPECT_EQ(table.next_deadline(), std::nullopt);
}

TEST_F(HealthTest, AHoldThatEndsWhileChecksFailNeedsRisePasses) {
  for (int i = 0; i < 2; ++i) {
    checks("a", Outcome::kFailure, 3);
    checks("a", Outcome::kSuccess, 2);
  }
  checks("a", Outcome::kFailure, 3);
  ASSERT_TRUE(node().held());
  const uint64_t until = node().held_until();
  now = until;
  EXPECT_TRUE(table.tick(now).empty());  // released, but the checks say nothing yet
  EXPECT_FALSE(node().held());
  EXPECT_FALSE(node().usable());
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 1).empty());
  auto up = checks("a", Outcome::kSuccess, 1);
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].reason, "2 passing checks");
}

TEST_F(HealthTest, AHoldEndsWithoutATickToo) {
  for (int i = 0; i < 3; ++i) {
    checks("a", Outcome::kFailure, 3);
    if (i < 2) checks("a", Outcome::kSuccess, 2);
  }
  ASSERT_TRUE(node().held());
  now = node().held_until();
  EXPECT_TRUE(checks("a", Outcome::kSuccess, 1).empty());
  EXPECT_EQ(checks("a", Outcome::kSuccess, 1).size(), 1u);
  EXPECT_TRUE(node().usable());
}

TEST_F(HealthTest, FlappingWhileHeldExtendsTheHoldUpToTheMaximum) {
  for (int i = 0; i < 3; ++i) {
    checks("a", Outcome::kFailure, 3);
    if (i < 2) checks("a", Outcome::kSuccess, 2);
  }
  ASSERT_TRUE(node().held());
  uint64_t until = node().held_until();

  // Checks flap while held: each flap is charged and pushes the end further out.
  checks("a", Outcome::kSuccess, 2);
  auto events = checks("a", Outcome::kFailure, 3);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, HealthEventKind::kHeldDown);
  EXPECT_EQ(events[0].reason.rfind("3 failed checks while held down; flapping: held down for ",
                                   0),
            0u)
      << events[0].reason;
  EXPECT_GT(node().held_until(), until);

  // Fewer than `fall` failures are not a flap.
  until = node().held_until();
  checks("a", Outcome::kSuccess, 2);
  EXPECT_TRUE(checks("a", Outcome::kFailure, 2).empty());
  EXPECT_EQ(node().held_until(), until);
  checks("a", Outcome::kFailure, 1);  // the third: a flap

  // However long it flaps, the hold after the last flap is at most kFlapMaxHoldMs.
  for (int i = 0; i < 30; ++i) {
    checks("a", Outcome::kSuccess, 2);
    checks("a", Outcome::kFailure, 3);
  }
  EXPECT_LE(node().penalty(now), health_policy::kFlapCeiling);
  EXPECT_EQ(node().held_until() - now, health_policy::kFlapMaxHoldMs);
  EXPECT_FALSE(node().usable());
}

// A simulated checker: probes every interval, ticks at each deadline, and records how
// long the node was usable. The node's real health is a function of time.
struct Simulation {
  HealthTable table;
  uint64_t now = 0;
  uint64_t usable_ms = 0;

  explicit Simulation(const HealthConfig& config) : table(config) { table.add("n", now); }

  void run(uint64_t until, const std::function<bool(uint64_t)>& healthy) {
    uint64_t next_probe = now + kInterval;
    while (now < until) {
      uint64_t next = std::min(next_probe, until);
      if (auto d = table.next_deadline(); d && *d > now && *d < next) next = *d;
      if (table.find("n")->usable()) usable_ms += next - now;
      now = next;
      table.tick(now);
      if (now == next_probe) {
        table.on_check("n", healthy(now) ? Outcome::kSuccess : Outcome::kFailure, now);
        next_probe += kInterval;
      }
    }
  }
};

TEST(HealthSimulationTest, AFlappingNodeSpendsLongerOutThanAStableOne) {
  // Both nodes are fine for 10 s, then broken. The stable one is fine again after
  // 10 s; the flapping one alternates 5 s broken, 5 s fine.
  const HealthConfig config = test_config();
  Simulation stable(config);
  stable.run(600'000, [](uint64_t t) { return t < 10'000 || t >= 20'000; });
  Simulation flapping(config);
  flapping.run(600'000,
               [](uint64_t t) { return t < 10'000 || ((t - 10'000) / 5000) % 2 == 1; });

  // Stable: down at the third failed probe (12 s), up at the second pass (21 s), usable
  // ever after.
  EXPECT_EQ(stable.usable_ms, 600'000u - (21'000 - 12'000));
  EXPECT_TRUE(stable.table.find("n")->usable());
  // Flapping: undamped it would be usable 6 s of every 10 s (up at the second pass,
  // down at the third failure). Damped: two cycles, then held for good, because its
  // checks keep flapping while it is held.
  EXPECT_EQ(flapping.usable_ms, 12'000u + 6'000u + 6'000u);
  EXPECT_FALSE(flapping.table.find("n")->usable());
  EXPECT_TRUE(flapping.table.find("n")->held());
}

// --- slow start ----------------------------------------------------------------------

TEST(HealthPolicyTest, SlowStartFraction) {
  HealthConfig c = test_config();
  c.slow_start_ms = 10'000;
  HealthTable t(c);
  t.add("a", 0);
  t.on_check("a", Outcome::kFailure, 1000);
  t.on_check("a", Outcome::kFailure, 2000);
  t.on_check("a", Outcome::kFailure, 3000);
  t.on_check("a", Outcome::kSuccess, 4000);
  auto up = t.on_check("a", Outcome::kSuccess, 5000);
  ASSERT_TRUE(up);
  EXPECT_EQ(up->reason, "2 passing checks, slow start over 10000 ms");
  const NodeHealth& a = *t.find("a");
  EXPECT_EQ(a.slow_start_until(), 15'000u);
  EXPECT_DOUBLE_EQ(a.weight_fraction(5000), 0.1);   // the floor at once
  EXPECT_DOUBLE_EQ(a.weight_fraction(5500), 0.1);   // still the floor at 5%
  EXPECT_DOUBLE_EQ(a.weight_fraction(6000), 0.1);   // linear from here
  EXPECT_DOUBLE_EQ(a.weight_fraction(7500), 0.25);
  EXPECT_DOUBLE_EQ(a.weight_fraction(10'000), 0.5);
  EXPECT_DOUBLE_EQ(a.weight_fraction(14'999), 0.9999);
  EXPECT_DOUBLE_EQ(a.weight_fraction(15'000), 1.0);
  EXPECT_DOUBLE_EQ(a.weight_fraction(99'999), 1.0);
  // Never above 1 or below the floor, whatever the time.
  for (uint64_t now = 0; now < 20'000; now += 7) {
    EXPECT_GE(a.weight_fraction(now), health_policy::kSlowStartFloor);
    EXPECT_LE(a.weight_fraction(now), 1.0);
  }
}

TEST_F(HealthTest, NoRampAtFirstStartOrWhenZero) {
  HealthConfig c = test_config();
  c.slow_start_ms = 10'000;
  reset(c, {"a", "b"});
  EXPECT_EQ(node().weight_fraction(now), 1.0);  // present from the start: full share
  EXPECT_EQ(node().slow_start_until(), 0u);

  reset(test_config(), {"a", "b"});  // slow_start_ms = 0
  checks("a", Outcome::kFailure, 3);
  auto up = checks("a", Outcome::kSuccess, 2);
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].reason, "2 passing checks");
  EXPECT_EQ(node().weight_fraction(now), 1.0);
  EXPECT_EQ(node().slow_start_until(), 0u);
  EXPECT_TRUE(node().admits(12345, now));
}

TEST_F(HealthTest, RampAfterEjectionAndForNodesAddedToRamp) {
  HealthConfig c = test_config();
  c.slow_start_ms = 10'000;
  reset(c, {"a", "b"});
  eject("a");
  bring_back("a");
  EXPECT_EQ(node().slow_start_until(), now + 10'000);
  EXPECT_DOUBLE_EQ(node().weight_fraction(now + 5000), 0.5);

  // Leaving again ends the ramp; coming back starts a new one.
  eject("a");
  EXPECT_EQ(node().slow_start_until(), 0u);
  bring_back("a");
  EXPECT_EQ(node().slow_start_until(), now + 10'000);

  // A node added at runtime may be asked to ramp.
  ASSERT_TRUE(table.add("c", now, HealthTable::Start::kSlowStart));
  EXPECT_EQ(node("c").slow_start_until(), now + 10'000);
  EXPECT_DOUBLE_EQ(node("c").weight_fraction(now), 0.1);
  // ... but not without slow_start_ms.
  reset(test_config(), {"a"});
  ASSERT_TRUE(table.add("c", now, HealthTable::Start::kSlowStart));
  EXPECT_EQ(node("c").weight_fraction(now), 1.0);
}

TEST(HealthPolicyTest, AdmitsAGrowingDeterministicSubsetOfKeys) {
  HealthConfig c = test_config();
  c.slow_start_ms = 10'000;
  HealthTable t(c);
  t.add("a", 0, HealthTable::Start::kSlowStart);
  const NodeHealth& a = *t.find("a");
  const HealthTable copy = t;  // another worker's or instance's view

  constexpr int kKeys = 20'000;
  std::vector<bool> before(kKeys, false);
  for (uint64_t now : {0u, 2500u, 5000u, 7500u, 9999u, 10'000u}) {
    int admitted = 0;
    for (int k = 0; k < kKeys; ++k) {
      // Sequential numbers as hashes: the worst case for a weak mix.
      const auto hash = static_cast<uint64_t>(k);
      const bool in = a.admits(hash, now);
      EXPECT_EQ(in, copy.find("a")->admits(hash, now));
      if (before[k]) {
        EXPECT_TRUE(in) << "key " << k << " dropped at " << now;
      }
      before[k] = in;
      admitted += in;
    }
    EXPECT_NEAR(static_cast<double>(admitted) / kKeys, a.weight_fraction(now), 0.02)
        << "at " << now;
  }
}

// --- time, reload, values --------------------------------------------------------------

TEST_F(HealthTest, NextDeadlineIsTheEarliestPending) {
  reset(test_config(), {"a", "b", "c", "d"});
  EXPECT_EQ(table.next_deadline(), std::nullopt);
  eject("a");
  EXPECT_EQ(table.next_deadline(), std::nullopt);  // ejection expiry needs no tick
  bring_back("a");
  const uint64_t forgive = now + healthy_spell_ms(1000);
  EXPECT_EQ(table.next_deadline(), forgive);
  for (int i = 0; i < 3; ++i) {
    checks("b", Outcome::kFailure, 3);
    if (i < 2) checks("b", Outcome::kSuccess, 2);
  }
  ASSERT_TRUE(node("b").held());
  EXPECT_EQ(table.next_deadline(), std::min(forgive, node("b").held_until()));
}

TEST_F(HealthTest, TickReportsReleasesInNameOrder) {
  reset(test_config(), {"b", "a", "c"});
  for (const char* name : {"b", "a"}) {
    for (int i = 0; i < 3; ++i) {
      table.on_check(name, Outcome::kFailure, now);
      table.on_check(name, Outcome::kFailure, now);
      table.on_check(name, Outcome::kFailure, now);
      if (i < 2) {
        table.on_check(name, Outcome::kSuccess, now);
        table.on_check(name, Outcome::kSuccess, now);
      }
    }
    table.on_check(name, Outcome::kSuccess, now);
    table.on_check(name, Outcome::kSuccess, now);
  }
  ASSERT_TRUE(node("a").held());
  ASSERT_EQ(node("a").held_until(), node("b").held_until());
  auto events = table.tick(node("a").held_until());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].node, "a");
  EXPECT_EQ(events[1].node, "b");
  EXPECT_TRUE(table.tick(node("a").held_until() + 1).empty());  // said once
}

TEST_F(HealthTest, ReloadAppliesNewThresholdsToExistingCounts) {
  checks("a", Outcome::kFailure, 2);
  HealthConfig c = test_config();
  c.fall = 2;
  c.eject_after_failures = 2;
  table.set_config(c);
  EXPECT_EQ(table.config(), c);
  EXPECT_EQ(node().consecutive_failures(), 2u);  // state kept
  auto events = checks("a", Outcome::kFailure, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, "3 failed checks");
}

TEST_F(HealthTest, ClockGoingBackwardsIsHarmless) {
  reset(test_config(), {"a", "b"});
  eject("a");
  const uint64_t until = node().ejected_until();
  EXPECT_TRUE(table.tick(0).empty());
  EXPECT_EQ(table.on_check("a", Outcome::kSuccess, 0), std::nullopt);
  EXPECT_EQ(node().ejected_until(), until);
  EXPECT_GE(node().penalty(0), 0.0);
  EXPECT_EQ(node().penalty(0), node().penalty(now));  // no time passed, no decay
}

TEST_F(HealthTest, TheTableIsAValue) {
  reset(test_config(), {"a", "b"});
  const HealthTable before = table;
  eject("a");
  EXPECT_NE(table, before);
  EXPECT_EQ(before.find("a")->state(), HealthState::kUp);
  HealthTable copy = table;
  EXPECT_EQ(copy, table);
  copy.remove("a");
  EXPECT_EQ(table.ejected_count(), 1u);
  EXPECT_EQ(copy.ejected_count(), 0u);
}

TEST(HealthNamesTest, StatesAndKindsAsText) {
  EXPECT_EQ(to_string(HealthState::kUp), "up");
  EXPECT_EQ(to_string(HealthState::kDown), "down");
  EXPECT_EQ(to_string(HealthState::kEjected), "ejected");
  EXPECT_EQ(to_string(HealthEventKind::kDown), "down");
  EXPECT_EQ(to_string(HealthEventKind::kEjected), "ejected");
  EXPECT_EQ(to_string(HealthEventKind::kUp), "up");
  EXPECT_EQ(to_string(HealthEventKind::kEjectionRefused), "ejection_refused");
  EXPECT_EQ(to_string(HealthEventKind::kHeldDown), "held_down");
}

}  // namespace

// For readable failures (found by argument-dependent lookup, so in this namespace).
void PrintTo(const HealthEvent& e, std::ostream* os) {
  *os << "{" << e.node << " " << to_string(e.kind) << " " << to_string(e.from) << "->"
      << to_string(e.to) << " \"" << e.reason << "\"}";
}

}  // namespace ringproxy
