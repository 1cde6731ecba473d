// The DNS keys of SPEC "Backends by name (DNS)": [dns], [[discover]] and backend
// addresses that are DNS names, read and checked with their positions.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/address.h"
#include "config/config.h"

namespace ringproxy {
namespace {

using Errors = std::vector<std::string>;

constexpr std::string_view kOneBackend = R"(
[[backend]]
name = "a"
address = "127.0.0.1:9001"
)";

Errors errors_of(std::string_view text) {
  Errors out;
  for (const ConfigError& error : load_config_string(text, "t.toml").errors) out.push_back(error.to_string());
  return out;
}

Errors errors_with_backend(std::string_view text) { return errors_of(std::string(text) + std::string(kOneBackend)); }

TEST(DnsNames, HostNamesAndSrvNames) {
  EXPECT_TRUE(is_dns_name("cache-a.svc.cluster.local"));
  EXPECT_TRUE(is_dns_name("a"));
  EXPECT_FALSE(is_dns_name(""));
  EXPECT_FALSE(is_dns_name("a..b"));
  EXPECT_FALSE(is_dns_name("-a.b"));
  EXPECT_FALSE(is_dns_name("a.b."));        // no trailing dot
  EXPECT_FALSE(is_dns_name("10.0.0.256"));  // a mistyped IPv4 address, not a name
  EXPECT_FALSE(is_dns_name("_http._tcp.x"));
  EXPECT_FALSE(is_dns_name(std::string(64, 'a') + ".b"));  // a label over 63
  EXPECT_TRUE(is_srv_name("_http._tcp.cache.service.consul"));
  EXPECT_TRUE(is_srv_name("cache.service.consul"));
  EXPECT_FALSE(is_srv_name("_.x"));
}

TEST(DnsConfig, BackendAddressesMayBeNames) {
  const ConfigResult r = load_config_string(
      "[[backend]]\nname = \"a\"\naddress = \"Cache-A.svc.cluster.local:8080\"\n"
      "[[backend]]\nname = \"b\"\naddress = \"10.0.0.2:8080\"\n",
      "t.toml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  const Address& a = r.config.backends[0].address;
  EXPECT_TRUE(a.is_name);
  EXPECT_EQ(a.host, "cache-a.svc.cluster.local");  // lower case: one name, one spelling
  EXPECT_EQ(a.port, 8080);
  EXPECT_EQ(a.to_string(), "cache-a.svc.cluster.local:8080");
  EXPECT_FALSE(r.config.backends[1].address.is_name);
}

// Names are asked as written (no search list): a one-label name is valid but warned
// about, at its key, for backends, [[discover]] and a pool's discover; full names,
// localhost and IP addresses are not.
TEST(DnsConfig, ASingleLabelNameIsWarnedAbout) {
  const ConfigResult r = load_config_string(
      "[[backend]]\nname = \"a\"\naddress = \"cache:8080\"\n"
      "[[backend]]\nname = \"b\"\naddress = \"cache.ns.svc.cluster.local:8080\"\n"
      "[[backend]]\nname = \"c\"\naddress = \"localhost:8081\"\n"
      "[[backend]]\nname = \"d\"\naddress = \"10.0.0.4:8081\"\n"
      "[[discover]]\nname = \"pods\"\ntype = \"a\"\nport = 80\n"
      "[[discover]]\nname = \"_http._tcp.svc.test\"\ntype = \"srv\"\n"
      "[[pool]]\nname = \"p\"\nbackends = [ { name = \"e\", address = \"edge:80\" } ]\n"
      "[[pool.discover]]\nname = \"solo\"\ntype = \"srv\"\n"
      "[[route]]\npath_prefix = \"/p/\"\npool = \"p\"\n",
      "t.toml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  Errors got;
  for (const ConfigError& w : r.warnings) got.push_back(w.to_string());
  const std::string why = " is a single label: it is asked as written, without /etc/resolv.conf's search list; "
                          "give the full name (\"cache.NAMESPACE.svc.cluster.local\")";
  EXPECT_EQ(got, (Errors{"t.toml:3:11: backend[0].address: \"cache\"" + why,
                         "t.toml:14:8: discover[0].name: \"pods\"" + why,
                         "t.toml:22:38: pool[0].backends[0].address: \"edge\"" + why,
                         "t.toml:24:8: pool[0].discover[0].name: \"solo\"" + why}));
}

TEST(DnsConfig, ListenersNeverTakeNames) {
  EXPECT_EQ(errors_with_backend("[proxy]\nlisten = \"proxy.example:80\"\n"),
            (Errors{"t.toml:2:10: proxy.listen: invalid address \"proxy.example:80\": hostnames are not resolved; "
                    "use an IP address"}));
}

TEST(DnsConfig, AnAddressThatIsNeitherIsNamed) {
  EXPECT_EQ(errors_of("[[backend]]\nname = \"a\"\naddress = \"cache_a:80\"\n"),
            (Errors{"t.toml:3:11: backend[0].address: invalid address \"cache_a:80\": not an IP address nor a DNS "
                    "name"}));
}

TEST(DnsConfig, TheDnsSectionAndItsDefaults) {
  const ConfigResult defaults = load_config_string(std::string(kOneBackend), "t.toml");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults.config.dns, DnsConfig{});
  EXPECT_EQ(defaults.config.dns.hold_ms, 600000u);
  const ConfigResult r = load_config_string(
      "[dns]\nresolvers = [\"127.0.0.1:8600\", \"[::1]:53\"]\ntimeout_ms = 500\nmin_ttl_ms = 2000\n"
      "max_ttl_ms = 60000\nhold_ms = 0\n" +
          std::string(kOneBackend),
      "t.toml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  ASSERT_EQ(r.config.dns.resolvers.size(), 2u);
  EXPECT_EQ(r.config.dns.resolvers[0].to_string(), "127.0.0.1:8600");
  EXPECT_EQ(r.config.dns.resolvers[1].to_string(), "[::1]:53");
  EXPECT_EQ(r.config.dns.timeout_ms, 500u);
  EXPECT_EQ(r.config.dns.min_ttl_ms, 2000u);
  EXPECT_EQ(r.config.dns.max_ttl_ms, 60000u);
  EXPECT_EQ(r.config.dns.hold_ms, 0u);
}

TEST(DnsConfig, DnsErrorsAtTheirKeys) {
  EXPECT_EQ(errors_with_backend("[dns]\nresolvers = [\"consul:8600\"]\n"),
            (Errors{"t.toml:2:14: dns.resolvers[0]: invalid resolver \"consul:8600\": hostnames are not resolved; "
                    "use an IP address"}));
  EXPECT_EQ(errors_with_backend("[dns]\nmin_ttl_ms = 5000\nmax_ttl_ms = 1000\n"),
            (Errors{"t.toml:2:14: dns.min_ttl_ms: must be at most dns.max_ttl_ms (1000), got 5000"}));
  EXPECT_EQ(errors_with_backend("[dns]\ntimeout_ms = 0\n"),
            (Errors{"t.toml:2:14: dns.timeout_ms: must be between 1 and 3600000, got 0"}));
  EXPECT_EQ(errors_with_backend("[dns]\nhold = 5\n"),
            (Errors{"t.toml:2:1: dns.hold: unknown key"}));
}

TEST(DnsConfig, DiscoverSources) {
  const ConfigResult r = load_config_string(
      "[[discover]]\nname = \"_http._tcp.Cache.service.consul\"\ntype = \"srv\"\n"
      "[[discover]]\nname = \"cache.default.svc.cluster.local\"\ntype = \"a\"\nport = 6081\nweight = 2\n"
      "tls = true\ntls_name = \"cache.internal\"\n",
      "t.toml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();  // sources alone are something to serve
  ASSERT_EQ(r.config.discover.size(), 2u);
  EXPECT_EQ(r.config.discover[0].name, "_http._tcp.cache.service.consul");
  EXPECT_EQ(r.config.discover[0].type, DiscoverConfig::Type::kSrv);
  EXPECT_EQ(r.config.discover[0].port, 0);
  EXPECT_EQ(r.config.discover[1].type, DiscoverConfig::Type::kA);
  EXPECT_EQ(r.config.discover[1].port, 6081);
  EXPECT_EQ(r.config.discover[1].weight, 2u);
  EXPECT_TRUE(r.config.discover[1].tls);
  EXPECT_EQ(r.config.discover[1].tls_name, "cache.internal");
  EXPECT_EQ(r.config.discover[0].protocol, BackendProtocol::kHttp1);  // the default, as a [[backend]]'s
  EXPECT_EQ(r.config.discover[1].protocol, BackendProtocol::kHttp1);
}

TEST(DnsConfig, DiscoverProtocol) {
  // As for [[backend]]: every node the source finds is spoken to so.
  const ConfigResult r = load_config_string(
      "[[discover]]\nname = \"_grpc._tcp.api.test\"\ntype = \"srv\"\nprotocol = \"h2c\"\n"
      "[[discover]]\nname = \"api.test\"\ntype = \"a\"\nport = 443\ntls = true\nprotocol = \"h2\"\n"
      "[[pool]]\nname = \"p\"\ndiscover = [ { name = \"p.test\", type = \"a\", port = 80, protocol = \"http1\" } ]\n",
      "t.toml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  EXPECT_EQ(r.config.discover[0].protocol, BackendProtocol::kH2c);
  EXPECT_EQ(r.config.discover[1].protocol, BackendProtocol::kH2);
  EXPECT_EQ(r.config.pools[0].discover[0].protocol, BackendProtocol::kHttp1);
}

TEST(DnsConfig, DiscoverProtocolErrorsAtTheirKeys) {
  const std::string head = "[[discover]]\nname = \"x.test\"\ntype = \"a\"\nport = 1\n";
  EXPECT_EQ(errors_with_backend(head + "protocol = \"h3\"\n"),
            (Errors{"t.toml:5:12: discover[0].protocol: expected http1, h2c or h2, got \"h3\""}));
  EXPECT_EQ(errors_with_backend(head + "protocol = \"h2\"\n"),
            (Errors{"t.toml:5:12: discover[0].protocol: h2 is HTTP/2 over TLS: add tls = true, or use h2c for "
                    "cleartext"}));
  EXPECT_EQ(errors_with_backend(head + "tls = true\nprotocol = \"h2c\"\n"),
            (Errors{"t.toml:6:12: discover[0].protocol: h2c is cleartext HTTP/2: use protocol = \"h2\" with tls = "
                    "true"}));
  EXPECT_EQ(errors_with_backend(head + "tls = 1\nprotocol = \"h2\"\n"),
            (Errors{"t.toml:5:7: discover[0].tls: expected a boolean, got an integer"}));
  EXPECT_EQ(errors_with_backend("[[pool]]\nname = \"p\"\n"
                                "discover = [ { name = \"p.test\", type = \"a\", port = 80, protocol = \"h2\" } ]\n"),
            (Errors{"t.toml:3:67: pool[0].discover[0].protocol: h2 is HTTP/2 over TLS: add tls = true, or use h2c "
                    "for cleartext"}));
}

TEST(DnsConfig, DiscoverErrorsAtTheirKeys) {
  EXPECT_EQ(errors_with_backend("[[discover]]\nname = \"x.test\"\ntype = \"a\"\n"),
            (Errors{"t.toml:1:1: discover[0].port: type a needs a port (1..65535): the records give only addresses"}));
  EXPECT_EQ(errors_with_backend("[[discover]]\nname = \"_x._tcp.test\"\ntype = \"srv\"\nport = 80\n"),
            (Errors{"t.toml:4:8: discover[0].port: type srv takes each record's port: leave port out (or 0)"}));
  EXPECT_EQ(errors_with_backend("[[discover]]\nname = \"_x._tcp.test\"\ntype = \"srv\"\nweight = 3\n"),
            (Errors{"t.toml:4:10: discover[0].weight: type srv takes each record's weight: leave weight out"}));
  EXPECT_EQ(errors_with_backend("[[discover]]\nname = \"x.test\"\ntype = \"aaaa\"\n"),
            (Errors{"t.toml:3:8: discover[0].type: expected srv or a, got \"aaaa\""}));
  EXPECT_EQ(errors_with_backend("[[discover]]\nname = \"x test\"\ntype = \"a\"\nport = 1\n"),
            (Errors{"t.toml:2:8: discover[0].name: \"x test\" is not a DNS name (labels of letters, digits and "
                    "'-', an SRV name's may start with '_'; no trailing dot)"}));
  EXPECT_EQ(errors_with_backend("[[discover]]\ntype = \"a\"\nport = 1\ntls_name = \"x\"\n"),
            (Errors{"t.toml:1:1: discover[0].name: missing (the DNS name to discover nodes by)",
                    "t.toml:4:12: discover[0].tls_name: needs tls = true"}));
  EXPECT_EQ(errors_with_backend("[[discover]]\nname = \"x.test\"\nport = 1\n"),
            (Errors{"t.toml:1:1: discover[0].type: missing (srv or a)"}));
  EXPECT_EQ(errors_with_backend("[[discover]]\nname = \"x.test\"\ntype = \"a\"\nport = 80\n"
                                "[[discover]]\nname = \"X.test\"\ntype = \"a\"\nport = 8080\n"),
            (Errors{"t.toml:6:8: discover[1].name: \"x.test\" is already discover[0]: one source per name"}));
}

}  // namespace
}  // namespace ringproxy
