// The two sides of a request as every server codec (HTTP/1: http/h1/server_conn.h;
// HTTP/2: http/h2/server_session.h) hands it on: RequestHandler is what a request
// means (the proxy's Exchange, the admin endpoint), Downstream is how it answers.
//
// Thread: the connection's loop.
#pragma once

#include <uv.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "http/message.h"

namespace ringproxy {

class TlsTransport;

// What a request handler needs of the connection to the client.
class Downstream {
 public:
  // Response bytes to the client: Transport::kWritten, kQueued (the buffers stay
  // pinned until the handler's on_downstream_drained) or a libuv error.
  virtual int send(uv_buf_t* bufs, unsigned count) = 0;
  virtual bool send_pending() const = 0;
  // An answer of the codec's own (http/status.h), while nothing of a response was sent;
  // `log_cause` goes to RequestHandler::on_answered.
  virtual void respond_error(int status, std::string_view text, std::string_view log_cause) = 0;
  // A complete answer built by the handler (taken from `answer`), after which the
  // connection goes on (`keep_alive`: written at once, the exchange ends inside this
  // call and the handler is reset() before it returns) or closes in stages (the
  // handler is abort()ed).
  virtual void respond_own(std::string& answer, bool keep_alive) = 0;
  // Reads and drops the rest of the request if it is all buffered: true when the
  // request is then complete (the connection may go on after an early answer).
  virtual bool finish_request_early() = 0;
  // The response is complete and written: next request, or close (`close_after`).
  virtual void response_done(bool close_after) = 0;
  // The handler can take body bytes again (connected, or a pinned chunk written).
  virtual void resume_body() = 0;
  // A 101 was relayed: from now on the client's bytes go up raw (on_body, never end).
  virtual void start_tunnel() = 0;
  // The other end finished sending in a tunnel: pass its FIN on.
  virtual void tunnel_upstream_done() = 0;
  virtual void abort() = 0;  // close the client connection now
  virtual bool closing() const = 0;
  // The connection is to close after this response (the client asked, or a drain).
  virtual bool close_requested() const = 0;
  // The client's IP address as text (known from start() on, before any request).
  virtual std::string_view client_ip() const = 0;
  // The TLS the client connected with (version, cipher), null on a plain connection.
  virtual const TlsTransport* tls() const = 0;
  // The subject of the client's verified certificate (RFC 2253), "" without one.
  virtual std::string_view client_subject() const = 0;

  // How the handler sends a response. kHttp1: send() of the HTTP/1 bytes it built, its
  // body as framed. kHttp2: send_head() with fields as the node sent them, then
  // send_data() of the decoded body; the codec frames both.
  virtual RequestHead::Protocol protocol() const { return RequestHead::Protocol::kHttp1; }
  // HTTP/2: the final response head. The codec drops the hop-by-hop fields and copies
  // what it keeps. `end_stream`: no body follows. 0 or a libuv error.
  virtual int send_head(int status, std::span<const HeaderView> fields, bool end_stream) {
    (void)status;
    (void)fields;
    (void)end_stream;
    return UV_ENOTSUP;
  }
  // HTTP/2: body bytes [p, p + len), decoded; `end`: the last. kWritten, kQueued (the
  // bytes stay pinned until on_downstream_drained) or a libuv error.
  virtual int send_data(char* p, size_t len, bool end) {
    (void)p;
    (void)len;
    (void)end;
    return UV_ENOTSUP;
  }
  // HTTP/2: trailer fields end the response after its body (every send_data had `end`
  // false). The codec copies them. 0 or a libuv error.
  virtual int send_trailers(std::span<const HeaderView> fields) {
    (void)fields;
    return UV_ENOTSUP;
  }

 protected:
  ~Downstream() = default;
};

// What the codec hands each request to.
class RequestHandler {
 public:
  enum class BodyResult {
    kTaken,   // passed on; the bytes may be reused
    kPinned,  // passed on, but still in use until Downstream::resume_body()
    kFailed,  // the handler has answered or closed (through Downstream)
  };

  // The first byte of a request arrived.
  virtual void begin() = 0;
  // A complete, checked head (`req` stays the codec's: valid until reset()).
  virtual void on_request(RequestHead& req, std::string_view client_ip) = 0;
  // Body bytes [p, p + len), framed as received (or raw, in a tunnel), offered only
  // while ready_for_body(); `end`: the request is complete after them. A handler that
  // reads whole requests (the admin endpoint) may answer from here with
  // Downstream::respond_own() and return kFailed: once the answer is written (maybe
  // inside that call, which then resets the handler), the connection goes on with the
  // next request as after response_done(), or closes.
  virtual BodyResult on_body(char* p, size_t len, bool end) = 0;
  virtual bool ready_for_body() const = 0;
  // The body is wanted decoded (HTTP/1's chunk framing removed): the node it goes to
  // frames it its own way (HTTP/2 DATA). Asked before each piece.
  virtual bool wants_decoded_body() const { return false; }
  // Body bytes passed on are still in use (the read buffer may not move).
  virtual bool body_pinned() const = 0;
  // The client half-closed inside a tunnel.
  virtual void on_client_eof() = 0;
  // A send() that returned kQueued has completed.
  virtual void on_downstream_drained() = 0;
  // The connection is closing, or the codec answers: let go of what the request held.
  virtual void abort() = 0;
  // A response is under way.
  virtual bool active() const = 0;
  // Bytes of a response were sent or are about to be: no own answer can replace it.
  virtual bool response_started() const = 0;
  // The connection must end after this exchange.
  virtual bool close_after() const = 0;
  // The codec answered `status` itself; `cause` is for the log line ("" when the
  // caller logged already). Once per request at most, before the answer is written.
  virtual void on_answered(int status, std::string_view cause) = 0;
  // The client did something worth a line ("closed mid-body; dropping the request").
  virtual void on_client_note(std::string_view what) = 0;
  // The codec goes on with the next request on the connection.
  virtual void reset() = 0;

 protected:
  ~RequestHandler() = default;
};

}  // namespace ringproxy
