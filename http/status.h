// The answers the proxy writes itself, whole: an error or refusal with a short text
// body, and the reflection of a TRACE. Built once per answer (not on the forwarding path).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "http/message.h"

namespace ringproxy {

// The proxy's own answer to TRACE with Max-Forwards: 0 (RFC 9110 9.3.8): a 200 whose
// message/http body reflects the request head as received, less the fields that carry
// credentials (Authorization, Proxy-Authorization, Cookie), which a reflection would
// hand to a script in the page (cross-site tracing).
std::string trace_response(std::string_view request_line, std::span<const HeaderView> headers, bool close);

// A complete response the proxy answers itself: a short plain-text body, and
// Connection: close when `close` (always so for 4xx of malformed input). `head`: the
// answer to a HEAD, with the same head and no body.
std::string canned_response(int status, std::string_view body_text, bool close, bool head = false);

// The reason phrase for a status code, "" when unknown.
std::string_view reason_phrase(int status);

}  // namespace ringproxy
