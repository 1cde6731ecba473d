// Wire codec: round trips for every message type, the 1,400-byte cap, and robustness
// against random, truncated and mutated input (every accepted packet must re-encode to
// the same bytes, since the format is canonical: codec.h).
#include "gossip/codec.h"

#include <gtest/gtest.h>

#include "gossip/rng.h"

namespace ringproxy::gossip {
namespace {

MemberUpdate member_update(int i, MemberState s = MemberState::kSuspect) {
  return MemberUpdate{"node-" + std::to_string(i), "10.0.0." + std::to_string(i) + ":7946",
                      static_cast<uint64_t>(i) * 1000003, s, s == MemberState::kSuspect ? "accuser" : ""};
}
KvUpdate kv_update(int i, bool tomb = false) {
  return KvUpdate{"backend/cache-" + std::to_string(i),
                  KvEntry{tomb ? "" : "{\"address\":\"127.0.0.1:900" + std::to_string(i % 10) + "\"}",
                          static_cast<uint64_t>(i) << 40, "proxy-a", tomb}};
}

std::vector<Message> samples() {
  std::vector<Message> out;
  Message ping{MessageType::kPing, 42, "a", "10.0.0.1:7946", "b", "", false, false, 0, 1,
               {member_update(1), kv_update(2)}};
  ping.store_digest = 0x0123456789abcdefULL;  // every byte distinct: catches byte order
  ping.store_bound = 4000;
  out.push_back(ping);
  Message ack;
  ack.type = MessageType::kAck;
  ack.seq = 1ULL << 63;  // the largest varints
  ack.from = "b";
  ack.store_digest = ~0ULL;
  ack.store_bound = UINT64_MAX;
  ack.updates = {member_update(3, MemberState::kAlive), member_update(4, MemberState::kDead),
                 member_update(5, MemberState::kLeft)};
  out.push_back(ack);
  Message req{MessageType::kPingReq, 7, "a", "10.0.0.1:7946", "c", "10.0.0.3:7946", false, false, 0, 1, {}};
  out.push_back(req);
  Message nack;
  nack.type = MessageType::kNack;
  nack.seq = 0;
  nack.from = "relay";
  nack.updates = {kv_update(9, true)};
  out.push_back(nack);
  Message g;
  g.type = MessageType::kGossip;
  g.from = "";
  g.updates = {kv_update(1), kv_update(2)};
  out.push_back(g);
  Message pp{MessageType::kPushPull, 99, "a", "[::1]:7946", "", "", true, true, 3, 5, {member_update(1), kv_update(1)}};
  out.push_back(pp);
  Message pp2{MessageType::kPushPull, 1, "z", "z:1", "", "", false, false, 0, 1, {}};
  out.push_back(pp2);
  return out;
}

TEST(Codec, RoundTripsEveryMessageType) {
  for (const Message& m : samples()) {
    Encoded e = encode(m);
    EXPECT_EQ(e.updates_sent, m.updates.size());
    EXPECT_EQ(e.bytes.size(), encoded_size_without_updates(m) + [&] {
      size_t s = 0;
      for (const Update& u : m.updates) s += encoded_size(u);
      return s;
    }());
    Decoded d = decode(e.bytes);
    ASSERT_TRUE(d.message) << d.error;
    EXPECT_EQ(*d.message, m) << "type " << static_cast<int>(m.type);
  }
}

TEST(Codec, HeaderLayout) {
  Encoded e = encode(samples()[0]);
  ASSERT_GE(e.bytes.size(), 4u);
  EXPECT_EQ(e.bytes[0], kMagic);
  EXPECT_EQ(e.bytes[1], kWireVersion);
  EXPECT_EQ(e.bytes[2], 0);
  EXPECT_EQ(e.bytes[3], static_cast<uint8_t>(MessageType::kPing));
}

TEST(Codec, PacksUpdatesUpToTheBudgetAndReportsTheRest) {
  Message m = samples()[0];
  m.updates.clear();
  for (int i = 0; i < 200; ++i) m.updates.push_back(kv_update(i));
  Encoded e = encode(m);
  EXPECT_LE(e.bytes.size(), kMaxPacket);
  EXPECT_GT(e.updates_sent, 5u);
  EXPECT_LT(e.updates_sent, m.updates.size());
  // The next update would not have fitted.
  EXPECT_GT(e.bytes.size() + encoded_size(m.updates[e.updates_sent]), kMaxPacket);
  Decoded d = decode(e.bytes);
  ASSERT_TRUE(d.message) << d.error;
  ASSERT_EQ(d.message->updates.size(), e.updates_sent);
  EXPECT_EQ(d.message->updates.back(), m.updates[e.updates_sent - 1]);
  // A smaller budget (room for the auth trailer) is honoured too.
  Encoded small = encode(m, 1000);
  EXPECT_LE(small.bytes.size(), 1000u);
  EXPECT_LT(small.updates_sent, e.updates_sent);
}

TEST(Codec, RejectsBadHeaders) {
  const std::vector<uint8_t> good = encode(samples()[1]).bytes;
  auto with = [&](size_t at, uint8_t v) {
    std::vector<uint8_t> b = good;
    b[at] = v;
    return decode(b);
  };
  EXPECT_EQ(with(0, 0x00).error, "bad magic");
  EXPECT_EQ(with(1, 2).error, "unknown version");
  EXPECT_EQ(with(2, kFlagAuthenticated).error, "unknown flags");
  EXPECT_EQ(with(2, 0x80).error, "unknown flags");
  EXPECT_EQ(with(3, 0).error, "unknown message type");
  EXPECT_EQ(with(3, 7).error, "unknown message type");
  // The transport, having checked and stripped its trailer, accepts its flag.
  std::vector<uint8_t> authed = good;
  authed[2] = kFlagAuthenticated;
  Decoded d = decode(authed, kFlagAuthenticated);
  ASSERT_TRUE(d.message);
  EXPECT_EQ(d.flags, kFlagAuthenticated);
  EXPECT_EQ(decode(std::span<const uint8_t>()).error, "truncated");
}

TEST(Codec, RejectsTrailingBytesAndOversizedPackets) {
  std::vector<uint8_t> b = encode(samples()[0]).bytes;
  b.push_back(0);
  EXPECT_EQ(decode(b).error, "trailing bytes");
  std::vector<uint8_t> big(kMaxPacket + 1, 0);
  big[0] = kMagic;
  big[1] = kWireVersion;
  EXPECT_EQ(decode(big).error, "oversized packet");
}

TEST(Codec, RejectsNonCanonicalAndOutOfRangeFields) {
  // gossip, from = "" written as a non-minimal varint 0x80 0x00.
  std::vector<uint8_t> b = {kMagic, kWireVersion, 0, 5, 0x80, 0x00, 0, 0};
  EXPECT_EQ(decode(b).error, "non-minimal varint");
  // A ping whose seq varint has 11 bytes.
  std::vector<uint8_t> v = {kMagic, kWireVersion, 0, 1};
  for (int i = 0; i < 10; ++i) v.push_back(0xff);
  v.push_back(0x01);
  EXPECT_FALSE(decode(v).message);
  // A 10-byte varint above 2^64.
  std::vector<uint8_t> o = {kMagic, kWireVersion, 0, 1};
  for (int i = 0; i < 9; ++i) o.push_back(0xff);
  o.push_back(0x02);
  EXPECT_EQ(decode(o).error, "varint overflows 64 bits");
  // Update count above the cap.
  std::vector<uint8_t> c = {kMagic, kWireVersion, 0, 5, 0, 0x02, 0x01};
  EXPECT_EQ(decode(c).error, "too many updates");
  // A string longer than kMaxName.
  std::vector<uint8_t> s = {kMagic, kWireVersion, 0, 5, 0x81, 0x01};  // length 129
  s.resize(s.size() + 129, 'x');
  s.push_back(0);
  s.push_back(0);
  EXPECT_EQ(decode(s).error, "string too long");
  // A length past the end.
  std::vector<uint8_t> t = {kMagic, kWireVersion, 0, 5, 10, 'a', 'b'};
  EXPECT_EQ(decode(t).error, "truncated");
  // Unknown member state, update kind, tombstone flag, push-pull part numbers.
  Message g;
  g.type = MessageType::kGossip;
  g.from = "x";
  g.updates = {member_update(1, MemberState::kAlive)};
  std::vector<uint8_t> st = encode(g).bytes;
  // The state byte comes just before the (empty) `from` of the update: second to last.
  ASSERT_EQ(st[st.size() - 2], 0);
  st[st.size() - 2] = 4;
  EXPECT_EQ(decode(st).error, "unknown member state");
  std::vector<uint8_t> kind = encode(g).bytes;
  kind[kHeaderSize + 2 + 2] = 3;  // header, from "x", count, then the kind byte
  EXPECT_EQ(decode(kind).error, "unknown update kind");
  Message pp{MessageType::kPushPull, 1, "a", "b", "", "", false, false, 0, 1, {}};
  std::vector<uint8_t> ppb = encode(pp).bytes;
  ppb[kHeaderSize + 2] = 1;  // part 1 of 1
  EXPECT_EQ(decode(ppb).error, "bad push-pull part numbers");
  ppb = encode(pp).bytes;
  ppb[kHeaderSize] = 4;
  EXPECT_EQ(decode(ppb).error, "unknown push-pull flags");
  // An ack: seq 0, from "", bound 300 (301 = 0xad 0x02), digest 0x0102030405060708.
  std::vector<uint8_t> ack = {kMagic, kWireVersion, 0, 2, 0, 0, 0xad, 0x02, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0};
  ASSERT_TRUE(decode(ack).message) << decode(ack).error;
  EXPECT_EQ(decode(ack).message->store_bound, 300u);
  EXPECT_EQ(decode(ack).message->store_digest, 0x0102030405060708ULL);
  ack[6] = 0;  // bound "infinite": one byte
  ack.erase(ack.begin() + 7);
  ASSERT_TRUE(decode(ack).message) << decode(ack).error;
  EXPECT_EQ(decode(ack).message->store_bound, UINT64_MAX);
  ack.pop_back();
  EXPECT_EQ(decode(ack).error, "truncated");
}

// Every proper prefix of a valid packet is rejected.
TEST(CodecFuzz, EveryTruncationIsRejected) {
  for (const Message& m : samples()) {
    const std::vector<uint8_t> b = encode(m).bytes;
    for (size_t n = 0; n < b.size(); ++n) {
      Decoded d = decode(std::span<const uint8_t>(b.data(), n));
      EXPECT_FALSE(d.message) << "prefix " << n << " of type " << static_cast<int>(m.type);
      EXPECT_FALSE(d.error.empty());
    }
  }
}

// Any accepted input decodes to a message that encodes back to exactly that input.
void expect_consistent(const std::vector<uint8_t>& b) {
  Decoded d = decode(b);
  if (!d.message) {
    EXPECT_FALSE(d.error.empty());
    return;
  }
  Encoded again = encode(*d.message, kMaxPacket, d.flags);
  EXPECT_EQ(again.updates_sent, d.message->updates.size());
  EXPECT_EQ(again.bytes, b);
}

TEST(CodecFuzz, BitFlipsAreRejectedOrDecodedConsistently) {
  for (const Message& m : samples()) {
    const std::vector<uint8_t> b = encode(m).bytes;
    for (size_t i = 0; i < b.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::vector<uint8_t> x = b;
        x[i] ^= static_cast<uint8_t>(1u << bit);
        expect_consistent(x);
      }
    }
  }
}

TEST(CodecFuzz, RandomBytesAndRandomMutationsNeverCrash) {
  Rng rng(12345);
  const std::vector<Message> ms = samples();
  size_t accepted = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> b;
    if (iter % 2 == 0) {
      // Pure noise behind a valid header, so that the body parser is exercised.
      b.resize(rng.below(64));
      for (uint8_t& c : b) c = static_cast<uint8_t>(rng.next());
      b.insert(b.begin(), {kMagic, kWireVersion, 0, static_cast<uint8_t>(1 + rng.below(6))});
    } else {
      b = encode(ms[rng.below(ms.size())]).bytes;
      const int edits = 1 + static_cast<int>(rng.below(4));
      for (int e = 0; e < edits; ++e) {
        const uint64_t op = rng.below(3);
        const size_t at = static_cast<size_t>(rng.below(b.size() + 1));
        if (op == 0 && at < b.size()) b[at] = static_cast<uint8_t>(rng.next());
        if (op == 1) b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), static_cast<uint8_t>(rng.next()));
        if (op == 2 && at < b.size()) b.erase(b.begin() + static_cast<std::ptrdiff_t>(at));
      }
    }
    Decoded d = decode(b);
    if (d.message) ++accepted;
    expect_consistent(b);
  }
  EXPECT_GT(accepted, 0u);  // the mutations do sometimes produce valid packets
}

}  // namespace
}  // namespace ringproxy::gossip
