#include "proxy/backends.h"

#include <arpa/inet.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include "http/message.h"

namespace ringproxy {

bool to_sockaddr(const Address& address, sockaddr_storage* out) {
  std::memset(out, 0, sizeof *out);
  if (address.ipv6) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(out);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(address.port);
    return inet_pton(AF_INET6, address.host.c_str(), &sa->sin6_addr) == 1;
  }
  auto* sa = reinterpret_cast<sockaddr_in*>(out);
  sa->sin_family = AF_INET;
  sa->sin_port = htons(address.port);
  return inet_pton(AF_INET, address.host.c_str(), &sa->sin_addr) == 1;
}

std::shared_ptr<Routing> build_routing(std::shared_ptr<const Config> config,
                                       const Routing* previous, uint64_t generation,
                                       unsigned workers, std::string* error) {
  return build_routing(std::move(config), {}, {}, previous, generation, workers, error);
}

namespace {

// The node's connection addresses: the address itself, or what its name resolves to
// (with its port). A name with no answer yet has none.
std::vector<sockaddr_storage> sockaddrs_of(const Address& address, const ResolvedNames& names) {
  std::vector<sockaddr_storage> out;
  if (!address.is_name) {
    out.emplace_back();
    if (!to_sockaddr(address, &out.back())) out.clear();
    return out;
  }
  const auto it = names.find(address.host);
  if (it == names.end()) return out;
  for (const std::string& ip : it->second) {
    Address a{ip, address.port, ip.find(':') != std::string::npos};
    if (sockaddr_storage sa; to_sockaddr(a, &sa)) out.push_back(sa);
  }
  return out;
}

}  // namespace

std::string resolved_text(const ResolvedNames& names, std::string_view host) {
  std::string out;
  if (const auto it = names.find(host); it != names.end()) {
    for (const std::string& ip : it->second) {
      out += ip;
      out += ' ';
    }
  }
  return out;
}

FoundNode found_by(const DiscoverConfig& source) {
  FoundNode f;
  f.backend.tls = source.tls;
  f.backend.tls_name = source.tls_name;
  f.backend.protocol = source.protocol;
  f.source = source.name;
  return f;
}

namespace {

// `pool`'s ring and nodes: its configured backends, then each found node of the pool
// whose name is not taken. Node states come from `previous` (the previous routing's
// pool of that name).
bool build_pool(Pool& pool, const std::vector<FoundNode>& found, const ResolvedNames& names, const Pool* previous,
                unsigned workers, std::string* error, std::vector<std::string>* skipped) {
  // The configured backends, then each found node whose name is not taken; in this
  // order (the ring sorts its nodes itself, so the order decides only who keeps a name).
  std::vector<const BackendConfig*> specs;
  std::vector<const FoundNode*> origin;
  specs.reserve(pool.config.backends.size() + found.size());
  std::set<std::string_view> taken;
  for (const BackendConfig& b : pool.config.backends) {
    specs.push_back(&b);
    origin.push_back(nullptr);
    taken.insert(b.name);
  }
  for (const FoundNode& f : found) {
    if (f.pool != pool.config.name) continue;
    if (!taken.insert(f.backend.name).second) {
      if (skipped) skipped->push_back(pool.qualified(f.backend.name));
      continue;
    }
    specs.push_back(&f.backend);
    origin.push_back(&f);
  }
  std::vector<RingNode> nodes;
  nodes.reserve(specs.size());
  for (const BackendConfig* b : specs) nodes.push_back({b->name, b->address.to_string(), b->weight});
  RingBuildResult built = Ring::build(std::move(nodes), pool.config.ring.vnodes, pool.config.ring.placement);
  if (!built.ring) {
    *error = pool.is_default() ? built.error : "pool " + pool.config.name + ": " + built.error;
    return false;
  }
  pool.ring = std::move(built.ring);
  pool.backends.resize(pool.ring->nodes().size());
  for (size_t k = 0; k < specs.size(); ++k) {
    const BackendConfig& b = *specs[k];
    const NodeIndex i = *pool.ring->find(b.name);
    Backend& out = pool.backends[i];
    out.name = b.name;
    out.address = b.address;
    if (origin[k]) {
      out.source = origin[k]->source;
      out.priority = origin[k]->priority;
    }
    // Another pool's connections are never reused for this one's node: its TLS
    // settings ([upstream_tls]) may differ, as nginx's upstream blocks keep theirs.
    if (!pool.is_default()) {
      out.pool_key = pool.config.name;
      out.pool_key += '\0';
    }
    out.pool_key += b.name;
    out.pool_key += '\0';
    out.pool_key += b.address.to_string();
    out.sockaddrs = sockaddrs_of(b.address, names);
    if (b.address.is_name) {
      out.resolved = resolved_text(names, b.address.host);
      out.pool_key += '\0';
      out.pool_key += out.resolved;
    } else if (out.sockaddrs.empty()) {
      *error = "backend " + pool.qualified(b.name) + ": address " + b.address.to_string() + " does not parse";
      return false;
    }
    out.tls = b.tls;
    if (b.tls) {
      out.tls_name = b.tls_name.empty() ? b.address.host : b.tls_name;
      out.pool_key += '\0';
      out.pool_key += "tls";
      out.pool_key += '\0';
      out.pool_key += out.tls_name;
    }
    out.protocol = b.protocol;
    if (b.protocol != BackendProtocol::kHttp1) {
      out.pool_key += '\0';
      out.pool_key += protocol_name(b.protocol);
      pool.any_h2 = true;
    }
    if (previous) {
      if (auto old = previous->ring->find(b.name)) out.state = previous->backends[*old].state;
    }
    if (!out.state) out.state = std::make_shared<NodeState>(workers);
  }
  return true;
}

void index_routes(Routing& routing) {
  const size_t words = (routing.routes.size() + 63) / 64;
  const size_t rows = Routing::kRouteIndexRows;
  routing.route_words = words;
  routing.routes_by_host_len.assign(rows * words, 0);
  routing.routes_by_path_byte.assign(rows * words, 0);
  for (size_t i = 0; i < routing.routes.size(); ++i) {
    const CompiledRoute& r = routing.routes[i];
    const size_t word = i / 64;
    const uint64_t bit = uint64_t{1} << (i % 64);
    for (size_t row = 0; row < rows; ++row) {
      // Row 256 is "256 bytes or longer": a "*." route may match such a host.
      const bool host = r.host_len == 0 || (r.wildcard ? r.host_len < row : (row < 256 && r.host_len == row));
      if (host) routing.routes_by_host_len[row * words + word] |= bit;
      const bool path = r.path_len < 2 || (row < 256 && static_cast<unsigned char>(r.path_prefix[1]) == row);
      if (path) routing.routes_by_path_byte[row * words + word] |= bit;
    }
  }
}

}  // namespace

std::shared_ptr<Routing> build_routing(std::shared_ptr<const Config> config, const std::vector<FoundNode>& found,
                                       const ResolvedNames& names, const Routing* previous, uint64_t generation,
                                       unsigned workers, std::string* error, std::vector<std::string>* skipped) {
  auto routing = std::make_shared<Routing>();
  routing->generation = generation;
  routing->pools.reserve(config->pools.size() + 1);
  routing->pools.emplace_back().config = default_pool_config(*config);

  for (const PoolConfig& p : config->pools) routing->pools.emplace_back().config = p;
  uint32_t base = 0;
  for (uint32_t i = 0; i < routing->pools.size(); ++i) {
    Pool& pool = routing->pools[i];
    pool.index = i;
    pool.base = base;
    const Pool* before = previous ? previous->find_pool(pool.config.name) : nullptr;
    if (before) pool.upstream_tls = before->upstream_tls;
    if (!build_pool(pool, found, names, before, workers, error, skipped)) return nullptr;
    // "default" takes requests when the file gives it nodes (even once they are all
    // removed at runtime: then 503, not 404) or when it has some (added over the admin
    // API, or the cluster's shared set, which every instance then routes alike).
    if (pool.is_default()) pool.declared = config->default_declared || !pool.backends.empty();
    base += static_cast<uint32_t>(pool.backends.size());
  }
  for (const RouteConfig& r : config->routes) {
    CompiledRoute& out = routing->routes.emplace_back();
    out.wildcard = r.host.starts_with("*.");
    out.host = out.wildcard ? r.host.substr(1) : r.host;  // "*.example.com" -> ".example.com"
    out.path_prefix = r.path_prefix;
    const size_t head = std::min<size_t>(8, out.path_prefix.size());
    std::memcpy(&out.path_head, out.path_prefix.data(), head);
    std::memset(&out.path_mask, 0xff, head);
    if (out.path_prefix.size() > 8) std::memcpy(&out.path_tail, out.path_prefix.data() + out.path_prefix.size() - 8, 8);
    out.path_len = static_cast<uint32_t>(out.path_prefix.size());
    out.host_len = static_cast<uint32_t>(out.host.size());
    routing->routes_by_host |= !out.host.empty();
    const Pool* pool = routing->find_pool(r.pool);
    if (!pool) {
      *error = "route to pool " + r.pool + ": no such pool";
      return nullptr;
    }
    out.pool = pool->index;
  }
  index_routes(*routing);
  // Listeners: proxy.listen (id 0), then the [[listener]]s, each keeping the id (and
  // loaded TLS) of the previous routing's listener on its address.
  routing->next_listener_id = previous ? previous->next_listener_id : 1;
  const auto add_listener = [&](const Address& listen, const ServerTlsConfig& tls, uint32_t pool, bool first) {
    ListenerRouting& l = routing->listeners.emplace_back();
    l.listen = listen;
    l.tls_config = tls;
    l.pool = pool;
    l.pool_name = routing->pools[pool].name();
    const ListenerRouting* before = nullptr;
    if (previous) {
      for (const ListenerRouting& p : previous->listeners) {
        if (first ? p.id == 0 : (p.id != 0 && p.listen == listen)) before = &p;
      }
    }
    l.id = first ? 0 : before ? before->id : routing->next_listener_id++;
    if (before && before->tls_config == tls) l.tls = before->tls;
  };
  add_listener(config->proxy.listen, config->proxy.tls, 0, true);
  for (const ListenerConfig& lc : config->listeners) {
    const Pool* pool = routing->find_pool(lc.pool);
    if (!pool) {
      *error = "listener " + lc.listen.to_string() + ": no pool named " + lc.pool;
      return nullptr;
    }
    add_listener(lc.listen, lc.tls, pool->index, false);
  }
  for (const ListenerRouting& l : routing->listeners) {
    const std::string& name = l.tls_config.client_subject_header;
    const auto& known = routing->subject_headers;
    if (!name.empty() && std::none_of(known.begin(), known.end(), [&](const std::string& k) { return iequals(k, name); })) {
      routing->subject_headers.push_back(name);
    }
  }
  routing->config = std::move(config);
  return routing;
}

namespace {

// The host part of a Host value: without its port and one trailing dot; an IPv6
// literal without its brackets (as a route's host is written).
std::string_view host_part(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(1, close - 1);
  }
  if (const size_t colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}

// Does route r match in full (its candidacy told by the index already)?
bool route_matches(const CompiledRoute& r, std::string_view host, std::string_view target, uint64_t head) {
  // (The length first: `head` is zero-padded past a short target's end.)
  if (target.size() < r.path_len || (head & r.path_mask) != r.path_head) return false;
  if (r.host_len != 0) {
    // ".example.com" takes at least one label before it (the index saw to the length).
    const std::string_view part = r.wildcard ? host.substr(host.size() - r.host_len) : host;
    if (!iequals(part, r.host)) return false;
  }
  const size_t n = r.path_len;
  if (n > 8) {
    uint64_t tail;
    std::memcpy(&tail, target.data() + n - 8, 8);
    if (tail != r.path_tail) return false;
    if (n > 16 && std::memcmp(target.data() + 8, r.path_prefix.data() + 8, n - 16) != 0) return false;
  }
  return true;
}

}  // namespace

uint32_t match_route(const Routing& routing, std::string_view host, std::string_view target, uint32_t fallback) {
  if (routing.routes.empty()) return fallback;
  host = routing.routes_by_host ? host_part(host) : std::string_view();
  const size_t words = routing.route_words;
  const uint64_t* by_host = &routing.routes_by_host_len[std::min<size_t>(host.size(), 256) * words];
  const uint64_t* by_path =
      &routing.routes_by_path_byte[(target.size() < 2 ? 256 : static_cast<unsigned char>(target[1])) * words];
  // The target's first 8 bytes (zeros past its end).
  uint64_t head = 0;
  if (!target.empty()) std::memcpy(&head, target.data(), std::min<size_t>(8, target.size()));  // (data() may be null)
  for (size_t w = 0; w < words; ++w) {
    for (uint64_t candidates = by_host[w] & by_path[w]; candidates != 0; candidates &= candidates - 1) {
      const size_t i = w * 64 + static_cast<size_t>(std::countr_zero(candidates));
      if (route_matches(routing.routes[i], host, target, head)) return routing.routes[i].pool;
    }
  }
  return fallback;
}

}  // namespace ringproxy
