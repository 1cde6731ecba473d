#include "proxy/admin_request.h"

#include <exception>

#include "http/header_rules.h"
#include "http/status.h"
#include "proxy/log.h"

namespace ringproxy {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool has_encoded_slash(std::string_view s) {
  for (size_t i = 0; i + 2 < s.size(); ++i) {
    if (s[i] == '%' && s[i + 1] == '2' && (s[i + 2] == 'f' || s[i + 2] == 'F')) return true;
  }
  return false;
}

// The path and query of a target: an absolute-form one ("http://host/nodes", which
// RFC 9112 3.2.2 says a server must accept) by its origin part.
std::string_view origin_of(std::string_view target) {
  if (AbsoluteTarget abs; split_absolute_target(target, &abs)) return abs.origin.empty() ? "/" : abs.origin;
  return target;
}

}  // namespace

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string AdminRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

std::string AdminRequest::param(std::string_view name, bool* found) const {
  std::string_view q = query;
  while (!q.empty()) {
    const size_t amp = q.find('&');
    const std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq)) == name) {
      if (found) *found = true;
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    }
  }
  if (found) *found = false;
  return {};
}

AdminRequest admin_request(std::string_view method, std::string_view target, std::span<const HeaderView> fields) {
  AdminRequest req;
  req.method = method;
  req.target = target;
  req.headers.reserve(fields.size());
  for (const HeaderView& f : fields) req.headers.emplace_back(f.name, f.value);
  const std::string_view origin = origin_of(target);
  const size_t q = origin.find('?');
  req.path = percent_decode(origin.substr(0, q));
  req.query = q == std::string_view::npos ? std::string() : std::string(origin.substr(q + 1));
  return req;
}

AdminResponse answer_admin_request(const AdminHandler& handler, const AdminRequest& req) {
  // Routing splits the decoded path at '/': an encoded one ("a-1%2Fdrain") would reach
  // another route than the one the client named. No node name holds a '/'.
  const std::string_view origin = origin_of(req.target);
  if (has_encoded_slash(origin.substr(0, origin.find('?')))) {
    return {400, "application/json", admin_error_json("encoded '/' in the path"), {}};
  }
  try {
    return handler(req);
  } catch (const std::exception& e) {
    // Nothing thrown may reach libuv: the process would end.
    RP_LOG(LogLevel::kError, "admin: " + req.method + " " + req.path + ": " + e.what());
    return {500, "application/json", admin_error_json("internal error"), {}};
  }
}

std::string admin_error_json(std::string_view message) {
  return "{\"error\": \"" + std::string(message) + "\"}\n";
}

std::string admin_response_bytes(const AdminResponse& resp, bool close, bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " ";
  out += reason_phrase(resp.status);
  out += "\r\nContent-Type: " + resp.content_type + "\r\nContent-Length: " + std::to_string(resp.body.size()) +
         "\r\nCache-Control: no-store\r\n";
  for (const auto& [k, v] : resp.headers) out += k + ": " + v + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head) out += resp.body;
  return out;
}

}  // namespace ringproxy
