// TlsTransport and ServerTlsContext against a real OpenSSL client on loopback: the
// client runs in a thread of its own with a blocking socket; the server side is the
// transport on the test's loop, run until the client is done (a failure, not a hang,
// after 10 s). Certificates are made by the test (tests/support/tls_certs.h).
#include "net/tls_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/loopback.h"
#include "tests/support/tls_certs.h"

namespace ringproxy {
namespace {

// ---------------------------------------------------------------------------------------
// Names

TEST(TlsNames, ExactAndOneLabelWildcards) {
  EXPECT_TRUE(ServerTlsContext::name_matches("a.example", "a.example"));
  EXPECT_TRUE(ServerTlsContext::name_matches("a.example", "A.Example"));
  EXPECT_FALSE(ServerTlsContext::name_matches("a.example", "b.example"));
  EXPECT_TRUE(ServerTlsContext::name_matches("*.b.example", "x.b.example"));
  EXPECT_FALSE(ServerTlsContext::name_matches("*.b.example", "b.example"));
  EXPECT_FALSE(ServerTlsContext::name_matches("*.b.example", "y.x.b.example"));
  EXPECT_FALSE(ServerTlsContext::name_matches("*.b.example", ".b.example"));
}

// ---------------------------------------------------------------------------------------
// The client

struct ClientOptions {
  std::string sni;
  std::string alpn = "http/1.1";  // one protocol offered ("" none)
  int max_version = 0;            // e.g. TLS1_1_VERSION
  SSL_SESSION* session = nullptr; // to resume
  bool plain = false;             // send an HTTP request without TLS
  std::string send = "ping";
  size_t expect = 4;              // bytes to read back
  bool close_notify = true;       // SSL_shutdown before closing
};

struct ClientResult {
  bool handshake_ok = false;
  std::string error;
  std::string peer_cn;  // of the certificate the server sent
  std::string alpn;
  std::string got;
  bool resumed = false;
  SSL_SESSION* session = nullptr;  // the caller frees it
};

ClientResult run_client(uint16_t port, const ClientOptions& o) {
  ClientResult r;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    r.error = "connect failed";
    ::close(fd);
    return r;
  }
  if (o.plain) {
    const std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) r.got.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return r;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (o.max_version != 0) {
    SSL_CTX_set_security_level(ctx, 0);  // let the old version be offered at all
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, o.max_version);
  }
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  // SSL_set_tlsext_host_name, without its C cast.
  if (!o.sni.empty()) {
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(o.sni.c_str()));
  }
  if (!o.alpn.empty()) {
    std::string wire(1, static_cast<char>(o.alpn.size()));
    wire += o.alpn;
    SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
  }
  if (o.session != nullptr) SSL_set_session(ssl, o.session);
  if (SSL_connect(ssl) == 1) {
    r.handshake_ok = true;
    if (X509* peer = SSL_get1_peer_certificate(ssl)) {
      char cn[256] = {};
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
      r.peer_cn = cn;
      X509_free(peer);
    }
    const unsigned char* p = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    if (p != nullptr) r.alpn.assign(reinterpret_cast<const char*>(p), len);
    if (!o.send.empty()) SSL_write(ssl, o.send.data(), static_cast<int>(o.send.size()));
    char buf[16384];
    while (r.got.size() < o.expect) {
      const int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) break;
      r.got.append(buf, static_cast<size_t>(n));
    }
    r.resumed = SSL_session_reused(ssl) == 1;
    r.session = SSL_get1_session(ssl);
    if (o.close_notify) SSL_shutdown(ssl);
  } else {
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    r.error = buf;
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return r;
}

// ---------------------------------------------------------------------------------------
// The server side

// Answers "pong" once "ping" came; records every callback.
class Echo final : public Transport::Handler {
 public:
  TlsTransport* t = nullptr;
  std::string reply = "pong";
  std::string got;
  std::vector<ssize_t> errors;  // on_read's negative values
  std::vector<int> write_dones;
  int closed = 0;
  int writes_queued = 0;

  void on_read(ssize_t n) override {
    if (n < 0) {
      errors.push_back(n);
      t->close();  // as the codec does after an error or the end
      return;
    }
    IoBuffer& in = t->buffer();
    got.append(in.begin_ptr(), in.size());
    in.consume(in.size());
    if (got == "ping" && !reply.empty()) {
      uv_buf_t b = uv_buf_init(reply.data(), static_cast<unsigned>(reply.size()));
      const int rc = t->write(&b, 1);
      if (rc == Transport::kQueued) ++writes_queued;
      EXPECT_GE(rc, 0);
    }
  }
  void on_write_done(int status) override { write_dones.push_back(status); }
  void on_closed() override { ++closed; }
};

class TlsTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ASSERT_EQ(poller_.init(&loop_), 0);
    ASSERT_EQ(uv_timer_init(&loop_, &guard_), 0);
    ASSERT_EQ(uv_async_init(&loop_, &wake_, [](uv_async_t*) {}), 0);
    listen_fd_ = test::bound_loopback_socket(SOCK_CLOEXEC);
    ASSERT_EQ(::listen(listen_fd_, 8), 0);
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    a_ = test::make_cert(dir_.path(), "a", {"a.example"});
    b_ = test::make_cert(dir_.path(), "b", {"*.b.example"}, test::KeyType::kRsa);
  }
  void TearDown() override {
    for (auto& t : transports_) {
      if (!t->closing()) t->close();
    }
    run_until([&] {
      for (auto& e : echoes_) {
        if (e->closed == 0) return false;
      }
      return true;
    });
    for (auto& e : echoes_) EXPECT_EQ(e->closed, 1);
    transports_.clear();
    poller_.close();
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    ::close(listen_fd_);
    test::free_cert(a_);
    test::free_cert(b_);
  }

  std::shared_ptr<const ServerTlsContext> context(ServerTlsConfig c = {}, std::shared_ptr<TicketKeys> keys = nullptr) {
    if (c.certificates.empty()) {
      c.certificates.push_back({a_.cert_path, a_.key_path, {}, {}});
      c.certificates.push_back({b_.cert_path, b_.key_path, {}, {}});
    }
    c.enabled = true;
    std::string error;
    auto ctx = ServerTlsContext::create(c, keys ? keys : std::make_shared<TicketKeys>(), &error);
    EXPECT_NE(ctx, nullptr) << error;
    return ctx;
  }

  // One client connection served by a new TlsTransport with `ctx`; returns the client's
  // result once it is done and `until` holds on the server side.
  ClientResult serve(const std::shared_ptr<const ServerTlsContext>& ctx, const ClientOptions& o,
                     const std::function<bool(Echo&)>& until = nullptr, uint32_t handshake_ms = 10000) {
    ClientResult result;
    std::atomic<bool> done{false};
    std::thread client([&] {
      result = run_client(port_, o);
      done = true;
      uv_async_send(&wake_);  // the loop may be waiting for nothing else
    });
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    EXPECT_GE(fd, 0);
    auto echo = std::make_unique<Echo>();
    auto t = std::make_unique<TlsTransport>(pool_, *echo);
    echo->t = t.get();
    t->init(poller_);
    EXPECT_EQ(t->open_server(fd, false, ctx, handshake_ms), 0);
    t->start_reading();
    Echo& e = *echo;
    transports_.push_back(std::move(t));
    echoes_.push_back(std::move(echo));
    run_until([&] { return done.load() && (!until || until(e)); });
    client.join();
    return result;
  }
  Echo& last() { return *echoes_.back(); }
  TlsTransport& last_transport() { return *transports_.back(); }

  void run_until(const std::function<bool()>& f) { test::run_loop_until(&loop_, &guard_, f); }

  test::TempDir dir_;
  uv_loop_t loop_{};
  Poller poller_;
  uv_timer_t guard_{};
  uv_async_t wake_{};  // the client thread's "done"
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  BufferPool pool_;
  test::TestCert a_, b_;
  std::vector<std::unique_ptr<Echo>> echoes_;
  std::vector<std::unique_ptr<TlsTransport>> transports_;
};

TEST_F(TlsTransportTest, HandshakeThenBytesBothWaysThenCloseNotifyIsEof) {
  const ClientResult r = serve(context(), {.sni = "a.example"}, [](Echo& e) { return !e.errors.empty(); });
  ASSERT_TRUE(r.handshake_ok) << r.error;
  EXPECT_EQ(r.got, "pong");
  EXPECT_EQ(last().got, "ping");
  EXPECT_EQ(r.alpn, "http/1.1");
  EXPECT_EQ(last_transport().alpn(), "http/1.1");
  EXPECT_EQ(last_transport().version(), "TLSv1.3");
  EXPECT_FALSE(last_transport().cipher().empty());
  EXPECT_EQ(last().errors, std::vector<ssize_t>{UV_EOF});  // close_notify
  if (r.session) SSL_SESSION_free(r.session);
}

TEST_F(TlsTransportTest, SniPicksTheCertificateByNameAndWildcardElseTheFirst) {
  const auto ctx = context();
  ASSERT_EQ(ctx->names().size(), 2u);
  struct Case {
    std::string sni, cn;
  };
  for (const Case& c : {Case{"a.example", "a.example"}, Case{"x.b.example", "*.b.example"},
                        Case{"B.EXAMPLE", "a.example"}, Case{"other.example", "a.example"}, Case{"", "a.example"}}) {
    const ClientResult r = serve(ctx, {.sni = c.sni});
    ASSERT_TRUE(r.handshake_ok) << c.sni << ": " << r.error;
    EXPECT_EQ(r.peer_cn, c.cn) << "SNI " << c.sni;
    EXPECT_EQ(r.got, "pong");
    if (r.session) SSL_SESSION_free(r.session);
  }
}

TEST_F(TlsTransportTest, EcdsaAndRsaForTheSameNamesShareASite) {
  test::TestCert rsa = test::make_cert(dir_.path(), "a-rsa", {"a.example"}, test::KeyType::kRsa);
  ServerTlsConfig c;
  c.certificates.push_back({a_.cert_path, a_.key_path, {}, {}});
  c.certificates.push_back({rsa.cert_path, rsa.key_path, {}, {}});
  c.certificates.push_back({b_.cert_path, b_.key_path, {}, {}});
  const auto ctx = context(c);
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(ctx->names().size(), 2u);  // a.example (two keys), *.b.example
  const ClientResult r = serve(ctx, {.sni = "a.example"});
  EXPECT_TRUE(r.handshake_ok) << r.error;
  if (r.session) SSL_SESSION_free(r.session);
  test::free_cert(rsa);
}

TEST_F(TlsTransportTest, AKeyThatDoesNotMatchItsCertificateIsRefusedWithTheFileNamed) {
  ServerTlsConfig c;
  c.certificates.push_back({a_.cert_path, b_.key_path, {}, {}});
  std::string error;
  EXPECT_EQ(ServerTlsContext::create(c, nullptr, &error), nullptr);
  EXPECT_NE(error.find(b_.key_path), std::string::npos) << error;
}

TEST_F(TlsTransportTest, TlsOneOneIsRefused) {
  const ClientResult r = serve(context(), {.sni = "", .max_version = TLS1_1_VERSION}, [](Echo& e) { return !e.errors.empty(); });
  EXPECT_FALSE(r.handshake_ok);
  EXPECT_EQ(last().errors, std::vector<ssize_t>{UV_EPROTO});
  EXPECT_FALSE(last_transport().handshake_error().empty());
}

TEST_F(TlsTransportTest, PlainHttpOnTheTlsPortFailsTheHandshake) {
  const ClientResult r = serve(context(), {.sni = "", .plain = true}, [](Echo& e) { return !e.errors.empty(); });
  EXPECT_EQ(last().errors, std::vector<ssize_t>{UV_EPROTO});
  EXPECT_NE(last_transport().handshake_error().find("http request"), std::string::npos)
      << last_transport().handshake_error();
}

TEST_F(TlsTransportTest, AClientThatNeverHandshakesIsTimedOut) {
  std::atomic<bool> stop{false};
  std::thread client([&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port_);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    while (!stop.load()) std::this_thread::yield();  // says nothing
    ::close(fd);
  });
  const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  auto echo = std::make_unique<Echo>();
  auto t = std::make_unique<TlsTransport>(pool_, *echo);
  echo->t = t.get();
  t->init(poller_);
  ASSERT_EQ(t->open_server(fd, false, context(), /*handshake_timeout_ms=*/20), 0);
  t->start_reading();
  Echo& e = *echo;
  transports_.push_back(std::move(t));
  echoes_.push_back(std::move(echo));
  run_until([&] { return !e.errors.empty(); });
  stop = true;
  client.join();
  EXPECT_EQ(e.errors, std::vector<ssize_t>{UV_ETIMEDOUT});
}

TEST_F(TlsTransportTest, ATicketFromOneWorkersContextResumesOnAnothers) {
  auto keys = std::make_shared<TicketKeys>();
  const auto worker1 = context({}, keys);
  const auto worker2 = context({}, keys);
  ClientResult first = serve(worker1, {.sni = "a.example"});
  ASSERT_TRUE(first.handshake_ok) << first.error;
  ASSERT_NE(first.session, nullptr);
  ClientResult second = serve(worker2, {.sni = "a.example", .session = first.session});
  ASSERT_TRUE(second.handshake_ok) << second.error;
  EXPECT_TRUE(second.resumed);
  EXPECT_TRUE(last_transport().resumed());
  // After a rotation the old key still decrypts; after kKept more, it is gone.
  keys->rotate();
  ClientResult third = serve(worker2, {.sni = "a.example", .session = second.session});
  EXPECT_TRUE(third.resumed);
  for (size_t i = 0; i < TicketKeys::kKept; ++i) keys->rotate();
  ClientResult fourth = serve(worker1, {.sni = "a.example", .session = third.session});
  EXPECT_TRUE(fourth.handshake_ok);
  EXPECT_FALSE(fourth.resumed);
  for (SSL_SESSION* s : {first.session, second.session, third.session, fourth.session}) {
    if (s) SSL_SESSION_free(s);
  }
}

// A record only partly received must wait for its rest on the socket's next event, not
// be retried at once turn after turn: SSL_has_pending() counts such a record, and
// deferring on it spun the worker at 100% CPU until the rest came (found in review).
TEST_F(TlsTransportTest, APartialRecordWaitsForItsRestWithoutSpinning) {
  struct Client final : Transport::Handler {
    int connects = 0;
    void on_connect(int status) override {
      EXPECT_EQ(status, 0);
      ++connects;
    }
    void on_read(ssize_t) override {}
    void on_write_done(int) override {}
    void on_closed() override { closed = true; }
    bool closed = false;
  } client_handler;
  UpstreamTlsConfig lax;
  lax.verify = false;
  std::string error;
  const auto client_ctx = ClientTlsContext::create(lax, &error);
  ASSERT_NE(client_ctx, nullptr) << error;
  TlsTransport client(pool_, client_handler);
  client.init(poller_);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port_);
  ASSERT_EQ(client.connect_client(reinterpret_cast<const sockaddr*>(&sa), client_ctx, "a.example", nullptr, 0), 0);
  const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto echo = std::make_unique<Echo>();
  auto server = std::make_unique<TlsTransport>(pool_, *echo);
  echo->t = server.get();
  server->init(poller_);
  ASSERT_EQ(server->open_server(fd, false, context(), 10000), 0);
  server->start_reading();
  TlsTransport& s = *server;
  transports_.push_back(std::move(server));
  echoes_.push_back(std::move(echo));
  run_until([&] { return client_handler.connects == 1 && s.handshake_done(); });
  // Application data: a record header announcing 64 bytes, and one of them.
  const char partial[] = {0x17, 0x03, 0x03, 0x00, 0x40, 0x2a};
  ASSERT_EQ(::send(client.tcp().fd(), partial, sizeof partial, 0), static_cast<ssize_t>(sizeof partial));
  for (int i = 0; i < 20; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(poller_.deferred(), 0u) << "the server retries a partial record without new bytes";
  EXPECT_TRUE(last().got.empty());
  EXPECT_TRUE(last().errors.empty());
  client.close();
  run_until([&] { return client_handler.closed; });
}

TEST(TlsBuffers, KeptUpToACountOfConnectionsPerLoop) {
  BufferPool pool;
  EXPECT_TRUE(pool.keep_tls_buffers());
  for (size_t i = 0; i < BufferPool::kTlsKept; ++i) pool.tls_opened();
  EXPECT_TRUE(pool.keep_tls_buffers());
  pool.tls_opened();  // one more: idle connections give OpenSSL's buffers back
  EXPECT_FALSE(pool.keep_tls_buffers());
  pool.tls_closed();
  EXPECT_TRUE(pool.keep_tls_buffers());
}

TEST_F(TlsTransportTest, ATransportCountsInItsLoopsPoolWhileItLives) {
  const auto ctx = context();
  const ClientResult r = serve(ctx, {.sni = "a.example"}, [](Echo& e) { return e.got == "ping"; });
  if (r.session) SSL_SESSION_free(r.session);
  EXPECT_EQ(pool_.tls_live(), 1u);
  last_transport().release_buffer();  // idle, and few connections: OpenSSL's buffers stay
  if (!last_transport().closing()) last_transport().close();
  run_until([&] { return last().closed > 0; });
  transports_.clear();
  EXPECT_EQ(pool_.tls_live(), 0u);
}

TEST_F(TlsTransportTest, ALargeWriteIsQueuedThenCompletes) {
  const auto ctx = context();
  ClientOptions o{.sni = "a.example"};
  o.expect = 4 << 20;
  std::string big(o.expect, 'z');
  ClientResult result;
  std::atomic<bool> done{false};
  std::thread client([&] {
    result = run_client(port_, o);
    done = true;
    uv_async_send(&wake_);
  });
  const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  const int small = 4096;  // so that 4 MB cannot be sent at once, whatever the client does
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  auto echo = std::make_unique<Echo>();
  echo->reply = big;
  auto t = std::make_unique<TlsTransport>(pool_, *echo);
  echo->t = t.get();
  t->init(poller_);
  ASSERT_EQ(t->open_server(fd, false, ctx, 10000), 0);
  t->start_reading();
  Echo& e = *echo;
  transports_.push_back(std::move(t));
  echoes_.push_back(std::move(echo));
  run_until([&] { return done.load() && (e.writes_queued == 0 || !e.write_dones.empty()); });
  client.join();
  EXPECT_EQ(result.got.size(), big.size());
  EXPECT_EQ(e.writes_queued, 1);  // 4 MB do not fit in the socket at once
  EXPECT_EQ(e.write_dones, std::vector<int>{0});
  if (result.session) SSL_SESSION_free(result.session);
}

}  // namespace
}  // namespace ringproxy
