// The server side of HTTP/1 over a Transport: one client connection. It reads and
// checks request heads (h1::RequestParser), answers one request at a time in order
// (pipelining), decides keep-alive (HTTP/1.0's rules included), owns the client's
// timers (head, keep-alive idle, a client that stalls mid-body or stops reading),
// answers what it refuses itself, and closes in stages after an answer that ends the
// connection (RFC 9112 9.6, nginx's lingering close). What a request means is its
// RequestHandler's business: the proxy's Exchange (proxy/exchange.h) routes it to a
// node; the admin endpoint answers it itself. The handler answers through Downstream.
//
// Backpressure, one rule each way:
//  - Up: body bytes are offered with RequestHandler::on_body() only while the handler
//    is ready_for_body(); a chunk it could not pass on at once is kPinned: its bytes
//    stay put in the read buffer and nothing more is read until resume_body().
//  - Down: send() returning kQueued pins the handler's bytes until its
//    on_downstream_drained().
//
// No allocation per request once warm: the head is parsed in place, the handler lives
// as long as the connection. Nothing here logs: the handler is told what happened
// (on_answered, on_client_note) and writes its lines.
//
// Thread: the owning loop's. Freed by its Owner after on_freed, never before.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "http/h1/lingering_close.h"
#include "http/h1/request_parser.h"
#include "http/handler.h"
#include "net/deadline_timer.h"
#include "net/io_buffer.h"
#include "net/tcp_transport.h"
#include "net/tls_transport.h"

namespace ringproxy::h1 {

// The handler interfaces every server codec shares (http/handler.h).
using ringproxy::Downstream;
using ringproxy::RequestHandler;

// The codec's limits, read when they apply (a reload changes them for what follows).
struct ServerLimits {
  uint32_t header_timeout_ms = 10000;
  uint32_t idle_timeout_ms = 60000;
  uint32_t max_header_bytes = 16 * 1024;
  // A plain connection that opens with HTTP/2's preface is handed to Owner::http2()
  // (RFC 9113 3.3, prior knowledge).
  bool h2c = false;
};

// A protocol that takes a connection over from HTTP/1 before its first request (HTTP/2,
// by prior knowledge or by ALPN): from then on the transport's events, the timer and
// drains go to it. It writes through ServerConn::send() and closes with close().
class Takeover {
 public:
  // Bytes in the transport's buffer (nread > 0; at the takeover, what was read
  // already), or UV_EOF / an error.
  virtual void on_read(ssize_t nread) = 0;
  virtual void on_write_done(int status) = 0;
  virtual void on_timer() = 0;  // the deadline of ServerConn::arm_timer passed
  virtual void on_drain() = 0;
  virtual void on_closing() = 0;  // close() has begun: let go of every request

 protected:
  ~Takeover() = default;
};

class ServerConn final : public Downstream, private Transport::Handler {
 public:
  class Owner {
   public:
    virtual ServerLimits limits() const = 0;
    virtual void on_closing(ServerConn& conn) = 0;  // close() has begun
    virtual void on_freed(ServerConn& conn) = 0;    // every handle closed: free it now
    // The client speaks HTTP/2 (`alpn`: chosen in the TLS handshake; else the preface
    // on a plain connection with ServerLimits::h2c): the protocol that takes the
    // connection over, or null to go on as HTTP/1 (which then refuses the preface).
    virtual Takeover* http2(ServerConn& conn, bool alpn) {
      (void)conn;
      (void)alpn;
      return nullptr;
    }
    // A TLS handshake ended: done (tls.handshake_done()) or failed (tls.failure()).
    virtual void on_tls_handshake(ServerConn& conn, const TlsTransport& tls) {
      (void)conn;
      (void)tls;
    }
   protected:
    ~Owner() = default;
  };

  // `poller`: the loop's (net/poller.h); the codec's timer runs on poller.loop().
  ServerConn(Poller& poller, BufferPool& buffers, Owner& owner, RequestHandler& handler);
  ~ServerConn() = default;
  ServerConn(const ServerConn&) = delete;
  ServerConn& operator=(const ServerConn&) = delete;

  // Takes `fd`, an accepted socket (non-blocking, close-on-exec). On an error the fd is
  // closed, close() has run and on_freed follows.
  int open(int fd, bool nodelay_inherited);
  // As open(), for a TLS listener: the handshake with `context` comes first, bounded by
  // `handshake_timeout_ms`; plain HTTP sent instead gets one plaintext 400.
  int open_tls(int fd, bool nodelay_inherited, std::shared_ptr<const ServerTlsContext> context,
               uint32_t handshake_timeout_ms);
  // How start() reads first.
  enum class FirstRead {
    // On the next readiness event, as any read.
    // Both the proxy and the admin endpoint use it: on the edge-triggered poller a
    // request already there when the socket joins the set is reported by the next
    // wait, and one not there yet is not read for nothing. (bench/cost MODE=close,
    // 50 connections, with kNow: 0.84 recv() per connection found nothing yet.)
    kOnEvent,
    // At once: a new client may have sent its request by the time it is accepted.
    // The request may be handled, even answered and the connection closed, before
    // start() returns. Only for a handler that cannot answer inside that call (the
    // proxy waits for a node): an accept loop that takes connections until the queue
    // is empty would otherwise serve a quick client's next connection, and the next,
    // without ever returning to the loop that closes the earlier ones.
    kNow,
  };
  // Starts serving the client at `peer` (null: the address is asked of the socket):
  // the head timer runs, reading starts.
  void start(const sockaddr* peer, FirstRead first_read);
  void close();  // idempotent; on_freed follows from the loop
  // Draining: close now if idle, else after the response in progress.
  void drain();
  std::string_view client_ip() const override { return {client_ip_, client_ip_len_}; }
  // The request being read (an HTTP/1 handler's extras: keep_body, content_length).
  RequestParser& parser() { return req_; }
  // For a Takeover: the connection's transport, its poller and its timer.
  Transport& transport() { return *io_; }
  Poller& poller() { return poller_; }
  void arm_timer(uint32_t ms);
  void disarm_timer() { timer_.disarm(); }
  // The read buffer goes back to the worker's pool while the connection is idle (an
  // empty buffer; the next read takes one again).
  void release_read_buffer() {
    if (tls_) {
      tls_->release_buffer();
    } else {
      tcp_.release_buffer();
    }
  }

  // Downstream
  int send(uv_buf_t* bufs, unsigned count) override;
  bool send_pending() const override { return client_write_pending_; }
  void respond_error(int status, std::string_view text, std::string_view log_cause) override;
  void respond_own(std::string& answer, bool keep_alive) override;
  bool finish_request_early() override { return discard_rest_of_request(); }
  void response_done(bool close_after) override;
  void resume_body() override;
  void start_tunnel() override;
  void tunnel_upstream_done() override;
  void abort() override { close(); }
  bool closing() const override { return closing_; }
  bool close_requested() const override { return close_after_response_; }
  const TlsTransport* tls() const override { return tls_.get(); }
  std::string_view client_subject() const override { return client_subject_; }

 private:
  enum class ReqPhase { kIdle, kHead, kBody, kDone };

  void process_request_bytes();
  void process_requests();  // process_request_bytes()'s loop
  bool parse_head();  // false when the connection is done with (error sent)
  void on_request_head();
  // Offers the buffered body bytes to the handler; true when the request is complete.
  bool forward_body();
  void end_exchange();  // the response is complete: next request, or close
  void resume_client_reading();
  // The buffered bytes open with HTTP/2's preface (or a prefix of it): hand over.
  bool take_over_http2(bool alpn);
  // Writes our own complete answer (error_out_), then the connection goes on
  // (`keep_alive`) or closes in stages.
  void respond_self(bool keep_alive);
  void error_response_written();
  // After an answer that ends the connection while the client may still be sending:
  // FIN, then read and drop what comes, within LingerBudget's bounds.
  void linger_close();
  // Reads the rest of the request, if it is all buffered, and drops it; true when the
  // request is then complete.
  bool discard_rest_of_request();

  // A TLS handshake failed (on_read's error before it was done).
  void tls_failed();

  // Transport::Handler
  void on_connect(int status) override;
  void on_read(ssize_t nread) override;
  void on_write_done(int status) override;
  void on_closed() override;
  static void on_timer(uv_timer_t* t);
  static void on_timer_closed(uv_handle_t* h);
  void handle_closed();  // one of the two handles closed; the last frees this

  Poller& poller_;  // and its loop, for the timer
  Owner& owner_;
  RequestHandler& handler_;
  BufferPool& buffers_;
  TcpTransport tcp_;                  // a plain connection's transport (unused under TLS)
  std::unique_ptr<TlsTransport> tls_;  // a TLS connection's (open_tls)
  Transport* io_;                      // the one in use
  IoBuffer* in_;                       // its read buffer
  std::string client_subject_;         // of a verified client certificate
  DeadlineTimer timer_;
  int open_handles_ = 0;
  bool closing_ = false;
  bool client_write_pending_ = false;
  bool client_eof_ = false;
  bool close_after_response_ = false;
  bool drain_requested_ = false;
  bool lingering_ = false;        // linger_close(): reading only to drop
  bool processing_ = false;       // in process_request_bytes()
  bool first_request_ = true;     // no request head was read yet
  Takeover* takeover_ = nullptr;  // HTTP/2 has the connection
  LingerBudget linger_;
  char client_ip_[48] = {};
  uint8_t client_ip_len_ = 0;

  RequestParser req_;
  ReqPhase req_phase_ = ReqPhase::kIdle;
  bool req_body_started_ = false;
  bool tunnel_ = false;            // after a 101: bytes pass raw both ways
  std::string error_out_;          // an answer of our own being written
  bool error_keep_alive_ = false;  // ... after which the connection goes on
};

}  // namespace ringproxy::h1
