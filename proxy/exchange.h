// One request's way through the proxy, once the HTTP/1 server codec
// (http/h1/server_conn.h) has a checked head: the key and the node (proxy/router.h),
// the head rewritten for the node (proxy/rewrite.h), an upstream connection from the
// node's pool, the body streamed up, the response read back and streamed down,
// retries on another node while nothing has been sent, the upstream timeouts, and the
// request's record (proxy/request_log.h). It never sees the client's socket: it is the
// codec's RequestHandler and answers through h1::Downstream, with the codec's two
// backpressure rules (a kPinned body chunk; a kQueued send stops the node's reads until
// on_downstream_drained).
//
// The exchange lives inside its client connection (proxy/client_conn.h) and serves
// every request on it: no allocation per request once warm.
//
// Thread: the owning worker's loop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "http/h1/request_parser.h"
#include "http/h1/response_parser.h"
#include "http/h1/server_conn.h"
#include "http/h2/client_session.h"
#include "http/message.h"
#include "proxy/backends.h"
#include "proxy/request_log.h"
#include "proxy/upstream_h2.h"
#include "proxy/upstream_pool.h"

namespace ringproxy {

class Worker;

// Largest response head accepted from a node; a larger one is a 502.
constexpr uint32_t kMaxResponseHead = 64 * 1024;

// To an HTTP/2 node (protocol = "h2c" | "h2") the request is a stream (ups_) on one of
// the node's shared connections (proxy/upstream_h2.h) instead of a connection of its
// own; the head is the same rewritten head, re-framed, and the response is pulled from
// the stream (on_upstream_stream) and framed for the client as HTTP/1 (sized, chunked
// with its trailers, or to the close for 1.0) or HTTP/2 (DATA, trailers).
class Exchange final : public h1::RequestHandler,
                       private UpstreamConn::Owner,
                       private h2::ClientStream::Handler {
 public:
  Exchange(Worker& worker, h1::Downstream& down);
  // The listener its connection came in on: the pool of requests no route matches, and
  // the TLS settings, as the current routing has them. Its pool's name and the subject
  // header are kept for when a reload has removed the listener and the connection
  // finishes its last requests.
  void set_listener(const ListenerRouting& l);
  // The same listener as `other`'s (an HTTP/2 stream's exchange, from its connection's).
  void copy_listener(const Exchange& other) {
    listener_id_ = other.listener_id_;
    listener_pool_ = other.listener_pool_;
    listener_subject_header_ = other.listener_subject_header_;
  }
  ~Exchange() = default;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // h1::RequestHandler (http/h1/server_conn.h says when each is called)
  void begin() override;
  // Routes the request, or answers it through Downstream.
  void on_request(RequestHead& req, std::string_view client_ip) override;
  BodyResult on_body(char* p, size_t len, bool end) override;
  // A chunked HTTP/1 body to an HTTP/2 node (whose DATA frames carry it); once the codec
  // has decoded any of it, to the end of the request, whatever node a retry goes to
  // (an HTTP/1 node then gets it re-chunked: the codec has consumed the chunk lines).
  bool wants_decoded_body() const override {
    return (up_h2_ || decoding_) && req_ && !req_->body_decoded && req_->has_body && !req_->content_length;
  }
  bool ready_for_body() const override {
    if (up_h2_) return upstream_ready_ && ups_.attached() && ups_.body_writable();
    return up_ && upstream_ready_ && !up_->write_pending();
  }
  bool body_pinned() const override { return up_h2_ ? !ups_.body_writable() : (up_ && up_->write_pending()); }
  void on_client_eof() override;
  void on_downstream_drained() override;
  // The upstream connection goes (closed: it may be mid-exchange).
  void abort() override { release_upstream(false); }
  bool active() const override { return phase_ != Phase::kNone; }
  bool response_started() const override { return resp_bytes_ > 0; }
  // The response is delimited by the close, a 1.0 client gets a decoded body, the
  // proxy ran out of descriptors, ...
  bool close_after() const override { return close_after_; }
  // Logs "answered STATUS: CAUSE client=IP node=NAME address=ADDR" and records the
  // request's outcome.
  void on_answered(int status, std::string_view cause) override;
  void on_client_note(std::string_view what) override;
  void reset() override;

 private:
  enum class Phase { kNone, kConnecting, kWaiting, kHead, kBody, kDone };

  // "node=NAME address=ADDR" of the node last tried, or "node=-".
  std::string node_label() const;
  // Records the request's outcome (at most once per request: RequestLog).
  void account(int status);

  // Routing and attempts.
  bool apply_max_forwards(RequestHead& req);
  void pick_node_and_connect();
  // Takes a connection to node_ (this attempt's): an idle pooled one, or a new one.
  void connect_node();
  // node_ is an HTTP/2 node that allows no stream now (UpstreamPool::H2Placement's
  // node_full): true when the request went to the next node instead; false when it has
  // none to go to, and the stream is to wait on the node's connection.
  bool node_full_elsewhere();
  void attach_upstream(UpstreamConn* conn);
  void send_upstream_head();
  bool may_retry() const;
  // `node_failed`: counted against the node (passive health); false for a stream that
  // never left its connection's queue.
  void upstream_failed(int status_code, std::string_view cause, bool retryable_failure, bool node_failed = true);
  void note_node_failure(const Backend& b);

  // Response side.
  void process_response_bytes();
  void on_response_head();
  // The response ended; [out, out + len) are its last bytes for the client.
  void finish_response(char* out, size_t len);
  bool upstream_reusable();
  // Writes the pending response head (if any) and `len` body bytes in one write;
  // `counted`: resp_bytes_ already includes them.
  // `last`: the response ends with these bytes (HTTP/2 ends its stream).
  int send_to_client(char* body, size_t len, bool counted = false, bool last = false);
  void start_tunnel();
  void release_upstream(bool reusable);
  // The response is complete and written.
  void done();

  // UpstreamConn::Owner
  void on_upstream_connect(int status) override;
  void on_upstream_read(ssize_t nread) override;
  void on_upstream_write(int status) override;
  void on_upstream_timeout() override;

  // Connect failures, from a connection of its own or an HTTP/2 node's shared one.
  void connect_failed(int status, std::string cause);
  // The upstream's timer: this request's connection's, or its stream's deadline.
  void arm_up_timer(uint32_t ms);
  bool up_write_pending() const { return up_h2_ ? !ups_.body_writable() : (up_ && up_->write_pending()); }

  // HTTP/2 nodes.
  void open_stream(H2Upstream* conn);
  void on_upstream_stream() override;  // h2::ClientStream::Handler
  void on_stream_timeout() override { on_upstream_timeout(); }
  void pump_stream();
  void on_stream_head();
  void on_stream_failed();
  // Body bytes of the node's response to the client, framed for its protocol.
  int stream_body_to_client(char* p, size_t len, bool last);
  void finish_stream();

  Worker& worker_;
  h1::Downstream& down_;
  Phase phase_ = Phase::kNone;

  // The request.
  const RequestHead* req_ = nullptr;  // the codec's, valid until reset()
  std::string_view client_ip_;  // the codec's, for the connection's life
  bool idempotent_ = false;
  bool upgrade_ = false;
  bool upgrade_asked_ = false;  // the client asked for one (h2c among them, never passed on)
  bool is_head_ = false;
  bool client_http10_ = false;
  bool down_h2_ = false;       // the client speaks HTTP/2: the codec frames the response
  bool chunk_up_ = false;      // the decoded request body goes to the node chunked
  bool decoding_ = false;      // the codec has decoded body bytes of this chunked request
  char chunk_line_[20] = {};   // "HEX\r\n" of the chunk being written (pinned with it)
  bool req_done_ = false;      // the codec has passed the request's last byte
  bool host_missing_ = false;  // a 1.0 request without Host: the node's address is sent
  // Max-Forwards of an OPTIONS or TRACE being forwarded, already decremented.
  bool max_forwards_set_ = false;
  uint32_t max_forwards_ = 0;
  uint64_t req_body_forwarded_ = 0;

  // Routing and the upstream connection.
  std::shared_ptr<const Routing> routing_;  // the routing this request was routed with
  const Pool* pool_ = nullptr;               // routing_'s pool this request goes to
  uint32_t listener_id_ = 0;
  std::string listener_pool_ = "default";
  std::string listener_subject_header_;
  uint64_t key_hash_ = 0;
  NodeIndex node_ = 0;
  bool have_node_ = false;
  uint32_t attempts_ = 0;          // nodes tried (retries + 1)
  bool reconnected_ = false;       // a pooled connection failed (once per request) ...
  bool fresh_connection_ = false;  // ... so the next attempt takes a new connection
  bool same_node_again_ = false;   // this connect is that reconnect: no attempt of its own
  // A node with several addresses: the first this attempt took, and how many after it
  // were tried because a connect failed.
  uint32_t address_ = 0;
  uint32_t addresses_tried_ = 0;
  // proxy.retries is at most kMaxRetries (config/config.cc): one slot per attempt.
  NodeIndex tried_[kMaxRetries + 1] = {};
  UpstreamConn* up_ = nullptr;
  // HTTP/2 node: this attempt's stream and the connection carrying it.
  bool up_h2_ = false;
  h2::ClientStream ups_;
  bool te_trailers_ = false;
  bool grpc_ = false;           // content-type application/grpc: our errors are gRPC statuses    // the client takes trailers (TE: trailers, or HTTP/2)
  bool chunk_down_ = false;     // the node's body goes to the HTTP/1.1 client chunked
  bool stream_end_sent_ = false;  // HTTP/2 client: END_STREAM went with the last send
  bool stream_bodiless_ = false;  // the node's response has no body (HEAD, 204, 304)
  bool body_wait_ = false;      // request bytes pinned until the stream frames them
  // The body chunk last given to the stream: the codec's bytes, pinned while body_wait_.
  // A stream that never left its connection's queue holds them unframed, and the next
  // attempt's stream takes them again (resend_body_; on_stream_failed).
  const char* unsent_ = nullptr;
  size_t unsent_len_ = 0;
  bool unsent_end_ = false;
  bool resend_body_ = false;
  // Streams the node did not process (GOAWAY, REFUSED_STREAM) sent again, this request.
  uint32_t unprocessed_again_ = 0;
  static constexpr uint32_t kMaxUnprocessedAgain = 4;
  std::string h2_names_;        // the request head's names in lower case (per attempt)
  std::vector<nghttp2_nv> h2_nv_;
  std::vector<HeaderView> h2_fields_;  // the node's response fields, with ours added
  char chunk_head_[20] = {};    // "HEX\r\n" of a chunk to an HTTP/1.1 client
  std::string tail_;            // the last-chunk and trailers for an HTTP/1.1 client
  bool upstream_ready_ = false;  // connected and head written or queued
  std::string up_head_;          // request head as sent upstream (kept for retries)
  HeadSpans up_spans_;           // its parts, when the pool has an HTTP/2 node (exchange_h2.cc)
  std::string origin_scratch_;   // "/" + query of an absolute target without a path
  std::string host_line_;        // "Host: ADDRESS\r\n" for a request that had none
  // Why the last node failed, with its name, while the next is picked: logged with the
  // retry, or with the 502 when no node is left (one line per failure either way).
  std::string failed_cause_;
  uint64_t up_sent_us_ = 0;      // when the head went to the node (this attempt)
  uint32_t upstream_timeout_ms_ = 0;  // proxy.upstream_timeout_ms, or a shorter grpc-timeout

  // The response.
  h1::ResponseParser resp_;  // the client side of HTTP/1 for the node's answer
  int resp_status_ = 0;
  bool tunnel_ = false;
  bool upstream_eof_ = false;  // tunnel: the node has finished sending
  bool close_after_ = false;   // the connection ends after this response
  bool head_pending_ = false;  // resp_head_ built, not yet written
  bool after_head_ = false;    // run the parser once more, even on no bytes
  std::string resp_head_;           // response head as sent to the client
  std::string own_answer_;          // an answer of the proxy's own (Max-Forwards: 0)
  uint64_t resp_bytes_ = 0;
  bool resp_from_backend_ = false;
  RequestLog log_;  // this request's record: metrics, passive health, access log
};

}  // namespace ringproxy
