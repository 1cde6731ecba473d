// Pure HTTP/1.1 helpers for the data path: header classification, the hash key of a
// request, and the heads the proxy writes. No I/O, no allocation unless noted.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "config/config.h"

namespace ringproxy {

// One header of a parsed head, as views into the connection's read buffer.
struct HeaderView {
  std::string_view name;
  std::string_view value;
};

// ASCII case-insensitive equality, for header names and tokens.
bool iequals(std::string_view a, std::string_view b);

// The first header named `name` (case-insensitive), or an empty view. `found`, when
// given, tells an empty value from a missing header.
std::string_view find_header(std::span<const HeaderView> headers, std::string_view name,
                             bool* found = nullptr);

// True when `list` (a comma-separated header value such as Connection's) contains
// `token`, case-insensitively.
bool has_token(std::string_view list, std::string_view token);

// The options of a message's Connection field: every Connection field line, each a
// list of tokens, is one list (RFC 9110 7.6.1 with 5.3), so `Connection: keep-alive`
// followed by `Connection: X-Secret` names X-Secret as much as one line naming both.
// Views the head; no allocation. Heads with more than kInline Connection lines (no
// client needs more than one) are read through `all`.
struct ConnectionOptions {
  static constexpr size_t kInline = 4;
  std::string_view lines[kInline];
  size_t count = 0;
  std::span<const HeaderView> all;  // set when there are more than kInline lines

  static ConnectionOptions of(std::span<const HeaderView> headers);
  bool empty() const { return count == 0; }
  // True when any line lists `token` (case-insensitive).
  bool has(std::string_view token) const;
};

// True for headers a proxy must not forward (RFC 9110 7.6.1): Connection and every
// header it names, Keep-Alive, Proxy-Connection, TE, Upgrade (re-added when
// tunnelling), and, towards the upstream, Proxy-Authorization.
// Content-Length, Transfer-Encoding and Host are never dropped because Connection
// names them: the proxy forwards a body's bytes exactly as framed, so the framing
// headers stay true (dropping them would turn a body into a next request).
// Trailer is kept: it announces trailers that are forwarded too (RFC 9110 6.6.2).
bool is_hop_by_hop(std::string_view name, const ConnectionOptions& connection);

// An access-log field: bytes that could forge fields or lines ('"', '\\', controls,
// and bytes >= 0x7f) written as \xHH, as nginx escapes them. Appends to `out`.
void append_log_escaped(std::string& out, std::string_view field);

// Max-Forwards (RFC 9110 7.6.2): the value as a number; false when it is not 1*DIGIT.
// Values beyond uint32 saturate (they only ever count down).
bool parse_max_forwards(std::string_view value, uint32_t* out);

// The proxy's own answer to TRACE with Max-Forwards: 0 (RFC 9110 9.3.8): a 200 whose
// message/http body reflects the request head as received, less the fields that carry
// credentials (Authorization, Proxy-Authorization, Cookie), which a reflection would
// hand to a script in the page (cross-site tracing).
std::string trace_response(std::string_view request_line, std::span<const HeaderView> headers, bool close);

// The bytes of the request that SPEC's hash_key selects. A missing header, cookie or
// query parameter falls back to the URI, as does an empty one. The result views
// `target`, `headers` or `client_ip`.
std::string_view select_hash_key(const HashKey& how, std::string_view target,
                                 std::span<const HeaderView> headers, std::string_view client_ip);

// What check_request_head() found: status 0 when the head may go on, else the status to
// answer (400, or 501 for a transfer coding we do not know) and why, for the log.
struct HeadVerdict {
  int status = 0;
  std::string_view cause;
};

// The checks on a request head that llhttp, even in strict mode, leaves to its user,
// each a known way to make a proxy and a backend frame or route one request two ways
// (tests/corpus/smuggling):
//  - RFC 9112 6.3, 6.1: Transfer-Encoding (all field lines, one list) has chunked once
//    and last, else 400; and every other coding is one we know, else 501;
//  - RFC 9112 3.2: exactly one Host in HTTP/1.1 (`http11`), at most one in 1.0;
//  - RFC 9110 5.1: no empty field name; no Content_Length or Transfer_Encoding, which
//    CGI-style backends read as the framing headers (nginx drops such fields);
//  - RFC 9112 3.2: a Host that is not a valid host[:port] (valid_host); no fragment
//    in the target;
//  - RFC 9112 3.2.2: an absolute-form target has the scheme http or https and a valid,
//    non-empty host without userinfo (RFC 9110 4.2.4: the meaning of userinfo differs
//    between parsers).
// Reads only; no allocation.
HeadVerdict check_request_head(std::span<const HeaderView> headers, std::string_view target, bool http11);

// An absolute-form request target, "scheme://authority[path][?query]" (RFC 9112 3.2.2),
// in parts. `origin` is the path and query, as the origin-form of the same request
// would carry them; empty when the target has no path, which is "/". Views `target`.
struct AbsoluteTarget {
  std::string_view scheme;
  std::string_view authority;
  std::string_view origin;
};

// A Host field value or a target's authority: uri-host [":" port] (RFC 9110 7.2), the
// host an IPv6 literal in brackets or a name or IPv4 address of letters, digits, "-",
// ".", "_" and "~". Empty is a valid Host (a target without authority) when
// `allow_empty`.
bool valid_host(std::string_view value, bool allow_empty);

// Splits `target` when it is in absolute form (a scheme, then "://"); false otherwise
// (origin form "/...", asterisk form "*", authority form "host:port").
bool split_absolute_target(std::string_view target, AbsoluteTarget* out);

// RFC 9110 9.2.2: methods whose repetition has the effect of one, so a failed attempt
// may be sent again.
bool is_idempotent_method(std::string_view method);

// A complete response the proxy answers itself: a short plain-text body, and
// Connection: close when `close` (always so for 4xx of malformed input). `head`: the
// answer to a HEAD, with the same head and no body.
std::string canned_response(int status, std::string_view body_text, bool close, bool head = false);

// The reason phrase for a status code, "" when unknown.
std::string_view reason_phrase(int status);

}  // namespace ringproxy
