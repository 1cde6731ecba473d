// proxy/gossip_agent.h's encoding of a shared node ("backend/NAME" -> "ADDRESS WEIGHT
// [tls[=NAME]] [h2c|h2]"), without a socket: what each kind of node is written as, that
// it reads back the same, that values written before protocols (or before TLS) still
// read as they did, and that what no instance writes is refused.
#include "proxy/gossip_agent.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace ringproxy {
namespace {

BackendConfig node(std::string address, uint32_t weight, bool tls = false, std::string tls_name = "",
                   BackendProtocol protocol = BackendProtocol::kHttp1) {
  std::string why;
  auto a = parse_address(address, &why, false, true);
  EXPECT_TRUE(a) << address << ": " << why;
  return {"n", a.value_or(Address{}), weight, tls, std::move(tls_name), protocol};
}

TEST(GossipBackendValue, EachKindOfNodeRoundTrips) {
  const struct {
    BackendConfig backend;
    std::string value;
  } cases[] = {
      {node("127.0.0.1:9001", 3), "127.0.0.1:9001 3"},
      {node("[::1]:9001", 0), "[::1]:9001 0"},
      {node("cache-a.test:6081", 1), "cache-a.test:6081 1"},
      {node("127.0.0.1:9001", 1, true), "127.0.0.1:9001 1 tls"},
      {node("127.0.0.1:9001", 1, true, "a.example"), "127.0.0.1:9001 1 tls=a.example"},
      {node("127.0.0.1:9001", 2, false, "", BackendProtocol::kH2c), "127.0.0.1:9001 2 h2c"},
      {node("127.0.0.1:9001", 1, true, "", BackendProtocol::kH2), "127.0.0.1:9001 1 tls h2"},
      {node("api.test:443", 5, true, "api.internal", BackendProtocol::kH2), "api.test:443 5 tls=api.internal h2"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.value);
    EXPECT_EQ(encode_backend(c.backend), c.value);
    EXPECT_EQ(decode_backend("n", c.value), c.backend);
  }
}

TEST(GossipBackendValue, ValuesWithoutAProtocolAreHttp1) {
  // What every instance wrote before protocols: an http1 node's value is unchanged, so
  // old and new instances share http1 nodes both ways.
  for (const char* value : {"10.0.0.1:80 2", "10.0.0.1:80 2 tls", "10.0.0.1:80 2 tls=cache.internal"}) {
    SCOPED_TRACE(value);
    const std::optional<BackendConfig> b = decode_backend("n", value);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->protocol, BackendProtocol::kHttp1);
    EXPECT_EQ(encode_backend(*b), value);
  }
  EXPECT_EQ(decode_backend("n", "10.0.0.1:80 2 tls=cache.internal")->tls_name, "cache.internal");
  // Written out, http1 reads the same (no instance writes it).
  EXPECT_EQ(decode_backend("n", "10.0.0.1:80 2 http1"), decode_backend("n", "10.0.0.1:80 2"));
}

TEST(GossipBackendValue, MalformedValuesAreRefused) {
  for (const char* value : {
           "", "10.0.0.1:80", "10.0.0.1:80 ", "10.0.0.1:80 x", "10.0.0.1:80 1001", "10.0.0.1:80  1",
           "10.0.0.1:80 1 ", "10.0.0.1:80 1 tlsx", "10.0.0.1:80 1 tls=-bad", "10.0.0.1:80 1 tls tls",
           "10.0.0.1:80 1 h3",            // an unknown protocol
           "10.0.0.1:80 1 H2C",           // words are exact
           "10.0.0.1:80 1 h2",            // h2 without TLS
           "10.0.0.1:80 1 tls h2c",       // h2c with it
           "10.0.0.1:80 1 h2 tls",        // the protocol comes last
           "10.0.0.1:80 1 tls h2 h2",     // once
           "10.0.0.1:80 1 tls h2 extra",  // nothing after it
           "10.0.0.1:80 1 h2c ",
       }) {
    EXPECT_EQ(decode_backend("n", value), std::nullopt) << '"' << value << '"';
  }
}

}  // namespace
}  // namespace ringproxy
