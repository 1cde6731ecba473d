#include "gossip/udp_transport.h"

#include "gossip/swim.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>

#include "gossip/codec.h"

namespace ringproxy::gossip {

static_assert(kAuthTrailerReserve >= UdpTransport::kTrailerSize,
              "Swim's packets must leave room for the authentication trailer");

namespace {

constexpr size_t kMacSize = 32;
constexpr size_t kSignedTrailer = UdpTransport::kTrailerSize - kMacSize;  // key id, boot id, counter
static_assert(kSignedTrailer == 17);
static_assert(UdpTransport::kTrailerSize < kMaxPacket);

void store_be64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

uint64_t load_be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// Unique per start, not secret: RAND_bytes, or if the CSPRNG fails (it does not on a
// seeded Linux system), the OS's random_device mixed with the clock.
uint64_t random_boot_id() {
  std::array<uint8_t, 8> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) == 1) return load_be64(bytes.data());
  std::random_device rd;
  const auto now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return ((static_cast<uint64_t>(rd()) << 32) | rd()) ^ now;
}

uint8_t key_id(const std::string& secret) {
  std::array<uint8_t, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest.data());
  return digest[0];
}

// HMAC-SHA256 of data[0, n) into out; false if libcrypto failed (then nothing verifies
// and nothing is sent: failing closed).
bool hmac(const std::string& secret, const uint8_t* data, size_t n, uint8_t* out) {
  unsigned len = 0;
  return HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), data, n, out, &len) != nullptr &&
         len == kMacSize;
}

// "IPv4:port" or "[IPv6]:port", IP literals only (no names: no resolver on the loop),
// port 0..65535 in decimal.
bool parse_address(std::string_view s, sockaddr_storage& out) {
  std::string host;
  std::string_view port;
  bool v6 = false;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
    v6 = true;
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = std::string(s.substr(0, colon));
    if (host.find(':') != std::string::npos) return false;  // bare IPv6 without brackets
    port = s.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5) return false;
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  if (p > 65535) return false;
  out = {};
  if (v6) return uv_ip6_addr(host.c_str(), static_cast<int>(p), reinterpret_cast<sockaddr_in6*>(&out)) == 0;
  return uv_ip4_addr(host.c_str(), static_cast<int>(p), reinterpret_cast<sockaddr_in*>(&out)) == 0;
}

// "" for anything but IPv4 and IPv6. IPv4-mapped IPv6 (a dual-stack socket bound to
// [::] receiving from IPv4) is shown as IPv4, the way members advertise such addresses.
std::string format_address(const sockaddr* a) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (a == nullptr) return "";
  if (a->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(a);
    if (uv_ip4_name(in, ip, sizeof ip) != 0) return "";
    return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (a->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a);
    const uint16_t port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      if (inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, sizeof ip) == nullptr) return "";
      return std::string(ip) + ":" + std::to_string(port);
    }
    if (uv_ip6_name(in6, ip, sizeof ip) != 0) return "";
    return "[" + std::string(ip) + "]:" + std::to_string(port);
  }
  return "";
}

std::string uv_message(const std::string& address, const char* what, int rc) {
  return "bind " + address + ": " + what + uv_strerror(rc);
}

}  // namespace

struct UdpTransport::Handle {
  uv_udp_t udp{};
  UdpTransport* owner = nullptr;
  // One byte more than the largest datagram we accept: a larger one is seen as such
  // (n > kMaxPacket, or UV_UDP_PARTIAL when the kernel truncated it to fit).
  std::array<char, kMaxPacket + 1> buf{};
};

struct UdpTransport::QueuedSend {
  uv_udp_send_t req{};
  std::array<char, kMaxPacket> bytes{};
};

UdpTransport::UdpTransport(uv_loop_t* loop, OnReceive on_receive)
    : loop_(loop), on_receive_(std::move(on_receive)), boot_id_(random_boot_id()) {}

UdpTransport::~UdpTransport() { close(); }

std::string UdpTransport::bind(const std::string& address) {
  if (handle_ != nullptr) return "bind " + address + ": already bound to " + local_;
  sockaddr_storage addr{};
  if (!parse_address(address, addr)) return "bind " + address + ": want IPv4:port or [IPv6]:port (IP literal)";

  auto handle = std::make_unique<Handle>();
  // uv_udp_init creates no socket (that happens in bind), so it cannot fail short of a
  // bug; if it did, the handle is not on the loop and is freed here.
  if (const int rc = uv_udp_init(loop_, &handle->udp); rc < 0) return uv_message(address, "", rc);
  handle->udp.data = handle.get();
  handle->owner = this;
  handle_ = handle.release();  // from here on, freed by on_close only

  // No UV_UDP_REUSEADDR: on Linux it would let two instances share the port.
  if (const int rc = uv_udp_bind(&handle_->udp, reinterpret_cast<const sockaddr*>(&addr), 0); rc < 0) {
    close();
    return uv_message(address, "", rc);
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  if (const int rc = uv_udp_getsockname(&handle_->udp, reinterpret_cast<sockaddr*>(&bound), &len); rc < 0) {
    close();
    return uv_message(address, "getsockname: ", rc);
  }
  if (const int rc = uv_udp_recv_start(&handle_->udp, on_alloc, on_recv); rc < 0) {
    close();
    return uv_message(address, "receive: ", rc);
  }
  local_ = format_address(reinterpret_cast<const sockaddr*>(&bound));
  return "";
}

void UdpTransport::set_secrets(UdpSecrets secrets) {
  keys_.clear();
  if (secrets.send_key.empty()) return;
  keys_.push_back({secrets.send_key, key_id(secrets.send_key)});
  for (std::string& k : secrets.accept_keys) {
    if (k.empty()) continue;
    const bool dup = std::any_of(keys_.begin(), keys_.end(), [&](const Key& have) { return have.secret == k; });
    if (!dup) keys_.push_back({k, key_id(k)});
  }
}

void UdpTransport::close() {
  if (handle_ == nullptr) return;
  handle_->owner = nullptr;
  // Stops receiving; queued sends complete with UV_ECANCELED before on_close runs.
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->udp), on_close);
  handle_ = nullptr;
  queued_sends_ = 0;
  local_.clear();
}

void UdpTransport::on_close(uv_handle_t* h) { std::unique_ptr<Handle>(static_cast<Handle*>(h->data)).reset(); }

const sockaddr_storage* UdpTransport::destination(const std::string& to) {
  if (auto it = destinations_.find(to); it != destinations_.end()) return &it->second;
  sockaddr_storage addr{};
  if (!parse_address(to, addr)) return nullptr;
  if (destinations_.size() >= kMaxCachedDestinations) destinations_.clear();
  return &destinations_.emplace(to, addr).first->second;
}

void UdpTransport::send(const std::string& to, std::string_view payload) {
  const bool sign = !keys_.empty();
  const size_t size = payload.size() + (sign ? kTrailerSize : 0);
  const sockaddr_storage* dest = handle_ != nullptr ? destination(to) : nullptr;
  if (dest == nullptr || size > kMaxPacket) {
    ++stats_.send_errors;
    return;
  }
  std::array<char, kMaxPacket> datagram;
  if (!payload.empty()) std::memcpy(datagram.data(), payload.data(), payload.size());
  if (sign) {
    // The caller's contract (header): an authenticated payload says so in its flags, or
    // every receiver drops it as unauthenticated.
    assert(payload.size() >= kHeaderSize && (static_cast<uint8_t>(payload[2]) & kFlagAuthenticated) != 0);
    auto* bytes = reinterpret_cast<uint8_t*>(datagram.data());
    uint8_t* trailer = bytes + payload.size();
    trailer[0] = keys_.front().id;
    store_be64(trailer + 1, boot_id_);
    store_be64(trailer + 9, ++counter_);
    if (!hmac(keys_.front().secret, bytes, payload.size() + kSignedTrailer, trailer + kSignedTrailer)) {
      ++stats_.send_errors;
      return;
    }
  }

  const auto* sa = reinterpret_cast<const sockaddr*>(dest);
  uv_buf_t buf = uv_buf_init(datagram.data(), static_cast<unsigned>(size));
  int rc = uv_udp_try_send(&handle_->udp, &buf, 1, sa);
  if (rc >= 0) {
    ++stats_.sent;
    return;
  }
  // UV_EAGAIN: the socket buffer is full, or earlier sends still wait in libuv's queue
  // (try_send never overtakes them). Queue a copy, boundedly: a flood here means the
  // network cannot keep up, and gossip repairs loss better than a growing queue would.
  if (rc != UV_EAGAIN || queued_sends_ >= kMaxQueuedSends) {
    ++stats_.send_errors;
    return;
  }
  auto queued = std::make_unique<QueuedSend>();
  std::memcpy(queued->bytes.data(), datagram.data(), size);
  buf = uv_buf_init(queued->bytes.data(), static_cast<unsigned>(size));
  queued->req.data = queued.get();
  rc = uv_udp_send(&queued->req, &handle_->udp, &buf, 1, sa, on_sent);
  if (rc < 0) {  // no callback will come: freed here
    ++stats_.send_errors;
    return;
  }
  queued.release();  // freed by on_sent
  ++queued_sends_;
}

void UdpTransport::on_sent(uv_udp_send_t* req, int status) {
  std::unique_ptr<QueuedSend> queued(static_cast<QueuedSend*>(req->data));
  UdpTransport* self = static_cast<Handle*>(req->handle->data)->owner;
  if (self == nullptr) return;  // closed: cancelled, nobody counts any more
  --self->queued_sends_;
  if (status == 0) {
    ++self->stats_.sent;
  } else {
    ++self->stats_.send_errors;
  }
}

void UdpTransport::on_alloc(uv_handle_t* h, size_t /*suggested*/, uv_buf_t* buf) {
  auto* handle = static_cast<Handle*>(h->data);
  *buf = uv_buf_init(handle->buf.data(), static_cast<unsigned>(handle->buf.size()));
}

void UdpTransport::on_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr, unsigned flags) {
  UdpTransport* self = static_cast<Handle*>(h->data)->owner;
  if (self == nullptr) return;
  // n < 0: a socket error; libuv keeps receiving and there is no datagram to count.
  // n == 0 without an address: the socket is drained, nothing was received.
  if (n < 0 || (n == 0 && addr == nullptr)) return;
  self->received(std::string_view(buf->base, static_cast<size_t>(n)), addr, flags);
}

void UdpTransport::received(std::string_view datagram, const sockaddr* addr, unsigned flags) {
  if ((flags & UV_UDP_PARTIAL) != 0 || datagram.size() > kMaxPacket) {
    ++stats_.dropped_oversized;
    return;
  }
  // No gossip packet is shorter than its codec header, authenticated or not.
  if (datagram.size() < kHeaderSize) {
    ++stats_.dropped_malformed;
    return;
  }
  std::string_view payload = datagram;
  if (!keys_.empty()) {
    if ((static_cast<uint8_t>(datagram[2]) & kFlagAuthenticated) == 0) {
      ++stats_.dropped_unauthenticated;
      return;
    }
    if (datagram.size() < kHeaderSize + kTrailerSize) {
      ++stats_.dropped_malformed;
      return;
    }
    if (!verify(datagram)) return;
    payload = datagram.substr(0, datagram.size() - kTrailerSize);
  }
  const std::string from = format_address(addr);
  if (from.empty()) {
    ++stats_.dropped_malformed;
    return;
  }
  ++stats_.received;
  if (on_receive_) on_receive_(from, payload);  // last: the callback may close us
}

bool UdpTransport::verify(std::string_view datagram) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(datagram.data());
  const size_t signed_size = datagram.size() - kMacSize;
  const uint8_t* trailer = bytes + datagram.size() - kTrailerSize;
  const uint8_t id = trailer[0];
  const uint64_t boot_id = load_be64(trailer + 1);
  const uint64_t counter = load_be64(trailer + 9);
  const uint8_t* mac = trailer + kSignedTrailer;

  bool known = false;
  bool valid = false;
  for (const Key& key : keys_) {
    if (key.id != id) continue;
    known = true;
    std::array<uint8_t, kMacSize> expected{};
    if (hmac(key.secret, bytes, signed_size, expected.data()) && CRYPTO_memcmp(expected.data(), mac, kMacSize) == 0) {
      valid = true;
      break;
    }
  }
  if (!known) {
    ++stats_.dropped_unknown_key;
    return false;
  }
  if (!valid) {
    ++stats_.dropped_forged;
    return false;
  }
  if (!accept_counter(boot_id, counter)) {
    ++stats_.dropped_replayed;
    return false;
  }
  return true;
}

// RFC 4303 appendix A: a window of 64 counters ending at the highest seen. Above it:
// slide. Inside it: accept once. Below it: too old, dropped as a replay.
bool UdpTransport::accept_counter(uint64_t boot_id, uint64_t counter) {
  auto it = replay_.find(boot_id);
  if (it == replay_.end()) {
    if (replay_.size() >= kMaxReplayWindows) {
      replay_.erase(replay_lru_.back());
      replay_lru_.pop_back();
    }
    replay_lru_.push_front(boot_id);
    replay_.emplace(boot_id, ReplayWindow{counter, 1, replay_lru_.begin()});
    return true;
  }
  ReplayWindow& w = it->second;
  if (counter > w.highest) {
    const uint64_t shift = counter - w.highest;
    w.bitmap = shift >= 64 ? 1 : (w.bitmap << shift) | 1;
    w.highest = counter;
  } else {
    const uint64_t behind = w.highest - counter;
    if (behind >= 64) return false;
    const uint64_t bit = uint64_t{1} << behind;
    if ((w.bitmap & bit) != 0) return false;
    w.bitmap |= bit;
  }
  replay_lru_.splice(replay_lru_.begin(), replay_lru_, w.lru);
  return true;
}

}  // namespace ringproxy::gossip
