// A blocking TLS client for the end-to-end tests (tls_test.cc, listeners_test.cc):
// OpenSSL over a non-blocking socket to 127.0.0.1, every step waited on with poll() up
// to a deadline, failures returned as text, never a hang.
//
// It is the tests' own and shares no code with net/, the TLS the tests check: a bug
// there cannot hide by being on both sides. No certificate verification unless
// TlsOptions::ca_file asks for it: the tests mostly look at what was presented.
//
// Single-threaded, for the test's own thread, like the rest of the harness.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {

// The client's default for each step (connect, handshake, one response); the tests use
// it for their other waits on a TLS port too.
inline constexpr Millis kTlsTimeout{5000};

struct SessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using Session = std::unique_ptr<SSL_SESSION, SessionFree>;

struct TlsOptions {
  std::string sni{};                // "" sends none
  std::vector<std::string> alpn{};  // offered, in order; empty: no ALPN extension
  int min_version = 0;              // e.g. TLS1_VERSION; 0: OpenSSL's default
  int max_version = 0;              // e.g. TLS1_2_VERSION; 0: OpenSSL's default
  std::string ciphers{};            // TLS 1.2 and below (SSL_CTX_set_cipher_list); "" default
  int security_level = -1;          // -1: the default; 0 lets old versions and ciphers be offered
  std::string cert{}, key{};        // a client certificate and its key (PEM files)
  SSL_SESSION* session = nullptr;   // to resume
  std::string ca_file{};            // verify the server's chain against it, and sni as its name; "" none
  Millis timeout = kTlsTimeout;     // each step: connect, handshake, one response
};

class TlsClient {
 public:
  // Connects to 127.0.0.1:port and does the handshake; check ok() and error().
  explicit TlsClient(uint16_t port, const TlsOptions& options = {});
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  bool ok() const { return ok_; }                      // the handshake finished
  const std::string& error() const { return error_; }  // why not, or the last I/O failure

  // What was agreed, once ok().
  std::string peer_cn;                  // the server certificate's CN
  std::string peer_subject;             // RFC 2253, e.g. "CN=alpha.test"
  std::vector<std::string> peer_names;  // its subjectAltName DNS names
  std::string alpn;                     // "" when none was selected
  std::string version;                  // "TLSv1.3"
  std::string cipher;                   // "TLS_AES_256_GCM_SHA384"
  bool resumed = false;
  long verify_result = -1;  // SSL_get_verify_result, when ca_file was given

  // The session to resume later. Under TLS 1.3 the tickets come after the handshake:
  // take it once a response has been read.
  Session session() const;

  // Sends all of `bytes`. What arrives meanwhile is read into the buffer, so a large
  // upload to an echoing server cannot deadlock.
  bool send(std::string_view bytes);

  // format_request(...) with "Host: tls.test" unless `headers` has a Host, then
  // read_response.
  Response request(std::string_view method, std::string_view target, Headers headers = {}, std::string_view body = {});

  // One response: status line, fields, a body framed by Content-Length or chunked, or
  // (neither) read to the close.
  Response read_response(bool head = false);

  // Exactly n plaintext bytes (after any response read before); nullopt on close or
  // timeout.
  std::optional<std::string> read_exact(size_t n);

  // Our close_notify: the TLS half-close. Reading goes on.
  bool close_notify();

  // How the server ends the connection within `timeout`: "close_notify", "eof" (a FIN
  // without it), "reset", "timeout", "data" when bytes come instead, or "error: ...".
  std::string wait_close(Millis timeout);

 private:
  using Clock = std::chrono::steady_clock;
  enum class Step { ok, closed, error, timeout };

  // Runs `op` (an SSL_* call returning 1 on success) until it succeeds, fails, or the
  // deadline passes, waiting with poll() for what OpenSSL wants.
  template <class Op>
  Step drive(Op op, Clock::time_point deadline);
  // Reads what is there into in_; false (with r->error) on close, error or timeout.
  bool fill(Clock::time_point deadline, Response* r);
  void handshake(uint16_t port, const TlsOptions& o);

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool ok_ = false;
  bool closed_ = false;  // wait_close saw the server's end: no close_notify of ours then
  std::string error_;
  std::string in_;  // plaintext read and not yet parsed
  Millis timeout_ = kTlsTimeout;
};

}  // namespace ringproxy::integration
