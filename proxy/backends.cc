#include "proxy/backends.h"

#include <arpa/inet.h>

#include <cstring>
#include <set>

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

std::shared_ptr<Routing> build_routing(std::shared_ptr<const Config> config, const std::vector<FoundNode>& found,
                                       const ResolvedNames& names, const Routing* previous, uint64_t generation,
                                       unsigned workers, std::string* error, std::vector<std::string>* skipped) {
  // The config's backends, then each found node whose name is not taken; in this order
  // (the ring sorts its nodes itself, so the order decides only who keeps a name).
  std::vector<const BackendConfig*> specs;
  std::vector<const FoundNode*> origin;
  specs.reserve(config->backends.size() + found.size());
  std::set<std::string_view> taken;
  for (const BackendConfig& b : config->backends) {
    specs.push_back(&b);
    origin.push_back(nullptr);
    taken.insert(b.name);
  }
  for (const FoundNode& f : found) {
    if (!taken.insert(f.backend.name).second) {
      if (skipped) skipped->push_back(f.backend.name);
      continue;
    }
    specs.push_back(&f.backend);
    origin.push_back(&f);
  }
  std::vector<RingNode> nodes;
  nodes.reserve(specs.size());
  for (const BackendConfig* b : specs) nodes.push_back({b->name, b->address.to_string(), b->weight});
  RingBuildResult built = Ring::build(std::move(nodes), config->ring.vnodes, config->ring.placement);
  if (!built.ring) {
    *error = built.error;
    return nullptr;
  }
  auto routing = std::make_shared<Routing>();
  routing->config = std::move(config);
  routing->ring = std::move(built.ring);
  routing->generation = generation;
  if (previous) {
    routing->server_tls = previous->server_tls;
    routing->upstream_tls = previous->upstream_tls;
  }
  routing->backends.resize(routing->ring->nodes().size());
  for (size_t k = 0; k < specs.size(); ++k) {
    const BackendConfig& b = *specs[k];
    const NodeIndex i = *routing->ring->find(b.name);
    Backend& out = routing->backends[i];
    out.name = b.name;
    out.address = b.address;
    if (origin[k]) {
      out.source = origin[k]->source;
      out.priority = origin[k]->priority;
    }
    out.pool_key = b.name;
    out.pool_key += '\0';
    out.pool_key += b.address.to_string();
    out.sockaddrs = sockaddrs_of(b.address, names);
    if (b.address.is_name) {
      out.resolved = resolved_text(names, b.address.host);
      out.pool_key += '\0';
      out.pool_key += out.resolved;
    } else if (out.sockaddrs.empty()) {
      *error = "backend " + b.name + ": address " + b.address.to_string() + " does not parse";
      return nullptr;
    }
    out.tls = b.tls;
    if (b.tls) {
      out.tls_name = b.tls_name.empty() ? b.address.host : b.tls_name;
      out.pool_key += '\0';
      out.pool_key += "tls";
      out.pool_key += '\0';
      out.pool_key += out.tls_name;
    }
    if (previous) {
      if (auto old = previous->ring->find(b.name)) out.state = previous->backends[*old].state;
    }
    if (!out.state) out.state = std::make_shared<NodeState>(workers);
  }
  return routing;
}

}  // namespace ringproxy
