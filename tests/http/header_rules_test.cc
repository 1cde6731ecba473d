#include "http/header_rules.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringproxy {
namespace {

// The options of a head with one Connection line whose value is `value` ("" for none).
ConnectionOptions one_line(std::string_view value) {
  if (value.empty()) return {};
  return ConnectionOptions::of(std::vector<HeaderView>{{"Connection", value}});
}

TEST(HeaderRules, HopByHop) {
  for (const char* name : {"Connection", "keep-alive", "Proxy-Connection", "TE", "Upgrade"}) {
    EXPECT_TRUE(is_hop_by_hop(name, one_line(""))) << name;
  }
  for (const char* name : {"Host", "Content-Length", "Transfer-Encoding", "Trailer", "X-A"}) {
    EXPECT_FALSE(is_hop_by_hop(name, one_line(""))) << name;
  }
  // Headers the Connection header names are hop-by-hop too.
  EXPECT_TRUE(is_hop_by_hop("X-Private", one_line("keep-alive, x-private")));
  EXPECT_FALSE(is_hop_by_hop("X-Other", one_line("keep-alive, x-private")));
  // ... but never the framing or Host: that would turn a body into a next request.
  for (const char* name : {"Content-Length", "transfer-encoding", "Host"}) {
    EXPECT_FALSE(is_hop_by_hop(name, one_line("content-length, transfer-encoding, host"))) << name;
  }
}

// RFC 9110 7.6.1 with 5.3: the Connection lines of a head are one list.
TEST(HeaderRules, ConnectionOptionsSpanEveryLine) {
  const std::vector<HeaderView> h = {{"Connection", "keep-alive"}, {"X-A", "1"}, {"connection", "X-Secret, x-b"}};
  const ConnectionOptions c = ConnectionOptions::of(h);
  EXPECT_TRUE(is_hop_by_hop("x-secret", c));
  EXPECT_TRUE(is_hop_by_hop("X-B", c));
  EXPECT_FALSE(is_hop_by_hop("X-A", c));
  EXPECT_FALSE(is_hop_by_hop("Content-Length", ConnectionOptions::of(std::vector<HeaderView>{{"Connection", "content-length"}})));
  // More lines than are kept inline are still all read.
  std::vector<HeaderView> many(6, HeaderView{"Connection", "x-early"});
  many.push_back({"Connection", "x-last"});
  EXPECT_TRUE(is_hop_by_hop("X-Last", ConnectionOptions::of(many)));
  EXPECT_FALSE(is_hop_by_hop("X-Other", ConnectionOptions::of(many)));
  EXPECT_TRUE(ConnectionOptions::of(std::vector<HeaderView>{}).empty());
}

// A line of `keep-alive` alone (every HTTP/1.1 node's response) names only Keep-Alive,
// dropped anyway: not kept, and the fields are what they were.
TEST(HeaderRules, AKeepAliveOnlyLineNamesNothingElse) {
  const std::vector<HeaderView> h = {{"Connection", " Keep-Alive "}, {"Keep-Alive", "timeout=5"}, {"X-A", "1"}};
  const ConnectionOptions c = ConnectionOptions::of(h);
  EXPECT_TRUE(c.empty());
  EXPECT_TRUE(is_hop_by_hop("keep-alive", c));
  EXPECT_TRUE(is_hop_by_hop("Connection", c));
  EXPECT_FALSE(is_hop_by_hop("X-A", c));
  // A list with more than keep-alive is read whole.
  const std::vector<HeaderView> two = {{"Connection", "keep-alive, x-a"}, {"X-A", "1"}};
  EXPECT_TRUE(is_hop_by_hop("X-A", ConnectionOptions::of(two)));
}

// check_request_head: the framing and routing checks llhttp leaves to us. The end-to-end
// side is tests/integration/smuggling_test.cc over tests/corpus/smuggling.
int verdict(std::vector<HeaderView> h, std::string_view target = "/", bool http11 = true) {
  return check_request_head(h, target, http11).status;
}

TEST(HeaderRules, MaxForwards) {
  uint32_t n = 7;
  EXPECT_TRUE(parse_max_forwards("0", &n));
  EXPECT_EQ(n, 0u);
  EXPECT_TRUE(parse_max_forwards(" 12 ", &n));
  EXPECT_EQ(n, 12u);
  EXPECT_TRUE(parse_max_forwards("99999999999999999999", &n));
  EXPECT_EQ(n, UINT32_MAX);
  for (const char* bad : {"", "-1", "1x", "0x10", "1 2"}) EXPECT_FALSE(parse_max_forwards(bad, &n)) << bad;
}

TEST(HeaderRules, RequestHeadTransferEncoding) {
  const HeaderView host{"Host", "h"};
  EXPECT_EQ(verdict({host}), 0);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "chunked"}}), 0);
  EXPECT_EQ(verdict({host, {"transfer-encoding", "CHUNKED"}}), 0);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "gzip, chunked"}}), 0);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "gzip"}, {"Transfer-Encoding", "chunked"}}), 0);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", " , chunked ,"}}), 0);  // empty elements ignored
  // chunked not once and last: RFC 9112 6.3, 400 whatever the other codings.
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "xchunked"}}), 400);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "chunked, identity"}}), 400);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "chunked, gzip"}}), 400);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}), 400);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", ""}}), 400);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "\"chunked\""}}), 400);
  // Framed, but a coding we do not know: 501.
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "foo, chunked"}}), 501);
  EXPECT_EQ(verdict({host, {"Transfer-Encoding", "identity, chunked"}}), 501);
}

TEST(HeaderRules, RequestHeadFieldsAndTarget) {
  const HeaderView host{"Host", "h"};
  EXPECT_EQ(verdict({}), 400);  // HTTP/1.1 without Host
  EXPECT_EQ(verdict({}, "/", false), 0);
  EXPECT_EQ(verdict({host, {"host", "other"}}), 400);
  EXPECT_EQ(verdict({host, {"", "a"}}), 400);
  EXPECT_EQ(verdict({host, {"Transfer_Encoding", "chunked"}}), 400);
  EXPECT_EQ(verdict({host, {"content_length", "4"}}), 400);
  EXPECT_EQ(verdict({host, {"X_Other_Header", "a"}}), 0);  // underscores are legal in general
  EXPECT_EQ(verdict({host}, "http://h/a"), 0);
  EXPECT_EQ(verdict({host}, "http://u@h/a"), 400);
  EXPECT_EQ(verdict({host}, "http://h/a@b"), 0);  // '@' in the path is no userinfo
  EXPECT_EQ(verdict({host}, "*"), 0);
  EXPECT_EQ(verdict({host}, "HTTPS://h:8443"), 0);
  EXPECT_EQ(verdict({host}, "ftp://h/a"), 400);  // a reverse proxy of http only
  EXPECT_EQ(verdict({host}, "http:///a"), 400);  // no host
  EXPECT_EQ(verdict({host}, "http://?q"), 400);
  EXPECT_EQ(verdict({host}, "http://:80/a"), 400);  // a port without a host
  EXPECT_EQ(verdict({host}, "http://a,b:x:9/"), 400);
  EXPECT_EQ(verdict({host}, "http://h;x/"), 400);
  EXPECT_EQ(verdict({host}, "http://%41/"), 400);
  EXPECT_EQ(verdict({host}, "http://[::1]:8080/a"), 0);
  // No fragment in a request target, in any form.
  EXPECT_EQ(verdict({host}, "/a#b"), 400);
  EXPECT_EQ(verdict({host}, "http://h/?q#f"), 400);
  // Host values: host[:port], or empty.
  EXPECT_EQ(verdict({{"Host", ""}}), 0);
  EXPECT_EQ(verdict({{"Host", "a,b"}}), 400);
  EXPECT_EQ(verdict({{"Host", "h/x"}}), 400);
  EXPECT_EQ(verdict({{"Host", "h:8o"}}), 400);
}

TEST(HeaderRules, ValidHost) {
  for (const char* ok : {"h", "example.test", "EXAMPLE.test:8080", "127.0.0.1", "127.0.0.1:28111", "[::1]",
                         "[::1]:80", "[::ffff:10.0.0.1]", "under_score.test", "h:", "x-y.z~"}) {
    EXPECT_TRUE(valid_host(ok, false)) << ok;
  }
  for (const char* bad : {"", ":80", "a,b", "a;b", "a b", "h/x", "%41", "h:8o", "[::1", "[]", "[::1]x", "[g::1]",
                          "h:80:90", "user@h", "h\t"}) {
    EXPECT_FALSE(valid_host(bad, false)) << bad;
  }
  EXPECT_TRUE(valid_host("", true));
}

TEST(HeaderRules, SplitAbsoluteTarget) {
  AbsoluteTarget t;
  ASSERT_TRUE(split_absolute_target("http://h.test:81/a/b?c=d", &t));
  EXPECT_EQ(t.scheme, "http");
  EXPECT_EQ(t.authority, "h.test:81");
  EXPECT_EQ(t.origin, "/a/b?c=d");
  ASSERT_TRUE(split_absolute_target("https://h", &t));
  EXPECT_EQ(t.authority, "h");
  EXPECT_EQ(t.origin, "");
  ASSERT_TRUE(split_absolute_target("http://h?q", &t));
  EXPECT_EQ(t.authority, "h");
  EXPECT_EQ(t.origin, "?q");
  ASSERT_TRUE(split_absolute_target("svn+ssh://[::1]:22/x", &t));
  EXPECT_EQ(t.scheme, "svn+ssh");
  EXPECT_EQ(t.authority, "[::1]:22");
  // Not absolute form: origin, asterisk and authority forms, and no scheme.
  for (const char* target : {"/a", "/a?u=http://b", "*", "h.test:443", "://h/a", "1http://h/", ""}) {
    EXPECT_FALSE(split_absolute_target(target, &t)) << target;
  }
}

TEST(HeaderRules, Idempotence) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) EXPECT_TRUE(is_idempotent_method(m));
  for (const char* m : {"POST", "PATCH", "CONNECT"}) EXPECT_FALSE(is_idempotent_method(m));
}

}  // namespace
// gRPC's PROTOCOL-HTTP2.md: TimeoutValue is at most 8 digits, then one unit.
TEST(GrpcTimeout, UnitsAndRoundingUp) {
  uint64_t ms = 0;
  ASSERT_TRUE(parse_grpc_timeout("2H", &ms));
  EXPECT_EQ(ms, 7'200'000u);
  ASSERT_TRUE(parse_grpc_timeout("3M", &ms));
  EXPECT_EQ(ms, 180'000u);
  ASSERT_TRUE(parse_grpc_timeout("10S", &ms));
  EXPECT_EQ(ms, 10'000u);
  ASSERT_TRUE(parse_grpc_timeout("250m", &ms));
  EXPECT_EQ(ms, 250u);
  ASSERT_TRUE(parse_grpc_timeout("1500u", &ms));
  EXPECT_EQ(ms, 2u);
  ASSERT_TRUE(parse_grpc_timeout("1n", &ms));
  EXPECT_EQ(ms, 1u);
  ASSERT_TRUE(parse_grpc_timeout("99999999S", &ms));
  for (std::string_view bad : {"", "S", "10", "10s", "123456789S", "-1S", "1.5S", " 1S"}) {
    EXPECT_FALSE(parse_grpc_timeout(bad, &ms)) << bad;
  }
}

TEST(GrpcTimeout, ContentTypeAndStatusMapping) {
  EXPECT_TRUE(is_grpc_content_type("application/grpc"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc+proto"));
  EXPECT_TRUE(is_grpc_content_type("Application/GRPC;charset=x"));
  EXPECT_FALSE(is_grpc_content_type("application/grpc-web"));
  EXPECT_FALSE(is_grpc_content_type("application/json"));
  EXPECT_FALSE(is_grpc_content_type(""));
  EXPECT_EQ(grpc_status_for(503), 14);
  EXPECT_EQ(grpc_status_for(502), 14);
  EXPECT_EQ(grpc_status_for(504), 4);
  EXPECT_EQ(grpc_status_for(404), 12);
  EXPECT_EQ(grpc_status_for(400), 13);
  EXPECT_EQ(grpc_status_for(500), 2);
}

}  // namespace ringproxy
