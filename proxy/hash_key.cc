#include "proxy/hash_key.h"

namespace ringproxy {

namespace {

// Value of `name` in a "k=v; k2=v2" cookie list; `found` set when present.
std::string_view cookie_value(std::string_view cookies, std::string_view name, bool* found) {
  while (!cookies.empty()) {
    const size_t semi = cookies.find(';');
    std::string_view pair = trim_ows(cookies.substr(0, semi));
    cookies = semi == std::string_view::npos ? std::string_view() : cookies.substr(semi + 1);
    const size_t eq = pair.find('=');
    if (eq != std::string_view::npos && trim_ows(pair.substr(0, eq)) == name) {
      *found = true;
      std::string_view v = trim_ows(pair.substr(eq + 1));
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

}  // namespace

std::string_view select_hash_key(const HashKey& how, std::string_view target,
                                 std::span<const HeaderView> headers,
                                 std::string_view client_ip, std::string_view client_subject) {
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
    case HashKeyKind::kClientSubject:
      key = client_subject;
      found = true;
      break;
  }
  return found && !key.empty() ? key : target;
}

}  // namespace ringproxy
