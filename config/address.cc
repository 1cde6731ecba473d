#include "config/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <system_error>

namespace ringproxy {
namespace {

void set_why(std::string* why, std::string_view reason) {
  if (why != nullptr) *why = reason;
}

std::optional<Address> fail(std::string* why, std::string_view reason) {
  set_why(why, reason);
  return std::nullopt;
}

bool is_blank_or_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7f;
}

bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    auto lower = [](char c) { return is_ascii_letter(c) ? static_cast<char>(c | 0x20) : c; };
    return lower(x) == lower(y);
  });
}

// The host as inet_ntop writes it, so that two spellings of one IP ("[0::1]" and
// "[::1]") compare equal: the config loader relies on that to find duplicate backends.
// IPv4 text that glibc's inet_pton accepts (dotted decimal, no leading zeros) is
// already canonical; it goes through the same round trip for uniformity.
std::optional<std::string> canonical_ip(std::string_view host, int family) {
  const std::string text(host);  // inet_pton needs a NUL-terminated string
  in6_addr binary{};             // large enough for either family
  if (inet_pton(family, text.c_str(), &binary) != 1) return std::nullopt;
  char out[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family, &binary, out, sizeof out) == nullptr) return std::nullopt;
  return std::string(out);
}

std::optional<uint16_t> parse_port(std::string_view text, bool allow_port_zero,
                                   std::string* why) {
  if (text.empty()) {
    set_why(why, "missing port after ':'");
    return std::nullopt;
  }
  if (!std::ranges::all_of(text, [](char c) { return c >= '0' && c <= '9'; })) {
    set_why(why, "port is not a number");
    return std::nullopt;
  }
  uint32_t port = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  const uint32_t min = allow_port_zero ? 0 : 1;
  if (ec != std::errc() || end != text.data() + text.size() || port < min || port > 65535) {
    set_why(why, allow_port_zero ? "port out of range 0..65535" : "port out of range 1..65535");
    return std::nullopt;
  }
  return static_cast<uint16_t>(port);
}

bool dns_name_with(std::string_view text, bool underscores) {
  if (text.empty() || text.size() > 253) return false;
  std::string_view last;
  for (size_t start = 0; start <= text.size();) {
    const size_t dot = std::min(text.find('.', start), text.size());
    std::string_view label = text.substr(start, dot - start);
    if (underscores && !label.empty() && label.front() == '_') label.remove_prefix(1);
    const bool valid = !label.empty() && label.size() <= 63 && label.front() != '-' && label.back() != '-' &&
                       std::ranges::all_of(label, [](char c) {
                         return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
                       });
    if (!valid) return false;
    last = label;
    start = dot + 1;
  }
  return !std::ranges::all_of(last, [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool is_dns_name(std::string_view text) { return dns_name_with(text, false); }
bool is_srv_name(std::string_view text) { return dns_name_with(text, true); }
bool is_ip_literal(std::string_view text) {
  return canonical_ip(text, AF_INET).has_value() || canonical_ip(text, AF_INET6).has_value();
}

std::string Address::to_string() const {
  const std::string port_text = std::to_string(port);
  return ipv6 ? "[" + host + "]:" + port_text : host + ":" + port_text;
}

// The host is stored canonical (see canonical_ip), so to_string() may differ in
// spelling from the text parsed, never in meaning.
std::optional<Address> parse_address(std::string_view text, std::string* why,
                                     bool allow_port_zero, bool allow_name) {
  if (text.empty()) return fail(why, "empty address");
  if (std::ranges::any_of(text, is_blank_or_control)) {
    return fail(why, "contains spaces or control characters");
  }

  std::string_view host;
  std::string_view port_text;
  const bool bracketed = text.front() == '[';
  if (bracketed) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return fail(why, "missing ']' after the IPv6 address");
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return fail(why, "missing port, as in [::1]:8080");
    if (rest.front() != ':') return fail(why, "expected ':PORT' after ']'");
    port_text = rest.substr(1);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail(why, "missing port, as in 127.0.0.1:8080");
    host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      return fail(why, "an IPv6 address needs brackets, as in [::1]:8080");
    }
    port_text = text.substr(colon + 1);
  }
  if (host.empty()) return fail(why, "missing host (use 0.0.0.0 or [::] for every interface)");

  Address address;
  if (bracketed) {
    std::optional<std::string> ip = canonical_ip(host, AF_INET6);
    if (!ip) return fail(why, "invalid IPv6 address");
    address.host = std::move(*ip);
    address.ipv6 = true;
  } else if (std::optional<std::string> ip = canonical_ip(host, AF_INET)) {
    address.host = std::move(*ip);
  } else if (equals_ignoring_case(host, "localhost")) {
    // Only IPv4 loopback: "localhost" meaning ::1 on some systems would make the same
    // file bind differently from one host to the next.
    address.host = "127.0.0.1";
  } else if (std::ranges::all_of(host, [](char c) { return (c >= '0' && c <= '9') || c == '.'; })) {
    return fail(why, "invalid IPv4 address");
  } else if (allow_name && is_dns_name(host)) {
    address.host.reserve(host.size());
    for (char c : host) address.host += is_ascii_letter(c) ? static_cast<char>(c | 0x20) : c;
    address.is_name = true;
  } else if (allow_name) {
    return fail(why, "not an IP address nor a DNS name");
  } else {
    return fail(why, "hostnames are not resolved; use an IP address");
  }

  const std::optional<uint16_t> port = parse_port(port_text, allow_port_zero, why);
  if (!port) return std::nullopt;
  address.port = *port;
  return address;
}

}  // namespace ringproxy
