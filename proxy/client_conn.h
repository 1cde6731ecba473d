// One client connection: the server side of HTTP/1 over a Transport. It reads and
// checks request heads (h1::RequestParser), answers one request at a time in order
// (pipelining), decides keep-alive (HTTP/1.0 rules included), owns the client's timers
// (head, keep-alive idle, a client that stalls mid-body or stops reading), answers
// what it refuses itself and closes in stages after such an answer (lingering close),
// and passes each checked request to its Exchange (proxy/exchange.h), which routes it
// and streams the response back through the Downstream calls below.
//
// Backpressure: the client is read only while nothing written to the client waits in
// the transport and no body bytes written up are still pinned in the read buffer.
//
// Thread: the owning worker's loop. Freed only in the last close callback.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "http/h1/request_parser.h"
#include "net/deadline_timer.h"
#include "net/io_buffer.h"
#include "net/tcp_transport.h"
#include "proxy/exchange.h"

namespace ringproxy {

class Worker;

class ClientConn final : private Downstream, private Transport::Handler {
 public:
  // Takes `fd`, a connection the worker has just accepted (non-blocking, close-on-exec)
  // from `peer`. Closes it at once when the process is at max_connections.
  static void accept(Worker& worker, int fd, const sockaddr* peer);

  void close();  // idempotent; frees later
  // Draining: close now if idle, else after the response in progress.
  void drain();
  size_t slot = 0;  // index in the worker's connection list

 private:
  enum class ReqPhase { kIdle, kHead, kBody, kDone };

  explicit ClientConn(Worker& worker);
  ~ClientConn();

  void process_request_bytes();
  bool parse_head();  // false when the connection is done with (error sent)
  void on_request_head();
  // Offers the buffered body bytes to the exchange; true when the request is complete.
  bool forward_body();
  void end_exchange();  // the response is complete: next request, or close
  void resume_client_reading();
  void arm_timer(uint32_t ms);
  // Writes our own complete answer (error_out_), then the connection goes on
  // (`keep_alive`) or closes in stages.
  void respond_self(bool keep_alive);
  void error_response_written();
  // RFC 9112 9.6: after an answer that ends the connection while the client may still
  // be sending, send FIN and read and drop what comes for a bounded time and size, so
  // the client reads the answer instead of a reset (nginx's lingering close).
  void linger_close();
  // Reads the rest of the request, if it is all buffered, and drops it; true when the
  // request is then complete.
  bool discard_rest_of_request();

  // Downstream (the exchange's side of this connection)
  int send(uv_buf_t* bufs, unsigned count) override;
  bool send_pending() const override { return client_write_pending_; }
  // An empty `log_cause` writes no line: the caller logs (rate-limited).
  void respond_error(int status, std::string_view body, std::string_view log_cause) override;
  void respond_own(std::string& answer, bool keep_alive) override;
  bool finish_request_early() override { return discard_rest_of_request(); }
  void response_done(bool close_after) override;
  void resume_body() override;
  void start_tunnel() override;
  void tunnel_upstream_done() override;
  void abort() override { close(); }
  bool closing() const override { return closing_; }
  bool close_requested() const override { return close_after_response_; }

  // Transport::Handler
  void on_read(ssize_t nread) override;
  void on_write_done(int status) override;
  void on_closed() override;
  // libuv callbacks.
  static void on_timer(uv_timer_t* t);
  static void on_timer_closed(uv_handle_t* h);
  void handle_closed();  // one of the two handles closed; the last frees this

  Worker& worker_;
  TcpTransport tcp_;
  IoBuffer& in_;  // the transport's read buffer
  DeadlineTimer timer_;
  int open_handles_ = 0;
  bool closing_ = false;
  bool listed_ = false;  // in the worker's connection list
  bool client_write_pending_ = false;
  bool client_eof_ = false;
  bool close_after_response_ = false;
  bool drain_requested_ = false;
  bool lingering_ = false;        // linger_close(): reading only to drop
  uint64_t linger_deadline_ = 0;  // loop ms
  uint64_t linger_bytes_ = 0;
  char client_ip_[48] = {};
  uint8_t client_ip_len_ = 0;

  h1::RequestParser req_;  // the request side of the HTTP/1 codec
  ReqPhase req_phase_ = ReqPhase::kIdle;
  bool req_body_started_ = false;
  bool tunnel_ = false;     // after a 101: bytes pass raw both ways
  std::string error_out_;   // an answer of our own being written
  bool error_keep_alive_ = false;  // ... after which the connection goes on
  Exchange ex_;  // the request in progress, reused for the next one
};

}  // namespace ringproxy
