// A member of the gossip cluster as every instance sees it (SPEC GET /members: name,
// address, state, incarnation). A plain value; the SWIM state machine (swim.h) owns the
// table of them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringproxy::gossip {

// The SWIM states plus "left" (a graceful leave, memberlist's StateLeft).
//
// Precedence when two claims about one member meet (swim.cc `supersedes`): a higher
// incarnation wins; at the same incarnation alive < suspect < dead < left, so an
// accusation stands until the member itself refutes it with a higher incarnation
// (SWIM, Das et al. 2002, section 4.2), and a leave is final for its incarnation.
// The numeric values are the wire encoding (codec.h): do not renumber.
enum class MemberState : uint8_t { kAlive = 0, kSuspect = 1, kDead = 2, kLeft = 3 };

// "alive", "suspect", "dead", "left": the words SPEC GET /members uses.
inline std::string_view to_string(MemberState state) {
  switch (state) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
  }
  return "unknown";
}

struct Member {
  std::string name;     // unique, stable across restarts (SPEC gossip.name)
  std::string address;  // "host:port" the member receives UDP on; may change on restart
  uint64_t incarnation = 0;
  MemberState state = MemberState::kAlive;
  int64_t state_change_ms = 0;  // local monotonic time this instance saw the last change
  bool operator==(const Member&) const = default;
};

}  // namespace ringproxy::gossip
