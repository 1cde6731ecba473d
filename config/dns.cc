#include "config/dns.h"

#include <utility>
#include <vector>

#include "config/tls.h"

namespace ringproxy::config_internal {
namespace {

// Timeouts and TTL bounds: 1 ms .. 1 hour, as every timeout here; hold up to a day (a
// resolver outage of an hour or two should not empty a tier).
constexpr int64_t kMaxTimeoutMs = 3'600'000;
constexpr int64_t kMaxHoldMs = 86'400'000;

std::optional<DiscoverConfig::Type> parse_discover_type(std::string_view text, std::string* why) {
  if (text == "srv") return DiscoverConfig::Type::kSrv;
  if (text == "a") return DiscoverConfig::Type::kA;
  *why = "expected srv or a, got \"" + std::string(text) + "\"";
  return std::nullopt;
}

std::optional<std::string> parse_discover_name(std::string_view text, std::string* why) {
  if (is_srv_name(text)) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }
  *why = "\"" + std::string(text) + "\" is not a DNS name (labels of letters, digits and '-', "
         "an SRV name's may start with '_'; no trailing dot)";
  return std::nullopt;
}

std::optional<Address> resolver_address(std::string_view text, std::string* why) {
  std::string reason;
  std::optional<Address> address = parse_address(text, &reason);
  if (!address) *why = "invalid resolver \"" + std::string(text) + "\": " + reason;
  return address;
}

void read_resolvers(Errors& errors, const toml::node& node, const std::string& key, DnsConfig& out) {
  read_address_array(errors, node, key, "an array of \"IP:PORT\" strings", resolver_address, &out.resolvers);
}

std::vector<Field<DnsConfig>> dns_fields() {
  using D = DnsConfig;
  return {
      {"resolvers", read_resolvers},
      integer_field<D>("timeout_ms", &D::timeout_ms, 1, kMaxTimeoutMs),
      integer_field<D>("min_ttl_ms", &D::min_ttl_ms, 1, kMaxTimeoutMs),
      integer_field<D>("max_ttl_ms", &D::max_ttl_ms, 1, kMaxTimeoutMs),
      integer_field<D>("hold_ms", &D::hold_ms, 0, kMaxHoldMs),
  };
}

std::vector<Field<DiscoverConfig>> discover_fields() {
  using S = DiscoverConfig;
  return {
      text_field<S, std::string>("name", &S::name, parse_discover_name),
      text_field<S, DiscoverConfig::Type>("type", &S::type, parse_discover_type),
      {"port",
       [](Errors& errors, const toml::node& node, const std::string& key, S& out) {
         const std::optional<int64_t> value = get_integer(errors, node, key);
         if (!value) return;
         if (*value < 0 || *value > 65535) {
           errors.add(node.source().begin, key, "must be between 0 and 65535, got " + std::to_string(*value));
           return;
         }
         out.port = static_cast<uint16_t>(*value);
       }},
      integer_field<S>("weight", &S::weight, 0, 1000),
      boolean_field<S>("tls", &S::tls),
      text_field<S, std::string>("tls_name", &S::tls_name, parse_tls_name),
      text_field<S, BackendProtocol>("protocol", &S::protocol, parse_backend_protocol),
  };
}

}  // namespace

void read_dns(Errors& errors, const toml::node& node, const std::string& key, DnsConfig& out) {
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    type_error(errors, node, key, "a table ([dns])");
    return;
  }
  read_fields(errors, *table, key, dns_fields(), out);
  if (out.min_ttl_ms > out.max_ttl_ms && !errors.any_at_or_below(key + ".min_ttl_ms") &&
      !errors.any_at_or_below(key + ".max_ttl_ms")) {
    const toml::node* at = table->get("min_ttl_ms") != nullptr ? table->get("min_ttl_ms") : table->get("max_ttl_ms");
    errors.add(at->source().begin, key + ".min_ttl_ms",
               "must be at most " + key + ".max_ttl_ms (" + std::to_string(out.max_ttl_ms) + "), got " +
                   std::to_string(out.min_ttl_ms));
  }
}

namespace {

// One [[discover]] table at `item` (key[i]); `out` holds the sources before it.
void read_source(Errors& errors, const toml::table& table, const std::string& key, const std::string& item,
                 const std::vector<Field<DiscoverConfig>>& fields, std::vector<DiscoverConfig>& out) {
  DiscoverConfig source;
  read_fields(errors, table, item, fields, source);
  if (!table.contains("name")) {
    errors.add(table.source().begin, item + ".name", "missing (the DNS name to discover nodes by)");
  }
  if (!table.contains("type")) {
    errors.add(table.source().begin, item + ".type", "missing (srv or a)");
  } else if (!errors.any_at_or_below(item + ".type") && !errors.any_at_or_below(item + ".port")) {
    if (source.type == DiscoverConfig::Type::kA && source.port == 0) {
      errors.add(table.contains("port") ? table.get("port")->source().begin : table.source().begin,
                 item + ".port", "type a needs a port (1..65535): the records give only addresses");
    } else if (source.type == DiscoverConfig::Type::kSrv && source.port != 0) {
      errors.add(table.get("port")->source().begin, item + ".port",
                 "type srv takes each record's port: leave port out (or 0)");
    }
    if (source.type == DiscoverConfig::Type::kSrv && table.contains("weight")) {
      errors.add(table.get("weight")->source().begin, item + ".weight",
                 "type srv takes each record's weight: leave weight out");
    }
  }
  if (!source.tls && !source.tls_name.empty() && !errors.any_at_or_below(item + ".tls")) {
    errors.add(table.get("tls_name")->source().begin, item + ".tls_name", "needs tls = true");
  }
  check_protocol_tls(errors, table, item, source.protocol, source.tls);
  if (table.contains("name") && !errors.any_at_or_below(item + ".name")) {
    // One source per name: two would be one source to the resolver, to the admin API
    // and to gossip (a second port for an A name is a second name, e.g. a CNAME).
    // (Names are read in lower case.)
    for (size_t j = 0; j < out.size(); ++j) {
      if (out[j].name == source.name) {
        errors.add(table.get("name")->source().begin, item + ".name",
                   "\"" + source.name + "\" is already " + key + "[" + std::to_string(j) + "]: one source per name");
        break;
      }
    }
  }
  out.push_back(std::move(source));
}

}  // namespace

void read_discover(Errors& errors, const toml::node& node, const std::string& key,
                   std::vector<DiscoverConfig>& out) {
  const std::vector<Field<DiscoverConfig>> fields = discover_fields();
  for_each_table(errors, node, key, "an array of tables ([[discover]])",
                 [&](const toml::table& table, const std::string& item, size_t) {
                   read_source(errors, table, key, item, fields, out);
                 });
}

}  // namespace ringproxy::config_internal
