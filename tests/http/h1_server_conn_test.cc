// h1::ServerConn with a handler that reads whole requests and answers from on_body's
// end with respond_own (the admin endpoint's way, proxy/admin_server.cc): the answers
// come in order, the connection goes on after each, a long pipeline of answers written
// at once is served to its end, and accept() from a libuv listener gives the peer's
// address. On a real loop over loopback; each test runs the loop dry and checks
// uv_loop_close() == 0 (STYLE rule 4).
#include "http/h1/server_conn.h"
#include "tests/support/loopback.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ringproxy::h1 {
namespace {

// Reads each request whole (RequestParser::keep_body) and answers "METHOD TARGET BODY".
class WholeRequestHandler final : public RequestHandler {
 public:
  ServerConn* down = nullptr;
  int answered = 0;
  int resets = 0;

  void begin() override {}
  void on_request(RequestHead& head, std::string_view) override {
    active_ = true;
    text_ = std::string(head.method) + " " + std::string(head.target) + " ";
    down->parser().keep_body(&body_, 1024);
  }
  BodyResult on_body(char*, size_t, bool end) override {
    if (!end) return BodyResult::kTaken;
    const std::string text = text_ + body_;
    const bool keep_alive = !down->close_requested();
    out_ = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(text.size()) + "\r\n" +
           (keep_alive ? "" : "Connection: close\r\n") + "\r\n" + text;
    ++answered;
    down->respond_own(out_, keep_alive);  // may reset this handler before it returns
    return BodyResult::kFailed;
  }
  bool ready_for_body() const override { return active_; }
  bool body_pinned() const override { return false; }
  void on_client_eof() override {}
  void on_downstream_drained() override {}
  void abort() override { active_ = false; }
  bool active() const override { return active_; }
  bool response_started() const override { return false; }
  bool close_after() const override { return false; }
  void on_answered(int, std::string_view) override {}
  void on_client_note(std::string_view) override {}
  void reset() override {
    ++resets;
    active_ = false;
    text_.clear();
    body_.clear();
  }

 private:
  bool active_ = false;
  std::string text_, body_, out_;
};

class H1ServerConnTest : public ::testing::Test, private ServerConn::Owner {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ASSERT_EQ(poller_.init(&loop_), 0);
    ASSERT_EQ(uv_timer_init(&loop_, &guard_), 0);
    listen_fd_ = test::bound_loopback_socket(SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT_GE(listen_fd_, 0);
    ASSERT_EQ(::listen(listen_fd_, 8), 0);
    socklen_t len = sizeof addr_;
    ASSERT_EQ(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr_), &len), 0);
    ASSERT_EQ(uv_poll_init_socket(&loop_, &listener_, listen_fd_), 0);
    listener_.data = this;
    ASSERT_EQ(uv_poll_start(&listener_, UV_READABLE, on_connection), 0);
    handler_.down = &conn_;
  }

  void TearDown() override {
    conn_.close();  // idempotent
    if (accepted_) run_until([&] { return freed_; });
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    poller_.close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    if (client_ >= 0) ::close(client_);
    ::close(listen_fd_);
  }

  // The client's end, blocking, reads bounded by a 10 s timeout.
  void connect_client() {
    client_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(client_, 0);
    const timeval tv{10, 0};
    ::setsockopt(client_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ASSERT_EQ(::connect(client_, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_), 0);
    run_until([&] { return accepted_; });
  }
  void client_send(const std::string& s) {
    ASSERT_EQ(::send(client_, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // Reads until `n` bytes came or the server closed.
  std::string client_read(size_t n) {
    std::string got;
    char buf[4096];
    while (got.size() < n) {
      const ssize_t r = ::recv(client_, buf, sizeof buf, 0);
      if (r <= 0) break;
      got.append(buf, static_cast<size_t>(r));
    }
    return got;
  }
  bool client_sees_eof() {
    char c;
    return ::recv(client_, &c, 1, 0) == 0;
  }

  // Runs the loop until `done`; fails (rather than hangs) after 10 s without it.
  void run_until(const std::function<bool()>& done) { test::run_loop_until(&loop_, &guard_, done); }

  static std::string answer(const std::string& text, bool close = false) {
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(text.size()) + "\r\n" +
           (close ? "Connection: close\r\n" : "") + "\r\n" + text;
  }

  uv_loop_t loop_{};
  Poller poller_;
  uv_timer_t guard_{};
  int listen_fd_ = -1;
  uv_poll_t listener_{};
  sockaddr_in addr_{};
  int client_ = -1;
  BufferPool pool_;
  WholeRequestHandler handler_;
  ServerConn conn_{poller_, pool_, *this, handler_};
  bool accepted_ = false;
  bool closing_ = false;
  bool freed_ = false;

 private:
  static void on_connection(uv_poll_t* listener, int status, int) {
    auto* t = static_cast<H1ServerConnTest*>(listener->data);
    ASSERT_EQ(status, 0);
    ASSERT_FALSE(t->accepted_);  // one connection per test
    uv_poll_stop(listener);
    const int fd = ::accept4(t->listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT_GE(fd, 0);
    t->accepted_ = true;
    ASSERT_EQ(t->conn_.open(fd, /*nodelay_inherited=*/false), 0);
    t->conn_.start(nullptr, h1::ServerConn::FirstRead::kOnEvent);
  }
  ServerLimits limits() const override { return {}; }
  void on_closing(ServerConn&) override { closing_ = true; }
  void on_freed(ServerConn&) override { freed_ = true; }
};

TEST_F(H1ServerConnTest, AnswersFromOnBodyKeepTheConnectionInOrder) {
  connect_client();
  EXPECT_EQ(conn_.client_ip(), "127.0.0.1");  // asked of the socket: start(nullptr)
  client_send("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
              "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
              "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n");
  run_until([&] { return handler_.answered == 3; });
  const std::string want = answer("GET /a ") + answer("POST /b xyz") + answer("POST /c hi");
  EXPECT_EQ(client_read(want.size()), want);
  EXPECT_FALSE(closing_);
  EXPECT_EQ(handler_.resets, 3);  // each exchange ended, the handler reset for the next

  // The connection goes on; a request with Connection: close ends it after its answer,
  // in stages: the answer, a FIN, and the close once the client's FIN comes.
  client_send("GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  run_until([&] { return handler_.answered == 4; });
  const std::string last = answer("GET /d ", /*close=*/true);
  EXPECT_EQ(client_read(last.size()), last);
  EXPECT_FALSE(closing_);  // lingering
  ::shutdown(client_, SHUT_WR);
  run_until([&] { return closing_; });
  EXPECT_TRUE(client_sees_eof());
}

// Every answer is written at once (the client's socket takes them all), so every
// exchange ends inside on_body: the codec's loop goes on to the next request, to the
// last, over several reads of the 16 KiB buffer.
TEST_F(H1ServerConnTest, ALongPipelineOfAnswersGivenAtOnceIsServedToItsEnd) {
  connect_client();
  constexpr int kRequests = 1000;  // ~36 KiB in, ~48 KiB out: within the loopback socket buffers
  std::string all, want;
  for (int i = 0; i < kRequests; ++i) {
    const std::string target = "/" + std::to_string(i);
    all += "GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n";
    want += answer("GET " + target + " ");
  }
  client_send(all);
  run_until([&] { return handler_.answered == kRequests; });
  EXPECT_EQ(client_read(want.size()), want);
  EXPECT_FALSE(closing_);
}

}  // namespace
}  // namespace ringproxy::h1
