#include "http/h1/request_parser.h"

#include <cstring>

#include <algorithm>
#include <utility>

#include "http/header_rules.h"

namespace ringproxy::h1 {

RequestParser::RequestParser() {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
  // Room for a browser's head at once, instead of growing 1, 2, 4, 8, 16 (one
  // allocation per connection, not five).
  fields_.reserve(16);
  views_.reserve(16);
}

RequestParser::HeadStep RequestParser::refuse(int status, std::string_view text, std::string cause) {
  refusal_.status = status;
  refusal_.text = text;
  refusal_.cause = std::move(cause);
  return HeadStep::kRefused;
}

void RequestParser::next_message() {
  url_ = {};
  fields_.clear();
  views_.clear();
  target_ = {};
  head_bytes_ = 0;
  head_done_ = msg_done_ = false;
  is_head_ = false;
  has_body_ = false;
  body_out_ = nullptr;
  decode_ = false;
  body_over_limit_ = false;
}

RequestParser::HeadStep RequestParser::read_head(IoBuffer& in, uint32_t max_head, bool may_compact, bool eof) {
  // A new head starts: nothing views the buffer, so it may move to the front.
  if (in.begin() > 0 && head_bytes_ == 0 && fields_.empty() && url_.len == 0 && may_compact) in.compact();
  max_head_ = max_head;
  base_ = in.data();
  const char* start = in.begin_ptr();
  const llhttp_errno err = llhttp_execute(&parser_, start, in.size());
  if (err == HPE_OK) {
    in.consume(in.size());
    if (eof) return refuse(400, "incomplete request", "client closed mid-head");
    if (head_bytes_ > max_head) return refuse(431, "request head too large", "head over max_header_bytes");
    if (in.free_space() == 0) {
      // The head does not fit the buffer yet: grow it (offsets stay valid), up to the limit.
      if (in.capacity() >= size_t{max_head} + 1024) {
        return refuse(431, "request head too large", "head over max_header_bytes");
      }
      in.grow(std::max<size_t>(in.capacity() * 2, 1024));
    }
    return HeadStep::kMore;
  }
  if (err == HPE_PAUSED && head_done_) {
    in.consume_to(llhttp_get_error_pos(&parser_));
    llhttp_resume(&parser_);
    if (head_bytes_ > max_head) return refuse(431, "request head too large", "head over max_header_bytes");
    return check_head(in) ? HeadStep::kHead : HeadStep::kRefused;
  }
  if (err == HPE_USER) return refuse(431, "request head too large", "head over max_header_bytes");  // a callback's
  const std::string reason = llhttp_get_error_reason(&parser_) ? llhttp_get_error_reason(&parser_)
                                                               : llhttp_errno_name(err);
  if (err == HPE_INVALID_VERSION && reason == "Invalid HTTP version") {
    // Well-formed digits of a version llhttp does not speak (HTTP/1.2, 3.0): RFC 9110
    // 15.6.6. A malformed version ("HTTP/1.x", "1.10") stays a 400.
    return refuse(505, "HTTP version not supported", "unsupported HTTP version");
  }
  return refuse(400, "malformed request", "malformed request: " + reason);
}

bool RequestParser::check_head(IoBuffer& in) {
  const char* b = in.data();
  views_.clear();
  for (const FieldSpan& f : fields_) views_.push_back({f.name.in(b), f.value.in(b)});
  target_ = url_.in(b);

  if (parser_.http_major != 1) {
    refuse(505, "HTTP version not supported", "unsupported HTTP version");
    return false;
  }
  bool has_te = false;
  find_header(views_, "transfer-encoding", &has_te);
  if (http10() && has_te) {
    // RFC 9112 6.1: a 1.0 message with Transfer-Encoding has unreliable framing; a
    // backend that ignores the field for 1.0 would read the chunks as a next request.
    refuse(400, "Transfer-Encoding in an HTTP/1.0 request", "HTTP/1.0 with Transfer-Encoding");
    return false;
  }
  {
    // The request line: llhttp takes any run of spaces between its parts; RFC 9112 3
    // wants one, and a line a parser "corrects" is how filters are bypassed. The line's
    // bytes are all still in the buffer (on_method stops compaction once it began).
    const uint32_t end = url_.off + url_.len;
    if (url_.off < 2 || b[url_.off - 1] != ' ' || b[url_.off - 2] == ' ' || end + 1 >= in.end() || b[end] != ' ' ||
        b[end + 1] != 'H') {
      refuse(400, "malformed request", "malformed request line");
      return false;
    }
  }
  const HeadVerdict v = check_request_head(views_, target_, !http10());
  if (v.status != 0) {
    refuse(v.status, v.status == 501 ? "transfer coding not implemented" : "malformed request",
           "malformed request: " + std::string(v.cause));
    return false;
  }
  host_index_ = v.host_index;
  // A request framed with neither Content-Length nor Transfer-Encoding has no body:
  // what follows its head is the next request, parsed in its turn.
  has_body_ = (parser_.flags & (F_CHUNKED | F_CONTENT_LENGTH | F_TRANSFER_ENCODING)) != 0;
  if (has_body_ && !buffered_body_valid(in.begin_ptr(), in.size())) {
    // Refused before anything goes on. (A framing error in bytes that come later
    // still ends the exchange with a 400.)
    refuse(400, "malformed request body", "malformed body: " + std::string(error_reason()));
    return false;
  }
  keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
  if (upgrade() && method() == HTTP_CONNECT) {
    refuse(405, "CONNECT is not supported", "CONNECT refused");
    return false;
  }
  // The target (RFC 9112 3.2): origin form, absolute form (checked by
  // check_request_head), or asterisk form for OPTIONS only.
  if (AbsoluteTarget abs; !split_absolute_target(target_, &abs) &&
                          (target_.empty() || (target_ == "*" ? method() != HTTP_OPTIONS : target_.front() != '/'))) {
    refuse(400, "malformed request", "malformed request target");
    return false;
  }
  head_.method = method_name();
  head_.target = target_;
  head_.fields = &views_;
  head_.host_index = host_index_;
  head_.http10 = http10();
  head_.upgrade = upgrade();
  head_.is_head = is_head_;
  head_.has_body = has_body_;
  return true;
}

bool RequestParser::buffered_body_valid(const char* start, size_t len) {
  // A copy of the parser (a plain value: llhttp keeps no pointer into itself) reads the
  // body bytes already buffered, stopping at the end of this message, so a framing
  // error there (bad chunk size, bare LF, a Transfer-Encoding llhttp refuses once the
  // head is done) is found before the head goes on. The real parser reads them again
  // as they are forwarded; for a Content-Length body that costs nothing, for a chunked
  // one a scan of the chunk lines of the first read. No allocation.
  static const llhttp_settings_t probe_settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_complete = [](llhttp_t*) { return static_cast<int>(HPE_PAUSED); };
    return s;
  }();
  llhttp_t probe = parser_;
  probe.settings = const_cast<llhttp_settings_t*>(&probe_settings);
  const llhttp_errno err = llhttp_execute(&probe, start, len);
  if (err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) return true;
  llhttp_set_error_reason(&parser_, llhttp_get_error_reason(&probe));
  return false;
}

RequestParser::BodyStep RequestParser::body(const char* start, size_t len) {
  BodyStep step;
  base_ = start;  // trailers' fields come as callbacks too; they are not kept
  // The caller's buffer is writable (its read buffer): decoding compacts it in place.
  decode_dst_ = const_cast<char*>(start);
  const llhttp_errno err = llhttp_execute(&parser_, start, len);
  if (decode_) step.decoded = static_cast<size_t>(decode_dst_ - start);
  if (err == HPE_PAUSED && msg_done_) {
    step.consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - start);
    llhttp_resume(&parser_);
    step.complete = true;
  } else if (err == HPE_OK) {
    step.consumed = len;
  } else {
    step.error = true;
  }
  return step;
}

bool RequestParser::discard_buffered(IoBuffer& in) {
  const char* start = in.begin_ptr();
  const llhttp_errno err = llhttp_execute(&parser_, start, in.size());
  if (err == HPE_PAUSED && msg_done_) {
    in.consume_to(llhttp_get_error_pos(&parser_));
    llhttp_resume(&parser_);
    return true;
  }
  if (err == HPE_OK) in.consume(in.size());  // all of it was body; more is to come
  return false;  // more body to come, or bad framing
}

std::string_view RequestParser::error_reason() const {
  const char* r = llhttp_get_error_reason(&parser_);
  return r ? std::string_view(r) : std::string_view();
}

// ---------------------------------------------------------------------------------------
// llhttp callbacks

int RequestParser::on_method(llhttp_t* p, const char*, size_t len) {
  // Counted so that a head under way is never compacted (read_head): the request line's
  // bytes stay in place for the checks of check_head.
  static_cast<RequestParser*>(p->data)->head_bytes_ += static_cast<uint32_t>(len);
  return 0;
}

int RequestParser::on_method_complete(llhttp_t* p) {
  static_cast<RequestParser*>(p->data)->is_head_ = p->method == HTTP_HEAD;
  return 0;
}

int RequestParser::on_url(llhttp_t* p, const char* at, size_t len) {
  auto* r = static_cast<RequestParser*>(p->data);
  if (r->url_.len == 0) r->url_.off = static_cast<uint32_t>(at - r->base_);
  r->url_.len += static_cast<uint32_t>(len);
  r->head_bytes_ += static_cast<uint32_t>(len);
  return r->head_bytes_ > r->max_head_ ? HPE_USER : 0;
}

int RequestParser::on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* r = static_cast<RequestParser*>(p->data);
  append_field_piece(r->fields_, false, r->base_, at, len, &r->head_bytes_);
  return r->head_bytes_ > r->max_head_ ? HPE_USER : 0;
}

int RequestParser::on_header_value(llhttp_t* p, const char* at, size_t len) {
  auto* r = static_cast<RequestParser*>(p->data);
  if (!append_field_piece(r->fields_, true, r->base_, at, len, &r->head_bytes_)) {
    llhttp_set_error_reason(p, "obs-fold (RFC 9112 5.2)");
    return HPE_INVALID_HEADER_TOKEN;
  }
  return r->head_bytes_ > r->max_head_ ? HPE_USER : 0;
}

int RequestParser::on_headers_complete(llhttp_t* p) {
  static_cast<RequestParser*>(p->data)->head_done_ = true;
  return HPE_PAUSED;
}

int RequestParser::on_body(llhttp_t* p, const char* at, size_t len) {
  // The proxy's path: no sink, one test per piece of body llhttp hands over.
  auto* r = static_cast<RequestParser*>(p->data);
  if (r->decode_) {
    if (r->decode_dst_ != at) std::memmove(r->decode_dst_, at, len);
    r->decode_dst_ += len;
    return 0;
  }
  if (r->body_out_ == nullptr || r->body_over_limit_) return 0;
  if (len > r->body_limit_ - r->body_out_->size()) {
    r->body_over_limit_ = true;  // kept no further; the caller answers
    return 0;
  }
  r->body_out_->append(at, len);
  return 0;
}

int RequestParser::on_message_complete(llhttp_t* p) {
  static_cast<RequestParser*>(p->data)->msg_done_ = true;
  return HPE_PAUSED;
}

const llhttp_settings_t& RequestParser::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_method = on_method;
    v.on_method_complete = on_method_complete;
    v.on_url = on_url;
    v.on_header_field = on_header_field;
    v.on_header_value = on_header_value;
    v.on_headers_complete = on_headers_complete;
    v.on_body = on_body;
    v.on_message_complete = on_message_complete;
    return v;
  }();
  return s;
}

}  // namespace ringproxy::h1
