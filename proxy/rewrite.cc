#include "proxy/rewrite.h"

#include <charconv>

#include "http/header_rules.h"

namespace ringproxy {
// Literal pieces are appended with their length known, not strlen.
using namespace std::string_view_literals;

bool build_request_head(const RequestRewrite& r, std::string& out) {

  std::string& h = out;
  h.clear();
  h.append(r.method);
  h += ' ';
  h.append(r.target);
  // RFC 9112 2.3: an intermediary sends its own version, whatever the client's; the
  // rules of a 1.0 client (no chunked body, no 1xx, keep-alive only when asked for and
  // framed by a length) are kept on the client's side (build_response_head).
  h += " HTTP/1.1\r\n"sv;
  const ConnectionOptions connection = ConnectionOptions::of(r.fields);
  const bool add_via = !r.via.empty();  // else the client's Via lines go on untouched
  std::string_view host, upgrade_value;
  bool have_xff = false, have_via = false;
  bool host_missing = true;
  for (const HeaderView& hv : r.fields) {
    if (iequals(hv.name, "upgrade")) upgrade_value = hv.value;
    if (is_hop_by_hop(hv.name, connection) || iequals(hv.name, "proxy-authorization")) continue;
    // Several X-Forwarded-For or Via lines fold into one list each, ours last.
    if (iequals(hv.name, "x-forwarded-for")) {
      have_xff = true;
      continue;
    }
    if (add_via && iequals(hv.name, "via")) {
      have_via = true;
      continue;
    }
    if (iequals(hv.name, "x-forwarded-proto") || iequals(hv.name, "x-forwarded-host")) continue;
    if (r.max_forwards_set && iequals(hv.name, "max-forwards")) continue;
    if (iequals(hv.name, "host")) {
      host = hv.value;
      host_missing = false;
    }
    h.append(hv.name);
    h += ": "sv;
    h.append(hv.value);
    h += "\r\n"sv;
  }
  // Every line's non-empty members, in order, then ours.
  const auto append_list = [&](std::string_view name) {
    for (const HeaderView& hv : r.fields) {
      if (iequals(hv.name, name) && hv.value.find_first_not_of(" \t") != std::string_view::npos) {
        h.append(hv.value);
        h += ", "sv;
      }
    }
  };
  if (r.max_forwards_set) {
    char digits[16];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, r.max_forwards);
    h += "Max-Forwards: "sv;
    h.append(digits, static_cast<size_t>(end - digits));
    h += "\r\n"sv;
  }
  if (add_via) {
    // RFC 9110 7.6.3: a gateway sends Via in each inbound request, the protocol it
    // was received in then its name, after the members already there.
    h += "Via: "sv;
    if (have_via) append_list("via");
    h += r.client_http10 ? "1.0 "sv : "1.1 "sv;
    h.append(r.via);
    h += "\r\n"sv;
  }
  h += "X-Forwarded-For: "sv;
  if (have_xff) append_list("x-forwarded-for");
  h.append(r.client_ip);
  h += "\r\nX-Forwarded-Proto: http\r\n"sv;
  if (!host.empty()) {
    h += "X-Forwarded-Host: "sv;
    h.append(host);
    h += "\r\n"sv;
  }
  if (r.upgrade) {
    h += "Connection: Upgrade\r\nUpgrade: "sv;
    h.append(upgrade_value);
    h += "\r\n"sv;
  }
  h += "\r\n"sv;
  return !host_missing;
}

void build_response_head(const ResponseRewrite& r, std::string& out) {
  const ConnectionOptions connection = ConnectionOptions::of(r.fields);
  std::string& h = out;
  h.clear();
  // RFC 9110 6.2: our own version, to 1.0 clients too (whose rules apply all the same).
  h += "HTTP/1.1 "sv;
  // 100 to 999 here (llhttp stops at 999): three digits, whatever leading zeros the
  // backend wrote.
  const char status[4] = {static_cast<char>('0' + r.status / 100 % 10),
                          static_cast<char>('0' + r.status / 10 % 10), static_cast<char>('0' + r.status % 10),
                          ' '};
  h.append(status, 4);
  h.append(r.reason);
  h += "\r\n"sv;
  std::string_view upgrade_value;
  for (const HeaderView& hv : r.fields) {
    if (iequals(hv.name, "upgrade")) upgrade_value = hv.value;
    if (is_hop_by_hop(hv.name, connection)) continue;
    // A 1.0 client gets no transfer coding, so no trailers either.
    if (r.client_http10 && (iequals(hv.name, "transfer-encoding") || iequals(hv.name, "trailer"))) continue;
    // RFC 9110 8.6: no Content-Length in a 1xx or 204 (which have no content).
    if ((r.interim || r.status == 204) && iequals(hv.name, "content-length")) continue;
    h.append(hv.name);
    h += ": "sv;
    h.append(hv.value);
    h += "\r\n"sv;
  }
  if (r.tunnel) {
    h += "Connection: Upgrade\r\nUpgrade: "sv;
    h.append(upgrade_value);
    h += "\r\n"sv;
  } else if (!r.interim) {
    if (r.close_after) {
      h += "Connection: close\r\n"sv;
    } else if (r.client_http10) {
      h += "Connection: keep-alive\r\n"sv;
    }
  }
  h += "\r\n"sv;
}

}  // namespace ringproxy
