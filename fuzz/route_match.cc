// fuzz::route_match: [[route]]s and requests from the input (targets.h), matched by
// match_route (proxy/backends.h, the bit-set index) and by a plain scan written here
// from SPEC "Several tiers", which must agree on every request.
#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/targets.h"
#include "proxy/backends.h"

namespace ringproxy::fuzz {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The Host as a route compares it: no port, no root dot, an IPv6 literal unbracketed,
// any case.
std::string host_of(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return lower(close == std::string_view::npos ? host : host.substr(1, close - 1));
  }
  if (const size_t colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return lower(host);
}

// The first route (index) whose host and prefix match, or routes.size().
size_t scan(const std::vector<RouteConfig>& routes, std::string_view host_field, std::string_view target) {
  const std::string host = host_of(host_field);
  for (size_t i = 0; i < routes.size(); ++i) {
    const std::string& h = routes[i].host;
    bool host_ok = h.empty() || h == host;
    if (!host_ok && h.starts_with("*.")) {
      const std::string_view suffix = std::string_view(h).substr(1);  // ".example.com"
      host_ok = host.size() > suffix.size() && std::string_view(host).ends_with(suffix);
    }
    if (host_ok && target.starts_with(routes[i].path_prefix)) return i;
  }
  return routes.size();
}

}  // namespace

std::string route_match(std::span<const uint8_t> input) {
  // Lines; up to the first empty one, routes "HOST PATH" ("-" for ""), then requests
  // "HOST TARGET". Route i goes to pool "r<i>", so the pool matched names the route.
  const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
  std::vector<std::string_view> lines;
  for (size_t at = 0; at <= text.size();) {
    const size_t nl = std::min(text.find('\n', at), text.size());
    lines.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  const auto split = [](std::string_view line) {
    const size_t sp = line.find(' ');
    std::string_view a = line.substr(0, sp), b = sp == std::string_view::npos ? "" : line.substr(sp + 1);
    if (a == "-") a = {};
    if (b == "-") b = {};
    return std::pair{a, b};
  };
  auto config = std::make_shared<Config>();
  std::vector<RouteConfig> routes;
  size_t i = 0;
  for (; i < lines.size() && !lines[i].empty() && routes.size() < 200; ++i) {
    auto [host, path] = split(lines[i]);
    RouteConfig r{lower(host), std::string(path), "r" + std::to_string(routes.size())};
    PoolConfig pool;
    pool.name = r.pool;
    config->pools.push_back(pool);
    config->routes.push_back(r);
    routes.push_back(std::move(r));
  }
  std::string error;
  const auto routing = build_routing(config, nullptr, 1, 1, &error);
  if (!routing) return "route_match: the routing did not build: " + error;
  const uint32_t none = 100000;
  for (++i; i < lines.size(); ++i) {
    const auto [host, target] = split(lines[i]);
    const size_t want = scan(routes, host, target);
    const uint32_t got = match_route(*routing, host, target, none);
    const uint32_t want_pool = want == routes.size() ? none : static_cast<uint32_t>(want + 1);
    if (got != want_pool) {
      return "route_match: host \"" + std::string(host) + "\" target \"" + std::string(target) + "\": index says " +
             std::to_string(got) + ", scan says " + std::to_string(want_pool);
    }
  }
  return {};
}

}  // namespace ringproxy::fuzz
