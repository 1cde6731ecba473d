// A listen or backend address: an IP literal and a port, as written in the config file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringproxy {

struct Address {
  std::string host;  // IP literal without brackets: "127.0.0.1", "::1"
  uint16_t port = 0;
  bool ipv6 = false;

  // "127.0.0.1:8080" or "[::1]:8080" (brackets as written), for logs and JSON.
  std::string to_string() const;
  bool operator==(const Address&) const = default;
};

// Parses "A.B.C.D:PORT", "[IPV6]:PORT" or "localhost:PORT" (taken as 127.0.0.1).
// Hostnames other than localhost are refused: ringproxy does not resolve names, so
// that a DNS failure can never take the ring down at reload. On failure returns
// nullopt and sets *why to a short reason ("port out of range 1..65535", ...).
// Port 0 is accepted only when allow_port_zero (listeners that let the kernel choose,
// used by tests).
std::optional<Address> parse_address(std::string_view text, std::string* why,
                                      bool allow_port_zero = false);

}  // namespace ringproxy
