// The server side of HTTP/2 (RFC 9113) on nghttp2: one client connection that an HTTP/1
// ServerConn handed over (h1::Takeover) when the client opened with the preface (h2c,
// prior knowledge) or chose "h2" by ALPN. Each stream is one request with its own
// RequestHandler (the proxy's Exchange), answered through its Stream, the same
// Downstream interface HTTP/1 gives: the Exchange is written once for both.
//
// What the codec does and the handler never sees:
//  - Framing, HPACK, SETTINGS, PING, the stream states (nghttp2, with its HTTP
//    messaging checks on: pseudo-header fields, connection-specific fields, TE other than
//    "trailers", Content-Length against the DATA received are refused per stream).
//  - The request head in the neutral form (http/message.h): :method, :path, :authority
//    as Host, cookies joined into one field (RFC 9113 8.2.3). Field bytes are nghttp2's
//    reference-counted buffers, held for the stream's life: no copy.
//  - Flow control as backpressure, per stream: DATA is copied into the stream's buffer
//    and credited back to the client (WINDOW_UPDATE) only when the handler has taken it,
//    so a stream whose node is slow stops its own client, never the connection (whose
//    window is credited on receipt).
//  - Responses: the head as HTTP/2 fields (hop-by-hop fields dropped, names lowered),
//    the body sent from the handler's buffer without a copy (NGHTTP2_DATA_FLAG_NO_COPY):
//    the bytes stay pinned until the write that carries them completes.
//  - Hostile clients: nghttp2's limits (SETTINGS and PING floods, more streams than
//    SETTINGS_MAX_CONCURRENT_STREAMS; rapid reset and CONTINUATION floods in Debian's
//    1.52.0-1+deb12u3, which carries those fixes) and ours: a head over
//    max_header_list_bytes is answered 431; runs of empty DATA frames end the
//    connection (ENHANCE_YOUR_CALM); a head not complete within header_timeout_ms and a
//    client that reads nothing for idle_timeout_ms end it too.
//
// Thread: the connection's loop. Owned by the ServerConn's owner, which frees it after
// the connection's on_freed.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/h1/server_conn.h"
#include "http/handler.h"
#include "http/message.h"

namespace ringproxy::h2 {

// SPEC "HTTP/2 and gRPC": [http2], and the connection's timeouts.
struct Settings {
  uint32_t max_concurrent_streams = 128;
  uint32_t initial_window_bytes = 65535;
  uint32_t max_header_list_bytes = 65536;
  uint32_t idle_timeout_ms = 60000;
  uint32_t header_timeout_ms = 10000;
};

class ServerSession;

// One stream: a request and its response. Made by the session's Owner with the
// handler it answers for; reused for later streams once freed.
class Stream final : public Downstream {
 public:
  explicit Stream(RequestHandler& handler) : handler_(handler) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  RequestHandler& handler() { return handler_; }
  void* owner_data = nullptr;  // the Owner's, untouched here

  // Downstream
  int send(uv_buf_t* bufs, unsigned count) override;
  bool send_pending() const override { return out_len_ > 0 || in_write_; }
  void respond_error(int status, std::string_view text, std::string_view log_cause) override;
  void respond_own(std::string& answer, bool keep_alive) override;
  bool finish_request_early() override;
  void response_done(bool close_after) override;
  void resume_body() override;
  void start_tunnel() override { abort(); }  // no Upgrade in HTTP/2
  void tunnel_upstream_done() override {}
  void abort() override;
  bool closing() const override;
  bool close_requested() const override { return false; }
  std::string_view client_ip() const override;
  const TlsTransport* tls() const override;
  std::string_view client_subject() const override;
  RequestHead::Protocol protocol() const override { return RequestHead::Protocol::kHttp2; }
  int send_head(int status, std::span<const HeaderView> fields, bool end_stream) override;
  int send_data(char* p, size_t len, bool end) override;
  int send_trailers(std::span<const HeaderView> fields) override;

 private:
  friend class ServerSession;

  // Answers with `status` and a short text body (the handler never saw the request, or
  // has let go of it).
  void submit_simple(int status, std::string_view content_type, std::string_view body);
  // Answers a gRPC request the proxy cannot serve: HTTP 200 with grpc-status.
  void submit_grpc_status(int grpc_status, std::string_view message);
  // `interim`: a 1xx head, before the final one.
  int submit(int status, std::span<const HeaderView> fields, bool end_stream, bool interim = false);

  RequestHandler& handler_;
  ServerSession* session_ = nullptr;
  int32_t id_ = 0;
  uint32_t generation_ = 0;  // bumped when freed: a caller holding it sees the reuse

  // The request head.
  std::vector<nghttp2_rcbuf*> rcbufs_;  // the field bytes, held until freed
  std::vector<HeaderView> fields_;
  std::string cookie_;  // every cookie field, joined with "; "
  std::string_view method_, path_, authority_, scheme_;
  RequestHead head_;
  uint32_t head_bytes_ = 0;  // as SETTINGS_MAX_HEADER_LIST_SIZE counts them
  bool head_too_large_ = false;
  bool head_open_ = false;   // HEADERS received, the head not complete

  // The request body: DATA not yet taken by the handler, then what it took.
  std::string body_;
  std::string later_;  // DATA that came while body_'s bytes were pinned
  size_t given_ = 0;   // bytes of body_ handed to the handler
  size_t pinned_ = 0;  // ... of which still in use (kPinned): not yet credited back
  bool remote_end_ = false;  // END_STREAM received
  bool end_given_ = false;   // the handler was told the request ended
  bool dispatched_ = false;  // on_request was called

  // The response.
  bool head_sent_ = false;
  bool has_body_ = false;  // a data source was submitted with the head
  char* out_ = nullptr;    // body bytes pinned until written
  size_t out_len_ = 0;
  bool out_end_ = false;
  bool want_drain_ = false;  // send_data returned kQueued
  bool in_send_ = false;     // inside send_data: no on_downstream_drained from there
  bool in_write_ = false;    // the write in flight carries bytes of this stream
  bool abort_after_write_ = false;
  bool handler_done_ = false;  // the handler has finished with the stream
  bool closed_ = false;        // nghttp2 closed the stream
  bool ended_ok_ = false;      // ... after our whole response (not a reset)
  bool listed_dead_ = false;
  // Trailers to send after the body: lowered names and values in one buffer, each
  // field's four offsets (name, length, value, length); submitted from read_data.
  std::string trailer_bytes_;
  std::vector<uint32_t> trailer_at_;
  bool trailers_ = false;
  std::string own_body_;       // an answer of our own
  std::string names_;          // lowered field names of the response head
  std::vector<nghttp2_nv> nv_;
};

class ServerSession final : public h1::Takeover {
 public:
  class Owner {
   public:
    // A stream with its handler, or null (out of memory: the stream is refused).
    virtual Stream* new_stream() = 0;
    // The stream is done with; its handler was reset.
    virtual void free_stream(Stream* s) = 0;
    // The connection ends for a reason worth a log line ("HTTP/2 protocol error: ...").
    virtual void on_session_note(std::string_view what) = 0;

   protected:
    ~Owner() = default;
  };

  ServerSession(h1::ServerConn& conn, Owner& owner, const Settings& settings);
  ~ServerSession();
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  // Sends the server's SETTINGS; false when nghttp2 could not start (no memory).
  bool start();
  h1::ServerConn& conn() { return conn_; }
  size_t streams() const { return live_.size(); }

  // h1::Takeover
  void on_read(ssize_t nread) override;
  void on_write_done(int status) override;
  void on_timer() override;
  void on_drain() override;
  void on_closing() override;

 private:
  friend class Stream;

  // Sends what nghttp2 has queued, as long as the client takes it.
  void flush();
  // flush() at the end of the loop's turn: what every stream had to say in the turn
  // goes in one write (a response per write cost a sendmsg each under many streams).
  void flush_soon();
  void flush_round();
  // The write carrying these streams' bytes completed.
  void write_completed();
  // Offers the stream's buffered body to its handler.
  void pump(Stream& s);
  void dispatch(Stream& s, bool end_stream);
  // Answers a head the codec refuses (431, 405, 400), counted and logged.
  void refuse(Stream& s, int status, std::string_view text, std::string_view cause);
  void credit(Stream& s, size_t n);
  void finish_handler(Stream& s);  // the client or the codec ended the stream
  void maybe_free(Stream& s);
  void reap();  // frees the streams maybe_free listed
  void arm_timer();
  void fail(std::string_view why);  // GOAWAY (when possible), then close

  void append_copy(const uint8_t* p, size_t len);
  void append_ref(const char* p, size_t len);

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
                       uint8_t flags, void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
                           void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static ssize_t read_data(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source* source, void* user);
  static int send_data_frame(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                             nghttp2_data_source* source, void* user);

  // The end-of-turn flush: deferred on the poller as a socket that is never added.
  DeferredCall<ServerSession, &ServerSession::flush> flush_task_{*this};

  h1::ServerConn& conn_;
  Owner& owner_;
  const Settings settings_;
  nghttp2_session* ng_ = nullptr;

  // The write being built, then in flight: copies of nghttp2's frame bytes in frames_,
  // DATA payloads by reference.
  struct Segment {
    const char* ref;  // null: frames_ from `off`
    size_t off;
    size_t len;
  };
  std::string frames_;
  std::vector<Segment> segments_;
  std::vector<uv_buf_t> iov_;
  size_t ref_bytes_ = 0;  // DATA payload bytes referenced by the write being built
  std::vector<Stream*> writing_;  // streams with bytes in the write in flight
  std::vector<Stream*> completed_;

  std::vector<Stream*> live_;  // every stream not yet freed
  std::vector<Stream*> dead_;  // to free at the next safe point
  bool in_recv_ = false;       // inside nghttp2_session_mem_recv: no sending from callbacks
  bool in_flush_ = false;
  bool flush_again_ = false;
  bool closing_ = false;
  bool draining_ = false;
  uint32_t heads_open_ = 0;
  uint32_t empty_data_run_ = 0;  // consecutive DATA frames without payload nor END_STREAM
  bool calm_ = false;            // ... too many: the connection ends after this read
};

}  // namespace ringproxy::h2
