// The heads as the proxy sends them on: a client's request head rewritten for the node
// (hop-by-hop fields dropped, Via, X-Forwarded-*, Max-Forwards, Upgrade re-added, the
// proxy's own HTTP/1.1), and a node's response head rewritten for the client (hop-by-hop
// fields dropped, the 1.0 client's rules, Connection as this connection goes on). Pure:
// they append to a string the caller reuses, so a warm connection allocates nothing.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "http/message.h"

namespace ringproxy {

struct RequestRewrite {
  std::string_view method;
  std::string_view target;  // the origin form to send
  std::span<const HeaderView> fields;  // as received (Host already that of an absolute target)
  std::string_view client_ip;
  std::string_view via;  // this proxy's Via name; "" sends none and leaves the client's alone
  bool client_http10 = false;
  bool client_h2 = false;  // the request came over HTTP/2 (Via says "2")
  bool https = false;    // the client connected over TLS: X-Forwarded-Proto: https
  // The listener's client_subject_header: when `client_subject` is set (a verified
  // certificate), one of ours is sent with it.
  std::string_view subject_header;
  // Every listener's client_subject_header (proxy.tls's and each [[listener]]'s): the
  // client's fields of these names are dropped, whichever listener it came in on, so
  // that no listener lets a client forge what another one's backends trust.
  std::span<const std::string> subject_headers;
  std::string_view client_subject;  // RFC 2253, control and non-ASCII bytes escaped
  bool upgrade = false;  // the client asked to switch protocols: Connection/Upgrade go on
  bool max_forwards_set = false;  // an OPTIONS or TRACE going on with Max-Forwards ...
  uint32_t max_forwards = 0;      // ... already decremented
  // Out, when set: whether the client's TE lists "trailers" (TE is hop by hop, dropped
  // here; an HTTP/2 node gets "te: trailers" back, which gRPC servers require).
  bool* te_trailers = nullptr;
};

// Writes the request head for the node into `out` (cleared first), ending in the empty
// line. Returns false when the request has no Host (a 1.0 client): the caller inserts
// one per attempt before the last CRLF (the node's address, as nginx's $proxy_host).
// `spans`, when given, says where each part went (http/message.h HeadSpans; its
// capacity kept: no allocation once warm).
bool build_request_head(const RequestRewrite& r, std::string& out, HeadSpans* spans = nullptr);

struct ResponseRewrite {
  int status = 0;  // 100..999
  std::string_view reason;
  std::span<const HeaderView> fields;  // as received
  bool client_http10 = false;
  bool interim = false;      // 1xx other than 101: another head follows
  bool tunnel = false;       // 101 to an upgrade request
  bool close_after = false;  // this response ends the client connection
};

// Writes the response head for the client into `out` (cleared first).
void build_response_head(const ResponseRewrite& r, std::string& out);

}  // namespace ringproxy
