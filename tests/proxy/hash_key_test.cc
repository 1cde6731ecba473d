#include "proxy/hash_key.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringproxy {
namespace {

HashKey key(HashKeyKind kind, std::string name = {}) { return {kind, std::move(name)}; }

TEST(SelectHashKey, HashKeySelection) {
  const std::vector<HeaderView> h = {{"X-User", "u42"},
                                     {"Cookie", "a=1; session=\"abc\""},
                                     {"Cookie", "late=9"},
                                     {"X-Blank", ""}};
  const std::string_view target = "/p/q?x=1&id=7&y";
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kUri), target, h, "10.0.0.1"), target);
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kPath), target, h, "10.0.0.1"), "/p/q");
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kHeader, "x-user"), target, h, "ip"), "u42");
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kCookie, "session"), target, h, "ip"), "abc");
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kCookie, "late"), target, h, "ip"), "9");
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kQuery, "id"), target, h, "ip"), "7");
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kClientSubject), target, h, "ip", "CN=alice"), "CN=alice");
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kClientSubject), target, h, "ip", ""), target);  // no certificate
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kClientIp), target, h, "10.0.0.1"), "10.0.0.1");
  // Missing or empty: the URI.
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kHeader, "x-none"), target, h, "ip"), target);
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kHeader, "x-blank"), target, h, "ip"), target);
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kCookie, "none"), target, h, "ip"), target);
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kQuery, "y"), target, h, "ip"), target);
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kQuery, "id"), "/no-query", h, "ip"), "/no-query");
  EXPECT_EQ(select_hash_key(key(HashKeyKind::kPath), "/only", h, "ip"), "/only");
}

}  // namespace
}  // namespace ringproxy
