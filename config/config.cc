#include "config/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <system_error>
#include <utility>

#include <toml++/toml.h>

#include "config/fields.h"
#include "config/read_file.h"
#include "config/dns.h"
#include "config/pools.h"
#include "config/sections.h"
#include "config/tls.h"
#include "ring/ring.h"

namespace ringproxy {

std::string ConfigError::to_string() const {
  std::string out = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

bool is_valid_backend_name(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return false;
  return std::ranges::all_of(name, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == ':' || c == '[' || c == ']';
  });
}

std::string_view protocol_name(BackendProtocol protocol) {
  switch (protocol) {
    case BackendProtocol::kHttp1: return "http1";
    case BackendProtocol::kH2c: return "h2c";
    case BackendProtocol::kH2: return "h2";
  }
  return "http1";  // not reached: every enumerator is above
}

std::optional<BackendProtocol> parse_backend_protocol(std::string_view text, std::string* why) {
  for (const BackendProtocol p : {BackendProtocol::kHttp1, BackendProtocol::kH2c, BackendProtocol::kH2}) {
    if (text == protocol_name(p)) return p;
  }
  *why = "expected http1, h2c or h2, got " + config_internal::quoted(text);
  return std::nullopt;
}

bool protocol_fits_tls(BackendProtocol protocol, bool tls) {
  return protocol == BackendProtocol::kHttp1 || tls == (protocol == BackendProtocol::kH2);
}

namespace {

using namespace config_internal;

// ---------------------------------------------------------------------------------
// Text values (see fields.h for the shape of a parser)

// Shortest text that reads back as the same double ("0.5", "1", "nan").
std::string number_text(double value) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

// Config files never take port 0: a proxy whose port changes on every start is no
// use to its clients. Tests that need it build the Address in code.
std::optional<Address> config_address(std::string_view text, std::string* why) {
  std::string reason;
  std::optional<Address> address = parse_address(text, &reason, /*allow_port_zero=*/false);
  if (!address) *why = "invalid address " + quoted(text) + ": " + reason;
  return address;
}

// A backend's: an IP and port, or a DNS name and port (SPEC "Backends by name").
std::optional<Address> backend_address(std::string_view text, std::string* why) {
  std::string reason;
  std::optional<Address> address = parse_address(text, &reason, /*allow_port_zero=*/false, /*allow_name=*/true);
  if (!address) *why = "invalid address " + quoted(text) + ": " + reason;
  return address;
}

// "uri | path | header:NAME | cookie:NAME | query:NAME | client_ip | client_subject",
// lower case as in
// SPEC. A query parameter name is taken as written (it is compared with the raw
// query string), so it only has to be non-empty.
std::optional<HashKey> parse_hash_key(std::string_view text, std::string* why) {
  struct Form {
    std::string_view text;  // the whole value, or the prefix before NAME
    HashKeyKind kind;
    bool named;
    std::string_view name_kind;  // for "is not a valid header name"; "" = any text
  };
  static constexpr Form kForms[] = {
      {"uri", HashKeyKind::kUri, false, ""},
      {"path", HashKeyKind::kPath, false, ""},
      {"client_ip", HashKeyKind::kClientIp, false, ""},
      {"client_subject", HashKeyKind::kClientSubject, false, ""},
      {"header:", HashKeyKind::kHeader, true, "header"},
      {"cookie:", HashKeyKind::kCookie, true, "cookie"},
      {"query:", HashKeyKind::kQuery, true, ""},
  };
  for (const Form& form : kForms) {
    if (!form.named) {
      if (text == form.text) return HashKey{form.kind, ""};
      continue;
    }
    if (!text.starts_with(form.text)) continue;
    const std::string_view name = text.substr(form.text.size());
    if (name.empty()) {
      *why = "missing the name after " + quoted(form.text);
      return std::nullopt;
    }
    if (!form.name_kind.empty() && !is_token(name)) {
      *why = quoted(name) + " is not a valid " + std::string(form.name_kind) + " name";
      return std::nullopt;
    }
    return HashKey{form.kind, std::string(name)};
  }
  *why = "expected uri, path, header:NAME, cookie:NAME, query:NAME, client_ip or client_subject, got " +
         quoted(text);
  return std::nullopt;
}

std::optional<Placement> parse_placement(std::string_view text, std::string* why) {
  if (text == "xxh3") return Placement::kXxh3;
  if (text == "nginx") return Placement::kNginx;
  *why = "expected xxh3 or nginx, got " + quoted(text);
  return std::nullopt;
}

std::optional<LogLevel> parse_log_level(std::string_view text, std::string* why) {
  if (text == "error") return LogLevel::kError;
  if (text == "warn") return LogLevel::kWarn;
  if (text == "info") return LogLevel::kInfo;
  if (text == "debug") return LogLevel::kDebug;
  *why = "expected error, warn, info or debug, got " + quoted(text);
  return std::nullopt;
}

// The path goes verbatim into "GET PATH HTTP/1.1", so it must be an origin-form target.
std::optional<std::string> parse_health_path(std::string_view text, std::string* why) {
  if (!text.starts_with('/')) {
    *why = "must start with '/', got " + quoted(text);
    return std::nullopt;
  }
  if (std::ranges::any_of(text, [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u <= 0x20 || u == 0x7f;
      })) {
    *why = "must not contain spaces or control characters, got " + quoted(text);
    return std::nullopt;
  }
  return std::string(text);
}

// A short shared key can be guessed offline from one captured message; 16 bytes
// (128 bits) is the usual floor for a symmetric key.
constexpr size_t kMinSecretBytes = 16;

std::optional<std::string> parse_secret(std::string_view text, std::string* why) {
  if (!text.empty() && text.size() < kMinSecretBytes) {
    *why = "too short (" + std::to_string(kMinSecretBytes) + " bytes at least), got " +
           std::to_string(text.size());
    return std::nullopt;
  }
  return std::string(text);
}

std::optional<std::string> parse_backend_name(std::string_view text, std::string* why) {
  if (text.empty()) {
    *why = "must not be empty (every backend needs a unique name)";
    return std::nullopt;
  }
  if (!is_valid_backend_name(text)) {
    *why = "invalid name " + quoted(text) +
           ": use letters, digits and - . _ ~ : [ ] only (names appear in admin URLs /nodes/NAME)";
    return std::nullopt;
  }
  return std::string(text);
}

// ---------------------------------------------------------------------------------
// The sections' fields (fields.h)

// An address where "" switches the feature off (admin.listen, gossip.bind).
template <class Section>
Field<Section> address_or_off_field(std::string_view name, Address Section::*member,
                                    bool Section::*enabled) {
  return {name, [member, enabled](Errors& errors, const toml::node& node, const std::string& key,
                                  Section& out) {
            const std::string* text = get_string(errors, node, key);
            if (text == nullptr) return;
            if (text->empty()) {
              out.*enabled = false;
              out.*member = Address{};
              return;
            }
            std::string why;
            if (std::optional<Address> address = config_address(*text, &why)) {
              out.*enabled = true;
              out.*member = std::move(*address);
            } else {
              errors.add(node.source().begin, key, std::move(why));
            }
          }};
}

// Bounded loads (Mirrokni, Thorup, Zadimoghaddam 2016) need c > 1, or the capacities
// would not cover the load; 0 turns them off. Above 100 the bound practically never
// applies, so such a value is more likely a typo than intent.
void read_load_factor(Errors& errors, const toml::node& node, const std::string& key,
                      RingConfig& out) {
  const std::optional<double> value = get_number(errors, node, key);
  if (!value) return;
  if (!(*value == 0.0 || (*value > 1.0 && *value <= 100.0))) {
    errors.add(node.source().begin, key,
               "must be 0 (off) or above 1 and at most 100, got " + number_text(*value));
    return;
  }
  out.load_factor = *value;
}

void read_seeds(Errors& errors, const toml::node& node, const std::string& key,
                GossipConfig& out) {
  read_address_array(errors, node, key, "an array", config_address, &out.seeds);
}

// Previous gossip keys, accepted while instances move to a new gossip.secret one at a
// time (key rotation): each must be a valid secret.
void read_previous_secrets(Errors& errors, const toml::node& node, const std::string& key, GossipConfig& out) {
  const toml::array* keys = node.as_array();
  if (keys == nullptr) {
    type_error(errors, node, key, "an array");
    return;
  }
  out.previous_secrets.clear();
  for (size_t i = 0; i < keys->size(); ++i) {
    const toml::node& item = *keys->get(i);
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    const std::string* text = get_string(errors, item, item_key);
    if (text == nullptr) continue;
    std::string why;
    if (text->empty()) {
      errors.add(item.source().begin, item_key, "must not be empty");
    } else if (auto secret = parse_secret(*text, &why)) {
      out.previous_secrets.push_back(std::move(*secret));
    } else {
      errors.add(item.source().begin, item_key, std::move(why));
    }
  }
}

// proxy.alpn: the protocols a TLS listener offers, in preference order.
void read_alpn(Errors& errors, const toml::node& node, const std::string& key, ProxyConfig& out) {
  const toml::array* list = node.as_array();
  if (list == nullptr) {
    type_error(errors, node, key, "an array of protocol names (\"h2\", \"http/1.1\")");
    return;
  }
  std::vector<std::string> alpn;
  for (size_t i = 0; i < list->size(); ++i) {
    const toml::node& item = *list->get(i);
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    const std::string* text = get_string(errors, item, item_key);
    if (text == nullptr) continue;
    if (*text != "h2" && *text != "http/1.1") {
      errors.add(item.source().begin, item_key, "must be \"h2\" or \"http/1.1\", got " + quoted(*text));
    } else if (std::ranges::find(alpn, *text) != alpn.end()) {
      errors.add(item.source().begin, item_key, "names " + quoted(*text) + " twice");
    } else {
      alpn.push_back(*text);
    }
  }
  if (list->empty()) errors.add(node.source().begin, key, "must name at least one protocol");
  out.alpn = std::move(alpn);
}

// Via's received-by (RFC 9110 7.6.3): a token, optionally ":port"; "" sends no Via.
std::optional<std::string> parse_via(std::string_view text, std::string* why) {
  const size_t colon = text.find(':');
  const std::string_view port = colon == std::string_view::npos ? "" : text.substr(colon + 1);
  const bool valid = is_token(text.substr(0, colon)) &&
                     (colon == std::string_view::npos ||
                      (!port.empty() && port.size() <= 5 && std::ranges::all_of(port, [](char c) {
                        return c >= '0' && c <= '9';
                      })));
  if (!text.empty() && !valid) {
    *why = "must be a token (letters, digits and !#$%&'*+-.^_`|~), optionally with :PORT, "
           "or \"\" to send no Via; got " + quoted(text);
    return std::nullopt;
  }
  return std::string(text);
}

// Ranges. Timeouts are 1 ms .. 1 hour: 0 would expire at once, and a longer wait is
// more likely a slip of units than intent. Counts are capped far above sane use, to
// catch a stray digit, not to limit real deployments.
std::vector<Field<ProxyConfig>> proxy_fields() {
  using P = ProxyConfig;
  return {
      text_field<P, Address>("listen", &P::listen, config_address),
      integer_field<P>("workers", &P::workers, 0, 1024),
      text_field<P, HashKey>("hash_key", &P::hash_key, parse_hash_key),
      integer_field<P>("retries", &P::retries, 0, kMaxRetries),
      integer_field<P>("connect_timeout_ms", &P::connect_timeout_ms, 1, 3'600'000),
      integer_field<P>("header_timeout_ms", &P::header_timeout_ms, 1, 3'600'000),
      integer_field<P>("idle_timeout_ms", &P::idle_timeout_ms, 1, 3'600'000),
      integer_field<P>("upstream_timeout_ms", &P::upstream_timeout_ms, 1, 3'600'000),
      // 1 KiB still holds a request line and a Host header; 1 MiB is far beyond any
      // real client (nginx refuses a header line over 8 KiB by default).
      integer_field<P>("max_header_bytes", &P::max_header_bytes, 1024, 1'048'576),
      integer_field<P>("max_connections", &P::max_connections, 1, 1'000'000),
      // 0 = stop at once, dropping requests in flight.
      integer_field<P>("shutdown_timeout_ms", &P::shutdown_timeout_ms, 0, 3'600'000),
      text_field<P, std::string>("access_log", &P::access_log, any_text),
      text_field<P, LogLevel>("log_level", &P::log_level, parse_log_level),
      text_field<P, std::string>("via", &P::via, parse_via),
      {"tls", read_proxy_tls},  // config/tls.cc
      {"alpn", read_alpn},
      boolean_field<P>("h2c", &P::h2c),
  };
}

std::vector<Field<Http2Config>> http2_fields() {
  using H = Http2Config;
  return {
      // RFC 9113 6.5.2: a value below 100 is not recommended; 1 still works.
      integer_field<H>("max_concurrent_streams", &H::max_concurrent_streams, 1, 100'000),
      // Below 1 KiB a stream crawls. Each stream may hold this much of a request body
      // while its node is slow, so it bounds memory: 16 MiB at most (RFC 9113 allows
      // 2^31 - 1).
      integer_field<H>("initial_window_bytes", &H::initial_window_bytes, 1024, 16'777'216),
      integer_field<H>("max_header_list_bytes", &H::max_header_list_bytes, 1024, 16'777'216),
      integer_field<H>("idle_timeout_ms", &H::idle_timeout_ms, 1, 3'600'000),
      // Per node, per worker. A soft cap: past it streams wait on a connection up to
      // twice the node's limit, then a connection opens all the same.
      integer_field<H>("upstream_connections", &H::upstream_connections, 1, 1024),
  };
}

std::vector<Field<RingConfig>> ring_fields() {
  using R = RingConfig;
  return {
      // A node with weight w owns vnodes * w points: 10000 x weight 1000 is 10^7
      // points for one node, the most a rebuild should ever have to sort.
      integer_field<R>("vnodes", &R::vnodes, 1, 10'000),
      {"load_factor", read_load_factor},
      text_field<R, Placement>("placement", &R::placement, parse_placement),
  };
}

std::vector<Field<HealthConfig>> health_fields() {
  using H = HealthConfig;
  return {
      text_field<H, std::string>("path", &H::path, parse_health_path),
      // Below 10 ms, checks would cost the backends more than the traffic.
      integer_field<H>("interval_ms", &H::interval_ms, 10, 3'600'000),
      integer_field<H>("timeout_ms", &H::timeout_ms, 1, 3'600'000),
      integer_field<H>("rise", &H::rise, 1, 100),
      integer_field<H>("fall", &H::fall, 1, 100),
      // 0 = passive ejection off.
      integer_field<H>("eject_after_failures", &H::eject_after_failures, 0, 1000),
      // Up to a day: the doubling backoff starts here, it must stay a usable base.
      integer_field<H>("eject_base_ms", &H::eject_base_ms, 1, 86'400'000),
      integer_field<H>("max_ejected_percent", &H::max_ejected_percent, 0, 100),
      // 0 = a returning node takes its whole share at once.
      integer_field<H>("slow_start_ms", &H::slow_start_ms, 0, kMaxSlowStartMs),
  };
}

std::vector<Field<AdminConfig>> admin_fields() {
  using A = AdminConfig;
  return {
      address_or_off_field<A>("listen", &A::listen, &A::enabled),
      text_field<A, std::string>("token", &A::token, any_text),
  };
}

std::vector<Field<GossipConfig>> gossip_fields() {
  using G = GossipConfig;
  return {
      address_or_off_field<G>("bind", &G::bind, &G::enabled),
      text_field<G, std::string>("name", &G::name, any_text),
      {"seeds", read_seeds},
      // 10 ms .. 1 min: faster floods the network, slower makes failure detection
      // (several rounds) take minutes.
      integer_field<G>("interval_ms", &G::interval_ms, 10, 60'000),
      text_field<G, std::string>("secret", &G::secret, parse_secret),
      {"previous_secrets", read_previous_secrets},
  };
}

std::vector<Field<BackendConfig>> backend_fields() {
  using B = BackendConfig;
  return {
      text_field<B, std::string>("name", &B::name, parse_backend_name),
      text_field<B, Address>("address", &B::address, backend_address),
      // Weight multiplies the node's points; 0 drains it (SPEC). See vnodes for the cap.
      integer_field<B>("weight", &B::weight, 0, 1000),
      boolean_field<B>("tls", &B::tls),
      text_field<B, std::string>("tls_name", &B::tls_name, parse_tls_name),  // config/tls.cc
      text_field<B, BackendProtocol>("protocol", &B::protocol, parse_backend_protocol),
  };
}

const toml::node* find_key(const toml::table& root, std::string_view section, std::string_view key) {
  const toml::table* table = root[section].as_table();
  return table == nullptr ? nullptr : table->get(key);
}

// Two listeners collide when they share a port and an IP, or when either is a
// wildcard (0.0.0.0, ::), which on Linux also covers the other family by default.
bool listeners_collide(const Address& a, const Address& b) {
  auto wildcard = [](const Address& x) { return x.host == "0.0.0.0" || x.host == "::"; };
  return a.port == b.port && (a.host == b.host || wildcard(a) || wildcard(b));
}

// ---------------------------------------------------------------------------------
// The whole file

class Loader {
 public:
  Loader(const toml::table& root, const std::string& path) : root_(root), errors_(path), warnings_(path) {
    config_.path = path;
  }

  ConfigResult load() && {
    read_root();
    default_health_timeout();
    read_tiers(errors_, warnings_, root_, config_);  // config/pools.cc: after the top level
    config_.default_declared = default_pool_declared(config_);
    check_health_timing();
    check_hash_key();
    check_listeners();
    check_gossip();
    check_backends_unique();
    check_single_label_names();
    check_ring_size();
    check_something_to_serve();
    return ConfigResult{std::move(config_), std::move(errors_).take(), std::move(warnings_).take()};
  }

 private:
  struct SectionReader {
    std::string_view name;
    std::function<void(const toml::node&)> read;
  };

  // A [[backend]] table as written: its index in the array (for "backend[3]") and
  // the table (for the positions of later cross-checks). Parallel to config_.backends.
  struct BackendSource {
    size_t index;
    const toml::table* table;
  };

  void read_root() {
    const std::vector<SectionReader> sections = {
        section_reader("proxy", proxy_fields(), config_.proxy),
        section_reader("ring", ring_fields(), config_.ring),
        section_reader("health", health_fields(), config_.health),
        section_reader("admin", admin_fields(), config_.admin),
        section_reader("gossip", gossip_fields(), config_.gossip),
        section_reader("http2", http2_fields(), config_.http2),
        {"backend", [this](const toml::node& node) { read_backends(node); }},
        {"upstream_tls",
         [this](const toml::node& node) { read_upstream_tls(errors_, node, "upstream_tls", config_.upstream_tls); }},
        {"dns", [this](const toml::node& node) { read_dns(errors_, node, "dns", config_.dns); }},
        {"discover", [this](const toml::node& node) { read_discover(errors_, node, "discover", config_.discover); }},
        // Read once the rest is (their missing keys are the top level's): load().
        {"pool", [](const toml::node&) {}},
        {"route", [](const toml::node&) {}},
        {"listener", [](const toml::node&) {}},
    };
    std::vector<std::string_view> names;
    for (const SectionReader& section : sections) names.push_back(section.name);

    for (auto&& [name, node] : root_) {
      const auto section = std::ranges::find(sections, name.str(), &SectionReader::name);
      if (section != sections.end()) {
        section->read(node);
        continue;
      }
      const bool looks_like_section = node.is_table() || node.is_array();
      // A top-level "listen" is [proxy] listen forgotten, not a [[listener]].
      errors_.add(name.source().begin, std::string(name.str()),
                  name.str() == "listen" ? "unknown key (did you mean proxy.listen, under [proxy]?)"
                                         : unknown_message(looks_like_section ? "section" : "key", name.str(), names));
    }
  }

  // A [name] section read with `fields` into `out`.
  template <class S>
  SectionReader section_reader(std::string_view name, std::vector<Field<S>> fields, S& out) {
    return {name, [this, name, fields = std::move(fields), &out](const toml::node& node) {
              read_section(errors_, node, std::string(name), fields, out);
            }};
  }

  void read_backends(const toml::node& node) {
    for_each_table(errors_, node, "backend", "an array of tables ([[backend]])",
                   [&](const toml::table& table, const std::string& key, size_t i) {
                     BackendConfig backend;
                     read_backend_table(errors_, table, key, backend);
                     config_.backends.push_back(std::move(backend));
                     backend_sources_.push_back({i, &table});
                   });
  }


  // health.timeout_ms not written: the smaller of 500 and interval_ms (SPEC "Config
  // file"), so that `interval_ms = 200` alone is valid. HAProxy's check timeout
  // defaults to `inter` likewise. An invalid interval_ms keeps its default here, and
  // is reported as itself.
  void default_health_timeout() {
    HealthConfig& health = config_.health;
    if (find_key(root_, "health", "timeout_ms") == nullptr) {
      health.timeout_ms = std::min(HealthConfig{}.timeout_ms, health.interval_ms);
    }
  }

  // A probe still running when the next is due would overlap it: the checker is only
  // defined for timeout_ms <= interval_ms. Checked only when both values are valid;
  // only a written timeout_ms can exceed interval_ms (see default_health_timeout).
  void check_health_timing() {
    const HealthConfig& health = config_.health;
    if (errors_.any_at_or_below("health") || health.timeout_ms <= health.interval_ms) return;
    if (const toml::node* timeout = find_key(root_, "health", "timeout_ms")) {
      errors_.add(timeout->source().begin, "health.timeout_ms",
                  "must be at most health.interval_ms (" + std::to_string(health.interval_ms) +
                      "), got " + std::to_string(health.timeout_ms));
    }
  }

  // The subject of a client certificate exists only where client certificates are
  // asked for: without proxy.tls.client_ca every key would fall back to the URI.
  void check_hash_key() {
    if (config_.proxy.hash_key.kind != HashKeyKind::kClientSubject || !config_.proxy.tls.client_ca.empty() ||
        errors_.any_at_or_below("proxy.tls")) {
      return;
    }
    if (const toml::node* node = find_key(root_, "proxy", "hash_key")) {
      errors_.add(node->source().begin, "proxy.hash_key",
                  "client_subject needs proxy.tls.client_ca: without it no client presents a certificate");
    }
  }

  // Caught here rather than as "address in use" at start-up, and by --check. Reported
  // at whichever of the two was written (defaults never collide).
  void check_listeners() {
    const Address& proxy = config_.proxy.listen;
    const Address& admin = config_.admin.listen;
    if (!config_.admin.enabled || errors_.any_at_or_below("proxy.listen") ||
        errors_.any_at_or_below("admin.listen") || !listeners_collide(proxy, admin)) {
      return;
    }
    if (const toml::node* node = find_key(root_, "admin", "listen")) {
      errors_.add(node->source().begin, "admin.listen",
                  admin.to_string() + " collides with proxy.listen " + proxy.to_string());
    } else if (const toml::node* proxy_node = find_key(root_, "proxy", "listen")) {
      errors_.add(proxy_node->source().begin, "proxy.listen",
                  proxy.to_string() + " collides with admin.listen " + admin.to_string() +
                      " (the default; set admin.listen to move it, or \"\" to disable it)");
    }
  }

  // Seeds without a bind address would be silently ignored, and with no backends the
  // proxy would then have nothing to serve; the user surely meant to turn gossip on.
  void check_gossip() {
    GossipConfig& gossip = config_.gossip;
    if (gossip.enabled && gossip.name.empty()) gossip.name = gossip.bind.to_string();
    if (find_key(root_, "proxy", "via") == nullptr && !gossip.name.empty()) {
      // This instance's name, made a token where the gossip name is not one ("[::1]:7946").
      std::string name = gossip.name;
      for (char& c : name) {
        if (!is_tchar(c)) c = '-';
      }
      config_.proxy.via = std::move(name);
    }
    if (!gossip.enabled && !errors_.any_at_or_below("gossip.bind") && seeds_written()) {
      errors_.add(find_key(root_, "gossip", "seeds")->source().begin, "gossip.seeds",
                  "gossip is off (gossip.bind is \"\"): set gossip.bind to use seeds");
    }
  }

  bool seeds_written() const {
    const toml::node* seeds = find_key(root_, "gossip", "seeds");
    return seeds != nullptr && seeds->is_array() && !seeds->as_array()->empty();
  }

  // Ring positions derive from names, so two backends with one name would share
  // points; two names on one address would split that server's keys for nothing.
  void check_backends_unique() {
    for (size_t i = 0; i < config_.backends.size(); ++i) {
      const BackendConfig& backend = config_.backends[i];
      const std::string key = "backend[" + std::to_string(backend_sources_[i].index) + "]";
      // Empty name or host: missing or invalid, and reported as such already.
      auto same_name = [&](const BackendConfig& b) { return b.name == backend.name; };
      if (!backend.name.empty()) {
        if (const std::optional<size_t> j = first_before(i, same_name)) {
          errors_.add(value_position(i, "name"), key + ".name",
                      "duplicate backend name " + quoted(backend.name) + " (first at line " +
                          std::to_string(value_position(*j, "name").line) + ")");
        }
      }
      auto same_address = [&](const BackendConfig& b) { return b.address == backend.address; };
      if (!backend.address.host.empty()) {
        if (const std::optional<size_t> j = first_before(i, same_address)) {
          const BackendConfig& earlier = config_.backends[*j];
          const std::string owner =
              earlier.name.empty()
                  ? "backend[" + std::to_string(backend_sources_[*j].index) + "]"
                  : "backend " + quoted(earlier.name);
          errors_.add(value_position(i, "address"), key + ".address",
                      "address " + backend.address.to_string() + " already used by " + owner);
        }
      }
    }
  }

  // Names are asked as written (ares_query: no search list of /etc/resolv.conf, as
  // nginx's and HAProxy's resolvers), so a one-label name ("cache:6081", a Kubernetes
  // Service's short name) finds nothing on most resolvers: a warning (Docker's embedded
  // DNS does answer short names), on backend addresses and discover names, pools' too.
  void check_single_label_names() {
    auto warn = [&](const toml::node* value, const std::string& key, std::string_view host) {
      warnings_.add(value->source().begin, key,
                    quoted(std::string(host)) + " is a single label: it is asked as written, without "
                    "/etc/resolv.conf's search list; give the full name (\"cache.NAMESPACE.svc.cluster.local\")");
    };
    auto each_table = [](const toml::node* array, const std::function<void(size_t, const toml::table&)>& f) {
      if (array == nullptr || !array->is_array()) return;
      const toml::array& a = *array->as_array();
      for (size_t i = 0; i < a.size(); ++i) {
        if (a[i].is_table()) f(i, *a[i].as_table());
      }
    };
    auto check_discover = [&](const toml::node* array, const std::string& prefix) {
      each_table(array, [&](size_t i, const toml::table& t) {
        const toml::node* name = t.get("name");
        const std::optional<std::string> text = name != nullptr ? name->value<std::string>() : std::nullopt;
        if (text && is_srv_name(*text) && text->find('.') == std::string::npos) {
          warn(name, prefix + "[" + std::to_string(i) + "].name", *text);
        }
      });
    };
    auto check_backends = [&](const toml::node* array, const std::string& prefix) {
      each_table(array, [&](size_t i, const toml::table& t) {
        const toml::node* address = t.get("address");
        const std::optional<std::string> text = address != nullptr ? address->value<std::string>() : std::nullopt;
        if (!text) return;
        std::string why;
        const std::optional<Address> parsed = parse_address(*text, &why, false, /*allow_name=*/true);
        if (parsed && parsed->is_name && parsed->host.find('.') == std::string::npos) {
          warn(address, prefix + "[" + std::to_string(i) + "].address", parsed->host);
        }
      });
    };
    check_backends(root_.get("backend"), "backend");
    check_discover(root_.get("discover"), "discover");
    each_table(root_.get("pool"), [&](size_t i, const toml::table& t) {
      check_backends(t.get("backends"), "pool[" + std::to_string(i) + "].backends");
      check_discover(t.get("discover"), "pool[" + std::to_string(i) + "].discover");
    });
  }

  // Each key is in range, yet vnodes x total weight can exceed what Ring::build takes:
  // --check must not pass a file the proxy then cannot start with (fuzz_config's check
  // caught it: tests/regressions/fuzz_config/).
  void check_ring_size() {
    const uint64_t points = ring_points(config_.ring, config_.backends);
    if (points <= Ring::kMaxPoints) return;
    const std::string message = "vnodes x total weight is " + std::to_string(points) + " ring points, above the " +
                                std::to_string(Ring::kMaxPoints) + " a ring can have";
    if (const toml::node* vnodes = find_key(root_, "ring", "vnodes")) {
      errors_.add(vnodes->source().begin, "ring.vnodes", message);
    } else {
      errors_.add_whole_file(message);
    }
  }

  // The first backend before the i-th that `match` accepts.
  template <class Match>
  std::optional<size_t> first_before(size_t i, Match match) const {
    for (size_t j = 0; j < i; ++j) {
      if (match(config_.backends[j])) return j;
    }
    return std::nullopt;
  }

  // Only called for keys whose value was read successfully, hence present.
  toml::source_position value_position(size_t backend, std::string_view key) const {
    const toml::node* node = backend_sources_[backend].table->get(key);
    assert(node != nullptr);
    return node->source().begin;
  }

  // SPEC: "at least one [[backend]] or a [gossip] with seeds". A written backend or
  // seed counts even when invalid: its own error says what to fix.
  void check_something_to_serve() {
    const toml::node* backends = root_.get("backend");
    const bool has_backend =
        backends != nullptr && (!backends->is_array() || !backends->as_array()->empty());
    const toml::node* discover = root_.get("discover");
    const bool has_discover = discover != nullptr && (!discover->is_array() || !discover->as_array()->empty());
    const bool has_pool_node = std::ranges::any_of(
        config_.pools, [](const PoolConfig& p) { return !p.backends.empty() || !p.discover.empty(); });
    if (has_backend || has_discover || has_pool_node || seeds_written()) return;
    errors_.add_whole_file(
        "no backends: add a [[backend]] table, a [[discover]] source, or a [gossip] section with "
        "seeds to learn them from peers");
  }

  const toml::table& root_;
  Errors errors_;
  Errors warnings_;
  Config config_;
  std::vector<BackendSource> backend_sources_;
};

ConfigResult single_error(const std::string& path, const toml::source_position& at,
                          std::string message) {
  Errors errors(path);
  errors.add(at, "", std::move(message));
  return ConfigResult{Config{}, std::move(errors).take(), {}};
}

// The edge: nothing below is expected to throw but allocation, and a config problem
// must never take the process down (a SIGHUP reload goes through here too).
template <class Load>
ConfigResult without_exceptions(const std::string& path, Load load) {
  try {
    return load();
  } catch (const std::exception& e) {
    return single_error(path, {1, 1}, std::string("internal error while loading: ") + e.what());
  } catch (...) {
    return single_error(path, {1, 1}, "internal error while loading");
  }
}

// Debian's libtomlplusplus is built with exceptions (its symbols live in toml::ex),
// so a syntax error arrives as toml::parse_error, which carries the position.
static_assert(TOML_EXCEPTIONS, "toml++ must report syntax errors as toml::parse_error");

ConfigResult load_parsed_text(std::string_view text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(path));
  } catch (const toml::parse_error& error) {
    return single_error(path, error.source().begin,
                        "TOML syntax error: " + std::string(error.description()));
  }
  return Loader(root, path).load();
}

}  // namespace

namespace config_internal {

std::vector<Field<RingConfig>> ring_section_fields() { return ring_fields(); }
std::vector<Field<HealthConfig>> health_section_fields() { return health_fields(); }
std::vector<Field<BackendConfig>> backend_section_fields() { return backend_fields(); }
std::optional<HashKey> hash_key_value(std::string_view text, std::string* why) { return parse_hash_key(text, why); }
std::optional<Address> listen_address_value(std::string_view text, std::string* why) {
  return config_address(text, why);
}
const toml::node* key_in(const toml::table& root, std::string_view section, std::string_view key) {
  return find_key(root, section, key);
}
bool listen_addresses_collide(const Address& a, const Address& b) { return listeners_collide(a, b); }

void read_backend_table(Errors& errors, const toml::table& table, const std::string& key, BackendConfig& out) {
  read_fields(errors, table, key, backend_fields(), out);
  check_backend_tls(errors, table, key, out);
  if (!table.contains("name")) {
    errors.add(table.source().begin, key + ".name", "missing (every backend needs a unique name)");
  }
  if (!table.contains("address")) {
    errors.add(table.source().begin, key + ".address",
               "missing (every backend needs an address, as in \"127.0.0.1:9001\")");
  }
}

uint64_t ring_points(const RingConfig& ring, const std::vector<BackendConfig>& backends) {
  uint64_t points = 0;
  const uint64_t per_weight = ring.placement == Placement::kNginx ? Ring::kNginxPointsPerWeight : ring.vnodes;
  for (const BackendConfig& b : backends) points += uint64_t{b.weight} * per_weight;
  return points;
}

}  // namespace config_internal

ConfigResult load_config_string(std::string_view text, const std::string& path) {
  return without_exceptions(path, [&] { return load_parsed_text(text, path); });
}

ConfigResult load_config_file(const std::string& path) {
  return without_exceptions(path, [&] {
    std::string text;
    if (const int error = read_whole_file(path, &text); error != 0) {
      return single_error(path, {1, 1},
                          "cannot read file: " + std::generic_category().message(error));
    }
    return load_config_string(text, path);
  });
}

}  // namespace ringproxy
