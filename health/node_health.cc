#include "health/node_health.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

namespace ringproxy {

namespace {

constexpr uint64_t kForever = std::numeric_limits<uint64_t>::max();

// A clock that went backwards (it must not; the caller's bug) counts as no time passed.
uint64_t elapsed(uint64_t since, uint64_t now) { return now > since ? now - since : 0; }

uint64_t add_saturated(uint64_t a, uint64_t b) { return b > kForever - a ? kForever : a + b; }

uint32_t increment_saturated(uint32_t n) {
  return n == std::numeric_limits<uint32_t>::max() ? n : n + 1;
}

std::string plural(uint32_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

std::string describe_hold(const NodeHealth& node, uint64_t now) {
  return "flapping: held down for " + std::to_string(elapsed(now, node.held_until())) +
         " ms (penalty " + std::to_string(std::lround(node.penalty(now))) + ", reuse at " +
         std::to_string(std::lround(health_policy::kFlapReuse)) + ")";
}

HealthEvent make_event(const std::string& name, HealthEventKind kind, HealthState from,
                       HealthState to, std::string reason) {
  return HealthEvent{name, kind, from, to, std::move(reason)};
}

// splitmix64's finaliser (Steele, Lea, Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014). Ring hashes are XXH3 and already uniform, but admitting
// the keys whose ring hash is small would admit one arc of the ring, so the keys turned
// away would all fall on the same few successors; mixing spreads them over all of them.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

std::string_view to_string(HealthState state) {
  switch (state) {
    case HealthState::kUp:
      return "up";
    case HealthState::kDown:
      return "down";
    case HealthState::kEjected:
      return "ejected";
  }
  return "unknown";
}

std::string_view to_string(HealthEventKind kind) {
  switch (kind) {
    case HealthEventKind::kDown:
      return "down";
    case HealthEventKind::kEjected:
      return "ejected";
    case HealthEventKind::kUp:
      return "up";
    case HealthEventKind::kEjectionRefused:
      return "ejection_refused";
    case HealthEventKind::kHeldDown:
      return "held_down";
  }
  return "unknown";
}

namespace health_policy {

uint64_t ejection_cap_ms(uint32_t eject_base_ms) {
  return std::max(kEjectionCapMs, kEjectionCapBaseMultiple * eject_base_ms);
}

uint64_t ejection_duration_ms(uint32_t eject_base_ms, uint32_t k) {
  const uint64_t cap = ejection_cap_ms(eject_base_ms);
  // base < 2^32, so base << 31 cannot overflow and, for base >= 1, is far above any
  // cap (which is at most 10 * base or 300 s); larger k only saturate.
  const uint32_t doublings = k == 0 ? 0 : std::min<uint32_t>(k - 1, 31);
  return std::min(cap, uint64_t{eject_base_ms} << doublings);
}

uint64_t healthy_spell_ms(uint32_t eject_base_ms) { return ejection_cap_ms(eject_base_ms); }

double decayed_penalty(double penalty, uint64_t elapsed_ms) {
  if (penalty <= 0.0 || elapsed_ms == 0) return penalty;
  return penalty *
         std::exp2(-static_cast<double>(elapsed_ms) / static_cast<double>(kFlapHalfLifeMs));
}

uint64_t hold_ms(double penalty) {
  if (penalty <= kFlapReuse) return 0;
  const double ms = static_cast<double>(kFlapHalfLifeMs) * std::log2(penalty / kFlapReuse);
  return static_cast<uint64_t>(std::ceil(ms));
}

}  // namespace health_policy

// --- NodeHealth --------------------------------------------------------------------

double NodeHealth::penalty(uint64_t now) const {
  return health_policy::decayed_penalty(penalty_, elapsed(penalty_at_, now));
}

double NodeHealth::weight_fraction(uint64_t now) const {
  if (ramp_end_ == 0 || now >= ramp_end_) return 1.0;
  assert(ramp_end_ > ramp_start_);
  const double progress = static_cast<double>(elapsed(ramp_start_, now)) /
                          static_cast<double>(ramp_end_ - ramp_start_);
  return std::clamp(progress, health_policy::kSlowStartFloor, 1.0);
}

bool NodeHealth::admits(uint64_t key_hash, uint64_t now) const {
  return slow_start_admits(key_hash, ramp_start_, ramp_end_, now);
}

bool slow_start_admits(uint64_t key_hash, uint64_t ramp_start, uint64_t ramp_end, uint64_t now) {
  if (ramp_end == 0 || now >= ramp_end) return true;
  const double progress = now <= ramp_start ? 0.0
                                            : static_cast<double>(now - ramp_start) /
                                                  static_cast<double>(ramp_end - ramp_start);
  const double fraction = std::clamp(progress, health_policy::kSlowStartFloor, 1.0);
  // The top 53 bits as a double in [0, 1): exact, and monotone in the key's position, so
  // a growing fraction only ever adds keys.
  const double position = static_cast<double>(mix(key_hash) >> 11) * 0x1p-53;
  return position < fraction;
}

// --- HealthTable -------------------------------------------------------------------

HealthTable::HealthTable(HealthConfig config) : config_(std::move(config)) {}

uint32_t HealthTable::rise() const { return std::max<uint32_t>(config_.rise, 1); }
uint32_t HealthTable::fall() const { return std::max<uint32_t>(config_.fall, 1); }

bool HealthTable::add(std::string_view name, uint64_t now, Start start) {
  auto [it, inserted] = nodes_.try_emplace(std::string(name));
  if (!inserted) return false;
  NodeHealth& node = it->second;
  node.up_since_ = now;
  if (start == Start::kSlowStart && config_.slow_start_ms > 0) {
    node.ramp_start_ = now;
    node.ramp_end_ = add_saturated(now, config_.slow_start_ms);
  }
  return true;
}

bool HealthTable::remove(std::string_view name) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return false;
  if (it->second.state_ == HealthState::kEjected) {
    assert(ejected_ > 0);
    --ejected_;
  }
  nodes_.erase(it);
  return true;
}

void HealthTable::set_nodes(std::span<const std::string> names, uint64_t now, Start start) {
  const std::set<std::string_view> wanted(names.begin(), names.end());
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (wanted.contains(it->first)) {
      ++it;
      continue;
    }
    if (it->second.state_ == HealthState::kEjected) --ejected_;
    it = nodes_.erase(it);
  }
  for (std::string_view name : wanted) add(name, now, start);
}

const NodeHealth* HealthTable::find(std::string_view name) const {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : &it->second;
}

void HealthTable::advance(NodeHealth& node, uint64_t now) const {
  if (node.held_ && now >= node.held_until_) {
    node.held_ = false;
    node.up_while_held_ = false;
  }
  if (node.state_ == HealthState::kUp && node.ejections_ > 0 &&
      elapsed(node.up_since_, now) >= health_policy::healthy_spell_ms(config_.eject_base_ms)) {
    node.ejections_ = 0;
  }
}

void HealthTable::set_state(NodeHealth& node, HealthState to) {
  if (node.state_ == HealthState::kEjected) --ejected_;
  if (to == HealthState::kEjected) ++ejected_;
  node.state_ = to;
  assert(ejected_ <= nodes_.size());
}

std::string HealthTable::leave_up(NodeHealth& node, HealthState to, uint64_t now) {
  assert(node.state_ == HealthState::kUp && to != HealthState::kUp);
  assert(!node.held_);  // a held node is never up: come_up() requires the hold over
  set_state(node, to);
  node.passes_ = 0;
  node.request_failures_ = 0;
  node.ramp_start_ = node.ramp_end_ = 0;
  // RFC 2439 section 4: on each flap, decay the figure of merit to now, add the
  // penalty, cap it at the ceiling; suppress when above the cutoff.
  node.penalty_ = std::min(node.penalty(now) + health_policy::kFlapPenalty,
                           health_policy::kFlapCeiling);
  node.penalty_at_ = now;
  if (node.penalty_ <= health_policy::kFlapSuppress) return "";
  node.held_ = true;
  node.up_while_held_ = false;
  node.held_until_ = add_saturated(now, health_policy::hold_ms(node.penalty_));
  return "; " + describe_hold(node, now);
}

HealthEvent HealthTable::come_up(const std::string& name, NodeHealth& node, uint64_t now,
                                 std::string reason) {
  assert(node.state_ != HealthState::kUp && !node.held_);
  const HealthState from = node.state_;
  set_state(node, HealthState::kUp);
  node.failures_ = 0;
  node.request_failures_ = 0;
  node.up_while_held_ = false;
  node.up_since_ = now;
  node.ramp_start_ = node.ramp_end_ = 0;
  if (config_.slow_start_ms > 0) {
    node.ramp_start_ = now;
    node.ramp_end_ = add_saturated(now, config_.slow_start_ms);
    reason += ", slow start over " + std::to_string(config_.slow_start_ms) + " ms";
  }
  return make_event(name, HealthEventKind::kUp, from, HealthState::kUp, std::move(reason));
}

std::optional<HealthEvent> HealthTable::on_check(std::string_view name, Outcome outcome,
                                                 uint64_t now) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return std::nullopt;
  const std::string& key = it->first;
  NodeHealth& node = it->second;
  advance(node, now);
  const HealthState state = node.state_;

  if (outcome == Outcome::kFailure) {
    node.passes_ = 0;
    node.failures_ = increment_saturated(node.failures_);
    if (node.failures_ < fall()) return std::nullopt;
    if (state == HealthState::kUp) {
      std::string reason = plural(node.failures_, "failed check", "failed checks");
      reason += leave_up(node, HealthState::kDown, now);
      return make_event(key, HealthEventKind::kDown, state, HealthState::kDown,
                        std::move(reason));
    }
    if (node.held_ && node.up_while_held_) {
      // A flap while held (RFC 2439: a route withdrawn while suppressed is charged as
      // well): more penalty, a longer hold, up to the ceiling.
      node.up_while_held_ = false;
      node.penalty_ = std::min(node.penalty(now) + health_policy::kFlapPenalty,
                               health_policy::kFlapCeiling);
      node.penalty_at_ = now;
      node.held_until_ = add_saturated(now, health_policy::hold_ms(node.penalty_));
      return make_event(key, HealthEventKind::kHeldDown, state, state,
                        plural(node.failures_, "failed check", "failed checks") +
                            " while held down; " + describe_hold(node, now));
    }
    return std::nullopt;
  }

  node.failures_ = 0;
  // Checks passing during an ejection do not count toward its end (file comment).
  if (state == HealthState::kEjected && now < node.ejected_until_) return std::nullopt;
  node.passes_ = increment_saturated(node.passes_);
  if (state == HealthState::kUp || node.passes_ < rise()) return std::nullopt;
  if (node.held_) {
    if (node.up_while_held_) return std::nullopt;  // said so already
    node.up_while_held_ = true;
    return make_event(key, HealthEventKind::kHeldDown, state, state,
                      plural(node.passes_, "passing check", "passing checks") + ", but " +
                          describe_hold(node, now));
  }
  std::string reason = plural(node.passes_, "passing check", "passing checks");
  if (state == HealthState::kEjected) reason += " after the ejection ended";
  return come_up(key, node, now, std::move(reason));
}

std::optional<HealthEvent> HealthTable::on_request(std::string_view name, Outcome outcome,
                                                   uint64_t now) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return std::nullopt;
  const std::string& key = it->first;
  NodeHealth& node = it->second;
  advance(node, now);
  if (node.state_ != HealthState::kUp) return std::nullopt;  // a straggler: ignored
  if (outcome == Outcome::kSuccess) {
    node.request_failures_ = 0;
    return std::nullopt;
  }
  node.request_failures_ = increment_saturated(node.request_failures_);
  const uint32_t threshold = config_.eject_after_failures;
  if (threshold == 0 || node.request_failures_ < threshold) return std::nullopt;

  std::string reason =
      plural(node.request_failures_, "consecutive request failure", "consecutive request failures");
  // Envoy starts the count over after every ejection attempt, allowed or not.
  node.request_failures_ = 0;
  const uint64_t max_percent = std::min<uint32_t>(config_.max_ejected_percent, 100);
  if ((uint64_t{ejected_} + 1) * 100 > max_percent * nodes_.size()) {
    reason += ", ejection refused: max_ejected_percent " + std::to_string(max_percent) +
              " reached (" + std::to_string(ejected_) + " of " + std::to_string(nodes_.size()) +
              " nodes ejected)";
    return make_event(key, HealthEventKind::kEjectionRefused, HealthState::kUp,
                      HealthState::kUp, std::move(reason));
  }
  node.ejections_ = increment_saturated(node.ejections_);
  const uint64_t duration =
      health_policy::ejection_duration_ms(config_.eject_base_ms, node.ejections_);
  node.ejected_until_ = add_saturated(now, duration);
  reason += ", ejected for " + std::to_string(duration) + " ms (ejection " +
            std::to_string(node.ejections_) + ")";
  reason += leave_up(node, HealthState::kEjected, now);
  return make_event(key, HealthEventKind::kEjected, HealthState::kUp, HealthState::kEjected,
                    std::move(reason));
}

std::vector<HealthEvent> HealthTable::tick(uint64_t now) {
  std::vector<HealthEvent> events;
  for (auto& [name, node] : nodes_) {
    const bool was_held = node.held_;
    advance(node, now);
    // Passes are counted only after an ejection ended, so enough of them means the
    // checks are up and only the hold kept the node out.
    if (was_held && !node.held_ && node.state_ != HealthState::kUp &&
        node.passes_ >= rise()) {
      events.push_back(come_up(
          name, node, now,
          plural(node.passes_, "passing check", "passing checks") + ", flap damping over"));
    }
  }
  return events;
}

std::optional<uint64_t> HealthTable::next_deadline() const {
  std::optional<uint64_t> next;
  auto consider = [&next](uint64_t t) { next = next ? std::min(*next, t) : t; };
  const uint64_t spell = health_policy::healthy_spell_ms(config_.eject_base_ms);
  for (const auto& [name, node] : nodes_) {
    if (node.held_) consider(node.held_until_);
    if (node.state_ == HealthState::kUp && node.ejections_ > 0) {
      consider(add_saturated(node.up_since_, spell));
    }
  }
  return next;
}

}  // namespace ringproxy
