// SWIM scenarios in the simulator: virtual time only, seeded, no sleeps. Each test
// states the figure it checks; bench/gossip_bench.cc prints the same figures at scale.
#include "gossip/sim.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace ringproxy::gossip {
namespace {

std::string nm(int i) { return "m" + std::to_string(i); }

// n members, each joining through m0 (m0 through nobody).
void populate(Sim& sim, int n) {
  sim.add(nm(0));
  for (int i = 1; i < n; ++i) sim.add(nm(i), {nm(0)});
}

// How many running members see `subject` in `state` (subject itself not counted).
int seeing(const Sim& sim, const std::string& subject, MemberState state) {
  int count = 0;
  for (const std::string& o : sim.names()) {
    if (o == subject || !sim.running(o)) continue;
    const Member* m = sim.swim(o).member(subject);
    count += m != nullptr && m->state == state;
  }
  return count;
}

int running_count(const Sim& sim) {
  int n = 0;
  for (const std::string& o : sim.names()) n += sim.running(o);
  return n;
}

// Every running member sees every running member alive.
bool converged(const Sim& sim) {
  for (const std::string& s : sim.names()) {
    if (sim.running(s) && seeing(sim, s, MemberState::kAlive) != running_count(sim) - 1) return false;
  }
  return true;
}

// Every running member holds every running member alive or suspect: under loss some
// suspicion is always being refuted somewhere, so "all alive" is only momentary.
bool converged_live(const Sim& sim) {
  for (const std::string& s : sim.names()) {
    if (!sim.running(s)) continue;
    if (seeing(sim, s, MemberState::kAlive) + seeing(sim, s, MemberState::kSuspect) != running_count(sim) - 1) {
      return false;
    }
  }
  return true;
}

SimConfig base(uint64_t seed, double loss) {
  SimConfig c;
  c.seed = seed;
  c.loss = loss;
  return c;
}

TEST(SimSwim, JoinsAndConverges) {
  Sim sim(base(1, 0.0));
  populate(sim, 30);
  sim.run_for(5000);
  EXPECT_TRUE(converged(sim));
  EXPECT_EQ(sim.stats().over_budget, 0u);
  EXPECT_EQ(sim.stats().decode_failures, 0u);
  EXPECT_EQ(sim.stats().false_deaths, 0u);
}

TEST(SimSwim, JoinsAndConvergesAtTenPercentLoss) {
  Sim sim(base(2, 0.10));
  populate(sim, 30);
  sim.run_for(15000);
  EXPECT_TRUE(converged_live(sim));
  EXPECT_EQ(sim.stats().false_deaths, 0u);
}

TEST(SimSwim, CrashedMemberIsDeadEverywhereInTime) {
  Sim sim(base(3, 0.10));
  populate(sim, 20);
  sim.run_for(10000);
  ASSERT_TRUE(converged_live(sim));
  std::map<std::string, int64_t> dead_at;
  sim.on_output = [&](const std::string& who, const Output& out, int64_t now) {
    for (const std::string& n : out.members_changed) {
      const Member* m = sim.swim(who).member(n);
      if (n == "m5" && m != nullptr && m->state == MemberState::kDead) dead_at.emplace(who, now);
    }
  };
  const int64_t crash = sim.now();
  sim.crash("m5");
  sim.run_for(20000);
  EXPECT_EQ(seeing(sim, "m5", MemberState::kDead), 19);
  ASSERT_EQ(dead_at.size(), 19u);
  int64_t last = 0;
  for (const auto& [who, t] : dead_at) last = std::max(last, t - crash);
  // Expected: first failed probe within about one probe pass share (~0.5 s), k = 2
  // confirmations within a few periods, then the 4 s floor: about 5 s; the issue's
  // target is 10 s at p99.
  EXPECT_LT(last, 10000);
  EXPECT_GT(last, 4000);  // never before the suspicion timeout
  EXPECT_EQ(sim.stats().false_deaths, 0u);
}

TEST(SimSwim, SuspectedMemberRefutesAndIsNotDeclaredDead) {
  Sim sim(base(4, 0.0));
  populate(sim, 12);
  sim.run_for(5000);
  ASSERT_TRUE(converged(sim));
  const uint64_t inc = sim.swim("m3").self().incarnation;
  // Cut m3 off long enough to fail probes, far shorter than the suspicion timeout.
  sim.partition({"m3"});
  sim.run_for(1500);
  uint64_t suspicions = 0;
  for (const std::string& n : sim.names()) suspicions += sim.swim(n).stats().suspicions_raised;
  EXPECT_GT(suspicions, 0u);
  EXPECT_GT(seeing(sim, "m3", MemberState::kSuspect), 0);
  sim.heal();
  sim.run_for(5000);
  EXPECT_GT(sim.swim("m3").self().incarnation, inc);
  EXPECT_GT(sim.swim("m3").stats().refutations, 0u);
  EXPECT_TRUE(converged(sim));
  EXPECT_EQ(sim.stats().false_deaths, 0u);
}

TEST(SimSwim, NoFalseDeathsAtTenPercentLossOverALongRun) {
  for (const auto& [n, seconds] : std::vector<std::pair<int, int>>{{20, 1200}, {50, 300}}) {
    Sim sim(base(5 + n, 0.10));
    populate(sim, n);
    sim.run_for(seconds * 1000);
    EXPECT_EQ(sim.stats().false_deaths, 0u) << n << " members";
    EXPECT_EQ(sim.stats().over_budget, 0u);
    EXPECT_EQ(sim.stats().decode_failures, 0u);
    uint64_t suspicions = 0;
    for (const std::string& s : sim.names()) suspicions += sim.swim(s).stats().suspicions_raised;
    EXPECT_GT(suspicions, 0u) << "the loss did cause suspicions, all refuted";
  }
}

// A member that stops for 2 s every 6 s (a GC pause) while the network loses 10%.
uint64_t false_deaths_with_pauses(bool lifeguard, int64_t floor_ms, uint64_t* late_ticks = nullptr) {
  SimConfig c = base(6, 0.10);
  c.swim.lifeguard = lifeguard;
  c.swim.suspicion_floor_ms = floor_ms;
  Sim sim(c);
  populate(sim, 20);
  sim.run_for(10000);
  for (int i = 0; i < 50; ++i) {
    sim.pause("m7", 2000);
    sim.run_for(6000);
  }
  if (late_ticks != nullptr) *late_ticks = sim.swim("m7").stats().late_ticks;
  return sim.stats().false_deaths;
}

TEST(SimSwim, RepeatedlyPausedMemberIsNotDeclaredDead) {
  uint64_t late = 0;
  EXPECT_EQ(false_deaths_with_pauses(true, 4000, &late), 0u);
  EXPECT_GE(late, 40u);  // it noticed its own stalls
  // With memberlist's figures unfloored (min = 4 * log10(20) * 200 ms = 1.04 s) the
  // same pauses kill it: the floor is what makes 2 s pauses survivable.
  EXPECT_GT(false_deaths_with_pauses(false, 0), 0u);
}

TEST(SimSwim, PartitionThenHealRemergesByItself) {
  SimConfig c = base(7, 0.0);
  Sim sim(c);
  populate(sim, 10);
  sim.run_for(5000);
  ASSERT_TRUE(converged(sim));
  const std::vector<std::string> island = {"m0", "m1", "m2", "m3"};  // m0 is everyone's seed
  sim.partition(island);
  sim.run_for(30000);
  // Each side sees the other dead.
  EXPECT_EQ(seeing(sim, "m8", MemberState::kDead), 4);
  EXPECT_EQ(seeing(sim, "m1", MemberState::kDead), 6);
  sim.heal();
  // Re-contact every reconnect_interval_ms (10 s): one ping to a dead member, or to the
  // seed; then push-pull, refutations, dissemination.
  sim.run_for(30000);
  EXPECT_TRUE(converged(sim));
}

TEST(SimSwim, GracefulLeaveIsSeenAsLeftNotDead) {
  Sim sim(base(8, 0.10));
  populate(sim, 15);
  sim.run_for(10000);
  ASSERT_TRUE(converged_live(sim));
  sim.leave("m4");
  sim.run_for(3000);
  EXPECT_FALSE(sim.running("m4"));
  EXPECT_EQ(seeing(sim, "m4", MemberState::kLeft), 14);
  sim.run_for(30000);
  EXPECT_EQ(seeing(sim, "m4", MemberState::kLeft), 14);
  EXPECT_EQ(seeing(sim, "m4", MemberState::kDead), 0);
}

TEST(SimSwim, RestartWithNewAddressIsTakenBack) {
  Sim sim(base(9, 0.05));
  populate(sim, 12);
  sim.run_for(8000);
  ASSERT_TRUE(converged_live(sim));
  // Restarted after being declared dead.
  sim.crash("m2");
  sim.run_for(15000);
  ASSERT_EQ(seeing(sim, "m2", MemberState::kDead), 11);
  const std::string old_address = sim.address("m2");
  sim.restart("m2");
  EXPECT_NE(sim.address("m2"), old_address);
  sim.run_for(5000);
  EXPECT_TRUE(converged_live(sim));
  for (const std::string& o : sim.names()) {
    if (o != "m2") {
      EXPECT_EQ(sim.swim(o).member("m2")->address, sim.address("m2"));
    }
  }
  // Restarted before anyone noticed (and with an incarnation below its former one: the
  // first claim about its former life makes it refute above it).
  SimConfig c = base(10, 0.05);
  Sim quick(c);
  populate(quick, 12);
  quick.run_for(8000);
  quick.crash("m6");
  quick.run_for(300);
  quick.restart("m6");
  quick.run_for(8000);
  EXPECT_TRUE(converged_live(quick));
  EXPECT_EQ(quick.swim("m0").member("m6")->address, quick.address("m6"));
}

TEST(SimSwim, KeyUpdateReachesEveryoneQuicklyAtScale) {
  // The target: N = 100, 10% loss, interval 200 ms: a change everywhere in p99
  // 2 s or less.
  constexpr int kN = 100;
  Sim sim(base(11, 0.10));
  populate(sim, kN);
  // 100 members joining at once through one seed at 10% loss: the last straggler is
  // repaired by the first periodic push-pull (18 s at this size), about 25 s in.
  sim.run_for(30000);
  ASSERT_TRUE(converged_live(sim));
  std::map<std::string, std::pair<int64_t, int>> arrivals;  // key -> (written at, members holding it)
  std::vector<int64_t> spread;
  sim.on_output = [&](const std::string& who, const Output& out, int64_t now) {
    (void)who;
    for (const std::string& k : out.keys_changed) {
      auto it = arrivals.find(k);
      if (it == arrivals.end()) continue;
      if (++it->second.second == kN) spread.push_back(now - it->second.first);
    }
  };
  constexpr int kUpdates = 40;
  for (int i = 0; i < kUpdates; ++i) {
    const std::string key = "backend/b" + std::to_string(i);
    arrivals[key] = {sim.now(), 0};
    sim.put(nm((i * 37) % kN), key, "{\"address\":\"10.0.0." + std::to_string(i) + ":11211\"}");
    sim.run_for(1000);
  }
  sim.run_for(10000);
  ASSERT_EQ(spread.size(), static_cast<size_t>(kUpdates));
  std::sort(spread.begin(), spread.end());
  const int64_t p50 = spread[spread.size() / 2];
  const int64_t p99 = spread[spread.size() * 99 / 100];
  RecordProperty("p50_ms", static_cast<int>(p50));
  RecordProperty("p99_ms", static_cast<int>(p99));
  EXPECT_LE(p99, 2000) << "p50 " << p50;
  // Anti-entropy repairs stragglers only: while updates spread it stays quiet.
  uint64_t anti_entropy = 0;
  for (const std::string& o : sim.names()) anti_entropy += sim.swim(o).stats().anti_entropy_pulls;
  RecordProperty("anti_entropy_pulls", static_cast<int>(anti_entropy));
  EXPECT_LE(anti_entropy, static_cast<uint64_t>(kUpdates));
  const uint64_t digest = sim.swim("m0").store().digest();
  for (const std::string& o : sim.names()) EXPECT_EQ(sim.swim(o).store().digest(), digest);
  EXPECT_EQ(sim.stats().false_deaths, 0u);
}

// A member cut off while an update spread (every send of its burst lost) gets it from the
// first settled peer it talks to once back, not at the next periodic push-pull.
int64_t repair_after_heal_ms(uint32_t settle_periods) {
  SimConfig c = base(21, 0.0);
  c.swim.anti_entropy_settle_periods = settle_periods;
  Sim sim(c);
  populate(sim, 20);
  // Healed at 8.0 s, halfway between the periodic push-pulls (every 6 s, all in step
  // here since everyone joined at 0).
  sim.run_for(6500);
  EXPECT_TRUE(converged(sim));
  sim.partition({nm(5)});
  sim.put(nm(0), "backend/new", "{\"address\":\"10.0.0.9:11211\"}");
  sim.run_for(1500);  // the burst is over: 8 sends per holder at 20 members
  EXPECT_FALSE(sim.swim(nm(5)).store().get("backend/new"));
  sim.heal();
  const int64_t healed = sim.now();
  while (!sim.swim(nm(5)).store().get("backend/new") && sim.now() - healed < 60000) sim.run_for(10);
  EXPECT_EQ(sim.stats().false_deaths, 0u);
  return sim.now() - healed;
}

TEST(SimSwim, AMemberThatMissedAnUpdateIsRepairedByAntiEntropy) {
  const int64_t with = repair_after_heal_ms(5);
  const int64_t without = repair_after_heal_ms(0);
  RecordProperty("with_ms", static_cast<int>(with));
  RecordProperty("without_ms", static_cast<int>(without));
  // Settled on both sides at once (the write was 1.5 s ago): the first ping or ack
  // m5 exchanges after the heal starts the repair.
  EXPECT_LE(with, 600);
  // Without it, the repair waits for a periodic push-pull (every 6 s per member here).
  EXPECT_GT(without, 2000);
}

TEST(SimSwim, ConcurrentWritesToOneKeyConvergeToOneWinner) {
  Sim sim(base(12, 0.10));
  populate(sim, 20);
  sim.run_for(8000);
  for (int i = 0; i < 20; ++i) sim.put(nm(i), "backend/shared", "from-" + nm(i));
  sim.run_for(10000);
  const uint64_t digest = sim.swim("m0").store().digest();
  for (const std::string& o : sim.names()) EXPECT_EQ(sim.swim(o).store().digest(), digest);
  // All wrote version 1 (none had seen another's write): the largest origin wins.
  EXPECT_EQ(sim.swim("m3").store().get("backend/shared"), "from-m9");
}

TEST(SimSwim, SameSeedSameRun) {
  auto run = [](uint64_t seed) {
    Sim sim(base(seed, 0.10));
    populate(sim, 15);
    sim.run_for(20000);
    sim.crash("m3");
    sim.run_for(10000);
    return std::make_pair(sim.stats().packets_sent, sim.stats().bytes_sent);
  };
  EXPECT_EQ(run(13), run(13));
  EXPECT_NE(run(13), run(14));
}

}  // namespace
}  // namespace ringproxy::gossip
