// fuzz::h2_client: what a hostile HTTP/2 node sends, fed to our h2::ClientSession
// (http/h2/client_session.h) after we submitted a few requests, with stream handlers that
// drive the session as proxy/exchange_h2.cc does and a Wire that does what
// proxy/upstream_h2.cc does. No socket: the session's writes are collected, the node's
// bytes are the input; one libuv loop and a Poller per input, for the session's
// end-of-turn flush.
//
// The input: two bytes of options, then the node's bytes (its SETTINGS first, or the
// session fails at once), fed in 1 to 4 reads, the loop run until quiet after each.
//   byte 0  bits 0-1  writes: 0 taken at once (Transport::kWritten); 1 queued (kQueued,
//                     completed at the next step, the bytes read only then, so a buffer
//                     changed or freed while queued shows); 2 queued, and the third
//                     write fails when it completes; 3 at once, and the fourth fails
//           bit 2     the connection is up before the requests are submitted (else they
//                     are submitted while it connects: queued, sent on on_connected)
//           bit 3     body bytes given to the client stay pinned until the next step (a
//                     client whose write is queued), as Exchange::stream_body_to_client
//           bit 4     after the first read, every armed deadline fires (the exchanges'
//                     upstream timeouts)
//           bit 5     after the first read, the GET's client goes away (its stream is
//                     cancelled, RST_STREAM when open)
//           bit 6     after the first read, the session drains (ours: no new streams,
//                     GOAWAY once idle)
//           bit 7     the node's limit is assumed to be 1 until its SETTINGS come
//                     (ClientSettings::assumed_peer_streams: streams wait in nghttp2)
//   byte 1  bits 0-1  reads: 1 to 4, cut evenly
//           bit 2     small limits: a 1024-byte stream window, a 256-byte head list
//           bit 3     after the first read, a fourth request (a GET) is submitted
//           bit 4     pinned bytes are not held back: the handler reads on while bytes
//                     are pinned (the session's contract allows it; the Exchange waits
//                     for its write instead)
//           bit 5     at the end, before the connection closes, the clients of the
//                     requests still in flight go away (their streams cancelled on a
//                     live session)
//           bit 6     a body's last piece is empty: its end comes alone, after the
//                     bytes (a chunked upload's last-chunk)
// The requests: GET /get; POST /post with a 600-byte body given in two pieces (the
// second once the first is framed, as the Exchange offers a client's body); POST /grpc
// with te: trailers and a 5-byte body; optionally GET /late. Their heads are HTTP/1
// heads as proxy/rewrite.cc writes them, re-framed by h2::request_fields_from_http1 as
// the Exchange does. Their stream ids are 1, 3,
// 5 (and 7), in submit order. A stream the node did not process (unprocessed(): refused,
// above a GOAWAY's last stream id, never sent) is submitted again, as the Exchange does,
// up to 4 times, on this session while it takes streams.
//
// Checked:
//  - no handler is told anything while nghttp2 is on the stack (ClientStream::Handler's
//    contract), a close from inside its callbacks included;
//  - every request ends exactly once (its response complete, its stream failed, or its
//    deadline passed) and no handler hears of a stream it let go of; by the end every
//    stream is detached, no deadline is left armed, and the loop closes clean;
//  - a response's final head is taken once and never changes after it was taken (no
//    second head delivered), interim heads are 1xx and come before it, the final status
//    is 200-999, trailers come after the head;
//  - the body bytes a request took are a prefix of the DATA payloads (padding removed)
//    the node sent on that stream id; a stream never holds more than its window of bytes
//    not credited back;
//  - what the session wrote is the preface and well-formed frames: SETTINGS first;
//    HEADERS only to open new odd streams, in increasing order, each a request we
//    submitted (decoded with nghttp2's HPACK inflater); DATA only on our open streams,
//    never after our END_STREAM or RST_STREAM; each stream's DATA a prefix of its
//    request's body, all of it when END_STREAM went; at most 64 KiB + 4 bytes per input
//    byte written in all (no amplification of a flood).
// A crash, a sanitizer report, a timeout or libFuzzer's memory limit is a finding too.
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/targets.h"
#include "http/h2/client_session.h"
#include "net/poller.h"
#include "net/transport.h"

namespace ringproxy::fuzz {
namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t kPostBody = 600;
constexpr int kMaxAttempts = 5;          // the first and 4 more (Exchange::kMaxUnprocessedAgain)
constexpr int kMaxStepIterations = 64;   // loop turns per step before it counts as quiet
constexpr uint32_t kDeadlineMs = 1000;   // armed; fired only by the harness (option)

uint32_t be24(const uint8_t* p) { return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2]; }
uint32_t be31(const uint8_t* p) {
  return ((uint32_t{p[0]} & 0x7f) << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

std::string body_of(size_t n, char seed) {
  std::string b(n, '\0');
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<char>(seed + i % 23);
  return b;
}

// What the node sent on one stream id: its DATA payloads, padding removed, in order,
// up to its END_STREAM (a frame the input cuts contributes what nghttp2 would have
// handed on of it), and whether a whole frame carried END_STREAM. Frames are read on
// through anything: a superset of what nghttp2 acts on, which is what a prefix check
// needs; a response that completed must have taken all of it.
struct NodeStream {
  std::string data;
  bool ended = false;
};

std::map<uint32_t, NodeStream> node_streams(std::string_view in) {
  std::map<uint32_t, NodeStream> out;
  size_t pos = 0;
  while (in.size() - pos >= 9) {
    const auto* h = reinterpret_cast<const uint8_t*>(in.data() + pos);
    const uint32_t len = be24(h);
    const uint8_t type = h[3], flags = h[4];
    const uint32_t id = be31(h + 5);
    const size_t have = std::min<size_t>(len, in.size() - pos - 9);
    NodeStream& s = out[id];
    if (type == NGHTTP2_DATA && !s.ended) {
      const bool padded = (flags & NGHTTP2_FLAG_PADDED) != 0;
      if (!padded) {
        s.data.append(in.data() + pos + 9, have);
      } else if (have >= 1) {
        const size_t pad = h[9];
        if (pad + 1 <= len) {
          const size_t end = std::min<size_t>(have, len - pad);
          if (end > 1) s.data.append(in.data() + pos + 10, end - 1);
        }
      }
    }
    if (have < len) break;
    if ((type == NGHTTP2_DATA || type == NGHTTP2_HEADERS) && (flags & NGHTTP2_FLAG_END_STREAM)) s.ended = true;
    pos += 9 + len;
  }
  return out;
}

class Harness;

// One request, driven as proxy/exchange_h2.cc drives its stream.
struct Request final : h2::ClientStream::Handler {
  Harness* h = nullptr;
  std::string name;  // "get", "post", "grpc", "late"
  std::string method;
  bool te_trailers = false;
  std::string body;  // what it sends
  // Per attempt.
  int attempts = 0;
  std::string path;       // "/NAME?attempt=N": which attempt a HEADERS frame carries
  size_t offered = 0;     // body bytes given to the stream
  bool ended_body = false;  // the end given too
  bool body_wait = false;
  bool head_taken = false;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string received;   // body bytes taken
  size_t pinned = 0;
  uint64_t pinned_at_read = 0;  // the read after which bytes were first pinned
  bool took_last = false;       // took bytes when remote_ended() said they were the last
  bool trailers_seen = false;
  // Over every attempt.
  struct Attempt {
    std::string path;
    std::string received;  // body bytes taken
    bool complete = false;
  };
  std::vector<Attempt> tried;
  int ends = 0;
  std::string outcome;
  bool live = false;  // an attempt in flight: the handler holds a stream
  h2::ClientStream stream;

  void on_upstream_stream() override;
  void on_stream_timeout() override;
  void submit();
  void pump();
  void offer_body();
  void finish(std::string why);
};

class Harness final : private h2::ClientSession::Wire {
 public:
  explicit Harness(std::span<const uint8_t> input) {
    if (input.size() >= 2) {
      opt0_ = input[0];
      opt1_ = input[1];
      node_.assign(reinterpret_cast<const char*>(input.data()) + 2, input.size() - 2);
    }
  }

  std::string run();

  // For the requests.
  void fail(std::string what) {
    if (violation_.empty()) violation_ = std::move(what);
  }
  bool pin_mode() const { return (opt0_ & 0x08) != 0; }
  bool read_while_pinned() const { return (opt1_ & 0x10) != 0; }
  uint64_t reads() const { return reads_; }
  bool session_in_nghttp2() const { return session_ && session_->in_nghttp2(); }
  // The most a stream may hold not credited back: our window, or the protocol's initial
  // one until the node has taken our SETTINGS.
  uint32_t window() const { return std::max<uint32_t>(settings_.stream_window_bytes, 65535); }
  // Where a new attempt goes: this session while it takes streams (as
  // UpstreamPool::h2_place's `usable`); else another connection, beyond the harness.
  h2::ClientSession* place() {
    return session_ && !closing_ && session_->accepting() ? &*session_ : nullptr;
  }
  bool build_fields(const Request& r, std::vector<nghttp2_nv>& nv);
  bool empty_last_piece() const { return (opt1_ & 0x40) != 0; }

 private:
  // h2::ClientSession::Wire, as H2Upstream.
  int wire_send(uv_buf_t* buf) override {
    if (closing_) return UV_ECANCELED;  // H2Upstream: no connection under it any more
    ++writes_;
    const bool fail_now = (write_mode() == 3 && writes_ == 4);
    if (fail_now) return UV_EPIPE;
    if (write_mode() == 0 || write_mode() == 3) {
      sent_.append(buf->base, buf->len);
      return Transport::kWritten;
    }
    if (pending_) fail("the session wrote while its last write was still queued");
    pending_ = true;
    pending_buf_ = *buf;  // read at completion: the session must leave it alone until then
    return Transport::kQueued;
  }
  bool wire_pending() const override { return pending_; }
  Poller& wire_poller() override { return poller_; }
  void wire_close(std::string_view) override { close(); }
  void wire_capacity() override {
    ++capacity_calls_;
    // H2Upstream::wire_capacity: a node that sent GOAWAY and has no stream left is done.
    if (closing_ || !session_) return;
    if (session_->streams() == 0 && session_->goaway_received()) close();
  }
  void wire_arm(h2::ClientStream& s, uint32_t) override {
    if (closing_) return;
    armed_.insert(&s);
  }
  void wire_disarm(h2::ClientStream& s) override { armed_.erase(&s); }
  uint64_t wire_now_us() override { return ++clock_us_; }

  // H2Upstream::close, shut: the streams fail now, the session is freed at the end of
  // the turn (reaper), never under its own calls.
  void close() {
    if (closing_) return;
    closing_ = true;
    pending_ = false;  // the connection's queued write is dropped with it
    session_->on_closed("connection closed", 0);
    armed_.clear();
    poller_.defer(&reaper_);
  }
  void reap() { session_.reset(); }

  int write_mode() const { return opt0_ & 3; }
  void complete_write();
  void step();
  void actions_after_first_read();
  std::string check_output();
  std::string check_requests();

  uint8_t opt0_ = 0, opt1_ = 0;
  std::string node_;
  uv_loop_t loop_{};
  Poller poller_;
  h2::ClientSettings settings_;
  std::optional<h2::ClientSession> session_;
  DeferredCall<Harness, &Harness::reap> reaper_{*this};
  bool closing_ = false;
  bool pending_ = false;
  uv_buf_t pending_buf_{};
  int writes_ = 0;
  std::string sent_;
  std::set<h2::ClientStream*> armed_;
  uint64_t clock_us_ = 0;
  uint64_t capacity_calls_ = 0;
  uint64_t reads_ = 0;
  bool drain_all_ = false;  // the end: every client takes its pinned bytes
  std::vector<std::unique_ptr<Request>> requests_;
  std::string head_;   // the HTTP/1 head being re-framed
  std::string names_;  // request_fields_from_http1's lower-case names
  std::string violation_;
};

// ---------------------------------------------------------------------------------------
// A request

bool Harness::build_fields(const Request& r, std::vector<nghttp2_nv>& nv) {
  // The head as the rewrite builds it for a node (Via, X-Forwarded-*, the body's
  // framing), then the Exchange's re-framing (Exchange::open_stream).
  head_ = r.method + " " + r.path + " HTTP/1.1\r\nHost: node.test\r\nVia: 1.1 ringproxy\r\n"
          "X-Forwarded-For: 127.0.0.1\r\nConnection: keep-alive\r\n";
  if (!r.body.empty()) head_ += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  if (r.te_trailers) head_ += "TE: trailers\r\nContent-Type: application/grpc\r\n";
  head_ += "\r\n";
  return h2::request_fields_from_http1(head_, "http", {}, r.te_trailers, names_, nv);
}

void Request::submit() {
  h2::ClientSession* s = h->place();
  if (!s) {
    finish("went to another connection");
    return;
  }
  ++attempts;
  path = "/" + name + "?attempt=" + std::to_string(attempts);
  offered = 0;
  ended_body = false;
  body_wait = false;
  head_taken = false;
  status = 0;
  fields.clear();
  received.clear();
  pinned = 0;
  trailers_seen = false;
  took_last = false;
  std::vector<nghttp2_nv> nv;
  if (!h->build_fields(*this, nv)) {
    h->fail("request " + name + ": its head does not re-frame");
    finish("no head");
    return;
  }
  stream.set_handler(this);
  const int rc = s->submit(stream, nv, !body.empty());
  if (rc < 0) {
    finish("submit failed");
    return;
  }
  live = true;
  tried.push_back({path, std::string(), false});
  stream.arm_timer(kDeadlineMs);
  if (!body.empty()) offer_body();
}

void Request::offer_body() {
  // Two pieces for a long body (the second once the first is framed), one for a short;
  // or the end alone after the bytes.
  const size_t piece = body.size() > 100 ? body.size() / 2 : body.size();
  const size_t n = std::min(piece, body.size() - offered);
  const bool end = offered + n == body.size() && (n == 0 || !h->empty_last_piece());
  const int rc = stream.send_body(body.data() + offered, n, end);
  if (rc < 0) return;  // the stream failed: its handler hears of it
  offered += n;
  ended_body = end;
  body_wait = rc == Transport::kQueued;
}

void Request::on_upstream_stream() {
  if (h->session_in_nghttp2()) h->fail("request " + name + ": told of its stream from inside nghttp2's callbacks");
  if (!live) {
    h->fail("request " + name + ": told of a stream it let go of");
    return;
  }
  if (body_wait && stream.body_writable() && !stream.failed()) {
    body_wait = false;
    if (!ended_body) offer_body();
  }
  pump();
}

void Request::pump() {
  while (live) {
    if (pinned > 0 && !h->read_while_pinned()) return;  // the client's write first
    if (!head_taken) {
      if (stream.interim_ready()) {
        const int st = stream.interim_status();
        if (st < 100 || st > 199) h->fail("request " + name + ": an interim head with status " + std::to_string(st));
        stream.interim_taken();
        if (stream.interim_ready()) h->fail("request " + name + ": interim head still ready once taken");
        continue;
      }
      if (stream.head_ready()) {
        status = stream.status();
        if (status < 200 || status > 999) h->fail("request " + name + ": a final head with status " + std::to_string(status));
        for (const HeaderView& f : stream.fields()) fields.emplace_back(f.name, f.value);
        head_taken = true;
        continue;
      }
      if (!stream.trailers().empty()) h->fail("request " + name + ": trailers before a head");
      if (stream.body_size() > 0) h->fail("request " + name + ": body bytes before a head");
      if (stream.failed()) {
        if (stream.unprocessed() && attempts < kMaxAttempts) {
          stream.cancel();  // Exchange::release_upstream
          live = false;
          submit();  // the same node, another stream (Exchange::on_stream_failed)
          return;
        }
        finish("failed before its head: " + stream.cause());
        return;
      }
      if (stream.ended()) h->fail("request " + name + ": ended without a head");
      return;
    }
    // The head, once taken, stays what it was.
    if (stream.status() != status) h->fail("request " + name + ": its head changed status after it was taken");
    const auto now = stream.fields();
    if (now.size() != fields.size()) {
      h->fail("request " + name + ": its head changed after it was taken (a second head)");
    } else {
      for (size_t i = 0; i < now.size(); ++i) {
        if (now[i].name != fields[i].first || now[i].value != fields[i].second) {
          h->fail("request " + name + ": a field of its head changed after it was taken");
          break;
        }
      }
    }
    if (stream.interim_ready()) h->fail("request " + name + ": an interim head after the final one");
    if (!stream.trailers().empty()) trailers_seen = true;
    if (stream.body_size() + pinned > h->window()) {
      h->fail("request " + name + ": " + std::to_string(stream.body_size() + pinned) +
              " body bytes held, over the stream's window of " + std::to_string(h->window()));
    }
    if (stream.body_size() > 0) {
      const size_t n = stream.body_size();
      // The Exchange ends the client's stream with these bytes when this holds.
      if (took_last) h->fail("request " + name + ": body bytes after the ones remote_ended() said were the last");
      if (stream.remote_ended()) took_last = true;
      received.append(stream.body_data(), n);
      tried.back().received = received;
      const bool pin = h->pin_mode();
      stream.give(n, pin);
      if (pin) {
        if (pinned == 0) pinned_at_read = h->reads();
        pinned += n;
      }
      continue;
    }
    if (stream.ended()) {
      if (stream.failed()) h->fail("request " + name + ": ended and failed both");
      tried.back().complete = true;
      finish("complete");
      return;
    }
    if (stream.failed()) {
      finish("failed after its head: " + stream.cause());
      return;
    }
    return;  // more to come
  }
}

void Request::on_stream_timeout() {
  if (h->session_in_nghttp2()) h->fail("request " + name + ": a deadline heard from inside nghttp2's callbacks");
  if (!live) {
    h->fail("request " + name + ": a deadline of a stream it let go of");
    return;
  }
  finish("timed out");
}

void Request::finish(std::string why) {
  ++ends;
  if (ends > 1) h->fail("request " + name + " ended twice: " + outcome + ", then " + why);
  outcome = std::move(why);
  live = false;
  body_wait = false;
  stream.cancel();  // Exchange::release_upstream
  pinned = 0;
}

// ---------------------------------------------------------------------------------------
// The run

void Harness::complete_write() {
  if (!pending_) return;
  pending_ = false;
  sent_.append(pending_buf_.base, pending_buf_.len);
  const bool fail_now = write_mode() == 2 && writes_ == 3;
  if (session_ && !closing_) session_->on_write_done(fail_now ? UV_EPIPE : 0);
}

// One step: the loop's turns until nothing is deferred or queued, as the worker's loop
// runs them; queued writes complete. Pinned bytes are released (the client's write
// done) one read after they were pinned, so the node's next DATA arrives while they are
// held, as when a client reads slower than its node sends; at the end, all of them.
void Harness::step() {
  for (int i = 0; i < kMaxStepIterations; ++i) {
    uv_run(&loop_, UV_RUN_NOWAIT);
    if (pending_) {
      complete_write();
      continue;
    }
    bool unpinned = false;
    for (auto& r : requests_) {
      if (r->live && r->pinned > 0 && (drain_all_ || r->pinned_at_read < reads_)) {
        r->pinned = 0;
        r->stream.unpin();  // Exchange::on_downstream_drained
        r->pump();
        unpinned = true;
      }
    }
    if (!unpinned && poller_.deferred() == 0 && !pending_) return;
  }
}

void Harness::actions_after_first_read() {
  if (opt0_ & 0x10) {
    // Deadlines fire: each stream's handler hears once (H2Upstream::on_upstream_timeout).
    while (!armed_.empty()) {
      h2::ClientStream* s = *armed_.begin();
      armed_.erase(armed_.begin());
      s->timed_out();
    }
  }
  if ((opt0_ & 0x20) && requests_[0]->live) requests_[0]->finish("client went away");
  if ((opt0_ & 0x40) && session_ && !closing_) session_->shutdown();
  if (opt1_ & 0x08) {
    auto r = std::make_unique<Request>();
    r->h = this;
    r->name = "late";
    r->method = "GET";
    requests_.push_back(std::move(r));
    requests_.back()->submit();
  }
}

std::string Harness::run() {
  if (uv_loop_init(&loop_) != 0) return "harness: uv_loop_init failed";
  if (poller_.init(&loop_) != 0) {
    uv_loop_close(&loop_);
    return "harness: poller init failed";
  }
  if (opt1_ & 0x04) {
    settings_.stream_window_bytes = 1024;
    settings_.max_header_list_bytes = 256;
  }
  if (opt0_ & 0x80) settings_.assumed_peer_streams = 1;
  h2::ClientSession::Wire& wire = *this;  // a private base: named here, where it is reachable
  session_.emplace(wire, settings_);
  if (!session_->start()) {
    session_.reset();
    poller_.close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return "";  // out of memory: not a finding
  }
  const bool connect_first = (opt0_ & 0x04) != 0;
  if (connect_first) session_->on_connected();
  const struct {
    const char* name;
    const char* method;
    size_t body;
    bool te;
  } kRequests[] = {{"get", "GET", 0, false}, {"post", "POST", kPostBody, false}, {"grpc", "POST", 5, true}};
  for (const auto& k : kRequests) {
    auto r = std::make_unique<Request>();
    r->h = this;
    r->name = k.name;
    r->method = k.method;
    r->body = body_of(k.body, static_cast<char>('a' + requests_.size()));
    r->te_trailers = k.te;
    requests_.push_back(std::move(r));
    requests_.back()->submit();
  }
  if (!connect_first && session_ && !closing_) session_->on_connected();
  step();

  // The node's bytes, in reads.
  const size_t pieces = 1 + (opt1_ & 3);
  size_t from = 0;
  for (size_t i = 1; i <= pieces && session_ && !closing_; ++i) {
    const size_t to = node_.size() * i / pieces;
    if (to > from) {
      // H2Upstream::on_upstream_read: a false return or a close inside ends the reads.
      ++reads_;
      if (!session_->on_read(node_.data() + from, to - from)) break;
    }
    from = to;
    step();
    if (i == 1) {
      actions_after_first_read();
      step();
    }
  }
  if ((opt1_ & 0x20) && session_ && !closing_) {
    for (auto& r : requests_) {
      if (r->live) r->finish("client went away at the end");
    }
    step();
  }
  // The end: the connection goes (H2Upstream::on_upstream_read's EOF); every stream
  // still on it fails, and its handler hears.
  if (session_ && !closing_) close();
  step();
  // Requests still holding pinned bytes: their clients drain now.
  drain_all_ = true;
  step();
  if (session_) fail("the session was not freed after its connection closed");
  if (!armed_.empty()) fail(std::to_string(armed_.size()) + " deadlines left armed after the session ended");
  std::string out = check_requests();
  if (out.empty()) out = check_output();
  // The loop ends dry.
  requests_.clear();
  poller_.close();
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop_) != 0 && out.empty()) out = "the loop closed with handles still open";
  if (!violation_.empty()) return violation_;
  return out;
}

std::string Harness::check_requests() {
  static const bool verbose = std::getenv("RINGPROXY_FUZZ_VERBOSE") != nullptr;
  for (const auto& r : requests_) {
    if (verbose) {
      std::fprintf(stderr, "h2_client: %s: %d attempt(s), %s, status %d, %zu body bytes taken\n", r->name.c_str(),
                   r->attempts, r->outcome.c_str(), r->status, r->received.size());
    }
    if (r->ends != 1) return "request " + r->name + " ended " + std::to_string(r->ends) + " times";
    if (r->stream.attached()) return "request " + r->name + ": its stream is still on a session";
  }
  return "";
}

// ---------------------------------------------------------------------------------------
// What the session wrote

std::string Harness::check_output() {
  if (sent_.empty()) return "";
  if (sent_.size() > 65536 + 4 * node_.size()) {
    return "the session wrote " + std::to_string(sent_.size()) + " bytes for " + std::to_string(node_.size()) +
           " from the node";
  }
  const size_t preface = std::min(sent_.size(), kPreface.size());
  if (sent_.compare(0, preface, kPreface.substr(0, preface)) != 0) return "the session's first bytes are not the preface";
  std::map<std::string, const Request*> by_path;
  for (const auto& r : requests_) {
    for (const Request::Attempt& a : r->tried) by_path[a.path] = r.get();
  }
  nghttp2_hd_inflater* inflater = nullptr;
  if (nghttp2_hd_inflate_new(&inflater) != 0) return "";
  struct Ours {
    const Request* request = nullptr;
    std::string path, data;
    bool ended = false, reset = false;
  };
  std::map<uint32_t, Ours> streams;
  uint32_t last_opened = 0;
  std::string block;
  uint32_t block_stream = 0;
  bool block_end = false;
  std::string error;
  const auto decode = [&]() {
    std::string path;
    const auto* p = reinterpret_cast<const uint8_t*>(block.data());
    size_t left = block.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      const ssize_t n = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, p, left, 1);
      if (n < 0) {
        error = "a header block of ours does not decode";
        return;
      }
      p += n;
      left -= static_cast<size_t>(n);
      if (flags & NGHTTP2_HD_INFLATE_EMIT) {
        if (std::string_view(reinterpret_cast<const char*>(nv.name), nv.namelen) == ":path") {
          path.assign(reinterpret_cast<const char*>(nv.value), nv.valuelen);
        }
      }
      if (flags & NGHTTP2_HD_INFLATE_FINAL) {
        nghttp2_hd_inflate_end_headers(inflater);
        break;
      }
      if (n == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT)) {
        error = "a header block of ours ends short";
        return;
      }
    }
    auto it = by_path.find(path);
    if (it == by_path.end()) {
      error = "the session sent HEADERS for a request never submitted: " + path;
      return;
    }
    Ours& o = streams[block_stream];
    o.request = it->second;
    o.path = path;
    if (block_end) o.ended = true;
  };
  size_t pos = kPreface.size();
  bool first = true;
  while (error.empty() && sent_.size() >= pos + 9) {
    const auto* h = reinterpret_cast<const uint8_t*>(sent_.data() + pos);
    const uint32_t len = be24(h);
    const uint8_t type = h[3], flags = h[4];
    const uint32_t id = be31(h + 5);
    if (sent_.size() - pos - 9 < len) {
      error = "the session wrote a frame cut short";
      break;
    }
    const std::string_view payload(sent_.data() + pos + 9, len);
    const std::string at = " (frame at byte " + std::to_string(pos) + ", type " + std::to_string(type) + ", stream " +
                           std::to_string(id) + ")";
    pos += 9 + len;
    if (first && (type != NGHTTP2_SETTINGS || (flags & NGHTTP2_FLAG_ACK))) {
      error = "the session's first frame is not its SETTINGS" + at;
      break;
    }
    first = false;
    if (block_stream != 0 && (type != NGHTTP2_CONTINUATION || id != block_stream)) {
      error = "a header block of ours is interrupted" + at;
      break;
    }
    switch (type) {
      case NGHTTP2_HEADERS: {
        if (id % 2 == 0 || id <= last_opened) {
          error = "HEADERS on a stream id that is not a new odd one" + at;
          break;
        }
        last_opened = id;
        std::string_view b = payload;
        if (flags & NGHTTP2_FLAG_PADDED) {
          error = "padded HEADERS from the session" + at;  // nghttp2 pads only when asked
          break;
        }
        if (flags & NGHTTP2_FLAG_PRIORITY) b.remove_prefix(std::min<size_t>(5, b.size()));
        block.assign(b);
        block_stream = id;
        block_end = (flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
          decode();
          block_stream = 0;
        }
        break;
      }
      case NGHTTP2_CONTINUATION:
        if (block_stream == 0) {
          error = "CONTINUATION out of place" + at;
          break;
        }
        block.append(payload);
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
          decode();
          block_stream = 0;
        }
        break;
      case NGHTTP2_DATA: {
        auto it = streams.find(id);
        if (it == streams.end()) {
          error = "DATA on a stream the session never opened" + at;
          break;
        }
        if (it->second.ended || it->second.reset) {
          error = "DATA after the session ended or reset the stream" + at;
          break;
        }
        it->second.data.append(payload);
        if (flags & NGHTTP2_FLAG_END_STREAM) it->second.ended = true;
        break;
      }
      case NGHTTP2_RST_STREAM: {
        if (len != 4 || id == 0) {
          error = "a malformed RST_STREAM" + at;
          break;
        }
        auto it = streams.find(id);
        if (it != streams.end()) it->second.reset = true;
        break;
      }
      case NGHTTP2_PUSH_PROMISE:
        error = "PUSH_PROMISE from a client" + at;
        break;
      default:
        break;
    }
  }
  nghttp2_hd_inflate_del(inflater);
  if (!error.empty()) return error;
  for (const auto& [id, o] : streams) {
    const std::string& body = o.request->body;
    if (!body.starts_with(o.data)) {
      return "stream " + std::to_string(id) + " (" + o.path + ") carried " + std::to_string(o.data.size()) +
             " body bytes that are not its request's";
    }
    if (o.ended && !o.reset && o.data.size() != body.size()) {
      return "stream " + std::to_string(id) + " (" + o.path + ") ended its body after " + std::to_string(o.data.size()) +
             " of " + std::to_string(body.size()) + " bytes";
    }
  }
  // What each attempt took of the node's DATA on its stream id: a prefix of it, all of
  // it when the response completed.
  const std::map<uint32_t, NodeStream> from_node = node_streams(node_);
  std::map<std::string, uint32_t> id_of;
  for (const auto& [id, o] : streams) id_of[o.path] = id;
  for (const auto& r : requests_) {
    for (const Request::Attempt& a : r->tried) {
      if (a.received.empty() && !a.complete) continue;
      auto id = id_of.find(a.path);
      if (id == id_of.end()) return "request " + a.path + " has a response but its HEADERS never went";
      auto d = from_node.find(id->second);
      const std::string none;
      const std::string& sent = d == from_node.end() ? none : d->second.data;
      if (!sent.starts_with(a.received)) {
        return "request " + a.path + " took " + std::to_string(a.received.size()) +
               " body bytes that are not a prefix of the node's DATA on stream " + std::to_string(id->second);
      }
      if (a.complete && (d == from_node.end() || !d->second.ended)) {
        return "request " + a.path + " completed without the node's END_STREAM on stream " + std::to_string(id->second);
      }
      if (a.complete && a.received.size() != sent.size()) {
        return "request " + a.path + " completed with " + std::to_string(a.received.size()) + " of the " +
               std::to_string(sent.size()) + " body bytes the node sent on stream " + std::to_string(id->second);
      }
    }
  }
  return "";
}

}  // namespace

std::string h2_client(std::span<const uint8_t> input) { return Harness(input).run(); }

}  // namespace ringproxy::fuzz
