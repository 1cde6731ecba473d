// The messages SWIM instances exchange, as values. codec.h turns them into bytes and
// back; swim.h produces and consumes them. One struct for every type keeps the state
// machine's plumbing simple; each type uses only the fields listed beside it, and the
// codec writes only those (the others decode as their defaults).
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "gossip/member.h"
#include "gossip/state.h"

namespace ringproxy::gossip {

// A claim about one member, piggybacked or in a push-pull. `from` is who made the claim
// for suspect and dead (the accuser: Lifeguard counts independent confirmations by it,
// memberlist's suspect.From); empty for alive and left.
struct MemberUpdate {
  std::string name;
  std::string address;
  uint64_t incarnation = 0;
  MemberState state = MemberState::kAlive;
  std::string from;
  bool operator==(const MemberUpdate&) const = default;
};

// One entry of the application store (state.h).
struct KvUpdate {
  std::string key;
  KvEntry entry;
  bool operator==(const KvUpdate&) const = default;
};

using Update = std::variant<MemberUpdate, KvUpdate>;

// The numeric values are the wire encoding: do not renumber.
enum class MessageType : uint8_t {
  kPing = 1,      // seq, from, from_address, target, store_bound, store_digest, updates
  kAck = 2,       // seq, from, store_bound, store_digest, updates
  kPingReq = 3,   // seq, from, from_address, target, target_address, updates
  kNack = 4,      // seq, from, updates (Lifeguard: the relay got no ack from the target)
  kGossip = 5,    // from, updates (memberlist's gossip to GossipNodes random members)
  kPushPull = 6,  // seq, from, from_address, response, join, part, parts, updates
};

struct Message {
  MessageType type = MessageType::kPing;
  uint64_t seq = 0;
  std::string from;            // sender's member name
  std::string from_address;    // the address the sender receives on, as it advertises it
  std::string target;          // ping: the name the sender means to reach ("" = whoever
                               // answers at that address, used for seeds); ping-req: the
                               // member to probe
  std::string target_address;  // ping-req: where to probe it
  bool response = false;       // push-pull: a reply (the initiator's state came first)
  bool join = false;           // push-pull: the sender is joining (for logs and metrics)
  uint32_t part = 0;           // push-pull: this packet is part `part` of `parts` (0-based)
  uint32_t parts = 1;
  std::vector<Update> updates;
  // Ping and ack, for anti-entropy (swim.h): the sender's settled bound (a store
  // version; every entry it holds at or below it arrived a while ago) and
  // KvStore::digest_upto(store_bound).
  uint64_t store_bound = 0;
  uint64_t store_digest = 0;
  bool operator==(const Message&) const = default;
};

}  // namespace ringproxy::gossip
