// What RFC 9110 and RFC 9112 say an intermediary does with a head's fields: which are
// hop-by-hop, which request heads are refused before anything goes on, the forms of a
// target and of Host, Max-Forwards, and which methods may be sent again. Pure functions
// over views; no I/O, no allocation.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "http/message.h"

namespace ringproxy {

// True for headers a proxy must not forward (RFC 9110 7.6.1): Connection and every
// header it names, Keep-Alive, Proxy-Connection, TE, Upgrade (re-added when
// tunnelling), and, towards the upstream, Proxy-Authorization.
// Content-Length, Transfer-Encoding and Host are never dropped because Connection
// names them: the proxy forwards a body's bytes exactly as framed, so the framing
// headers stay true (dropping them would turn a body into a next request).
// Trailer is kept: it announces trailers that are forwarded too (RFC 9110 6.6.2).
bool is_hop_by_hop(std::string_view name, const ConnectionOptions& connection);

// Max-Forwards (RFC 9110 7.6.2): the value as a number; false when it is not 1*DIGIT.
// Values beyond uint32 saturate (they only ever count down).
bool parse_max_forwards(std::string_view value, uint32_t* out);

// What check_request_head() found: status 0 when the head may go on, else the status to
// answer (400, or 501 for a transfer coding we do not know) and why, for the log.
struct HeadVerdict {
  int status = 0;
  std::string_view cause;
  // An accepted head's Host field line: its index in the fields (SIZE_MAX: none, which
  // an HTTP/1.0 request may have).
  size_t host_index = SIZE_MAX;
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

// gRPC's grpc-timeout ("PROTOCOL-HTTP2.md" in grpc/grpc: at most 8 digits, then H, M,
// S, m, u or n) in milliseconds, rounded up (a 500u deadline is 1 ms, not none); false
// when it is malformed.
bool parse_grpc_timeout(std::string_view value, uint64_t* ms);

// A gRPC request: content-type application/grpc, alone or with a "+format" or
// ";params" suffix.
bool is_grpc_content_type(std::string_view value);

// The gRPC status for an answer of the proxy's own with HTTP status `status` (gRPC's
// "HTTP to gRPC Status Code Mapping", with 504 as DEADLINE_EXCEEDED as SPEC says).
int grpc_status_for(int status);

// RFC 9110 9.2.2: methods whose repetition has the effect of one, so a failed attempt
// may be sent again.
bool is_idempotent_method(std::string_view method);

}  // namespace ringproxy
