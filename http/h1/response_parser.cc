#include "http/h1/response_parser.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace ringproxy::h1 {

ResponseParser::ResponseParser(uint32_t max_head) : max_head_(max_head) {
  // Room for a typical response head at once (one allocation per connection).
  fields_.reserve(16);
  views_.reserve(16);
  start(false);
}

void ResponseParser::start(bool head_request) {
  llhttp_init(&parser_, HTTP_RESPONSE, &settings());
  parser_.data = this;
  phase_ = Phase::kHead;
  head_request_ = head_request;
  next_head();
  decode_ = keep_trailers_ = false;
  trailer_bytes_.clear();
  trailer_fields_.clear();
  trailer_views_.clear();
  keep_alive_ = false;
  error_reason_.clear();
}

void ResponseParser::next_head() {
  reason_span_ = {};
  fields_.clear();
  views_.clear();
  reason_ = {};
  head_bytes_ = 0;
  status_ = 0;
  head_done_ = msg_done_ = false;
  interim_ = bodiless_ = chunked_ = has_length_ = http10_ = false;
}

std::span<const HeaderView> ResponseParser::trailers() {
  if (trailer_views_.size() != trailer_fields_.size()) {
    trailer_views_.clear();
    for (const FieldSpan& f : trailer_fields_) {
      trailer_views_.push_back({f.name.in(trailer_bytes_.data()), f.value.in(trailer_bytes_.data())});
    }
  }
  return trailer_views_;
}

void ResponseParser::set_decode_chunked(bool on, bool keep_trailers) {
  decode_ = on && chunked_ && !bodiless_;
  keep_trailers_ = decode_ && keep_trailers;
  parser_.settings = const_cast<llhttp_settings_t*>(decode_ ? &decode_settings() : &settings());
}

ResponseParser::Result ResponseParser::fail(std::string reason) {
  phase_ = Phase::kError;
  error_reason_ = std::move(reason);
  return {Step::kError, nullptr, 0};
}

namespace {

std::string malformed(const llhttp_t& p, llhttp_errno err) {
  const char* reason = llhttp_get_error_reason(&p);
  return std::string("malformed response: ") + (reason ? reason : llhttp_errno_name(err));
}

}  // namespace

ResponseParser::Result ResponseParser::execute(IoBuffer& in) {
  if (phase_ == Phase::kError) return {Step::kError, nullptr, 0};
  if (phase_ == Phase::kDone || (phase_ == Phase::kBody && msg_done_)) {
    // A bodiless response completed along with its head (or a 101: what follows is
    // another protocol's, not read here).
    phase_ = Phase::kDone;
    return {Step::kDone, in.begin_ptr(), 0};
  }
  if (phase_ == Phase::kHead && head_done_) next_head();  // after an interim head
  base_ = in.data();
  char* start = in.begin_ptr();
  const size_t len = in.size();
  decode_dst_ = start;
  const llhttp_errno err = llhttp_execute(&parser_, start, len);

  if (phase_ == Phase::kHead) {
    if (err == HPE_OK) {
      // The head is not complete: it stays in place (its fields are offsets), and the
      // buffer grows when full, up to the limit.
      in.consume(len);
      if (head_bytes_ > max_head_) return fail("response head too large");
      if (in.free_space() == 0) {
        if (in.capacity() >= size_t{max_head_} + 1024) return fail("response head too large");
        in.grow(std::max<size_t>(in.capacity() * 2, 1024));
      }
      return {Step::kMore, nullptr, 0};
    }
    if (err == HPE_PAUSED && head_done_) {
      in.consume_to(llhttp_get_error_pos(&parser_));
      llhttp_resume(&parser_);
      return head_complete(in);
    }
    if (err == HPE_USER) return fail("response head too large");  // a callback's
    return fail(malformed(parser_, err));
  }

  // Body bytes: as framed, or decoded in place (on_body_decode).
  size_t consumed = len;
  if (err == HPE_PAUSED && msg_done_) {
    consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - start);
    llhttp_resume(&parser_);
    phase_ = Phase::kDone;
  } else if (err == HPE_USER) {
    return fail("response trailers too large");
  } else if (err != HPE_OK) {
    return fail(malformed(parser_, err));
  }
  in.consume(consumed);
  const size_t out_len = decode_ ? static_cast<size_t>(decode_dst_ - start) : consumed;
  const Step step = phase_ == Phase::kDone ? Step::kDone : consumed > 0 ? Step::kBody : Step::kMore;
  return {step, start, out_len};
}

ResponseParser::Result ResponseParser::head_complete(IoBuffer& in) {
  status_ = parser_.status_code;
  if (status_ < 100) {
    // RFC 9110 15: codes are three digits, 100 to 599; llhttp also takes "2" or "099".
    // Above 599 is the caller's to judge (a proxy relays it: clients treat an unknown
    // code as its class's x00).
    return fail("malformed response: status code below 100");
  }
  const char* b = in.data();
  views_.clear();
  for (const FieldSpan& f : fields_) views_.push_back({f.name.in(b), f.value.in(b)});
  reason_ = reason_span_.in(b);
  if (!interim_) {
    // Trailers, if any, are collected (and checked) in fields_ from here, not kept.
    phase_ = Phase::kBody;
    fields_.clear();
    head_bytes_ = 0;
  }
  return {Step::kHead, nullptr, 0};
}

ResponseParser::Step ResponseParser::finish() {
  if (phase_ == Phase::kDone || (phase_ == Phase::kBody && msg_done_)) {
    phase_ = Phase::kDone;
    return Step::kDone;
  }
  if (phase_ == Phase::kError) return Step::kError;
  if (phase_ == Phase::kHead) {
    fail("closed before the response head was complete");
    return Step::kError;
  }
  // Run what llhttp left for the next bytes (the framing decided after a head), then
  // tell it the stream ended: a close-delimited body completes there.
  static char none;
  decode_dst_ = &none;
  llhttp_errno err = llhttp_execute(&parser_, &none, 0);
  if (err == HPE_OK) err = llhttp_finish(&parser_);
  if ((err == HPE_OK || err == HPE_PAUSED) && msg_done_) {
    llhttp_resume(&parser_);
    phase_ = Phase::kDone;
    keep_alive_ = false;
    return Step::kDone;
  }
  fail(err == HPE_OK || err == HPE_INVALID_EOF_STATE ? std::string("closed mid-body") : malformed(parser_, err));
  return Step::kError;
}

// ---------------------------------------------------------------------------------------
// llhttp callbacks

int ResponseParser::on_status(llhttp_t* p, const char* at, size_t len) {
  auto* r = static_cast<ResponseParser*>(p->data);
  if (r->reason_span_.len == 0) r->reason_span_.off = static_cast<uint32_t>(at - r->base_);
  r->reason_span_.len += static_cast<uint32_t>(len);
  r->head_bytes_ += static_cast<uint32_t>(len);
  return r->head_bytes_ > r->max_head_ ? HPE_USER : 0;
}

// A trailer piece kept (set_decode_chunked's keep_trailers): copied, with its offset in
// the copy, since a trailer section may span reads whose bytes are consumed.
bool ResponseParser::keep_trailer_piece(bool value, const char* at, size_t len) {
  const size_t off = trailer_bytes_.size();
  trailer_bytes_.append(at, len);
  return append_field_piece(trailer_fields_, value, trailer_bytes_.data(), trailer_bytes_.data() + off, len,
                            &head_bytes_);
}

int ResponseParser::on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* r = static_cast<ResponseParser*>(p->data);
  if (r->head_done_ && r->keep_trailers_) {
    r->keep_trailer_piece(false, at, len);
    return r->head_bytes_ > r->max_head_ ? HPE_USER : 0;
  }
  append_field_piece(r->fields_, false, r->base_, at, len, &r->head_bytes_);
  return r->head_bytes_ > r->max_head_ ? HPE_USER : 0;
}

int ResponseParser::on_header_value(llhttp_t* p, const char* at, size_t len) {
  auto* r = static_cast<ResponseParser*>(p->data);
  const bool ok = r->head_done_ && r->keep_trailers_ ? r->keep_trailer_piece(true, at, len)
                                                     : append_field_piece(r->fields_, true, r->base_, at, len, &r->head_bytes_);
  if (!ok) {
    llhttp_set_error_reason(p, "obs-fold (RFC 9112 5.2)");
    return HPE_INVALID_HEADER_TOKEN;
  }
  return r->head_bytes_ > r->max_head_ ? HPE_USER : 0;
}

int ResponseParser::on_headers_complete(llhttp_t* p) {
  auto* r = static_cast<ResponseParser*>(p->data);
  r->head_done_ = true;
  const int status = p->status_code;
  r->interim_ = status >= 100 && status < 200 && status != 101;
  r->chunked_ = (p->flags & F_CHUNKED) != 0;
  r->has_length_ = (p->flags & (F_CHUNKED | F_CONTENT_LENGTH)) != 0;
  r->http10_ = p->http_major == 1 && p->http_minor == 0;
  // Responses to HEAD, 1xx, 204 and 304 have no body whatever their fields say (RFC
  // 9110 6.4.1); llhttp 8 reads a Content-Length body for 204 and 304 unless told
  // (1 = no body). The pause then comes at message complete, at the same place. A 101
  // ends the response at its head: llhttp would stop there too (HPE_PAUSED_UPGRADE).
  r->bodiless_ = r->head_request_ || (status >= 100 && status < 200) || status == 204 || status == 304;
  return r->bodiless_ ? 1 : HPE_PAUSED;
}

int ResponseParser::on_message_complete(llhttp_t* p) {
  auto* r = static_cast<ResponseParser*>(p->data);
  r->msg_done_ = true;
  // Now: llhttp forgets the flags it is computed from once it reads on.
  r->keep_alive_ = llhttp_should_keep_alive(p) != 0;
  return HPE_PAUSED;
}

int ResponseParser::on_body_decode(llhttp_t* p, const char* at, size_t len) {
  // The decoded pieces move to the front of the bytes being executed, in order; each
  // lies after the place it moves to, so memmove never overwrites what is still to come.
  auto* r = static_cast<ResponseParser*>(p->data);
  if (r->decode_dst_ != at) std::memmove(r->decode_dst_, at, len);
  r->decode_dst_ += len;
  return 0;
}

const llhttp_settings_t& ResponseParser::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_status = on_status;
    v.on_header_field = on_header_field;
    v.on_header_value = on_header_value;
    v.on_headers_complete = on_headers_complete;
    v.on_message_complete = on_message_complete;
    return v;
  }();
  return s;
}

const llhttp_settings_t& ResponseParser::decode_settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v = settings();
    v.on_body = on_body_decode;
    return v;
  }();
  return s;
}

}  // namespace ringproxy::h1
