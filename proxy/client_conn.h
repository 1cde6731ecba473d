// One client connection and the exchange it is in: the request head parsed with
// llhttp, a node chosen on the ring, the head rewritten and sent upstream, then the
// body bytes passed through in both directions exactly as framed (llhttp validates the
// framing as they pass). Pipelined requests are answered in order, one at a time.
//
// Backpressure: a side is read only while nothing written to the other side is
// waiting in libuv; forwarded bytes are written straight from the read buffer
// (no copy), which therefore stays put until the write completes.
//
// Thread: the owning worker's loop. Freed only in the last close callback.
#pragma once

#include <llhttp.h>
#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "net/deadline_timer.h"
#include "net/tcp_transport.h"
#include "http/h1/field_spans.h"
#include "http/h1/request_parser.h"
#include "http/header_rules.h"
#include "http/message.h"
#include "proxy/hash_key.h"
#include "proxy/request_log.h"
#include "net/io_buffer.h"
#include "proxy/upstream_pool.h"

namespace ringproxy {

class Worker;

class ClientConn final : private UpstreamConn::Owner, private Transport::Handler {
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
  enum class RespPhase { kNone, kConnecting, kWaiting, kHead, kBody, kDone };

  using Span = h1::Span;
  using HeaderSpan = h1::FieldSpan;

  explicit ClientConn(Worker& worker);
  ~ClientConn();

  // Request side.
  void process_request_bytes();
  bool parse_head();  // false when the connection is done with (error sent)
  void on_request_head();
  bool forward_request_body();
  void pick_node_and_connect();
  void attach_upstream(UpstreamConn* conn);
  void send_upstream_head();
  bool may_retry() const;
  void upstream_failed(int status_code, std::string_view cause, bool retryable_failure);

  // Response side.
  void process_response_bytes();
  void on_response_head();
  // The message ends after `len` bytes at `start`, of which the first `send_len` go to
  // the client (fewer when a chunked body is decoded).
  void finish_response(char* start, size_t len, size_t send_len);
  // Of `len` body bytes the parser just read at `start`, how many go to the client: all
  // of them, or what decoding a chunked body for a 1.0 client left (decode_dst_).
  size_t body_out(const char* start, size_t len) const {
    return decode_chunked_ ? static_cast<size_t>(decode_dst_ - start) : len;
  }
  bool upstream_reusable();
  // Writes the pending response head (if any) and `len` body bytes in one write;
  // `counted`: resp_bytes_ already includes them.
  int send_to_client(char* body, size_t len, bool counted = false);
  void exchange_done();
  void release_upstream(bool reusable);
  void start_tunnel();
  void tunnel_half_close_from_client();
  void tunnel_half_close_from_upstream();

  // Writing to the client.
  int write_client(uv_buf_t* bufs, unsigned count);
  // An empty `log_cause` writes no line: the caller logs (rate-limited).
  void respond_error(int status, std::string_view body, std::string_view log_cause);
  // Our own complete answer (`out`, built by the caller into error_out_) written, then
  // the connection goes on (`keep_alive`) or closes in stages.
  void respond_self(bool keep_alive);
  void error_response_written();
  // RFC 9112 9.6: after an answer that ends the connection while the client may still
  // be sending, send FIN and read and drop what comes for a bounded time and size, so
  // the client reads the answer instead of a reset (nginx's lingering close).
  void linger_close();
  // Max-Forwards on OPTIONS and TRACE (RFC 9110 7.6.2): false when the proxy answered.
  bool apply_max_forwards(std::string_view method, std::string_view target);
  // Reads the rest of the request, if it is all buffered, and drops it; true when the
  // request is then complete.
  bool discard_rest_of_request();
  void resume_client_reading();
  void arm_timer(uint32_t ms);
  // Once per request: metrics, passive health, access log.
  void finish_accounting(int status);
  void note_node_failure(const Backend& b);

  // UpstreamConn::Owner
  void on_upstream_connect(int status) override;
  void on_upstream_read(ssize_t nread) override;
  void on_upstream_write(int status) override;
  void on_upstream_timeout() override;

  // Transport::Handler
  void on_read(ssize_t nread) override;
  void on_write_done(int status) override;
  void on_closed() override;
  // libuv callbacks.
  static void on_timer(uv_timer_t* t);
  static void on_timer_closed(uv_handle_t* h);
  void handle_closed();  // one of the two handles closed; the last frees this

  // llhttp callbacks (the response parser).
  static int on_resp_status(llhttp_t* p, const char* at, size_t len);
  static int on_resp_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_resp_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_resp_headers_complete(llhttp_t* p);
  static int on_resp_message_complete(llhttp_t* p);
  static int on_resp_body_decode(llhttp_t* p, const char* at, size_t len);
  static const llhttp_settings_t& response_settings();
  // The response parser's settings while a chunked body is decoded for an HTTP/1.0
  // client: body bytes are gathered to the front of the read (decode_dst_).
  static const llhttp_settings_t& response_decode_settings();

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

  h1::RequestParser req_;  // the request side of the HTTP/1 codec
  ReqPhase req_phase_ = ReqPhase::kIdle;
  bool idempotent_ = false;
  bool upgrade_ = false;
  bool client_keep_alive_ = true;
  bool client_http10_ = false;
  bool host_missing_ = false;  // a 1.0 request without Host: the node's address is sent
  // Max-Forwards of an OPTIONS or TRACE being forwarded, already decremented.
  bool max_forwards_set_ = false;
  uint32_t max_forwards_ = 0;
  uint64_t req_body_forwarded_ = 0;
  bool req_body_started_ = false;

  // Exchange.
  std::shared_ptr<const Routing> routing_;  // the routing this request was routed with
  uint64_t key_hash_ = 0;
  NodeIndex node_ = 0;
  bool have_node_ = false;
  uint32_t attempts_ = 0;  // nodes tried (retries + 1)
  bool reconnected_ = false;       // a pooled connection failed (once per request) ...
  bool fresh_connection_ = false;  // ... so the next attempt takes a new connection
  // proxy.retries is at most kMaxRetries (config/config.cc): one slot per attempt.
  NodeIndex tried_[kMaxRetries + 1] = {};
  UpstreamConn* up_ = nullptr;
  bool upstream_ready_ = false;  // connected and head written or queued
  std::string up_head_;          // request head as sent upstream (kept for retries)
  std::string origin_scratch_;   // "/" + query of an absolute target without a path
  std::string host_line_;        // "Host: ADDRESS\r\n" for a request that had none
  RespPhase resp_phase_ = RespPhase::kNone;
  llhttp_t resp_parser_{};
  Span status_text_;
  std::vector<HeaderSpan> resp_headers_;
  std::vector<HeaderView> resp_views_;
  uint32_t resp_head_bytes_ = 0;
  bool resp_msg_done_ = false;
  int resp_status_ = 0;
  bool tunnel_ = false;
  bool upstream_eof_ = false;  // tunnel: the backend has finished sending
  bool head_pending_ = false;       // resp_head_ built, not yet written
  bool resp_exec_pending_ = false;  // run the parser once more, even on no bytes
  bool decode_chunked_ = false;     // an HTTP/1.0 client: the chunked body goes decoded
  char* decode_dst_ = nullptr;      // where the next decoded body byte goes
  std::string resp_head_;  // response head as sent to the client
  uint64_t resp_bytes_ = 0;
  RequestLog log_;  // this request's record: metrics, passive health, access log
  uint64_t up_sent_us_ = 0;    // the same, when the head went to the node (this attempt)
  bool resp_from_backend_ = false;
  std::string error_out_;   // a canned response being written
  bool error_keep_alive_ = false;  // ... after which the connection goes on
};

}  // namespace ringproxy
