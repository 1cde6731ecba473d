// The admin endpoint's exchange as values: a whole request in, a whole response out,
// with no connection in sight. AdminServer (admin_server.h) reads requests off a
// connection with the HTTP/1 server codec it shares with the proxy
// (http/h1/server_conn.h) and writes what these functions return.
//
// Thread: any (no state); the handler runs on the control loop.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.h"

namespace ringproxy {

struct AdminRequest {
  std::string method;
  std::string target;  // as received
  std::string path;    // target up to '?', percent-decoded (of an absolute target: its path)
  std::string query;   // after '?', raw
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The first header `name` (case-insensitive), "" if absent.
  std::string header(std::string_view name) const;
  // A query parameter, percent-decoded; found=false when absent.
  std::string param(std::string_view name, bool* found = nullptr) const;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones
};

using AdminHandler = std::function<AdminResponse(const AdminRequest&)>;

// A request from a head the codec has accepted (h1::RequestParser::kHead): method,
// target, fields copied (the views die with the read buffer), path and query split.
// The body is the caller's to fill.
AdminRequest admin_request(std::string_view method, std::string_view target, std::span<const HeaderView> fields);

// The answer to a whole request: `handler`'s, except a path with an encoded '/' (400)
// and anything the handler throws (500, logged): nothing thrown leaves here.
AdminResponse answer_admin_request(const AdminHandler& handler, const AdminRequest& req);

// {"error": "MESSAGE"}: the admin's error body (SPEC "Admin HTTP endpoint"). `message`
// is ASCII of our own, not escaped.
std::string admin_error_json(std::string_view message);

// The response as written: status line, Content-Type, Content-Length, Cache-Control:
// no-store, the extra headers, Connection: close when `close`; the body unless `head`
// (an answer to HEAD has the same head and no body).
std::string admin_response_bytes(const AdminResponse& resp, bool close, bool head);

// "%41" -> "A"; '+' is kept (paths and our parameters are not form-encoded).
std::string percent_decode(std::string_view s);

}  // namespace ringproxy
