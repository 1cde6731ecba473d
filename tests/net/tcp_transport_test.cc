// TcpTransport: the pieces that need no socket, then the Transport contracts
// (net/transport.h) on real sockets over loopback. Nothing sleeps: each test runs the
// loop until what it waits for has happened, with a guard timer that fails it instead
// of hanging.
#include "net/tcp_transport.h"
#include "tests/support/loopback.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <optional>
#include <string>
#include <vector>

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

// ---------------------------------------------------------------------------------------
// On sockets

// Records every callback, in order.
class Recorder final : public Transport::Handler {
 public:
  void on_connect(int status) override { connects.push_back(status); }
  void on_read(ssize_t nread) override {
    reads.push_back(nread);
    if (read_hook) read_hook(nread);
  }
  void on_write_done(int status) override {
    write_dones.push_back(status);
    if (write_hook) write_hook(status);
  }
  void on_closed() override { ++closed; }

  std::vector<int> connects;
  std::vector<ssize_t> reads;
  std::vector<int> write_dones;
  int closed = 0;
  std::function<void(ssize_t)> read_hook;
  std::function<void(int)> write_hook;
};

// The far end of the connection, read on the same loop through a uv_poll_t: what it
// received, and whether the transport's FIN came.
class PeerReader {
 public:
  PeerReader(uv_loop_t* loop, int fd) : fd_(fd) {
    poll_.data = this;
    EXPECT_EQ(uv_poll_init(loop, &poll_, fd), 0);
    EXPECT_EQ(uv_poll_start(&poll_, UV_READABLE, on_poll), 0);
  }
  void close() { uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr); }

  std::string got;
  bool eof = false;

 private:
  static void on_poll(uv_poll_t* p, int, int) {
    auto* r = static_cast<PeerReader*>(p->data);
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(r->fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        r->got.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        r->eof = true;
        uv_poll_stop(p);
      }
      return;
    }
  }

  int fd_;
  uv_poll_t poll_{};
};

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + seed + i / 4096) % 26);
  return s;
}

class TcpTransportSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ASSERT_EQ(poller_.init(&loop_), 0);
    ASSERT_EQ(uv_timer_init(&loop_, &guard_), 0);
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listen_fd_, 0);
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_), 0);
    socklen_t len = sizeof addr_;
    ASSERT_EQ(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr_), &len), 0);
    ASSERT_EQ(::listen(listen_fd_, 8), 0);
  }

  void TearDown() override {
    if (tcp_.initialized() && !tcp_.closing()) tcp_.close();
    if (tcp_.initialized()) run_until([&] { return rec_.closed > 0; });
    EXPECT_LE(rec_.closed, 1);
    if (reader_) reader_->close();
    poller_.close();
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    if (peer_fd_ >= 0) ::close(peer_fd_);
    ::close(listen_fd_);
  }

  // A connection: the peer's end blocking in `peer_fd_`, ours (accepted with accept4
  // non-blocking, as the worker does) opened in `tcp_`. Small socket buffers when
  // `small_buffers`, so that a few megabytes cannot be written at once.
  void connect_pair(bool small_buffers = false) {
    peer_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(peer_fd_, 0);
    const int small = 4096;
    if (small_buffers) ::setsockopt(peer_fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ASSERT_EQ(::connect(peer_fd_, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_), 0);
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT_GE(fd, 0);
    if (small_buffers) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ASSERT_EQ(tcp_.init(poller_), 0);
    ASSERT_EQ(tcp_.open(fd), 0);
    EXPECT_EQ(tcp_.fd(), fd);
  }

  void read_at_peer() { reader_.emplace(&loop_, peer_fd_); }

  // Runs the loop until `done`; fails (rather than hangs) after 10 s without it.
  void run_until(const std::function<bool()>& done) { test::run_loop_until(&loop_, &guard_, done); }
  // Runs what is ready now, without waiting for more.
  void run_ready() {
    for (int i = 0; i < 4; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  }

  void peer_send(const std::string& s) {
    ASSERT_EQ(::send(peer_fd_, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  size_t bytes_read() const {
    size_t n = 0;
    for (ssize_t r : rec_.reads) n += r > 0 ? static_cast<size_t>(r) : 0;
    return n;
  }
  std::string buffered() { return std::string(tcp_.buffer().begin_ptr(), tcp_.buffer().size()); }

  uv_loop_t loop_{};
  Poller poller_;
  uv_timer_t guard_{};
  int listen_fd_ = -1;
  int peer_fd_ = -1;
  sockaddr_in addr_{};
  BufferPool pool_;
  Recorder rec_;
  TcpTransport tcp_{pool_, rec_};
  std::optional<PeerReader> reader_;
};

TEST_F(TcpTransportSocketTest, ReadsWhatThePeerSends) {
  connect_pair();
  ASSERT_EQ(tcp_.start_reading(), 0);
  EXPECT_TRUE(tcp_.reading());
  peer_send("GET / HTTP/1.1\r\n\r\n");
  run_until([&] { return bytes_read() == 18; });
  EXPECT_EQ(buffered(), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(tcp_.reading());
  peer_send("more");
  run_until([&] { return bytes_read() == 22; });
  EXPECT_EQ(buffered(), "GET / HTTP/1.1\r\n\r\nmore");
}

TEST_F(TcpTransportSocketTest, EofEndsReading) {
  connect_pair();
  ASSERT_EQ(tcp_.start_reading(), 0);
  peer_send("abc");
  ASSERT_EQ(::shutdown(peer_fd_, SHUT_WR), 0);
  run_until([&] { return !rec_.reads.empty() && rec_.reads.back() < 0; });
  EXPECT_EQ(rec_.reads, (std::vector<ssize_t>{3, UV_EOF}));
  EXPECT_EQ(buffered(), "abc");
  EXPECT_FALSE(tcp_.reading());
}

TEST_F(TcpTransportSocketTest, ResetEndsReadingWithAnError) {
  connect_pair();
  ASSERT_EQ(tcp_.start_reading(), 0);
  const linger abort_on_close{1, 0};  // close() sends RST
  ASSERT_EQ(::setsockopt(peer_fd_, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close), 0);
  ::close(peer_fd_);
  peer_fd_ = -1;
  run_until([&] { return !rec_.reads.empty(); });
  EXPECT_EQ(rec_.reads, (std::vector<ssize_t>{UV_ECONNRESET}));
  EXPECT_FALSE(tcp_.reading());
}

TEST_F(TcpTransportSocketTest, FullBufferStopsReadingUntilStartedAgain) {
  connect_pair();
  const std::string sent = pattern(IoBuffer::kSize + 3616, 1);
  peer_send(sent);
  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return bytes_read() == IoBuffer::kSize; });
  EXPECT_FALSE(tcp_.reading());
  EXPECT_EQ(tcp_.buffer().free_space(), 0u);
  run_ready();  // the rest is there to read, but nobody asked for it
  EXPECT_EQ(bytes_read(), IoBuffer::kSize);
  EXPECT_EQ(buffered(), sent.substr(0, IoBuffer::kSize));

  tcp_.buffer().clear();
  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return bytes_read() == sent.size(); });
  EXPECT_EQ(buffered(), sent.substr(IoBuffer::kSize));
  EXPECT_TRUE(tcp_.reading());
}

TEST_F(TcpTransportSocketTest, HandlerThatMakesRoomKeepsReading) {
  // The codec consumes what it got and asks for more from inside on_read, as ClientConn
  // does: reading goes on in the same event, as with libuv's reads.
  connect_pair();
  const std::string sent = pattern(3 * IoBuffer::kSize + 100, 2);
  std::string taken;
  rec_.read_hook = [&](ssize_t n) {
    if (n <= 0) return;
    taken.append(buffered());
    tcp_.buffer().clear();
    ASSERT_EQ(tcp_.start_reading(), 0);
  };
  peer_send(sent);
  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return taken.size() == sent.size(); });
  EXPECT_EQ(taken, sent);
  EXPECT_TRUE(tcp_.reading());
}

TEST_F(TcpTransportSocketTest, ReadingNowTakesWhatIsThereInsideTheCall) {
  connect_pair();
  peer_send("GET / HTTP/1.1\r\n\r\n");
  pollfd ready{tcp_.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&ready, 1, 10000), 1);  // arrived (loopback hands it over at once)
  ASSERT_EQ(tcp_.start_reading_now(), 0);
  EXPECT_EQ(rec_.reads, std::vector<ssize_t>{18});  // before the loop ran
  EXPECT_EQ(buffered(), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(tcp_.reading());
  EXPECT_EQ(tcp_.start_reading_now(), 0);  // already reading: nothing more
  EXPECT_EQ(rec_.reads.size(), 1u);
  peer_send("x");
  run_until([&] { return bytes_read() == 19; });
}

TEST_F(TcpTransportSocketTest, ReadingNowWithNothingThereWaitsForTheLoop) {
  connect_pair();
  ASSERT_EQ(tcp_.start_reading_now(), 0);
  EXPECT_TRUE(rec_.reads.empty());
  EXPECT_TRUE(tcp_.reading());
  peer_send("late");
  run_until([&] { return bytes_read() == 4; });
  EXPECT_EQ(buffered(), "late");
}

TEST_F(TcpTransportSocketTest, ReadingNowSurvivesAHandlerThatCloses) {
  connect_pair();
  rec_.read_hook = [&](ssize_t) { tcp_.close(); };
  peer_send("GET / HTTP/1.1\r\n\r\n");
  pollfd ready{tcp_.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&ready, 1, 10000), 1);
  ASSERT_EQ(tcp_.start_reading_now(), 0);
  EXPECT_EQ(rec_.reads, std::vector<ssize_t>{18});
  EXPECT_TRUE(tcp_.closing());
  EXPECT_FALSE(tcp_.reading());
  run_until([&] { return rec_.closed > 0; });
  EXPECT_EQ(rec_.closed, 1);
}

TEST_F(TcpTransportSocketTest, SmallWritesGoOutAtOnce) {
  connect_pair();
  read_at_peer();
  char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  char body[] = "hello";
  uv_buf_t one = uv_buf_init(head, sizeof head - 1);
  EXPECT_EQ(tcp_.write(&one, 1), Transport::kWritten);
  uv_buf_t two[] = {uv_buf_init(head, sizeof head - 1), uv_buf_init(body, 5)};
  EXPECT_EQ(tcp_.write(two, 2), Transport::kWritten);
  EXPECT_FALSE(tcp_.write_pending());
  const std::string want = std::string(head) + head + body;
  run_until([&] { return reader_->got.size() == want.size(); });
  EXPECT_EQ(reader_->got, want);
  EXPECT_TRUE(rec_.write_dones.empty());
}

TEST_F(TcpTransportSocketTest, PartialWriteIsQueuedThenCompleted) {
  connect_pair(true);
  std::string a = pattern(4 << 20, 3);
  std::string b = pattern(3 << 20, 4);
  uv_buf_t bufs[] = {uv_buf_init(a.data(), static_cast<unsigned>(a.size())),
                     uv_buf_init(b.data(), static_cast<unsigned>(b.size()))};
  ASSERT_EQ(tcp_.write(bufs, 2), Transport::kQueued);
  EXPECT_TRUE(tcp_.write_pending());
  read_at_peer();
  run_until([&] { return !rec_.write_dones.empty() && reader_->got.size() == a.size() + b.size(); });
  EXPECT_EQ(rec_.write_dones, std::vector<int>{0});
  EXPECT_FALSE(tcp_.write_pending());
  EXPECT_TRUE(reader_->got == a + b);
}

TEST_F(TcpTransportSocketTest, ShutdownComesAfterQueuedWritesAndReadingGoesOn) {
  connect_pair(true);
  std::string a = pattern(4 << 20, 5);
  uv_buf_t buf = uv_buf_init(a.data(), static_cast<unsigned>(a.size()));
  ASSERT_EQ(tcp_.write(&buf, 1), Transport::kQueued);
  ASSERT_EQ(tcp_.shutdown_write(), 0);
  read_at_peer();
  run_until([&] { return reader_->eof; });
  EXPECT_TRUE(reader_->got == a);  // the FIN came after every queued byte
  EXPECT_EQ(rec_.write_dones, std::vector<int>{0});
  uv_buf_t late = uv_buf_init(a.data(), 1);
  EXPECT_EQ(tcp_.write(&late, 1), UV_EPIPE);  // nothing after the FIN

  ASSERT_EQ(tcp_.start_reading(), 0);  // half-closed: the read side stays open
  peer_send("bye");
  run_until([&] { return bytes_read() == 3; });
  EXPECT_EQ(buffered(), "bye");
}

TEST_F(TcpTransportSocketTest, CloseDuringAPendingWriteCallsOnlyOnClosed) {
  connect_pair(true);
  std::string a = pattern(4 << 20, 6);
  uv_buf_t buf = uv_buf_init(a.data(), static_cast<unsigned>(a.size()));
  ASSERT_EQ(tcp_.write(&buf, 1), Transport::kQueued);
  ASSERT_EQ(tcp_.start_reading(), 0);
  tcp_.close();
  tcp_.close();  // idempotent
  EXPECT_TRUE(tcp_.closing());
  EXPECT_FALSE(tcp_.reading());
  EXPECT_EQ(rec_.closed, 0);  // from the loop, never from inside close()
  run_until([&] { return rec_.closed > 0; });
  EXPECT_EQ(rec_.closed, 1);
  EXPECT_TRUE(rec_.write_dones.empty());
  EXPECT_TRUE(rec_.reads.empty());
}

TEST_F(TcpTransportSocketTest, WriteWhileConnectingIsSentOnceConnected) {
  ASSERT_EQ(tcp_.init(poller_), 0);
  ASSERT_EQ(tcp_.connect(reinterpret_cast<const sockaddr*>(&addr_)), 0);
  EXPECT_GE(tcp_.fd(), 0);
  char req[] = "GET /health HTTP/1.1\r\n\r\n";
  uv_buf_t buf = uv_buf_init(req, sizeof req - 1);
  EXPECT_EQ(tcp_.write(&buf, 1), Transport::kQueued);
  run_until([&] { return !rec_.connects.empty() && !rec_.write_dones.empty(); });
  EXPECT_EQ(rec_.connects, std::vector<int>{0});
  EXPECT_EQ(rec_.write_dones, std::vector<int>{0});

  peer_fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(peer_fd_, 0);
  char got[sizeof req] = {};
  ASSERT_EQ(::recv(peer_fd_, got, sizeof req - 1, MSG_WAITALL), static_cast<ssize_t>(sizeof req - 1));
  EXPECT_STREQ(got, req);

  // Connected: writes go straight to the socket, and reads work.
  EXPECT_EQ(tcp_.write(&buf, 1), Transport::kWritten);
  ASSERT_EQ(tcp_.start_reading(), 0);
  peer_send("HTTP/1.1 200 OK\r\n");
  run_until([&] { return bytes_read() == 17; });
  EXPECT_EQ(buffered(), "HTTP/1.1 200 OK\r\n");
}

// ---------------------------------------------------------------------------------------
// Edge-triggered reads and writes (net/poller.h): an event is not repeated, so the
// transport itself must remember what the socket holds.

// Waits (poll(2), not the loop) until the peer's FIN has reached `fd`: the bytes sent
// before it are there too, and the poller's next report names both.
void wait_for_fin(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  ASSERT_NE(p.revents & POLLRDHUP, 0);
}

TEST_F(TcpTransportSocketTest, PeerFinWithTheLastBytesEndsInEof) {
  // Regression: the bytes and the FIN were there before the transport read, and came
  // in one event; the read that took the bytes did not fill the buffer and was taken
  // for "drained", so the EOF never came (the FIN raises no second event).
  connect_pair();
  peer_send("last bytes");
  ASSERT_EQ(::shutdown(peer_fd_, SHUT_WR), 0);
  wait_for_fin(tcp_.fd());
  run_ready();  // the one event for both reaches a transport not reading yet
  EXPECT_TRUE(rec_.reads.empty());
  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return !rec_.reads.empty() && rec_.reads.back() < 0; });
  EXPECT_EQ(rec_.reads, (std::vector<ssize_t>{10, UV_EOF}));
  EXPECT_EQ(buffered(), "last bytes");
  EXPECT_FALSE(tcp_.reading());
}

TEST_F(TcpTransportSocketTest, PeerFinWithTheLastBytesEndsInEofOnAConnectionJustMade) {
  // An upstream that answers and closes before our loop turns: the connect's event
  // names the bytes and the FIN too, and the read comes from inside it.
  ASSERT_EQ(tcp_.init(poller_), 0);
  ASSERT_EQ(tcp_.connect(reinterpret_cast<const sockaddr*>(&addr_)), 0);
  ASSERT_EQ(tcp_.start_reading(), 0);
  peer_fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(peer_fd_, 0);
  peer_send("HTTP/1.0 200 OK\r\n\r\n");
  ASSERT_EQ(::shutdown(peer_fd_, SHUT_WR), 0);
  wait_for_fin(tcp_.fd());
  run_until([&] { return !rec_.reads.empty() && rec_.reads.back() < 0; });
  EXPECT_EQ(rec_.connects, std::vector<int>{0});
  EXPECT_EQ(rec_.reads, (std::vector<ssize_t>{19, UV_EOF}));
  EXPECT_EQ(buffered(), "HTTP/1.0 200 OK\r\n\r\n");
}

TEST_F(TcpTransportSocketTest, PeerFinWithTheLastBytesEndsInEofWhileReading) {
  // The same on a connection already read from: the loop has turned (the registration's
  // report is spent), and the client's last request and its close come in one event.
  connect_pair();
  ASSERT_EQ(tcp_.start_reading(), 0);
  peer_send("first");
  run_until([&] { return bytes_read() == 5; });
  peer_send("last");
  ::close(peer_fd_);
  peer_fd_ = -1;
  wait_for_fin(tcp_.fd());
  run_until([&] { return !rec_.reads.empty() && rec_.reads.back() < 0; });
  EXPECT_EQ(rec_.reads, (std::vector<ssize_t>{5, 4, UV_EOF}));
  EXPECT_EQ(buffered(), "firstlast");
}

TEST_F(TcpTransportSocketTest, PeerFinAfterMoreThanABufferEndsInEofOnceReadingResumes) {
  // The FIN's event is spent while the full buffer stops reading; reading again takes
  // the rest (a short read) and then the EOF.
  connect_pair();
  const std::string sent = pattern(IoBuffer::kSize + 100, 7);
  peer_send(sent);
  ASSERT_EQ(::shutdown(peer_fd_, SHUT_WR), 0);
  wait_for_fin(tcp_.fd());
  run_ready();  // the one event is spent before reading starts
  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return bytes_read() == IoBuffer::kSize; });
  EXPECT_FALSE(tcp_.reading());
  run_ready();
  EXPECT_EQ(rec_.reads, std::vector<ssize_t>{static_cast<ssize_t>(IoBuffer::kSize)});

  tcp_.buffer().clear();
  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return rec_.reads.back() < 0; });
  EXPECT_EQ(rec_.reads, (std::vector<ssize_t>{static_cast<ssize_t>(IoBuffer::kSize), 100, UV_EOF}));
  EXPECT_EQ(buffered(), sent.substr(IoBuffer::kSize));
}

TEST_F(TcpTransportSocketTest, BytesThatCameWhileNotReadingAreReadWhenReadingStarts) {
  // Their event comes and goes while the transport is not reading; starting again must
  // read them, with no new bytes (no new event) to prompt it.
  connect_pair();
  ASSERT_EQ(tcp_.start_reading(), 0);
  peer_send("a");
  run_until([&] { return bytes_read() == 1; });  // a short read: the socket is drained
  tcp_.stop_reading();
  peer_send("bc");
  pollfd p{tcp_.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  run_ready();  // the event is delivered now, to a transport that does not read
  EXPECT_EQ(bytes_read(), 1u);

  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return bytes_read() == 3; });
  EXPECT_EQ(buffered(), "abc");
}

TEST_F(TcpTransportSocketTest, ReadingStoppedWithBytesLeftResumesWithoutNewBytes) {
  // The handler takes what it got and stops reading from inside on_read, more bytes
  // waiting in the socket; started again, it reads them all (taking each buffer and
  // asking for more, as a codec does), though the peer sends nothing new.
  connect_pair();
  const std::string sent = pattern(3 * IoBuffer::kSize + 500, 8);
  std::string taken;
  bool stop = true;
  rec_.read_hook = [&](ssize_t n) {
    if (n <= 0) return;
    taken.append(buffered());
    tcp_.buffer().clear();
    if (stop) {
      stop = false;
      tcp_.stop_reading();
      return;
    }
    ASSERT_EQ(tcp_.start_reading(), 0);
  };
  peer_send(sent);
  pollfd p{tcp_.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  run_ready();  // the registration's report is spent: what follows raises no event
  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return !rec_.reads.empty(); });
  const size_t first = taken.size();
  run_ready();
  EXPECT_EQ(taken.size(), first);  // stopped: nothing more
  EXPECT_FALSE(tcp_.reading());
  ASSERT_LT(first, sent.size());
  char c;
  EXPECT_EQ(::recv(tcp_.fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT), 1);  // the rest waits in the socket

  ASSERT_EQ(tcp_.start_reading(), 0);
  run_until([&] { return taken.size() == sent.size(); });
  EXPECT_TRUE(taken == sent);
  EXPECT_TRUE(tcp_.reading());
}

TEST_F(TcpTransportSocketTest, WriteThatFillsTheSocketCompletesOnEpolloutThenASecondWriteWorks) {
  connect_pair(true);
  std::string a = pattern(4 << 20, 9);
  uv_buf_t buf = uv_buf_init(a.data(), static_cast<unsigned>(a.size()));
  ASSERT_EQ(tcp_.write(&buf, 1), Transport::kQueued);  // the socket is full
  read_at_peer();
  run_until([&] { return !rec_.write_dones.empty() && reader_->got.size() == a.size(); });
  EXPECT_EQ(rec_.write_dones, std::vector<int>{0});
  EXPECT_FALSE(tcp_.write_pending());

  // The socket fills again: the second write waits for a new EPOLLOUT.
  std::string b = pattern(3 << 20, 10);
  buf = uv_buf_init(b.data(), static_cast<unsigned>(b.size()));
  ASSERT_EQ(tcp_.write(&buf, 1), Transport::kQueued);
  run_until([&] { return rec_.write_dones.size() == 2 && reader_->got.size() == a.size() + b.size(); });
  EXPECT_EQ(rec_.write_dones, (std::vector<int>{0, 0}));
  EXPECT_TRUE(reader_->got == a + b);

  char small[] = "tail";
  buf = uv_buf_init(small, 4);
  EXPECT_EQ(tcp_.write(&buf, 1), Transport::kWritten);  // room again: at once
  run_until([&] { return reader_->got.size() == a.size() + b.size() + 4; });
  EXPECT_EQ(reader_->got.substr(a.size() + b.size()), "tail");
}

TEST_F(TcpTransportSocketTest, WriteFromOnWriteDoneThatFillsTheSocketCompletesToo) {
  // As a codec does: the next chunk is written from the previous one's on_write_done,
  // inside the EPOLLOUT event that finished it.
  connect_pair(true);
  std::string a = pattern(2 << 20, 11);
  std::string b = pattern(2 << 20, 12);
  uv_buf_t buf = uv_buf_init(a.data(), static_cast<unsigned>(a.size()));
  int second = 0;
  rec_.write_hook = [&](int status) {
    if (status != 0 || rec_.write_dones.size() != 1) return;
    buf = uv_buf_init(b.data(), static_cast<unsigned>(b.size()));
    second = tcp_.write(&buf, 1);
  };
  ASSERT_EQ(tcp_.write(&buf, 1), Transport::kQueued);
  read_at_peer();
  run_until([&] { return rec_.write_dones.size() == 2 && reader_->got.size() == a.size() + b.size(); });
  EXPECT_EQ(second, Transport::kQueued);
  EXPECT_EQ(rec_.write_dones, (std::vector<int>{0, 0}));
  EXPECT_TRUE(reader_->got == a + b);
}

TEST_F(TcpTransportSocketTest, ConnectRefusedIsReported) {
  ::close(listen_fd_);  // nothing listens on the port any more
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(tcp_.init(poller_), 0);
  ASSERT_EQ(tcp_.connect(reinterpret_cast<const sockaddr*>(&addr_)), 0);
  run_until([&] { return !rec_.connects.empty(); });
  EXPECT_EQ(rec_.connects, std::vector<int>{UV_ECONNREFUSED});
}

}  // namespace
}  // namespace ringproxy
