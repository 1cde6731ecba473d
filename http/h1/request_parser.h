// The request side of an HTTP/1 server connection: llhttp in strict mode, one message
// at a time, with every check a proxy makes before a head may go on (the ones llhttp
// leaves to its user: http/header_rules.h, the request line's single spaces, the
// framing of body bytes already read). Used by the proxy's client connections and the
// admin endpoint alike, so both refuse the same input the same way.
//
// The head is read in place: fields are offsets into the connection's IoBuffer, views
// are made once the head is complete and stay valid until the buffer moves (the caller
// does not compact it while a head is viewed). Body bytes are executed in place and
// forwarded as framed (chunk lines included); the parser only validates the framing and
// finds the message's end. No allocation per request once warm.
//
// Thread: the connection's.
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/h1/field_spans.h"
#include "http/message.h"
#include "net/io_buffer.h"

namespace ringproxy::h1 {

// An answer the server codec gives itself: status, the short text for the client, and
// the cause for the log line.
struct Refusal {
  int status = 0;
  std::string_view text;
  std::string cause;
};

class RequestParser {
 public:
  RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  enum class HeadStep {
    kMore,     // the head is not complete; read more (the buffer was grown if it was full)
    kHead,     // a complete head that passed every check: the accessors below hold
    kRefused,  // refusal() says what to answer; the connection ends after it
  };
  // Reads head bytes from `in`, consuming them. `max_head`: proxy.max_header_bytes.
  // `may_compact`: nothing views `in` (no write from it is pending), so a new head may
  // start at the buffer's front. `eof`: the client has half-closed.
  HeadStep read_head(IoBuffer& in, uint32_t max_head, bool may_compact, bool eof);
  const Refusal& refusal() const { return refusal_; }

  // Of a complete head (kHead).
  // The head as every protocol's server codec hands it on (http/message.h).
  RequestHead& head() { return head_; }
  llhttp_method_t method() const { return static_cast<llhttp_method_t>(parser_.method); }
  std::string_view method_name() const { return llhttp_method_name(method()); }
  std::string_view target() const { return target_; }
  // The fields as received (views into the buffer).
  std::vector<HeaderView>& fields() { return views_; }
  // The Host field line's index in fields() (SIZE_MAX: none; HTTP/1.0 may omit it).
  size_t host_index() const { return host_index_; }
  bool http10() const { return parser_.http_minor == 0; }
  // The client wants the connection kept (llhttp_should_keep_alive: 1.1 without close,
  // 1.0 with keep-alive).
  bool keep_alive() const { return keep_alive_; }
  bool upgrade() const { return parser_.upgrade != 0; }
  // Framed by Content-Length or Transfer-Encoding (a request with neither has no body).
  bool has_body() const { return has_body_; }
  // Known from the method on, before the head is complete: an answer to a malformed
  // HEAD is bodiless too.
  bool is_head() const { return is_head_; }
  // Bytes of a head under way (a client that closes mid-head is answered 400).
  bool head_started() const { return head_bytes_ > 0; }
  // Of a complete head framed by Content-Length: its value (checked by llhttp). Read it
  // before body(): llhttp counts it down as the body goes by.
  std::optional<uint64_t> content_length() const {
    if ((parser_.flags & F_CONTENT_LENGTH) == 0) return std::nullopt;
    return parser_.content_length;
  }

  // For a server that reads whole requests (the admin endpoint): from now until
  // next_message(), body() also appends the decoded body (chunk framing removed) to
  // `out`, at most `limit` bytes in all. Of a longer body nothing more is kept and
  // body_over_limit() is true; body() goes on checking its framing, so the caller
  // answers its own way (the admin's JSON 413). The proxy forwards bodies as framed
  // and keeps none.
  void keep_body(std::string* out, size_t limit) {
    body_out_ = out;
    body_limit_ = limit;
    body_over_limit_ = false;
  }
  bool body_over_limit() const { return body_over_limit_; }
  // For a handler that forwards the body decoded (to an HTTP/2 node): body() moves the
  // content bytes to the start of what it is given, chunk framing and trailers dropped,
  // and says how many in BodyStep::decoded. Until next_message().
  void set_decode(bool on) { decode_ = on; }

  struct BodyStep {
    size_t consumed = 0;     // bytes of this message, to forward as they are
    size_t decoded = 0;      // set_decode: content bytes at the start of the input
    bool complete = false;   // the message ended after them
    bool error = false;      // the framing is broken (error_reason())
  };
  // Executes body bytes [start, start + len) of the current message. Run once even
  // with len 0 after the head: a bodiless request completes there.
  BodyStep body(const char* start, size_t len);
  // Reads the rest of the message from `in`, consuming what belongs to it; true when
  // the message is then complete (false: more to come, or broken framing).
  bool discard_buffered(IoBuffer& in);
  std::string_view error_reason() const;

  // Forgets the head: the next message starts after this one's end.
  void next_message();

 private:
  bool check_head(IoBuffer& in);
  bool buffered_body_valid(const char* start, size_t len);
  HeadStep refuse(int status, std::string_view text, std::string cause);

  static int on_method(llhttp_t* p, const char* at, size_t len);
  static int on_method_complete(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, size_t len);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t len);
  static int on_message_complete(llhttp_t* p);
  static const llhttp_settings_t& settings();

  llhttp_t parser_{};
  const char* base_ = nullptr;  // the buffer's start during llhttp_execute of a head
  uint32_t max_head_ = 0;
  Span url_;
  std::vector<FieldSpan> fields_;
  std::vector<HeaderView> views_;
  RequestHead head_;
  size_t host_index_ = SIZE_MAX;
  std::string_view target_;
  uint32_t head_bytes_ = 0;
  bool head_done_ = false;
  bool msg_done_ = false;
  bool is_head_ = false;
  bool keep_alive_ = true;
  bool has_body_ = false;
  std::string* body_out_ = nullptr;  // keep_body()
  bool decode_ = false;              // set_decode()
  char* decode_dst_ = nullptr;       // where the next content byte goes
  size_t body_limit_ = 0;
  bool body_over_limit_ = false;
  Refusal refusal_;
};

}  // namespace ringproxy::h1
