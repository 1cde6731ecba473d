// Lifeguard's local-health-aware suspicion (Dadgar, Phillips, Currey 2018, "Lifeguard:
// Local Health Awareness for More Accurate Failure Detection", section IV-B "Local
// Health Aware Suspicion"), as a pure value: the timer starts at `max` and shrinks
// toward `min` logarithmically as independent members confirm the suspicion, so a
// member that several others also fail to reach is declared dead sooner, and one that
// only a single (perhaps slow) member suspects gets the long timeout to refute.
//
// Arithmetic after hashicorp/memberlist, written anew here:
//   suspicion.go remainingSuspicionTime:
//     timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))
//     where c = confirmations so far, k = confirmations expected;
//   state.go suspectNode: k = SuspicionMult - 2, or 0 when n - 2 < k (too few others
//     to confirm: then the timeout is just min), max = SuspicionMaxTimeoutMult * min;
//   util.go suspicionTimeout: min = SuspicionMult * max(1, log10(max(1, n))) * interval.
// The accuser who started the suspicion does not count as a confirmation; each other
// accuser counts once; confirmations beyond k change nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

namespace ringproxy::gossip {

struct SuspicionTimeouts {
  int64_t min_ms = 0;
  int64_t max_ms = 0;
  uint32_t k = 0;  // expected independent confirmations
};

// Timeouts for a cluster of `n` members (alive or suspect, this one included).
// `floor_ms` raises min (and so max) to at least that: see SwimConfig::suspicion_floor_ms.
SuspicionTimeouts suspicion_timeouts(size_t n, int64_t interval_ms, uint32_t suspicion_mult,
                                     uint32_t max_timeout_mult, int64_t floor_ms);

// memberlist's remainingSuspicionTime, as a total timeout measured from the start of
// the suspicion (not yet minus the elapsed time): never below min.
int64_t suspicion_timeout_ms(uint32_t confirmations, const SuspicionTimeouts& t);

class Suspicion {
 public:
  Suspicion(std::string accuser, SuspicionTimeouts timeouts, int64_t start_ms)
      : timeouts_(timeouts), start_ms_(start_ms) {
    seen_.insert(std::move(accuser));
  }

  // Records `accuser`'s suspicion. Returns true if it was a new independent
  // confirmation that shortened the timer (memberlist Confirm: then the suspicion is
  // worth re-gossiping).
  bool confirm(const std::string& accuser) {
    if (confirmations() >= timeouts_.k) return false;
    if (!seen_.insert(accuser).second) return false;
    return true;
  }

  uint32_t confirmations() const { return static_cast<uint32_t>(seen_.size() - 1); }
  int64_t deadline_ms() const {
    const int64_t d = start_ms_ + suspicion_timeout_ms(confirmations(), timeouts_);
    return d > not_before_ms_ ? d : not_before_ms_;
  }
  // Never time out before `t` (Swim's late-timer rule: a stalled member reads its input
  // before judging anyone).
  void defer_until(int64_t t) { not_before_ms_ = t; }
  int64_t start_ms() const { return start_ms_; }
  const SuspicionTimeouts& timeouts() const { return timeouts_; }

 private:
  SuspicionTimeouts timeouts_;
  int64_t start_ms_;
  int64_t not_before_ms_ = 0;
  std::set<std::string> seen_;  // the first accuser, then each confirmer
};

}  // namespace ringproxy::gossip
