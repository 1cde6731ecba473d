// The DNS keys of SPEC "Backends by name (DNS)": [dns] and [[discover]], read and checked
// with the helpers of fields.h. Internal to config/.
#pragma once

#include <string>

#include <toml++/toml.h>

#include "config/config.h"
#include "config/fields.h"

namespace ringproxy::config_internal {

// The [dns] section.
void read_dns(Errors& errors, const toml::node& node, const std::string& key, DnsConfig& out);

// The [[discover]] array: each source's keys, and what they need together (a port for
// type "a", none for "srv"; tls_name only with tls; a protocol that fits tls).
void read_discover(Errors& errors, const toml::node& node, const std::string& key,
                   std::vector<DiscoverConfig>& out);

}  // namespace ringproxy::config_internal
