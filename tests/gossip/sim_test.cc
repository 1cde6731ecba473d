// SWIM scenarios in the simulator: virtual time only, seeded, no sleeps. Each test
// states the figure it checks; bench/gossip_bench.cc prints the same figures at scale.
#include "gossip/sim.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>

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

// ---- collecting store tombstones over simulated days (state.h, "Collecting tombstones")

constexpr int64_t kMinute = 60 * 1000;
constexpr int64_t kHour = 60 * kMinute;

// memberlist's LAN probe interval (1 s), so that days of virtual time take seconds; the
// reap time and the tombstone horizon are the defaults, 24 h and 48 h.
SimConfig days(uint64_t seed) {
  SimConfig c = base(seed, 0.0);
  c.swim.probe_interval_ms = 1000;
  c.swim.probe_timeout_ms = 500;
  return c;
}

uint64_t total_anti_entropy(const Sim& sim) {
  uint64_t n = 0;
  for (const std::string& o : sim.names()) n += sim.swim(o).stats().anti_entropy_pulls;
  return n;
}

// Pod churn as [[discover]] sees it: every 30 minutes a new node's key is written and the
// oldest of the three live ones deleted, for 3 days, by a different member each time;
// m2 restarts after a day and a half, between writes (it relearns the tombstones it had, aged from then).
TEST(SimSwim, StoreStaysBoundedUnderChurnAndTombstonesAgeOut) {
  Sim sim(days(31));
  populate(sim, 5);
  sim.run_for(kMinute);
  ASSERT_TRUE(converged(sim));
  const int64_t horizon = sim.swim("m0").config().tombstone_ttl_ms;
  ASSERT_EQ(horizon, 48 * kHour);
  constexpr int64_t kEvery = 30 * kMinute;
  constexpr int kWrites = 3 * 24 * 2;
  // A member holds at most a horizon of deletes (plus the reap timer's period, the three
  // live keys and the tombstone at the clock); one that restarted, up to two: those it
  // relearned at its start age from then. Without collection: kWrites.
  const size_t bound = static_cast<size_t>(horizon / kEvery) + 4;
  size_t largest = 0, largest_restarted = 0;
  for (int i = 0; i < kWrites; ++i) {
    const std::string writer = nm(i % 5);
    // A quarter of an hour after its last write went out (a crash loses what it has not
    // sent yet, which is not what this test is about).
    if (i == kWrites / 2 + 1) sim.restart("m2");
    sim.put(writer, "found/src/node-" + std::to_string(i), "10.1." + std::to_string(i % 250) + ".9:8080 1 0");
    if (i >= 3) sim.erase(writer, "found/src/node-" + std::to_string(i - 3));
    sim.run_for(kEvery);
    for (const std::string& o : sim.names()) {
      size_t& l = o == "m2" ? largest_restarted : largest;
      l = std::max(l, sim.swim(o).store().size());
    }
  }
  RecordProperty("largest_store", static_cast<int>(largest));
  RecordProperty("largest_store_restarted", static_cast<int>(largest_restarted));
  EXPECT_LE(largest, bound);
  EXPECT_GE(largest, bound - 4) << "collection keeps about a horizon of deletes";
  EXPECT_LE(largest_restarted, 2 * bound);
  // Churn over: a horizon later only the live keys remain (and the tombstone that holds
  // the clock, the last write being a delete).
  sim.run_for(horizon + 2 * sim.swim("m0").config().reconnect_interval_ms);
  const uint64_t digest = sim.swim("m0").store().digest();
  for (const std::string& o : sim.names()) {
    const KvStore& st = sim.swim(o).store();
    SCOPED_TRACE(o);
    EXPECT_LE(st.tombstones(), 1u);
    EXPECT_EQ(st.size() - st.tombstones(), 3u);
    EXPECT_EQ(st.digest(), digest);
    EXPECT_EQ(st.refused(), 0u) << "nothing is refused when nobody was cut off";
    EXPECT_GT(st.collected(), static_cast<uint64_t>(kWrites / 2));
    for (int i = kWrites - 3; i < kWrites; ++i) EXPECT_TRUE(st.get("found/src/node-" + std::to_string(i)));
  }
  // No storm: instances collect at different moments (m2 a day and a half later than
  // the others), and anti-entropy does not chase tombstones.
  RecordProperty("anti_entropy_pulls", static_cast<int>(total_anti_entropy(sim)));
  EXPECT_LE(total_anti_entropy(sim), 20u);
  EXPECT_EQ(sim.stats().false_deaths, 0u);
}

// m4 is cut off from the others for `apart_ms`; meanwhile the others delete a key m4
// holds, and m4 writes a key of its own (its Lamport clock lags theirs). Returns the
// simulator after the heal and two minutes; `resurrected` counts the moments a member
// other than m4 held the deleted key live after the delete had reached it.
struct Apart {
  std::unique_ptr<Sim> sim;
  int resurrected = 0;
};
Apart cut_off_for(int64_t apart_ms, bool newcomer = false) {
  Apart a;
  a.sim = std::make_unique<Sim>(days(32));
  Sim& sim = *a.sim;
  populate(sim, 5);
  sim.run_for(kMinute);
  sim.put("m1", "backend/gone", "10.0.0.1:80 1");
  sim.put("m1", "backend/kept", "10.0.0.2:80 1");
  sim.run_for(kMinute);
  EXPECT_TRUE(sim.swim("m4").store().get("backend/gone"));
  sim.partition({"m4"});
  sim.run_for(kMinute);
  sim.erase("m0", "backend/gone");
  sim.put("m0", "backend/after", "10.0.0.3:80 1");  // holds the clock: the delete can go
  sim.run_for(kHour);
  sim.put("m4", "health/m4/cache-a", "down");  // m4's own write while apart
  std::map<std::string, bool> deleted;
  sim.on_output = [&](const std::string& who, const Output& out, int64_t) {
    if (who == "m4") return;
    for (const std::string& k : out.keys_changed) {
      if (k != "backend/gone") continue;
      const bool live = sim.swim(who).store().get(k).has_value();
      if (!live) deleted[who] = true;
      if (live && deleted[who]) ++a.resurrected;
    }
  };
  for (const char* o : {"m0", "m1", "m2", "m3"}) deleted[o] = !sim.swim(o).store().get("backend/gone");
  sim.run_for(apart_ms - kHour - kMinute - (newcomer ? 10 * kMinute : 0));
  if (newcomer) {
    // A new instance (no floor: it has collected nothing) joins the others just before
    // the heal: it would take m4's stale value if m4 reached it before a member with a
    // floor answered m4 (m4 rejoins through m0, which does at once).
    sim.add("m5", {"m0"});
    sim.run_for(10 * kMinute);
  }
  sim.heal();
  sim.run_for(2 * kMinute);
  return a;
}

TEST(SimSwim, AMemberBackAfterTheHorizonDoesNotBringADeletedKeyBack) {
  Apart a = cut_off_for(50 * kHour);  // over the 48 h horizon (and the 24 h reap)
  Sim& sim = *a.sim;
  EXPECT_TRUE(converged(sim)) << "reaped on both sides, m4 rejoins through its seed";
  EXPECT_EQ(a.resurrected, 0);
  uint64_t refused = 0;
  const uint64_t digest = sim.swim("m0").store().digest();
  for (const std::string& o : sim.names()) {
    SCOPED_TRACE(o);
    const KvStore& st = sim.swim(o).store();
    EXPECT_FALSE(st.get("backend/gone"));
    EXPECT_EQ(st.get("backend/kept"), "10.0.0.2:80 1");
    EXPECT_EQ(st.get("backend/after"), "10.0.0.3:80 1");
    // The documented cost: m4's write while apart was below the others' floor (its
    // clock lagged theirs), so it is refused like a stale value, everywhere.
    EXPECT_FALSE(st.get("health/m4/cache-a"));
    EXPECT_EQ(st.digest(), digest);
    refused += st.refused();
  }
  EXPECT_GE(refused, 2u);
  // Its clock is past the floor now: what m4 writes next is taken everywhere.
  sim.put("m4", "health/m4/cache-a", "down");
  sim.run_for(10000);
  for (const std::string& o : sim.names()) EXPECT_EQ(sim.swim(o).store().get("health/m4/cache-a"), "down") << o;
  EXPECT_LE(total_anti_entropy(sim), 20u);
}

TEST(SimSwim, ANewInstanceWithoutAFloorEndsWithoutTheDeletedValueToo) {
  Apart a = cut_off_for(50 * kHour, /*newcomer=*/true);
  Sim& sim = *a.sim;
  EXPECT_TRUE(converged(sim));
  const uint64_t digest = sim.swim("m0").store().digest();
  for (const std::string& o : sim.names()) {
    SCOPED_TRACE(o);
    EXPECT_FALSE(sim.swim(o).store().get("backend/gone"));
    EXPECT_EQ(sim.swim(o).store().digest(), digest);
  }
  EXPECT_EQ(sim.swim("m5").store().floor(), 0u);
}

TEST(SimSwim, AMemberBackWithinTheHorizonLosesNothingEvenWhenReaped) {
  Apart a = cut_off_for(30 * kHour);  // reaped (24 h), not past the horizon
  Sim& sim = *a.sim;
  EXPECT_TRUE(converged(sim));
  EXPECT_EQ(a.resurrected, 0);
  for (const std::string& o : sim.names()) {
    SCOPED_TRACE(o);
    const KvStore& st = sim.swim(o).store();
    EXPECT_FALSE(st.get("backend/gone"));  // the tombstone was still held: it reached m4
    EXPECT_EQ(st.get("health/m4/cache-a"), "down");
    EXPECT_EQ(st.get("backend/after"), "10.0.0.3:80 1");
    EXPECT_EQ(st.refused(), 0u);
  }
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
