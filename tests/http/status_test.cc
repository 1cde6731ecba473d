#include "http/status.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringproxy {
namespace {

TEST(Status, TraceReflectsTheHeadWithoutCredentials) {
  const std::vector<HeaderView> h = {{"Host", "h"}, {"Cookie", "s=1"}, {"Authorization", "Basic x"}, {"X-A", "1"}};
  const std::string r = trace_response("TRACE /t HTTP/1.1", h, false);
  EXPECT_EQ(r, "HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: 38\r\n\r\n"
               "TRACE /t HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n");
}

TEST(Status, CannedResponse) {
  EXPECT_EQ(canned_response(503, "no backend available", true),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
            "Connection: close\r\n\r\nno backend available\n");
  EXPECT_EQ(canned_response(431, "x", false),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
            "Content-Length: 2\r\n\r\nx\n");
}

}  // namespace
}  // namespace ringproxy
