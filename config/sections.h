// The field tables and value parsers of config.cc that other section files read with:
// [[pool]] (config/pools.cc) reads ring, health and backend keys as the top level does.
// Internal to config/.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "config/config.h"
#include "config/fields.h"

namespace ringproxy::config_internal {

std::vector<Field<RingConfig>> ring_section_fields();
std::vector<Field<HealthConfig>> health_section_fields();
std::vector<Field<BackendConfig>> backend_section_fields();
std::optional<HashKey> hash_key_value(std::string_view text, std::string* why);
// An address a config file may listen on or name (no port 0, no DNS name).
std::optional<Address> listen_address_value(std::string_view text, std::string* why);
// The value at [section].key of `root`, or null.
const toml::node* key_in(const toml::table& root, std::string_view section, std::string_view key);
// Two listening addresses that cannot both be bound (same port and IP, or a wildcard).
bool listen_addresses_collide(const Address& a, const Address& b);
// A [[backend]] table's keys read into `out`, with its own checks (name and address
// given, tls_name only with tls, a protocol that fits tls) reported under `key`
// ("pool[1].backends[0]").
void read_backend_table(Errors& errors, const toml::table& table, const std::string& key, BackendConfig& out);
// Total ring points of `backends` under `ring` (vnodes x weight, or nginx's 160 per weight).
uint64_t ring_points(const RingConfig& ring, const std::vector<BackendConfig>& backends);

}  // namespace ringproxy::config_internal
