#include "config/tls.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace ringproxy::config_internal {

namespace {

// Timeouts here are 1 ms .. 1 hour, as every other timeout of the file (config.cc).
constexpr int64_t kMaxTimeoutMs = 3'600'000;

bool iequals(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
    return lower(x) == lower(y);
  });
}

toml::source_position at(SourcePos pos) { return {pos.line, pos.column}; }

// A file name: its text and where it was written (for net/tls_files.h's messages, which
// come after loading). `required`: "" is an error rather than "not set". A NUL would
// cut the name short when the file is opened, so it is refused here.
template <class Section>
Field<Section> path_field(std::string_view name, std::string Section::*member,
                          SourcePos Section::*pos, bool required) {
  return {name, [member, pos, required](Errors& errors, const toml::node& node,
                                        const std::string& key, Section& out) {
            const std::string* text = get_string(errors, node, key);
            if (text == nullptr) return;
            if (required && text->empty()) {
              errors.add(node.source().begin, key, "must not be empty (the path of a PEM file)");
              return;
            }
            if (text->find('\0') != std::string::npos) {
              errors.add(node.source().begin, key,
                         "must not contain a NUL character, got " + quoted(*text));
              return;
            }
            out.*member = *text;
            out.*pos = source_pos(node);
          }};
}

std::optional<TlsVersion> parse_tls_version(std::string_view text, std::string* why) {
  if (text == "TLSv1.2") return TlsVersion::kTls12;
  if (text == "TLSv1.3") return TlsVersion::kTls13;
  *why = "expected TLSv1.2 or TLSv1.3, got " + quoted(text);
  return std::nullopt;
}

// The header that carries the client certificate's subject to the backend. The proxy
// removes the client's own copy and adds its own, so a name the proxy already sets or
// frames messages with would corrupt the request (Content-Length: a smuggling vector)
// or the proxy's own fields.
std::optional<std::string> parse_subject_header(std::string_view text, std::string* why) {
  static constexpr std::string_view kManaged[] = {
      "host",    "content-length",  "transfer-encoding", "connection",        "keep-alive",
      "te",      "trailer",         "upgrade",           "proxy-connection",  "via",
      "expect",  "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
  };
  if (text.empty()) return std::string();
  if (!is_token(text)) {
    *why = quoted(text) + " is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)";
    return std::nullopt;
  }
  if (std::ranges::any_of(kManaged, [text](std::string_view name) { return iequals(name, text); })) {
    *why = quoted(text) + " is a header the proxy manages itself; choose another name, such as "
           "\"X-Client-Subject\"";
    return std::nullopt;
  }
  return std::string(text);
}

// One entry of proxy.tls.certificates: { cert = ..., key = ... }, both required.
void read_certificate(Errors& errors, const toml::node& node, const std::string& key,
                      std::vector<TlsCertificateConfig>& out) {
  using C = TlsCertificateConfig;
  static const std::vector<Field<C>> fields = {
      path_field<C>("cert", &C::cert, &C::cert_pos, /*required=*/true),
      path_field<C>("key", &C::key, &C::key_pos, /*required=*/true),
  };
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    type_error(errors, node, key, "a table ({ cert = \"...\", key = \"...\" })");
    return;
  }
  C certificate;
  read_fields(errors, *table, key, fields, certificate);
  if (!table->contains("cert")) {
    errors.add(table->source().begin, key + ".cert", "missing (the PEM file of the certificate and its chain)");
  }
  if (!table->contains("key")) {
    errors.add(table->source().begin, key + ".key", "missing (the PEM file of the certificate's private key)");
  }
  out.push_back(std::move(certificate));
}

// proxy.tls.certificates, written either as an array of inline tables or as
// [[proxy.tls.certificates]] tables: toml++ gives both as an array of tables.
void read_certificates(Errors& errors, const toml::node& node, const std::string& key,
                       ServerTlsConfig& out) {
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    type_error(errors, node, key, "an array of tables ([{ cert = \"...\", key = \"...\" }])");
    return;
  }
  out.certificates.clear();
  if (array->empty()) {
    errors.add(node.source().begin, key,
               "must not be empty: a TLS listener needs a certificate ({ cert = \"...\", key = \"...\" })");
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    read_certificate(errors, *array->get(i), key + "[" + std::to_string(i) + "]", out.certificates);
  }
}

std::vector<Field<ServerTlsConfig>> server_tls_fields() {
  using S = ServerTlsConfig;
  return {
      {"certificates", read_certificates},
      text_field<S, TlsVersion>("min_version", &S::min_version, parse_tls_version),
      path_field<S>("client_ca", &S::client_ca, &S::client_ca_pos, /*required=*/false),
      text_field<S, std::string>("client_subject_header", &S::client_subject_header, parse_subject_header),
      integer_field<S>("handshake_timeout_ms", &S::handshake_timeout_ms, 1, kMaxTimeoutMs),
      boolean_field<S>("session_tickets", &S::session_tickets),
  };
}

std::vector<Field<UpstreamTlsConfig>> upstream_tls_fields() {
  using U = UpstreamTlsConfig;
  return {
      path_field<U>("ca", &U::ca, &U::ca_pos, /*required=*/false),
      boolean_field<U>("verify", &U::verify),
      path_field<U>("cert", &U::cert, &U::cert_pos, /*required=*/false),
      path_field<U>("key", &U::key, &U::key_pos, /*required=*/false),
  };
}

}  // namespace

std::optional<std::string> parse_tls_name(std::string_view text, std::string* why) {
  const std::string name(text);
  if (text.empty() || is_dns_name(text) || is_ip_literal(text)) return name;
  *why = quoted(text) + " is not a valid DNS name or IP address (labels of letters, digits and "
         "'-', no trailing dot; IPv6 without brackets)";
  return std::nullopt;
}

void read_proxy_tls(Errors& errors, const toml::node& node, const std::string& key, ProxyConfig& out) {
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    type_error(errors, node, key, "a table ([proxy.tls])");
    return;
  }
  ServerTlsConfig& tls = out.tls;
  tls.enabled = true;
  read_fields(errors, *table, key, server_tls_fields(), tls);
  if (!table->contains("certificates")) {
    errors.add(table->source().begin, key + ".certificates",
               "missing (a TLS listener needs a certificate: certificates = [{ cert = \"...\", "
               "key = \"...\" }])");
  }
  // Without client_ca no client certificate is asked for, so the header would never
  // be sent: surely client_ca was forgotten.
  if (!tls.client_subject_header.empty() && tls.client_ca.empty() &&
      !errors.any_at_or_below(key + ".client_ca")) {
    errors.add(table->get("client_subject_header")->source().begin, key + ".client_subject_header",
               "needs " + key + ".client_ca: without it no client presents a certificate");
  }
}

void read_upstream_tls(Errors& errors, const toml::node& node, const std::string& key,
                       UpstreamTlsConfig& out) {
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    type_error(errors, node, key, "a table");
    return;
  }
  read_fields(errors, *table, key, upstream_tls_fields(), out);
  // A client certificate is its file and its key: one alone is half a setting. Reported
  // at the one written, unless the other is wrong in its own right.
  const bool cert = !out.cert.empty(), private_key = !out.key.empty();
  if (cert && !private_key && !errors.any_at_or_below(key + ".key")) {
    errors.add(at(out.cert_pos), key + ".cert",
               "set without " + key + ".key: a client certificate needs its private key");
  } else if (private_key && !cert && !errors.any_at_or_below(key + ".cert")) {
    errors.add(at(out.key_pos), key + ".key",
               "set without " + key + ".cert: a private key needs its client certificate");
  }
}

void check_protocol_tls(Errors& errors, const toml::table& table, const std::string& key,
                        BackendProtocol protocol, bool tls) {
  // Not a protocol a node could speak on that connection: the first request would fail
  // (an HTTP/2 preface on a TLS port, a TLS handshake to a cleartext one).
  if (protocol_fits_tls(protocol, tls) || errors.any_at_or_below(key + ".tls")) return;
  errors.add(table.get("protocol")->source().begin, key + ".protocol",
             protocol == BackendProtocol::kH2 ? "h2 is HTTP/2 over TLS: add tls = true, or use h2c for cleartext"
                                              : "h2c is cleartext HTTP/2: use protocol = \"h2\" with tls = true");
}

void check_backend_tls(Errors& errors, const toml::table& table, const std::string& key,
                       const BackendConfig& backend) {
  // A name to verify on a plain connection: the user meant TLS and would silently not
  // get it.
  if (!backend.tls && !backend.tls_name.empty() && !errors.any_at_or_below(key + ".tls")) {
    errors.add(table.get("tls_name")->source().begin, key + ".tls_name",
               "set but " + key + ".tls is false: add tls = true to connect to this backend over TLS");
  }
  check_protocol_tls(errors, table, key, backend.protocol, backend.tls);
}

}  // namespace ringproxy::config_internal
