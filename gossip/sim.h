// A deterministic discrete-event simulator for SWIM (STYLE rule 3): N real Swim
// instances, a virtual clock, and a simulated network with per-link loss, a delay
// distribution, partitions, paused members (a process that reads nothing for a while,
// as in a GC pause or a stopped VM), crashes and restarts. Everything random comes from
// one seed, so a run replays exactly; nothing sleeps, so thousands of simulated seconds
// take well under a second at N = 100.
//
// Every packet goes through the real codec (encode, then decode at delivery) unless
// through_codec is off; the simulator counts packets that did not fit the budget or did
// not decode, which tests require to be zero.
//
// Network model: each packet is lost with the link's probability (default `loss`, or a
// per-link value), else delivered after a delay uniform in [delay_min_ms, delay_max_ms]
// (so packets may be reordered). Members in different partition groups cannot reach
// each other. A paused member's inbound packets wait in its socket buffer (up to
// kInboxCap, beyond which they are dropped, as a full UDP receive buffer drops); when it
// resumes, its overdue timer fires first (as libuv runs timers before polling for I/O),
// then it reads the buffered packets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "gossip/rng.h"
#include "gossip/swim.h"

namespace ringproxy::gossip {

struct SimConfig {
  uint64_t seed = 1;
  double loss = 0.0;
  int64_t delay_min_ms = 1;
  int64_t delay_max_ms = 10;
  bool through_codec = true;
  SwimConfig swim;  // template for every member; name, address, incarnation set per member
};

struct SimStats {
  uint64_t packets_sent = 0;
  uint64_t packets_lost = 0;       // by loss, partition, crash or a full inbox
  uint64_t bytes_sent = 0;
  uint64_t over_budget = 0;        // encode() could not fit every update: a Swim bug
  uint64_t decode_failures = 0;    // a packet we encoded did not decode: a codec bug
  uint64_t false_deaths = 0;       // a member saw another dead while it was running
};

class Sim {
 public:
  static constexpr size_t kInboxCap = 4096;

  explicit Sim(SimConfig config);

  // Starts a member `name` now and joins it through the members named in `seeds` (their
  // current addresses). Returns its index.
  size_t add(const std::string& name, const std::vector<std::string>& seeds = {});

  void run_until(int64_t t_ms);
  void run_for(int64_t ms) { run_until(now_ + ms); }
  int64_t now() const { return now_; }

  // Faults.
  void set_loss(double p) { cfg_.loss = p; }
  void set_link_loss(const std::string& a, const std::string& b, double p);  // both ways
  // Members listed in `island` can talk only among themselves; everyone else likewise.
  void partition(const std::vector<std::string>& island);
  void heal();
  void pause(const std::string& name, int64_t duration_ms);
  void crash(const std::string& name);
  // Same name, a new address and an incarnation above anything it had; joins through
  // its original seeds.
  void restart(const std::string& name);
  void leave(const std::string& name);  // graceful: keeps running leave_grace_ms, then stops

  // Application writes at one member.
  void put(const std::string& name, const std::string& key, const std::string& value);
  void erase(const std::string& name, const std::string& key);

  // Observation.
  const Swim& swim(const std::string& name) const;
  bool running(const std::string& name) const;  // started, not crashed, not stopped
  std::vector<std::string> names() const;
  const std::string& address(const std::string& name) const;
  const SimStats& stats() const { return stats_; }
  uint64_t bytes_sent_by(const std::string& name) const;
  // Called after every call into a member with its output (after the simulator's own
  // bookkeeping): tests record when something became true.
  std::function<void(const std::string& member, const Output& out, int64_t now)> on_output;

 private:
  struct Node {
    std::string name;
    std::string address;
    std::vector<std::string> seeds;  // names
    std::unique_ptr<Swim> swim;
    bool running = false;
    uint64_t generation = 0;  // bumps on crash/restart: events of an earlier life are void
    uint64_t tick_token = 0;  // only the latest scheduled tick counts
    int64_t paused_until = 0;
    bool resume_scheduled = false;
    int group = 0;
    std::deque<std::pair<std::string, Message>> inbox;  // (from address, message) while paused
    uint64_t bytes_sent = 0;
  };
  enum class EventKind : uint8_t { kDeliver, kTick, kResume, kStop };
  // Heap entries stay small (moved on every heap operation); a packet's payload lives
  // in payloads_, recycled through free_payloads_.
  struct Event {
    int64_t at = 0;
    uint64_t order = 0;  // FIFO among equal times: determinism
    EventKind kind = EventKind::kTick;
    size_t node = 0;
    uint64_t generation = 0;
    uint64_t token = 0;  // tick: the node's tick_token; deliver: index into payloads_
  };
  struct Payload {
    std::string from_address;
    std::vector<uint8_t> bytes;  // through_codec
    Message message;             // otherwise
  };

  void push(Event e);
  void handle(const Event& e);
  void apply(size_t node, Output out);
  void start(size_t node, uint64_t incarnation);
  void deliver(size_t node, const std::string& from, const Message& m);
  size_t index(const std::string& name) const;
  static std::string name_address(const std::string& name, uint64_t generation);
  double link_loss(size_t a, size_t b) const;

  SimConfig cfg_;
  Rng rng_;
  int64_t now_ = 0;
  uint64_t order_ = 0;
  std::vector<Event> heap_;
  std::vector<Payload> payloads_;
  std::vector<size_t> free_payloads_;
  std::vector<Node> nodes_;
  std::unordered_map<std::string, size_t> by_name_;
  std::unordered_map<std::string, size_t> by_address_;
  std::map<std::pair<size_t, size_t>, double> link_loss_;
  SimStats stats_;
};

}  // namespace ringproxy::gossip
