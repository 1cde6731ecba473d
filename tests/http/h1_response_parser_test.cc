// h1::ResponseParser on its own: no socket, bytes fed as a connection reads them (into
// the free space of the buffer, which is cleared only when full and consumed, as
// net/tcp_transport.cc does). The proxy's side of the same behaviour is in
// tests/integration/proxy_test.cc and tests/conformance.
#include "http/h1/response_parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

// Counts allocations, for NoAllocationPerResponseOnceWarm: replaces the global
// operator new of this binary (http_test), counting only.
static std::atomic<size_t> g_allocations{0};
void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// GCC takes the free() here for a mismatch with `new` where it inlines both; it pairs
// with the malloc() above.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace ringproxy::h1 {
namespace {

using Step = ResponseParser::Step;

IoBuffer make_buffer() {
  IoBuffer in;
  in.attach(std::make_unique<char[]>(IoBuffer::kSize), IoBuffer::kSize);
  return in;
}

// One read: up to `piece` bytes of `src` into the buffer's free space. Returns how many.
size_t read_some(IoBuffer& in, std::string_view src, size_t piece) {
  if (in.free_space() == 0 && in.size() == 0) in.clear();  // TcpTransport::on_alloc
  const size_t n = std::min({in.free_space(), piece, src.size()});
  std::memcpy(in.end_ptr(), src.data(), n);
  in.produced(n);
  return n;
}

// What a caller saw of one response.
struct Seen {
  std::vector<int> heads;    // the status of each head, interim ones included
  std::string body;          // the body bytes handed out, in order
  Step last = Step::kMore;   // kDone, kError, or what the last execute returned
  std::string error;
  bool keep_alive = false;
  std::string left;          // bytes left in the buffer at kDone
};

// Reads `wire` in reads of `piece` bytes, executing after each as the proxy does (again
// at once after a head). `eof`: the server closes after the last byte (finish()).
Seen run(ResponseParser& p, std::string_view wire, size_t piece, bool head_request = false, bool decode = false,
        bool eof = false) {
  IoBuffer in = make_buffer();
  p.start(head_request);
  Seen r;
  size_t pos = 0;
  for (;;) {
    if (pos < wire.size()) {
      const size_t n = read_some(in, wire.substr(pos), piece);
      EXPECT_GT(n, 0u) << "no room to read into";
      if (n == 0) return r;
      pos += n;
    }
    bool read_more = false;
    while (!read_more) {
      const ResponseParser::Result res = p.execute(in);
      r.last = res.step;
      switch (res.step) {
        case Step::kMore:
          read_more = true;
          break;
        case Step::kHead:
          r.heads.push_back(p.status());
          if (!p.interim() && decode) p.set_decode_chunked(true);
          break;
        case Step::kBody:
          EXPECT_EQ(in.size(), 0u);
          r.body.append(res.out, res.out_len);
          read_more = true;
          break;
        case Step::kDone:
          r.body.append(res.out, res.out_len);
          r.keep_alive = p.keep_alive();
          r.left.assign(in.begin_ptr(), in.size());
          return r;
        case Step::kError:
          r.error = p.error_reason();
          return r;
      }
    }
    if (pos == wire.size()) {
      if (eof) {
        r.last = p.finish();
        if (r.last == Step::kError) r.error = p.error_reason();
        r.keep_alive = p.keep_alive();
      }
      return r;
    }
  }
}

TEST(H1ResponseParser, ReadsAHeadAndItsFields) {
  ResponseParser p;
  IoBuffer in = make_buffer();
  p.start(false);
  const std::string_view wire = "HTTP/1.1 404 Not Found\r\nServer: s\r\nX-Empty: \r\nContent-Length: 0\r\n\r\n";
  std::memcpy(in.end_ptr(), wire.data(), wire.size());
  in.produced(wire.size());
  ASSERT_EQ(p.execute(in).step, Step::kHead);
  EXPECT_EQ(p.status(), 404);
  EXPECT_EQ(p.reason(), "Not Found");
  ASSERT_EQ(p.fields().size(), 3u);
  EXPECT_EQ(p.fields()[0].name, "Server");
  EXPECT_EQ(p.fields()[0].value, "s");
  EXPECT_EQ(p.fields()[1].value, "");
  EXPECT_FALSE(p.interim());
  EXPECT_FALSE(p.bodiless());
  EXPECT_FALSE(p.chunked());
  EXPECT_TRUE(p.has_length());
  EXPECT_FALSE(p.http10());
  EXPECT_EQ(in.size(), 0u);
  // Content-Length: 0 completes on the next execute, with no new bytes.
  const ResponseParser::Result done = p.execute(in);
  EXPECT_EQ(done.step, Step::kDone);
  EXPECT_EQ(done.out_len, 0u);
  EXPECT_TRUE(p.keep_alive());
}

TEST(H1ResponseParser, AHeadSplitAtEveryByteReadsTheSame) {
  const std::string wire =
      "HTTP/1.1 200 Fine Thanks\r\nContent-Type: text/plain\r\nX-Long-Name: some value\r\nContent-Length: 3\r\n\r\nabc";
  ResponseParser p;  // one parser for every run: start() resets it
  for (size_t piece : {size_t{1}, size_t{2}, size_t{7}}) {
    const Seen r = run(p, wire, piece);
    ASSERT_EQ(r.last, Step::kDone) << piece << " " << r.error;
    EXPECT_EQ(r.heads, std::vector<int>{200});
    EXPECT_EQ(r.body, "abc");
  }
  // And the head's views, once complete, after a byte-by-byte read.
  IoBuffer in = make_buffer();
  p.start(false);
  for (size_t i = 0; i < wire.size(); ++i) {
    read_some(in, std::string_view(wire).substr(i), 1);
    const Step s = p.execute(in).step;
    if (s == Step::kHead) break;
    ASSERT_EQ(s, Step::kMore) << i;
  }
  EXPECT_EQ(p.reason(), "Fine Thanks");
  ASSERT_EQ(p.fields().size(), 3u);
  EXPECT_EQ(p.fields()[1].name, "X-Long-Name");
  EXPECT_EQ(p.fields()[1].value, "some value");
}

TEST(H1ResponseParser, AHeadLargerThanTheBufferGrowsIt) {
  std::string wire = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 400; ++i) wire += "X-Field-" + std::to_string(i) + ": " + std::string(40, 'v') + "\r\n";
  wire += "Content-Length: 1\r\n\r\nz";
  ASSERT_GT(wire.size(), IoBuffer::kSize);
  ResponseParser p;
  const Seen r = run(p, wire, 4096);
  ASSERT_EQ(r.last, Step::kDone) << r.error;
  EXPECT_EQ(r.body, "z");
}

TEST(H1ResponseParser, AHeadOverTheLimitIsRefused) {
  std::string wire = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 100; ++i) wire += "X-Field-" + std::to_string(i) + ": " + std::string(40, 'v') + "\r\n";
  wire += "\r\n";
  ResponseParser small(2048);
  for (size_t piece : {size_t{1}, size_t{512}, wire.size()}) {
    const Seen r = run(small, wire, piece);
    EXPECT_EQ(r.last, Step::kError) << piece;
    EXPECT_EQ(r.error, "response head too large") << piece;
  }
  // The default limit, 64 KiB, with one long field.
  ResponseParser p;
  const std::string big = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70 * 1024, 'b') + "\r\n\r\n";
  const Seen r = run(p, big, 16 * 1024);
  EXPECT_EQ(r.last, Step::kError);
  EXPECT_EQ(r.error, "response head too large");
}

TEST(H1ResponseParser, ObsFoldIsRefused) {
  ResponseParser p;
  for (size_t piece : {size_t{1}, size_t{100}}) {
    const Seen r = run(p, "HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n", piece);
    EXPECT_EQ(r.last, Step::kError) << piece;
    EXPECT_EQ(r.error, "malformed response: obs-fold (RFC 9112 5.2)") << piece;
  }
  // In trailers too.
  const Seen t = run(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: a\r\n b\r\n\r\n", 100);
  EXPECT_EQ(t.last, Step::kError);
  EXPECT_EQ(t.error, "malformed response: obs-fold (RFC 9112 5.2)");
}

TEST(H1ResponseParser, AStatusBelow100IsRefused) {
  ResponseParser p;
  for (std::string_view wire : {"HTTP/1.1 099 Low\r\n\r\n", "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n"}) {
    const Seen r = run(p, wire, 100);
    EXPECT_EQ(r.last, Step::kError) << wire;
    EXPECT_EQ(r.error, "malformed response: status code below 100") << wire;
  }
  // Above 599 is the caller's to judge.
  const Seen high = run(p, "HTTP/1.1 799 High\r\nContent-Length: 0\r\n\r\n", 100);
  EXPECT_EQ(high.last, Step::kDone);
  EXPECT_EQ(high.heads, std::vector<int>{799});
}

TEST(H1ResponseParser, InterimHeadsThenTheFinalOne) {
  const std::string wire =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
  ResponseParser p;
  for (size_t piece = 1; piece <= wire.size(); piece += (piece < 8 ? 1 : 17)) {
    const Seen r = run(p, wire, piece);
    ASSERT_EQ(r.last, Step::kDone) << piece << " " << r.error;
    EXPECT_EQ(r.heads, (std::vector<int>{100, 103, 200})) << piece;
    EXPECT_EQ(r.body, "hi") << piece;
    EXPECT_TRUE(r.keep_alive);
  }
  // Each interim head is viewed on its own.
  IoBuffer in = make_buffer();
  p.start(false);
  std::memcpy(in.end_ptr(), wire.data(), wire.size());
  in.produced(wire.size());
  ASSERT_EQ(p.execute(in).step, Step::kHead);
  EXPECT_TRUE(p.interim());
  EXPECT_TRUE(p.bodiless());
  EXPECT_TRUE(p.fields().empty());
  ASSERT_EQ(p.execute(in).step, Step::kHead);
  EXPECT_EQ(p.status(), 103);
  EXPECT_EQ(p.reason(), "Early Hints");
  ASSERT_EQ(p.fields().size(), 1u);
  EXPECT_EQ(p.fields()[0].value, "</style.css>; rel=preload");
  ASSERT_EQ(p.execute(in).step, Step::kHead);
  EXPECT_EQ(p.status(), 200);
  EXPECT_FALSE(p.interim());
  EXPECT_FALSE(p.bodiless());
  EXPECT_EQ(p.fields().size(), 1u);
}

TEST(H1ResponseParser, SwitchingProtocolsEndsAtItsHead) {
  ResponseParser p;
  const Seen r =
      run(p, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello", 1000);
  ASSERT_EQ(r.last, Step::kDone) << r.error;
  EXPECT_EQ(r.heads, std::vector<int>{101});
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.left, "\x81\x05hello");  // the new protocol's bytes, not read
  IoBuffer in = make_buffer();
  p.start(false);
  const std::string_view wire = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
  std::memcpy(in.end_ptr(), wire.data(), wire.size());
  in.produced(wire.size());
  ASSERT_EQ(p.execute(in).step, Step::kHead);
  EXPECT_FALSE(p.interim());
  EXPECT_TRUE(p.bodiless());
}

TEST(H1ResponseParser, AResponseToHeadHasNoBody) {
  ResponseParser p;
  for (std::string_view framing : {"Content-Length: 10", "Transfer-Encoding: chunked"}) {
    const std::string wire = "HTTP/1.1 200 OK\r\n" + std::string(framing) + "\r\n\r\n";
    const Seen r = run(p, wire, 1000, /*head_request=*/true);
    ASSERT_EQ(r.last, Step::kDone) << framing << " " << r.error;
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.left, "");
    EXPECT_TRUE(r.keep_alive) << framing;
  }
}

TEST(H1ResponseParser, NoContentAndNotModifiedHaveNoBody) {
  ResponseParser p;
  for (int status : {204, 304}) {
    // What follows the head is not its body (a Content-Length here describes the
    // representation, RFC 9110 8.6): it stays in the buffer.
    const std::string wire = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: 5\r\n\r\nHTTP/";
    const Seen r = run(p, wire, 1000);
    ASSERT_EQ(r.last, Step::kDone) << status << " " << r.error;
    EXPECT_EQ(r.heads, std::vector<int>{status});
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.left, "HTTP/");
    EXPECT_TRUE(r.keep_alive);
  }
}

TEST(H1ResponseParser, AContentLengthBodyInPieces) {
  const std::string body = "0123456789abcdefghijklmnopqrstuvwxyz";
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ResponseParser p;
  for (size_t piece : {size_t{1}, size_t{3}, size_t{10}, wire.size()}) {
    const Seen r = run(p, wire, piece);
    ASSERT_EQ(r.last, Step::kDone) << piece << " " << r.error;
    EXPECT_EQ(r.body, body) << piece;
    EXPECT_TRUE(r.keep_alive);
  }
}

TEST(H1ResponseParser, ABodyLargerThanTheBufferComesInPieces) {
  const std::string body(100 * 1024, 'q');
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ResponseParser p;
  const Seen r = run(p, wire, 64 * 1024);
  ASSERT_EQ(r.last, Step::kDone) << r.error;
  EXPECT_EQ(r.body, body);
}

constexpr std::string_view kChunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
constexpr std::string_view kChunkedBody =
    "5;name=value\r\nhello\r\n"
    "1\r\n \r\n"
    "b;a=\"quoted ext\";b\r\nworld, and \r\n"
    "3\r\nmor\r\n"
    "0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n";
constexpr std::string_view kDecoded = "hello world, and mor";

// Decoded for an HTTP/2 client, the trailers are kept (copied: the trailer section may
// span reads whose bytes are consumed) and given after kDone.
TEST(H1ResponseParser, DecodedTrailersAreKeptWhenAsked) {
  const std::string_view body = "5\r\nhello\r\n0\r\nX-Trailer: done\r\nGrpc-Status: 0\r\n\r\n";
  ResponseParser p;
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    IoBuffer in = make_buffer();
    p.start(false);
    read_some(in, kChunkedHead, kChunkedHead.size());
    ASSERT_EQ(p.execute(in).step, Step::kHead);
    p.set_decode_chunked(true, /*keep_trailers=*/true);
    std::string out;
    Step last = Step::kMore;
    for (std::string_view part : {body.substr(0, cut), body.substr(cut)}) {
      read_some(in, part, part.size());
      const ResponseParser::Result res = p.execute(in);
      last = res.step;
      ASSERT_NE(res.step, Step::kError) << cut << " " << p.error_reason();
      out.append(res.out, res.out_len);
    }
    EXPECT_EQ(last, Step::kDone) << cut;
    EXPECT_EQ(out, "hello") << cut;
    const auto t = p.trailers();
    ASSERT_EQ(t.size(), 2u) << cut;
    EXPECT_EQ(t[0].name, "X-Trailer");
    EXPECT_EQ(t[0].value, "done");
    EXPECT_EQ(t[1].name, "Grpc-Status");
    EXPECT_EQ(t[1].value, "0");
  }
  // Head, body and trailers in one read.
  {
    IoBuffer in = make_buffer();
    p.start(false);
    const std::string wire = std::string(kChunkedHead) + std::string(body);
    read_some(in, wire, wire.size());
    ASSERT_EQ(p.execute(in).step, Step::kHead);
    p.set_decode_chunked(true, /*keep_trailers=*/true);
    ASSERT_EQ(p.execute(in).step, Step::kDone);
    EXPECT_EQ(p.trailers().size(), 2u);
  }
  // Not asked: none kept.
  IoBuffer in = make_buffer();
  p.start(false);
  read_some(in, kChunkedHead, kChunkedHead.size());
  ASSERT_EQ(p.execute(in).step, Step::kHead);
  p.set_decode_chunked(true);
  read_some(in, body, body.size());
  ASSERT_EQ(p.execute(in).step, Step::kDone);
  EXPECT_TRUE(p.trailers().empty());
}

TEST(H1ResponseParser, AChunkedBodyPassesThroughAsFramed) {
  const std::string wire = std::string(kChunkedHead) + std::string(kChunkedBody);
  ResponseParser p;
  for (size_t piece : {size_t{1}, size_t{4}, wire.size()}) {
    const Seen r = run(p, wire, piece);
    ASSERT_EQ(r.last, Step::kDone) << piece << " " << r.error;
    EXPECT_EQ(r.body, kChunkedBody) << piece;
    EXPECT_TRUE(r.keep_alive);
  }
}

TEST(H1ResponseParser, AChunkedBodyDecodedInPlaceSplitAnywhere) {
  ResponseParser p;
  // The body in two reads, cut at every byte, then read byte by byte.
  for (size_t cut = 0; cut <= kChunkedBody.size(); ++cut) {
    IoBuffer in = make_buffer();
    p.start(false);
    read_some(in, kChunkedHead, kChunkedHead.size());
    ASSERT_EQ(p.execute(in).step, Step::kHead);
    EXPECT_TRUE(p.chunked());
    p.set_decode_chunked(true);
    std::string out;
    Step last = Step::kMore;
    for (std::string_view part : {kChunkedBody.substr(0, cut), kChunkedBody.substr(cut)}) {
      read_some(in, part, part.size());
      const ResponseParser::Result res = p.execute(in);
      last = res.step;
      ASSERT_NE(res.step, Step::kError) << cut << " " << p.error_reason();
      out.append(res.out, res.out_len);
      EXPECT_LE(res.out_len, part.size());
    }
    EXPECT_EQ(last, Step::kDone) << cut;
    EXPECT_EQ(out, kDecoded) << cut;
    EXPECT_EQ(in.size(), 0u);
  }
  const std::string wire = std::string(kChunkedHead) + std::string(kChunkedBody);
  for (size_t piece : {size_t{1}, size_t{2}, size_t{3}}) {
    const Seen r = run(p, wire, piece, false, /*decode=*/true);
    ASSERT_EQ(r.last, Step::kDone) << piece << " " << r.error;
    EXPECT_EQ(r.body, kDecoded) << piece;
  }
}

TEST(H1ResponseParser, DecodingHasNoEffectOnAContentLengthBody) {
  ResponseParser p;
  const Seen r = run(p, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n1\r\nx", 3, false, /*decode=*/true);
  ASSERT_EQ(r.last, Step::kDone) << r.error;
  EXPECT_EQ(r.body, "1\r\nx");
}

TEST(H1ResponseParser, ABodyDelimitedByTheCloseEndsAtFinish) {
  ResponseParser p;
  for (std::string_view wire : {"HTTP/1.1 200 OK\r\n\r\nabc def", "HTTP/1.0 200 OK\r\nContent-Type: a/b\r\n\r\nabc def",
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc def"}) {
    const Seen open = run(p, wire, 3);
    EXPECT_EQ(open.last, Step::kBody) << wire;
    EXPECT_FALSE(p.has_length());
    EXPECT_EQ(open.body, "abc def");
    const Seen r = run(p, wire, 3, false, false, /*eof=*/true);
    EXPECT_EQ(r.last, Step::kDone) << wire << " " << r.error;
    EXPECT_EQ(r.body, "abc def");
    EXPECT_FALSE(r.keep_alive);
  }
  // An empty one: the server closes right after the head.
  const Seen empty = run(p, "HTTP/1.1 200 OK\r\n\r\n", 100, false, false, true);
  EXPECT_EQ(empty.last, Step::kDone) << empty.error;
}

TEST(H1ResponseParser, FinishBeforeTheEndIsAnError) {
  ResponseParser p;
  for (std::string_view wire : {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Len", ""}) {
    const Seen r = run(p, wire, 4, false, false, /*eof=*/true);
    EXPECT_EQ(r.last, Step::kError) << wire;
    EXPECT_FALSE(r.error.empty()) << wire;
  }
}

TEST(H1ResponseParser, TrailersHaveTheHeadsLimit) {
  std::string wire = std::string(kChunkedHead) + "1\r\na\r\n0\r\n";
  for (int i = 0; i < 100; ++i) wire += "X-Trailer-" + std::to_string(i) + ": " + std::string(40, 't') + "\r\n";
  wire += "\r\n";
  ResponseParser small(2048);
  const Seen r = run(small, wire, 700);
  EXPECT_EQ(r.last, Step::kError);
  EXPECT_EQ(r.error, "response trailers too large");
  ResponseParser p;
  const Seen ok = run(p, wire, 700);
  EXPECT_EQ(ok.last, Step::kDone) << ok.error;
}

TEST(H1ResponseParser, KeepAliveFollowsTheVersionAndConnection) {
  struct Case {
    std::string_view wire;
    bool keep_alive;
  };
  const Case cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", true},
      {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
      {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", true},
      {"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", false},
  };
  ResponseParser p;
  for (const Case& c : cases) {
    const Seen r = run(p, c.wire, 1000);
    ASSERT_EQ(r.last, Step::kDone) << c.wire;
    EXPECT_EQ(r.keep_alive, c.keep_alive) << c.wire;
  }
  EXPECT_TRUE(run(p, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 1000).heads.size() == 1);
  EXPECT_TRUE(p.http10());
}

TEST(H1ResponseParser, BytesAfterTheMessageStayInTheBuffer) {
  ResponseParser p;
  const Seen r = run(p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA", 1000);
  ASSERT_EQ(r.last, Step::kDone);
  EXPECT_EQ(r.body, "hi");
  EXPECT_EQ(r.left, "EXTRA");
  const Seen c = run(p, std::string(kChunkedHead) + "2\r\nhi\r\n0\r\n\r\nMORE", 1000);
  ASSERT_EQ(c.last, Step::kDone);
  EXPECT_EQ(c.body, "2\r\nhi\r\n0\r\n\r\n");
  EXPECT_EQ(c.left, "MORE");
}

TEST(H1ResponseParser, AMalformedChunkSizeIsAnError) {
  ResponseParser p;
  for (std::string_view body : {"zz\r\nab\r\n0\r\n\r\n", "2\nab\r\n0\r\n\r\n", "2\r\nabX\r\n0\r\n\r\n",
                                "ffffffffffffffffff\r\n"}) {
    for (bool decode : {false, true}) {
      const Seen r = run(p, std::string(kChunkedHead) + std::string(body), 1000, false, decode);
      EXPECT_EQ(r.last, Step::kError) << body;
      EXPECT_EQ(r.error.rfind("malformed response: ", 0), 0u) << r.error;
    }
  }
}

TEST(H1ResponseParser, NoAllocationPerResponseOnceWarm) {
  std::string wire = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n";
  for (int i = 0; i < 24; ++i) wire += "X-Field-" + std::to_string(i) + ": v\r\n";
  wire += "\r\n" + std::string(kChunkedBody);
  ResponseParser p;
  IoBuffer in = make_buffer();
  const auto one = [&] {
    in.clear();
    std::memcpy(in.end_ptr(), wire.data(), wire.size());
    in.produced(wire.size());
    p.start(false);
    for (;;) {
      const ResponseParser::Result r = p.execute(in);
      if (r.step == Step::kHead && !p.interim()) p.set_decode_chunked(true);
      if (r.step == Step::kDone || r.step == Step::kError) return r.step;
    }
  };
  const size_t cold = g_allocations;
  ASSERT_EQ(one(), Step::kDone);
  EXPECT_GT(g_allocations - cold, 0u);  // 25 fields: the vectors grew (and the counter counts)
  const size_t before = g_allocations;
  const Step again = one();
  const size_t after = g_allocations;
  EXPECT_EQ(again, Step::kDone);
  EXPECT_EQ(after - before, 0u);
  EXPECT_EQ(p.fields().size(), 25u);
}

TEST(H1ResponseParser, MalformedHeadsAreErrors) {
  ResponseParser p;
  for (std::string_view wire : {"HTTP/1.1 20 OK\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                                "ICY 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"}) {
    const Seen r = run(p, wire, 1000);
    EXPECT_EQ(r.last, Step::kError) << wire;
    EXPECT_EQ(r.error.rfind("malformed response: ", 0), 0u) << r.error;
  }
}

}  // namespace
}  // namespace ringproxy::h1
