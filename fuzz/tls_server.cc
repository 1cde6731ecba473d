// fuzz::tls_server: a TLS listener's first bytes (targets.h).
//
// Per input, on the calling thread: a loop with its Poller, a TlsTransport serving the
// handshake with a fixed context (an ECDSA P-256 certificate made once per process,
// tickets on), over one end of a socketpair; the input is written to the other end,
// which then half-closes. The handler reads what the transport decrypts, answers plain
// HTTP in plaintext as the proxy does (enter_plaintext), and closes on the first error
// or end; the loop runs until every handle is closed. The handshake deadline (100 ms)
// ends an input that stops mid-handshake; nothing sleeps.
//
// Checked: the loop ends with every handle closed and the transport called back as its
// contract says (one error or EOF, on_closed once, no read after it); a failed
// handshake names a Failure and, for kPlainHttp, the input looked like HTTP (it starts
// with a method's letters). A crash or a sanitizer report is a finding too.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "fuzz/targets.h"
#include "net/poller.h"
#include "net/tls_context.h"
#include "net/tls_transport.h"

namespace ringproxy::fuzz {
namespace {

// The certificate and key, written once to a temporary directory for the context.
std::shared_ptr<const ServerTlsContext> make_context() {
  char dir[] = "/tmp/ringproxy-fuzz-tls-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return nullptr;
  const std::string cert_path = std::string(dir) + "/cert.pem";
  const std::string key_path = std::string(dir) + "/key.pem";
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400L * 30);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("fuzz.test"), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  X509_sign(cert, key, EVP_sha256());
  FILE* c = std::fopen(cert_path.c_str(), "w");
  FILE* k = std::fopen(key_path.c_str(), "w");
  if (c != nullptr) PEM_write_X509(c, cert);
  if (k != nullptr) PEM_write_PrivateKey(k, key, nullptr, nullptr, 0, nullptr, nullptr);
  if (c != nullptr) std::fclose(c);
  if (k != nullptr) std::fclose(k);
  X509_free(cert);
  EVP_PKEY_free(key);
  ServerTlsConfig config;
  config.enabled = true;
  config.certificates.push_back({cert_path, key_path, {}, {}});
  std::string error;
  auto context = ServerTlsContext::create(config, std::make_shared<TicketKeys>(), &error);
  std::remove(cert_path.c_str());
  std::remove(key_path.c_str());
  ::rmdir(dir);
  if (!context) std::fprintf(stderr, "fuzz tls_server: %s\n", error.c_str());
  return context;
}

class Server final : public Transport::Handler {
 public:
  Server(BufferPool& buffers) : tls(buffers, *this) {}
  void on_connect(int status) override {
    if (closed) problem = "on_connect after on_closed";
    if (status != 0) problem = "a server-side on_connect with an error";
  }
  void on_read(ssize_t nread) override {
    if (closed) problem = "on_read after on_closed";
    if (nread > 0) {
      tls.buffer().clear();  // read and dropped
      return;
    }
    if (nread == UV_ENOBUFS) return;
    if (!tls.handshake_done() && tls.failure() == TlsTransport::Failure::kNone && !tls.plaintext()) {
      problem = "a handshake that ended without a Failure";
    }
    if (tls.failure() == TlsTransport::Failure::kPlainHttp && !tls.plaintext()) {
      if (tls.enter_plaintext() != 0) {
        problem = "enter_plaintext refused after kPlainHttp";
      } else {
        uv_buf_t b = uv_buf_init(const_cast<char*>(kAnswer), sizeof kAnswer - 1);
        if (tls.write(&b, 1) == Transport::kQueued) return;  // closed when written
      }
    }
    tls.close();
  }
  void on_write_done(int) override { tls.close(); }
  void on_closed() override {
    if (closed) problem = "on_closed twice";
    closed = true;
  }

  static constexpr char kAnswer[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
  TlsTransport tls;
  bool closed = false;
  std::string problem;
};

}  // namespace

std::string tls_server(std::span<const uint8_t> input) {
  static const std::shared_ptr<const ServerTlsContext> context = make_context();
  if (!context) return "no TLS context";
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) return "socketpair failed";
  // The client's end: the input, then its FIN. A socketpair holds far more than the
  // largest input, so one write takes it all.
  if (!input.empty() && ::write(fds[1], input.data(), input.size()) != static_cast<ssize_t>(input.size())) {
    ::close(fds[0]);
    ::close(fds[1]);
    return "short write";
  }
  ::shutdown(fds[1], SHUT_WR);

  uv_loop_t loop;
  uv_loop_init(&loop);
  std::string problem;
  {
    Poller poller;
    poller.init(&loop);
    BufferPool buffers;
    auto server = std::make_unique<Server>(buffers);
    server->tls.init(poller);
    if (server->tls.open_server(fds[0], /*nodelay_inherited=*/true, context, 100) != 0) {
      ::close(fds[0]);
      server->tls.close();
    }
    // The server's answers pile up in the other end unread: a socketpair's buffer
    // holds a handshake's flight many times over.
    while (!server->closed && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    if (!server->closed) problem = "the loop ended with the transport open";
    if (problem.empty()) problem = server->problem;
    poller.close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  if (uv_loop_close(&loop) != 0 && problem.empty()) problem = "a handle was left open";
  ::close(fds[1]);
  return problem;
}

}  // namespace ringproxy::fuzz
