// TLS as a Transport (net/transport.h): OpenSSL over the TCP transport's own buffers.
// The codec above sees plaintext only and the same contracts as over TcpTransport;
// TLS is invisible to it. Both sides: a TLS listener's connections (open_server) and
// connections to TLS backends (connect_client), SPEC "TLS".
//
// Bytes: ciphertext is read by the TcpTransport into its buffer, and OpenSSL reads it
// from there through a BIO of ours (no copy into a memory BIO); plaintext is decrypted
// straight into this transport's buffer, the one the codec parses. OpenSSL's output
// (handshake, records, alerts) goes through the BIO into `out_`, sent with one write;
// while that write is queued, more output collects in `next_`, so a queued buffer is
// never moved.
//
// Backpressure is the Transport's: a write returns kQueued while the socket holds back
// its ciphertext; reading stops below (the TCP socket) when the codec stops reading
// above, once the handshake is done.
//
// The handshake has its own deadline (proxy.tls.handshake_timeout_ms): a client that
// connects and never finishes is closed (on_read(UV_ETIMEDOUT)) whatever the codec's
// timers say. A failed handshake is on_read(UV_EPROTO), with handshake_error() saying
// what OpenSSL said and failure() its kind; a finished one is on_connect(0), before the
// first plaintext is read.
//
// Plain HTTP on a TLS port: OpenSSL recognises a request line in place of a
// ClientHello (failure() kPlainHttp). The codec may then answer in plaintext, as
// nginx's 497 does: enter_plaintext() turns this transport into a plain TCP one for
// that answer and the lingering close after it.
//
// Thread: the loop's.
#pragma once

#include <openssl/ssl.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "net/poller.h"
#include "net/tcp_transport.h"
#include "net/tls_context.h"
#include "net/transport.h"

namespace ringproxy {

class TlsTransport final : public Transport, private Transport::Handler, private Poller::Socket {
 public:
  TlsTransport(BufferPool& buffers, Transport::Handler& handler);
  ~TlsTransport() override;
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  // Binds to `poller` (no socket yet: 0). After it, close() and on_closed as always.
  int init(Poller& poller);
  // Takes an accepted non-blocking socket and serves the handshake with `context` as
  // the client speaks; `handshake_timeout_ms` bounds it. On an error the fd stays the
  // caller's.
  int open_server(int fd, bool nodelay_inherited, std::shared_ptr<const ServerTlsContext> context,
                  uint32_t handshake_timeout_ms);
  // Connects to `addr` and runs the client handshake for `name` (SNI and verification,
  // ClientTlsContext::new_ssl), offering `cache`'s session and keeping the next one
  // there. on_connect follows once: 0 when the handshake is done, else the TCP error,
  // UV_ETIMEDOUT (`handshake_timeout_ms`, 0 = none: the caller's connect timer bounds
  // it) or UV_EPROTO (handshake_error() says why, the verification's verdict included).
  // `alpn`: the protocols offered in ALPN's wire format, replacing the context's
  // "http/1.1" (an HTTP/2 node's connections offer "h2").
  int connect_client(const sockaddr* addr, std::shared_ptr<const ClientTlsContext> context, std::string_view name,
                     TlsSessionCache* cache, uint32_t handshake_timeout_ms, std::string_view alpn = {});

  // How a handshake ended without success.
  enum class Failure {
    kNone,
    kError,       // a protocol error: no common version or cipher, a bad certificate, ...
    kTimeout,     // not finished within handshake_timeout_ms
    kPeerClosed,  // the client closed (or reset) before finishing
    kPlainHttp,   // plain HTTP on the TLS port
  };

  TcpTransport& tcp() { return tcp_; }
  // Gives the memory of empty buffers (plaintext and ciphertext) back to the pool, and
  // OpenSSL's when the loop has many TLS connections (BufferPool::keep_tls_buffers).
  void release_buffer();
  bool plaintext() const { return plaintext_; }
  bool handshake_done() const { return handshake_done_; }
  Failure failure() const { return failure_; }
  // After failure() kPlainHttp: reads and writes go on unencrypted, for a plaintext
  // answer and the close after it. 0, or UV_EINVAL in any other state.
  int enter_plaintext();
  // After the handshake: what was agreed ("" before).
  std::string_view alpn() const;
  std::string_view version() const;  // "TLSv1.3"
  std::string_view cipher() const;   // "TLS_AES_128_GCM_SHA256"
  bool resumed() const;
  // The verified client certificate's subject, one line (RFC 2253), "" without one.
  std::string client_subject() const;
  // Why the handshake failed ("" unless it did).
  const std::string& handshake_error() const { return handshake_error_; }

  int start_reading() override;
  void stop_reading() override;
  int write(uv_buf_t* bufs, unsigned count) override;
  int shutdown_write() override;
  void close() override;

 private:
  // Transport::Handler, of the TCP transport below.
  void on_connect(int status) override;
  void on_read(ssize_t nread) override;
  void on_write_done(int status) override;
  void on_closed() override;
  // Poller::Socket: only defer() is used (reading resumed with plaintext pending).
  void on_poll_events(uint32_t) override {}
  void on_poll_ready() override;
  void on_poll_retired() override { handle_closed(); }

  // Runs the handshake, then decrypts for the codec while it reads.
  void pump();
  // Reading below goes on while bytes are wanted (pump()).
  void feed();
  void fail(int status, Failure kind);  // tells the codec of an error once; it closes
  // Plaintext mode (enter_plaintext()): the bytes read below go up as they are.
  void pass_plaintext(ssize_t nread);
  // Sends what OpenSSL wrote (out_), unless a send is queued. 0 or an error.
  int flush();
  static void on_handshake_timer(uv_timer_t* t);
  static void on_timer_closed(uv_handle_t* h);
  void handle_closed();

  friend struct TlsBio;  // the BIO's read and write reach the buffers below
  BufferPool& buffers_;
  Transport::Handler& handler_;
  TcpTransport tcp_;
  Poller* poller_ = nullptr;
  std::shared_ptr<const ServerTlsContext> context_;  // keeps the SSL_CTX for ssl_
  std::shared_ptr<const ClientTlsContext> client_context_;  // or this one, client side
  SSL* ssl_ = nullptr;
  std::string out_;   // ciphertext being sent (pinned while tcp_ has a write queued)
  std::string next_;  // ciphertext written meanwhile
  std::string plain_;  // a write's small buffers together, for one record
  std::string handshake_error_;
  uv_timer_t timer_{};
  int open_handles_ = 0;  // tcp_ and timer_
  bool handshake_done_ = false;
  bool tcp_eof_ = false;      // the TCP peer's FIN (or an error) was read below
  bool failed_ = false;       // fail() ran
  bool plaintext_ = false;    // enter_plaintext() ran
  bool broken_ = false;       // a protocol error after the handshake
  bool ended_ = false;        // the end of the stream (or its error) was told to the codec
  bool counted_ = false;      // in buffers_'s TLS connection count
  bool client_ = false;       // connect_client(): errors before the handshake's end go to on_connect
  Failure failure_ = Failure::kNone;
  bool tcp_writing_ = false;  // tcp_ has a write queued (out_ pinned)
  bool shut_pending_ = false; // shutdown_write() waits for the queued write
};

}  // namespace ringproxy
