// The protocol-neutral pieces of an HTTP message the codecs hand to the proxy: header
// fields as views into the connection's buffer, and the reading of field values that
// every layer needs (case-insensitive names, token lists, the Connection options).
// No I/O; no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace ringproxy {

// One header of a parsed head, as views into the connection's read buffer.
struct HeaderView {
  std::string_view name;
  std::string_view value;
};

// Where the parts of an HTTP/1 request head went in the string that holds it, as
// offsets (the string may grow and move): the request line's method and target, and
// each field line's name and value, in order. The proxy's rewrite records them as it
// writes the head for a node (proxy/rewrite.h), so that an HTTP/2 node's fields are
// taken from here (h2::request_fields) rather than from parsing that head again.
struct HeadSpans {
  struct Span {
    uint32_t at = 0;
    uint32_t len = 0;
    std::string_view in(std::string_view head) const { return head.substr(at, len); }
  };
  Span method;
  Span target;
  std::vector<std::pair<Span, Span>> fields;  // name, value
};

// A request head as a server codec hands it on, whatever the protocol: HTTP/1's
// request line and fields, or HTTP/2's pseudo-header fields and fields (with
// :authority as Host). Views into the codec's buffers, valid until the handler is
// reset; `fields` may be edited by the handler (an absolute target's Host).
struct RequestHead {
  enum class Protocol : uint8_t { kHttp1, kHttp2 };
  std::string_view method;
  std::string_view target;  // HTTP/1: origin, absolute or asterisk form; HTTP/2: :path
  std::vector<HeaderView>* fields = nullptr;
  size_t host_index = SIZE_MAX;  // the Host field's index in fields (SIZE_MAX: none)
  Protocol protocol = Protocol::kHttp1;
  bool http10 = false;
  bool upgrade = false;  // HTTP/1's Upgrade (never with HTTP/2)
  bool is_head = false;
  // Body bytes come to the handler decoded (HTTP/2 DATA), not framed as received: a
  // handler sending them over HTTP/1 frames them itself (content_length when the client
  // gave one, else chunked).
  bool body_decoded = false;
  bool has_body = false;  // HTTP/2: the HEADERS frame did not end the stream
  std::optional<uint64_t> content_length;  // HTTP/2 only (HTTP/1's is framed as received)
};

// ASCII lower case, for header names (HTTP/2 sends them lowered, RFC 9113 8.2.1).
inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
// `name` lowered into `out` (name.size() bytes); returns the copy's view.
inline std::string_view lower_into(char* out, std::string_view name) {
  for (size_t i = 0; i < name.size(); ++i) out[i] = ascii_lower(name[i]);
  return {out, name.size()};
}

// The loop of iequals, for views of the same size.
bool iequals_same_size(std::string_view a, std::string_view b);
// ASCII case-insensitive equality, for header names and tokens. Inline: most calls
// compare a field name with one of another length, and end there.
inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && iequals_same_size(a, b);
}

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
// client needs more than one) are read through `all`. A line that says only
// `keep-alive` (most of them, from HTTP/1.1 nodes on every response) is not kept: the
// one field it names, Keep-Alive, is hop-by-hop anyway, so the head's other fields need
// no look-up in it.
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

// `s` without leading and trailing SP and HTAB (OWS, RFC 9110 5.6.3).
std::string_view trim_ows(std::string_view s);

}  // namespace ringproxy
