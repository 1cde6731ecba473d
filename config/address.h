// A listen or backend address: an IP literal and a port, as written in the config file;
// for a backend, a DNS name and a port (issue 14, SPEC "Backends by name").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringproxy {

struct Address {
  std::string host;  // IP literal without brackets: "127.0.0.1", "::1"; or a DNS name (is_name)
  uint16_t port = 0;
  bool ipv6 = false;
  bool is_name = false;  // host is a DNS name, lower case, to be resolved

  // "127.0.0.1:8080" or "[::1]:8080" (brackets as written), for logs and JSON.
  std::string to_string() const;
  bool operator==(const Address&) const = default;
};

// Parses "A.B.C.D:PORT", "[IPV6]:PORT" or "localhost:PORT" (taken as 127.0.0.1), and
// with allow_name "NAME:PORT" for a DNS name (is_dns_name; is_name set, host lower
// case). Listeners never take a name: what they bind must not depend on a resolver.
// On failure returns nullopt and sets *why to a short reason ("port out of range
// 1..65535", ...). Port 0 is accepted only when allow_port_zero (listeners that let the
// kernel choose, used by tests).
std::optional<Address> parse_address(std::string_view text, std::string* why,
                                      bool allow_port_zero = false, bool allow_name = false);

// A DNS host name (RFC 1123 2.1): dot-separated labels of letters, digits and '-', 1..63
// characters each, not starting or ending with '-', 253 characters in all, no trailing
// dot. A last label of digits only would be a mistyped IPv4 address ("10.0.0.256"),
// never a top-level domain, and is refused. Underscores are not allowed: SRV owner
// names ("_http._tcp.x") are checked by is_srv_name.
bool is_dns_name(std::string_view text);
// An SRV query name: like is_dns_name, but labels may start with '_' (RFC 2782).
bool is_srv_name(std::string_view text);
// An IPv4 or IPv6 literal (no brackets, no port).
bool is_ip_literal(std::string_view text);

}  // namespace ringproxy
