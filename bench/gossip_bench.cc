// Gossip figures from the simulator: what users feel of membership and the store
// (STYLE rule 10; issue 5, "Tests and figures"), for 100 and 1,000 members at 10% loss,
// probe interval 200 ms, seeded:
//   - time for a store update (an admin change: Swim::put at one member) to reach every
//     member, p50 and p99 over several updates;
//   - time until a crashed member is dead at every other member, p50 and p99 over a few
//     crashes;
//   - false deaths per simulated hour with 10% loss, and with one member paused for 2 s
//     every 6 s (as a GC pause or a stopped VM would);
//   - bytes per member per second (what the codec produced; UDP/IP headers excluded).
// For each N the members join through one seed and converge first (not measured). Then
// the process forks (POSIX; to use two cores) and two copies of the joined simulator run
// the measured phases, each phase measured on its own: copy A the steady state at 10%
// loss (false deaths, bytes), then crashes; copy B store updates, then pauses. Same seed,
// same figures. Percentiles are nearest-rank: with fewer than 100 samples p99 is the
// largest sample.
// Run: build/bench/gossip_bench [--quick] [--seed=S] [--no-anti-entropy]   (figures in README.md)
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gossip/sim.h"

namespace ringproxy::gossip {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kLoss = 0.10;
constexpr int64_t kIntervalMs = 200;

struct Plan {
  int n = 0;
  uint64_t seed = 0;
  int64_t settle_ms = 0;          // after convergence, before measuring: the join flood drains
  int updates = 0;
  int64_t update_gap_ms = 0;      // between two puts (they overlap in flight)
  int64_t loss_run_s = 0;         // simulated seconds for false deaths at 10% loss
  int64_t pause_run_s = 0;        // simulated seconds with one member paused 2 s every 6 s
  int crashes = 0;
  int64_t crash_wait_max_ms = 0;  // give up on a crash seen everywhere after this
  bool anti_entropy = true;       // --no-anti-entropy: to see what it repairs
};

// Rows print in this order, whichever copy measured them.
enum Order { kJoinRow, kUpdatesRow, kCrashesRow, kLossRow, kPausesRow, kBytesRow };

struct Row {
  int order = 0;
  std::string figure;
  std::string result;
  std::string over;
  std::string target;  // the target at N = 100, and whether it was met
  double real_s = 0;
};

// What a phase returns: its rows, and how many integrity problems it saw (codec over
// budget or decode failures, updates or crashes never seen everywhere, no convergence).
struct Report {
  std::vector<Row> rows;
  int problems = 0;
};

std::string nm(int i) { return "m" + std::to_string(i); }

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string fmt(const char* format, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

std::string secs(int64_t ms) { return fmt("%.2f s", static_cast<double>(ms) / 1000.0); }

// Nearest rank: the smallest sample with at least q of the samples at or below it.
int64_t percentile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::max<size_t>(rank, 1) - 1];
}

std::string met(const char* target, bool ok) { return std::string(target) + (ok ? ": met" : ": MISSED"); }

int running_count(const Sim& sim) {
  int n = 0;
  for (const std::string& o : sim.names()) n += sim.running(o);
  return n;
}

// Every running member holds every running member alive or suspect (under loss some
// suspicion is always being refuted somewhere, so "all alive" is only momentary).
// Asked only before any crash, so a count is enough.
bool converged_live(const Sim& sim) {
  const size_t running = static_cast<size_t>(running_count(sim));
  for (const std::string& o : sim.names()) {
    if (sim.running(o) && sim.swim(o).live_count() != running) return false;
  }
  return true;
}

uint64_t sum_suspicions(const Sim& sim) {
  uint64_t s = 0;
  for (const std::string& o : sim.names()) s += sim.swim(o).stats().suspicions_raised;
  return s;
}

uint64_t sum_anti_entropy(const Sim& sim) {
  uint64_t s = 0;
  for (const std::string& o : sim.names()) s += sim.swim(o).stats().anti_entropy_pulls;
  return s;
}

uint64_t sum_refutations(const Sim& sim) {
  uint64_t s = 0;
  for (const std::string& o : sim.names()) s += sim.swim(o).stats().refutations;
  return s;
}

std::string per_hour(uint64_t count, int64_t run_s) {
  const double scale = 3600.0 / static_cast<double>(run_s);
  return fmt("%.1f /h (%llu in %lld s, x%.0f)", static_cast<double>(count) * scale,
             static_cast<unsigned long long>(count), static_cast<long long>(run_s), scale);
}

// Everyone joins through m0 at once; runs until all hold all live, then settles.
Report join(Sim& sim, const Plan& plan) {
  const Clock::time_point start = Clock::now();
  sim.add(nm(0));
  for (int i = 1; i < plan.n; ++i) sim.add(nm(i), {nm(0)});
  constexpr int64_t kJoinMaxMs = 300000;
  while (!converged_live(sim) && sim.now() < kJoinMaxMs) sim.run_for(1000);
  const int64_t joined_at = sim.now();
  const bool ok = converged_live(sim);
  sim.run_for(plan.settle_ms);
  Report r;
  r.problems = ok ? 0 : 1;
  r.rows.push_back(Row{kJoinRow, "join and converge (not measured; excluded below)",
                       (ok ? "all hold all live at " : "NOT converged by ") + secs(joined_at),
                       "then " + secs(plan.settle_ms) + " settling", "", seconds_since(start)});
  return r;
}

// Puts at spread-out members, update_gap_ms apart; for each, the time from the put
// until the last member applied it.
Report updates(Sim& sim, const Plan& plan) {
  const Clock::time_point start = Clock::now();
  const uint64_t fd0 = sim.stats().false_deaths;
  const uint64_t ae0 = sum_anti_entropy(sim);
  std::map<std::string, std::pair<int64_t, int>> arrivals;  // key -> (put at, members holding it)
  std::vector<int64_t> spread;
  sim.on_output = [&](const std::string&, const Output& out, int64_t now) {
    for (const std::string& k : out.keys_changed) {
      auto it = arrivals.find(k);
      if (it == arrivals.end()) continue;
      if (++it->second.second == plan.n) spread.push_back(now - it->second.first);
    }
  };
  for (int i = 0; i < plan.updates; ++i) {
    const std::string key = "backend/b" + std::to_string(i);
    arrivals[key] = {sim.now(), 0};
    sim.put(nm((i * 37 + 1) % plan.n), key, "{\"address\":\"10.0.0." + std::to_string(i) + ":11211\"}");
    sim.run_for(plan.update_gap_ms);
  }
  for (int waited = 0; waited < 30 && spread.size() < arrivals.size(); ++waited) sim.run_for(1000);
  sim.on_output = nullptr;
  const uint64_t digest = sim.swim(nm(0)).store().digest();
  int differing = 0;
  for (const std::string& o : sim.names()) differing += sim.swim(o).store().digest() != digest;

  Report rep;
  Row r;
  r.order = kUpdatesRow;
  r.figure = "store update (put at one member) applied at every member";
  if (spread.empty()) {
    r.result = "NONE reached every member";
  } else {
    const int64_t p99 = percentile(spread, 0.99);
    const auto slow = std::count_if(spread.begin(), spread.end(), [](int64_t t) { return t > 2000; });
    r.result = "p50 " + secs(percentile(spread, 0.50)) + ", p99 " + secs(p99) + ", max " +
               secs(*std::max_element(spread.begin(), spread.end())) + fmt("; %ld over 2 s", static_cast<long>(slow));
    if (plan.n == 100) r.target = met("p99 <= 2 s", p99 <= 2000);
  }
  r.over = fmt("%zu of %d updates, one every %lld ms; %llu anti-entropy push-pulls", spread.size(),
               plan.updates, static_cast<long long>(plan.update_gap_ms),
               static_cast<unsigned long long>(sum_anti_entropy(sim) - ae0));
  if (spread.size() != arrivals.size() || differing != 0) {
    ++rep.problems;
    r.over += fmt("; %d members with a different store", differing);
  }
  if (sim.stats().false_deaths != fd0) {
    r.over += fmt("; %llu false deaths meanwhile", static_cast<unsigned long long>(sim.stats().false_deaths - fd0));
  }
  r.real_s = seconds_since(start);
  rep.rows.push_back(r);
  return rep;
}

// Steady state at 10% loss: false deaths, and bytes sent.
Report steady(Sim& sim, const Plan& plan) {
  const Clock::time_point start = Clock::now();
  const uint64_t fd0 = sim.stats().false_deaths;
  const uint64_t sus0 = sum_suspicions(sim);
  const uint64_t ref0 = sum_refutations(sim);
  const uint64_t bytes0 = sim.stats().bytes_sent;
  const std::vector<std::string> names = sim.names();
  std::vector<uint64_t> member_bytes0;
  for (const std::string& o : names) member_bytes0.push_back(sim.bytes_sent_by(o));
  sim.run_for(plan.loss_run_s * 1000);
  const double real = seconds_since(start);
  const uint64_t fd = sim.stats().false_deaths - fd0;

  Report rep;
  Row r;
  r.order = kLossRow;
  r.figure = "false deaths, 10% loss";
  r.result = per_hour(fd, plan.loss_run_s);
  r.over = fmt("%lld simulated s, scaled to 1 h; %llu suspicions raised, %llu refuted",
               static_cast<long long>(plan.loss_run_s),
               static_cast<unsigned long long>(sum_suspicions(sim) - sus0),
               static_cast<unsigned long long>(sum_refutations(sim) - ref0));
  if (plan.n == 100) r.target = met("zero", fd == 0);
  r.real_s = real;
  rep.rows.push_back(r);

  uint64_t max_member = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    max_member = std::max(max_member, sim.bytes_sent_by(names[i]) - member_bytes0[i]);
  }
  const double run_s = static_cast<double>(plan.loss_run_s);
  Row b;
  b.order = kBytesRow;
  b.figure = "bytes sent per member per second (codec bytes; UDP/IP headers excluded)";
  b.result = fmt("mean %.0f B/s, busiest member %.0f B/s",
                 static_cast<double>(sim.stats().bytes_sent - bytes0) / (run_s * plan.n),
                 static_cast<double>(max_member) / run_s);
  b.over = "the 10% loss run above (no store updates)";
  b.real_s = 0;  // within the row above
  rep.rows.push_back(b);
  return rep;
}

// One member paused for 2 s every 6 s, at 10% loss.
Report pauses(Sim& sim, const Plan& plan) {
  const Clock::time_point start = Clock::now();
  const uint64_t fd0 = sim.stats().false_deaths;
  const std::string paused = nm(7);
  const uint64_t late0 = sim.swim(paused).stats().late_ticks;
  int64_t run_s = 0;
  for (; run_s < plan.pause_run_s; run_s += 6) {
    sim.pause(paused, 2000);
    sim.run_for(6000);
  }
  const uint64_t fd = sim.stats().false_deaths - fd0;
  Report rep;
  Row r;
  r.order = kPausesRow;
  r.figure = "false deaths, 10% loss, " + paused + " paused 2 s every 6 s";
  r.result = per_hour(fd, run_s);
  r.over = fmt("%lld simulated s, scaled to 1 h; %s noticed %llu late ticks", static_cast<long long>(run_s),
               paused.c_str(), static_cast<unsigned long long>(sim.swim(paused).stats().late_ticks - late0));
  if (plan.n == 100) r.target = met("zero", fd == 0);
  r.real_s = seconds_since(start);
  rep.rows.push_back(r);
  return rep;
}

// Crashes, one at a time: from the crash until every other running member holds the
// crashed one dead.
Report crashes(Sim& sim, const Plan& plan) {
  const Clock::time_point start = Clock::now();
  Report rep;
  std::string victim;
  int64_t crashed_at = 0;
  std::set<std::string> seen_dead;
  int64_t last_seen = 0;          // when the latest observer so far saw the victim dead
  int64_t first_min = INT64_MAX;  // earliest first observer over all crashes
  sim.on_output = [&](const std::string& who, const Output& out, int64_t now) {
    for (const std::string& name : out.members_changed) {
      if (name != victim) continue;
      const Member* m = sim.swim(who).member(name);
      if (m != nullptr && m->state == MemberState::kDead && seen_dead.insert(who).second) {
        last_seen = now;
        first_min = std::min(first_min, now - crashed_at);
      }
    }
  };
  std::vector<int64_t> everywhere;
  for (int c = 0; c < plan.crashes; ++c) {
    victim = nm((c * 53 + 11) % plan.n);
    seen_dead.clear();
    crashed_at = sim.now();
    sim.crash(victim);
    const size_t others = static_cast<size_t>(running_count(sim));
    bool done = false;
    while (!done && sim.now() - crashed_at < plan.crash_wait_max_ms) {
      sim.run_for(500);
      done = seen_dead.size() == others;
    }
    if (done) {
      everywhere.push_back(last_seen - crashed_at);
    } else {
      ++rep.problems;
      std::fprintf(stderr, "N=%d: crash of %s seen dead by only %zu of %zu after %s\n", plan.n, victim.c_str(),
                   seen_dead.size(), others, secs(plan.crash_wait_max_ms).c_str());
    }
    sim.run_for(2000);
  }
  sim.on_output = nullptr;
  Row r;
  r.order = kCrashesRow;
  r.figure = "crashed member dead at every other member";
  if (everywhere.empty()) {
    r.result = "NONE seen dead everywhere";
  } else {
    const int64_t p99 = percentile(everywhere, 0.99);
    r.result = "p50 " + secs(percentile(everywhere, 0.50)) + ", p99 " + secs(p99) + " (first observer at " +
               secs(first_min) + " at the earliest)";
    if (plan.n == 100) r.target = met("p99 <= 10 s", p99 <= 10000);
  }
  r.over = fmt("%zu of %d crashes, one at a time", everywhere.size(), plan.crashes);
  r.real_s = seconds_since(start);
  rep.rows.push_back(r);
  return rep;
}

void append(Report& to, const Report& from) {
  to.rows.insert(to.rows.end(), from.rows.begin(), from.rows.end());
  to.problems += from.problems;
}

Report codec_check(const Sim& sim, const Plan& plan) {
  Report r;
  if (sim.stats().over_budget != 0 || sim.stats().decode_failures != 0) {
    r.problems = 1;
    std::fprintf(stderr, "N=%d: %llu packets over budget, %llu decode failures\n", plan.n,
                 static_cast<unsigned long long>(sim.stats().over_budget),
                 static_cast<unsigned long long>(sim.stats().decode_failures));
  }
  return r;
}

// Through a pipe from the forked copy: a problems line, then one line per row, fields
// separated by the unit separator (no field holds one).
constexpr char kSep = '\x1f';

std::string serialize(const Report& r) {
  std::string out = std::to_string(r.problems) + "\n";
  for (const Row& row : r.rows) {
    out += std::to_string(row.order) + kSep + row.figure + kSep + row.result + kSep + row.over + kSep + row.target + kSep +
           fmt("%.3f", row.real_s) + "\n";
  }
  return out;
}

Report deserialize(const std::string& text) {
  Report r;
  size_t pos = text.find('\n');
  if (pos == std::string::npos) return Report{{}, 1};  // the copy died before reporting
  r.problems = std::atoi(text.substr(0, pos).c_str());
  for (size_t line = pos + 1; line < text.size();) {
    const size_t end = text.find('\n', line);
    std::vector<std::string> f;
    for (size_t a = line; a <= end;) {
      const size_t b = std::min(text.find(kSep, a), end);
      f.push_back(text.substr(a, b - a));
      a = b + 1;
    }
    if (f.size() == 6) r.rows.push_back(Row{std::atoi(f[0].c_str()), f[1], f[2], f[3], f[4], std::atof(f[5].c_str())});
    line = end + 1;
  }
  return r;
}

bool write_all(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    const ssize_t w = write(fd, s.data() + done, s.size() - done);
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}

// Joins, then runs copy B (updates, pauses) in a forked child and copy A (steady
// state, crashes) here.
Report run(const Plan& plan) {
  SimConfig cfg;
  cfg.seed = plan.seed;
  cfg.loss = kLoss;
  cfg.swim.probe_interval_ms = kIntervalMs;
  if (!plan.anti_entropy) cfg.swim.anti_entropy_settle_periods = 0;
  Sim sim(cfg);
  Report joined = join(sim, plan);

  std::fflush(nullptr);
  int fds[2];
  if (pipe(fds) != 0) {
    std::perror("pipe");
    std::exit(2);
  }
  const pid_t child = fork();
  if (child < 0) {
    std::perror("fork");
    std::exit(2);
  }
  if (child == 0) {
    close(fds[0]);
    Report b = updates(sim, plan);
    append(b, pauses(sim, plan));
    append(b, codec_check(sim, plan));
    const bool ok = write_all(fds[1], serialize(b));
    close(fds[1]);
    std::fflush(nullptr);
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  Report a = steady(sim, plan);
  append(a, crashes(sim, plan));
  append(a, codec_check(sim, plan));
  std::string text;
  char buf[4096];
  for (ssize_t got; (got = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(got));
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  Report b = deserialize(text);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++b.problems;

  Report all = joined;
  append(all, a);
  append(all, b);
  std::stable_sort(all.rows.begin(), all.rows.end(), [](const Row& x, const Row& y) { return x.order < y.order; });
  return all;
}

}  // namespace
}  // namespace ringproxy::gossip

int main(int argc, char** argv) {
  using namespace ringproxy::gossip;
  bool quick = false;
  bool anti_entropy = true;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--no-anti-entropy") == 0) {
      anti_entropy = false;
    } else if (std::strncmp(argv[i], "--seed=", 7) == 0) {
      seed = std::strtoull(argv[i] + 7, nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--seed=S] [--no-anti-entropy]\n  --quick  N = 100 only\n", argv[0]);
      return 2;
    }
  }
  // {n, seed, settle, updates, gap, loss run s, pause run s, crashes, crash wait}
  std::vector<Plan> plans;
  plans.push_back(Plan{100, seed, 10000, 200, 1000, 600, 600, 20, 30000});
  if (!quick) plans.push_back(Plan{1000, seed + 1, 4000, 6, 1000, 30, 30, 3, 30000});
  for (Plan& p : plans) p.anti_entropy = anti_entropy;

  const Clock::time_point start = Clock::now();
  std::printf("SWIM + Lifeguard in the simulator: %.0f%% loss on every packet, delay uniform 1-10 ms, "
              "probe interval %lld ms, real codec.\n",
              kLoss * 100, static_cast<long long>(kIntervalMs));
  std::printf("Seeds:");
  for (const Plan& p : plans) std::printf(" N=%d seed %llu;", p.n, static_cast<unsigned long long>(p.seed));
  std::printf(" same seed, same figures.\n");
  std::printf("After the join, two forked copies of the joined simulator run the phases: "
              "(A) 10%% loss steady state, then crashes; (B) store updates, then pauses.\n");
  std::printf("Percentiles are nearest-rank (p99 of fewer than 100 samples is the largest). "
              "False deaths are counted over the simulated time shown and scaled to one hour.\n\n");
  std::printf("| N | Figure | Result | Measured over | Target (N = 100) | Real time |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::fflush(stdout);
  int problems = 0;
  for (const Plan& p : plans) {
    const Report r = run(p);
    for (const Row& row : r.rows) {
      std::printf("| %d | %s | %s | %s | %s | %.1f s |\n", p.n, row.figure.c_str(), row.result.c_str(),
                  row.over.c_str(), row.target.c_str(), row.real_s);
    }
    std::fflush(stdout);
    problems += r.problems;
  }
  std::printf("\nTotal real time %.1f s (the two copies run at once).%s\n", seconds_since(start),
              problems == 0 ? "" : " Some runs had problems: see stderr.");
  return problems == 0 ? 0 : 1;
}
