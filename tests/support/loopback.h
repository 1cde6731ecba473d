// Small pieces the unit tests share for real sockets on loopback: a bound socket, a
// one-answer server thread, and running a libuv loop until a condition holds (failing
// after 10 s instead of hanging). Header-only: each test binary takes what it uses.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace ringproxy::test {

// A socket bound to 127.0.0.1:0, not listening (`flags` go to socket(2) with
// SOCK_STREAM, e.g. SOCK_NONBLOCK | SOCK_CLOEXEC). The caller owns it.
inline int bound_loopback_socket(int flags) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | flags, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  return fd;
}

// Accepts one connection, reads its request head, writes `answer`, then reads until
// the peer closes. join() (or the destructor) waits for it.
class OneAnswerServer {
 public:
  explicit OneAnswerServer(std::string answer) : answer_(std::move(answer)) {
    fd_ = bound_loopback_socket(SOCK_CLOEXEC);
    EXPECT_EQ(::listen(fd_, 4), 0);
    socklen_t len = sizeof addr_;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr_), &len);
    thread_ = std::thread([this, listener = fd_] { serve(listener); });
  }
  ~OneAnswerServer() {
    join();
    ::close(fd_);
  }
  OneAnswerServer(const OneAnswerServer&) = delete;
  OneAnswerServer& operator=(const OneAnswerServer&) = delete;

  void join() {
    if (!thread_.joinable()) return;
    ::shutdown(fd_, SHUT_RDWR);  // wakes an accept() that got no connection
    thread_.join();
  }
  const sockaddr_storage& address() const { return addr_; }
  uint16_t port() const { return ntohs(reinterpret_cast<const sockaddr_in&>(addr_).sin_port); }
  const std::string& head() const { return head_; }  // after join()

 private:
  void serve(int listener) {
    const int c = ::accept(listener, nullptr, nullptr);
    if (c < 0) return;
    std::string in;
    char buf[4096];
    while (in.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    head_ = in;
    for (size_t off = 0; off < answer_.size();) {
      const ssize_t n = ::send(c, answer_.data() + off, answer_.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    while (::recv(c, buf, sizeof buf, 0) > 0) {
    }
    ::close(c);
  }

  std::string answer_;
  std::string head_;
  int fd_ = -1;
  sockaddr_storage addr_{};
  std::thread thread_;
};

// Runs `loop` until `done`; a failure (not a hang) after 10 s without it. `guard` is an
// initialised timer of the loop, the caller's to close.
inline void run_loop_until(uv_loop_t* loop, uv_timer_t* guard, const std::function<bool()>& done) {
  bool expired = false;
  guard->data = &expired;
  uv_timer_start(guard, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, 10000, 0);
  while (!done() && !expired) uv_run(loop, UV_RUN_ONCE);
  uv_timer_stop(guard);
  EXPECT_FALSE(expired) << "timed out";
}

}  // namespace ringproxy::test
