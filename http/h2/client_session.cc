#include "http/h2/client_session.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <utility>

#include "http/h2/memory.h"
#include "http/header_rules.h"
#include "net/transport.h"

namespace ringproxy::h2 {
namespace {

// Bytes of frames gathered into one write at most.
constexpr size_t kMaxWriteBytes = 256 * 1024;
// Stream ids are 31 bits, odd for a client: a session this close to the end opens no
// more (the pool opens another connection).
constexpr int32_t kLastStreamIds = 0x7fffff00;
// A node advertising more concurrent streams than this is taken at this.
constexpr uint32_t kMaxStreamsPerConnection = 1000;

std::string_view view(nghttp2_rcbuf* b) {
  const nghttp2_vec v = nghttp2_rcbuf_get_buf(b);
  return {reinterpret_cast<const char*>(v.base), v.len};
}

ClientSession* session_of(void* user) { return static_cast<ClientSession*>(user); }

// Sessions of this thread inside nghttp2 now (ClientSession::any_inside_nghttp2).
thread_local int g_inside_nghttp2 = 0;

// Marks a session's call into nghttp2 (mem_recv, mem_send), whose callbacks may close
// the connection under it.
class InsideNghttp2 {
 public:
  explicit InsideNghttp2(bool& flag) : flag_(flag) {
    flag_ = true;
    ++g_inside_nghttp2;
  }
  ~InsideNghttp2() {
    flag_ = false;
    --g_inside_nghttp2;
  }
  InsideNghttp2(const InsideNghttp2&) = delete;
  InsideNghttp2& operator=(const InsideNghttp2&) = delete;

 private:
  bool& flag_;
};

std::string error_text(uint32_t code) { return nghttp2_http2_strerror(code); }

}  // namespace

bool request_fields(std::string_view head, const HeadSpans& spans, std::string_view scheme,
                    std::string_view authority, bool te_trailers, std::string& names,
                    std::vector<nghttp2_nv>& nv) {
  nv.clear();
  // Every name fits: the views below never move. No shrink: the buffer is the
  // exchange's, reused from request to request.
  if (names.size() < head.size()) names.resize(head.size());
  char* lower = names.data();
  const auto add = [&nv](std::string_view n, std::string_view v) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
  };
  add(":method", spans.method.in(head));
  add(":scheme", scheme);
  const size_t authority_at = nv.size();
  add(":authority", authority);
  add(":path", spans.target.in(head));
  if (te_trailers) add("te", "trailers");  // RFC 9113 8.2.2: the one TE allowed
  // The fields the client's Connection named are gone already; what HTTP/2 forbids
  // beyond those is a fixed set (RFC 9113 8.2.2), told apart by length first.
  for (const auto& [name_at, value_at] : spans.fields) {
    const std::string_view name = name_at.in(head);
    const std::string_view value = value_at.in(head);
    bool drop = false;
    switch (name.size()) {
      case 2: drop = iequals_same_size(name, "te"); break;
      case 4:
        if (iequals_same_size(name, "host")) {
          nv[authority_at].value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
          nv[authority_at].valuelen = value.size();
          drop = true;
        }
        break;
      case 7: drop = iequals_same_size(name, "upgrade"); break;
      case 10: drop = iequals_same_size(name, "connection") || iequals_same_size(name, "keep-alive"); break;
      case 16: drop = iequals_same_size(name, "proxy-connection"); break;
      case 17: drop = iequals_same_size(name, "transfer-encoding"); break;
      default: break;
    }
    if (drop) continue;
    add(lower_into(lower, name), value);
    lower += name.size();
  }
  return nv[authority_at].valuelen > 0;
}

bool request_fields_from_http1(std::string_view head, std::string_view scheme, std::string_view authority,
                               bool te_trailers, std::string& names, std::vector<nghttp2_nv>& nv) {
  // The head is ours (proxy/rewrite.cc): every line ends in CRLF, the last is empty.
  const char* p = head.data();
  const char* const end = p + head.size();
  const auto line_end = [end](const char* from) -> const char* {
    const void* lf = std::memchr(from, '\n', static_cast<size_t>(end - from));
    return lf && static_cast<const char*>(lf) > from && static_cast<const char*>(lf)[-1] == '\r'
               ? static_cast<const char*>(lf) - 1
               : nullptr;
  };
  const char* eol = line_end(p);
  if (!eol) return false;
  const std::string_view line(p, static_cast<size_t>(eol - p));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 <= sp1) return false;
  const auto span = [head](std::string_view part) {
    return HeadSpans::Span{static_cast<uint32_t>(part.data() - head.data()), static_cast<uint32_t>(part.size())};
  };
  HeadSpans spans;
  spans.method = span(line.substr(0, sp1));
  spans.target = span(line.substr(sp1 + 1, sp2 - sp1 - 1));
  for (p = eol + 2; p < end;) {
    eol = line_end(p);
    if (!eol) return false;
    if (eol == p) break;  // the empty line
    const std::string_view field(p, static_cast<size_t>(eol - p));
    p = eol + 2;
    const size_t colon = field.find(':');
    if (colon == std::string_view::npos) return false;
    spans.fields.push_back({span(field.substr(0, colon)), span(trim_ows(field.substr(colon + 1)))});
  }
  return request_fields(head, spans, scheme, authority, te_trailers, names, nv);
}

// ---------------------------------------------------------------------------------------
// ClientStream

void ClientStream::reset_state() {
  for (nghttp2_rcbuf* b : rcbufs_) nghttp2_rcbuf_decref(b);
  rcbufs_.clear();
  id_ = 0;
  sent_us_ = 0;
  out_ = nullptr;
  out_len_ = 0;
  out_end_ = has_body_ = false;
  interim_status_ = status_ = building_status_ = 0;
  interim_fields_.clear();
  fields_.clear();
  trailers_.clear();
  building_.clear();
  head_bytes_ = 0;
  body_.clear();
  later_.clear();
  given_ = pinned_ = 0;
  remote_end_ = false;
  failed_ = unprocessed_ = moved_ = false;
  error_code_ = 0;
  connect_status_ = 0;
  cause_.clear();
}

void ClientStream::cancel() {
  if (ClientSession* ss = session_) {
    if (ss->ng_ && id_ > 0 && !ss->dead_) {
      // Open, or still queued (its HEADERS waiting for a slot under the node's limit, or
      // for the connection): nghttp2 forgets this object either way (its user data,
      // which read_data and every callback go through), and RST_STREAM cancels a queued
      // request before it is sent. A queued stream's user data is not in
      // nghttp2_session_find_stream's reach: the ASan build caught nghttp2 opening one
      // with the pointer of an Exchange long freed.
      nghttp2_session_set_stream_user_data(ss->ng_, id_, nullptr);
      nghttp2_submit_rst_stream(ss->ng_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
    }
    ss->detach(*this);
    ss->flush_soon();
    ss->wire_.wire_capacity();
  }
  notify_ = false;  // if still listed, skipped when the list runs
  reset_state();
}

bool ClientStream::waiting() const {
  // nghttp2 creates a stream's state when it sends the HEADERS (session_prep_frame), so
  // a submitted stream it cannot find is still queued.
  return session_ && session_->ng_ && id_ > 0 && nghttp2_session_find_stream(session_->ng_, id_) == nullptr;
}

void ClientStream::arm_timer(uint32_t ms) {
  if (session_) session_->wire_.wire_arm(*this, ms);
}

void ClientStream::disarm_timer() {
  if (session_) session_->wire_.wire_disarm(*this);
}

void ClientStream::fail(std::string_view cause, bool unprocessed, uint32_t code, int connect_status) {
  if (failed_) return;
  failed_ = true;
  unprocessed_ = unprocessed;
  error_code_ = code;
  connect_status_ = connect_status;
  cause_.assign(cause);
}

int ClientStream::send_body(const char* p, size_t len, bool end) {
  if (!session_ || failed_) return UV_ECANCELED;
  if (!has_body_ || out_end_) return Transport::kWritten;  // ended already: nothing goes
  out_ = p;
  out_len_ = len;
  out_end_ = end;
  nghttp2_session_resume_data(session_->ng_, id_);
  session_->flush_soon();
  return len == 0 ? Transport::kWritten : Transport::kQueued;
}

void ClientStream::interim_taken() {
  interim_status_ = 0;
  interim_fields_.clear();
}

void ClientStream::give(size_t n, bool pinned) {
  given_ += n;
  if (pinned) {
    pinned_ += n;
    return;
  }
  if (session_) session_->credit(*this, n);
  if (pinned_ == 0 && given_ == body_.size()) {
    body_.clear();
    given_ = 0;
    body_.swap(later_);
  }
}

void ClientStream::unpin() {
  if (pinned_ == 0) return;
  const size_t n = pinned_;
  pinned_ = 0;
  if (session_) session_->credit(*this, n);
  // What came while the bytes were pinned joins what is left.
  if (given_ == body_.size()) {
    body_.clear();
    given_ = 0;
    body_.swap(later_);
  } else if (!later_.empty()) {
    body_.erase(0, given_);
    given_ = 0;
    body_.append(later_);
    later_.clear();
  }
}

// ---------------------------------------------------------------------------------------
// Life cycle

ClientSession::ClientSession(Wire& wire, const ClientSettings& settings) : wire_(wire), settings_(settings) {}

ClientSession::~ClientSession() {
  if (flush_task_.scheduled) wire_.wire_poller().cancel(&flush_task_);
  dead_ = true;
  fail_all("connection closed", false, 0);
  for (ClientStream* s : notify_) s->notify_ = false;
  notify_.clear();
  if (ng_) nghttp2_session_del(ng_);
}

bool ClientSession::start() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback2(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
  nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_frame);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return false;
  }
  // Stream windows are credited as the client takes the bytes (ClientStream::give).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  if (settings_.assumed_peer_streams) {
    nghttp2_option_set_peer_max_concurrent_streams(opt, *settings_.assumed_peer_streams);
  }
  const int rc = nghttp2_session_client_new3(&ng_, cbs, this, opt, memory());
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    ng_ = nullptr;
    return false;
  }
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings_.stream_window_bytes},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_bytes},
  };
  if (nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0) return false;
  nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(settings_.connection_window_bytes));
  limit_seen_ = peer_max_streams();  // the assumed one, or nghttp2's 100
  return true;
}

void ClientSession::on_connected() {
  connected_ = true;
  flush();
}

bool ClientSession::any_inside_nghttp2() { return g_inside_nghttp2 > 0; }

void ClientSession::on_closed(std::string_view cause, int connect_status) {
  if (!dead_) {
    dead_ = true;
    // Never connected: nothing was sent, every stream may go elsewhere.
    fail_all(cause, !connected_, connect_status);
  }
  // From inside nghttp2's callbacks (the Wire closing in wire_capacity: a GOAWAY, the
  // last stream closing), the handlers are told when nghttp2 returns: on_read and
  // flush run the list after it. They used to be told here, with nghttp2 mid-frame
  // under them, against ClientStream::Handler's contract. A close from elsewhere, or a
  // second one once out (flush's error paths), tells them now.
  if (!in_nghttp2()) run_notify();
}

void ClientSession::shutdown() {
  if (dead_ || draining_) return;
  draining_ = true;
  if (streams_.empty()) {
    nghttp2_session_terminate_session(ng_, NGHTTP2_NO_ERROR);
    flush();
  }
}

bool ClientSession::accepting() const {
  return ng_ && !dead_ && !goaway_ && !draining_ &&
         nghttp2_session_get_next_stream_id(ng_) < static_cast<uint32_t>(kLastStreamIds);
}

uint32_t ClientSession::peer_max_streams() const {
  // 100 until the node's SETTINGS say (nghttp2's assumption, RFC 9113 6.5.2's advice).
  return ng_ ? std::min(nghttp2_session_get_remote_settings(ng_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
                        kMaxStreamsPerConnection)
             : 0;
}

void ClientSession::detach(ClientStream& s) {
  auto it = std::find(streams_.begin(), streams_.end(), &s);
  if (it != streams_.end()) {
    *it = streams_.back();
    streams_.pop_back();
  }
  wire_.wire_disarm(s);
  s.session_ = nullptr;
  if (draining_ && streams_.empty() && ng_ && !dead_) nghttp2_session_terminate_session(ng_, NGHTTP2_NO_ERROR);
}

void ClientSession::move_unfit() {
  const uint32_t limit = peer_max_streams();
  const uint32_t before = std::exchange(limit_seen_, limit);
  if (limit >= before || dead_ || goaway_) return;  // a GOAWAY moves them all itself
  std::vector<ClientStream*> waiting;
  size_t open = 0;
  for (ClientStream* s : streams_) {
    if (s->waiting()) {
      waiting.push_back(s);
    } else {
      ++open;
    }
  }
  const size_t kept = waiting_kept(open, limit, waiting.size());
  if (kept == waiting.size()) return;
  // nghttp2 numbers streams as they are submitted and sends queued ones in that order:
  // the lowest ids stay, the newest move.
  std::sort(waiting.begin(), waiting.end(), [](const ClientStream* a, const ClientStream* b) { return a->id_ < b->id_; });
  const std::string cause = "node lowered SETTINGS_MAX_CONCURRENT_STREAMS to " + std::to_string(limit) +
                            ", stream not sent";
  for (size_t i = kept; i < waiting.size(); ++i) {
    ClientStream* s = waiting[i];
    s->fail(cause, true, 0, 0);
    s->moved_ = true;
    // Out of nghttp2's queue: RST_STREAM cancels a queued HEADERS before it is sent
    // (ClientStream::cancel does the same), so the node never sees it.
    nghttp2_session_set_stream_user_data(ng_, s->id_, nullptr);
    nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s->id_, NGHTTP2_CANCEL);
    detach(*s);
    notify(*s);
  }
}

void ClientSession::fail_all(std::string_view cause, bool unprocessed, int connect_status) {
  const std::vector<ClientStream*> all = streams_;
  for (ClientStream* s : all) {
    // A stream nghttp2 never opened (its HEADERS still queued) was not sent: not
    // processed, whatever the connection did.
    s->fail(cause, unprocessed || s->waiting(), 0, connect_status);
    if (ng_ && s->id_ > 0) nghttp2_session_set_stream_user_data(ng_, s->id_, nullptr);
    detach(*s);
    notify(*s);
  }
}

void ClientSession::notify(ClientStream& s) {
  if (s.notify_) return;
  s.notify_ = true;
  notify_.push_back(&s);
}

void ClientSession::run_notify() {
  assert(!in_nghttp2());  // ClientStream::Handler: never called from inside nghttp2
  // Handlers may submit, cancel and be told again while this runs: the list is swapped
  // out (and back, so a warm session allocates nothing).
  while (!notify_.empty()) {
    notifying_.swap(notify_);
    for (size_t i = 0; i < notifying_.size(); ++i) {
      ClientStream* s = notifying_[i];
      if (!s->notify_) continue;  // cancelled meanwhile
      s->notify_ = false;
      if (s->handler_) s->handler_->on_upstream_stream();
    }
    notifying_.clear();
  }
}

// ---------------------------------------------------------------------------------------
// Streams

int ClientSession::submit(ClientStream& s, std::span<const nghttp2_nv> nv, bool has_body) {
  if (!can_open() && (dead_ || goaway_ || draining_)) return UV_ECANCELED;
  s.reset_state();
  s.has_body_ = has_body;
  nghttp2_data_provider prd;
  prd.source.ptr = nullptr;  // read_data finds the stream by its user data (cancel clears it)
  prd.read_callback = read_data;
  const int32_t id =
      nghttp2_submit_request(ng_, nullptr, nv.data(), nv.size(), has_body ? &prd : nullptr, &s);
  if (id < 0) return id == NGHTTP2_ERR_NOMEM ? UV_ENOMEM : UV_ECANCELED;
  s.id_ = id;
  s.session_ = this;
  streams_.push_back(&s);
  flush_soon();
  return 0;
}

void ClientSession::credit(ClientStream& s, size_t n) {
  if (!ng_ || dead_ || s.id_ <= 0 || n == 0) return;
  if (nghttp2_session_find_stream(ng_, s.id_) == nullptr) return;  // closed: nothing to credit
  nghttp2_session_consume_stream(ng_, s.id_, n);
  flush_soon();
}

// ---------------------------------------------------------------------------------------
// Reading

bool ClientSession::on_read(const char* p, size_t len) {
  if (dead_) return false;
  ssize_t n;
  {
    const InsideNghttp2 inside(in_recv_);
    n = nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(p), len);
  }
  if (n < 0) {
    const std::string why = std::string("HTTP/2 protocol error from the node: ") + nghttp2_strerror(static_cast<int>(n));
    dead_ = true;
    fail_all(why, false, 0);
    run_notify();
    wire_.wire_close(why);
    return false;
  }
  flush_soon();
  run_notify();
  return true;
}

int ClientSession::on_begin_headers(nghttp2_session* ng, const nghttp2_frame* frame, void*) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* s = static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
  if (!s) return 0;
  s->building_.clear();
  s->building_status_ = 0;
  return 0;
}

int ClientSession::on_header(nghttp2_session* ng, const nghttp2_frame* frame, nghttp2_rcbuf* name,
                             nghttp2_rcbuf* value, uint8_t, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* s = static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
  if (!s) return 0;
  const std::string_view n = view(name);
  const std::string_view v = view(value);
  s->head_bytes_ += static_cast<uint32_t>(n.size() + v.size() + 32);
  if (s->head_bytes_ > session_of(user)->settings_.max_header_list_bytes) {
    s->fail("response head over " + std::to_string(session_of(user)->settings_.max_header_list_bytes) + " bytes",
            false, NGHTTP2_INTERNAL_ERROR, 0);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream only
  }
  if (n == ":status") {
    // nghttp2 has checked three digits (and no 101), not the range: "003" passes, and
    // nghttp2 takes it for a final head where we would take it for an interim one
    // (fuzz_h2_client). RFC 9110 15: 100 to 599; 600-999 go on as HTTP/1 nodes' do.
    int status = 0;
    std::from_chars(v.data(), v.data() + v.size(), status);
    if (status < 100) {
      s->fail("malformed response from the node: :status " + std::string(v), false, NGHTTP2_PROTOCOL_ERROR, 0);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream only
    }
    s->building_status_ = status;
    return 0;
  }
  nghttp2_rcbuf_incref(name);
  nghttp2_rcbuf_incref(value);
  s->rcbufs_.push_back(name);
  s->rcbufs_.push_back(value);
  s->building_.push_back({n, v});
  return 0;
}

int ClientSession::on_frame_recv(nghttp2_session* ng, const nghttp2_frame* frame, void* user) {
  ClientSession* self = session_of(user);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS: {
      auto* s = static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
      if (!s) return 0;
      if (frame->hd.type == NGHTTP2_HEADERS) {
        if (s->building_status_ != 0) {
          if (s->building_status_ < 200) {
            s->interim_status_ = s->building_status_;
            s->interim_fields_.swap(s->building_);
          } else {
            s->status_ = s->building_status_;
            s->fields_.swap(s->building_);
          }
        } else {
          s->trailers_.swap(s->building_);  // nghttp2 allows these only after a final head
        }
        s->building_.clear();
        s->building_status_ = 0;
      }
      if (end_stream) s->remote_end_ = true;
      self->notify(*s);
      return 0;
    }
    case NGHTTP2_SETTINGS:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
        self->peer_settings_ = true;
        self->move_unfit();
      }
      self->wire_.wire_capacity();  // the node's MAX_CONCURRENT_STREAMS may have moved
      return 0;
    case NGHTTP2_GOAWAY: {
      // RFC 9113 6.8: streams above last_stream_id were not processed; they may go again
      // elsewhere. Those at or below it finish here. A stream still waiting for a slot is
      // never sent now (nghttp2 starts no stream after a GOAWAY), whatever the last id
      // says (2^31 - 1 announces a graceful shutdown): it goes again at once, not when a
      // slot frees.
      self->goaway_ = true;
      const int32_t last = frame->goaway.last_stream_id;
      const std::vector<ClientStream*> all = self->streams_;
      for (ClientStream* s : all) {
        if (s->id_ > last || s->waiting()) {
          s->fail("GOAWAY from the node (" + error_text(frame->goaway.error_code) + "), stream not processed", true,
                  frame->goaway.error_code, 0);
          nghttp2_session_set_stream_user_data(ng, s->id_, nullptr);
          self->detach(*s);
          self->notify(*s);
        }
      }
      self->wire_.wire_capacity();
      return 0;
    }
    default:
      return 0;
  }
}

int ClientSession::on_data_chunk(nghttp2_session* ng, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                                 void* user) {
  ClientSession* self = session_of(user);
  // The connection's window is credited on receipt: one slow client holds back its own
  // stream only.
  nghttp2_session_consume_connection(ng, len);
  auto* s = static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(ng, stream_id));
  if (!s) return 0;  // a cancelled stream's DATA in flight
  std::string& into = s->pinned_ > 0 ? s->later_ : s->body_;
  into.append(reinterpret_cast<const char*>(data), len);
  self->notify(*s);
  return 0;
}

int ClientSession::on_stream_close(nghttp2_session* ng, int32_t stream_id, uint32_t error_code, void* user) {
  ClientSession* self = session_of(user);
  auto* s = static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(ng, stream_id));
  if (!s) return 0;
  if (error_code != NGHTTP2_NO_ERROR || !s->remote_end_) {
    // RFC 9113 8.7: REFUSED_STREAM means the node did nothing with it.
    s->fail(error_code == NGHTTP2_REFUSED_STREAM ? "stream refused by the node (REFUSED_STREAM)"
                                                 : "stream reset by the node (" + error_text(error_code) + ")",
            error_code == NGHTTP2_REFUSED_STREAM, error_code, 0);
  }
  self->detach(*s);
  self->notify(*s);
  self->wire_.wire_capacity();
  return 0;
}

int ClientSession::on_frame_send(nghttp2_session* ng, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  // A request head went (at once, or after waiting for a slot under the node's limit).
  auto* s = static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
  if (s) s->sent_us_ = session_of(user)->wire_.wire_now_us();
  return 0;
}

int ClientSession::on_frame_not_send(nghttp2_session*, const nghttp2_frame* frame, int error, void* user) {
  ClientSession* self = session_of(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  // A request head that never went (GOAWAY came first, the session is ending): the node
  // never saw it.
  for (ClientStream* s : self->streams_) {
    if (s->id_ == frame->hd.stream_id) {
      s->fail(std::string("request not sent: ") + nghttp2_strerror(error), true, 0, 0);
      self->detach(*s);
      self->notify(*s);
      break;
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// Writing

ssize_t ClientSession::read_data(nghttp2_session* ng, int32_t stream_id, uint8_t*, size_t length, uint32_t* flags,
                                 nghttp2_data_source*, void*) {
  auto* s = static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(ng, stream_id));
  if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // cancelled: reset, nothing more
  if (s->out_len_ == 0) {
    if (s->out_end_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    return NGHTTP2_ERR_DEFERRED;  // send_body() resumes it
  }
  const size_t n = std::min(length, s->out_len_);
  *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (n == s->out_len_ && s->out_end_) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int ClientSession::send_data_frame(nghttp2_session* ng, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                                   nghttp2_data_source*, void* user) {
  ClientSession* self = session_of(user);
  auto* s = static_cast<ClientStream*>(nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
  if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  // Copied: the caller's bytes are free once framed, whatever becomes of the write.
  self->out_.append(reinterpret_cast<const char*>(framehd), 9);
  self->out_.append(s->out_, length);
  s->out_ += length;
  s->out_len_ -= length;
  if (s->out_len_ == 0) self->notify(*s);  // the handler may offer more
  return 0;
}

void ClientSession::flush_soon() {
  if (dead_ || flush_task_.scheduled) return;
  if (in_flush_) {
    flush_again_ = true;
    return;
  }
  flush_task_.scheduled = true;
  wire_.wire_poller().defer(&flush_task_);
}

void ClientSession::flush() {
  if (!ng_ || dead_ || in_recv_ || !connected_ || wire_.wire_pending()) return;
  if (in_flush_) {
    flush_again_ = true;
    return;
  }
  in_flush_ = true;
  do {
    flush_again_ = false;
    out_.clear();
    for (;;) {
      const uint8_t* data = nullptr;
      ssize_t n;
      {
        const InsideNghttp2 inside(in_send_);
        n = nghttp2_session_mem_send(ng_, &data);
      }
      if (n < 0) {
        in_flush_ = false;
        const std::string why = std::string("HTTP/2 session error: ") + nghttp2_strerror(static_cast<int>(n));
        on_closed(why, 0);
        wire_.wire_close(why);
        return;
      }
      if (n == 0) break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      if (out_.size() >= kMaxWriteBytes) break;
    }
    if (out_.empty()) break;
    sending_.swap(out_);
    uv_buf_t buf = uv_buf_init(sending_.data(), static_cast<unsigned>(sending_.size()));
    const int rc = wire_.wire_send(&buf);
    if (rc < 0) {
      in_flush_ = false;
      on_closed(std::string("write to the node failed: ") + uv_err_name(rc), 0);
      wire_.wire_close("write to the node failed");
      return;
    }
    if (rc == Transport::kQueued) break;  // on_write_done goes on
    sending_.clear();
    flush_again_ = true;
  } while (flush_again_ && !dead_);
  in_flush_ = false;
  run_notify();
  if (dead_ || wire_.wire_pending()) return;
  if (nghttp2_session_want_read(ng_) == 0 && nghttp2_session_want_write(ng_) == 0) {
    // GOAWAY sent or received and every stream done.
    dead_ = true;
    fail_all("connection ended", false, 0);
    run_notify();
    wire_.wire_close("");
  }
}

void ClientSession::on_write_done(int status) {
  sending_.clear();
  if (dead_) return;
  if (status < 0) {
    on_closed(std::string("write to the node failed: ") + uv_err_name(status), 0);
    wire_.wire_close("write to the node failed");
    return;
  }
  flush();
}

}  // namespace ringproxy::h2
