#include "http/h2/server_session.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "http/h2/memory.h"
#include "http/header_rules.h"
#include "http/status.h"

namespace ringproxy::h2 {
namespace {

// Consecutive DATA frames with neither payload nor END_STREAM before the connection ends
// (CVE-2019-9518; Envoy allows 1 by default, we allow a few for clients that flush
// empty frames between writes).
constexpr uint32_t kMaxEmptyDataRun = 16;
// Frames collected into one write, at most: within IOV_MAX with room for DATA payloads.
constexpr size_t kMaxSegments = 256;
constexpr size_t kMaxWriteBytes = 256 * 1024;
// Frames queued in nghttp2 after a read beyond which they are sent at once (on_read).
constexpr size_t kFlushAtOnceFrames = 64;

std::string_view view(nghttp2_rcbuf* b) {
  const nghttp2_vec v = nghttp2_rcbuf_get_buf(b);
  return {reinterpret_cast<const char*>(v.base), v.len};
}

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

ServerSession* session_of(void* user) { return static_cast<ServerSession*>(user); }

// RFC 9113 8.3.1: origin form ("/" then path and query), or "*" for OPTIONS; its bytes
// visible ASCII (RFC 3986's characters and percent-encoding), no fragment.
bool valid_path(std::string_view path, std::string_view method) {
  if (path == "*") return method == "OPTIONS";
  if (path.empty() || path[0] != '/') return false;
  for (const char c : path) {
    if (c < 0x21 || c > 0x7e || c == '#') return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Life cycle

ServerSession::ServerSession(h1::ServerConn& conn, Owner& owner, const Settings& settings)
    : conn_(conn), owner_(owner), settings_(settings) {}

ServerSession::~ServerSession() {
  // on_closing has let every stream go; the session's own memory goes here.
  if (flush_task_.scheduled) conn_.poller().cancel(&flush_task_);
  if (ng_) nghttp2_session_del(ng_);
}

bool ServerSession::start() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback2(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_frame);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return false;
  }
  // The stream window is credited back as the handler takes the bytes (credit()).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // The client's HEADERS count against our limit as they are decoded (on_header); this
  // is nghttp2's own cap on a header block's encoded size.
  nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
  const int rc = nghttp2_session_server_new3(&ng_, cbs, this, opt, memory());
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    ng_ = nullptr;
    return false;
  }
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings_.initial_window_bytes},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_bytes},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  if (nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0) return false;
  // The connection's window is credited on receipt (on_data_chunk): one stream's slow
  // node never holds the others back. A large window spares WINDOW_UPDATEs.
  nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0, 16 * 1024 * 1024);
  arm_timer();
  return true;
}

void ServerSession::on_closing() {
  closing_ = true;
  if (flush_task_.scheduled) {
    flush_task_.scheduled = false;
    conn_.poller().cancel(&flush_task_);
  }
  // Every handler lets go (its node's connection closes); nothing more is written.
  const std::vector<Stream*> all = live_;
  for (Stream* s : all) {
    s->in_write_ = false;
    s->closed_ = true;
    if (!s->handler_done_) {
      s->handler_done_ = true;
      if (s->dispatched_) s->handler_.abort();
    }
    maybe_free(*s);
  }
  writing_.clear();
  reap();
}

void ServerSession::fail(std::string_view why) {
  if (closing_) return;
  owner_.on_session_note(why);
  conn_.close();
}

void ServerSession::arm_timer() {
  if (closing_) return;
  conn_.arm_timer(heads_open_ > 0 ? settings_.header_timeout_ms : settings_.idle_timeout_ms);
}

void ServerSession::on_timer() {
  if (closing_) return;
  if (conn_.send_pending()) {
    fail("HTTP/2 client not reading, closing");
    return;
  }
  if (heads_open_ > 0) {
    // A stream whose head never completes (a slow CONTINUATION run).
    owner_.on_session_note("HTTP/2 request head not complete in time, closing");
    nghttp2_session_terminate_session(ng_, NGHTTP2_ENHANCE_YOUR_CALM);
    flush();
    conn_.close();
    return;
  }
  size_t dispatched = 0;
  for (const Stream* s : live_) dispatched += s->dispatched_ && !s->handler_done_;
  if (dispatched == 0) {
    // Idle: GOAWAY saying nothing was left unprocessed, then close.
    nghttp2_session_terminate_session(ng_, NGHTTP2_NO_ERROR);
    flush();
    conn_.close();
    return;
  }
  arm_timer();  // streams are under way: their handlers time their nodes
}

void ServerSession::on_drain() {
  if (closing_ || draining_) return;
  draining_ = true;
  // RFC 9113 6.8: GOAWAY with the last stream we will process; open streams finish.
  nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  flush();
}

// ---------------------------------------------------------------------------------------
// Reading

void ServerSession::on_read(ssize_t nread) {
  if (closing_) return;
  IoBuffer& in = conn_.transport().buffer();
  if (nread < 0) {
    conn_.close();  // an HTTP/2 client does not half-close; EOF or a reset ends it all
    return;
  }
  if (heads_open_ == 0) arm_timer();
  in_recv_ = true;
  const ssize_t n =
      nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(in.begin_ptr()), in.size());
  in_recv_ = false;
  if (calm_ && n >= 0) {
    owner_.on_session_note("HTTP/2 empty DATA frame flood, closing");
    nghttp2_session_terminate_session(ng_, NGHTTP2_ENHANCE_YOUR_CALM);
    flush();
    conn_.close();
    return;
  }
  if (n < 0) {
    // A connection error (a bad preface, a flood nghttp2 counted): it has queued its
    // GOAWAY; send it, then close.
    owner_.on_session_note(std::string("HTTP/2 connection error: ") + nghttp2_strerror(static_cast<int>(n)) +
                           ", closing");
    flush();
    conn_.close();
    return;
  }
  in.clear();  // every byte was taken (copied where kept)
  // An idle connection holds no read buffer (the worker's pool has it), as HTTP/1's.
  if (live_.empty()) conn_.release_read_buffer();
  // Reading stops by itself when the buffer fills (net/transport.h): it has room again.
  if (!closing_) conn_.transport().start_reading();
  reap();
  // With what the turn's other events add (the answers of other streams), unless
  // nghttp2 holds many frames already: the ACKs of a burst of PINGs or SETTINGS go
  // out with each read, so that nghttp2's bound on unsent ACKs (1,000, its flood
  // guard) counts a client that does not read, not a burst spread over reads.
  if (nghttp2_session_get_outbound_queue_size(ng_) > kFlushAtOnceFrames) {
    flush();
  } else {
    flush_soon();
  }
}

int ServerSession::on_begin_headers(nghttp2_session* ng, const nghttp2_frame* frame, void* user) {
  ServerSession* self = session_of(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  // A refused stream has no Stream: its fields and DATA are dropped as they come.
  if (self->draining_) {
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  Stream* s = self->owner_.new_stream();
  if (!s) {
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  s->session_ = self;
  s->id_ = frame->hd.stream_id;
  s->head_open_ = true;
  ++self->heads_open_;
  if (self->heads_open_ == 1) self->arm_timer();
  self->live_.push_back(s);
  nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, s);
  return 0;
}

int ServerSession::on_header(nghttp2_session* ng, const nghttp2_frame* frame, nghttp2_rcbuf* name,
                             nghttp2_rcbuf* value, uint8_t, void*) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;  // trailers: an HTTP/1 node is sent none (the body goes chunked or sized)
  }
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
  if (!s || s->head_too_large_) return 0;
  const std::string_view n = view(name);
  const std::string_view v = view(value);
  // RFC 9113 6.5.2: a field's size is its name and value and 32.
  s->head_bytes_ += static_cast<uint32_t>(n.size() + v.size() + 32);
  if (s->head_bytes_ > s->session_->settings_.max_header_list_bytes) {
    s->head_too_large_ = true;  // answered 431 once the head ends; nothing more is kept
    return 0;
  }
  if (!n.empty() && n[0] == ':') {
    // nghttp2 has checked the pseudo-header fields: known, once each, before the others.
    if (n == ":method") {
      s->method_ = v;
    } else if (n == ":path") {
      s->path_ = v;
    } else if (n == ":authority") {
      s->authority_ = v;
    } else if (n == ":scheme") {
      s->scheme_ = v;
    }
  } else if (n == "cookie") {
    // RFC 9113 8.2.3: cookie crumbs are joined into one field for HTTP/1.
    if (!s->cookie_.empty()) s->cookie_ += "; ";
    s->cookie_.append(v);
    return 0;
  } else {
    s->fields_.push_back({n, v});
  }
  nghttp2_rcbuf_incref(name);
  nghttp2_rcbuf_incref(value);
  s->rcbufs_.push_back(name);
  s->rcbufs_.push_back(value);
  return 0;
}

int ServerSession::on_frame_recv(nghttp2_session* ng, const nghttp2_frame* frame, void* user) {
  ServerSession* self = session_of(user);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_DATA: {
      if (frame->hd.length == 0 && !end_stream) {
        // Ended once nghttp2 has returned (on_read): terminating from inside its
        // callback, with more input to come in the same call, took nghttp2 1.52 to an
        // assertion on a later malformed frame (fuzz_h2_frames found it).
        if (++self->empty_data_run_ > kMaxEmptyDataRun) self->calm_ = true;
      } else {
        self->empty_data_run_ = 0;
      }
      auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
      if (s && end_stream) {
        s->remote_end_ = true;
        self->pump(*s);
      }
      return 0;
    }
    case NGHTTP2_HEADERS: {
      auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
      if (!s) return 0;
      self->empty_data_run_ = 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->head_open_ = false;
        --self->heads_open_;
        if (self->heads_open_ == 0) self->arm_timer();
        self->dispatch(*s, end_stream);
      } else if (end_stream) {
        s->remote_end_ = true;  // trailers end the request
        self->pump(*s);
      }
      return 0;
    }
    default:
      return 0;
  }
}

void ServerSession::refuse(Stream& s, int status, std::string_view text, std::string_view cause) {
  // Counted and logged by the handler as HTTP/1's refusals are; it never saw the head.
  s.dispatched_ = true;
  s.handler_done_ = true;
  s.handler_.begin();
  s.handler_.on_answered(status, cause);
  s.submit_simple(status, "text/plain", text);
}

void ServerSession::dispatch(Stream& s, bool end_stream) {
  s.remote_end_ = end_stream;
  if (s.head_too_large_) {
    refuse(s, 431, "request header fields too large", "head over http2.max_header_list_bytes");
    return;
  }
  if (s.method_ == "CONNECT") {
    // RFC 9113 8.5: CONNECT makes a tunnel; this proxy forwards requests only.
    refuse(s, 405, "CONNECT is not supported", "CONNECT refused");
    return;
  }
  if (!valid_path(s.path_, s.method_)) {
    // The target goes on in an HTTP/1 request line: what HTTP/1's parser refuses from a
    // client (a byte over 0x7e, a control, a space, a fragment) is refused here too,
    // so both protocols let the same targets reach a node (fuzz_h2_frames found one).
    refuse(s, 400, "malformed request", "malformed request: invalid :path");
    return;
  }
  // :authority is the Host (RFC 9113 8.3.1); a Host field that differs from it is
  // replaced by it, so the node and the routes see one value.
  size_t host = SIZE_MAX;
  for (size_t i = 0; i < s.fields_.size(); ++i) {
    if (s.fields_[i].name == "host") {
      if (host != SIZE_MAX) {
        refuse(s, 400, "malformed request", "malformed request: two host fields");
        return;
      }
      host = i;
    }
  }
  if (!s.authority_.empty()) {
    if (host == SIZE_MAX) {
      s.fields_.push_back({"host", s.authority_});
      host = s.fields_.size() - 1;
    } else {
      s.fields_[host].value = s.authority_;
    }
  }
  if (host == SIZE_MAX || !valid_host(s.fields_[host].value, false)) {
    refuse(s, 400, "malformed request", host == SIZE_MAX ? "malformed request: no :authority nor host"
                                                         : "malformed request: invalid :authority");
    return;
  }
  if (!s.cookie_.empty()) s.fields_.push_back({"cookie", s.cookie_});
  RequestHead& h = s.head_;
  h = RequestHead{};
  h.method = s.method_;
  h.target = s.path_;
  h.fields = &s.fields_;
  h.host_index = host;
  h.protocol = RequestHead::Protocol::kHttp2;
  h.is_head = s.method_ == "HEAD";
  h.body_decoded = true;
  h.has_body = !end_stream;
  const std::string_view cl = find_header(s.fields_, "content-length");
  if (!cl.empty()) {
    uint64_t n = 0;
    // nghttp2 has checked it is a number and will hold the DATA to it.
    if (std::from_chars(cl.data(), cl.data() + cl.size(), n).ec == std::errc()) h.content_length = n;
  }
  s.dispatched_ = true;
  const uint32_t gen = s.generation_;
  s.handler_.begin();
  s.handler_.on_request(h, conn_.client_ip());
  if (s.generation_ != gen) return;  // answered and freed inside
  pump(s);
}

int ServerSession::on_data_chunk(nghttp2_session* ng, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                                 void* user) {
  ServerSession* self = session_of(user);
  // The connection's window is credited at once: flow control per stream is the
  // backpressure (credit()).
  nghttp2_session_consume_connection(ng, len);
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(ng, stream_id));
  if (!s || s->handler_done_ || !s->dispatched_) {
    nghttp2_session_consume_stream(ng, stream_id, len);
    return 0;
  }
  // What the handler still uses must not move: while it is pinned, new bytes wait
  // apart. Either way the bytes held are at most the stream's window (uncredited).
  (s->pinned_ > 0 ? s->later_ : s->body_).append(reinterpret_cast<const char*>(data), len);
  self->pump(*s);
  return 0;
}

void ServerSession::pump(Stream& s) {
  if (!s.dispatched_ || s.handler_done_ || s.pinned_ > 0 || s.end_given_) return;
  if (!s.handler_.ready_for_body()) return;
  if (s.given_ > 0) {
    s.body_.erase(0, s.given_);  // taken and credited: what is left moves to the front
    s.given_ = 0;
  }
  if (!s.later_.empty()) {
    s.body_.append(s.later_);
    s.later_.clear();
  }
  const size_t n = s.body_.size();
  if (n == 0 && !s.remote_end_) return;
  const bool end = s.remote_end_;
  const uint32_t gen = s.generation_;
  if (end) s.end_given_ = true;
  const RequestHandler::BodyResult r = s.handler_.on_body(s.body_.data(), n, end);
  if (s.generation_ != gen) return;
  s.given_ = n;
  if (r == RequestHandler::BodyResult::kPinned) {
    s.pinned_ = n;
  } else {
    credit(s, n);
  }
}

void ServerSession::credit(Stream& s, size_t n) {
  if (n == 0 || s.closed_) return;
  nghttp2_session_consume_stream(ng_, s.id_, n);
  flush_soon();  // a WINDOW_UPDATE may be due
}

int ServerSession::on_stream_close(nghttp2_session* ng, int32_t stream_id, uint32_t error_code, void* user) {
  ServerSession* self = session_of(user);
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(ng, stream_id));
  if (!s) return 0;
  s->closed_ = true;
  if (s->head_open_) {
    s->head_open_ = false;
    --self->heads_open_;
  }
  // Our END_STREAM went out (with the last DATA, or the head of a bodiless answer) and
  // the client had ended its side: the normal end. The handler finishes its own way
  // (its node's connection goes back to the pool) once the write carrying the last
  // bytes completes. Anything else (a reset, a connection error) ends it now.
  const bool answered = s->head_sent_ && (!s->has_body_ || (s->out_end_ && s->out_len_ == 0));
  s->ended_ok_ = answered && error_code == NGHTTP2_NO_ERROR;
  if (!s->ended_ok_) self->finish_handler(*s);
  self->maybe_free(*s);
  return 0;
}

int ServerSession::on_frame_send(nghttp2_session* ng, const nghttp2_frame* frame, void*) {
  if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
    return 0;
  }
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
  if (s && !s->remote_end_ && !s->closed_) {
    // The response is complete before the request (an early answer): the client is
    // told to stop sending (RFC 9113 8.1).
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

void ServerSession::finish_handler(Stream& s) {
  if (s.handler_done_) return;
  if (s.in_write_) {
    // Its node's bytes are in the write in flight: the handler keeps them (and its
    // connection to the node) until the write completes.
    s.abort_after_write_ = true;
    return;
  }
  s.handler_done_ = true;
  if (s.dispatched_) s.handler_.abort();
}

void ServerSession::maybe_free(Stream& s) {
  if (!s.handler_done_ || !s.closed_ || s.in_write_ || s.listed_dead_) return;
  s.listed_dead_ = true;
  dead_.push_back(&s);
  // Freed at once unless a handler or nghttp2 is on the stack (reap() runs at the end
  // of each of the session's own events).
  if (!in_recv_ && !in_flush_) reap();
}

void ServerSession::reap() {
  while (!dead_.empty()) {
    Stream* s = dead_.back();
    dead_.pop_back();
    live_.erase(std::find(live_.begin(), live_.end(), s));
    for (nghttp2_rcbuf* b : s->rcbufs_) nghttp2_rcbuf_decref(b);
    s->rcbufs_.clear();
    s->fields_.clear();
    s->cookie_.clear();
    s->method_ = s->path_ = s->authority_ = s->scheme_ = {};
    s->head_bytes_ = 0;
    s->head_too_large_ = s->head_open_ = false;
    s->body_.clear();
    s->later_.clear();
    s->given_ = s->pinned_ = 0;
    s->remote_end_ = s->end_given_ = false;
    const bool dispatched = s->dispatched_;
    s->dispatched_ = false;
    s->head_sent_ = s->has_body_ = false;
    s->out_ = nullptr;
    s->out_len_ = 0;
    s->out_end_ = s->want_drain_ = s->in_send_ = s->in_write_ = s->abort_after_write_ = false;
    s->trailers_ = false;
    s->handler_done_ = s->closed_ = s->ended_ok_ = s->listed_dead_ = false;
    s->session_ = nullptr;
    s->id_ = 0;
    ++s->generation_;
    if (dispatched) s->handler_.reset();
    owner_.free_stream(s);
  }
  // Every stream the GOAWAY let finish has: flush() closes the connection.
  if (draining_ && live_.empty() && !closing_ && !in_flush_) flush();
}

// ---------------------------------------------------------------------------------------
// Writing

void ServerSession::append_copy(const uint8_t* p, size_t len) {
  if (!segments_.empty() && segments_.back().ref == nullptr) {
    segments_.back().len += len;  // frames_ grows contiguously: one segment
  } else {
    segments_.push_back({nullptr, frames_.size(), len});
  }
  frames_.append(reinterpret_cast<const char*>(p), len);
}

void ServerSession::append_ref(const char* p, size_t len) {
  segments_.push_back({p, 0, len});
  ref_bytes_ += len;
}

void ServerSession::flush_soon() {
  if (closing_) return;
  if (in_flush_) {
    flush_again_ = true;  // the flush under way goes round once more
    return;
  }
  if (flush_task_.scheduled) return;
  flush_task_.scheduled = true;
  conn_.poller().defer(&flush_task_);
}

void ServerSession::flush() {
  if (closing_ || in_recv_ || !ng_) return;  // on_read flushes after receiving
  if (in_flush_) {
    flush_again_ = true;
    return;
  }
  in_flush_ = true;
  do {
    flush_again_ = false;
    flush_round();
  } while (flush_again_ && !closing_);
  if (!closing_) reap();
  in_flush_ = false;
  if (closing_ || conn_.send_pending()) return;  // on_write_done flushes again
  if ((nghttp2_session_want_read(ng_) == 0 && nghttp2_session_want_write(ng_) == 0) ||
      (draining_ && live_.empty())) {
    conn_.close();  // GOAWAY sent and every stream done, or a connection error sent
  }
}

void ServerSession::flush_round() {
  if (conn_.send_pending()) return;  // on_write_done goes on
  frames_.clear();
  segments_.clear();
  ref_bytes_ = 0;
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(ng_, &data);
    if (n < 0) {
      fail(std::string("HTTP/2 session error: ") + nghttp2_strerror(static_cast<int>(n)) + ", closing");
      return;
    }
    if (n == 0) break;
    append_copy(data, static_cast<size_t>(n));
    if (segments_.size() >= kMaxSegments || frames_.size() + ref_bytes_ >= kMaxWriteBytes) break;
  }
  if (segments_.empty()) return;
  iov_.clear();
  for (const Segment& s : segments_) {
    char* base = s.ref ? const_cast<char*>(s.ref) : frames_.data() + s.off;
    iov_.push_back(uv_buf_init(base, static_cast<unsigned>(s.len)));
  }
  const int rc = conn_.send(iov_.data(), static_cast<unsigned>(iov_.size()));
  if (rc < 0) {
    fail("HTTP/2 write to the client failed, closing");
    return;
  }
  if (rc == Transport::kWritten) {
    write_completed();
    flush_again_ = true;  // nghttp2 may have more
  }
}

void ServerSession::on_write_done(int status) {
  if (closing_) return;
  if (status < 0) {
    conn_.close();
    return;
  }
  write_completed();
  flush();
  reap();
  // The client reads again: its timer is the idle one.
  if (!closing_ && heads_open_ == 0) arm_timer();
}

void ServerSession::write_completed() {
  // A handler drained here may write again, and that write may complete at once and
  // land here too: this call's list is its own (the vectors trade places, so a warm
  // session allocates nothing).
  std::vector<Stream*> done = std::move(writing_);
  writing_ = std::move(completed_);
  writing_.clear();
  for (Stream* s : done) s->in_write_ = false;
  for (Stream* s : done) {
    if (s->abort_after_write_) {
      s->abort_after_write_ = false;
      finish_handler(*s);
      maybe_free(*s);
      continue;
    }
    if (s->want_drain_ && s->out_len_ == 0 && !s->in_send_ && !s->handler_done_) {
      s->want_drain_ = false;
      const uint32_t gen = s->generation_;
      s->handler_.on_downstream_drained();
      if (s->generation_ != gen) continue;
    }
    maybe_free(*s);
  }
  done.clear();
  if (completed_.capacity() < done.capacity()) completed_ = std::move(done);
}

ssize_t ServerSession::read_data(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* flags,
                                 nghttp2_data_source* source, void*) {
  auto* s = static_cast<Stream*>(source->ptr);
  if (s->out_len_ == 0 && !s->out_end_) return NGHTTP2_ERR_DEFERRED;  // send_data() resumes it
  const size_t n = std::min(length, s->out_len_);
  if (n > 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (n == s->out_len_ && s->out_end_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->trailers_) {
      // The trailers end the stream, submitted here as nghttp2 asks (after the last
      // DATA, which then carries no END_STREAM).
      s->trailers_ = false;
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      s->nv_.clear();
      const std::string& b = s->trailer_bytes_;
      for (size_t i = 0; i + 3 < s->trailer_at_.size(); i += 4) {
        s->nv_.push_back(make_nv(std::string_view(b.data() + s->trailer_at_[i], s->trailer_at_[i + 1]),
                                 std::string_view(b.data() + s->trailer_at_[i + 2], s->trailer_at_[i + 3])));
      }
      if (nghttp2_submit_trailer(s->session_->ng_, s->id_, s->nv_.data(), s->nv_.size()) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
      }
    }
  }
  return static_cast<ssize_t>(n);
}

int ServerSession::send_data_frame(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                                   nghttp2_data_source* source, void* user) {
  ServerSession* self = session_of(user);
  auto* s = static_cast<Stream*>(source->ptr);
  (void)frame;  // no padding: we never ask for it
  self->append_copy(framehd, 9);
  self->append_ref(s->out_, length);
  s->out_ += length;
  s->out_len_ -= length;
  if (!s->in_write_) {
    s->in_write_ = true;
    self->writing_.push_back(s);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// Stream: the Downstream of one request

int Stream::send(uv_buf_t*, unsigned) { return UV_ENOTSUP; }  // HTTP/1 bytes: never here

std::string_view Stream::client_ip() const { return session_ ? session_->conn_.client_ip() : std::string_view(); }
const TlsTransport* Stream::tls() const { return session_ ? session_->conn_.tls() : nullptr; }
std::string_view Stream::client_subject() const {
  return session_ ? session_->conn_.client_subject() : std::string_view();
}
bool Stream::closing() const { return !session_ || session_->closing_ || (closed_ && !ended_ok_); }

int Stream::submit(int status, std::span<const HeaderView> fields, bool end_stream, bool interim) {
  ServerSession& ss = *session_;
  // Names lowered into one buffer sized first (its views must not move), values as
  // they are: nghttp2 copies both.
  size_t names = 0;
  for (const HeaderView& f : fields) names += f.name.size();
  if (names_.size() < names) names_.resize(names);  // kept from stream to stream
  char* lower = names_.data();
  nv_.clear();
  char code[3] = {static_cast<char>('0' + status / 100 % 10), static_cast<char>('0' + status / 10 % 10),
                  static_cast<char>('0' + status % 10)};
  nv_.push_back(make_nv(":status", std::string_view(code, 3)));
  const ConnectionOptions connection = ConnectionOptions::of(fields);
  for (const HeaderView& f : fields) {
    // RFC 9113 8.2.2: no connection-specific fields in HTTP/2.
    if (is_hop_by_hop(f.name, connection) || iequals(f.name, "transfer-encoding")) continue;
    // RFC 9110 8.6: no Content-Length in a 1xx or 204 (a 304's describes the GET's body).
    if ((status < 200 || status == 204) && iequals(f.name, "content-length")) continue;
    nv_.push_back(make_nv(lower_into(lower, f.name), f.value));
    lower += f.name.size();
  }
  if (interim) return nghttp2_submit_headers(ss.ng_, NGHTTP2_FLAG_NONE, id_, nullptr, nv_.data(), nv_.size(), nullptr);
  nghttp2_data_provider prd;
  prd.source.ptr = this;
  prd.read_callback = ServerSession::read_data;
  has_body_ = !end_stream;
  head_sent_ = true;
  return nghttp2_submit_response(ss.ng_, id_, nv_.data(), nv_.size(), end_stream ? nullptr : &prd);
}

void Stream::submit_simple(int status, std::string_view content_type, std::string_view text) {
  // As HTTP/1's answers of ours (http/status.h): the text and a newline.
  own_body_.assign(text);
  own_body_.push_back('\n');
  char length[24];
  const auto [end, ec] = std::to_chars(length, length + sizeof length, own_body_.size());
  (void)ec;
  const HeaderView fields[] = {{"content-type", content_type}, {"content-length", std::string_view(length, end - length)}};
  const bool bodiless = method_ == "HEAD";
  out_ = own_body_.data();
  out_len_ = bodiless ? 0 : own_body_.size();
  out_end_ = true;
  if (submit(status, fields, bodiless) != 0) {
    nghttp2_submit_rst_stream(session_->ng_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  }
  session_->flush_soon();
}

void Stream::submit_grpc_status(int grpc_status, std::string_view message) {
  // A gRPC client reads the outcome from grpc-status, with HTTP status 200: a
  // "Trailers-Only" response, one HEADERS frame that ends the stream (gRPC's
  // PROTOCOL-HTTP2.md). grpc-message is percent-encoded; ours are plain ASCII text.
  char code[8];
  const auto [end, ec] = std::to_chars(code, code + sizeof code, grpc_status);
  (void)ec;
  own_body_.assign(message);
  const HeaderView fields[] = {{"content-type", "application/grpc"},
                               {"grpc-status", std::string_view(code, static_cast<size_t>(end - code))},
                               {"grpc-message", own_body_}};
  if (submit(200, fields, /*end_stream=*/true) != 0) {
    nghttp2_submit_rst_stream(session_->ng_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  }
  session_->flush_soon();
}

int Stream::send_head(int status, std::span<const HeaderView> fields, bool end_stream) {
  if (!session_ || closed_) return UV_ECANCELED;
  if (status < 200) {
    // An interim response (100 Continue, 103 Early Hints): a HEADERS frame of its own
    // before the final one (RFC 9113 8.1), sent now (the client may wait for it).
    const int rc = submit(status, fields, false, /*interim=*/true);
    session_->flush_soon();
    return rc == 0 ? 0 : UV_ENOMEM;
  }
  const int rc = submit(status, fields, end_stream);
  return rc == 0 ? 0 : UV_ENOMEM;
}

int Stream::send_data(char* p, size_t len, bool end) {
  if (!session_ || closed_ || session_->closing_) return UV_ECANCELED;
  if (!has_body_) return Transport::kWritten;  // the head ended the stream
  if (len > 0 || end) {
    out_ = p;
    out_len_ = len;
    out_end_ = end;
    nghttp2_session_resume_data(session_->ng_, id_);
  }
  in_send_ = true;
  session_->flush_soon();
  in_send_ = false;
  if (!session_) return UV_ECANCELED;
  if (out_len_ == 0 && !in_write_) return Transport::kWritten;
  if (closed_ && out_len_ > 0) return UV_ECANCELED;  // reset: the rest never goes
  // In a write not yet complete (the bytes stay pinned), or held by flow control.
  want_drain_ = true;
  return Transport::kQueued;
}

int Stream::send_trailers(std::span<const HeaderView> fields) {
  if (!session_ || closed_ || session_->closing_) return UV_ECANCELED;
  if (!has_body_) return UV_EINVAL;  // the head ended the stream
  trailer_bytes_.clear();
  trailer_at_.clear();
  const ConnectionOptions none;
  for (const HeaderView& f : fields) {
    if (is_hop_by_hop(f.name, none) || iequals(f.name, "transfer-encoding") || iequals(f.name, "content-length")) {
      continue;
    }
    trailer_at_.push_back(static_cast<uint32_t>(trailer_bytes_.size()));
    trailer_at_.push_back(static_cast<uint32_t>(f.name.size()));
    for (char c : f.name) trailer_bytes_.push_back(ascii_lower(c));
    trailer_at_.push_back(static_cast<uint32_t>(trailer_bytes_.size()));
    trailer_at_.push_back(static_cast<uint32_t>(f.value.size()));
    trailer_bytes_.append(f.value);
  }
  trailers_ = !trailer_at_.empty();
  out_end_ = true;
  nghttp2_session_resume_data(session_->ng_, id_);
  session_->flush_soon();
  return 0;
}

void Stream::respond_error(int status, std::string_view text, std::string_view log_cause) {
  if (!session_ || handler_done_) return;
  ServerSession& ss = *session_;
  if (head_sent_ || closed_) {
    abort();
    return;
  }
  handler_done_ = true;
  handler_.abort();
  handler_.on_answered(status, log_cause);
  if (is_grpc_content_type(find_header(fields_, "content-type"))) {
    submit_grpc_status(grpc_status_for(status), text);
  } else {
    submit_simple(status, "text/plain", text);
  }
  ss.maybe_free(*this);
}

void Stream::respond_own(std::string& answer, bool) {
  // An answer the handler built as HTTP/1 bytes (Max-Forwards: 0 to OPTIONS or TRACE):
  // its status, fields and body, re-framed.
  if (!session_ || handler_done_) return;
  ServerSession& ss = *session_;
  own_body_.swap(answer);
  const std::string_view all = own_body_;
  const size_t head_end = all.find("\r\n\r\n");
  int status = 502;
  std::vector<HeaderView> fields;  // a rare answer: one allocation is fine
  if (all.size() >= 12 && head_end != std::string_view::npos) {
    status = (all[9] - '0') * 100 + (all[10] - '0') * 10 + (all[11] - '0');
    size_t at = all.find("\r\n") + 2;
    while (at < head_end) {
      const size_t eol = all.find("\r\n", at);
      const std::string_view line = all.substr(at, eol - at);
      const size_t colon = line.find(':');
      if (colon != std::string_view::npos) fields.push_back({line.substr(0, colon), trim_ows(line.substr(colon + 1))});
      at = eol + 2;
    }
  }
  const std::string_view body = head_end == std::string_view::npos ? std::string_view() : all.substr(head_end + 4);
  out_ = const_cast<char*>(body.data());
  out_len_ = body.size();
  out_end_ = true;
  handler_done_ = true;
  if (submit(status, fields, body.empty()) != 0) {
    nghttp2_submit_rst_stream(ss.ng_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  }
  ss.flush_soon();
  ss.maybe_free(*this);
}

bool Stream::finish_request_early() {
  // Whatever of the body came is dropped; more is refused with the RST_STREAM that
  // follows a complete response.
  return remote_end_;
}

void Stream::response_done(bool) {
  if (!session_ || handler_done_) return;
  handler_done_ = true;
  ServerSession& ss = *session_;
  if (head_sent_ && has_body_ && !out_end_ && !closed_) {
    // The body ended without a last send (a body the node ended by closing, while a
    // write was pending): END_STREAM now.
    out_end_ = true;
    out_len_ = 0;
    nghttp2_session_resume_data(ss.ng_, id_);
  }
  ss.flush_soon();
  ss.maybe_free(*this);
}

void Stream::resume_body() {
  if (!session_ || handler_done_) return;
  ServerSession& ss = *session_;
  if (pinned_ > 0) {
    const size_t n = pinned_;
    pinned_ = 0;
    ss.credit(*this, n);
  }
  ss.pump(*this);
}

void Stream::abort() {
  if (!session_) return;
  ServerSession& ss = *session_;
  if (!closed_) nghttp2_submit_rst_stream(ss.ng_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  out_len_ = 0;  // nothing more of the body goes
  ss.finish_handler(*this);
  ss.flush_soon();
  ss.maybe_free(*this);
}

}  // namespace ringproxy::h2
