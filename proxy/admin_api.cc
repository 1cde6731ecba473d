#include "proxy/admin_api.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>

#include "config/tls.h"
#include "http/message.h"
#include "proxy/log.h"
#include "proxy/server.h"

namespace ringproxy {
namespace {

using nlohmann::json;

AdminResponse json_response(int status, const json& body) {
  // Keys, paths and names come from the network and may be any bytes: invalid UTF-8 is
  // replaced (U+FFFD), never thrown about.
  return {status, "application/json", body.dump(2, ' ', false, json::error_handler_t::replace) + "\n", {}};
}

AdminResponse error(int status, std::string_view message) {
  return json_response(status, json{{"error", message}});
}

std::string hash_key_text(const HashKey& k) {
  switch (k.kind) {
    case HashKeyKind::kUri: return "uri";
    case HashKeyKind::kPath: return "path";
    case HashKeyKind::kHeader: return "header:" + k.name;
    case HashKeyKind::kCookie: return "cookie:" + k.name;
    case HashKeyKind::kQuery: return "query:" + k.name;
    case HashKeyKind::kClientIp: return "client_ip";
    case HashKeyKind::kClientSubject: return "client_subject";
  }
  return "uri";
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// up | down | ejected | draining (SPEC), and for nodes by name: unresolved (a name with
// no address) and standby (an SRV record of a priority not serving now).
std::string node_state(const Backend& b, uint32_t weight) {
  if (b.state->draining.load() || weight == 0) return "draining";
  if (b.state->ejected.load()) return "ejected";
  if (b.sockaddrs.empty()) return "unresolved";
  if (b.state->standby.load()) return "standby";
  if (!b.state->up.load()) return "down";
  return "up";
}

// Where a node comes from: "config" (the file or the admin API) or "discover:NAME".
std::string node_source(const Backend& b) { return b.source.empty() ? "config" : "discover:" + b.source; }

// What a named node's name resolves to now (empty for an IP address).
json resolved_json(const Backend& b) {
  json out = json::array();
  for (size_t at = 0, space; (space = b.resolved.find(' ', at)) != std::string::npos; at = space + 1) {
    out.push_back(b.resolved.substr(at, space - at));
  }
  return out;
}

json mean_or_null(double ms) { return ms < 0 ? json(nullptr) : json(std::round(ms * 1000) / 1000); }

json node_json(const Pool& pool, NodeIndex i, const std::vector<double>& shares) {
  const Backend& b = pool.backends[i];
  const uint32_t weight = pool.ring->nodes()[i].weight;
  return {{"name", b.name},
          {"pool", pool.name()},
          {"address", b.address.to_string()},
          {"source", node_source(b)},
          {"resolved", resolved_json(b)},
          {"tls", b.tls},
          {"tls_name", b.tls ? b.tls_name : ""},
          {"protocol", std::string(protocol_name(b.protocol))},
          {"weight", weight},
          {"state", node_state(b, weight)},
          {"in_flight", b.state->in_flight.load()},
          {"requests", b.state->requests()},
          {"failures", b.state->failures()},
          {"response_ms_mean", mean_or_null(b.state->mean_header_ms())},
          {"share", shares[i]}};
}

// Parses a JSON body into an object; on failure fills *resp with a 400 naming why.
bool parse_body(const AdminRequest& req, json* out, AdminResponse* resp) {
  try {
    *out = json::parse(req.body);
  } catch (const json::exception& e) {
    // Not only parse_error: a number too large for a double ("1e999") is out_of_range
    // (found by fuzz_admin: tests/regressions/fuzz_admin/); it became a 500, not a 400.
    *resp = error(400, std::string("invalid JSON: ") + e.what());
    return false;
  }
  if (!out->is_object()) {
    *resp = error(400, "expected a JSON object");
    return false;
  }
  return true;
}

// Reads an integer field in [lo, hi]; fills *resp on failure.
bool int_field(const json& body, const char* name, int64_t lo, int64_t hi, int64_t* out, AdminResponse* resp) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_number_integer()) {
    *resp = error(400, std::string("\"") + name + "\" must be an integer");
    return false;
  }
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) {
    *resp = error(400, std::string("\"") + name + "\" must be between " + std::to_string(lo) + " and " +
                           std::to_string(hi) + ", got " + std::to_string(v));
    return false;
  }
  *out = v;
  return true;
}

class Api {
 public:
  explicit Api(Server& server) : server_(server) {}

  AdminResponse handle(const AdminRequest& req) {
    const std::string& p = req.path;
    // Every method but GET and HEAD needs the token, served or not: a route added later
    // cannot forget it, and nothing learns which methods exist without it.
    const bool mutating = req.method != "GET" && req.method != "HEAD";
    if (mutating && !authorized(req)) {
      AdminResponse r = error(401, "missing or wrong bearer token (admin.token)");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    if (p == "/healthz") return only(req, "GET", [&] { return healthz(); });
    if (p == "/pools") return only(req, "GET", [&] { return pools(); });
    if (p.rfind("/pools/", 0) == 0) {
      // /pools/NAME: the pool; /pools/NAME/ROUTE: ROUTE (nodes, ring) of that pool.
      const std::string rest = p.substr(7);
      const size_t slash = rest.find('/');
      const std::string pool = rest.substr(0, slash);
      if (!server_.routing()->find_pool(pool)) return error(404, "no pool named \"" + pool + "\"");
      if (slash == std::string::npos) return only(req, "GET", [&] { return pool_json_response(pool); });
      if (auto r = pool_route(req, pool, rest.substr(slash))) return *r;
      return error(404, "no such endpoint: " + p);
    }
    if (auto r = pool_route(req, "default", p)) return *r;
    if (p == "/members") return only(req, "GET", [&] { return members(); });
    if (p == "/discovery") return only(req, "GET", [&] { return discovery(); });
    if (p == "/reload") return only(req, "POST", [&] { return reload(req); });
    if (p == "/metrics") {
      return only(req, "GET", [&] {
        return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8", server_.metrics_text(), {}};
      });
    }
    if (p == "/") {
      return only(req, "GET", [&] {
        const double uptime = static_cast<double>(uv_now(server_.loop()) - server_.started_ms()) / 1000.0;
        return AdminResponse{200, "text/html; charset=utf-8", status_page(*server_.routing(), uptime), {}};
      });
    }
    return error(404, "no such endpoint: " + p);
  }

 private:
  template <typename F>
  AdminResponse only(const AdminRequest& req, const char* method, F f) {
    const bool get = std::string_view(method) == "GET";
    if (req.method != method && !(get && req.method == "HEAD")) return not_allowed(get ? "GET, HEAD" : method);
    return f();
  }

  static AdminResponse not_allowed(const char* allow) {
    AdminResponse r = error(405, std::string("method not allowed; allowed: ") + allow);
    r.headers.emplace_back("Allow", allow);
    return r;
  }

  bool authorized(const AdminRequest& req) const {
    const std::string& token = server_.config().admin.token;
    if (token.empty()) return true;
    std::string auth = req.header("authorization");
    // RFC 9110 5.5: a field value's trailing whitespace is not part of it.
    while (!auth.empty() && (auth.back() == ' ' || auth.back() == '\t')) auth.pop_back();
    constexpr std::string_view kBearer = "Bearer ";
    if (auth.size() < kBearer.size() || !iequals(std::string_view(auth).substr(0, kBearer.size()), kBearer)) {
      return false;
    }
    return token_matches(std::string_view(auth).substr(kBearer.size()), token);
  }

  AdminResponse healthz() {
    return {200, "text/plain", "ok\n", {}};
  }

  // The routes of one pool ("/nodes", "/nodes/NAME[/ACTION]", "/ring", "/ring/lookup"),
  // under /pools/NAME/ or, for "default", at the root; nullopt for another path.
  std::optional<AdminResponse> pool_route(const AdminRequest& req, const std::string& pool, const std::string& p) {
    if (p == "/nodes") {
      if (req.method == "GET" || req.method == "HEAD") return list_nodes(pool);
      if (req.method == "POST") return add_node(req, pool);
      return not_allowed("GET, HEAD, POST");
    }
    if (p.rfind("/nodes/", 0) == 0) return node_route(req, pool, p.substr(7));
    if (p == "/ring") return only(req, "GET", [&] { return ring(pool); });
    if (p == "/ring/lookup") return only(req, "GET", [&] { return lookup(req, pool); });
    return std::nullopt;
  }

  // GET /pools: every pool with its settings, ring and routes.
  AdminResponse pools() {
    const auto r = server_.routing();
    json list = json::array();
    for (const Pool& pool : r->pools) list.push_back(pool_json(*r, pool));
    return json_response(200, json{{"pools", list}});
  }

  AdminResponse pool_json_response(const std::string& name) {
    const auto r = server_.routing();
    return json_response(200, pool_json(*r, *r->find_pool(name)));
  }

  static json pool_json(const Routing& r, const Pool& pool) {
    json routes = json::array();
    for (size_t i = 0; i < r.routes.size(); ++i) {
      if (r.routes[i].pool != pool.index) continue;
      const RouteConfig& rc = r.config->routes[i];
      routes.push_back({{"host", rc.host}, {"path_prefix", rc.path_prefix}});
    }
    size_t usable = 0;
    for (const Backend& b : pool.backends) usable += b.state->usable() ? 1 : 0;
    return {{"name", pool.name()},
            {"declared", pool.declared},
            {"hash_key", hash_key_text(pool.config.hash_key)},
            {"nodes", pool.backends.size()},
            {"usable", usable},
            {"fingerprint", pool.ring->fingerprint()},
            {"points", pool.ring->points()},
            {"vnodes", pool.ring->vnodes()},
            {"placement", pool.ring->placement() == Placement::kNginx ? "nginx" : "xxh3"},
            {"routes", routes}};
  }

  AdminResponse list_nodes(const std::string& pool_name) {
    const auto r = server_.routing();
    const Pool& pool = *r->find_pool(pool_name);
    const auto shares = pool.ring->shares();
    json nodes = json::array();
    for (NodeIndex i = 0; i < pool.backends.size(); ++i) nodes.push_back(node_json(pool, i, shares));
    return json_response(200, json{{"nodes", nodes}});
  }

  AdminResponse node_route(const AdminRequest& req, const std::string& pool_name, const std::string& rest) {
    const size_t slash = rest.find('/');
    const std::string name = rest.substr(0, slash);
    const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (slash != std::string::npos && action.empty()) return error(404, "no such endpoint: /nodes/" + rest);
    const auto r = server_.routing();
    const Pool& pool = *r->find_pool(pool_name);
    const auto index = pool.ring->find(name);
    if (!index) {
      return error(404, "no node named \"" + name + "\"" + (pool.is_default() ? "" : " in pool " + pool_name));
    }
    // A discovered node comes and goes with its DNS record: drained here, but neither
    // removed nor re-weighted (its record says its weight).
    const std::string& source = pool.backends[*index].source;
    if (!source.empty() && ((action.empty() && req.method == "DELETE") || (action == "weight" && req.method == "PUT"))) {
      return error(409, "node \"" + name + "\" was discovered by [[discover]] " + source +
                            ": change its DNS record (drain works)");
    }
    if (action.empty()) {
      if (req.method == "GET" || req.method == "HEAD") return json_response(200, node_json(pool, *index, pool.ring->shares()));
      if (req.method == "DELETE") return remove_node(pool_name, name);
      return not_allowed("GET, HEAD, DELETE");
    }
    if (action == "drain" || action == "undrain") {
      if (req.method != "POST") return not_allowed("POST");
      server_.set_drained(pool_name, name, action == "drain");
      RP_LOG(LogLevel::kInfo, "admin: " + action + " node=" + pool.qualified(name));
      return json_response(200, node_json(pool, *index, pool.ring->shares()));
    }
    if (action == "weight") {
      if (req.method != "PUT") return not_allowed("PUT");
      return set_weight(req, pool_name, name);
    }
    return error(404, "no such endpoint: /nodes/" + rest);
  }

  AdminResponse add_node(const AdminRequest& req, const std::string& pool) {
    json body;
    AdminResponse resp;
    if (!parse_body(req, &body, &resp)) return resp;
    auto name_it = body.find("name");
    auto addr_it = body.find("address");
    if (name_it == body.end() || !name_it->is_string()) return error(400, "\"name\" must be a string");
    if (addr_it == body.end() || !addr_it->is_string()) return error(400, "\"address\" must be a string");
    const std::string name = name_it->get<std::string>();
    if (!is_valid_backend_name(name)) {
      return error(400, "invalid name \"" + name + "\": use letters, digits and - . _ ~ : [ ] only");
    }
    std::string why;
    // An IP address and port, or a DNS name and port (followed like a [[backend]]'s).
    auto address = parse_address(addr_it->get<std::string>(), &why, false, true);
    if (!address) return error(400, "invalid address \"" + addr_it->get<std::string>() + "\": " + why);
    int64_t weight = 1;
    if (body.contains("weight") && !int_field(body, "weight", 0, 1000, &weight, &resp)) return resp;
    bool tls = false;
    std::string tls_name;
    if (auto it = body.find("tls"); it != body.end()) {
      if (!it->is_boolean()) return error(400, "\"tls\" must be true or false");
      tls = it->get<bool>();
    }
    if (auto it = body.find("tls_name"); it != body.end()) {
      if (!it->is_string()) return error(400, "\"tls_name\" must be a string");
      auto parsed = config_internal::parse_tls_name(it->get<std::string>(), &why);
      if (!parsed) return error(400, "invalid tls_name: " + why);
      if (!tls && !parsed->empty()) return error(400, "\"tls_name\" needs \"tls\": true");
      tls_name = std::move(*parsed);
    }
    BackendProtocol protocol = BackendProtocol::kHttp1;
    if (auto it = body.find("protocol"); it != body.end()) {
      if (!it->is_string()) return error(400, "\"protocol\" must be a string");
      auto parsed = parse_backend_protocol(it->get<std::string>(), &why);
      if (!parsed) return error(400, "invalid protocol: " + why);
      if (!protocol_fits_tls(*parsed, tls)) {
        return error(400, *parsed == BackendProtocol::kH2
                              ? "\"protocol\": \"h2\" is HTTP/2 over TLS: add \"tls\": true, or use \"h2c\" for cleartext"
                              : "\"protocol\": \"h2c\" is cleartext HTTP/2: use \"h2\" with \"tls\": true");
      }
      protocol = *parsed;
    }
    for (const auto& key : body.items()) {
      if (key.key() != "name" && key.key() != "address" && key.key() != "weight" && key.key() != "tls" &&
          key.key() != "tls_name" && key.key() != "protocol") {
        return error(400, "unknown field \"" + key.key() + "\"");
      }
    }
    Config next = server_.config();
    std::vector<BackendConfig>& backends = *pool_backends(next, pool);
    for (const BackendConfig& b : backends) {
      if (b.name == name) return error(409, "a node named \"" + name + "\" exists");
      if (b.address == *address) {
        return error(409, "address " + address->to_string() + " is already node \"" + b.name + "\"");
      }
    }
    backends.push_back({name, *address, static_cast<uint32_t>(weight), tls, tls_name, protocol});
    if (std::string e = server_.apply(std::move(next)); !e.empty()) return error(400, e);
    const auto r = server_.routing();
    const Pool& p = *r->find_pool(pool);
    RP_LOG(LogLevel::kInfo, "admin: added node=" + p.qualified(name) + " address=" + address->to_string());
    return json_response(201, node_json(p, *p.ring->find(name), p.ring->shares()));
  }

  AdminResponse remove_node(const std::string& pool, const std::string& name) {
    Config next = server_.config();
    std::erase_if(*pool_backends(next, pool), [&](const BackendConfig& b) { return b.name == name; });
    if (std::string e = server_.apply(std::move(next)); !e.empty()) return error(400, e);
    RP_LOG(LogLevel::kInfo, "admin: removed node=" + server_.routing()->find_pool(pool)->qualified(name));
    return json_response(200, json{{"removed", name}});
  }

  AdminResponse set_weight(const AdminRequest& req, const std::string& pool, const std::string& name) {
    json body;
    AdminResponse resp;
    if (!parse_body(req, &body, &resp)) return resp;
    int64_t weight = 0;
    if (!int_field(body, "weight", 0, 1000, &weight, &resp)) return resp;
    Config next = server_.config();
    for (BackendConfig& b : *pool_backends(next, pool)) {
      if (b.name == name) b.weight = static_cast<uint32_t>(weight);
    }
    if (std::string e = server_.apply(std::move(next)); !e.empty()) return error(400, e);
    const auto r = server_.routing();
    const Pool& p = *r->find_pool(pool);
    RP_LOG(LogLevel::kInfo, "admin: weight node=" + p.qualified(name) + " weight=" + std::to_string(weight));
    return json_response(200, node_json(p, *p.ring->find(name), p.ring->shares()));
  }

  AdminResponse members() {
    json list = json::array();
    for (const gossip::Member& m : server_.members()) {
      list.push_back({{"name", m.name},
                      {"address", m.address},
                      {"state", std::string(gossip::to_string(m.state))},
                      {"incarnation", m.incarnation}});
    }
    return json_response(200, json{{"self", server_.self_name()}, {"members", list}});
  }

  // GET /discovery: each [[discover]] source and each name a node has, what it found,
  // when it was resolved, when it is asked next, and the last error.
  AdminResponse discovery() {
    const uint64_t now = uv_now(server_.loop());
    const auto r = server_.routing();
    const auto ago = [&](uint64_t ms) { return ms == 0 ? json(nullptr) : json(static_cast<double>(now - std::min(now, ms)) / 1000.0); };
    json sources = json::array();
    json names = json::array();
    for (const DiscoveryAgent::Status& st : server_.discovery_status()) {
      json results = json::object();
      for (const auto& [result, n] : st.results) results[result] = n;
      json o{{"name", st.name},
             {"resolved_seconds_ago", ago(st.resolved_ms)},
             {"next_in_seconds", static_cast<double>(st.next_ms > now ? st.next_ms - now : 0) / 1000.0},
             {"holding", st.holding},
             {"shared", st.shared.empty() ? json(nullptr) : json(st.shared)},
             {"last_error", st.last_error.empty() ? json(nullptr) : json(st.last_error)},
             {"results", results}};
      if (st.is_source) {
        o["type"] = st.type == DiscoverConfig::Type::kSrv ? "srv" : "a";
        json nodes = json::array();
        const std::string pool_name = source_pool(*r->config, st.name);
        if (const Pool* pool = r->find_pool(pool_name)) {
          for (const Backend& b : pool->backends) {
            if (b.source != st.name) continue;
            const uint32_t weight = pool->ring->nodes()[*pool->ring->find(b.name)].weight;
            nodes.push_back({{"name", b.name}, {"weight", weight}, {"priority", b.priority}, {"state", node_state(b, weight)}});
          }
        }
        o["pool"] = pool_name;
        o["nodes"] = nodes;
        sources.push_back(std::move(o));
      } else {
        o["addresses"] = st.found;
        names.push_back(std::move(o));
      }
    }
    return json_response(200, json{{"sources", sources}, {"names", names}});
  }

  AdminResponse ring(const std::string& pool_name) {
    const auto r = server_.routing();
    const Pool& pool = *r->find_pool(pool_name);
    const auto shares = pool.ring->shares();
    json nodes = json::array();
    for (NodeIndex i = 0; i < pool.backends.size(); ++i) {
      nodes.push_back({{"name", pool.backends[i].name}, {"share", shares[i]}});
    }
    return json_response(200, json{{"pool", pool.name()},
                                   {"fingerprint", pool.ring->fingerprint()},
                                   {"points", pool.ring->points()},
                                   {"vnodes", pool.ring->vnodes()},
                                   {"placement", pool.ring->placement() == Placement::kNginx ? "nginx" : "xxh3"},
                                   {"nodes", nodes}});
  }

  AdminResponse lookup(const AdminRequest& req, const std::string& pool_name) {
    bool found = false;
    const std::string key = req.param("key", &found);
    if (!found) return error(400, "missing ?key=");
    const auto r = server_.routing();
    const Pool& pool = *r->find_pool(pool_name);
    const uint64_t h = pool.ring->key_hash(key);
    json order = json::array();
    pool.ring->walk(h, [&](NodeIndex i) {
      if (pool.backends[i].state->usable()) order.push_back(pool.backends[i].name);
      return true;
    });
    json node = order.empty() ? json(nullptr) : order[0];
    json fallbacks = json::array();
    for (size_t i = 1; i < order.size(); ++i) fallbacks.push_back(order[i]);
    return json_response(200, json{{"key", key}, {"pool", pool.name()}, {"hash", hex64(h)}, {"node", node}, {"fallbacks", fallbacks}});
  }

  AdminResponse reload(const AdminRequest& req) {
    // A dry run is asked for by the parameter's presence ("?dry_run", "=1", "=yes"):
    // only an explicit 0 or false asks for the real thing, so a preview never applies.
    bool asked = false;
    const std::string dry = req.param("dry_run", &asked);
    const bool dry_run = asked && dry != "0" && dry != "false";
    const ReloadReport report = server_.reload(dry_run);
    json body{{"ok", report.ok},
              {"dry_run", dry_run},
              {"errors", report.errors},
              {"moved_fraction", report.moved_fraction},
              {"moved_by_pool", report.moved_by_pool}};
    if (!report.ok) body["error"] = report.errors.empty() ? "reload failed" : report.errors.front();
    return json_response(report.ok ? 200 : 400, body);
  }

  Server& server_;
};

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

bool token_matches(std::string_view presented, std::string_view expected) {
  // Every byte of the longer string is looked at, whatever matches: the time taken
  // says nothing about where the first difference is.
  unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  const size_t n = std::max(presented.size(), expected.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char a = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
    const unsigned char b = i < expected.size() ? static_cast<unsigned char>(expected[i]) : 0;
    diff |= static_cast<unsigned char>(a ^ b);
  }
  return diff == 0;
}

AdminHandler make_admin_handler(Server& server) {
  auto api = std::make_shared<Api>(server);
  return [api](const AdminRequest& req) { return api->handle(req); };
}

std::string status_page(const Routing& r, double uptime_s) {
  static constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                             "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79"};
  std::string h;
  h += "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
       "<meta http-equiv=\"refresh\" content=\"2\"><title>ringproxy</title>\n<style>"
       "body{font:14px system-ui,sans-serif;margin:24px;color:#222}"
       "table{border-collapse:collapse;margin-top:12px}td,th{padding:4px 12px;border-bottom:1px solid #ddd;text-align:left}"
       "th{background:#f4f4f4}.up{color:#2a7d2a}.down,.ejected{color:#b00020}.draining{color:#a06000}"
       ".sw{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}"
       ".wrap{display:flex;gap:32px;align-items:flex-start;flex-wrap:wrap}"
       "</style></head><body>\n<h1>ringproxy</h1>\n";
  char line[256];
  std::snprintf(line, sizeof line, "<p>up %.0f s</p>\n", uptime_s);
  h += line;
  for (const Pool& pool : r.pools) {
    // "default" alone (no [[pool]]) as it always was; with pools, each under its name.
    if (r.pools.size() > 1) {
      h += "<h2>pool " + html_escape(pool.name()) + "</h2>\n";
      if (!pool.declared) h += "<p>no [[backend]] or [[discover]]: requests no route matches get 404</p>\n";
    }
    const auto shares = pool.ring->shares();
    std::snprintf(line, sizeof line, "<p>%zu nodes, %zu ring points, fingerprint <code>%s</code></p>\n",
                  pool.backends.size(), pool.ring->points(), pool.ring->fingerprint().c_str());
    h += line;
    h += "<div class=\"wrap\"><table><tr><th>node</th><th>address</th><th>source</th><th>state</th><th>weight</th>"
         "<th>share</th><th>in flight</th><th>requests</th><th>req/s</th><th>failures</th><th>fail/s</th>"
         "<th>response ms (mean)</th></tr>\n";
    for (NodeIndex i = 0; i < pool.backends.size(); ++i) {
      const Backend& b = pool.backends[i];
      const uint32_t weight = pool.ring->nodes()[i].weight;
      const std::string state = node_state(b, weight);
      std::snprintf(line, sizeof line, "%.1f%%", shares[i] * 100);
      const std::string requests = std::to_string(b.state->requests());
      const std::string failures = std::to_string(b.state->failures());
      h += "<tr data-node=\"" + html_escape(pool.qualified(b.name)) + "\" data-requests=\"" + requests +
           "\" data-failures=\"" + failures + "\"><td><span class=\"sw\" style=\"background:" +
           std::string(kPalette[i % 10]) + "\"></span>" + html_escape(b.name) + "</td><td>" +
           html_escape(b.address.to_string()) + "</td><td>" + html_escape(node_source(b)) + "</td><td class=\"" +
           state + "\">" + state + "</td><td>" + std::to_string(weight) + "</td><td>" + line + "</td><td>" +
           std::to_string(b.state->in_flight.load()) + "</td><td>" + requests + "</td><td class=\"rq\">-</td><td>" +
           failures + "</td><td class=\"rf\">-</td><td>";
      if (const double ms = b.state->mean_header_ms(); ms >= 0) {
        std::snprintf(line, sizeof line, "%.2f", ms);
        h += line;
      } else {
        h += "-";
      }
      h += "</td></tr>\n";
    }
    h += "</table>\n";
    // The ring: each point a tick on a circle at angle hash / 2^64, coloured by owner;
    // points of unusable nodes grey. At most ~4,000 ticks are drawn (every k-th point).
    constexpr double kR = 150, kC = 170;
    h += "<svg width=\"340\" height=\"340\" viewBox=\"0 0 340 340\" role=\"img\" aria-label=\"ring\">"
         "<circle cx=\"170\" cy=\"170\" r=\"150\" fill=\"none\" stroke=\"#ccc\" stroke-width=\"1\"/>\n";
    const size_t n = pool.ring->points();
    const size_t step = n > 4000 ? (n + 3999) / 4000 : 1;
    for (size_t p = 0; p < n; p += step) {
      const double a = static_cast<double>(pool.ring->point_hash(p)) / 18446744073709551616.0 * 2 * M_PI - M_PI / 2;
      const NodeIndex owner = pool.ring->point_owner(p);
      const bool usable = pool.backends[owner].state->usable();
      const char* colour = usable ? kPalette[owner % 10] : "#bbb";
      std::snprintf(line, sizeof line,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1\"/>",
                    kC + (kR - 10) * std::cos(a), kC + (kR - 10) * std::sin(a), kC + (kR + 10) * std::cos(a),
                    kC + (kR + 10) * std::sin(a), colour);
      h += line;
    }
    h += "\n</svg></div>\n";
  }
  h += "<p><a href=\"/pools\">/pools</a> · <a href=\"/nodes\">/nodes</a> · <a href=\"/ring\">/ring</a> · "
       "<a href=\"/discovery\">/discovery</a> · <a href=\"/metrics\">/metrics</a></p>\n";
  // Rates: the page keeps the last counts it saw (sessionStorage) and divides the
  // difference by the time between two refreshes. No external script.
  h += "<script>(function(){var now=Date.now(),prev=JSON.parse(sessionStorage.getItem('rp')||'{}'),next={t:now,n:{}};"
       "document.querySelectorAll('tr[data-node]').forEach(function(r){var n=r.dataset.node,q=+r.dataset.requests,"
       "f=+r.dataset.failures;next.n[n]=[q,f];var p=prev.n&&prev.n[n];if(p&&now>prev.t){var s=(now-prev.t)/1000;"
       "r.querySelector('.rq').textContent=Math.max(0,(q-p[0])/s).toFixed(1);"
       "r.querySelector('.rf').textContent=Math.max(0,(f-p[1])/s).toFixed(1);}});"
       "sessionStorage.setItem('rp',JSON.stringify(next));})();</script>\n</body></html>\n";
  return h;
}

}  // namespace ringproxy
