// TlsTransport::connect_client and ClientTlsContext (SPEC "TLS", [upstream_tls]) against
// a real OpenSSL server on loopback: the server runs in a thread of its own with
// blocking sockets and records what it saw (SNI, ALPN, resumption, the client's
// certificate); the client side is the transport on the test's loop, run until both
// sides are done (a failure, not a hang, after 10 s). Certificates are made by the test
// (tests/support/tls_certs.h).
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
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/tls_transport.h"
#include "tests/support/loopback.h"
#include "tests/support/tls_certs.h"

namespace ringproxy {
namespace {

// ---------------------------------------------------------------------------------------
// The server: OpenSSL, blocking, one thread, `connections` connections one after the
// other, all on one SSL_CTX (so its tickets resume on it).

struct ServerOptions {
  std::string cert, key;
  std::string client_ca;             // set: a client certificate is asked for, verified against it
  bool require_client_cert = false;  // ... and required (the handshake fails without one)
  int max_version = 0;               // e.g. TLS1_2_VERSION; 0: OpenSSL's (TLS 1.3)
  // How a connection goes: the whole exchange ("ping" in, "pong" out); or read the
  // ClientHello and close (FIN); or the same with a reset; or accept and say nothing; or
  // read the ClientHello and answer it with plain HTTP.
  enum class Mode { kServe, kCloseAfterHello, kResetAfterHello, kSilent, kPlainHttp } mode = Mode::kServe;
};

struct Seen {
  bool handshake_ok = false;
  std::string error;
  bool had_sni = false;
  std::string sni;
  std::string offered_alpn;  // what the client offered, wire format without lengths: "http/1.1"
  bool resumed = false;
  std::string client_subject;  // one line, "" when no certificate came
  std::string got;             // bytes read after the handshake
  std::string version;
};

class OpenSslServer {
 public:
  OpenSslServer(ServerOptions o, int connections, uv_async_t* wake) : o_(std::move(o)), wake_(wake) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    if (o_.max_version != 0) SSL_CTX_set_max_proto_version(ctx_, o_.max_version);
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(ctx_, o_.cert.c_str()), 1) << o_.cert;
    EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx_, o_.key.c_str(), SSL_FILETYPE_PEM), 1) << o_.key;
    static constexpr unsigned char kContext[] = "tls_client_test";
    SSL_CTX_set_session_id_context(ctx_, kContext, sizeof kContext - 1);
    SSL_CTX_set_alpn_select_cb(ctx_, on_alpn, this);
    // SSL_CTX_set_tlsext_servername_callback, without its C cast: the SNI is recorded
    // whether or not the handshake then succeeds.
    SSL_CTX_callback_ctrl(ctx_, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB, reinterpret_cast<void (*)()>(on_servername));
    SSL_CTX_set_tlsext_servername_arg(ctx_, this);
    if (!o_.client_ca.empty()) {
      EXPECT_EQ(SSL_CTX_load_verify_locations(ctx_, o_.client_ca.c_str(), nullptr), 1);
      SSL_CTX_set_client_CA_list(ctx_, SSL_load_client_CA_file(o_.client_ca.c_str()));
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | (o_.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                         nullptr);
    }
    fd_ = test::bound_loopback_socket(SOCK_CLOEXEC);
    EXPECT_EQ(::listen(fd_, 8), 0);
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    addr_ = sa;
    thread_ = std::thread([this, connections, listener = fd_] {
      for (int i = 0; i < connections; ++i) {
        const int c = ::accept(listener, nullptr, nullptr);
        if (c < 0) return;
        Seen s = serve(c);
        {
          std::lock_guard<std::mutex> lock(mu_);
          seen_.push_back(std::move(s));
        }
        ++served_;
        uv_async_send(wake_);  // the loop may be waiting for nothing else
      }
    });
  }
  ~OpenSslServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);  // wakes an accept() that got no connection
    thread_.join();
    ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  OpenSslServer(const OpenSslServer&) = delete;
  OpenSslServer& operator=(const OpenSslServer&) = delete;

  const sockaddr* address() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  int served() const { return served_.load(); }
  // What connection `i` saw; valid once served() > i.
  Seen seen(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return i < seen_.size() ? seen_[i] : Seen{};
  }

 private:
  static int on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                     unsigned int inlen, void* arg) {
    auto* self = static_cast<OpenSslServer*>(arg);
    std::string offered;
    for (unsigned i = 0; i < inlen;) {
      const unsigned n = in[i];
      if (!offered.empty()) offered += ",";
      offered.append(reinterpret_cast<const char*>(in + i + 1), std::min<unsigned>(n, inlen - i - 1));
      i += n + 1;
    }
    self->offered_alpn_ = offered;
    static constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
      return SSL_TLSEXT_ERR_NOACK;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }

  static int on_servername(SSL* ssl, int*, void* arg) {
    auto* self = static_cast<OpenSslServer*>(arg);
    const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    self->had_sni_ = sni != nullptr;
    self->sni_ = sni != nullptr ? sni : "";
    return SSL_TLSEXT_ERR_OK;
  }

  // Reads one whole TLS record (the ClientHello): its 5-byte header says how long.
  static void read_client_hello(int c) {
    std::string in;
    char buf[4096];
    auto record_end = [&] {
      return 5 + ((static_cast<size_t>(static_cast<unsigned char>(in[3])) << 8) | static_cast<unsigned char>(in[4]));
    };
    while (in.size() < 5 || in.size() < record_end()) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
    }
  }

  Seen serve(int c) {
    Seen s;
    const timeval tv{10, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    switch (o_.mode) {
      case ServerOptions::Mode::kCloseAfterHello:
        read_client_hello(c);
        ::close(c);
        s.error = "closed after the ClientHello";
        return s;
      case ServerOptions::Mode::kResetAfterHello: {
        read_client_hello(c);
        const linger l{1, 0};
        ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        ::close(c);
        s.error = "reset after the ClientHello";
        return s;
      }
      case ServerOptions::Mode::kSilent: {
        char buf[4096];
        // Until the client gives up (or 10 s): never a byte back.
        while (!stop_.load() && ::recv(c, buf, sizeof buf, 0) > 0) {
        }
        ::close(c);
        s.error = "said nothing";
        return s;
      }
      case ServerOptions::Mode::kPlainHttp: {
        read_client_hello(c);
        const std::string answer = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        ::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
        ::close(c);
        s.error = "answered in plain HTTP";
        return s;
      }
      case ServerOptions::Mode::kServe:
        break;
    }
    offered_alpn_.clear();
    had_sni_ = false;
    sni_.clear();
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, c);
    if (SSL_accept(ssl) == 1) {
      s.handshake_ok = true;
      s.version = SSL_get_version(ssl);
      s.offered_alpn = offered_alpn_;
      s.resumed = SSL_session_reused(ssl) == 1;
      if (X509* peer = SSL_get1_peer_certificate(ssl)) {
        char line[256] = {};
        X509_NAME_oneline(X509_get_subject_name(peer), line, sizeof line);
        s.client_subject = line;
        X509_free(peer);
      }
      char buf[256];
      while (s.got.size() < 4) {
        const int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0) {
          ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
          s.error = buf;
          break;
        }
        s.got.append(buf, static_cast<size_t>(n));
      }
      if (s.got == "ping") SSL_write(ssl, "pong", 4);
      SSL_shutdown(ssl);
    } else {
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
      s.error = buf;
      s.offered_alpn = offered_alpn_;
    }
    s.had_sni = had_sni_;
    s.sni = sni_;
    SSL_free(ssl);
    ::close(c);
    return s;
  }

  ServerOptions o_;
  uv_async_t* wake_;
  SSL_CTX* ctx_ = nullptr;
  int fd_ = -1;
  sockaddr_in addr_{};
  std::thread thread_;
  std::atomic<int> served_{0};
  std::atomic<bool> stop_{false};
  std::string offered_alpn_;  // these three: the server thread's only
  bool had_sni_ = false;
  std::string sni_;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

// ---------------------------------------------------------------------------------------
// The client: a TlsTransport that sends "ping" once connected and closes after "pong"
// (or any error), recording every callback.

class Client final : public Transport::Handler {
 public:
  explicit Client(BufferPool& pool) : t(pool, *this) {}
  TlsTransport t;
  std::vector<int> connects;   // on_connect's statuses
  int write_rc = 0;             // the write of "ping"
  std::string got;
  std::vector<ssize_t> errors;  // on_read's negative values
  int closed = 0;
  bool alpn_checked = false;
  std::string alpn, version;
  bool resumed = false;

  void on_connect(int status) override {
    connects.push_back(status);
    if (status < 0) {
      t.close();
      return;
    }
    alpn = std::string(t.alpn());
    version = std::string(t.version());
    resumed = t.resumed();
    std::string ping = "ping";
    uv_buf_t b = uv_buf_init(ping.data(), 4);
    write_rc = t.write(&b, 1);
    if (write_rc < 0) {
      t.close();
      return;
    }
    EXPECT_EQ(t.start_reading(), 0);
  }
  void on_read(ssize_t n) override {
    if (n < 0) {
      errors.push_back(n);
      t.close();
      return;
    }
    IoBuffer& in = t.buffer();
    got.append(in.begin_ptr(), in.size());
    in.consume(in.size());
    if (got == "pong") t.close();
  }
  void on_write_done(int) override {}
  void on_closed() override { ++closed; }
};

class TlsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ASSERT_EQ(poller_.init(&loop_), 0);
    ASSERT_EQ(uv_timer_init(&loop_, &guard_), 0);
    ASSERT_EQ(uv_async_init(&loop_, &wake_, [](uv_async_t*) {}), 0);
    const std::string d = dir_.path();
    ca_ = test::make_cert(d, "ca", {"Test CA"}, test::KeyType::kEc, nullptr, -3600, 86400L * 365, true);
    other_ca_ = test::make_cert(d, "other-ca", {"Other CA"}, test::KeyType::kEc, nullptr, -3600, 86400L * 365, true);
    backend_ = test::make_cert(d, "backend", {"backend.example"}, test::KeyType::kEc, &ca_);
    ip_ = test::make_cert(d, "ip", {"IP:127.0.0.1"}, test::KeyType::kRsa, &ca_);
    other_ip_ = test::make_cert(d, "other-ip", {"IP:127.0.0.2", "backend.example"}, test::KeyType::kEc, &ca_);
    untrusted_ = test::make_cert(d, "untrusted", {"backend.example"}, test::KeyType::kEc, &other_ca_);
    expired_ = test::make_cert(d, "expired", {"backend.example"}, test::KeyType::kEc, &ca_, -86400L * 30, -86400L);
    self_signed_ = test::make_cert(d, "self", {"whoever.invalid"});
    client_ca_ = test::make_cert(d, "client-ca", {"Client CA"}, test::KeyType::kEc, nullptr, -3600, 86400L * 365, true);
    client_ = test::make_cert(d, "client", {"proxy-client"}, test::KeyType::kEc, &client_ca_);
  }
  void TearDown() override {
    for (auto& c : clients_) {
      if (!c->t.closing()) c->t.close();
    }
    run_until([&] {
      for (auto& c : clients_) {
        if (c->closed == 0) return false;
      }
      return true;
    });
    for (auto& c : clients_) EXPECT_EQ(c->closed, 1);
    clients_.clear();
    servers_.clear();  // joins the server threads before the loop's async goes
    poller_.close();
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    for (test::TestCert* c : {&ca_, &other_ca_, &backend_, &ip_, &other_ip_, &untrusted_, &expired_, &self_signed_,
                              &client_ca_, &client_}) {
      test::free_cert(*c);
    }
  }

  OpenSslServer& server(const test::TestCert& cert, ServerOptions o = {}, int connections = 1) {
    o.cert = cert.cert_path;
    o.key = cert.key_path;
    servers_.push_back(std::make_unique<OpenSslServer>(o, connections, &wake_));
    return *servers_.back();
  }

  std::shared_ptr<const ClientTlsContext> context(UpstreamTlsConfig c) {
    std::string error;
    auto ctx = ClientTlsContext::create(c, &error);
    EXPECT_NE(ctx, nullptr) << error;
    return ctx;
  }
  std::shared_ptr<const ClientTlsContext> trusting_ca() {
    UpstreamTlsConfig c;
    c.ca = ca_.cert_path;
    return context(c);
  }

  // One connection to `s` as `name`; runs until the client is closed and the server has
  // recorded the connection. Returns the client (owned by the fixture).
  Client& connect(OpenSslServer& s, const std::shared_ptr<const ClientTlsContext>& ctx, const std::string& name,
                  TlsSessionCache* cache = nullptr, uint32_t handshake_timeout_ms = 0) {
    const int before = s.served();
    clients_.push_back(std::make_unique<Client>(pool_));
    Client& c = *clients_.back();
    c.t.init(poller_);
    EXPECT_EQ(c.t.connect_client(s.address(), ctx, name, cache, handshake_timeout_ms), 0);
    run_until([&] { return c.closed == 1 && s.served() > before; });
    return c;
  }

  void run_until(const std::function<bool()>& f) { test::run_loop_until(&loop_, &guard_, f); }

  test::TempDir dir_;
  uv_loop_t loop_{};
  Poller poller_;
  uv_timer_t guard_{};
  uv_async_t wake_{};  // a server thread's "done"
  BufferPool pool_;
  test::TestCert ca_, other_ca_, backend_, ip_, other_ip_, untrusted_, expired_, self_signed_, client_ca_, client_;
  std::vector<std::unique_ptr<OpenSslServer>> servers_;
  std::vector<std::unique_ptr<Client>> clients_;
};

TEST_F(TlsClientTest, HandshakeWithTheRightCaAndNameThenBytesBothWays) {
  OpenSslServer& s = server(backend_);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.connects, std::vector<int>{0});
  EXPECT_TRUE(c.t.handshake_error().empty()) << c.t.handshake_error();
  EXPECT_EQ(c.got, "pong");
  EXPECT_EQ(c.alpn, "http/1.1");
  EXPECT_EQ(c.version, "TLSv1.3");
  EXPECT_FALSE(c.resumed);
  const Seen seen = s.seen(0);
  ASSERT_TRUE(seen.handshake_ok) << seen.error;
  EXPECT_EQ(seen.got, "ping");
  EXPECT_EQ(seen.offered_alpn, "http/1.1");  // http/1.1 only: no h2 offered
  EXPECT_TRUE(seen.client_subject.empty());  // no client certificate configured
}

TEST_F(TlsClientTest, TlsOneTwoServerIsFine) {
  ServerOptions o;
  o.max_version = TLS1_2_VERSION;
  OpenSslServer& s = server(backend_, o);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.connects, std::vector<int>{0}) << c.t.handshake_error();
  EXPECT_EQ(c.got, "pong");
  EXPECT_EQ(c.version, "TLSv1.2");
  EXPECT_EQ(c.alpn, "http/1.1");
}

TEST_F(TlsClientTest, SniIsSentForADnsName) {
  OpenSslServer& s = server(backend_);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.connects, std::vector<int>{0}) << c.t.handshake_error();
  const Seen seen = s.seen(0);
  EXPECT_TRUE(seen.had_sni);
  EXPECT_EQ(seen.sni, "backend.example");
}

TEST_F(TlsClientTest, AnIpAddressIsVerifiedAgainstTheIpSanAndNotSentAsSni) {
  OpenSslServer& s = server(ip_);
  Client& c = connect(s, trusting_ca(), "127.0.0.1");
  EXPECT_EQ(c.connects, std::vector<int>{0}) << c.t.handshake_error();
  EXPECT_EQ(c.got, "pong");
  const Seen seen = s.seen(0);
  ASSERT_TRUE(seen.handshake_ok) << seen.error;
  EXPECT_FALSE(seen.had_sni) << "SNI sent: " << seen.sni;  // RFC 6066 3: no literal addresses
}

TEST_F(TlsClientTest, AnIpAddressNotInTheCertificateIsAMismatch) {
  // The certificate is for 127.0.0.2 and backend.example: neither is 127.0.0.1 as an IP.
  OpenSslServer& s = server(other_ip_);
  Client& c = connect(s, trusting_ca(), "127.0.0.1");
  EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
  EXPECT_NE(c.t.handshake_error().find("certificate verify failed: IP address mismatch"), std::string::npos)
      << c.t.handshake_error();
  EXPECT_EQ(c.got, "");
  EXPECT_FALSE(s.seen(0).handshake_ok);
}

TEST_F(TlsClientTest, ADnsNameIsNotMatchedByAnIpSan) {
  OpenSslServer& s = server(ip_);  // IP:127.0.0.1 only
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
  EXPECT_NE(c.t.handshake_error().find("hostname mismatch"), std::string::npos) << c.t.handshake_error();
}

TEST_F(TlsClientTest, AnUntrustedCaFailsTheHandshake) {
  OpenSslServer& s = server(untrusted_);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
  EXPECT_NE(c.t.handshake_error().find("certificate verify failed"), std::string::npos) << c.t.handshake_error();
  EXPECT_NE(c.t.handshake_error().find("unable to get local issuer certificate"), std::string::npos)
      << c.t.handshake_error();
  EXPECT_EQ(c.t.failure(), TlsTransport::Failure::kError);
  EXPECT_TRUE(c.errors.empty());  // told once, through on_connect
  EXPECT_EQ(c.got, "");
  EXPECT_FALSE(s.seen(0).handshake_ok);  // the server got our alert
}

TEST_F(TlsClientTest, TheSystemStoreDoesNotTrustATestCa) {
  OpenSslServer& s = server(backend_);
  Client& c = connect(s, context({}), "backend.example");  // ca = "": the system's store
  EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
  EXPECT_NE(c.t.handshake_error().find("certificate verify failed"), std::string::npos) << c.t.handshake_error();
}

TEST_F(TlsClientTest, AWrongNameIsAHostnameMismatch) {
  OpenSslServer& s = server(backend_);
  Client& c = connect(s, trusting_ca(), "other.example");
  EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
  EXPECT_NE(c.t.handshake_error().find("certificate verify failed: hostname mismatch"), std::string::npos)
      << c.t.handshake_error();
  EXPECT_EQ(s.seen(0).sni, "other.example");
}

TEST_F(TlsClientTest, APartialWildcardDoesNotMatch) {
  // X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS: "b*.example" is not accepted for "backend.example".
  test::TestCert partial = test::make_cert(dir_.path(), "partial", {"b*.example"}, test::KeyType::kEc, &ca_);
  OpenSslServer& s = server(partial);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
  EXPECT_NE(c.t.handshake_error().find("hostname mismatch"), std::string::npos) << c.t.handshake_error();
  test::free_cert(partial);
}

TEST_F(TlsClientTest, AOneLabelWildcardMatches) {
  // (OpenSSL takes no wildcard right above the last label: "*.example" would not do.)
  test::TestCert wild = test::make_cert(dir_.path(), "wild", {"*.b.example"}, test::KeyType::kEc, &ca_);
  OpenSslServer& s = server(wild);
  Client& c = connect(s, trusting_ca(), "backend.b.example");
  EXPECT_EQ(c.connects, std::vector<int>{0}) << c.t.handshake_error();
  EXPECT_EQ(c.got, "pong");
  test::free_cert(wild);
}

TEST_F(TlsClientTest, AnExpiredCertificateFailsTheHandshake) {
  OpenSslServer& s = server(expired_);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
  EXPECT_NE(c.t.handshake_error().find("certificate verify failed: certificate has expired"), std::string::npos)
      << c.t.handshake_error();
}

TEST_F(TlsClientTest, VerifyFalseConnectsToAnythingAndStillSendsSni) {
  UpstreamTlsConfig c;
  c.verify = false;
  const auto ctx = context(c);
  EXPECT_FALSE(ctx->verifies());
  for (const test::TestCert* cert : {&self_signed_, &expired_, &untrusted_}) {
    OpenSslServer& s = server(*cert);
    Client& cl = connect(s, ctx, "backend.example");
    EXPECT_EQ(cl.connects, std::vector<int>{0}) << cert->cert_path << ": " << cl.t.handshake_error();
    EXPECT_EQ(cl.got, "pong") << cert->cert_path;
    EXPECT_EQ(s.seen(0).sni, "backend.example");
  }
  OpenSslServer& s = server(backend_);
  Client& cl = connect(s, ctx, "127.0.0.9");  // an address no certificate names
  EXPECT_EQ(cl.connects, std::vector<int>{0}) << cl.t.handshake_error();
  EXPECT_FALSE(s.seen(0).had_sni);
}

// (The fixture frees its connections at the end of the test, so here every SSL is
// still allocated when the next connection is made; the proxy's order, freed first, is
// TheSessionResumesAfterTheFirstConnectionIsFreed.)
TEST_F(TlsClientTest, TheSecondConnectionWithTheSameCacheResumes) {
  OpenSslServer& s = server(backend_, {}, 3);
  const auto ctx = trusting_ca();
  TlsSessionCache cache;
  Client& first = connect(s, ctx, "backend.example", &cache);
  EXPECT_EQ(first.connects, std::vector<int>{0}) << first.t.handshake_error();
  EXPECT_EQ(first.got, "pong");
  EXPECT_FALSE(first.resumed);
  // The TLS 1.3 ticket came after the handshake, read with "pong".
  ASSERT_NE(cache.get(), nullptr);
  Client& second = connect(s, ctx, "backend.example", &cache);
  EXPECT_EQ(second.connects, std::vector<int>{0}) << second.t.handshake_error();
  EXPECT_TRUE(second.resumed);
  EXPECT_EQ(second.got, "pong");
  EXPECT_TRUE(s.seen(1).resumed);
  // Another cache (another node, or none) offers nothing: a full handshake.
  TlsSessionCache empty;
  Client& third = connect(s, ctx, "backend.example", &empty);
  EXPECT_EQ(third.connects, std::vector<int>{0});
  EXPECT_FALSE(third.resumed);
  EXPECT_FALSE(s.seen(2).resumed);
}

TEST_F(TlsClientTest, TlsOneTwoSessionsResumeToo) {
  ServerOptions o;
  o.max_version = TLS1_2_VERSION;
  OpenSslServer& s = server(backend_, o, 2);
  const auto ctx = trusting_ca();
  TlsSessionCache cache;
  Client& first = connect(s, ctx, "backend.example", &cache);
  EXPECT_EQ(first.connects, std::vector<int>{0}) << first.t.handshake_error();
  ASSERT_NE(cache.get(), nullptr);
  Client& second = connect(s, ctx, "backend.example", &cache);
  EXPECT_EQ(second.connects, std::vector<int>{0});
  EXPECT_TRUE(second.resumed);
  EXPECT_TRUE(s.seen(1).resumed);
  EXPECT_EQ(second.version, "TLSv1.2");
}

// As the proxy uses it: an upstream connection (or a health probe) is closed and freed
// (its TlsTransport destroyed, the SSL with it) before the next one to the node is
// made. The session it left in the cache must still resume.
TEST_F(TlsClientTest, TheSessionResumesAfterTheFirstConnectionIsFreed) {
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    SCOPED_TRACE(version == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2");
    ServerOptions o;
    o.max_version = version;
    OpenSslServer& s = server(backend_, o, 2);
    const auto ctx = trusting_ca();
    TlsSessionCache cache;
    Client& first = connect(s, ctx, "backend.example", &cache);
    ASSERT_EQ(first.got, "pong");
    ASSERT_NE(cache.get(), nullptr);
    ASSERT_EQ(first.closed, 1);
    clients_.pop_back();  // freed, as UpstreamConn::handle_closed and the probe's do
    EXPECT_EQ(SSL_SESSION_is_resumable(cache.get()), 1) << "freeing the connection spoilt its session";
    Client& second = connect(s, ctx, "backend.example", &cache);
    EXPECT_EQ(second.got, "pong");
    EXPECT_TRUE(second.resumed);
    EXPECT_TRUE(s.seen(1).resumed);
  }
}

// A session is only as trusted as the handshake that made it: one made without
// verification (upstream_tls.verify = false), or under another CA, must not let a
// connection under stricter settings skip the verification. This is what the proxy
// does across a reload: the pool (and its TlsSessionCache) stays, the context is new.
TEST_F(TlsClientTest, ASessionMadeWithoutVerificationIsNotResumedByAVerifyingContext) {
  OpenSslServer& s = server(self_signed_, {}, 2);
  UpstreamTlsConfig lax;
  lax.verify = false;
  TlsSessionCache cache;
  Client& first = connect(s, context(lax), "backend.example", &cache);
  ASSERT_EQ(first.got, "pong");
  ASSERT_NE(cache.get(), nullptr);
  // (The first connection is kept alive here: freeing it spoils its session, see above.)
  Client& second = connect(s, trusting_ca(), "backend.example", &cache);
  EXPECT_EQ(second.connects, std::vector<int>{UV_EPROTO})
      << "resumed=" << second.resumed << ": a self-signed backend was accepted by a verifying context";
  EXPECT_NE(second.got, "pong");
}

TEST_F(TlsClientTest, ASessionMadeUnderAnotherCaIsNotResumedByAContextThatDistrustsIt) {
  OpenSslServer& s = server(untrusted_, {}, 2);  // signed by other_ca_
  UpstreamTlsConfig old_ca;
  old_ca.ca = other_ca_.cert_path;
  TlsSessionCache cache;
  Client& first = connect(s, context(old_ca), "backend.example", &cache);
  ASSERT_EQ(first.got, "pong") << first.t.handshake_error();
  ASSERT_NE(cache.get(), nullptr);
  Client& second = connect(s, trusting_ca(), "backend.example", &cache);  // ca_ only now
  EXPECT_EQ(second.connects, std::vector<int>{UV_EPROTO})
      << "resumed=" << second.resumed << ": a backend the new CA did not sign was accepted";
}

TEST_F(TlsClientTest, WithoutACacheNothingIsKeptNorResumed) {
  OpenSslServer& s = server(backend_, {}, 2);
  const auto ctx = trusting_ca();
  Client& first = connect(s, ctx, "backend.example", nullptr);
  EXPECT_EQ(first.got, "pong");
  Client& second = connect(s, ctx, "backend.example", nullptr);
  EXPECT_EQ(second.got, "pong");
  EXPECT_FALSE(second.resumed);
  EXPECT_FALSE(s.seen(1).resumed);
}

TEST_F(TlsClientTest, TheClientCertificateIsPresentedWhenConfigured) {
  ServerOptions o;
  o.client_ca = client_ca_.cert_path;
  o.require_client_cert = true;
  OpenSslServer& s = server(backend_, o);
  UpstreamTlsConfig c;
  c.ca = ca_.cert_path;
  c.cert = client_.cert_path;
  c.key = client_.key_path;
  Client& cl = connect(s, context(c), "backend.example");
  EXPECT_EQ(cl.connects, std::vector<int>{0}) << cl.t.handshake_error();
  EXPECT_EQ(cl.got, "pong");
  const Seen seen = s.seen(0);
  ASSERT_TRUE(seen.handshake_ok) << seen.error;
  EXPECT_EQ(seen.client_subject, "/CN=proxy-client");
}

TEST_F(TlsClientTest, MutualTlsResumesWithTheClientCertificate) {
  ServerOptions o;
  o.client_ca = client_ca_.cert_path;
  o.require_client_cert = true;
  OpenSslServer& s = server(backend_, o, 2);
  UpstreamTlsConfig c;
  c.ca = ca_.cert_path;
  c.cert = client_.cert_path;
  c.key = client_.key_path;
  const auto ctx = context(c);
  TlsSessionCache cache;
  connect(s, ctx, "backend.example", &cache);
  Client& second = connect(s, ctx, "backend.example", &cache);
  EXPECT_EQ(second.got, "pong");
  EXPECT_TRUE(second.resumed);
  EXPECT_TRUE(s.seen(1).resumed);
  EXPECT_EQ(s.seen(1).client_subject, "/CN=proxy-client");  // the session's peer
}

TEST_F(TlsClientTest, NoClientCertificateIsSentWhenNoneIsConfigured) {
  ServerOptions o;
  o.client_ca = client_ca_.cert_path;  // asked for, not required
  OpenSslServer& s = server(backend_, o);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.got, "pong");
  EXPECT_TRUE(s.seen(0).handshake_ok);
  EXPECT_EQ(s.seen(0).client_subject, "");
}

TEST_F(TlsClientTest, AServerThatRequiresACertificateRefusesUsWithoutOne) {
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    ServerOptions o;
    o.client_ca = client_ca_.cert_path;
    o.require_client_cert = true;
    o.max_version = version;
    OpenSslServer& s = server(backend_, o);
    Client& c = connect(s, trusting_ca(), "backend.example");
    EXPECT_FALSE(s.seen(0).handshake_ok) << version;
    EXPECT_NE(c.got, "pong") << version;
    if (version == TLS1_2_VERSION) {
      // The server's alert comes before its Finished: the handshake fails.
      EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
      EXPECT_FALSE(c.t.handshake_error().empty());
    } else {
      // TLS 1.3: our handshake is done before the server has read our (empty)
      // Certificate; its alert (and close) is an error on the write of "ping" or on the
      // first read, never "pong".
      ASSERT_EQ(c.connects, std::vector<int>{0});
      EXPECT_TRUE(c.write_rc < 0 || c.errors.size() == 1u) << c.write_rc;
      if (!c.errors.empty()) {
        EXPECT_LT(c.errors[0], 0);
        EXPECT_NE(c.errors[0], UV_EOF);  // not a clean end of the stream
      }
    }
  }
}

TEST_F(TlsClientTest, AClientCertificateNotMatchingItsKeyIsRefusedAtLoad) {
  UpstreamTlsConfig c;
  c.ca = ca_.cert_path;
  c.cert = client_.cert_path;
  c.key = backend_.key_path;
  std::string error;
  EXPECT_EQ(ClientTlsContext::create(c, &error), nullptr);
  EXPECT_NE(error.find(backend_.key_path), std::string::npos) << error;
  EXPECT_NE(error.find("key values mismatch"), std::string::npos) << error;
}

TEST_F(TlsClientTest, AMissingCaFileIsRefusedAtLoad) {
  UpstreamTlsConfig c;
  c.ca = dir_.path() + "/nothing.pem";
  std::string error;
  EXPECT_EQ(ClientTlsContext::create(c, &error), nullptr);
  EXPECT_NE(error.find(c.ca), std::string::npos) << error;
}

TEST_F(TlsClientTest, TheServerClosingMidHandshakeIsAnErrorNotAHang) {
  ServerOptions o;
  o.mode = ServerOptions::Mode::kCloseAfterHello;
  OpenSslServer& s = server(backend_, o);
  Client& c = connect(s, trusting_ca(), "backend.example");
  ASSERT_EQ(c.connects.size(), 1u);
  EXPECT_LT(c.connects[0], 0);
  EXPECT_EQ(c.t.failure(), TlsTransport::Failure::kPeerClosed);
  EXPECT_EQ(c.t.handshake_error(), "the server closed the connection during the handshake");
  EXPECT_TRUE(c.errors.empty());
}

TEST_F(TlsClientTest, TheServerResettingMidHandshakeIsTheTcpError) {
  ServerOptions o;
  o.mode = ServerOptions::Mode::kResetAfterHello;
  OpenSslServer& s = server(backend_, o);
  Client& c = connect(s, trusting_ca(), "backend.example");
  ASSERT_EQ(c.connects.size(), 1u);
  // The TCP error as it is: the callers (exchange.cc, checker.cc) then say
  // "connect failed: ECONNRESET", as for a reset before the handshake.
  EXPECT_EQ(c.connects[0], UV_ECONNRESET);
  EXPECT_TRUE(c.errors.empty());
}

TEST_F(TlsClientTest, ASilentServerIsTimedOutByTheHandshakeDeadline) {
  ServerOptions o;
  o.mode = ServerOptions::Mode::kSilent;
  OpenSslServer& s = server(backend_, o);
  Client& c = connect(s, trusting_ca(), "backend.example", nullptr, /*handshake_timeout_ms=*/50);
  EXPECT_EQ(c.connects, std::vector<int>{UV_ETIMEDOUT});
  EXPECT_EQ(c.t.failure(), TlsTransport::Failure::kTimeout);
  EXPECT_EQ(c.t.handshake_error(), "the handshake did not finish in time");
}

TEST_F(TlsClientTest, APlainHttpServerIsAProtocolError) {
  ServerOptions o;
  o.mode = ServerOptions::Mode::kPlainHttp;
  OpenSslServer& s = server(backend_, o);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.connects, std::vector<int>{UV_EPROTO});
  EXPECT_EQ(c.t.failure(), TlsTransport::Failure::kError);
  EXPECT_FALSE(c.t.handshake_error().empty());
}

TEST_F(TlsClientTest, ARefusedConnectIsTheTcpError) {
  const int fd = test::bound_loopback_socket(SOCK_CLOEXEC);  // bound, never listening
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  clients_.push_back(std::make_unique<Client>(pool_));
  Client& c = *clients_.back();
  c.t.init(poller_);
  ASSERT_EQ(c.t.connect_client(reinterpret_cast<const sockaddr*>(&sa), trusting_ca(), "backend.example", nullptr, 0), 0);
  run_until([&] { return c.closed == 1; });
  EXPECT_EQ(c.connects, std::vector<int>{UV_ECONNREFUSED});
  EXPECT_TRUE(c.t.handshake_error().empty());  // not a TLS failure
  ::close(fd);
}

TEST_F(TlsClientTest, ClosingWhileConnectingCallsNothingBack) {
  ServerOptions o;
  o.mode = ServerOptions::Mode::kSilent;
  OpenSslServer& s = server(backend_, o);
  clients_.push_back(std::make_unique<Client>(pool_));
  Client& c = *clients_.back();
  c.t.init(poller_);
  ASSERT_EQ(c.t.connect_client(s.address(), trusting_ca(), "backend.example", nullptr, 0), 0);
  c.t.close();  // as an exchange whose client went away does
  run_until([&] { return c.closed == 1 && s.served() == 1; });
  EXPECT_TRUE(c.connects.empty());
  EXPECT_TRUE(c.errors.empty());
}

TEST_F(TlsClientTest, ClosingMidHandshakeCallsNothingBack) {
  // The server has our ClientHello and says nothing; we give up (the connect timer of
  // the caller, here the test) by closing.
  ServerOptions o;
  o.mode = ServerOptions::Mode::kSilent;
  OpenSslServer& s = server(backend_, o);
  clients_.push_back(std::make_unique<Client>(pool_));
  Client& c = *clients_.back();
  c.t.init(poller_);
  ASSERT_EQ(c.t.connect_client(s.address(), trusting_ca(), "backend.example", nullptr, 0), 0);
  uv_timer_t t;
  uv_timer_init(&loop_, &t);
  t.data = &c;
  uv_timer_start(&t, [](uv_timer_t* h) { static_cast<Client*>(h->data)->t.close(); }, 30, 0);
  run_until([&] { return c.closed == 1 && s.served() == 1; });
  bool timer_closed = false;
  t.data = &timer_closed;
  uv_close(reinterpret_cast<uv_handle_t*>(&t), [](uv_handle_t* h) { *static_cast<bool*>(h->data) = true; });
  run_until([&] { return timer_closed; });
  EXPECT_TRUE(c.connects.empty());
  EXPECT_TRUE(c.errors.empty());
  EXPECT_FALSE(c.t.handshake_done());
}

TEST_F(TlsClientTest, ConnectClientTwiceIsRefused) {
  OpenSslServer& s = server(backend_);
  Client& c = connect(s, trusting_ca(), "backend.example");
  EXPECT_EQ(c.t.connect_client(s.address(), trusting_ca(), "backend.example", nullptr, 0), UV_EINVAL);
}

}  // namespace
}  // namespace ringproxy
