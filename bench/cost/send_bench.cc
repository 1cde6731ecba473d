// What one send costs on loopback: one buffer with send(2) against the same bytes in two
// pieces with sendmsg(2) (the response head and a small body), and a copy into one
// buffer then send(2). The figure behind the proxy's one-buffer send of a small body
// (proxy/exchange.cc, send_to_client). A reader thread drains the other end.
//   build-rel/bench/send_bench [head_bytes body_bytes iterations]   (defaults 78 7 300000)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

double ns_per_call(int n, const auto& call) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) call();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t head_len = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 78;
  const size_t body_len = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 7;
  const int n = argc > 3 ? std::atoi(argv[3]) : 300000;

  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::perror("listen");
    return 1;
  }
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    return 1;
  }
  const int peer = ::accept(listener, nullptr, nullptr);
  const int one = 1;
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as the proxy's sockets
  std::thread reader([peer] {
    char buf[65536];
    while (::recv(peer, buf, sizeof buf, 0) > 0) {
    }
  });

  std::string head(head_len, 'h'), body(body_len, 'b'), both = head + body;
  iovec iov[2] = {{head.data(), head.size()}, {body.data(), body.size()}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  std::string scratch;
  scratch.reserve(both.size());
  std::printf("%zu + %zu bytes, %d calls each, ns per call:\n", head_len, body_len, n);
  for (int round = 0; round < 3; ++round) {
    const double one_buf = ns_per_call(n, [&] { ::send(s, both.data(), both.size(), MSG_NOSIGNAL); });
    const double two = ns_per_call(n, [&] { ::sendmsg(s, &m, MSG_NOSIGNAL); });
    const double copied = ns_per_call(n, [&] {
      scratch.assign(head);
      scratch.append(body);
      ::send(s, scratch.data(), scratch.size(), MSG_NOSIGNAL);
    });
    std::printf("  send %.0f   sendmsg (2 pieces) %.0f   copy + send %.0f\n", one_buf, two, copied);
  }
  ::shutdown(s, SHUT_WR);
  reader.join();
  ::close(s);
  ::close(peer);
  ::close(listener);
  return 0;
}
