// TcpTransport's pieces that need no socket.
#include "net/tcp_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>

namespace ringproxy {
namespace {

std::string text_of_v4(const char* dotted) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, dotted, &a.sin_addr);
  char out[64];
  TcpTransport::ip_text(reinterpret_cast<const sockaddr*>(&a), out, sizeof out);
  return out;
}

TEST(IpText, Ipv4AsInetNtopWritesIt) {
  for (const char* ip : {"0.0.0.0", "127.0.0.1", "10.0.0.9", "192.168.100.254", "255.255.255.255", "1.20.100.7"}) {
    EXPECT_EQ(text_of_v4(ip), ip);
  }
}

TEST(IpText, Ipv6AndOtherFamilies) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::1", &a.sin6_addr);
  char out[64];
  TcpTransport::ip_text(reinterpret_cast<const sockaddr*>(&a), out, sizeof out);
  EXPECT_STREQ(out, "::1");
  sockaddr other{};
  other.sa_family = AF_UNIX;
  TcpTransport::ip_text(&other, out, sizeof out);
  EXPECT_STREQ(out, "");
}

}  // namespace
}  // namespace ringproxy
