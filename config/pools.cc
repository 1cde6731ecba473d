#include "config/pools.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "config/address.h"
#include "config/dns.h"
#include "config/sections.h"
#include "config/tls.h"
#include "ring/ring.h"

namespace ringproxy::config_internal {

namespace {

constexpr std::string_view kDefaultPool = "default";

bool is_pool_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// A route's host: "" (any), an exact DNS name, or "*." and a DNS name (one or more
// labels before it). Lower case; a port is not part of it (the Host header's is
// ignored when matching).
std::optional<std::string> parse_route_host(std::string_view text, std::string* why) {
  std::string host(text);
  for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (host.empty()) return host;
  const std::string_view name = std::string_view(host).starts_with("*.") ? std::string_view(host).substr(2) : host;
  if (!is_dns_name(name) && !is_ip_literal(name)) {
    *why = "invalid host " + quoted(text) + ": a DNS name, \"*.\" and a DNS name, or \"\" for any";
    return std::nullopt;
  }
  return host;
}

std::optional<std::string> parse_path_prefix(std::string_view text, std::string* why) {
  if (text.empty() || text.front() == '/') {
    if (std::ranges::all_of(text, [](char c) { return c > 0x20 && c < 0x7f; })) return std::string(text);
  }
  *why = "invalid path_prefix " + quoted(text) + ": \"\" for any, or a path starting with '/' (no spaces)";
  return std::nullopt;
}

std::optional<std::string> parse_pool_ref(std::string_view text, std::string* why) {
  if (is_valid_pool_name(text)) return std::string(text);
  *why = "invalid pool name " + quoted(text) + ": letters, digits, - and _";
  return std::nullopt;
}

std::vector<Field<RouteConfig>> route_fields() {
  using R = RouteConfig;
  return {
      text_field<R, std::string>("host", &R::host, parse_route_host),
      text_field<R, std::string>("path_prefix", &R::path_prefix, parse_path_prefix),
      text_field<R, std::string>("pool", &R::pool, parse_pool_ref),
  };
}

// Does route `a` match every request route `b` matches (so that `b`, after it, never
// matches anything)?
bool covers(const RouteConfig& a, const RouteConfig& b) {
  bool host = a.host.empty() || a.host == b.host;
  if (!host && a.host.starts_with("*.") && !b.host.empty()) {
    // "*.example.com" covers "x.example.com" and "*.x.example.com".
    const std::string_view suffix = std::string_view(a.host).substr(1);  // ".example.com"
    const std::string_view other = b.host.starts_with("*.") ? std::string_view(b.host).substr(1) : b.host;
    host = other.size() > suffix.size() && other.ends_with(suffix);
  }
  return host && b.path_prefix.starts_with(a.path_prefix);
}

class TierReader {
 public:
  TierReader(Errors& errors, Errors& warnings, const toml::table& root, Config& config)
      : errors_(errors), warnings_(warnings), root_(root), config_(config) {}

  void read() {
    if (const toml::node* pools = root_.get("pool")) read_pools(*pools);
    if (const toml::node* routes = root_.get("route")) read_routes(*routes);
    if (const toml::node* listeners = root_.get("listener")) read_listeners(*listeners);
    check_unused_pools();
  }

 private:
  void read_pools(const toml::node& node) {
    for_each_table(errors_, node, "pool", "an array of tables ([[pool]])",
                   [&](const toml::table& table, const std::string& key, size_t) {
                     config_.pools.push_back(read_pool(table, key));
                     pool_tables_.push_back(&table);
                   });
  }

  PoolConfig read_pool(const toml::table& table, const std::string& key) {
    PoolConfig pool;
    // What is not given is the top level's.
    pool.hash_key = config_.proxy.hash_key;
    pool.ring = config_.ring;
    pool.health = config_.health;
    pool.upstream_tls = config_.upstream_tls;
    bool timeout_written = key_in(root_, "health", "timeout_ms") != nullptr;
    for (auto&& [name, value] : table) {
      const std::string item = key + "." + std::string(name.str());
      const std::string_view n = name.str();
      if (n == "name") {
        if (const std::string* text = get_string(errors_, value, item)) {
          if (!is_valid_pool_name(*text)) {
            errors_.add(value.source().begin, item, "invalid pool name " + quoted(*text) + ": letters, digits, - and _");
          } else if (*text == kDefaultPool) {
            errors_.add(value.source().begin, item,
                        "\"default\" is the top level's pool ([[backend]], [[discover]], [ring], [health])");
          } else {
            pool.name = *text;
          }
        }
      } else if (n == "hash_key") {
        text_field<PoolConfig, HashKey>("hash_key", &PoolConfig::hash_key, hash_key_value).read(errors_, value, item, pool);
      } else if (n == "ring") {
        read_section(errors_, value, item, ring_section_fields(), pool.ring);
      } else if (n == "health") {
        read_section(errors_, value, item, health_section_fields(), pool.health);
        if (const toml::table* h = value.as_table(); h && h->contains("timeout_ms")) timeout_written = true;
      } else if (n == "upstream_tls") {
        read_upstream_tls(errors_, value, item, pool.upstream_tls);
      } else if (n == "backends") {
        read_pool_backends(value, item, pool.backends);
      } else if (n == "discover") {
        read_discover(errors_, value, item, pool.discover);
      } else {
        errors_.add(name.source().begin, item,
                    unknown_message("key", n, {"name", "hash_key", "ring", "health", "upstream_tls", "backends", "discover"}));
      }
    }
    if (!table.contains("name")) errors_.add(table.source().begin, key + ".name", "missing (every pool needs a name)");
    if (!timeout_written) pool.health.timeout_ms = std::min(HealthConfig{}.timeout_ms, pool.health.interval_ms);
    check_pool(table, key, pool);
    return pool;
  }

  void read_pool_backends(const toml::node& node, const std::string& key, std::vector<BackendConfig>& out) {
    for_each_table(errors_, node, key, "an array of tables", [&](const toml::table& table, const std::string& item, size_t) {
      BackendConfig b;
      read_backend_table(errors_, table, item, b);
      // Within the pool, a name and an address once (another pool may use them).
      for (size_t j = 0; j < out.size(); ++j) {
        const std::string earlier = key + "[" + std::to_string(j) + "]";
        if (!b.name.empty() && b.name == out[j].name) {
          errors_.add(table.get("name")->source().begin, item + ".name",
                      "duplicate backend name " + quoted(b.name) + " in this pool (first at " + earlier + ")");
        } else if (!b.address.host.empty() && b.address == out[j].address) {
          errors_.add(table.get("address")->source().begin, item + ".address",
                      "address " + b.address.to_string() + " already used by " + earlier + " in this pool");
        }
      }
      out.push_back(std::move(b));
    });
  }

  void check_pool(const toml::table& table, const std::string& key, const PoolConfig& pool) {
    if (!pool.name.empty()) {
      for (size_t j = 0; j < config_.pools.size(); ++j) {
        if (config_.pools[j].name == pool.name) {
          errors_.add(table.get("name")->source().begin, key + ".name",
                      "duplicate pool name " + quoted(pool.name) + " (first at pool[" + std::to_string(j) + "])");
        }
      }
    }
    if (!errors_.any_at_or_below(key + ".health") && pool.health.timeout_ms > pool.health.interval_ms) {
      const toml::table* health = table.get("health") ? table.get("health")->as_table() : nullptr;
      const bool own = health != nullptr && health->contains("timeout_ms");
      errors_.add(own ? health->get("timeout_ms")->source().begin
                      : (health != nullptr ? health->source().begin : table.source().begin),
                  key + ".health.timeout_ms",
                  "must be at most the pool's health.interval_ms (" + std::to_string(pool.health.interval_ms) +
                      "), got " + std::to_string(pool.health.timeout_ms) +
                      (own ? "" : " (from [health]; give the pool its own health.timeout_ms)"));
    }
    if (pool.hash_key.kind == HashKeyKind::kClientSubject && config_.proxy.tls.client_ca.empty() &&
        table.contains("hash_key")) {
      errors_.add(table.get("hash_key")->source().begin, key + ".hash_key",
                  "client_subject needs proxy.tls.client_ca: without it no client presents a certificate");
    }
    if (const uint64_t points = ring_points(pool.ring, pool.backends); points > Ring::kMaxPoints) {
      errors_.add(table.source().begin, key + ".ring",
                  "vnodes x total weight is " + std::to_string(points) + " ring points, above the " +
                      std::to_string(Ring::kMaxPoints) + " a ring can have");
    }
    check_sources(table, key, pool);
    if (pool.backends.empty() && pool.discover.empty() && !errors_.any_at_or_below(key)) {
      warnings_.add(table.source().begin, key,
                    "pool " + quoted(pool.name) + " has no backends and no discover source: its requests get 503 "
                    "until the admin API or gossip adds nodes");
    }
  }

  // A source is one entry to the resolver, the admin API (/discovery) and gossip, which
  // know it by its name: one pool per name.
  void check_sources(const toml::table& table, const std::string& key, const PoolConfig& pool) {
    const toml::array* list = table.get("discover") ? table.get("discover")->as_array() : nullptr;
    if (list == nullptr || errors_.any_at_or_below(key + ".discover")) return;
    for (size_t i = 0; i < pool.discover.size() && i < list->size(); ++i) {
      const std::string& name = pool.discover[i].name;
      std::string other;
      for (size_t j = 0; j < config_.discover.size() && other.empty(); ++j) {
        if (config_.discover[j].name == name) other = "discover[" + std::to_string(j) + "]";
      }
      for (size_t p = 0; p < config_.pools.size() && other.empty(); ++p) {
        for (size_t j = 0; j < config_.pools[p].discover.size() && other.empty(); ++j) {
          if (config_.pools[p].discover[j].name == name) {
            other = "pool[" + std::to_string(p) + "].discover[" + std::to_string(j) + "]";
          }
        }
      }
      if (other.empty()) continue;
      const toml::table* entry = list->get(i) ? list->get(i)->as_table() : nullptr;
      const toml::node* at = entry && entry->get("name") ? entry->get("name") : static_cast<const toml::node*>(list);
      errors_.add(at->source().begin, key + ".discover[" + std::to_string(i) + "].name",
                  quoted(name) + " is already " + other + ": one source per name, in one pool");
    }
  }

  bool pool_exists(std::string_view name) const {
    return name == kDefaultPool ||
           std::ranges::any_of(config_.pools, [&](const PoolConfig& p) { return p.name == name; });
  }

  void read_routes(const toml::node& node) {
    const auto fields = route_fields();
    for_each_table(errors_, node, "route", "an array of tables ([[route]])",
                   [&](const toml::table& table, const std::string& key, size_t i) { read_route(table, key, i, fields); });
  }

  void read_route(const toml::table& table, const std::string& key, size_t i, const std::vector<Field<RouteConfig>>& fields) {
    RouteConfig route;
    read_fields(errors_, table, key, fields, route);
    if (!table.contains("pool")) {
      errors_.add(table.source().begin, key + ".pool", "missing (the pool its requests go to)");
    } else if (!errors_.any_at_or_below(key + ".pool") && !pool_exists(route.pool)) {
      errors_.add(table.get("pool")->source().begin, key + ".pool",
                  "no pool named " + quoted(route.pool) + " (\"default\" or a [[pool]]'s name)");
    }
    if (!errors_.any_at_or_below(key)) {
      for (size_t j = 0; j < config_.routes.size(); ++j) {
        if (covers(config_.routes[j], route)) {
          warnings_.add(table.source().begin, key,
                        "never matches: route[" + std::to_string(route_index_[j]) +
                            "] comes first and matches every request this one does");
          break;
        }
      }
    }
    used_.insert(route.pool);
    config_.routes.push_back(std::move(route));
    route_index_.push_back(i);
  }

  void read_listeners(const toml::node& node) {
    for_each_table(errors_, node, "listener", "an array of tables ([[listener]])",
                   [&](const toml::table& table, const std::string& key, size_t i) { read_listener(table, key, i); });
  }

  void read_listener(const toml::table& table, const std::string& key, size_t i) {
    ListenerConfig listener;
    for (auto&& [name, value] : table) {
      const std::string item = key + "." + std::string(name.str());
      if (name.str() == "listen") {
        text_field<ListenerConfig, Address>("listen", &ListenerConfig::listen, listen_address_value)
            .read(errors_, value, item, listener);
      } else if (name.str() == "tls") {
        ProxyConfig holder;  // [proxy.tls]'s keys and checks, under this key
        read_proxy_tls(errors_, value, item, holder);
        listener.tls = std::move(holder.tls);
      } else if (name.str() == "pool") {
        if (const std::string* text = get_string(errors_, value, item)) {
          const std::string pool = text->empty() ? std::string(kDefaultPool) : *text;
          if (!pool_exists(pool)) {
            errors_.add(value.source().begin, item,
                        "no pool named " + quoted(pool) + " (\"\" or \"default\", or a [[pool]]'s name)");
          }
          listener.pool = pool;
        }
      } else {
        errors_.add(name.source().begin, item, unknown_message("key", name.str(), {"listen", "tls", "pool"}));
      }
    }
    if (!table.contains("listen")) {
      errors_.add(table.source().begin, key + ".listen", "missing (the address to listen on, as \"127.0.0.1:8443\")");
    } else if (!errors_.any_at_or_below(key + ".listen")) {
      check_listener_address(table, key, listener.listen);
    }
    used_.insert(listener.pool);
    config_.listeners.push_back(std::move(listener));
    listener_index_.push_back(i);
  }

  void check_listener_address(const toml::table& table, const std::string& key, const Address& listen) {
    std::string other;
    if (listen_addresses_collide(listen, config_.proxy.listen)) other = "proxy.listen " + config_.proxy.listen.to_string();
    if (config_.admin.enabled && listen_addresses_collide(listen, config_.admin.listen)) {
      other = "admin.listen " + config_.admin.listen.to_string();
    }
    for (size_t j = 0; j < config_.listeners.size() && other.empty(); ++j) {
      if (listen_addresses_collide(listen, config_.listeners[j].listen)) {
        other = "listener[" + std::to_string(listener_index_[j]) + "] " + config_.listeners[j].listen.to_string();
      }
    }
    if (!other.empty()) {
      errors_.add(table.get("listen")->source().begin, key + ".listen", listen.to_string() + " collides with " + other);
    }
  }

  void check_unused_pools() {
    for (size_t i = 0; i < config_.pools.size(); ++i) {
      const PoolConfig& pool = config_.pools[i];
      if (pool.name.empty() || used_.count(pool.name)) continue;
      warnings_.add(pool_tables_[i]->source().begin, "pool[" + std::to_string(i) + "]",
                    "no [[route]] or [[listener]] names pool " + quoted(pool.name) + ": no request reaches it");
    }
  }

  Errors& errors_;
  Errors& warnings_;
  const toml::table& root_;
  Config& config_;
  std::vector<const toml::table*> pool_tables_;
  std::vector<size_t> route_index_;     // parallel to config_.routes: its index in the file
  std::vector<size_t> listener_index_;  // parallel to config_.listeners
  std::set<std::string, std::less<>> used_;
};

}  // namespace

bool is_valid_pool_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::ranges::all_of(name, is_pool_name_char);
}

void read_tiers(Errors& errors, Errors& warnings, const toml::table& root, Config& config) {
  TierReader(errors, warnings, root, config).read();
}

}  // namespace ringproxy::config_internal

namespace ringproxy {

PoolConfig default_pool_config(const Config& config) {
  PoolConfig pool;
  pool.name = "default";
  pool.hash_key = config.proxy.hash_key;
  pool.ring = config.ring;
  pool.health = config.health;
  pool.upstream_tls = config.upstream_tls;
  pool.backends = config.backends;
  pool.discover = config.discover;
  return pool;
}

bool default_pool_declared(const Config& config) {
  return config.pools.empty() || !config.backends.empty() || !config.discover.empty();
}

std::vector<BackendConfig>* pool_backends(Config& config, std::string_view pool) {
  if (pool == "default") return &config.backends;
  for (PoolConfig& p : config.pools) {
    if (p.name == pool) return &p.backends;
  }
  return nullptr;
}

std::string source_pool(const Config& config, std::string_view source) {
  for (const DiscoverConfig& d : config.discover) {
    if (d.name == source) return "default";
  }
  for (const PoolConfig& p : config.pools) {
    for (const DiscoverConfig& d : p.discover) {
      if (d.name == source) return p.name;
    }
  }
  return {};
}

std::vector<DiscoverConfig> all_sources(const Config& config) {
  std::vector<DiscoverConfig> out = config.discover;
  for (const PoolConfig& p : config.pools) out.insert(out.end(), p.discover.begin(), p.discover.end());
  return out;
}

}  // namespace ringproxy
