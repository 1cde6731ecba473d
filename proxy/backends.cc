#include "proxy/backends.h"

#include <arpa/inet.h>

#include <cstring>

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
  std::vector<RingNode> nodes;
  nodes.reserve(config->backends.size());
  for (const BackendConfig& b : config->backends) {
    nodes.push_back({b.name, b.address.to_string(), b.weight});
  }
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
  for (const BackendConfig& b : routing->config->backends) {
    const NodeIndex i = *routing->ring->find(b.name);
    Backend& out = routing->backends[i];
    out.name = b.name;
    out.address = b.address;
    out.pool_key = b.name;
    out.pool_key += '\0';
    out.pool_key += b.address.to_string();
    out.tls = b.tls;
    if (b.tls) {
      out.tls_name = b.tls_name.empty() ? b.address.host : b.tls_name;
      out.pool_key += '\0';
      out.pool_key += "tls";
      out.pool_key += '\0';
      out.pool_key += out.tls_name;
    }
    if (!to_sockaddr(b.address, &out.sockaddr)) {
      *error = "backend " + b.name + ": address " + b.address.to_string() + " does not parse";
      return nullptr;
    }
    if (previous) {
      if (auto old = previous->ring->find(b.name)) out.state = previous->backends[*old].state;
    }
    if (!out.state) out.state = std::make_shared<NodeState>(workers);
  }
  return routing;
}

}  // namespace ringproxy
