// config/tls.cc: the TLS keys of SPEC "TLS" ([proxy.tls], [upstream_tls], a backend's
// tls and tls_name, and its protocol, which must fit tls: SPEC "HTTP/2 and gRPC"), their
// defaults, positions and every error with its exact text.
// What the named files hold is tests/net/tls_files_test.cc's.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace ringproxy {

// For readable failures: gtest would print these as bytes.
void PrintTo(const SourcePos& pos, std::ostream* out) { *out << pos.line << ":" << pos.column; }
void PrintTo(const TlsCertificateConfig& c, std::ostream* out) {
  *out << "{" << c.cert << " at " << c.cert_pos.line << ":" << c.cert_pos.column << ", " << c.key << " at "
       << c.key_pos.line << ":" << c.key_pos.column << "}";
}

namespace {

constexpr std::string_view kOneBackend = R"(
[[backend]]
name = "a"
address = "127.0.0.1:9001"
)";

using Errors = std::vector<std::string>;

Errors errors_of(std::string_view text) {
  Errors out;
  for (const ConfigError& error : load_config_string(text, "t.toml").errors) out.push_back(error.to_string());
  return out;
}

Errors errors_with_backend(std::string_view text) { return errors_of(std::string(text) + std::string(kOneBackend)); }

Config loaded(std::string_view text) {
  const ConfigResult r = load_config_string(text, "t.toml");
  EXPECT_TRUE(r.ok()) << r.errors[0].to_string();
  return r.config;
}

// A valid [proxy.tls] head, for tests of the keys after it (line 2 is certificates).
constexpr std::string_view kTlsHead = "[proxy.tls]\ncertificates = [{ cert = \"c.pem\", key = \"c.key\" }]\n";

std::string tls_with(std::string_view lines) { return std::string(kTlsHead) + std::string(lines); }

// ---------------------------------------------------------------------------------
// Valid files

TEST(ConfigTls, OffByDefault) {
  const Config c = loaded(kOneBackend);
  EXPECT_EQ(c.proxy.tls, ServerTlsConfig{});
  EXPECT_FALSE(c.proxy.tls.enabled);
  EXPECT_EQ(c.upstream_tls, UpstreamTlsConfig{});
  EXPECT_EQ(c.upstream_tls.ca, "");
  EXPECT_TRUE(c.upstream_tls.verify);
  EXPECT_FALSE(c.backends[0].tls);
  EXPECT_EQ(c.backends[0].tls_name, "");
}

TEST(ConfigTls, ProxyTlsDefaults) {
  const Config c = loaded(std::string(kTlsHead) + std::string(kOneBackend));
  const ServerTlsConfig& tls = c.proxy.tls;
  EXPECT_TRUE(tls.enabled);
  ASSERT_EQ(tls.certificates.size(), 1u);
  EXPECT_EQ(tls.certificates[0], (TlsCertificateConfig{"c.pem", "c.key", {2, 26}, {2, 41}}));
  EXPECT_EQ(tls.min_version, TlsVersion::kTls12);
  EXPECT_EQ(tls.client_ca, "");
  EXPECT_EQ(tls.client_ca_pos, SourcePos{});
  EXPECT_EQ(tls.client_subject_header, "");
  EXPECT_EQ(tls.handshake_timeout_ms, 10000u);
  EXPECT_TRUE(tls.session_tickets);
}

TEST(ConfigTls, EveryKeySet) {
  const Config c = loaded(R"([proxy]
listen = "0.0.0.0:8443"

[proxy.tls]
certificates = [
  { cert = "/etc/ringproxy/site.pem", key = "/etc/ringproxy/site.key" },
  { key = "/etc/ringproxy/other.key", cert = "/etc/ringproxy/other.pem" },
]
min_version = "TLSv1.3"
client_ca = "/etc/ringproxy/clients.pem"
client_subject_header = "X-Client-Subject"
handshake_timeout_ms = 2500
session_tickets = false

[upstream_tls]
ca = "/etc/ringproxy/backends-ca.pem"
verify = false
cert = "/etc/ringproxy/proxy-client.pem"
key = "/etc/ringproxy/proxy-client.key"

[[backend]]
name = "a"
address = "10.0.0.1:9443"
tls = true
tls_name = "cache-a.internal"

[[backend]]
name = "b"
address = "10.0.0.2:9443"
tls = true

[[backend]]
name = "c"
address = "10.0.0.3:9001"
tls = false
)");
  const ServerTlsConfig& tls = c.proxy.tls;
  EXPECT_TRUE(tls.enabled);
  EXPECT_EQ(tls.certificates,
            (std::vector<TlsCertificateConfig>{
                {"/etc/ringproxy/site.pem", "/etc/ringproxy/site.key", {6, 12}, {6, 45}},
                {"/etc/ringproxy/other.pem", "/etc/ringproxy/other.key", {7, 46}, {7, 11}},
            }));
  EXPECT_EQ(tls.min_version, TlsVersion::kTls13);
  EXPECT_EQ(tls.client_ca, "/etc/ringproxy/clients.pem");
  EXPECT_EQ(tls.client_ca_pos, (SourcePos{10, 13}));
  EXPECT_EQ(tls.client_subject_header, "X-Client-Subject");
  EXPECT_EQ(tls.handshake_timeout_ms, 2500u);
  EXPECT_FALSE(tls.session_tickets);

  EXPECT_EQ(c.upstream_tls, (UpstreamTlsConfig{"/etc/ringproxy/backends-ca.pem", {16, 6}, false,
                                               "/etc/ringproxy/proxy-client.pem", "/etc/ringproxy/proxy-client.key",
                                               {18, 8}, {19, 7}}));

  ASSERT_EQ(c.backends.size(), 3u);
  EXPECT_TRUE(c.backends[0].tls);
  EXPECT_EQ(c.backends[0].tls_name, "cache-a.internal");
  EXPECT_TRUE(c.backends[1].tls);
  EXPECT_EQ(c.backends[1].tls_name, "");
  EXPECT_FALSE(c.backends[2].tls);
}

TEST(ConfigTls, CertificatesAsArrayOfTables) {
  const Config c = loaded(R"([proxy.tls]
min_version = "TLSv1.2"

[[proxy.tls.certificates]]
cert = "a.pem"
key = "a.key"

[[proxy.tls.certificates]]
cert = "b.pem"
key = "b.key"

[[backend]]
name = "a"
address = "127.0.0.1:9001"
)");
  EXPECT_EQ(c.proxy.tls.certificates, (std::vector<TlsCertificateConfig>{{"a.pem", "a.key", {5, 8}, {6, 7}},
                                                                         {"b.pem", "b.key", {9, 8}, {10, 7}}}));
  EXPECT_EQ(c.proxy.tls.min_version, TlsVersion::kTls12);
}

TEST(ConfigTls, ProxyTlsAsAnInlineTable) {
  const Config c = loaded(std::string("[proxy]\ntls = { certificates = [{ cert = \"a.pem\", key = \"a.key\" }] }\n") +
                          std::string(kOneBackend));
  EXPECT_TRUE(c.proxy.tls.enabled);
  EXPECT_EQ(c.proxy.tls.certificates, (std::vector<TlsCertificateConfig>{{"a.pem", "a.key", {2, 34}, {2, 49}}}));
}

// The TOML block of SPEC.md "TLS", verbatim, with a backend address added: what it
// writes is what the defaults are, but for the certificate and the listener's TLS.
constexpr std::string_view kSpecTlsExample = R"(
[proxy.tls]                   # present: proxy.listen speaks TLS; absent: plain HTTP
certificates = [              # PEM; the chain follows the leaf in cert
  { cert = "/etc/ringproxy/site.pem", key = "/etc/ringproxy/site.key" },
]                             # SNI picks the certificate whose names match; no SNI or no match: the first
min_version = "TLSv1.2"       # TLSv1.2 | TLSv1.3
client_ca = ""                # PEM bundle; set: clients must present a certificate it signed (mTLS)
handshake_timeout_ms = 10000
session_tickets = true        # ticket keys shared by all workers and rotated; resumption works across workers

[upstream_tls]                # defaults for TLS to backends
ca = ""                       # PEM bundle; "" = the system's trust store
verify = true                 # chain and name; false is logged as a warning at start
cert = ""                     # client certificate and key: mTLS to backends
key = ""

[[backend]]
name = "a"
address = "127.0.0.1:9001"
tls = false                   # true: requests and health checks to this node go over TLS
tls_name = ""                 # SNI and the name verified; "" = the host part of address
)";

TEST(ConfigTls, SpecExampleLoads) {
  const Config c = loaded(kSpecTlsExample);
  ServerTlsConfig expected;
  expected.enabled = true;
  expected.certificates = {{"/etc/ringproxy/site.pem", "/etc/ringproxy/site.key", {4, 12}, {4, 45}}};
  // Positions are kept for every file-naming key written, even as "".
  expected.client_ca_pos = {7, 13};
  EXPECT_EQ(c.proxy.tls, expected);
  EXPECT_EQ(c.upstream_tls, (UpstreamTlsConfig{"", {12, 6}, true, "", "", {14, 8}, {15, 7}}));
  EXPECT_FALSE(c.backends[0].tls);
  EXPECT_EQ(c.backends[0].tls_name, "");
}

TEST(ConfigTls, TlsNames) {
  for (const char* name : {"a", "cache-a.internal", "xn--bcher-kva.example", "A-1.b2.C", "10.0.0.1", "::1",
                           "2001:db8::1", "0a.example", "example.c0m"}) {
    SCOPED_TRACE(name);
    const std::string text =
        std::string("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\ntls = true\ntls_name = \"") + name +
        "\"\n";
    EXPECT_EQ(loaded(text).backends[0].tls_name, name);
  }
  // 63-character labels, 253 characters in all: the largest DNS name.
  const std::string label(63, 'a');
  const std::string longest = label + "." + label + "." + label + "." + std::string(61, 'b');
  ASSERT_EQ(longest.size(), 253u);
  EXPECT_EQ(loaded("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\ntls = true\ntls_name = \"" + longest +
                   "\"\n")
                .backends[0]
                .tls_name,
            longest);
}

TEST(ConfigBackendProtocol, Http1ByDefault) {
  EXPECT_EQ(loaded(kOneBackend).backends[0].protocol, BackendProtocol::kHttp1);
  EXPECT_EQ(BackendConfig{}.protocol, BackendProtocol::kHttp1);
}

TEST(ConfigBackendProtocol, EachValue) {
  const std::string head = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  EXPECT_EQ(loaded(head + "protocol = \"http1\"\n").backends[0].protocol, BackendProtocol::kHttp1);
  EXPECT_EQ(loaded(head + "tls = true\nprotocol = \"http1\"\n").backends[0].protocol, BackendProtocol::kHttp1);
  EXPECT_EQ(loaded(head + "protocol = \"h2c\"\n").backends[0].protocol, BackendProtocol::kH2c);
  EXPECT_EQ(loaded(head + "tls = false\nprotocol = \"h2c\"\n").backends[0].protocol, BackendProtocol::kH2c);
  const Config h2 = loaded(head + "protocol = \"h2\"\ntls = true\ntls_name = \"a.example\"\n");  // any order
  EXPECT_EQ(h2.backends[0].protocol, BackendProtocol::kH2);
  EXPECT_TRUE(h2.backends[0].tls);
  // A [[pool]]'s backends are read the same way.
  const Config pool = loaded(std::string(kOneBackend) +
                             "[[pool]]\nname = \"p\"\nbackends = [ { name = \"a\", address = \"127.0.0.1:9002\", "
                             "protocol = \"h2c\" } ]\n");
  EXPECT_EQ(pool.pools[0].backends[0].protocol, BackendProtocol::kH2c);
}

TEST(ConfigBackendProtocol, NamesAndWhatFitsTls) {
  for (const BackendProtocol p : {BackendProtocol::kHttp1, BackendProtocol::kH2c, BackendProtocol::kH2}) {
    std::string why;
    EXPECT_EQ(parse_backend_protocol(protocol_name(p), &why), p) << protocol_name(p);
  }
  EXPECT_EQ(protocol_name(BackendProtocol::kHttp1), "http1");
  EXPECT_EQ(protocol_name(BackendProtocol::kH2c), "h2c");
  EXPECT_EQ(protocol_name(BackendProtocol::kH2), "h2");
  for (const char* text : {"", "H2", "http2", "http/1.1", "h2 ", "grpc"}) {
    std::string why;
    EXPECT_EQ(parse_backend_protocol(text, &why), std::nullopt) << text;
    EXPECT_EQ(why, std::string("expected http1, h2c or h2, got \"") + text + "\"");
  }
  EXPECT_TRUE(protocol_fits_tls(BackendProtocol::kHttp1, false));
  EXPECT_TRUE(protocol_fits_tls(BackendProtocol::kHttp1, true));
  EXPECT_TRUE(protocol_fits_tls(BackendProtocol::kH2c, false));
  EXPECT_FALSE(protocol_fits_tls(BackendProtocol::kH2c, true));
  EXPECT_FALSE(protocol_fits_tls(BackendProtocol::kH2, false));
  EXPECT_TRUE(protocol_fits_tls(BackendProtocol::kH2, true));
}

// ---------------------------------------------------------------------------------
// Errors

TEST(ConfigTlsErrors, ProxyTlsNeedsACertificate) {
  EXPECT_EQ(errors_with_backend("[proxy.tls]\n"),
            (Errors{"t.toml:1:1: proxy.tls.certificates: missing (a TLS listener needs a certificate: "
                    "certificates = [{ cert = \"...\", key = \"...\" }])"}));
  EXPECT_EQ(errors_with_backend("[proxy.tls]\nmin_version = \"TLSv1.3\"\n"),
            (Errors{"t.toml:1:1: proxy.tls.certificates: missing (a TLS listener needs a certificate: "
                    "certificates = [{ cert = \"...\", key = \"...\" }])"}));
  EXPECT_EQ(errors_with_backend("[proxy]\ntls = {}\n"),
            (Errors{"t.toml:2:7: proxy.tls.certificates: missing (a TLS listener needs a certificate: "
                    "certificates = [{ cert = \"...\", key = \"...\" }])"}));
  EXPECT_EQ(errors_with_backend("[proxy.tls]\ncertificates = []\n"),
            (Errors{"t.toml:2:16: proxy.tls.certificates: must not be empty: a TLS listener needs a certificate "
                    "({ cert = \"...\", key = \"...\" })"}));
}

TEST(ConfigTlsErrors, WrongTypes) {
  EXPECT_EQ(errors_with_backend("[proxy]\ntls = true\n"),
            (Errors{"t.toml:2:7: proxy.tls: expected a table ([proxy.tls]), got a boolean"}));
  EXPECT_EQ(errors_with_backend("[proxy.tls]\ncertificates = \"site.pem\"\n"),
            (Errors{"t.toml:2:16: proxy.tls.certificates: expected an array of tables ([{ cert = \"...\", "
                    "key = \"...\" }]), got a string"}));
  EXPECT_EQ(errors_with_backend("[proxy.tls.certificates]\ncert = \"a.pem\"\nkey = \"a.key\"\n"),
            (Errors{"t.toml:1:1: proxy.tls.certificates: expected an array of tables ([{ cert = \"...\", "
                    "key = \"...\" }]), got a table"}));
  EXPECT_EQ(errors_with_backend("[proxy.tls]\ncertificates = [\"site.pem\", { cert = \"a\", key = \"b\" }]\n"),
            (Errors{"t.toml:2:17: proxy.tls.certificates[0]: expected a table ({ cert = \"...\", key = \"...\" }), "
                    "got a string"}));
  EXPECT_EQ(errors_with_backend("[proxy.tls]\ncertificates = [{ cert = 1, key = [\"k\"] }]\n"),
            (Errors{"t.toml:2:26: proxy.tls.certificates[0].cert: expected a string, got an integer",
                    "t.toml:2:35: proxy.tls.certificates[0].key: expected a string, got an array"}));
  EXPECT_EQ(errors_with_backend(tls_with("min_version = 1.3\n")),
            (Errors{"t.toml:3:15: proxy.tls.min_version: expected a string, got a float"}));
  EXPECT_EQ(errors_with_backend(tls_with("client_ca = false\n")),
            (Errors{"t.toml:3:13: proxy.tls.client_ca: expected a string, got a boolean"}));
  EXPECT_EQ(errors_with_backend(tls_with("handshake_timeout_ms = \"10s\"\n")),
            (Errors{"t.toml:3:24: proxy.tls.handshake_timeout_ms: expected an integer, got a string"}));
  EXPECT_EQ(errors_with_backend(tls_with("session_tickets = \"yes\"\n")),
            (Errors{"t.toml:3:19: proxy.tls.session_tickets: expected a boolean, got a string"}));
  EXPECT_EQ(errors_with_backend(tls_with("session_tickets = 1\n")),
            (Errors{"t.toml:3:19: proxy.tls.session_tickets: expected a boolean, got an integer"}));
}

TEST(ConfigTlsErrors, CertificateEntries) {
  EXPECT_EQ(errors_with_backend(R"([proxy.tls]
certificates = [
  { cert = "a.pem", key = "a.key" },
  { cert = "b.pem" },
  { key = "c.key" },
  {},
  { cert = "", key = "" },
  { cert = "e.pem", key = "e.key", crt = "x" },
]
)"),
            (Errors{"t.toml:4:3: proxy.tls.certificates[1].key: missing (the PEM file of the certificate's private key)",
                    "t.toml:5:3: proxy.tls.certificates[2].cert: missing (the PEM file of the certificate and its chain)",
                    "t.toml:6:3: proxy.tls.certificates[3].cert: missing (the PEM file of the certificate and its chain)",
                    "t.toml:6:3: proxy.tls.certificates[3].key: missing (the PEM file of the certificate's private key)",
                    "t.toml:7:12: proxy.tls.certificates[4].cert: must not be empty (the path of a PEM file)",
                    "t.toml:7:22: proxy.tls.certificates[4].key: must not be empty (the path of a PEM file)",
                    "t.toml:8:36: proxy.tls.certificates[5].crt: unknown key (did you mean 'cert'?)"}));
}

TEST(ConfigTlsErrors, CertificateEntriesAsArrayOfTables) {
  EXPECT_EQ(errors_with_backend(R"([[proxy.tls.certificates]]
cert = "a.pem"
key = "a.key"

[[proxy.tls.certificates]]
cert = "b.pem"
kye = "b.key"
)"),
            (Errors{"t.toml:5:1: proxy.tls.certificates[1].key: missing (the PEM file of the certificate's private key)",
                    "t.toml:7:1: proxy.tls.certificates[1].kye: unknown key (did you mean 'key'?)"}));
}

TEST(ConfigTlsErrors, UnknownKeys) {
  EXPECT_EQ(errors_with_backend(tls_with("min_versoin = \"TLSv1.3\"\n")),
            (Errors{"t.toml:3:1: proxy.tls.min_versoin: unknown key (did you mean 'min_version'?)"}));
  EXPECT_EQ(errors_with_backend("[proxy.tls]\ncertificate = [{ cert = \"a\", key = \"b\" }]\n"),
            (Errors{"t.toml:1:1: proxy.tls.certificates: missing (a TLS listener needs a certificate: "
                    "certificates = [{ cert = \"...\", key = \"...\" }])",
                    "t.toml:2:1: proxy.tls.certificate: unknown key (did you mean 'certificates'?)"}));
  EXPECT_EQ(errors_with_backend(tls_with("ciphers = \"HIGH\"\n")),
            (Errors{"t.toml:3:1: proxy.tls.ciphers: unknown key"}));
  EXPECT_EQ(errors_with_backend("[upstream_tls]\nverfiy = false\n"),
            (Errors{"t.toml:2:1: upstream_tls.verfiy: unknown key (did you mean 'verify'?)"}));
  EXPECT_EQ(errors_with_backend("[upstream_tsl]\nverify = false\n"),
            (Errors{"t.toml:1:2: upstream_tsl: unknown section (did you mean 'upstream_tls'?)"}));
  EXPECT_EQ(errors_of("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\ntsl = true\n"),
            (Errors{"t.toml:4:1: backend[0].tsl: unknown key (did you mean 'tls'?)"}));
}

TEST(ConfigTlsErrors, MinVersion) {
  for (const char* version : {"TLSv1.1", "TLSv1.0", "tlsv1.3", "1.3", "TLSv1.2 "}) {
    SCOPED_TRACE(version);
    EXPECT_EQ(errors_with_backend(tls_with(std::string("min_version = \"") + version + "\"\n")),
              (Errors{"t.toml:3:15: proxy.tls.min_version: expected TLSv1.2 or TLSv1.3, got \"" +
                      std::string(version) + "\""}));
  }
}

TEST(ConfigTlsErrors, HandshakeTimeoutRange) {
  EXPECT_EQ(errors_with_backend(tls_with("handshake_timeout_ms = 0\n")),
            (Errors{"t.toml:3:24: proxy.tls.handshake_timeout_ms: must be between 1 and 3600000, got 0"}));
  EXPECT_EQ(errors_with_backend(tls_with("handshake_timeout_ms = 3600001\n")),
            (Errors{"t.toml:3:24: proxy.tls.handshake_timeout_ms: must be between 1 and 3600000, got 3600001"}));
  EXPECT_EQ(loaded(tls_with("handshake_timeout_ms = 1\n") + std::string(kOneBackend)).proxy.tls.handshake_timeout_ms,
            1u);
  EXPECT_EQ(
      loaded(tls_with("handshake_timeout_ms = 3600000\n") + std::string(kOneBackend)).proxy.tls.handshake_timeout_ms,
      3600000u);
}

TEST(ConfigTlsErrors, ClientSubjectHeader) {
  const std::string ca = "client_ca = \"ca.pem\"\n";
  EXPECT_EQ(errors_with_backend(tls_with(ca + "client_subject_header = \"X Client\"\n")),
            (Errors{"t.toml:4:25: proxy.tls.client_subject_header: \"X Client\" is not a valid header name (letters, "
                    "digits and !#$%&'*+-.^_`|~)"}));
  EXPECT_EQ(errors_with_backend(tls_with(ca + "client_subject_header = \"X-Subject:\"\n")),
            (Errors{"t.toml:4:25: proxy.tls.client_subject_header: \"X-Subject:\" is not a valid header name "
                    "(letters, digits and !#$%&'*+-.^_`|~)"}));
  for (const char* managed : {"Content-Length", "host", "Transfer-Encoding", "X-Forwarded-For", "VIA"}) {
    SCOPED_TRACE(managed);
    EXPECT_EQ(errors_with_backend(tls_with(ca + "client_subject_header = \"" + managed + "\"\n")),
              (Errors{"t.toml:4:25: proxy.tls.client_subject_header: \"" + std::string(managed) +
                      "\" is a header the proxy manages itself; choose another name, such as \"X-Client-Subject\""}));
  }
  // "" = not sent, with or without client_ca.
  EXPECT_EQ(errors_with_backend(tls_with("client_subject_header = \"\"\n")), Errors{});
  // Without client_ca no client certificate is asked for: the header could never be sent.
  EXPECT_EQ(errors_with_backend(tls_with("client_subject_header = \"X-Client-Subject\"\n")),
            (Errors{"t.toml:3:25: proxy.tls.client_subject_header: needs proxy.tls.client_ca: without it no client "
                    "presents a certificate"}));
  EXPECT_EQ(errors_with_backend(tls_with("client_ca = \"\"\nclient_subject_header = \"X-Client-Subject\"\n")),
            (Errors{"t.toml:4:25: proxy.tls.client_subject_header: needs proxy.tls.client_ca: without it no client "
                    "presents a certificate"}));
  // A client_ca that is itself wrong is reported as itself only.
  EXPECT_EQ(errors_with_backend(tls_with("client_ca = 1\nclient_subject_header = \"X-Client-Subject\"\n")),
            (Errors{"t.toml:3:13: proxy.tls.client_ca: expected a string, got an integer"}));
}

TEST(ConfigTlsErrors, NulInAPath) {
  EXPECT_EQ(errors_with_backend("[proxy.tls]\ncertificates = [{ cert = \"a\\u0000b\", key = \"k\" }]\n"),
            (Errors{"t.toml:2:26: proxy.tls.certificates[0].cert: must not contain a NUL character, got \"a\\x00b\""}));
  EXPECT_EQ(errors_with_backend("[upstream_tls]\nca = \"\\u0000\"\n"),
            (Errors{"t.toml:2:6: upstream_tls.ca: must not contain a NUL character, got \"\\x00\""}));
}

TEST(ConfigTlsErrors, UpstreamClientCertificateNeedsBothFiles) {
  EXPECT_EQ(errors_with_backend("[upstream_tls]\ncert = \"client.pem\"\n"),
            (Errors{"t.toml:2:8: upstream_tls.cert: set without upstream_tls.key: a client certificate needs its "
                    "private key"}));
  EXPECT_EQ(errors_with_backend("[upstream_tls]\ncert = \"client.pem\"\nkey = \"\"\n"),
            (Errors{"t.toml:2:8: upstream_tls.cert: set without upstream_tls.key: a client certificate needs its "
                    "private key"}));
  EXPECT_EQ(errors_with_backend("[upstream_tls]\nkey = \"client.key\"\n"),
            (Errors{"t.toml:2:7: upstream_tls.key: set without upstream_tls.cert: a private key needs its client "
                    "certificate"}));
  // The other one wrong in its own right: reported as itself only.
  EXPECT_EQ(errors_with_backend("[upstream_tls]\ncert = \"client.pem\"\nkey = 7\n"),
            (Errors{"t.toml:3:7: upstream_tls.key: expected a string, got an integer"}));
  EXPECT_EQ(errors_with_backend("[upstream_tls]\ncert = \"\"\nkey = \"\"\nca = \"\"\n"), Errors{});
}

TEST(ConfigTlsErrors, UpstreamTlsSectionTypes) {
  EXPECT_EQ(errors_with_backend("upstream_tls = 1\n"),
            (Errors{"t.toml:1:16: upstream_tls: expected a table, got an integer"}));
  EXPECT_EQ(errors_with_backend("[[upstream_tls]]\n"),
            (Errors{"t.toml:1:1: upstream_tls: expected a table, got an array"}));
  EXPECT_EQ(errors_with_backend("[upstream_tls]\nverify = \"false\"\n"),
            (Errors{"t.toml:2:10: upstream_tls.verify: expected a boolean, got a string"}));
}

TEST(ConfigTlsErrors, BackendTls) {
  const std::string head = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  EXPECT_EQ(errors_of(head + "tls = \"true\"\n"),
            (Errors{"t.toml:4:7: backend[0].tls: expected a boolean, got a string"}));
  EXPECT_EQ(errors_of(head + "tls = true\ntls_name = 1\n"),
            (Errors{"t.toml:5:12: backend[0].tls_name: expected a string, got an integer"}));
  // A name to verify, but a plain connection: surely tls = true was forgotten.
  EXPECT_EQ(errors_of(head + "tls_name = \"cache-a.internal\"\n"),
            (Errors{"t.toml:4:12: backend[0].tls_name: set but backend[0].tls is false: add tls = true to connect "
                    "to this backend over TLS"}));
  EXPECT_EQ(errors_of(head + "tls = false\ntls_name = \"cache-a.internal\"\n"),
            (Errors{"t.toml:5:12: backend[0].tls_name: set but backend[0].tls is false: add tls = true to connect "
                    "to this backend over TLS"}));
  // tls itself wrong: that error alone.
  EXPECT_EQ(errors_of(head + "tls = 1\ntls_name = \"cache-a.internal\"\n"),
            (Errors{"t.toml:4:7: backend[0].tls: expected a boolean, got an integer"}));
}

TEST(ConfigBackendProtocolErrors, AtTheProtocolKey) {
  const std::string head = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
  EXPECT_EQ(errors_of(head + "protocol = \"h3\"\n"),
            (Errors{"t.toml:4:12: backend[0].protocol: expected http1, h2c or h2, got \"h3\""}));
  EXPECT_EQ(errors_of(head + "protocol = \"HTTP1\"\n"),
            (Errors{"t.toml:4:12: backend[0].protocol: expected http1, h2c or h2, got \"HTTP1\""}));
  EXPECT_EQ(errors_of(head + "protocol = 2\n"),
            (Errors{"t.toml:4:12: backend[0].protocol: expected a string, got an integer"}));
  // h2 is HTTP/2 over TLS: on a plain connection it cannot be negotiated.
  EXPECT_EQ(errors_of(head + "protocol = \"h2\"\n"),
            (Errors{"t.toml:4:12: backend[0].protocol: h2 is HTTP/2 over TLS: add tls = true, or use h2c for "
                    "cleartext"}));
  EXPECT_EQ(errors_of(head + "tls = false\nprotocol = \"h2\"\n"),
            (Errors{"t.toml:5:12: backend[0].protocol: h2 is HTTP/2 over TLS: add tls = true, or use h2c for "
                    "cleartext"}));
  // h2c is the cleartext form: with tls = true the user meant h2.
  EXPECT_EQ(errors_of(head + "tls = true\nprotocol = \"h2c\"\n"),
            (Errors{"t.toml:5:12: backend[0].protocol: h2c is cleartext HTTP/2: use protocol = \"h2\" with tls = "
                    "true"}));
  EXPECT_EQ(errors_of(head + "protocol = \"h2c\"\ntls = true\n"),
            (Errors{"t.toml:4:12: backend[0].protocol: h2c is cleartext HTTP/2: use protocol = \"h2\" with tls = "
                    "true"}));
  // tls itself wrong: that error alone.
  EXPECT_EQ(errors_of(head + "tls = \"yes\"\nprotocol = \"h2\"\n"),
            (Errors{"t.toml:4:7: backend[0].tls: expected a boolean, got a string"}));
  EXPECT_EQ(errors_of(head + "protcol = \"h2c\"\n"),
            (Errors{"t.toml:4:1: backend[0].protcol: unknown key (did you mean 'protocol'?)"}));
  // In a [[pool]]'s backends: that key, at the value.
  EXPECT_EQ(errors_of(std::string(kOneBackend) +
                      "[[pool]]\nname = \"p\"\nbackends = [ { name = \"a\", address = \"127.0.0.1:9002\", "
                      "protocol = \"h2\" } ]\n"),
            (Errors{"t.toml:7:67: pool[0].backends[0].protocol: h2 is HTTP/2 over TLS: add tls = true, or use h2c "
                    "for cleartext"}));
}

TEST(ConfigTlsErrors, TlsNames) {
  const std::string head = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\ntls = true\ntls_name = ";
  const std::string label(63, 'a');
  for (const std::string& name :
       {std::string("-a.example"), std::string("a-.example"), std::string("a..example"), std::string("example."),
        std::string(".example"), std::string("cache_a.internal"), std::string("*.example.com"), std::string("[::1]"),
        std::string("10.0.0.256"), std::string("1.2.3"), std::string("a b"), std::string("cache-a:443"),
        label + "a.example", label + "." + label + "." + label + "." + std::string(62, 'b')}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(errors_of(head + "\"" + name + "\"\n"),
              (Errors{"t.toml:5:12: backend[0].tls_name: \"" + name +
                      "\" is not a valid DNS name or IP address (labels of letters, digits and '-', no trailing dot; "
                      "IPv6 without brackets)"}));
  }
}

TEST(ConfigTlsErrors, EveryErrorInFileOrder) {
  EXPECT_EQ(errors_of(R"([upstream_tls]
cert = "client.pem"

[proxy.tls]
certificates = [{ cert = "" , key = "k" }]
min_version = "SSLv3"
handshake_timeout_ms = 0

[[backend]]
name = "a"
address = "127.0.0.1:9001"
tls_name = "-bad"
)"),
            (Errors{"t.toml:2:8: upstream_tls.cert: set without upstream_tls.key: a client certificate needs its "
                    "private key",
                    "t.toml:5:26: proxy.tls.certificates[0].cert: must not be empty (the path of a PEM file)",
                    "t.toml:6:15: proxy.tls.min_version: expected TLSv1.2 or TLSv1.3, got \"SSLv3\"",
                    "t.toml:7:24: proxy.tls.handshake_timeout_ms: must be between 1 and 3600000, got 0",
                    "t.toml:12:12: backend[0].tls_name: \"-bad\" is not a valid DNS name or IP address (labels of "
                    "letters, digits and '-', no trailing dot; IPv6 without brackets)"}));
}

}  // namespace
}  // namespace ringproxy
