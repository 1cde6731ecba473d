#include "proxy/log.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringproxy {
namespace {

TEST(AccessLogEscape, LogFieldsAreEscapedAsNginxDoes) {
  std::string out;
  append_log_escaped(out, "a\"b\\c\x01\x7f\xc3 d");
  EXPECT_EQ(out, "a\\x22b\\x5Cc\\x01\\x7F\\xC3 d");
}

}  // namespace
}  // namespace ringproxy
