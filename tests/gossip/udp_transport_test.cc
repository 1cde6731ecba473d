// The UDP transport on real sockets, 127.0.0.1 and [::1] only. Each test runs its libuv
// loop in the test thread until what it waits for has happened (a timer bounds the wait;
// nothing sleeps). Replays and forgeries are crafted with a plain UDP socket: a transport
// sends to it, the test keeps the exact bytes and sends them (changed or not) onwards.
// The trailer is also built here from the layout in udp_transport.h, independently of
// the transport's code, so a change of wire format fails these tests.
#include "gossip/udp_transport.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gossip/codec.h"
#include "gossip/swim.h"

// Fault injection for the send path: while g_sendmsg_eagain > 0, sendmsg() (what
// uv_udp_try_send calls; libuv's queued sends use the sendmmsg syscall instead) fails
// with EAGAIN, as it does when the socket buffer is full, which loopback never is.
// Inert otherwise: every other call goes to the C library's sendmsg.
namespace {
int g_sendmsg_eagain = 0;
}  // namespace
extern "C" ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  using Sendmsg = ssize_t (*)(int, const struct msghdr*, int);
  static const auto real = reinterpret_cast<Sendmsg>(dlsym(RTLD_NEXT, "sendmsg"));
  if (g_sendmsg_eagain > 0) {
    --g_sendmsg_eagain;
    errno = EAGAIN;
    return -1;
  }
  return real(fd, msg, flags);
}

namespace ringproxy::gossip {
namespace {

constexpr size_t kTrailer = UdpTransport::kTrailerSize;

// A payload that looks like a codec packet to the transport: magic, version, flags, type,
// then `size - 4` filler bytes.
std::string packet(size_t size, uint8_t flags, char fill = 'x') {
  std::string p(size, fill);
  p[0] = static_cast<char>(kMagic);
  p[1] = static_cast<char>(kWireVersion);
  p[2] = static_cast<char>(flags);
  p[3] = 1;
  return p;
}
std::string auth_packet(size_t size, char fill = 'x') { return packet(size, kFlagAuthenticated, fill); }

uint8_t key_id(const std::string& key) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), d);
  return d[0];
}

// payload key_id boot_id(be) counter(be) HMAC-SHA256(key, all before it)
std::string sign(const std::string& payload, const std::string& key, uint64_t boot_id, uint64_t counter) {
  std::string d = payload;
  d.push_back(static_cast<char>(key_id(key)));
  for (int i = 7; i >= 0; --i) d.push_back(static_cast<char>(boot_id >> (8 * i)));
  for (int i = 7; i >= 0; --i) d.push_back(static_cast<char>(counter >> (8 * i)));
  unsigned char mac[32];
  unsigned len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(d.data()),
       d.size(), mac, &len);
  d.append(reinterpret_cast<const char*>(mac), len);
  return d;
}

uint64_t be64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

uint64_t seen(const UdpStats& s) {
  return s.received + s.dropped_unauthenticated + s.dropped_unknown_key + s.dropped_forged + s.dropped_replayed +
         s.dropped_oversized + s.dropped_malformed;
}

// A plain blocking-free UDP socket on 127.0.0.1 (or ::1) for capturing and crafting.
class RawSocket {
 public:
  explicit RawSocket(bool v6 = false) : v6_(v6) {
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_storage a{};
    socklen_t len = 0;
    if (v6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&a);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_loopback;
      len = sizeof *in6;
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&a);
      in->sin_family = AF_INET;
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *in;
    }
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), len), 0);
    len = sizeof a;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    const uint16_t port = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
    address_ = (v6 ? "[::1]:" : "127.0.0.1:") + std::to_string(port);
  }
  ~RawSocket() { ::close(fd_); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  const std::string& address() const { return address_; }

  // `to` is a transport's local_address(): "127.0.0.1:port" or "[::1]:port".
  void send_to(const std::string& to, const std::string& bytes) {
    const uint16_t port = static_cast<uint16_t>(std::stoi(to.substr(to.rfind(':') + 1)));
    sockaddr_storage a{};
    socklen_t len = 0;
    if (v6_) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&a);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_loopback;
      in6->sin6_port = htons(port);
      len = sizeof *in6;
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&a);
      in->sin_family = AF_INET;
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      in->sin_port = htons(port);
      len = sizeof *in;
    }
    const ssize_t n = ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), len);
    EXPECT_EQ(n, static_cast<ssize_t>(bytes.size()));
  }

  // The next datagram, waiting at most 2 s for it to arrive ("" on timeout).
  std::string receive() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return "";
    std::string buf(65536, '\0');
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) return "";
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

 private:
  bool v6_;
  int fd_ = -1;
  std::string address_;
};

struct Inbox {
  std::vector<std::pair<std::string, std::string>> got;  // from, payload
  UdpTransport::OnReceive sink() {
    return [this](const std::string& from, std::string_view bytes) { got.emplace_back(from, std::string(bytes)); };
  }
};

class UdpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    // Transports are locals of the test bodies, closed by now: their handles close here.
    ASSERT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // Runs the loop until `done` or 2 s have passed; returns done().
  bool run_until(const std::function<bool()>& done) {
    uv_timer_t timer;
    bool expired = false;
    EXPECT_EQ(uv_timer_init(&loop_, &timer), 0);
    timer.data = &expired;
    EXPECT_EQ(uv_timer_start(&timer, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, 2000, 0), 0);
    while (!done() && !expired) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);  // the timer's close
    return done();
  }

  // Waits until `t` has received or dropped one more datagram than `before`.
  bool next_seen(const UdpTransport& t, uint64_t before) {
    return run_until([&] { return seen(t.stats()) > before; });
  }

  // Sends `bytes` from `from` to `t` and waits until `t` has dealt with it.
  bool inject(RawSocket& from, UdpTransport& t, const std::string& bytes) {
    const uint64_t before = seen(t.stats());
    from.send_to(t.local_address(), bytes);
    return next_seen(t, before);
  }

  void bind_local(UdpTransport& t, const char* address = "127.0.0.1:0") { ASSERT_EQ(t.bind(address), ""); }

  uv_loop_t loop_{};
};

TEST_F(UdpTransportTest, BareSendAndReceive) {
  Inbox ia, ib;
  UdpTransport a(&loop_, ia.sink()), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  EXPECT_NE(a.local_address(), "127.0.0.1:0");  // the port actually bound
  EXPECT_EQ(a.local_address().rfind("127.0.0.1:", 0), 0u);

  a.send(b.local_address(), packet(20, 0, 'a'));
  b.send(a.local_address(), packet(30, 0, 'b'));
  ASSERT_TRUE(run_until([&] { return ib.got.size() == 1 && ia.got.size() == 1; }));
  EXPECT_EQ(ib.got[0].first, a.local_address());
  EXPECT_EQ(ib.got[0].second, packet(20, 0, 'a'));  // no trailer without secrets
  EXPECT_EQ(ia.got[0].second, packet(30, 0, 'b'));
  EXPECT_EQ(a.stats().sent, 1u);
  EXPECT_EQ(b.stats().received, 1u);
  EXPECT_EQ(b.stats().send_errors, 0u);

  // Without secrets even tiny payloads pass; an empty or sub-header datagram does not.
  RawSocket raw;
  ASSERT_TRUE(inject(raw, b, "abc"));
  EXPECT_EQ(b.stats().dropped_malformed, 1u);
  ASSERT_TRUE(inject(raw, b, ""));
  EXPECT_EQ(b.stats().dropped_malformed, 2u);
  EXPECT_EQ(ib.got.size(), 1u);
}

TEST_F(UdpTransportTest, AuthenticatedSendAndReceive) {
  Inbox ia, ib;
  UdpTransport a(&loop_, ia.sink()), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  a.set_secrets({"correct horse", {}});
  b.set_secrets({"correct horse", {}});
  for (int i = 0; i < 3; ++i) a.send(b.local_address(), auth_packet(100, static_cast<char>('a' + i)));
  b.send(a.local_address(), auth_packet(50));
  ASSERT_TRUE(run_until([&] { return ib.got.size() == 3 && ia.got.size() == 1; }));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ib.got[static_cast<size_t>(i)].second, auth_packet(100, static_cast<char>('a' + i)));  // trailer stripped
    EXPECT_EQ(ib.got[static_cast<size_t>(i)].first, a.local_address());
  }
  EXPECT_EQ(a.stats().sent, 3u);
  EXPECT_EQ(b.stats().received, 3u);
  EXPECT_EQ(seen(b.stats()), 3u);
}

// The bytes on the wire, checked against the layout in the header with an HMAC computed
// here; and a datagram built here is accepted.
TEST_F(UdpTransportTest, TrailerLayoutOnTheWire) {
  Inbox ib;
  UdpTransport a(&loop_, nullptr), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  const std::string key = "layout key";
  a.set_secrets({key, {}});
  b.set_secrets({key, {}});
  RawSocket raw;
  const std::string payload = auth_packet(40);
  a.send(raw.address(), payload);
  a.send(raw.address(), payload);
  const std::string first = raw.receive(), second = raw.receive();
  ASSERT_EQ(first.size(), payload.size() + kTrailer);
  ASSERT_EQ(second.size(), payload.size() + kTrailer);
  EXPECT_EQ(first.substr(0, payload.size()), payload);
  EXPECT_EQ(static_cast<uint8_t>(first[payload.size()]), key_id(key));
  const uint64_t boot = be64(first, payload.size() + 1);
  EXPECT_EQ(be64(second, payload.size() + 1), boot);
  EXPECT_EQ(be64(first, payload.size() + 9), 1u);  // the counter starts at 1
  EXPECT_EQ(be64(second, payload.size() + 9), 2u);
  EXPECT_EQ(first, sign(payload, key, boot, 1));
  EXPECT_EQ(second, sign(payload, key, boot, 2));

  // Another transport, another boot id.
  UdpTransport c(&loop_, nullptr);
  bind_local(c);
  c.set_secrets({key, {}});
  c.send(raw.address(), payload);
  const std::string third = raw.receive();
  ASSERT_EQ(third.size(), payload.size() + kTrailer);
  EXPECT_NE(be64(third, payload.size() + 1), boot);

  ASSERT_TRUE(inject(raw, b, sign(auth_packet(10), key, 0xfeedfacecafebeefu, 7)));
  ASSERT_EQ(ib.got.size(), 1u);
  EXPECT_EQ(ib.got[0].first, raw.address());
  EXPECT_EQ(ib.got[0].second, auth_packet(10));
}

TEST_F(UdpTransportTest, ReceiverWithSecretDropsBareDatagrams) {
  Inbox ib;
  UdpTransport a(&loop_, nullptr), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  b.set_secrets({"secret", {}});
  a.send(b.local_address(), packet(100, 0));
  ASSERT_TRUE(next_seen(b, 0));
  EXPECT_EQ(b.stats().dropped_unauthenticated, 1u);

  // Flagged authenticated, but no trailer can fit: malformed, as is a truncated trailer.
  RawSocket raw;
  ASSERT_TRUE(inject(raw, b, auth_packet(kHeaderSize + kTrailer - 1)));
  const std::string whole = sign(auth_packet(kHeaderSize), "secret", 1, 1);
  ASSERT_TRUE(inject(raw, b, whole.substr(0, whole.size() - 1)));
  ASSERT_TRUE(inject(raw, b, "ab"));
  EXPECT_EQ(b.stats().dropped_malformed, 3u);
  ASSERT_TRUE(inject(raw, b, whole));  // the whole one is fine
  EXPECT_EQ(ib.got.size(), 1u);
  EXPECT_EQ(b.stats().received, 1u);
}

TEST_F(UdpTransportTest, WrongKeyIsUnknownOrForged) {
  const std::string k1 = "key-one", k2 = "key-two";
  ASSERT_NE(key_id(k1), key_id(k2));  // else pick other names
  // Two keys with the same key id (found by search: 1 in 256 pairs collide).
  std::string c1, c2;
  for (int i = 0; c2.empty(); ++i) {
    for (int j = 0; j < i; ++j) {
      if (key_id("k" + std::to_string(i)) == key_id("k" + std::to_string(j))) {
        c1 = "k" + std::to_string(j);
        c2 = "k" + std::to_string(i);
        break;
      }
    }
  }
  Inbox ib;
  UdpTransport b(&loop_, ib.sink());
  bind_local(b);
  RawSocket raw;
  b.set_secrets({k1, {}});
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(20), k2, 5, 1)));
  EXPECT_EQ(b.stats().dropped_unknown_key, 1u);

  b.set_secrets({c1, {}});
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(20), c2, 5, 2)));  // same id, wrong key
  EXPECT_EQ(b.stats().dropped_forged, 1u);

  // Both colliding keys configured: each is tried.
  b.set_secrets({c1, {c2}});
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(20), c2, 5, 3)));
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(20), c1, 5, 4)));
  EXPECT_EQ(b.stats().received, 2u);
  EXPECT_EQ(ib.got.size(), 2u);
}

TEST_F(UdpTransportTest, ForgedDatagramsDoNotMoveTheWindow) {
  Inbox ib;
  UdpTransport a(&loop_, nullptr), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  a.set_secrets({"k", {}});
  b.set_secrets({"k", {}});
  RawSocket raw;
  const std::string payload = auth_packet(60);
  a.send(raw.address(), payload);
  const std::string good = raw.receive();
  ASSERT_EQ(good.size(), payload.size() + kTrailer);

  std::string mac_flipped = good;
  mac_flipped.back() = static_cast<char>(mac_flipped.back() ^ 0x01);
  std::string payload_flipped = good;
  payload_flipped[30] = static_cast<char>(payload_flipped[30] ^ 0x80);
  std::string counter_flipped = good;
  counter_flipped[payload.size() + 16] = static_cast<char>(counter_flipped[payload.size() + 16] ^ 0x04);
  std::string boot_flipped = good;
  boot_flipped[payload.size() + 1] = static_cast<char>(boot_flipped[payload.size() + 1] ^ 0x10);
  std::string cut = good.substr(0, good.size() - 5);  // long enough to read as a trailer
  for (const std::string* bad : {&mac_flipped, &payload_flipped, &counter_flipped, &boot_flipped, &cut}) {
    ASSERT_TRUE(inject(raw, b, *bad));
  }
  // The cut one reads its key id from a payload byte: unknown_key, or forged if that
  // byte happens to name the key.
  EXPECT_EQ(b.stats().dropped_forged + b.stats().dropped_unknown_key, 5u);
  EXPECT_GE(b.stats().dropped_forged, 4u);
  EXPECT_EQ(b.stats().dropped_replayed, 0u);
  ASSERT_TRUE(inject(raw, b, good));  // the forgeries left the window alone
  EXPECT_EQ(b.stats().received, 1u);
  ASSERT_EQ(ib.got.size(), 1u);
  EXPECT_EQ(ib.got[0].second, payload);
}

TEST_F(UdpTransportTest, ReplayWindow) {
  Inbox ib;
  UdpTransport a(&loop_, nullptr), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  a.set_secrets({"k", {}});
  b.set_secrets({"k", {}});
  RawSocket capture, raw, other;
  std::vector<std::string> c(71);  // c[i]: counter i
  for (size_t i = 1; i <= 70; ++i) {
    a.send(capture.address(), auth_packet(16 + i));
    c[i] = capture.receive();
    ASSERT_EQ(c[i].size(), 16 + i + kTrailer);
  }
  const auto replayed = [&] { return b.stats().dropped_replayed; };

  ASSERT_TRUE(inject(raw, b, c[1]));
  EXPECT_EQ(b.stats().received, 1u);
  ASSERT_TRUE(inject(raw, b, c[1]));  // the same bytes again
  EXPECT_EQ(replayed(), 1u);
  ASSERT_TRUE(inject(other, b, c[1]));  // from another address: still the same boot id
  EXPECT_EQ(replayed(), 2u);

  // Out of order within the window: each accepted once.
  ASSERT_TRUE(inject(raw, b, c[3]));
  ASSERT_TRUE(inject(raw, b, c[2]));
  EXPECT_EQ(b.stats().received, 3u);
  ASSERT_TRUE(inject(raw, b, c[2]));
  ASSERT_TRUE(inject(raw, b, c[3]));
  EXPECT_EQ(replayed(), 4u);

  // Highest 70: the window is 7..70. 5 and 6 are too old, 7 is still in it.
  ASSERT_TRUE(inject(raw, b, c[70]));
  ASSERT_TRUE(inject(raw, b, c[5]));
  ASSERT_TRUE(inject(raw, b, c[6]));
  EXPECT_EQ(replayed(), 6u);
  ASSERT_TRUE(inject(raw, b, c[7]));
  ASSERT_TRUE(inject(raw, b, c[69]));
  EXPECT_EQ(b.stats().received, 6u);
  ASSERT_TRUE(inject(raw, b, c[7]));
  EXPECT_EQ(replayed(), 7u);
  EXPECT_EQ(ib.got.size(), 6u);
  EXPECT_EQ(ib.got.back().second, auth_packet(16 + 69));

  // A jump far ahead clears the window; a restart (new boot id) starts a new one.
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(8), "k", 77, 1000)));
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(8), "k", 77, 1)));  // 999 behind: too old
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(8), "k", 78, 1)));
  EXPECT_EQ(b.stats().received, 8u);
  EXPECT_EQ(replayed(), 8u);
}

// At most 4,096 windows (kMaxReplayWindows): the least recently used one is forgotten.
TEST_F(UdpTransportTest, ReplayWindowsAreBounded) {
  constexpr uint64_t kWindows = 4096;
  UdpTransport b(&loop_, nullptr);
  bind_local(b);
  b.set_secrets({"k", {}});
  RawSocket raw;
  const std::string payload = auth_packet(8);
  // In batches, so that the receive buffer never overflows.
  for (uint64_t boot = 1; boot <= kWindows + 1;) {
    const uint64_t before = b.stats().received;
    uint64_t n = 0;
    for (; n < 64 && boot <= kWindows + 1; ++n, ++boot) raw.send_to(b.local_address(), sign(payload, "k", boot, 1));
    ASSERT_TRUE(run_until([&] { return b.stats().received == before + n; }));
  }
  EXPECT_EQ(b.stats().received, kWindows + 1);
  ASSERT_TRUE(inject(raw, b, sign(payload, "k", kWindows + 1, 1)));  // remembered
  EXPECT_EQ(b.stats().dropped_replayed, 1u);
  ASSERT_TRUE(inject(raw, b, sign(payload, "k", 1, 1)));  // boot id 1 was evicted
  EXPECT_EQ(b.stats().received, kWindows + 2);
}

TEST_F(UdpTransportTest, KeyRotation) {
  Inbox ia, ib;
  UdpTransport a(&loop_, ia.sink()), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  const std::string old_key = "old", new_key = "new";
  ASSERT_NE(key_id(old_key), key_id(new_key));
  size_t want_a = 0, want_b = 0;
  const auto exchange = [&] {
    a.send(b.local_address(), auth_packet(30));
    b.send(a.local_address(), auth_packet(30));
    ++want_a;
    ++want_b;
    return run_until([&] { return ia.got.size() == want_a && ib.got.size() == want_b; });
  };
  a.set_secrets({old_key, {}});
  b.set_secrets({old_key, {}});
  ASSERT_TRUE(exchange());
  // Step 1: everyone accepts the new key. Step 2: A sends with it first.
  b.set_secrets({old_key, {new_key}});
  a.set_secrets({new_key, {old_key}});
  ASSERT_TRUE(exchange());
  // B switches too.
  b.set_secrets({new_key, {old_key}});
  ASSERT_TRUE(exchange());
  // Both drop the old key: still talking; a straggler on the old key is not heard.
  a.set_secrets({new_key, {}});
  b.set_secrets({new_key, {}});
  ASSERT_TRUE(exchange());
  UdpTransport straggler(&loop_, nullptr);
  bind_local(straggler);
  straggler.set_secrets({old_key, {}});
  straggler.send(a.local_address(), auth_packet(30));
  ASSERT_TRUE(next_seen(a, want_a));
  EXPECT_EQ(a.stats().dropped_unknown_key, 1u);
  EXPECT_EQ(seen(b.stats()), b.stats().received);
}

TEST_F(UdpTransportTest, OversizedOnBothSides) {
  Inbox ib;
  UdpTransport a(&loop_, nullptr), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  // Send side, bare: 1,400 bytes go, 1,401 do not.
  a.send(b.local_address(), packet(kMaxPacket + 1, 0));
  EXPECT_EQ(a.stats().send_errors, 1u);
  a.send(b.local_address(), packet(kMaxPacket, 0));
  ASSERT_TRUE(next_seen(b, 0));
  EXPECT_EQ(b.stats().received, 1u);
  EXPECT_EQ(ib.got.at(0).second.size(), kMaxPacket);

  // Send side, signed: the trailer counts.
  a.set_secrets({"k", {}});
  b.set_secrets({"k", {}});
  a.send(b.local_address(), auth_packet(kMaxPacket - kTrailer + 1));
  EXPECT_EQ(a.stats().send_errors, 2u);
  a.send(b.local_address(), auth_packet(kMaxPacket - kTrailer));
  ASSERT_TRUE(next_seen(b, 1));
  EXPECT_EQ(b.stats().received, 2u);
  EXPECT_EQ(a.stats().sent, 2u);

  // Receive side: one byte over, and far over (truncated by the kernel: UV_UDP_PARTIAL).
  RawSocket raw;
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(kMaxPacket - kTrailer + 1), "k", 9, 1)));
  ASSERT_TRUE(inject(raw, b, sign(auth_packet(9000), "k", 9, 2)));
  b.set_secrets({});
  ASSERT_TRUE(inject(raw, b, packet(kMaxPacket + 1, 0)));
  EXPECT_EQ(b.stats().dropped_oversized, 3u);
  EXPECT_EQ(b.stats().received, 2u);
}

TEST_F(UdpTransportTest, SendErrorsAreCounted) {
  UdpTransport a(&loop_, nullptr);
  a.send("127.0.0.1:9", packet(10, 0));  // not bound
  EXPECT_EQ(a.stats().send_errors, 1u);
  bind_local(a);
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "localhost:80", "::1:80", "[::1]80",
                          "[::1]:", "1.2.3:4", "127.0.0.1:-1", "127.0.0.1:8o"}) {
    a.send(bad, packet(10, 0));
  }
  EXPECT_EQ(a.stats().send_errors, 12u);
  a.send("[::1]:9", packet(10, 0));  // IPv6 destination from an IPv4 socket
  EXPECT_EQ(a.stats().send_errors, 13u);
  EXPECT_EQ(a.stats().sent, 0u);
}

TEST_F(UdpTransportTest, BindErrors) {
  UdpTransport a(&loop_, nullptr), b(&loop_, nullptr);
  bind_local(a);
  EXPECT_EQ(b.bind(a.local_address()), "bind " + a.local_address() + ": address already in use");
  EXPECT_EQ(a.bind("127.0.0.1:0"), "bind 127.0.0.1:0: already bound to " + a.local_address());
  EXPECT_EQ(b.bind("localhost:7946"), "bind localhost:7946: want IPv4:port or [IPv6]:port (IP literal)");
  EXPECT_EQ(b.bind("::1:7946"), "bind ::1:7946: want IPv4:port or [IPv6]:port (IP literal)");
  EXPECT_EQ(b.bind("127.0.0.1:70000"), "bind 127.0.0.1:70000: want IPv4:port or [IPv6]:port (IP literal)");
  EXPECT_EQ(b.bind("192.0.2.1:0"), "bind 192.0.2.1:0: address not available");  // TEST-NET-1, not ours
  EXPECT_EQ(b.local_address(), "");
  // A failed bind may be retried.
  bind_local(b);
  Inbox ib;
  UdpTransport c(&loop_, ib.sink());
  bind_local(c);
  b.send(c.local_address(), packet(10, 0));
  ASSERT_TRUE(run_until([&] { return ib.got.size() == 1; }));
}

TEST_F(UdpTransportTest, Ipv6Loopback) {
  Inbox ia, ib;
  UdpTransport a(&loop_, ia.sink()), b(&loop_, ib.sink());
  const std::string err = a.bind("[::1]:0");
  if (!err.empty()) GTEST_SKIP() << "no IPv6 loopback here: " << err;
  ASSERT_EQ(b.bind("[::1]:0"), "");
  EXPECT_EQ(a.local_address().rfind("[::1]:", 0), 0u);
  a.send(b.local_address(), packet(20, 0));
  ASSERT_TRUE(run_until([&] { return ib.got.size() == 1; }));
  EXPECT_EQ(ib.got[0].first, a.local_address());

  a.set_secrets({"six", {}});
  b.set_secrets({"six", {}});
  a.send(b.local_address(), auth_packet(20));
  b.send(a.local_address(), auth_packet(21));
  ASSERT_TRUE(run_until([&] { return ib.got.size() == 2 && ia.got.size() == 1; }));
  EXPECT_EQ(ib.got[1].second, auth_packet(20));
  EXPECT_EQ(ia.got[0].second, auth_packet(21));

  RawSocket raw(true);
  ASSERT_TRUE(inject(raw, b, packet(20, 0)));  // bare from [::1]
  EXPECT_EQ(b.stats().dropped_unauthenticated, 1u);
}

// close() and destruction with the handle still open: nothing is delivered after close,
// and the fixture's TearDown finds the loop closes cleanly (the handle was freed).
TEST_F(UdpTransportTest, CloseAndDestroy) {
  Inbox ib;
  auto b = std::make_unique<UdpTransport>(&loop_, nullptr);
  UdpTransport* bp = b.get();
  int delivered = 0;
  UdpTransport c(&loop_, [&](const std::string&, std::string_view) {
    ++delivered;
    bp->send("127.0.0.1:9", packet(10, 0));  // callbacks may send
  });
  bind_local(*b);
  bind_local(c);
  b->send(c.local_address(), packet(10, 0));
  ASSERT_TRUE(run_until([&] { return delivered == 1; }));
  b.reset();  // destroyed open: closes; the handle is freed by the loop
  uv_run(&loop_, UV_RUN_NOWAIT);

  UdpTransport d(&loop_, nullptr);
  bind_local(d);
  const std::string c_addr = c.local_address();
  c.close();
  c.close();  // idempotent
  EXPECT_EQ(c.local_address(), "");
  d.send(c_addr, packet(10, 0));
  c.send(d.local_address(), packet(10, 0));  // closed: not sent
  EXPECT_EQ(c.stats().send_errors, 1u);
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(delivered, 1);

  UdpTransport e(&loop_, nullptr);  // never bound: nothing to close
}

// A full socket buffer (uv_udp_try_send: UV_EAGAIN): the datagram is queued with
// uv_udp_send, at most 64 at a time (kMaxQueuedSends); the rest count as errors.
TEST_F(UdpTransportTest, QueuesWhenTheSocketBufferIsFull) {
  Inbox ib;
  UdpTransport a(&loop_, nullptr), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  a.set_secrets({"k", {}});
  b.set_secrets({"k", {}});
  g_sendmsg_eagain = 1000;
  for (int i = 0; i < 70; ++i) a.send(b.local_address(), auth_packet(20 + static_cast<size_t>(i)));
  g_sendmsg_eagain = 0;
  EXPECT_EQ(a.stats().send_errors, 6u);
  EXPECT_EQ(a.stats().sent, 0u);  // counted when libuv reports them sent
  ASSERT_TRUE(run_until([&] { return ib.got.size() == 64 && a.stats().sent == 64; }));
  EXPECT_EQ(ib.got[63].second, auth_packet(20 + 63));  // in order, trailers intact
  EXPECT_EQ(b.stats().received, 64u);
  a.send(b.local_address(), auth_packet(20));  // the queue drained: try_send again
  EXPECT_EQ(a.stats().sent, 65u);

  // Closed and destroyed with sends queued: their callbacks come with the close and
  // free the copies without touching the transport (ASan and uv_loop_close check).
  auto c = std::make_unique<UdpTransport>(&loop_, nullptr);
  bind_local(*c);
  g_sendmsg_eagain = 1000;
  for (int i = 0; i < 5; ++i) c->send(b.local_address(), packet(20, 0));
  g_sendmsg_eagain = 0;
  c.reset();
}

// swim.h leaves kAuthTrailerReserve bytes of every packet for the trailer; a full Swim
// packet plus the trailer must still fit kMaxPacket, or it is not sent.
TEST_F(UdpTransportTest, SwimReservesRoomForTheTrailer) { EXPECT_GE(kAuthTrailerReserve, kTrailer); }

// Every prefix of an authenticated datagram (lengths 0 to size - 1) is dropped and
// counted once, by the cause the header's rules give: shorter than a codec header or
// than header + trailer, malformed; longer, the byte now read as key id names the key
// (forged) or not (unknown_key). None is delivered, none touches the replay window: the
// whole datagram is accepted after them all.
TEST_F(UdpTransportTest, EveryTruncationIsDroppedNeverDelivered) {
  Inbox ib;
  UdpTransport a(&loop_, nullptr), b(&loop_, ib.sink());
  bind_local(a);
  bind_local(b);
  const std::string key = "truncation key";
  a.set_secrets({key, {}});
  b.set_secrets({key, {}});
  RawSocket raw;
  const std::string payload = auth_packet(120);
  a.send(raw.address(), payload);
  const std::string whole = raw.receive();
  ASSERT_EQ(whole.size(), payload.size() + kTrailer);

  uint64_t malformed = 0, forged = 0, unknown = 0;
  for (size_t n = 0; n < whole.size(); ++n) {
    const uint64_t before = seen(b.stats());
    ASSERT_TRUE(inject(raw, b, whole.substr(0, n))) << "prefix of " << n << " bytes not seen";
    EXPECT_EQ(seen(b.stats()), before + 1) << n;
    if (n < kHeaderSize + kTrailer) {
      ++malformed;
    } else if (static_cast<uint8_t>(whole[n - kTrailer]) == key_id(key)) {
      ++forged;
    } else {
      ++unknown;
    }
    EXPECT_EQ(b.stats().dropped_malformed, malformed) << n;
    EXPECT_EQ(b.stats().dropped_forged, forged) << n;
    EXPECT_EQ(b.stats().dropped_unknown_key, unknown) << n;
  }
  EXPECT_EQ(malformed, kHeaderSize + kTrailer);
  EXPECT_EQ(malformed + forged + unknown, whole.size());
  EXPECT_EQ(b.stats().received, 0u);
  EXPECT_EQ(b.stats().dropped_replayed, 0u);
  EXPECT_EQ(b.stats().dropped_unauthenticated, 0u);
  EXPECT_TRUE(ib.got.empty());
  ASSERT_TRUE(inject(raw, b, whole));
  EXPECT_EQ(b.stats().received, 1u);
  ASSERT_EQ(ib.got.size(), 1u);
  EXPECT_EQ(ib.got[0].second, payload);
}

// Random bytes (a fixed seed: the same bytes every run), some made to start like a
// codec header. With a secret each is dropped and counted under the cause the header's
// rules give, and none is delivered. Without one, those shorter than a codec header are
// dropped as malformed; the rest are handed on, as bare datagrams are, and the decoder
// refuses every one (the proxy counts those as "undecodable": GossipAgent, checked end
// to end in tests/integration/admin_matrix_test.cc).
TEST_F(UdpTransportTest, GarbageIsDroppedByCause) {
  Inbox ib;
  UdpTransport b(&loop_, ib.sink());
  bind_local(b);
  RawSocket raw;
  const std::string key = "garbage key";
  std::mt19937 rng(20240611);
  std::vector<std::string> garbage;
  for (int i = 0; i < 300; ++i) {
    // Lengths over the whole range, short ones more often.
    const size_t n = i % 3 == 0 ? rng() % (kHeaderSize + kTrailer + 8) : rng() % (kMaxPacket + 1);
    std::string g(n, '\0');
    for (char& c : g) c = static_cast<char>(rng());
    if (i % 4 == 1 && n >= kHeaderSize) {  // magic and version right, the rest random
      g[0] = static_cast<char>(kMagic);
      g[1] = static_cast<char>(kWireVersion);
    }
    if (i % 8 == 3 && n >= kHeaderSize + kTrailer) g[n - kTrailer] = static_cast<char>(key_id(key));
    garbage.push_back(std::move(g));
  }

  b.set_secrets({key, {}});
  UdpStats want;
  for (const std::string& g : garbage) {
    if (g.size() < kHeaderSize) {
      ++want.dropped_malformed;
    } else if ((static_cast<uint8_t>(g[2]) & kFlagAuthenticated) == 0) {
      ++want.dropped_unauthenticated;
    } else if (g.size() < kHeaderSize + kTrailer) {
      ++want.dropped_malformed;
    } else if (static_cast<uint8_t>(g[g.size() - kTrailer]) != key_id(key)) {
      ++want.dropped_unknown_key;
    } else {
      ++want.dropped_forged;
    }
    ASSERT_TRUE(inject(raw, b, g));
  }
  EXPECT_EQ(b.stats().dropped_malformed, want.dropped_malformed);
  EXPECT_EQ(b.stats().dropped_unauthenticated, want.dropped_unauthenticated);
  EXPECT_EQ(b.stats().dropped_unknown_key, want.dropped_unknown_key);
  EXPECT_EQ(b.stats().dropped_forged, want.dropped_forged);
  EXPECT_GT(want.dropped_forged, 0u);  // every cause is exercised
  EXPECT_GT(want.dropped_unknown_key, 0u);
  EXPECT_GT(want.dropped_unauthenticated, 0u);
  EXPECT_EQ(b.stats().dropped_replayed + b.stats().dropped_oversized, 0u);
  EXPECT_EQ(b.stats().received, 0u);
  EXPECT_TRUE(ib.got.empty());

  b.set_secrets({});
  const UdpStats with_secret = b.stats();
  uint64_t short_ones = 0;
  for (const std::string& g : garbage) {
    short_ones += g.size() < kHeaderSize;
    ASSERT_TRUE(inject(raw, b, g));
  }
  EXPECT_EQ(b.stats().dropped_malformed - with_secret.dropped_malformed, short_ones);
  ASSERT_EQ(ib.got.size(), garbage.size() - short_ones);
  for (const auto& [from, bytes] : ib.got) {
    const Decoded d = decode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    EXPECT_FALSE(d.message.has_value()) << "random bytes decoded, " << bytes.size() << " bytes";
    EXPECT_FALSE(d.error.empty());
  }
}

}  // namespace
}  // namespace ringproxy::gossip
