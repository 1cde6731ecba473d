// The gossip transport: datagrams over UDP on a libuv loop (the proxy's control loop),
// at most kMaxPacket (1,400) bytes each, trailer included, optionally authenticated.
//
// With secrets configured, every datagram is the payload followed by a trailer of
// kTrailerSize = 49 bytes:
//
//   payload  key_id(1)  boot_id(8, big endian)  counter(8, big endian)  mac(32)
//
//   key_id   the first byte of SHA-256(key): names the key without revealing it, so a
//            receiver tries only the key(s) it may be. Two configured keys may share an
//            id (1 in 256); the receiver then tries each of them.
//   boot_id  random per transport instance (RAND_bytes at construction, i.e. per
//            process start): tells a restarted sender, whose counter starts again at 1,
//            from its former life.
//   counter  1, 2, 3, ... per datagram this transport signs.
//   mac      HMAC-SHA256, the full 32 bytes, keyed by the secret, over every byte before
//            it (payload, key_id, boot_id, counter).
//
// A receiver with secrets hands on the payload only (trailer stripped) and drops, counting
// each by cause (UdpStats), datagrams that are:
//   oversized        more than kMaxPacket bytes (also checked without secrets);
//   malformed        empty or shorter than a codec header (also without secrets), or
//                    flagged authenticated but shorter than header + trailer, or from a
//                    source address that is not IPv4/IPv6;
//   unauthenticated  without kFlagAuthenticated in the codec header's flags byte
//                    (codec.h). The flag only sorts drops by cause: whatever the flag
//                    says, nothing is handed on unless its MAC verifies;
//   unknown_key      the key id matches no configured key;
//   forged           no key with that id verifies the MAC (a flipped payload or MAC
//                    bit). A datagram cut short but still longer than header + trailer
//                    cannot be told from a whole one: it counts as forged, or as
//                    unknown_key when the byte now read as key id names no key;
//   replayed         the MAC verifies but the counter was seen before for that boot id,
//                    or is 64 or more below the highest seen (the anti-replay window of
//                    IPsec, RFC 4303 section 3.4.3 and appendix A). Only datagrams whose
//                    MAC verifies touch the windows, so forgeries cannot move them.
// The window is per boot id, not per (source address, boot id): the MAC does not cover
// the source address (NAT would change it), so an address-keyed window would accept a
// captured datagram resent from any other address. Windows are kept for the
// kMaxReplayWindows most recently active boot ids; the least recently used is forgotten
// beyond that, so memory stays bounded (only holders of a key can create windows).
// Limits, by design: a datagram signed for one member can be replayed once to another
// member that has not seen that counter (the MAC does not name the receiver; SWIM
// messages carry their target and merging is idempotent), and a datagram of a boot id
// whose window was forgotten can be replayed once.
//
// Key rotation: `send_key` signs, it and every key in `accept_keys` verify, so instances
// move to a new key one at a time: everyone accepts new, then everyone sends new while
// accepting old, then everyone drops old.
//
// Without secrets, datagrams are the bare payloads, sent and accepted as they are.
//
// Lifetime: one uv_udp_t, owned by this object, allocated by bind() and freed only in its
// close callback. close() (or the destructor, which calls it) detaches the handle and
// uv_close()s it once; the transport may be destroyed at once after that, but the loop
// must run again (e.g. uv_run(loop, UV_RUN_DEFAULT)) before uv_loop_close() so that the
// handle's close callback frees it. Queued sends are cancelled then and freed.
//
// Thread: the loop's, for every member function and callback. Addresses are
// "IPv4:port" or "[IPv6]:port" strings, as gossip members advertise them.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringproxy::gossip {

struct UdpStats {
  uint64_t sent = 0;
  uint64_t received = 0;          // accepted and handed on
  uint64_t send_errors = 0;       // not bound, bad destination, oversized, socket errors,
                                  // too many sends queued behind a full socket buffer
  uint64_t dropped_unauthenticated = 0;
  uint64_t dropped_unknown_key = 0;
  uint64_t dropped_forged = 0;
  uint64_t dropped_replayed = 0;
  uint64_t dropped_oversized = 0;
  uint64_t dropped_malformed = 0;  // too short for its header or trailer, bad source address
};

struct UdpSecrets {
  // Empty send_key: no authentication (datagrams are sent and accepted bare), and
  // accept_keys are ignored (where a list of previous keys gets parsed, refuse it without a
  // secret).
  std::string send_key;                 // signs what we send
  std::vector<std::string> accept_keys; // verify; send_key is always accepted too
};

class UdpTransport {
 public:
  // from: the datagram's source address ("127.0.0.1:7946", "[::1]:7946"; IPv4-mapped
  // IPv6 sources are shown as IPv4). bytes: the payload without the trailer (what codec.h
  // encodes and decodes); valid during the call only. The callback may call send(),
  // set_secrets() and close(), not destroy the transport. May be empty (send only).
  using OnReceive = std::function<void(const std::string& from, std::string_view bytes)>;

  // Bytes the trailer takes (gossip::kAuthTrailerReserve in swim.h keeps room for it).
  static constexpr size_t kTrailerSize = 1 + 8 + 8 + 32;

  UdpTransport(uv_loop_t* loop, OnReceive on_receive);
  ~UdpTransport();  // close(); the loop must run once more before uv_loop_close()
  UdpTransport(const UdpTransport&) = delete;
  UdpTransport& operator=(const UdpTransport&) = delete;

  // Binds "host:port" (IP literal; port 0 picks one) and starts receiving. Returns ""
  // or what went wrong ("bind 127.0.0.1:7946: address already in use"). No
  // SO_REUSEADDR: a port in use is an error. Once; after a failure it may be retried.
  std::string bind(const std::string& address);
  // The address actually bound ("127.0.0.1:40123"), after bind().
  const std::string& local_address() const { return local_; }
  // Takes effect for the next datagram sent or received. Keeps the replay windows.
  void set_secrets(UdpSecrets secrets);
  // Sends one datagram (payload + trailer when authenticating). Never blocks; failures
  // are counted, not reported: gossip is loss-tolerant by design. With secrets the
  // caller encodes the payload with kFlagAuthenticated (asserted) and at most
  // kMaxPacket - kTrailerSize bytes; a longer payload is not sent (send_errors).
  // Tries uv_udp_try_send first (no allocation); when the socket buffer is full it
  // queues a copy with uv_udp_send, at most kMaxQueuedSends, and counts the rest.
  void send(const std::string& to, std::string_view payload);
  void close();  // stops receiving; the handle closes on the loop. Idempotent.
  const UdpStats& stats() const { return stats_; }

 private:
  // The handle and its receive buffer, freed in on_close. `owner` is null once close()
  // has detached it, so that late callbacks (cancelled sends) do not reach a transport
  // that may be gone.
  struct Handle;
  struct QueuedSend;
  struct Key {
    std::string secret;
    uint8_t id = 0;
  };
  struct ReplayWindow {
    uint64_t highest = 0;
    uint64_t bitmap = 0;  // bit i: highest - i was seen (bit 0: highest itself)
    std::list<uint64_t>::iterator lru;
  };

  // Enough senders for any cluster we run (and their restarts) many times over; each
  // window costs ~80 bytes.
  static constexpr size_t kMaxReplayWindows = 4096;
  // Sends waiting behind a full socket buffer; beyond this, sends are counted as errors.
  static constexpr size_t kMaxQueuedSends = 64;
  // Parsed destinations kept (cleared when full): members advertise one address each.
  static constexpr size_t kMaxCachedDestinations = 1024;

  static void on_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr, unsigned flags);
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_sent(uv_udp_send_t* req, int status);
  static void on_close(uv_handle_t* h);

  void received(std::string_view datagram, const sockaddr* addr, unsigned flags);
  // Verifies an authenticated datagram; returns false after counting the drop.
  bool verify(std::string_view datagram);
  // Records `counter` for `boot_id`; false if it is a replay.
  bool accept_counter(uint64_t boot_id, uint64_t counter);
  const sockaddr_storage* destination(const std::string& to);

  uv_loop_t* loop_;
  OnReceive on_receive_;
  Handle* handle_ = nullptr;  // owned; freed by on_close after close()
  std::string local_;
  std::vector<Key> keys_;     // empty: no authentication; keys_[0] signs
  uint64_t boot_id_ = 0;
  uint64_t counter_ = 0;
  size_t queued_sends_ = 0;
  std::unordered_map<uint64_t, ReplayWindow> replay_;  // by boot id
  std::list<uint64_t> replay_lru_;                     // boot ids, most recent first
  std::map<std::string, sockaddr_storage, std::less<>> destinations_;
  UdpStats stats_;
};

}  // namespace ringproxy::gossip
