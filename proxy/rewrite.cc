#include "proxy/rewrite.h"

#include <algorithm>

#include <cassert>
#include <charconv>
#include <cstring>

#include "http/header_rules.h"

namespace ringproxy {
// Literal pieces are appended with their length known, not strlen.
using namespace std::string_view_literals;

namespace {

// Writes a head into a string sized once for the longest it can be, then trimmed to
// what was written: one size check per head instead of one per piece, and literal
// pieces copied with their length known at compile time (a few moves, no call). The
// heads are built on every request: 20-odd appends were a tenth of the proxy's
// user-space instructions.
// kSpans: also note where each part goes (HeadSpans), for requests to pools with an
// HTTP/2 node; without, the writer is what it was before spans existed (the HTTP/1
// path's instructions unchanged).
template <bool kSpans>
class BasicHeadWriter {
 public:
  // `max_fields`: the most field lines written, when spans are kept (sized once, as out).
  BasicHeadWriter(std::string& out, size_t max, HeadSpans* spans = nullptr, size_t max_fields = 0)
      : out_(out), spans_(spans) {
    out.resize(max);  // the capacity stays from the last request: no allocation once warm
    p_ = out.data();
    if constexpr (kSpans) {
      spans->fields.resize(max_fields);
      span_ = spans->fields.data();
    }
  }
  ~BasicHeadWriter() {
    assert(p_ <= out_.data() + out_.size());  // the bound the caller computed held
    out_.resize(static_cast<size_t>(p_ - out_.data()));
    if constexpr (kSpans) {
      assert(span_ <= spans_->fields.data() + spans_->fields.size());
      spans_->fields.resize(static_cast<size_t>(span_ - spans_->fields.data()));
    }
  }
  BasicHeadWriter(const BasicHeadWriter&) = delete;
  BasicHeadWriter& operator=(const BasicHeadWriter&) = delete;

  template <size_t N>
  void lit(const char (&s)[N]) {
    std::memcpy(p_, s, N - 1);
    p_ += N - 1;
  }
  void put(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void put(char c) { *p_++ = c; }
  void field(std::string_view name, std::string_view value) {
    begin_field(name);
    put(value);
    end_field();
  }
  // A field line whose value is written piece by piece between the two calls.
  void begin_field(std::string_view name) {
    if constexpr (kSpans) name_at_ = at();
    put(name);
    lit(": ");
    if constexpr (kSpans) value_at_ = at();
  }
  void end_field() {
    if constexpr (kSpans) *span_++ = {{name_at_, value_at_ - 2 - name_at_}, {value_at_, at() - value_at_}};
    lit("\r\n");
  }
  uint32_t at() const { return static_cast<uint32_t>(p_ - out_.data()); }

 private:
  std::string& out_;
  HeadSpans* spans_;
  std::pair<HeadSpans::Span, HeadSpans::Span>* span_ = nullptr;
  char* p_;
  uint32_t name_at_ = 0;
  uint32_t value_at_ = 0;
};
using HeadWriter = BasicHeadWriter<false>;

// What a field line takes at most: name, ": ", value, CRLF.
size_t field_size(const HeaderView& hv) { return hv.name.size() + hv.value.size() + 4; }

template <bool kSpans>
bool write_request_head(const RequestRewrite& r, std::string& out, HeadSpans* spans) {
  const ConnectionOptions connection = ConnectionOptions::of(r.fields);
  const bool add_via = !r.via.empty();  // else the client's Via lines go on untouched
  // The longest the head can be: every field once as received, the lists of Via and
  // X-Forwarded-For once more (folded), and ours.
  size_t max = r.method.size() + r.target.size() + r.via.size() + r.client_ip.size() + r.subject_header.size() +
               r.client_subject.size() + 160;
  for (const HeaderView& hv : r.fields) max += 2 * field_size(hv);
  // Field lines: at most every field once, and ours (Max-Forwards, Via, X-Forwarded-For,
  // -Proto, -Host, the subject, Connection, Upgrade).
  BasicHeadWriter<kSpans> h(out, max, spans, r.fields.size() + 8);
  h.put(r.method);
  h.put(' ');
  const uint32_t target_at = h.at();
  h.put(r.target);
  if constexpr (kSpans) {
    spans->method = {0, static_cast<uint32_t>(r.method.size())};
    spans->target = {target_at, static_cast<uint32_t>(r.target.size())};
  }
  // RFC 9112 2.3: an intermediary sends its own version, whatever the client's; the
  // rules of a 1.0 client (no chunked body, no 1xx, keep-alive only when asked for and
  // framed by a length) are kept on the client's side (build_response_head).
  h.lit(" HTTP/1.1\r\n");
  std::string_view host, upgrade_value;
  bool have_xff = false, have_via = false;
  bool host_missing = true;
  for (const HeaderView& hv : r.fields) {
    if (iequals(hv.name, "upgrade")) upgrade_value = hv.value;
    if (is_hop_by_hop(hv.name, connection) || iequals(hv.name, "proxy-authorization")) {
      if (r.te_trailers && hv.name.size() == 2 && iequals(hv.name, "te") && has_token(hv.value, "trailers")) {
        *r.te_trailers = true;
      }
      continue;
    }
    // Several X-Forwarded-For or Via lines fold into one list each, ours last.
    if (iequals(hv.name, "x-forwarded-for")) {
      have_xff = true;
      continue;
    }
    if (add_via && iequals(hv.name, "via")) {
      have_via = true;
      continue;
    }
    if (iequals(hv.name, "x-forwarded-proto") || iequals(hv.name, "x-forwarded-host")) continue;
    if (!r.subject_headers.empty() && std::any_of(r.subject_headers.begin(), r.subject_headers.end(),
                                                  [&](const std::string& name) { return iequals(hv.name, name); })) {
      continue;
    }
    if (!r.subject_header.empty() && iequals(hv.name, r.subject_header)) continue;
    if (r.max_forwards_set && iequals(hv.name, "max-forwards")) continue;
    if (iequals(hv.name, "host")) {
      host = hv.value;
      host_missing = false;
    }
    h.field(hv.name, hv.value);
  }
  // Every line's non-empty members, in order, then ours.
  const auto append_list = [&](std::string_view name) {
    for (const HeaderView& hv : r.fields) {
      if (iequals(hv.name, name) && hv.value.find_first_not_of(" \t") != std::string_view::npos) {
        h.put(hv.value);
        h.lit(", ");
      }
    }
  };
  if (r.max_forwards_set) {
    char digits[16];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, r.max_forwards);
    h.field("Max-Forwards", std::string_view(digits, static_cast<size_t>(end - digits)));
  }
  if (add_via) {
    // RFC 9110 7.6.3: a gateway sends Via in each inbound request, the protocol it
    // was received in then its name, after the members already there.
    h.begin_field("Via");
    if (have_via) append_list("via");
    if (r.client_h2) {
      h.lit("2 ");  // RFC 9110 7.6.3: HTTP/2's received-protocol is "2"
    } else if (r.client_http10) {
      h.lit("1.0 ");
    } else {
      h.lit("1.1 ");
    }
    h.put(r.via);
    h.end_field();
  }
  h.begin_field("X-Forwarded-For");
  if (have_xff) append_list("x-forwarded-for");
  h.put(r.client_ip);
  if constexpr (kSpans) {
    h.end_field();
    h.field("X-Forwarded-Proto", r.https ? "https"sv : "http"sv);
  } else if (r.https) {  // one copy for the end of a line and the next
    h.lit("\r\nX-Forwarded-Proto: https\r\n");
  } else {
    h.lit("\r\nX-Forwarded-Proto: http\r\n");
  }
  if (!host.empty()) h.field("X-Forwarded-Host", host);
  if (!r.subject_header.empty() && !r.client_subject.empty()) h.field(r.subject_header, r.client_subject);
  if (r.upgrade) {
    h.field("Connection", "Upgrade"sv);
    h.field("Upgrade", upgrade_value);
  }
  h.lit("\r\n");
  return !host_missing;
}

}  // namespace

bool build_request_head(const RequestRewrite& r, std::string& out, HeadSpans* spans) {
  return spans ? write_request_head<true>(r, out, spans) : write_request_head<false>(r, out, nullptr);
}

void build_response_head(const ResponseRewrite& r, std::string& out) {
  const ConnectionOptions connection = ConnectionOptions::of(r.fields);
  size_t max = r.reason.size() + 64;
  for (const HeaderView& hv : r.fields) max += field_size(hv);
  HeadWriter h(out, max);
  // RFC 9110 6.2: our own version, to 1.0 clients too (whose rules apply all the same).
  h.lit("HTTP/1.1 ");
  // 100 to 999 here (llhttp stops at 999): three digits, whatever leading zeros the
  // backend wrote.
  h.put(static_cast<char>('0' + r.status / 100 % 10));
  h.put(static_cast<char>('0' + r.status / 10 % 10));
  h.put(static_cast<char>('0' + r.status % 10));
  h.put(' ');
  h.put(r.reason);
  h.lit("\r\n");
  std::string_view upgrade_value;
  for (const HeaderView& hv : r.fields) {
    if (iequals(hv.name, "upgrade")) upgrade_value = hv.value;
    if (is_hop_by_hop(hv.name, connection)) continue;
    // A 1.0 client gets no transfer coding, so no trailers either.
    if (r.client_http10 && (iequals(hv.name, "transfer-encoding") || iequals(hv.name, "trailer"))) continue;
    // No framing fields on a response that has no content, 101 included (RFC 9110 8.6:
    // no Content-Length in a 1xx or 204; RFC 9112 6.1: no Transfer-Encoding either). A
    // client would read a chunked 101's tunnel as chunks (fuzz_response found it).
    if ((r.status < 200 || r.status == 204) &&
        (iequals(hv.name, "content-length") || iequals(hv.name, "transfer-encoding"))) {
      continue;
    }
    h.field(hv.name, hv.value);
  }
  if (r.tunnel) {
    h.lit("Connection: Upgrade\r\nUpgrade: ");
    h.put(upgrade_value);
    h.lit("\r\n");
  } else if (!r.interim) {
    if (r.close_after) {
      h.lit("Connection: close\r\n");
    } else if (r.client_http10) {
      h.lit("Connection: keep-alive\r\n");
    }
  }
  h.lit("\r\n");
}

}  // namespace ringproxy
