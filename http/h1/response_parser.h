// The response side of an HTTP/1 client connection: llhttp in strict mode (no lenient
// flag), one response at a time, with the checks a proxy makes before a response head
// goes on (the ones llhttp leaves to its user: a head's size, obs-fold, a status below
// 100, which responses have no body whatever their fields say). Used by the proxy's
// upstream side and by the health checker's probes.
//
// The contract, per response:
//   start(head_request); then execute(in) after every read until kDone or kError.
//   kMore   read more; all of `in` was consumed (a head under way stays in place).
//   kHead   a complete head that passed every check: the accessors of the head hold,
//           `in` is consumed up to the head's end. Call execute again, even with `in`
//           empty: a bodiless or Content-Length: 0 response completes there.
//           interim() (a 1xx but 101): another head of the same response follows; the
//           next execute reads it, no start() in between.
//           101: the bytes after the head are another protocol's; the response is over
//           (execute would return kDone, consuming nothing).
//   kBody   body bytes were consumed (all of `in`): send [out, out + out_len) on, then
//           read more. out_len is 0 when only chunk framing was read while decoding.
//   kDone   the message ended: [out, out + out_len) are its last body bytes; `in` is
//           consumed exactly up to the message's end, so bytes the server sent after it
//           stay in `in` (the caller decides; a server that sent them is not reused).
//   kError  error_reason() says why; the parser stays in error until start().
// On the server's close, finish(): kDone when the body was delimited by the close
// (neither Content-Length nor chunked) and so is complete, kError otherwise.
//
// The head is read in place: fields are offsets into `in`, views are made once the
// head is complete and stay valid until the next execute (which may grow the buffer
// while a next head is read). The parser never moves bytes of `in` except by growing
// it when a head fills it (IoBuffer::grow keeps offsets), up to max_head; the caller
// does not compact or clear `in` while a response is under way. Body bytes are
// forwarded as framed (chunk lines included), or decoded in place for a client that
// cannot take chunked (set_decode_chunked). No allocation per response once warm but
// the error text.
//
// Thread: the connection's.
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/h1/field_spans.h"
#include "http/message.h"
#include "net/io_buffer.h"

namespace ringproxy::h1 {

class ResponseParser {
 public:
  // `max_head`: the most bytes of status text and fields a head may have (64 KiB: the
  // proxy's response limit; a health probe's is smaller). Trailers have the same limit.
  explicit ResponseParser(uint32_t max_head = 64 * 1024);
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  // Before each response (the constructor starts one, not to a HEAD). `head_request`:
  // the request was a HEAD, so the response is bodiless whatever its fields say (RFC
  // 9110 9.3.2).
  void start(bool head_request);
  // After kHead (not interim): the body of a chunked response comes out decoded, in
  // place (chunk lines and trailers dropped), for an HTTP/1.0 client (RFC 9112 6.1,
  // 7.1). Has no effect on a response that is not chunked.
  // `keep_trailers`: the trailer fields are kept (copied: they may span reads) for
  // trailers(), for a client that takes them in another framing (HTTP/2).
  void set_decode_chunked(bool on, bool keep_trailers = false);
  // The trailers of a decoded chunked response, once kDone (empty when none or not
  // kept). Views into the parser's own copy, valid until start().
  std::span<const HeaderView> trailers();

  enum class Step { kMore, kHead, kBody, kDone, kError };
  struct Result {
    Step step = Step::kMore;
    char* out = nullptr;  // body bytes to send on (kBody, kDone): inside `in`,
    size_t out_len = 0;   // before its begin (already consumed)
  };
  // See the contract above. `in`: the connection's read buffer, allocated.
  Result execute(IoBuffer& in);
  // The server closed: kDone (keep_alive() false) or kError, as above.
  Step finish();

  // Of a complete head (kHead), and on to the end of the response.
  int status() const { return status_; }
  std::string_view reason() const { return reason_; }
  // The fields as received (views into `in`).
  std::vector<HeaderView>& fields() { return views_; }
  // A 1xx other than 101: relayed, then the final head follows.
  bool interim() const { return interim_; }
  // No body follows the head: a response to HEAD, 1xx (101 included), 204, 304
  // (RFC 9110 6.4.1).
  bool bodiless() const { return bodiless_; }
  bool chunked() const { return chunked_; }
  // Framed by Content-Length or chunked; a body with neither (and not bodiless) ends
  // at the close of the connection.
  bool has_length() const { return has_length_; }
  bool http10() const { return http10_; }
  // The server keeps the connection (llhttp_should_keep_alive: 1.1 without close, 1.0
  // with keep-alive, and a body that does not end at the close). Valid at kDone.
  bool keep_alive() const { return keep_alive_; }
  // Why kError: "response head too large", "malformed response: ..." (the log line's
  // cause; the proxy answers 502 while nothing was sent to the client).
  std::string_view error_reason() const { return error_reason_; }

 private:
  enum class Phase { kHead, kBody, kDone, kError };

  Result fail(std::string reason);
  Result head_complete(IoBuffer& in);
  void next_head();

  bool keep_trailer_piece(bool value, const char* at, size_t len);
  static int on_status(llhttp_t* p, const char* at, size_t len);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_message_complete(llhttp_t* p);
  static int on_body_decode(llhttp_t* p, const char* at, size_t len);
  static const llhttp_settings_t& settings();
  static const llhttp_settings_t& decode_settings();

  llhttp_t parser_{};
  const uint32_t max_head_;
  const char* base_ = nullptr;  // the buffer's start during llhttp_execute
  char* decode_dst_ = nullptr;  // where the next decoded body byte goes
  Phase phase_ = Phase::kHead;
  Span reason_span_;
  std::vector<FieldSpan> fields_;  // of the head, then of the trailers (not kept)
  std::vector<HeaderView> views_;
  std::string_view reason_;
  uint32_t head_bytes_ = 0;  // of the head under way, then of the trailers
  int status_ = 0;
  bool head_request_ = false;
  bool head_done_ = false;
  bool msg_done_ = false;
  bool interim_ = false;
  bool bodiless_ = false;
  bool chunked_ = false;
  bool has_length_ = false;
  bool http10_ = false;
  bool keep_alive_ = false;
  bool decode_ = false;
  bool keep_trailers_ = false;
  std::string trailer_bytes_;             // the trailers' bytes, copied as read
  std::vector<FieldSpan> trailer_fields_;  // offsets into trailer_bytes_
  std::vector<HeaderView> trailer_views_;
  std::string error_reason_;
};

}  // namespace ringproxy::h1
