#include "gossip/codec.h"

#include <cassert>
#include <string>

namespace ringproxy::gossip {
namespace {

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}
size_t str_size(std::string_view s) { return varint_size(s.size()) + s.size(); }

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_str(std::vector<uint8_t>& out, std::string_view s) {
  put_varint(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}
// Ping and ack: store_bound (+1, 0 for "infinite") and store_digest.
void put_store(std::vector<uint8_t>& out, const Message& m) {
  put_varint(out, m.store_bound == UINT64_MAX ? 0 : m.store_bound + 1);
  put_u64(out, m.store_digest);
}

void put_update(std::vector<uint8_t>& out, const Update& u) {
  if (const auto* m = std::get_if<MemberUpdate>(&u)) {
    assert(m->name.size() <= kMaxName && m->address.size() <= kMaxName && m->from.size() <= kMaxName);
    out.push_back(1);
    put_str(out, m->name);
    put_str(out, m->address);
    put_varint(out, m->incarnation);
    out.push_back(static_cast<uint8_t>(m->state));
    put_str(out, m->from);
  } else {
    const auto& kv = std::get<KvUpdate>(u);
    assert(kv.key.size() <= kMaxName && kv.entry.origin.size() <= kMaxName &&
           kv.entry.value.size() <= kMaxValue);
    out.push_back(2);
    put_str(out, kv.key);
    put_varint(out, kv.entry.version);
    put_str(out, kv.entry.origin);
    out.push_back(kv.entry.tombstone ? 1 : 0);
    put_str(out, kv.entry.value);
  }
}

// Everything after the header and before the update count, per type.
void put_body(std::vector<uint8_t>& out, const Message& m) {
  switch (m.type) {
    case MessageType::kPing:
      put_varint(out, m.seq);
      put_str(out, m.from);
      put_str(out, m.from_address);
      put_str(out, m.target);
      put_store(out, m);
      break;
    case MessageType::kAck:
      put_varint(out, m.seq);
      put_str(out, m.from);
      put_store(out, m);
      break;
    case MessageType::kNack:
      put_varint(out, m.seq);
      put_str(out, m.from);
      break;
    case MessageType::kPingReq:
      put_varint(out, m.seq);
      put_str(out, m.from);
      put_str(out, m.from_address);
      put_str(out, m.target);
      put_str(out, m.target_address);
      break;
    case MessageType::kGossip:
      put_str(out, m.from);
      break;
    case MessageType::kPushPull:
      assert(m.parts >= 1 && m.parts <= kMaxParts && m.part < m.parts);
      out.push_back(static_cast<uint8_t>((m.response ? 1 : 0) | (m.join ? 2 : 0)));
      put_varint(out, m.seq);
      put_varint(out, m.part);
      put_varint(out, m.parts);
      put_str(out, m.from);
      put_str(out, m.from_address);
      break;
  }
}

// A bounds-checked reader; every failure sets `error` once and makes later reads fail.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  bool failed() const { return !error_.empty(); }
  std::string_view error() const { return error_; }
  bool at_end() const { return pos_ == b_.size(); }
  void fail(std::string_view why) {
    if (error_.empty()) error_ = why;
  }

  uint8_t byte() {
    if (failed()) return 0;
    if (pos_ >= b_.size()) {
      fail("truncated");
      return 0;
    }
    return b_[pos_++];
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      const uint8_t c = byte();
      if (failed()) return 0;
      if (i == 9 && c > 1) {
        fail("varint overflows 64 bits");
        return 0;
      }
      v |= static_cast<uint64_t>(c & 0x7f) << (7 * i);
      if ((c & 0x80) == 0) {
        if (c == 0 && i > 0) {
          fail("non-minimal varint");
          return 0;
        }
        return v;
      }
    }
    fail("varint too long");
    return 0;
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | byte();
    return failed() ? 0 : v;
  }
  std::string str(size_t max_len) {
    const uint64_t len = varint();
    if (failed()) return {};
    if (len > max_len) {
      fail("string too long");
      return {};
    }
    if (len > b_.size() - pos_) {
      fail("truncated");
      return {};
    }
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  std::string_view error_;
};

void read_store(Reader& r, Message& m) {
  m.store_bound = r.varint() - 1;  // 0 - 1: UINT64_MAX, "infinite"
  m.store_digest = r.u64();
}

std::optional<Update> read_update(Reader& r) {
  const uint8_t kind = r.byte();
  if (r.failed()) return std::nullopt;
  if (kind == 1) {
    MemberUpdate m;
    m.name = r.str(kMaxName);
    m.address = r.str(kMaxName);
    m.incarnation = r.varint();
    const uint8_t state = r.byte();
    m.from = r.str(kMaxName);
    if (r.failed()) return std::nullopt;
    if (state > static_cast<uint8_t>(MemberState::kLeft)) {
      r.fail("unknown member state");
      return std::nullopt;
    }
    m.state = static_cast<MemberState>(state);
    return Update(std::move(m));
  }
  if (kind == 2) {
    KvUpdate kv;
    kv.key = r.str(kMaxName);
    kv.entry.version = r.varint();
    kv.entry.origin = r.str(kMaxName);
    const uint8_t tomb = r.byte();
    kv.entry.value = r.str(kMaxValue);
    if (r.failed()) return std::nullopt;
    if (tomb > 1) {
      r.fail("bad tombstone flag");
      return std::nullopt;
    }
    kv.entry.tombstone = tomb == 1;
    return Update(std::move(kv));
  }
  r.fail("unknown update kind");
  return std::nullopt;
}

}  // namespace

size_t encoded_size(const Update& u) {
  if (const auto* m = std::get_if<MemberUpdate>(&u)) {
    return 1 + str_size(m->name) + str_size(m->address) + varint_size(m->incarnation) + 1 +
           str_size(m->from);
  }
  const auto& kv = std::get<KvUpdate>(u);
  return 1 + str_size(kv.key) + varint_size(kv.entry.version) + str_size(kv.entry.origin) + 1 +
         str_size(kv.entry.value);
}

size_t encoded_size_without_updates(const Message& msg) {
  std::vector<uint8_t> body;
  put_body(body, msg);
  return kHeaderSize + body.size() + 2;
}

Encoded encode(const Message& msg, size_t budget, uint8_t flags) {
  assert(budget <= kMaxPacket);
  Encoded out;
  out.bytes.reserve(budget);
  out.bytes.push_back(kMagic);
  out.bytes.push_back(kWireVersion);
  out.bytes.push_back(flags);
  out.bytes.push_back(static_cast<uint8_t>(msg.type));
  put_body(out.bytes, msg);
  const size_t count_at = out.bytes.size();
  out.bytes.push_back(0);
  out.bytes.push_back(0);
  assert(out.bytes.size() <= budget);
  size_t n = 0;
  for (const Update& u : msg.updates) {
    if (n == kMaxUpdates || out.bytes.size() + encoded_size(u) > budget) break;
    put_update(out.bytes, u);
    ++n;
  }
  out.bytes[count_at] = static_cast<uint8_t>(n >> 8);
  out.bytes[count_at + 1] = static_cast<uint8_t>(n & 0xff);
  out.updates_sent = n;
  return out;
}

Decoded decode(std::span<const uint8_t> bytes, uint8_t accepted_flags) {
  Decoded d;
  if (bytes.size() > kMaxPacket) {
    d.error = "oversized packet";
    return d;
  }
  Reader r(bytes);
  const uint8_t magic = r.byte();
  const uint8_t version = r.byte();
  const uint8_t flags = r.byte();
  const uint8_t type = r.byte();
  if (r.failed()) {
    d.error = r.error();
    return d;
  }
  if (magic != kMagic) {
    d.error = "bad magic";
    return d;
  }
  if (version != kWireVersion) {
    d.error = "unknown version";
    return d;
  }
  if ((flags & ~accepted_flags) != 0) {
    d.error = "unknown flags";
    return d;
  }
  if (type < static_cast<uint8_t>(MessageType::kPing) ||
      type > static_cast<uint8_t>(MessageType::kPushPull)) {
    d.error = "unknown message type";
    return d;
  }
  Message m;
  m.type = static_cast<MessageType>(type);
  switch (m.type) {
    case MessageType::kPing:
      m.seq = r.varint();
      m.from = r.str(kMaxName);
      m.from_address = r.str(kMaxName);
      m.target = r.str(kMaxName);
      read_store(r, m);
      break;
    case MessageType::kAck:
      m.seq = r.varint();
      m.from = r.str(kMaxName);
      read_store(r, m);
      break;
    case MessageType::kNack:
      m.seq = r.varint();
      m.from = r.str(kMaxName);
      break;
    case MessageType::kPingReq:
      m.seq = r.varint();
      m.from = r.str(kMaxName);
      m.from_address = r.str(kMaxName);
      m.target = r.str(kMaxName);
      m.target_address = r.str(kMaxName);
      break;
    case MessageType::kGossip:
      m.from = r.str(kMaxName);
      break;
    case MessageType::kPushPull: {
      const uint8_t pflags = r.byte();
      m.seq = r.varint();
      const uint64_t part = r.varint();
      const uint64_t parts = r.varint();
      m.from = r.str(kMaxName);
      m.from_address = r.str(kMaxName);
      if (r.failed()) break;
      if ((pflags & ~3u) != 0) {
        r.fail("unknown push-pull flags");
        break;
      }
      if (parts == 0 || parts > kMaxParts || part >= parts) {
        r.fail("bad push-pull part numbers");
        break;
      }
      m.response = (pflags & 1) != 0;
      m.join = (pflags & 2) != 0;
      m.part = static_cast<uint32_t>(part);
      m.parts = static_cast<uint32_t>(parts);
      break;
    }
  }
  const size_t count_hi = r.byte();  // two statements: operands of | are unsequenced
  const size_t count = (count_hi << 8) | r.byte();
  if (!r.failed() && count > kMaxUpdates) r.fail("too many updates");
  if (!r.failed()) m.updates.reserve(count);  // <= kMaxUpdates
  for (size_t i = 0; i < count && !r.failed(); ++i) {
    std::optional<Update> u = read_update(r);
    if (u) m.updates.push_back(std::move(*u));
  }
  if (!r.failed() && !r.at_end()) r.fail("trailing bytes");
  if (r.failed()) {
    d.error = r.error();
    return d;
  }
  d.flags = flags;
  d.message = std::move(m);
  return d;
}

}  // namespace ringproxy::gossip
