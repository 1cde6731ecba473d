// fuzz::gossip, fuzz::config and fuzz::admin (targets.h). The data-path targets are in
// proxy_harness.cc.
#include "fuzz/targets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>

#include "config/config.h"
#include "gossip/codec.h"
#include "gossip/udp_transport.h"
#include "proxy/admin_api.h"
#include "proxy/backends.h"
#include "proxy/cli.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "ring/ring.h"

namespace ringproxy::fuzz {
namespace {

std::string_view as_text(std::span<const uint8_t> input) {
  return {reinterpret_cast<const char*>(input.data()), input.size()};
}

// ---------------------------------------------------------------------------------------
// Gossip

// codec.h promises that decoding accepts exactly what encode() produces, so an accepted
// packet re-encodes to the same bytes, and those decode to the same message.
std::string check_codec(std::span<const uint8_t> bytes, uint8_t accepted_flags) {
  const gossip::Decoded d = gossip::decode(bytes, accepted_flags);
  if (!d.message) {
    if (d.error.empty()) return "codec: a rejected packet without a reason";
    return "";
  }
  if ((d.flags & ~accepted_flags) != 0) return "codec: accepted a packet with flags it was not told to accept";
  const gossip::Encoded e = gossip::encode(*d.message, gossip::kMaxPacket, d.flags);
  if (e.updates_sent != d.message->updates.size()) {
    return "codec: an accepted packet's updates do not all fit when encoded again";
  }
  if (!std::equal(e.bytes.begin(), e.bytes.end(), bytes.begin(), bytes.end())) {
    return "codec: an accepted packet re-encodes to other bytes (" + std::to_string(bytes.size()) + " in, " +
           std::to_string(e.bytes.size()) + " out)";
  }
  if (gossip::encoded_size_without_updates(*d.message) > e.bytes.size()) {
    return "codec: encoded_size_without_updates is larger than the whole packet";
  }
  const gossip::Decoded again = gossip::decode(e.bytes, accepted_flags);
  if (!again.message || !(*again.message == *d.message) || again.flags != d.flags) {
    return "codec: a re-encoded packet decodes to another message";
  }
  return "";
}

uint64_t drops(const gossip::UdpStats& s) {
  return s.received + s.dropped_unauthenticated + s.dropped_unknown_key + s.dropped_forged +
         s.dropped_replayed + s.dropped_oversized + s.dropped_malformed;
}

constexpr std::string_view kSendKey = "fuzz-send-key-0123456789";
constexpr std::string_view kAcceptKey = "fuzz-old-key-9876543210";
constexpr std::string_view kUnknownKey = "fuzz-nobody-has-this-key";

// Datagrams through a real UdpTransport bound on 127.0.0.1, sent from a plain socket.
// Records, until the input ends:
//   flags(1) [boot(1) counter(2, big endian) if flags bit 0] length(2, big endian) bytes
//   bit 0: the harness appends a trailer signed as udp_transport.h describes (key id,
//          boot id, counter, HMAC-SHA256); bit 1: with the accepted (old) key rather than
//          the send key; bit 2: with a key the transport does not know; bit 3: one MAC
//          bit flipped.
// Checked: each datagram is counted exactly once (received or one drop cause); one
// signed with a known key and a counter above every one accepted for its boot id is
// received when its header is whole and flagged; one whose counter was accepted before
// is dropped as replayed; every payload handed on passes check_codec.
std::string check_transport(std::span<const uint8_t> in, bool with_secrets) {
  static const int sender = [] {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      std::perror("fuzz harness: cannot bind a UDP socket");
      std::abort();
    }
    return fd;
  }();

  uv_loop_t loop;
  uv_loop_init(&loop);
  std::string violation;
  auto transport = std::make_unique<gossip::UdpTransport>(&loop, [&](const std::string&, std::string_view payload) {
    const std::string v = check_codec({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()},
                                      with_secrets ? gossip::kFlagAuthenticated : 0);
    if (violation.empty()) violation = v;
  });
  if (std::string e = transport->bind("127.0.0.1:0"); !e.empty()) {
    std::fprintf(stderr, "fuzz harness: %s\n", e.c_str());
    std::abort();
  }
  if (with_secrets) transport->set_secrets({std::string(kSendKey), {std::string(kAcceptKey)}});
  sockaddr_in to{};
  {
    const std::string& local = transport->local_address();
    uv_ip4_addr("127.0.0.1", std::atoi(local.substr(local.rfind(':') + 1).c_str()), &to);
  }

  std::map<uint64_t, std::pair<uint64_t, std::vector<uint64_t>>> accepted;  // boot -> highest, all
  size_t pos = 0;
  const auto take = [&](size_t n) -> uint64_t {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | (pos < in.size() ? in[pos++] : 0);
    return v;
  };
  for (int records = 0; pos < in.size() && records < 64 && violation.empty(); ++records) {
    const uint8_t flags = static_cast<uint8_t>(take(1));
    const bool sign = (flags & 1) != 0;
    const uint64_t boot = sign ? take(1) : 0;
    const uint64_t counter = sign ? take(2) : 0;
    const size_t len = std::min<size_t>(take(2), in.size() - std::min(pos, in.size()));
    std::string datagram(reinterpret_cast<const char*>(in.data()) + pos, len);
    pos += len;
    std::string_view key = (flags & 2) ? kAcceptKey : kSendKey;
    if (flags & 4) key = kUnknownKey;
    if (sign) {
      uint8_t digest[SHA256_DIGEST_LENGTH];
      SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
      datagram.push_back(static_cast<char>(digest[0]));
      for (int i = 7; i >= 0; --i) datagram.push_back(static_cast<char>(boot >> (8 * i)));
      for (int i = 7; i >= 0; --i) datagram.push_back(static_cast<char>(counter >> (8 * i)));
      uint8_t mac[32];
      unsigned mac_len = 0;
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(datagram.data()), datagram.size(), mac, &mac_len);
      if (flags & 8) mac[counter % 32] ^= 1;
      datagram.append(reinterpret_cast<const char*>(mac), 32);
    }
    const uint64_t before = drops(transport->stats());
    const uint64_t replayed_before = transport->stats().dropped_replayed;
    const uint64_t received_before = transport->stats().received;
    if (::sendto(sender, datagram.data(), datagram.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0) {
      continue;  // too large for UDP: nothing to count
    }
    // Loopback delivers at once; UV_RUN_ONCE waits for it if it has not yet arrived.
    while (drops(transport->stats()) == before) uv_run(&loop, UV_RUN_ONCE);
    const gossip::UdpStats& s = transport->stats();
    if (drops(s) != before + 1) {
      violation = "transport: one datagram was counted " + std::to_string(drops(s) - before) + " times";
      break;
    }
    if (!with_secrets || !sign || (flags & (4 | 8)) != 0) continue;
    const bool whole = datagram.size() <= gossip::kMaxPacket && len >= gossip::kHeaderSize &&
                       (static_cast<uint8_t>(datagram[2]) & gossip::kFlagAuthenticated) != 0;
    auto it = accepted.find(boot);
    const bool seen = it != accepted.end() && std::find(it->second.second.begin(), it->second.second.end(), counter) !=
                                                  it->second.second.end();
    const bool fresh = it == accepted.end() || counter > it->second.first;
    const bool got = s.received == received_before + 1;
    if (whole && fresh && !got) {
      violation = "transport: a datagram signed with a known key and a fresh counter was dropped";
    } else if (whole && seen && s.dropped_replayed != replayed_before + 1) {
      violation = "transport: a replayed datagram was not dropped as a replay";
    }
    if (got) {
      auto& [highest, all] = accepted[boot];
      highest = std::max(highest, counter);
      all.push_back(counter);
    }
  }
  transport.reset();  // closes the handle; the loop runs its close callback
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0 && violation.empty()) violation = "transport: a handle was left open";
  return violation;
}

// ---------------------------------------------------------------------------------------
// Admin

constexpr std::string_view kAdminToken = "fuzz-token";

// The config the admin Server loads: three backends that are never connected to (the
// Server's loops never run), and the token that the harness always presents.
// A file written at construction and removed at exit, with the static that holds it.
struct TempFile {
  TempFile(std::string p, std::string_view contents) : path(std::move(p)) {
    std::ofstream(path) << contents;
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string path;
};

const std::string& admin_config_path() {
  static const TempFile file(
      (std::filesystem::temp_directory_path() / ("ringproxy-fuzz-admin-" + std::to_string(::getpid()) + ".toml"))
          .string(),
      "[proxy]\nlisten = \"127.0.0.1:1\"\nlog_level = \"error\"\nworkers = 1\n"
      "[admin]\nlisten = \"127.0.0.1:2\"\ntoken = \"" + std::string(kAdminToken) + "\"\n"
      "[ring]\nvnodes = 8\n"
      "[[backend]]\nname = \"cache-a\"\naddress = \"127.0.0.1:9001\"\n"
      "[[backend]]\nname = \"cache-b\"\naddress = \"127.0.0.1:9002\"\nweight = 2\n"
      "[[backend]]\nname = \"cache-c\"\naddress = \"[::1]:9003\"\n");
  return file.path;
}

std::string check_admin_answer(const AdminRequest& req, const AdminResponse& resp, const Server& server) {
  static const int kAllowed[] = {200, 201, 400, 401, 404, 405, 409, 413};
  if (std::find(std::begin(kAllowed), std::end(kAllowed), resp.status) == std::end(kAllowed)) {
    return "admin: " + req.method + " " + req.target + " answered status " + std::to_string(resp.status);
  }
  if (resp.content_type == "application/json") {
    const auto body = nlohmann::json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return "admin: " + req.method + " " + req.target + " answered JSON that does not parse";
    if (resp.status >= 400 && !(body.is_object() && body.contains("error") && body["error"].is_string())) {
      return "admin: an error answer without {\"error\": \"...\"}";
    }
  } else if (resp.status >= 400) {
    return "admin: an error answer that is not JSON";
  }
  // Whatever was changed, the running config and ring agree and hold only valid names.
  const Config& config = server.config();
  const auto routing = const_cast<Server&>(server).routing();
  if (routing->default_pool().backends.size() != config.backends.size()) return "admin: the ring and the config disagree";
  for (const BackendConfig& b : config.backends) {
    if (!is_valid_backend_name(b.name)) return "admin: a backend with an invalid name was added";
    if (!routing->default_pool().ring->find(b.name)) return "admin: a backend of the config is not on the ring";
  }
  return "";
}

}  // namespace

std::string gossip_decode(std::span<const uint8_t> input) {
  if (input.empty()) return "";
  const uint8_t mode = input[0];
  const auto rest = input.subspan(1);
  if ((mode & 1) == 0) return check_codec(rest, (mode & 2) ? gossip::kFlagAuthenticated : 0);
  return check_transport(rest, (mode & 2) != 0);
}

std::string config(std::span<const uint8_t> input) {
  const std::string path = "fuzz.toml";
  const std::string_view text = as_text(input);
  const ConfigResult r = load_config_string(text, path);
  const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  for (const ConfigError& e : r.errors) {
    const std::string s = e.to_string();
    const std::string where = path + ":" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": ";
    if (e.file != path || e.line < 1 || e.column < 1 || s.rfind(where, 0) != 0) {
      return "config: an error without file:line:col: \"" + s + "\"";
    }
    if (e.line > lines + 1) return "config: an error on line " + std::to_string(e.line) + " of " + std::to_string(lines);
    if (e.message.empty()) return "config: an error without a message: \"" + s + "\"";
    if (e.message.rfind("internal error", 0) == 0) return "config: the loader threw: \"" + s + "\"";
  }
  if (!r.ok()) return "";
  // What --check accepts, the proxy must be able to start with.
  uint64_t points = 0;
  for (const BackendConfig& b : r.config.backends) points += uint64_t{b.weight} * r.config.ring.vnodes;
  if (points > Ring::kMaxPoints) {
    return "config: accepted, but its ring would have " + std::to_string(points) + " points, above Ring::kMaxPoints";
  }
  if (points <= 100'000) {
    std::string error;
    if (!build_routing(std::make_shared<const Config>(r.config), nullptr, 1, 1, &error)) {
      return "config: accepted, but no routing can be built from it: " + error;
    }
  }
  return "";
}

std::string admin(std::span<const uint8_t> input) {
  // A fresh Server per input: nothing an input changes reaches the next.
  Server server(admin_config_path());
  if (server.load() != kExitOk) {
    std::fprintf(stderr, "fuzz harness: the admin config does not load\n");
    std::abort();
  }
  const AdminHandler handler = make_admin_handler(server);
  const std::string_view text = as_text(input);
  const size_t eol = text.find('\n');
  const std::string_view line = text.substr(0, eol);
  AdminRequest req;
  const size_t space = line.find(' ');
  req.method = std::string(line.substr(0, space));
  req.target = space == std::string_view::npos ? "/" : std::string(line.substr(space + 1));
  const size_t q = req.target.find('?');
  req.path = percent_decode(std::string_view(req.target).substr(0, q));
  req.query = q == std::string::npos ? "" : req.target.substr(q + 1);
  req.headers.emplace_back("Authorization", "Bearer " + std::string(kAdminToken));
  req.headers.emplace_back("Content-Type", "application/json");
  req.body = eol == std::string_view::npos ? "" : std::string(text.substr(eol + 1));
  AdminResponse resp;
  try {
    resp = handler(req);
  } catch (const std::exception& e) {
    // AdminServer would catch it and answer 500, which SPEC does not allow for input.
    return "admin: " + req.method + " " + req.target + " threw (a 500): " + e.what();
  }
  return check_admin_answer(req, resp, server);
}

}  // namespace ringproxy::fuzz
