#include "proxy/http_util.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace ringproxy {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Value of `name` in a "k=v; k2=v2" cookie list; `found` set when present.
std::string_view cookie_value(std::string_view cookies, std::string_view name, bool* found) {
  while (!cookies.empty()) {
    const size_t semi = cookies.find(';');
    std::string_view pair = trim(cookies.substr(0, semi));
    cookies = semi == std::string_view::npos ? std::string_view() : cookies.substr(semi + 1);
    const size_t eq = pair.find('=');
    if (eq != std::string_view::npos && trim(pair.substr(0, eq)) == name) {
      *found = true;
      std::string_view v = trim(pair.substr(eq + 1));
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  return {};
}

// Raw (not percent-decoded) value of `name` in the query of `target`.
std::string_view query_value(std::string_view target, std::string_view name, bool* found) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  const size_t hash = query.find('#');
  if (hash != std::string_view::npos) query = query.substr(0, hash);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      *found = true;
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
  }
  return {};
}

// `name` equals `framing` (lower case, with '-') when each '_' of `name` is read as
// '-', and `name` has a '_'.
bool underscore_alias(std::string_view name, std::string_view framing) {
  if (name.size() != framing.size() || name.find('_') == std::string_view::npos) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i] == '_' ? '-' : lower(name[i]);
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

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view find_header(std::span<const HeaderView> headers, std::string_view name,
                             bool* found) {
  for (const HeaderView& h : headers) {
    if (iequals(h.name, name)) {
      if (found) *found = true;
      return h.value;
    }
  }
  if (found) *found = false;
  return {};
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

ConnectionOptions ConnectionOptions::of(std::span<const HeaderView> headers) {
  ConnectionOptions c;
  for (const HeaderView& h : headers) {
    if (h.name.size() != 10 || !iequals(h.name, "connection")) continue;
    if (c.count == kInline) {
      c.all = headers;
      ++c.count;
      return c;
    }
    c.lines[c.count++] = h.value;
  }
  return c;
}

bool ConnectionOptions::has(std::string_view token) const {
  if (count > kInline) {
    for (const HeaderView& h : all) {
      if (h.name.size() == 10 && iequals(h.name, "connection") && has_token(h.value, token)) return true;
    }
    return false;
  }
  for (size_t i = 0; i < count; ++i) {
    if (has_token(lines[i], token)) return true;
  }
  return false;
}

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

void append_log_escaped(std::string& out, std::string_view field) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const char ch : field) {
    const auto b = static_cast<unsigned char>(ch);
    if (b < 0x20 || b >= 0x7f || b == '"' || b == '\\') {
      const char esc[4] = {'\\', 'x', kHex[b >> 4], kHex[b & 15]};
      out.append(esc, 4);
    } else {
      out.push_back(ch);
    }
  }
}

bool parse_max_forwards(std::string_view value, uint32_t* out) {
  value = trim(value);
  if (value.empty()) return false;
  uint64_t n = 0;
  for (const char ch : value) {
    if (ch < '0' || ch > '9') return false;
    n = std::min<uint64_t>(n * 10 + static_cast<uint64_t>(ch - '0'), UINT32_MAX);
  }
  *out = static_cast<uint32_t>(n);
  return true;
}

std::string trace_response(std::string_view request_line, std::span<const HeaderView> headers, bool close) {
  std::string body(request_line);
  body += "\r\n";
  for (const HeaderView& h : headers) {
    if (iequals(h.name, "authorization") || iequals(h.name, "proxy-authorization") || iequals(h.name, "cookie")) {
      continue;
    }
    body.append(h.name);
    body += ": ";
    body.append(h.value);
    body += "\r\n";
  }
  body += "\r\n";
  std::string out = "HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

std::string_view select_hash_key(const HashKey& how, std::string_view target,
                                 std::span<const HeaderView> headers,
                                 std::string_view client_ip) {
  bool found = false;
  std::string_view key;
  switch (how.kind) {
    case HashKeyKind::kUri:
      return target;
    case HashKeyKind::kPath: {
      const size_t q = target.find('?');
      return q == std::string_view::npos ? target : target.substr(0, q);
    }
    case HashKeyKind::kHeader:
      key = find_header(headers, how.name, &found);
      break;
    case HashKeyKind::kCookie: {
      // Several Cookie headers may be sent (RFC 9113 allows it; HTTP/1.1 clients
      // should not, but some do): look in each.
      for (const HeaderView& h : headers) {
        if (iequals(h.name, "cookie")) {
          key = cookie_value(h.value, how.name, &found);
          if (found) break;
        }
      }
      break;
    }
    case HashKeyKind::kQuery:
      key = query_value(target, how.name, &found);
      break;
    case HashKeyKind::kClientIp:
      return client_ip;
  }
  return found && !key.empty() ? key : target;
}

HeadVerdict check_request_head(std::span<const HeaderView> headers, std::string_view target, bool http11) {
  int hosts = 0;
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
            const std::string_view coding = trim(list.substr(0, comma));
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
  return {};
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

bool is_idempotent_method(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
         method == "DELETE" || method == "TRACE";
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
  }
}

std::string canned_response(int status, std::string_view body_text, bool close, bool head) {
  std::string body(body_text);
  body.push_back('\n');
  std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
  out.append(reason_phrase(status));
  out += "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head) out += body;
  return out;
}

}  // namespace ringproxy
