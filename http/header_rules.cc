#include "http/header_rules.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace ringproxy {

namespace {

// `name` equals `framing` (lower case, with '-') when each '_' of `name` is read as
// '-', and `name` has a '_'.
bool underscore_alias(std::string_view name, std::string_view framing) {
  if (name.size() != framing.size() || name.find('_') == std::string_view::npos) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i] == '_' ? '-' : ascii_lower(name[i]);
    if (c != framing[i]) return false;
  }
  return true;
}

// RFC 9112 7 and the IANA registry: the codings a Transfer-Encoding may list. "identity"
// was dropped by RFC 7230 and is unknown here, as in nginx.
bool known_transfer_coding(std::string_view coding) {
  return iequals(coding, "chunked") || iequals(coding, "gzip") || iequals(coding, "x-gzip") ||
         iequals(coding, "deflate") || iequals(coding, "compress") || iequals(coding, "x-compress");
}

}  // namespace

bool is_hop_by_hop(std::string_view name, const ConnectionOptions& connection) {
  switch (name.size()) {
    case 2:
      if (iequals(name, "te")) return true;
      break;
    case 7:
      if (iequals(name, "upgrade")) return true;
      break;
    case 10:
      if (iequals(name, "connection") || iequals(name, "keep-alive")) return true;
      break;
    case 16:
      if (iequals(name, "proxy-connection")) return true;
      break;
    default:
      break;
  }
  // A Connection option may name any field, but never the ones that frame the message
  // or say where it goes.
  if (connection.empty() || iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
      iequals(name, "host")) {
    return false;
  }
  return connection.has(name);
}

bool parse_max_forwards(std::string_view value, uint32_t* out) {
  value = trim_ows(value);
  if (value.empty()) return false;
  uint64_t n = 0;
  for (const char ch : value) {
    if (ch < '0' || ch > '9') return false;
    n = std::min<uint64_t>(n * 10 + static_cast<uint64_t>(ch - '0'), UINT32_MAX);
  }
  *out = static_cast<uint32_t>(n);
  return true;
}

HeadVerdict check_request_head(std::span<const HeaderView> headers, std::string_view target, bool http11) {
  int hosts = 0;
  size_t host_index = SIZE_MAX;
  bool has_te = false;
  bool chunked_last = false;  // the last coding listed is chunked
  int chunked = 0;
  bool unknown_coding = false;
  bool invalid_host = false;
  for (const HeaderView& h : headers) {
    if (h.name.empty()) return {400, "empty header name"};
    switch (h.name.size()) {
      case 4:
        if (iequals(h.name, "host")) {
          ++hosts;
          host_index = static_cast<size_t>(&h - headers.data());
          if (!valid_host(h.value, true)) invalid_host = true;
        }
        break;
      case 14:
        if (underscore_alias(h.name, "content-length")) return {400, "Content_Length header"};
        break;
      case 17:
        if (underscore_alias(h.name, "transfer-encoding")) return {400, "Transfer_Encoding header"};
        if (!iequals(h.name, "transfer-encoding")) break;
        has_te = true;
        {
          // A list; empty elements are allowed and ignored (RFC 9110 5.6.1).
          std::string_view list = h.value;
          while (true) {
            const size_t comma = list.find(',');
            const std::string_view coding = trim_ows(list.substr(0, comma));
            if (!coding.empty()) {
              chunked_last = iequals(coding, "chunked");
              if (chunked_last) ++chunked;
              if (!known_transfer_coding(coding)) unknown_coding = true;
            }
            if (comma == std::string_view::npos) break;
            list.remove_prefix(comma + 1);
          }
        }
        break;
      default:
        break;
    }
  }
  // RFC 9112 6.3 (a MUST) before 6.1 (a SHOULD): when chunked is not the last coding the
  // body's length cannot be known, 400, whatever the codings; an empty list frames
  // nothing either. Framed, but with a coding we do not know ("foo, chunked"): 501.
  if (has_te && (!chunked_last || chunked != 1)) return {400, "Transfer-Encoding without chunked once and last"};
  if (unknown_coding) return {501, "unknown transfer coding"};
  if (hosts > 1) return {400, "more than one Host"};
  if (hosts == 0 && http11) return {400, "HTTP/1.1 request without Host"};
  if (invalid_host) return {400, "invalid Host"};
  // RFC 9112 3.2: a request target has no fragment (a client strips it).
  if (target.find('#') != std::string_view::npos) return {400, "fragment in the request target"};
  if (AbsoluteTarget abs; split_absolute_target(target, &abs)) {
    if (!iequals(abs.scheme, "http") && !iequals(abs.scheme, "https")) return {400, "request target scheme not http"};
    if (abs.authority.find('@') != std::string_view::npos) return {400, "userinfo in the request target"};
    if (!valid_host(abs.authority, false)) return {400, "invalid host in the request target"};
  }
  return {0, {}, host_index};
}

namespace {

// Characters of a host name or IPv4 address as valid_host takes them: ALPHA DIGIT "-"
// "." "_" "~". A table: this runs on every request's Host.
constexpr std::array<bool, 256> kHostChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  t['-'] = t['.'] = t['_'] = t['~'] = true;
  return t;
}();

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool valid_host(std::string_view value, bool allow_empty) {
  if (value.empty()) return allow_empty;
  size_t i = 0;
  if (value.front() == '[') {
    // IP-literal: an IPv6 address (hex digits, ':' and, for an embedded IPv4, '.').
    const size_t close = value.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (i = 1; i < close; ++i) {
      const char c = value[i];
      if (!is_digit(c) && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F') && c != ':' && c != '.') return false;
    }
    i = close + 1;
  } else {
    // reg-name or IPv4 address, kept to the characters DNS names and addresses use:
    // no sub-delims (",", ";", "=", ...) that a backend could read as a list or a
    // parameter, no percent-encoding.
    while (i < value.size() && value[i] != ':') {
      if (!kHostChars[static_cast<unsigned char>(value[i])]) return false;
      ++i;
    }
    if (i == 0) return false;  // ":80"
  }
  if (i == value.size()) return true;
  if (value[i] != ':') return false;
  // port = *DIGIT (RFC 3986 3.2.3; empty is allowed and means the default).
  for (++i; i < value.size(); ++i) {
    if (!is_digit(value[i])) return false;
  }
  return true;
}

bool split_absolute_target(std::string_view target, AbsoluteTarget* out) {
  // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1), then "://".
  if (target.empty() || !std::isalpha(static_cast<unsigned char>(target.front()))) return false;
  size_t i = 1;
  while (i < target.size() && (std::isalnum(static_cast<unsigned char>(target[i])) || target[i] == '+' ||
                               target[i] == '-' || target[i] == '.')) {
    ++i;
  }
  if (target.substr(i, 3) != "://") return false;
  out->scheme = target.substr(0, i);
  const std::string_view rest = target.substr(i + 3);
  // The authority ends at the first "/", "?" or "#" (RFC 3986 3.2).
  const size_t end = std::min(rest.find_first_of("/?#"), rest.size());
  out->authority = rest.substr(0, end);
  out->origin = rest.substr(end);
  return true;
}

bool parse_grpc_timeout(std::string_view value, uint64_t* ms) {
  if (value.size() < 2 || value.size() > 9) return false;
  uint64_t n = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  const auto up = [](uint64_t v, uint64_t per_ms) { return (v + per_ms - 1) / per_ms; };
  switch (value.back()) {
    case 'H': *ms = n * 3'600'000; return true;
    case 'M': *ms = n * 60'000; return true;
    case 'S': *ms = n * 1000; return true;
    case 'm': *ms = n; return true;
    case 'u': *ms = up(n, 1000); return true;
    case 'n': *ms = up(n, 1'000'000); return true;
    default: return false;
  }
}

bool is_grpc_content_type(std::string_view value) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (value.size() < kGrpc.size() || !iequals(value.substr(0, kGrpc.size()), kGrpc)) return false;
  return value.size() == kGrpc.size() || value[kGrpc.size()] == '+' || value[kGrpc.size()] == ';';
}

int grpc_status_for(int status) {
  switch (status) {
    case 400: return 13;  // INTERNAL
    case 401: return 16;  // UNAUTHENTICATED
    case 403: return 7;   // PERMISSION_DENIED
    case 404: return 12;  // UNIMPLEMENTED
    case 408:
    case 504: return 4;   // DEADLINE_EXCEEDED
    case 429:
    case 502:
    case 503: return 14;  // UNAVAILABLE
    case 431: return 8;   // RESOURCE_EXHAUSTED
    default: return 2;    // UNKNOWN
  }
}

bool is_idempotent_method(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
         method == "DELETE" || method == "TRACE";
}

}  // namespace ringproxy
