// The validated configuration: SPEC.md "Config file". A pure value; loading it from
// TOML collects every error, each as "FILE:LINE:COLUMN: key.path: what is wrong".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/address.h"
#include "ring/ring.h"

namespace ringproxy {

// kClientSubject: the subject of the client's verified TLS certificate.
enum class HashKeyKind { kUri, kPath, kHeader, kCookie, kQuery, kClientIp, kClientSubject };
enum class LogLevel { kError, kWarn, kInfo, kDebug };

struct HashKey {
  HashKeyKind kind = HashKeyKind::kUri;
  std::string name;  // header, cookie or query parameter name; empty otherwise
  bool operator==(const HashKey&) const = default;
};

// proxy.retries' upper bound: one attempt per node is the most that makes sense, and a
// request keeps the list of nodes it tried.
inline constexpr uint32_t kMaxRetries = 100;

// health.slow_start_ms is at most this (1 hour, as every timeout here): the proxy keeps a
// ramp's length in 24 bits (proxy/backends.h, SlowStartRamp).
inline constexpr uint32_t kMaxSlowStartMs = 3'600'000;

// Where a key's value sits in the config file, for messages about what it names (a
// certificate file that is missing, say) found after loading (--check, reload).
struct SourcePos {
  uint32_t line = 0;    // 1-based; 0: not from a file
  uint32_t column = 0;  // 1-based
  bool operator==(const SourcePos&) const = default;
};

// One entry of proxy.tls.certificates: SPEC "TLS".
struct TlsCertificateConfig {
  std::string cert;  // PEM: the leaf, then its chain
  std::string key;   // PEM private key (RSA or ECDSA) of the leaf
  SourcePos cert_pos;
  SourcePos key_pos;
  bool operator==(const TlsCertificateConfig&) const = default;
};

enum class TlsVersion { kTls12, kTls13 };

// [proxy.tls]: present, proxy.listen speaks TLS.
struct ServerTlsConfig {
  bool enabled = false;
  std::vector<TlsCertificateConfig> certificates;  // SNI picks by names; none matching: the first
  TlsVersion min_version = TlsVersion::kTls12;
  std::string client_ca;  // PEM bundle; set: clients must present a certificate it signed
  SourcePos client_ca_pos;
  // The verified client certificate's subject goes to the backend in this header
  // ("" = not sent). The client's value of that header is always removed first.
  std::string client_subject_header;
  uint32_t handshake_timeout_ms = 10000;
  bool session_tickets = true;  // keys shared by every worker and rotated
  bool operator==(const ServerTlsConfig&) const = default;
};

// [upstream_tls]: defaults for TLS to backends.
struct UpstreamTlsConfig {
  std::string ca;  // PEM bundle; "" = the system's trust store
  SourcePos ca_pos;
  bool verify = true;
  std::string cert;  // client certificate (mTLS to backends), with key
  std::string key;
  SourcePos cert_pos;
  SourcePos key_pos;
  bool operator==(const UpstreamTlsConfig&) const = default;
};

struct ProxyConfig {
  Address listen{"127.0.0.1", 8080, false};
  uint32_t workers = 0;  // 0 = one per CPU core
  HashKey hash_key;
  uint32_t retries = 1;
  uint32_t connect_timeout_ms = 1000;
  uint32_t header_timeout_ms = 10000;
  uint32_t idle_timeout_ms = 60000;
  uint32_t upstream_timeout_ms = 30000;
  uint32_t max_header_bytes = 16384;
  uint32_t max_connections = 10000;
  uint32_t shutdown_timeout_ms = 10000;
  std::string access_log;  // "" off, "-" stdout, else a path
  LogLevel log_level = LogLevel::kInfo;
  // The pseudonym of the Via member appended to each request forwarded upstream
  // (RFC 9110 7.6.3: "1.1 NAME"); "" sends none. Unset: gossip.name when it is set
  // or gossip is on (the loader fills it in), else "ringproxy".
  std::string via = "ringproxy";
  ServerTlsConfig tls;
  // SPEC "HTTP/2 and gRPC": the protocols a TLS listener offers by ALPN, in preference
  // order ("h2", "http/1.1"); and whether a plain listener takes HTTP/2 by prior
  // knowledge (a connection that opens with the preface).
  std::vector<std::string> alpn = {"h2", "http/1.1"};
  bool h2c = true;
  bool operator==(const ProxyConfig&) const = default;
};

struct RingConfig {
  // "xxh3" (SPEC "The ring") or "nginx" (nginx's `hash $key consistent`, ring/ring.h).
  Placement placement = Placement::kXxh3;
  uint32_t vnodes = 160;     // points per unit of weight (nginx's 160); not for "nginx"
  double load_factor = 0.0;  // 0 = off; else > 1
  bool operator==(const RingConfig&) const = default;
};

struct HealthConfig {
  std::string path = "/health";
  uint32_t interval_ms = 1000;
  uint32_t timeout_ms = 500;  // from a file that omits it: the smaller of 500 and interval_ms
  uint32_t rise = 2;
  uint32_t fall = 3;
  uint32_t eject_after_failures = 5;
  uint32_t eject_base_ms = 30000;
  uint32_t max_ejected_percent = 50;
  uint32_t slow_start_ms = 0;
  bool operator==(const HealthConfig&) const = default;
};

struct AdminConfig {
  bool enabled = true;  // false when listen = ""
  Address listen{"127.0.0.1", 9090, false};
  std::string token;
  bool operator==(const AdminConfig&) const = default;
};

struct GossipConfig {
  bool enabled = false;  // false when bind = ""
  Address bind;
  std::string name;  // defaults to bind.to_string()
  std::vector<Address> seeds;
  uint32_t interval_ms = 200;
  std::string secret;
  // Accepted, never used to sign: for key rotation (move every instance to the new
  // secret, keeping the old one here, then drop it).
  std::vector<std::string> previous_secrets;
  bool operator==(const GossipConfig&) const = default;
};

// [dns]: how names (backend addresses, [[discover]] sources) are resolved. SPEC
// "Backends by name (DNS)".
struct DnsConfig {
  std::vector<Address> resolvers;  // empty: /etc/resolv.conf's
  uint32_t timeout_ms = 2000;
  uint32_t min_ttl_ms = 1000;     // an answer's TTL is clamped to [min_ttl_ms, max_ttl_ms]
  uint32_t max_ttl_ms = 300000;
  uint32_t hold_ms = 600000;      // a failed resolution keeps the last good answer this long
  bool operator==(const DnsConfig&) const = default;
};

// What requests to a node are sent as (SPEC "HTTP/2 and gRPC", [[backend]] protocol):
// HTTP/1.1; h2c, HTTP/2 in cleartext by prior knowledge (RFC 9113 section 3.3); h2,
// HTTP/2 over TLS (the node has tls = true). h2c and h2 multiplex many requests over few
// connections to the node.
enum class BackendProtocol : uint8_t { kHttp1, kH2c, kH2 };

// "http1", "h2c" or "h2": the config file's and the admin API's word for it.
std::string_view protocol_name(BackendProtocol protocol);
// The inverse of protocol_name; nothing, and in *why "expected http1, h2c or h2, got
// \"...\"", for any other text (exact, lower case).
std::optional<BackendProtocol> parse_backend_protocol(std::string_view text, std::string* why);
// Does `protocol` go with `tls`? h2 needs TLS; h2c is cleartext by definition; http1
// goes with either. Config loading, the admin API and gossip refuse what does not.
bool protocol_fits_tls(BackendProtocol protocol, bool tls);

// One [[discover]]: a DNS name that becomes a set of nodes, kept current.
struct DiscoverConfig {
  enum class Type { kSrv, kA };
  std::string name;       // the name queried (an SRV owner name may have '_' labels)
  Type type = Type::kSrv;
  uint16_t port = 0;      // type a: required; type srv: unused (each record has its port)
  uint32_t weight = 1;    // type a: each address's ring weight
  bool tls = false;       // as for [[backend]]
  std::string tls_name;
  BackendProtocol protocol = BackendProtocol::kHttp1;  // as for [[backend]]
  bool operator==(const DiscoverConfig&) const = default;
};

struct BackendConfig {
  std::string name;
  Address address;  // an IP and port, or a DNS name and port (address.is_name)
  uint32_t weight = 1;
  bool tls = false;      // requests and health checks to this node go over TLS
  std::string tls_name;  // SNI and the name verified; "" = the host part of address
  BackendProtocol protocol = BackendProtocol::kHttp1;  // kH2 only with tls, kH2c only without
  bool operator==(const BackendConfig&) const = default;
};

// A [[pool]] (SPEC "Several tiers"): a tier with its own nodes, ring, health and hash
// key. Every key not given is the top-level one's (read after them); the top-level
// [[backend]], [[discover]], [ring], [health] and proxy.hash_key are pool "default".
struct PoolConfig {
  std::string name;  // letters, digits, - and _; never "default"
  HashKey hash_key;
  RingConfig ring;
  HealthConfig health;
  UpstreamTlsConfig upstream_tls;
  std::vector<BackendConfig> backends;
  std::vector<DiscoverConfig> discover;
  bool operator==(const PoolConfig&) const = default;
};

// A [[route]]: requests whose host and path match go to `pool`; the first match in file
// order wins.
struct RouteConfig {
  std::string host;         // "" any; an exact name (lower case), or "*.suffix" (one or more labels)
  std::string path_prefix;  // "" any; else starts with '/'
  std::string pool;         // "default" or a [[pool]]'s name
  bool operator==(const RouteConfig&) const = default;
};

// A [[listener]]: a listening address beyond proxy.listen, with its own TLS and the pool
// for requests no route matches.
struct ListenerConfig {
  Address listen;
  ServerTlsConfig tls;  // enabled false: plain HTTP
  std::string pool = "default";
  bool operator==(const ListenerConfig&) const = default;
};

// [http2]: each HTTP/2 client connection's limits (SPEC "HTTP/2 and gRPC"), and the
// connections to HTTP/2 nodes.
struct Http2Config {
  uint32_t max_concurrent_streams = 128;  // SETTINGS_MAX_CONCURRENT_STREAMS
  uint32_t initial_window_bytes = 65535;  // SETTINGS_INITIAL_WINDOW_SIZE: per stream
  uint32_t max_header_list_bytes = 65536; // SETTINGS_MAX_HEADER_LIST_SIZE; larger: 431
  uint32_t idle_timeout_ms = 60000;       // no stream open: GOAWAY and close
  // Connections to each HTTP/2 node (protocol = "h2c" | "h2"), per worker, before a
  // stream waits for a slot instead of opening another: a soft cap
  // (proxy/upstream_pool.h, UpstreamPool::h2_place).
  uint32_t upstream_connections = 2;
  bool operator==(const Http2Config&) const = default;
};

struct Config {
  std::string path;  // the file it was loaded from, for reloads and messages
  ProxyConfig proxy;
  RingConfig ring;
  HealthConfig health;
  AdminConfig admin;
  GossipConfig gossip;
  Http2Config http2;
  std::vector<BackendConfig> backends;
  UpstreamTlsConfig upstream_tls;
  DnsConfig dns;
  std::vector<DiscoverConfig> discover;
  std::vector<PoolConfig> pools;  // the [[pool]]s, not "default" (the top level)
  std::vector<RouteConfig> routes;
  std::vector<ListenerConfig> listeners;
  // Does pool "default" take requests (default_pool_declared below)? Decided by the file
  // when it is loaded and kept by the admin API's and gossip's changes to the backends.
  bool default_declared = true;
  bool operator==(const Config&) const = default;
};

struct ConfigError {
  std::string file;
  uint32_t line = 0;    // 1-based
  uint32_t column = 0;  // 1-based
  std::string key;      // "proxy.listen", "backend[2].address"; "" for whole-file errors
  std::string message;
  // "FILE:LINE:COLUMN: key.path: what is wrong" (the key part is omitted when empty).
  std::string to_string() const;
};

struct ConfigResult {
  Config config;                    // meaningful only when errors is empty
  std::vector<ConfigError> errors;  // every problem found, in file order
  // What is valid but surely not meant (a route no request can reach), in file order:
  // printed by --check, logged at start and reload.
  std::vector<ConfigError> warnings;
  bool ok() const { return errors.empty(); }
};

// True when `name` can name a backend: letters, digits and "-._~:[]" only, not empty,
// "." or "..". Names go unescaped into admin URLs (/nodes/NAME), metric labels and
// logs; the admin endpoint should apply the same rule to POST /nodes.
bool is_valid_backend_name(std::string_view name);

// Pool "default" as a PoolConfig: the top level's hash key, [ring], [health],
// [upstream_tls], [[backend]]s and [[discover]]s.
PoolConfig default_pool_config(const Config& config);
// Does "default" take requests? Always, unless [[pool]]s are configured and the top
// level has no [[backend]] and no [[discover]]: then requests no route sends to a pool
// get 404 (SPEC "Several tiers"). What the loader stores in Config::default_declared.
bool default_pool_declared(const Config& config);
// Pool `pool`'s backends in `config` ("default": config.backends); null when no pool
// has that name.
std::vector<BackendConfig>* pool_backends(Config& config, std::string_view pool);
// The pool whose [[discover]] source is named `source`; "" when none (names are unique
// across pools).
std::string source_pool(const Config& config, std::string_view source);
// Every pool's [[discover]] sources: the top level's, then each [[pool]]'s in order.
std::vector<DiscoverConfig> all_sources(const Config& config);

// Loads and validates a config file. Never throws; an unreadable file or a TOML syntax
// error is reported as an error like any other.
ConfigResult load_config_file(const std::string& path);

// The same from text already in memory; `path` is used only in messages.
ConfigResult load_config_string(std::string_view text, const std::string& path);

}  // namespace ringproxy
