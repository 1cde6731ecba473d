// Writes the seed corpus of fuzz_gossip_decode into the directory given: packets made
// by the real encoder (gossip/codec.h), one of each message type, in the input format
// of fuzz::gossip_decode (targets.cc): a selector byte, then either a packet for the
// codec, or datagram records for the transport.
//
//   build-fuzz/fuzz/fuzz_gossip_corpus fuzz/corpus/fuzz_gossip_decode
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gossip/codec.h"

using namespace ringproxy::gossip;

namespace {

Message with_updates(Message m) {
  m.updates.push_back(MemberUpdate{"node-a", "127.0.0.1:7946", 3, MemberState::kAlive, ""});
  m.updates.push_back(MemberUpdate{"node-b", "[::1]:7947", 9, MemberState::kSuspect, "node-a"});
  m.updates.push_back(KvUpdate{"backend/cache-a", KvEntry{"{\"address\":\"127.0.0.1:9001\",\"weight\":1}", 4, "node-a", false}});
  m.updates.push_back(KvUpdate{"drain/cache-b", KvEntry{"", 5, "node-b", true}});
  return m;
}

void write(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A transport record (targets.cc): flags, [boot, counter], length, bytes.
void record(std::vector<uint8_t>& out, uint8_t flags, uint8_t boot, uint16_t counter, const std::vector<uint8_t>& bytes) {
  out.push_back(flags);
  if (flags & 1) {
    out.push_back(boot);
    out.push_back(static_cast<uint8_t>(counter >> 8));
    out.push_back(static_cast<uint8_t>(counter));
  }
  out.push_back(static_cast<uint8_t>(bytes.size() >> 8));
  out.push_back(static_cast<uint8_t>(bytes.size()));
  out.insert(out.end(), bytes.begin(), bytes.end());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::vector<std::pair<std::string, Message>> messages;
  Message ping;
  ping.type = MessageType::kPing;
  ping.seq = 7;
  ping.from = "node-a";
  ping.from_address = "127.0.0.1:7946";
  ping.target = "node-b";
  ping.store_digest = 0x1234567890abcdefULL;
  ping.store_bound = 1500;
  messages.emplace_back("ping", with_updates(ping));
  Message ack;
  ack.type = MessageType::kAck;
  ack.seq = 7;
  ack.from = "node-b";
  messages.emplace_back("ack", ack);
  Message ping_req;
  ping_req.type = MessageType::kPingReq;
  ping_req.seq = 300;
  ping_req.from = "node-a";
  ping_req.from_address = "127.0.0.1:7946";
  ping_req.target = "node-c";
  ping_req.target_address = "[::1]:7948";
  messages.emplace_back("ping_req", ping_req);
  Message nack;
  nack.type = MessageType::kNack;
  nack.seq = 1ULL << 40;
  nack.from = "node-c";
  messages.emplace_back("nack", with_updates(nack));
  Message g;
  g.type = MessageType::kGossip;
  g.from = "node-a";
  messages.emplace_back("gossip", with_updates(g));
  Message pp;
  pp.type = MessageType::kPushPull;
  pp.seq = 2;
  pp.from = "node-b";
  pp.from_address = "127.0.0.1:7947";
  pp.response = true;
  pp.join = true;
  pp.part = 1;
  pp.parts = 3;
  messages.emplace_back("push_pull", with_updates(pp));

  for (const auto& [name, m] : messages) {
    // Codec, plain (selector 0) and flagged authenticated (selector 2).
    const Encoded plain = encode(m, kMaxPacket, 0);
    std::vector<uint8_t> in{0};
    in.insert(in.end(), plain.bytes.begin(), plain.bytes.end());
    write(dir, "codec_" + name, in);
    if (name == "ping" || name == "push_pull") {
      const Encoded authed = encode(m, kMaxPacket, kFlagAuthenticated);
      std::vector<uint8_t> in2{2};
      in2.insert(in2.end(), authed.bytes.begin(), authed.bytes.end());
      write(dir, "codec_auth_" + name, in2);
    }
  }
  const Encoded ping_auth = encode(messages[0].second, kMaxPacket, kFlagAuthenticated);
  const Encoded ack_auth = encode(messages[1].second, kMaxPacket, kFlagAuthenticated);
  const Encoded ack_plain = encode(messages[1].second, kMaxPacket, 0);
  {
    // Transport with secrets (selector 3): signed with the send key, the old key, a
    // replay, a counter far ahead then one behind the window, an unknown key, a forgery,
    // and one unauthenticated datagram.
    std::vector<uint8_t> in{3};
    record(in, 1, 1, 5, ping_auth.bytes);
    record(in, 1 | 2, 1, 6, ack_auth.bytes);
    record(in, 1, 1, 6, ack_auth.bytes);
    record(in, 1, 1, 200, ack_auth.bytes);
    record(in, 1, 1, 100, ack_auth.bytes);
    record(in, 1, 2, 1, ack_auth.bytes);
    record(in, 1 | 4, 1, 7, ack_auth.bytes);
    record(in, 1 | 8, 1, 8, ack_auth.bytes);
    record(in, 0, 0, 0, ack_plain.bytes);
    write(dir, "transport_secrets", in);
  }
  {
    // Transport without secrets (selector 1): bare packets, a short one, an empty one.
    std::vector<uint8_t> in{1};
    record(in, 0, 0, 0, ack_plain.bytes);
    record(in, 0, 0, 0, {0xA7, 0x01});
    record(in, 0, 0, 0, {});
    write(dir, "transport_plain", in);
  }
  return 0;
}
