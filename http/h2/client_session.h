// The client side of HTTP/2 (RFC 9113) on nghttp2: one connection to a node whose
// [[backend]] says protocol = "h2c" or "h2", carrying many requests at once, each a
// ClientStream. The proxy's Exchange drives a stream as it drives an HTTP/1 upstream
// connection: it submits the head, offers body bytes, and pulls the response (head,
// body, trailers) when told something changed, so the Exchange is written once.
//
// What the codec does and the Exchange never sees:
//  - Framing, HPACK, SETTINGS, PING, stream states and nghttp2's HTTP messaging checks
//    on the node's responses (a malformed response resets its stream, not the others).
//  - Flow control as backpressure, both ways. Response DATA is copied into the stream's
//    buffer and credited back to the node (WINDOW_UPDATE) only as the client takes it:
//    a slow client holds back its own stream, never the connection, whose window is
//    credited on receipt. Request bytes stay the caller's (pinned) until they are framed;
//    the node's window holding them back holds back the client's reads.
//  - Concurrency: the node's SETTINGS_MAX_CONCURRENT_STREAMS. can_open() says whether
//    another stream fits under it; a stream submitted beyond it waits (nghttp2 keeps its
//    HEADERS queued, in submit order, and sends it as another stream closes; the pool
//    bounds how many wait: place_h2_stream in proxy/upstream_pool.h). A waiting stream
//    is a stream like any other to its caller (its deadline runs, cancel() takes it back
//    unsent, a GOAWAY or a lost connection makes it unprocessed()); waiting() tells it
//    apart.
//  - A limit that drops (the node's SETTINGS lower SETTINGS_MAX_CONCURRENT_STREAMS below
//    the streams it has, to 0 in particular: RFC 9113 6.5.2, a node shedding load): the
//    waiting streams the new limit leaves no slot for (those submitted last; never one
//    sent) are taken back (RST_STREAM cancels a queued HEADERS before it goes) and come
//    back as unprocessed() and moved(), so the pool places them again as new ones:
//    another connection, or the next node (proxy/upstream_pool.h). Done here because
//    only the session sees the limit move and knows which streams nghttp2 still holds;
//    the Exchange only sees a stream that may go again, as after a GOAWAY. A limit that
//    rises needs nothing: nghttp2 sends the waiting ones.
//  - GOAWAY: streams above the node's last stream id, and those refused
//    (REFUSED_STREAM), come back as unprocessed(): RFC 9113 8.7 says they were not
//    processed, so they may go again, to a new connection.
//
// Output: every frame, DATA payloads included, is copied into one buffer per write, so
// no caller's bytes are referenced once a stream lets go of them (a cancelled stream
// on a shared connection must not leave its client's buffer in a write).
//
// Thread: the connection's loop.
#pragma once

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "net/poller.h"

namespace ringproxy::h2 {

class ClientSession;

// One request to the node and its response. The Exchange keeps one and reuses it for
// every request: no allocation per stream once warm.
class ClientStream {
 public:
  // Told that the stream's state changed: a head, body bytes, the end, a failure, or
  // the request bytes it was given have been framed. Never called from inside nghttp2.
  class Handler {
   public:
    virtual void on_upstream_stream() = 0;
    // The deadline set with arm_timer() passed.
    virtual void on_stream_timeout() = 0;

   protected:
    ~Handler() = default;
  };

  ClientStream() = default;
  ~ClientStream() { cancel(); }
  ClientStream(const ClientStream&) = delete;
  ClientStream& operator=(const ClientStream&) = delete;

  void set_handler(Handler* h) { handler_ = h; }
  // On a session (submitted and not yet cancelled or ended).
  bool attached() const { return session_ != nullptr; }
  // Attached and not sent yet: its HEADERS wait in nghttp2's queue for a slot under the
  // node's SETTINGS_MAX_CONCURRENT_STREAMS, or for the connection to come up. The node
  // has seen nothing of it.
  bool waiting() const;
  // When its HEADERS went to the node (the Wire's clock, Wire::wire_now_us); 0 while
  // waiting. A stream that waited was sent later than it was submitted.
  uint64_t sent_us() const { return sent_us_; }
  // Lets go of the stream: RST_STREAM (CANCEL) when it is still open, its state forgotten.
  // Nothing of the caller's is referenced afterwards.
  void cancel();

  // A deadline in `ms` on the connection's timer (ClientSession::Wire::wire_arm),
  // replacing the last; kept only while attached (a stream that ends or fails lets go
  // of it, so no timer outlives the stream's time on the connection).
  void arm_timer(uint32_t ms);
  void disarm_timer();
  // The Wire's bookkeeping of the stream's deadline (its slot in the Wire's list).
  size_t timer_slot = SIZE_MAX;
  // For the Wire: the deadline passed.
  void timed_out() {
    if (handler_) handler_->on_stream_timeout();
  }

  // The request body: [p, p + len) and `end`. kWritten when the session took it (only
  // an empty end), kQueued when the bytes stay pinned until framed (on_upstream_stream
  // follows, body_writable() true), or a libuv error.
  int send_body(const char* p, size_t len, bool end);
  bool body_writable() const { return out_len_ == 0; }

  // The response, as it arrives. An interim head (1xx), then the final one.
  bool interim_ready() const { return interim_status_ != 0; }
  int interim_status() const { return interim_status_; }
  std::span<const HeaderView> interim_fields() const { return interim_fields_; }
  void interim_taken();
  bool head_ready() const { return status_ != 0; }
  int status() const { return status_; }
  std::span<const HeaderView> fields() const { return fields_; }
  // Body bytes received and not yet given to the client.
  char* body_data() { return body_.data() + given_; }
  size_t body_size() const { return body_.size() - given_; }
  // `n` bytes of body_data() went to the client; `pinned`: they are still in use (a
  // queued write) until unpin().
  void give(size_t n, bool pinned);
  void unpin();
  bool body_pinned() const { return pinned_ > 0; }
  // The node ended the response (END_STREAM), and every byte was given: none left in
  // body_data(), none waiting behind pinned bytes (DATA that came while they were
  // pinned shows in body_data() only after unpin()).
  bool ended() const { return remote_end_ && body_size() == 0 && later_.empty(); }
  // The node sent END_STREAM and body_data() holds the last of the body (bytes may
  // remain to give, none wait behind pinned ones): what body_data() holds may carry the
  // end on. fuzz_h2_client found both reading true while bytes waited behind pinned
  // ones (a caller reading on while its bytes are pinned would have cut the body short;
  // the Exchange waits for its write first, so it never did).
  bool remote_ended() const { return remote_end_ && later_.empty(); }
  std::span<const HeaderView> trailers() const { return trailers_; }

  // The stream failed: reset by the node, the connection lost, the session ended.
  bool failed() const { return failed_; }
  // ... without the node having processed it (REFUSED_STREAM, above a GOAWAY's last
  // stream id, never sent): it may go again, to another connection.
  bool unprocessed() const { return unprocessed_; }
  // ... because the node lowered its SETTINGS_MAX_CONCURRENT_STREAMS while the stream
  // waited (waiting_kept): not sent, not refused, nothing the node did wrong.
  bool moved() const { return moved_; }
  uint32_t error_code() const { return error_code_; }
  // Why, for the log ("reset by the node: INTERNAL_ERROR").
  const std::string& cause() const { return cause_; }
  // A libuv code when the connection never came up (UV_ETIMEDOUT, UV_ECONNREFUSED,
  // UV_EPROTO for TLS), else 0.
  int connect_status() const { return connect_status_; }

 private:
  friend class ClientSession;
  void reset_state();
  void fail(std::string_view cause, bool unprocessed, uint32_t code, int connect_status);

  Handler* handler_ = nullptr;
  ClientSession* session_ = nullptr;
  int32_t id_ = 0;
  uint64_t sent_us_ = 0;
  bool notify_ = false;  // listed for on_upstream_stream

  // The request body being framed: the caller's bytes.
  const char* out_ = nullptr;
  size_t out_len_ = 0;
  bool out_end_ = false;
  bool has_body_ = false;

  // The response.
  int interim_status_ = 0;
  std::vector<HeaderView> interim_fields_;
  int status_ = 0;
  std::vector<HeaderView> fields_;
  std::vector<HeaderView> trailers_;
  std::vector<nghttp2_rcbuf*> rcbufs_;  // the field bytes, held until reset
  std::vector<HeaderView> building_;    // the head being decoded
  int building_status_ = 0;
  uint32_t head_bytes_ = 0;
  std::string body_;
  std::string later_;  // DATA that came while body_'s bytes were pinned
  size_t given_ = 0;
  size_t pinned_ = 0;
  bool remote_end_ = false;

  bool failed_ = false;
  bool unprocessed_ = false;
  bool moved_ = false;
  uint32_t error_code_ = 0;
  int connect_status_ = 0;
  std::string cause_;
};

// Re-frames a request head of ours in HTTP/1 (proxy/rewrite.h built it: the request
// line, field lines, the empty line) as HTTP/2 fields for the node, so the rewrite rules
// are written once: :method, :scheme (`scheme`), :authority from Host (`authority` when
// the head has none: a 1.0 request), :path from the target, then the fields with names
// in lower case, less those RFC 9113 8.2.2 forbids (Connection, Keep-Alive,
// Proxy-Connection, Transfer-Encoding, Upgrade, TE; the fields a client's Connection
// named are gone already, the head being ours). `te_trailers`: the
// client said it takes trailers (TE: trailers, which gRPC servers require): sent on.
// Values point into `head`, names into `names` (grown to the head's size, never shrunk:
// a buffer kept from request to request); nghttp2 copies both on submit. False when the head does not parse (never ours).
bool request_fields_from_http1(std::string_view head, std::string_view scheme, std::string_view authority,
                               bool te_trailers, std::string& names, std::vector<nghttp2_nv>& nv);

// The same from such a head and where its writer put its parts (`spans`, proxy/rewrite.h
// records them): what the Exchange uses, the head not parsed again (callgrind, h2c
// clients to h2c nodes: see the commit). False when nothing gives :authority.
bool request_fields(std::string_view head, const HeadSpans& spans, std::string_view scheme,
                    std::string_view authority, bool te_trailers, std::string& names,
                    std::vector<nghttp2_nv>& nv);

// How many of a connection's waiting streams stay when the node's limit drops to
// `limit` with `open` streams sent: those that would be sent first as slots free under
// it (nghttp2 sends queued streams in submit order); the others move. 0 when the open
// ones already fill the limit. Pure, for the tests.
constexpr size_t waiting_kept(size_t open, uint32_t limit, size_t waiting) {
  const size_t room = open < limit ? limit - open : 0;
  return room < waiting ? room : waiting;
}

struct ClientSettings {
  // Per stream: the response bytes buffered for a client that reads slower than the
  // node sends. The connection's window is larger and credited on receipt.
  uint32_t stream_window_bytes = 256 * 1024;
  uint32_t connection_window_bytes = 16 * 1024 * 1024;
  uint32_t max_header_list_bytes = 65536;
  // The node's SETTINGS_MAX_CONCURRENT_STREAMS as its last connection learnt it, taken
  // until this one's SETTINGS come (none: unknown, nghttp2's 100): a burst of requests
  // on new connections fills each as far as the node allows, not to 100. 0 included: a
  // node that allowed none has a new connection's streams wait for its SETTINGS, rather
  // than sent to be refused.
  std::optional<uint32_t> assumed_peer_streams;
};

class ClientSession {
 public:
  // The connection under the session (proxy/upstream_h2.h).
  class Wire {
   public:
    // One buffer: Transport::kWritten, kQueued (on_write_done follows) or an error.
    virtual int wire_send(uv_buf_t* buf) = 0;
    virtual bool wire_pending() const = 0;
    virtual Poller& wire_poller() = 0;
    // The session cannot go on (a protocol error, GOAWAY received and nothing left):
    // close the connection; `why` is for the log ("" for an orderly end).
    virtual void wire_close(std::string_view why) = 0;
    // A stream ended or the node's limits moved: a pool may place streams again.
    // Called from inside nghttp2's callbacks too (a stream closing, a GOAWAY, the node's
    // SETTINGS), where the Wire may close the connection (on_closed) but must not free
    // the session: nghttp2 is on the stack until the loop's turn ends. The streams'
    // handlers hear of such a close once nghttp2 has returned.
    virtual void wire_capacity() = 0;
    // A stream's deadline (ClientStream::arm_timer); dropped with wire_disarm, which the
    // session calls when the stream leaves it.
    virtual void wire_arm(ClientStream& s, uint32_t ms) = 0;
    virtual void wire_disarm(ClientStream& s) = 0;
    // The loop's clock in microseconds (ClientStream::sent_us).
    virtual uint64_t wire_now_us() = 0;

   protected:
    ~Wire() = default;
  };

  ClientSession(Wire& wire, const ClientSettings& settings);
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // Queues the preface and SETTINGS; false when nghttp2 could not start (no memory).
  bool start();
  // The connection is up: what was queued (preface, SETTINGS, requests) goes.
  void on_connected();
  // Bytes from the node. False: the session failed (every stream was told).
  bool on_read(const char* p, size_t len);
  void on_write_done(int status);
  // The connection is gone: every stream fails (`connect_status` when it never came up)
  // and its handler is told; from inside nghttp2's callbacks (the Wire closing in
  // wire_capacity), told once nghttp2 has returned.
  void on_closed(std::string_view cause, int connect_status);
  // Drain: no new streams, GOAWAY when the last one ends.
  void shutdown();

  // Opens a stream: `nv` is the request head (pseudo-header fields first, names in
  // lower case; copied by nghttp2). The stream must not be attached. 0 or a libuv error.
  int submit(ClientStream& s, std::span<const nghttp2_nv> nv, bool has_body);
  // Takes streams at all: not failed, no GOAWAY either way, stream ids left.
  bool accepting() const;
  // Another stream fits under the node's SETTINGS_MAX_CONCURRENT_STREAMS: it is sent
  // at once (when the connection is up). One submitted while accepting() but not this
  // waits: nghttp2_submit_request queues its HEADERS, and nghttp2 opens queued streams
  // in submit order as the node's limit leaves room.
  bool can_open() const { return accepting() && streams_.size() < peer_max_streams(); }
  // Attached streams: open and waiting.
  size_t streams() const { return streams_.size(); }
  uint32_t peer_max_streams() const;
  bool goaway_received() const { return goaway_; }
  // The node's SETTINGS have come (peer_max_streams() is its own, not assumed).
  bool peer_settings_known() const { return peer_settings_; }
  bool failed() const { return dead_; }
  // nghttp2 is on the stack (nghttp2_session_mem_recv or _mem_send: its callbacks run);
  // no handler is told meanwhile. For asserts and the fuzz harness.
  bool in_nghttp2() const { return in_recv_ || in_send_; }
  // Some session of this thread is: for tests that check a handler's calls come from
  // outside nghttp2 (tests/proxy/exchange_test.cc).
  static bool any_inside_nghttp2();

 private:
  friend class ClientStream;
  void flush();
  void flush_soon();
  void notify(ClientStream& s);
  void run_notify();
  void detach(ClientStream& s);
  void fail_all(std::string_view cause, bool unprocessed, int connect_status);
  void credit(ClientStream& s, size_t n);
  // The node's SETTINGS came: when its limit dropped, the waiting streams it leaves no
  // room for move (waiting_kept). Inside nghttp2's callback.
  void move_unfit();

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
                       uint8_t flags, void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
                           void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_frame_not_send(nghttp2_session*, const nghttp2_frame* frame, int error, void* user);
  static ssize_t read_data(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source* source, void* user);
  static int send_data_frame(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                             nghttp2_data_source* source, void* user);

  // The end-of-turn flush (as the server session's): a task deferred on the poller.
  DeferredCall<ClientSession, &ClientSession::flush> flush_task_{*this};

  Wire& wire_;
  const ClientSettings settings_;
  nghttp2_session* ng_ = nullptr;
  std::vector<ClientStream*> streams_;  // attached
  std::vector<ClientStream*> notify_;
  std::vector<ClientStream*> notifying_;
  std::string out_;      // the write being built
  std::string sending_;  // the write in flight
  bool connected_ = false;
  bool in_recv_ = false;
  bool in_send_ = false;  // inside nghttp2_session_mem_send
  bool in_flush_ = false;
  bool flush_again_ = false;
  bool goaway_ = false;     // received: no new streams
  bool peer_settings_ = false;
  uint32_t limit_seen_ = 0;  // peer_max_streams() when last looked at (move_unfit)
  bool draining_ = false;   // ours: GOAWAY once idle
  bool dead_ = false;
};

}  // namespace ringproxy::h2
