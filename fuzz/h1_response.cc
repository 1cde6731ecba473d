// fuzz::h1_response (targets.h): h1::ResponseParser alone, no socket, no loop. Its own
// file because it needs none of the harnesses of proxy_harness.cc and targets.cc (a
// fuzz binary of it builds from http/ alone).
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/targets.h"
#include "http/h1/response_parser.h"

namespace ringproxy::fuzz {
namespace {

using h1::ResponseParser;
using Step = ResponseParser::Step;

// What a caller saw of one response.
struct Trace {
  std::vector<int> heads;  // each head's status, interim ones included
  std::string body;        // the body bytes handed out, in order
  Step last = Step::kMore;
};

// xorshift32 (Marsaglia 2003): the read sizes, reproducible from the input alone.
uint32_t next(uint32_t& s) {
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}

bool inside(const char* p, size_t n, IoBuffer& in) { return p >= in.data() && p + n <= in.data() + in.end(); }

// Feeds `wire` as reads into an IoBuffer (into its free space, the buffer cleared when
// full and consumed, as net/tcp_transport.cc does), executing after each read as the
// proxy does. `seed` 0: each read as large as fits; else sizes from xorshift32. Returns
// a broken invariant, or "".
std::string feed(std::string_view wire, bool head_request, bool decode, bool eof, uint32_t max_head, uint32_t seed,
                 Trace& t) {
  ResponseParser p(max_head);
  p.start(head_request);
  IoBuffer in;
  in.attach(std::make_unique<char[]>(IoBuffer::kSize), IoBuffer::kSize);
  size_t pos = 0;
  bool decoding = false;
  for (;;) {
    if (pos < wire.size()) {
      if (in.free_space() == 0 && in.size() == 0) in.clear();
      size_t n = std::min(in.free_space(), wire.size() - pos);
      if (seed != 0) n = std::min<size_t>(n, next(seed) % 4 == 0 ? 1 : 1 + next(seed) % 700);
      if (n == 0) return "no room to read into after kMore or kBody";
      std::memcpy(in.end_ptr(), wire.data() + pos, n);
      in.produced(n);
      pos += n;
    }
    for (bool read_more = false; !read_more;) {
      char* start = in.begin_ptr();
      const size_t before = in.size();
      const size_t begin = in.begin();
      const ResponseParser::Result r = p.execute(in);
      t.last = r.step;
      if (in.begin() < begin) return "execute moved the buffer's begin back";
      const size_t consumed = in.begin() - begin;
      if (consumed > before) return "consumed more than the input";
      switch (r.step) {
        case Step::kError:
          if (p.error_reason().empty()) return "kError without a reason";
          return "";
        case Step::kMore:
          if (in.size() != 0) return "kMore with input left";
          read_more = true;
          break;
        case Step::kHead:
          if (p.status() < 100) return "a head with a status below 100";
          if (p.interim() != (p.status() < 200 && p.status() != 101)) return "interim() and the status disagree";
          if (p.interim() && !p.bodiless()) return "an interim head with a body";
          if (!inside(p.reason().data(), p.reason().size(), in)) return "the reason outside the buffer";
          for (const HeaderView& f : p.fields()) {
            if (!inside(f.name.data(), f.name.size(), in) || !inside(f.value.data(), f.value.size(), in)) {
              return "a field outside the buffer";
            }
            if (f.value.find_first_of("\r\n") != std::string_view::npos) return "a field value with CR or LF";
          }
          t.heads.push_back(p.status());
          if (!p.interim() && decode) {
            p.set_decode_chunked(true);
            decoding = p.chunked() && !p.bodiless();
          }
          break;
        case Step::kBody:
        case Step::kDone:
          if (r.out != start) return "body bytes handed out from elsewhere than where they were read";
          if (r.out_len > consumed) return "more body bytes out than consumed";
          if (!decoding && r.out_len != consumed) return "pass-through handed out other than what it consumed";
          if (!decoding && std::memcmp(r.out, wire.data() + (pos - before), r.out_len) != 0) {
            return "pass-through changed the bytes";
          }
          t.body.append(r.out, r.out_len);
          if (r.step == Step::kDone) {
            if (!p.bodiless() && !p.has_length()) return "a close-delimited body completed without the close";
            if (p.bodiless() && !t.body.empty()) return "a bodiless response handed out body bytes";
            return "";
          }
          if (in.size() != 0) return "kBody with input left";
          read_more = true;
          break;
      }
    }
    if (pos == wire.size()) {
      if (eof) {
        t.last = p.finish();
        if (t.last == Step::kError && p.error_reason().empty()) return "finish: kError without a reason";
        if (t.last == Step::kDone && p.keep_alive()) return "a response ended by the close kept alive";
        if (t.last != Step::kDone && t.last != Step::kError) return "finish returned neither kDone nor kError";
      }
      return "";
    }
  }
}

}  // namespace

std::string h1_response(std::span<const uint8_t> input) {
  if (input.size() < 3) return "";
  const uint8_t flags = input[0];
  const uint32_t seed = (uint32_t{input[1]} << 8 | input[2]) | 1u;  // never 0: split
  const std::string_view wire(reinterpret_cast<const char*>(input.data()) + 3, input.size() - 3);
  const bool head_request = flags & 1, decode = flags & 2, eof = flags & 4;
  const uint32_t max_head = flags & 8 ? 256 : 64 * 1024;

  Trace whole, split;
  if (std::string e = feed(wire, head_request, decode, eof, max_head, 0, whole); !e.empty()) return "whole: " + e;
  if (std::string e = feed(wire, head_request, decode, eof, max_head, seed, split); !e.empty()) return "split: " + e;
  // The reads' sizes change nothing but how the bytes come out (the same ones).
  if (whole.heads != split.heads) return "the heads differ with the reads' sizes";
  // kBody and kMore both mean "more to come": which one comes last depends on where
  // the reads end.
  const auto outcome = [](Step s) { return s == Step::kBody ? Step::kMore : s; };
  if (outcome(whole.last) != outcome(split.last)) return "the outcome differs with the reads' sizes";
  if (whole.last != Step::kError && whole.body != split.body) return "the body differs with the reads' sizes";
  return "";
}

}  // namespace ringproxy::fuzz
