// The gossip wire format: compact, versioned, binary; every packet at most kMaxPacket
// bytes so that it fits one UDP datagram without IP fragmentation on an Ethernet path
// (1,400 is memberlist's UDPBufferSize, below the 1,500 MTU minus IP/UDP headers and
// tunnel overheads).
//
//   packet   = magic(0xA7) version(0x01) flags(1) type(1) body
//   flags    : bit 0 = kFlagAuthenticated, reserved for the transport's authentication
//              trailer (HMAC and replay counter, next session): the transport verifies
//              and strips the trailer, then decodes the rest with accepted_flags set.
//              Every other bit must be 0; decode() rejects unknown bits, so a later
//              version can give them meaning without old instances misreading it.
//   varint   = unsigned LEB128, at most 10 bytes, minimal (no redundant 0x80 groups)
//   str      = varint length, bytes (names, addresses, keys <= kMaxName; values
//              <= kMaxValue)
//   updates  = count(2 bytes, big endian, <= kMaxUpdates) update*
//   update   = 0x01 name:str address:str incarnation:varint state(1: 0..3) from:str
//            | 0x02 key:str version:varint origin:str tombstone(1: 0|1) value:str
//   u64      = 8 bytes, big endian
//   store_bound = varint: the bound + 1, 0 for "infinite" (UINT64_MAX), its usual value
//   bodies   ping      seq from from_address target store_bound:varint store_digest:u64 updates
//            ack       seq from store_bound:varint store_digest:u64 updates
//            ping-req  seq from from_address target target_address updates
//            nack      seq from updates
//            gossip    from updates
//            push-pull pflags(1: bit0 response, bit1 join) seq part:varint parts:varint
//                      from from_address updates          (part < parts <= kMaxParts)
//
// Push-pull carries the whole state (every member, every store entry), which can exceed
// one packet: the sender splits it into `parts` packets of at most kMaxPacket bytes,
// each a self-contained push-pull message with a slice of the updates. Since merging is
// idempotent and order-free (state.h, swim.cc), a receiver merges each part on its own;
// nothing is reassembled and a lost part only delays convergence to the next push-pull.
//
// Decoding accepts exactly what encode() produces: anything malformed, truncated,
// oversized, with an unknown version, type, flag, state or update kind, a non-minimal
// varint, a length past the end or trailing bytes is rejected with a reason. So every
// accepted packet re-encodes to the same bytes (tests/gossip/codec_test.cc checks it on
// random and mutated input). Allocation is bounded by the input: every length is checked
// against the bytes that remain, and counts are capped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "gossip/message.h"

namespace ringproxy::gossip {

inline constexpr uint8_t kMagic = 0xA7;
inline constexpr uint8_t kWireVersion = 1;
inline constexpr uint8_t kFlagAuthenticated = 0x01;
inline constexpr size_t kMaxPacket = 1400;
inline constexpr size_t kHeaderSize = 4;
// Field caps, chosen so that any single update fits in any message within the default
// budget (kMaxPacket - the auth reserve, swim.h) next to the largest header: a ping-req
// with four 128-byte names is ~540 bytes, the largest store update ~790 bytes. A backend
// entry ({address, weight, drained}) is far below 512 bytes.
inline constexpr size_t kMaxName = 128;    // member names, addresses, keys, origins
inline constexpr size_t kMaxValue = 512;   // store values
inline constexpr size_t kMaxUpdates = 512; // a 1,400-byte packet holds far fewer
inline constexpr uint32_t kMaxParts = 4096;

struct Encoded {
  std::vector<uint8_t> bytes;
  // message.updates[0, updates_sent) are in `bytes`; the rest did not fit in the budget
  // (the encoder stops at the first update that does not fit, so the caller can resend
  // the remainder in order).
  size_t updates_sent = 0;
};

// Encodes `msg` in at most `budget` bytes (<= kMaxPacket; the transport passes less to
// leave room for its trailer). Preconditions (asserted; Swim guarantees them): strings
// within kMaxName / kMaxValue, parts within kMaxParts, and the message without updates
// fits the budget. `flags` goes into the header unchanged.
Encoded encode(const Message& msg, size_t budget = kMaxPacket, uint8_t flags = 0);

// Exact sizes, so that Swim can pack piggybacked updates before encoding.
size_t encoded_size(const Update& update);
size_t encoded_size_without_updates(const Message& msg);  // header, body, update count

struct Decoded {
  std::optional<Message> message;
  uint8_t flags = 0;
  std::string_view error;  // a static string when !message, e.g. "truncated"
};

// Never throws, never reads past `bytes`, never allocates more than about the input
// size. `accepted_flags`: header flag bits the caller has handled (see above).
Decoded decode(std::span<const uint8_t> bytes, uint8_t accepted_flags = 0);

}  // namespace ringproxy::gossip
