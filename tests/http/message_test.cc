#include "http/message.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringproxy {
namespace {

TEST(Message, CaseInsensitiveHeaders) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_FALSE(iequals("Content-Length", "content-lengt"));
  const std::vector<HeaderView> h = {{"Host", "a"}, {"X-Empty", ""}};
  bool found = false;
  EXPECT_EQ(find_header(h, "host", &found), "a");
  EXPECT_TRUE(found);
  EXPECT_EQ(find_header(h, "x-empty", &found), "");
  EXPECT_TRUE(found);
  EXPECT_EQ(find_header(h, "missing", &found), "");
  EXPECT_FALSE(found);
}

TEST(Message, Tokens) {
  EXPECT_TRUE(has_token("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(has_token("close", "close"));
  EXPECT_FALSE(has_token("closed", "close"));
  EXPECT_FALSE(has_token("", "close"));
  EXPECT_TRUE(has_token(" a ,  b ", "b"));
}

}  // namespace
}  // namespace ringproxy
