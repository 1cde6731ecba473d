// The TLS keys of SPEC "TLS": [proxy.tls], [upstream_tls] and a [[backend]]'s tls and
// tls_name (and its protocol, which must agree with tls: SPEC "HTTP/2 and gRPC"), read
// and checked with the helpers of fields.h. Internal to config/. What the
// files they name contain is checked after loading, by net/tls_files.h.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "config/config.h"
#include "config/fields.h"

namespace ringproxy::config_internal {

// proxy.tls (`node`, at key path `key`): its presence turns TLS on for proxy.listen, and
// then it needs at least one certificate.
void read_proxy_tls(Errors& errors, const toml::node& node, const std::string& key, ProxyConfig& out);

// The [upstream_tls] section: defaults for TLS to backends.
void read_upstream_tls(Errors& errors, const toml::node& node, const std::string& key,
                       UpstreamTlsConfig& out);

// backend[].tls_name: "" (the host part of address), a DNS name or an IP address.
std::optional<std::string> parse_tls_name(std::string_view text, std::string* why);

// What one [[backend]] (`table`, read into `backend`, key path `key`) says about TLS as a
// whole, once its keys are read: a tls_name without tls = true, a protocol that does not
// fit tls (check_protocol_tls).
void check_backend_tls(Errors& errors, const toml::table& table, const std::string& key,
                       const BackendConfig& backend);

// A [[backend]]'s or [[discover]]'s protocol against its tls (protocol_fits_tls), once
// both are read: h2 without tls = true, or h2c with it, is an error at `key`.protocol,
// unless tls itself was wrong.
void check_protocol_tls(Errors& errors, const toml::table& table, const std::string& key,
                        BackendProtocol protocol, bool tls);

}  // namespace ringproxy::config_internal
