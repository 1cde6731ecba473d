// The protocol-neutral pieces of an HTTP message the codecs hand to the proxy: header
// fields as views into the connection's buffer, and the reading of field values that
// every layer needs (case-insensitive names, token lists, the Connection options).
// No I/O; no allocation.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace ringproxy {

// One header of a parsed head, as views into the connection's read buffer.
struct HeaderView {
  std::string_view name;
  std::string_view value;
};

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

// `s` without leading and trailing SP and HTAB (OWS, RFC 9110 5.6.3).
std::string_view trim_ows(std::string_view s);

}  // namespace ringproxy
