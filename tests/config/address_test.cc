#include "config/address.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace ringproxy {
namespace {

// The reason parse_address gives for `text`, or "ok" if it parses.
std::string why_not(std::string_view text, bool allow_port_zero = false) {
  std::string why = "unset";
  const std::optional<Address> address = parse_address(text, &why, allow_port_zero);
  return address ? std::string("ok") : why;
}

TEST(ParseAddress, Ipv4) {
  const std::optional<Address> address = parse_address("10.1.2.3:8080", nullptr);
  ASSERT_TRUE(address);
  EXPECT_EQ(address->host, "10.1.2.3");
  EXPECT_EQ(address->port, 8080);
  EXPECT_FALSE(address->ipv6);
  EXPECT_EQ(address->to_string(), "10.1.2.3:8080");
}

TEST(ParseAddress, Ipv4Extremes) {
  EXPECT_EQ(parse_address("0.0.0.0:1", nullptr)->to_string(), "0.0.0.0:1");
  EXPECT_EQ(parse_address("255.255.255.255:65535", nullptr)->to_string(), "255.255.255.255:65535");
}

TEST(ParseAddress, Ipv6IsStoredWithoutBracketsAndPrintedWithThem) {
  const std::optional<Address> address = parse_address("[::1]:8080", nullptr);
  ASSERT_TRUE(address);
  EXPECT_EQ(address->host, "::1");
  EXPECT_EQ(address->port, 8080);
  EXPECT_TRUE(address->ipv6);
  EXPECT_EQ(address->to_string(), "[::1]:8080");
}

TEST(ParseAddress, Ipv6IsCanonicalSoThatSpellingsCompareEqual) {
  const std::optional<Address> long_form = parse_address("[0:0:0:0:0:0:0:1]:80", nullptr);
  const std::optional<Address> upper = parse_address("[FE80::AB]:80", nullptr);
  ASSERT_TRUE(long_form && upper);
  EXPECT_EQ(*long_form, *parse_address("[::1]:80", nullptr));
  EXPECT_EQ(upper->host, "fe80::ab");
  EXPECT_EQ(parse_address("[::]:80", nullptr)->to_string(), "[::]:80");
}

TEST(ParseAddress, LocalhostIsIpv4Loopback) {
  const std::optional<Address> address = parse_address("localhost:9000", nullptr);
  ASSERT_TRUE(address);
  EXPECT_EQ(*address, (Address{"127.0.0.1", 9000, false}));
  EXPECT_EQ(parse_address("LocalHost:9000", nullptr)->host, "127.0.0.1");
}

TEST(ParseAddress, PortZeroOnlyWhenAllowed) {
  EXPECT_EQ(why_not("127.0.0.1:0"), "port out of range 1..65535");
  EXPECT_EQ(why_not("127.0.0.1:0", /*allow_port_zero=*/true), "ok");
  EXPECT_EQ(parse_address("127.0.0.1:0", nullptr, true)->port, 0);
  EXPECT_EQ(why_not("127.0.0.1:65536", /*allow_port_zero=*/true), "port out of range 0..65535");
}

TEST(ParseAddress, Rejections) {
  EXPECT_EQ(why_not(""), "empty address");
  EXPECT_EQ(why_not("127.0.0.1"), "missing port, as in 127.0.0.1:8080");
  EXPECT_EQ(why_not("127.0.0.1:"), "missing port after ':'");
  EXPECT_EQ(why_not("127.0.0.1:http"), "port is not a number");
  EXPECT_EQ(why_not("127.0.0.1:-1"), "port is not a number");
  EXPECT_EQ(why_not("127.0.0.1:+80"), "port is not a number");
  EXPECT_EQ(why_not("127.0.0.1:65536"), "port out of range 1..65535");
  EXPECT_EQ(why_not("127.0.0.1:99999999999999999999"), "port out of range 1..65535");
  EXPECT_EQ(why_not("::1:8080"), "an IPv6 address needs brackets, as in [::1]:8080");
  EXPECT_EQ(why_not("::1"), "an IPv6 address needs brackets, as in [::1]:8080");
  EXPECT_EQ(why_not("[::1]"), "missing port, as in [::1]:8080");
  EXPECT_EQ(why_not("[::1]8080"), "expected ':PORT' after ']'");
  EXPECT_EQ(why_not("[::1:8080"), "missing ']' after the IPv6 address");
  EXPECT_EQ(why_not("[::1]:"), "missing port after ':'");
  EXPECT_EQ(why_not("[127.0.0.1]:80"), "invalid IPv6 address");
  EXPECT_EQ(why_not("[fe80::1%eth0]:80"), "invalid IPv6 address");
  EXPECT_EQ(why_not("[]:80"), "missing host (use 0.0.0.0 or [::] for every interface)");
  EXPECT_EQ(why_not(":80"), "missing host (use 0.0.0.0 or [::] for every interface)");
  EXPECT_EQ(why_not("256.0.0.1:80"), "invalid IPv4 address");
  EXPECT_EQ(why_not("1.2.3:80"), "invalid IPv4 address");
  EXPECT_EQ(why_not("example.com:80"), "hostnames are not resolved; use an IP address");
  EXPECT_EQ(why_not("cache-a:80"), "hostnames are not resolved; use an IP address");
  EXPECT_EQ(why_not(" 127.0.0.1:80"), "contains spaces or control characters");
  EXPECT_EQ(why_not("127.0.0.1:80\n"), "contains spaces or control characters");
}

TEST(ParseAddress, NullWhyIsAllowed) {
  EXPECT_FALSE(parse_address("nonsense", nullptr));
}

TEST(Address, ToStringOfDefaultAndEquality) {
  EXPECT_EQ(Address{}.to_string(), ":0");
  EXPECT_EQ((Address{"::1", 1, true}), (Address{"::1", 1, true}));
  EXPECT_NE((Address{"::1", 1, true}), (Address{"::1", 2, true}));
}

}  // namespace
}  // namespace ringproxy
