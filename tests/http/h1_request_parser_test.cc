// h1::RequestParser on its own: no socket, bytes fed as a connection reads them. The
// end-to-end side (the same refusals over a real connection) is in
// tests/integration/smuggling_test.cc and tests/conformance.
#include "http/h1/request_parser.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>

namespace ringproxy::h1 {
namespace {

constexpr uint32_t kMaxHead = 8192;

// Appends `bytes` to `in` as a read would (the buffer allocated on first use).
void feed(IoBuffer& in, std::string_view bytes) {
  if (!in.allocated()) in.attach(std::make_unique<char[]>(IoBuffer::kSize), IoBuffer::kSize);
  while (in.free_space() < bytes.size()) in.grow(in.capacity() * 2);
  std::memcpy(in.end_ptr(), bytes.data(), bytes.size());
  in.produced(bytes.size());
}

using Step = RequestParser::HeadStep;

// Feeds the whole input at once and reads the head.
Step head_of(RequestParser& p, IoBuffer& in, std::string_view bytes) {
  feed(in, bytes);
  return p.read_head(in, kMaxHead, true, false);
}

TEST(H1RequestParser, ReadsAHeadAndItsFields) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "GET /a?b=1 HTTP/1.1\r\nHost: h\r\nX-Empty: \r\nUser-Agent: t\r\n\r\n"), Step::kHead);
  EXPECT_EQ(p.method(), HTTP_GET);
  EXPECT_EQ(p.method_name(), "GET");
  EXPECT_EQ(p.target(), "/a?b=1");
  ASSERT_EQ(p.fields().size(), 3u);
  EXPECT_EQ(p.fields()[0].name, "Host");
  EXPECT_EQ(p.fields()[0].value, "h");
  EXPECT_EQ(p.fields()[1].name, "X-Empty");
  EXPECT_EQ(p.fields()[1].value, "");
  EXPECT_EQ(p.fields()[2].value, "t");
  EXPECT_FALSE(p.http10());
  EXPECT_TRUE(p.keep_alive());
  EXPECT_FALSE(p.has_body());
  EXPECT_EQ(in.size(), 0u);  // the head is consumed
}

TEST(H1RequestParser, AHeadSplitAtEveryByteReadsTheSame) {
  const std::string head = "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nX-Long-Name: some value\r\n\r\n";
  for (size_t cut = 1; cut < head.size(); ++cut) {
    RequestParser p;
    IoBuffer in;
    feed(in, head.substr(0, cut));
    ASSERT_EQ(p.read_head(in, kMaxHead, true, false), Step::kMore) << cut;
    feed(in, head.substr(cut));
    ASSERT_EQ(p.read_head(in, kMaxHead, true, false), Step::kHead) << cut;
    ASSERT_EQ(p.fields().size(), 3u) << cut;
    EXPECT_EQ(p.fields()[0].value, "example.com") << cut;
    EXPECT_EQ(p.fields()[2].name, "X-Long-Name") << cut;
    EXPECT_EQ(p.fields()[2].value, "some value") << cut;
    EXPECT_EQ(p.target(), "/p") << cut;
    EXPECT_TRUE(p.has_body());
  }
}

TEST(H1RequestParser, ABodyCompletesAndThePipelinedRequestFollows) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
            Step::kHead);
  const RequestParser::BodyStep b = p.body(in.begin_ptr(), in.size());
  EXPECT_FALSE(b.error);
  EXPECT_TRUE(b.complete);
  EXPECT_EQ(b.consumed, 5u);  // only this message's bytes
  in.consume(b.consumed);
  p.next_message();
  ASSERT_EQ(p.read_head(in, kMaxHead, true, false), Step::kHead);
  EXPECT_EQ(p.target(), "/next");
}

TEST(H1RequestParser, ABodilessRequestCompletesOnAnEmptyExecute) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"), Step::kHead);
  const RequestParser::BodyStep b = p.body(in.begin_ptr(), 0);
  EXPECT_TRUE(b.complete);
  EXPECT_EQ(b.consumed, 0u);
}

TEST(H1RequestParser, AChunkedBodyIsPassedAsFramed) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), Step::kHead);
  const std::string_view part1 = "5\r\nhel", part2 = "lo\r\n0\r\nX-Trailer: t\r\n\r\n";
  RequestParser::BodyStep b = p.body(part1.data(), part1.size());
  EXPECT_FALSE(b.complete);
  EXPECT_EQ(b.consumed, part1.size());
  b = p.body(part2.data(), part2.size());
  EXPECT_TRUE(b.complete);
  EXPECT_EQ(b.consumed, part2.size());
}

TEST(H1RequestParser, AKeptBodyIsDecodedAndBounded) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), Step::kHead);
  EXPECT_EQ(p.content_length(), std::nullopt);
  std::string body;
  p.keep_body(&body, 8);
  const std::string_view part1 = "5\r\nhel", part2 = "lo\r\n3\r\n ab\r\n0\r\n\r\n";
  EXPECT_FALSE(p.body(part1.data(), part1.size()).complete);
  const RequestParser::BodyStep b = p.body(part2.data(), part2.size());
  EXPECT_TRUE(b.complete);
  EXPECT_EQ(b.consumed, part2.size());  // still passed as framed
  EXPECT_EQ(body, "hello ab");          // exactly the limit: kept
  EXPECT_FALSE(p.body_over_limit());

  // One byte more than the limit: nothing more is kept, the framing is still read to
  // the message's end.
  p.next_message();
  IoBuffer in2;
  ASSERT_EQ(head_of(p, in2, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n"), Step::kHead);
  EXPECT_EQ(p.content_length(), std::optional<uint64_t>(9));
  body.clear();
  p.keep_body(&body, 8);
  const std::string_view nine = "123456789";
  const RequestParser::BodyStep over = p.body(nine.data(), nine.size());
  EXPECT_FALSE(over.error);
  EXPECT_TRUE(over.complete);
  EXPECT_EQ(over.consumed, nine.size());
  EXPECT_TRUE(p.body_over_limit());
  EXPECT_EQ(body, "");  // the piece that crossed the limit is not kept either

  // Chunked: what came before the limit stays, nothing after; broken framing past the
  // limit is still an error.
  p.next_message();
  IoBuffer in3;
  ASSERT_EQ(head_of(p, in3, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), Step::kHead);
  body.clear();
  p.keep_body(&body, 8);
  const std::string_view chunks = "5\r\nhello\r\n5\r\nworld\r\n1\r\n!\r\nzz\r\n";
  const RequestParser::BodyStep broken = p.body(chunks.data(), chunks.size());
  EXPECT_TRUE(broken.error);
  EXPECT_TRUE(p.body_over_limit());
  EXPECT_EQ(body, "hello");
}

TEST(H1RequestParser, NextMessageForgetsTheKeptBody) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nabPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\ncd"),
            Step::kHead);
  std::string body;
  p.keep_body(&body, 100);
  RequestParser::BodyStep b = p.body(in.begin_ptr(), in.size());
  ASSERT_TRUE(b.complete);
  in.consume(b.consumed);
  EXPECT_EQ(body, "ab");
  p.next_message();
  ASSERT_EQ(p.read_head(in, kMaxHead, true, false), Step::kHead);
  b = p.body(in.begin_ptr(), in.size());
  EXPECT_TRUE(b.complete);
  EXPECT_EQ(body, "ab");  // not kept: no keep_body() for this message
}

TEST(H1RequestParser, BrokenChunkFramingIsAnError) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), Step::kHead);
  const std::string_view bad = "zz\r\nhello\r\n";
  EXPECT_TRUE(p.body(bad.data(), bad.size()).error);
  EXPECT_FALSE(p.error_reason().empty());
}

TEST(H1RequestParser, BrokenFramingAlreadyBufferedRefusesTheHead) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), Step::kRefused);
  EXPECT_EQ(p.refusal().status, 400);
  EXPECT_EQ(p.refusal().text, "malformed request body");
}

TEST(H1RequestParser, DiscardsABufferedBody) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab"), Step::kHead);
  EXPECT_FALSE(p.discard_buffered(in));  // two bytes still to come
  feed(in, "cdGET");  // the rest, and the next request
  EXPECT_TRUE(p.discard_buffered(in));
  EXPECT_EQ(std::string_view(in.begin_ptr(), in.size()), "GET");  // left for its turn
}

struct Refused {
  const char* bytes;
  int status;
  const char* cause;
};

class H1RequestParserRefuses : public ::testing::TestWithParam<Refused> {};

TEST_P(H1RequestParserRefuses, WithTheRightStatus) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, GetParam().bytes), Step::kRefused);
  EXPECT_EQ(p.refusal().status, GetParam().status);
  EXPECT_NE(p.refusal().cause.find(GetParam().cause), std::string::npos) << p.refusal().cause;
}

INSTANTIATE_TEST_SUITE_P(
    Heads, H1RequestParserRefuses,
    ::testing::Values(
        Refused{"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, "unsupported HTTP version"},
        Refused{"GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400, "malformed request"},
        Refused{"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request"},
        Refused{"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0 with Transfer-Encoding"},
        Refused{"GET / HTTP/1.1\r\n\r\n", 400, "without Host"},
        Refused{"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400, "obs-fold"},
        Refused{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "chunked once and last"},
        Refused{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: foo, chunked\r\n\r\n", 501, "unknown transfer coding"},
        Refused{"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 405, "CONNECT refused"},
        Refused{"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request target"},
        Refused{"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request"}));

TEST(H1RequestParser, AsteriskIsForOptions) {
  RequestParser p;
  IoBuffer in;
  EXPECT_EQ(head_of(p, in, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), Step::kHead);
}

TEST(H1RequestParser, AHeadOverTheLimitIs431) {
  RequestParser p;
  IoBuffer in;
  const std::string head = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(kMaxHead, 'a') + "\r\n\r\n";
  EXPECT_EQ(head_of(p, in, head), Step::kRefused);
  EXPECT_EQ(p.refusal().status, 431);
}

TEST(H1RequestParser, AHeadLargerThanTheBufferGrowsItUpToTheLimit) {
  RequestParser p;
  IoBuffer in;
  in.attach(std::make_unique<char[]>(64), 64);
  const std::string head = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(200, 'a') + "\r\n\r\n";
  size_t fed = 0;
  Step s = Step::kMore;
  while (s == Step::kMore && fed < head.size()) {
    const size_t n = std::min(in.free_space(), head.size() - fed);
    std::memcpy(in.end_ptr(), head.data() + fed, n);
    in.produced(n);
    fed += n;
    s = p.read_head(in, kMaxHead, true, false);
  }
  ASSERT_EQ(s, Step::kHead);
  EXPECT_EQ(p.fields()[1].value, std::string(200, 'a'));
  EXPECT_GT(in.capacity(), 64u);
}

TEST(H1RequestParser, EndOfInputMidHeadIs400) {
  RequestParser p;
  IoBuffer in;
  feed(in, "GET / HTT");
  EXPECT_EQ(p.read_head(in, kMaxHead, true, /*eof=*/true), Step::kRefused);
  EXPECT_EQ(p.refusal().status, 400);
  EXPECT_TRUE(p.head_started());
}

TEST(H1RequestParser, KeepAliveFollowsTheVersionAndConnection) {
  {
    RequestParser p;
    IoBuffer in;
    ASSERT_EQ(head_of(p, in, "GET / HTTP/1.0\r\n\r\n"), Step::kHead);
    EXPECT_TRUE(p.http10());
    EXPECT_FALSE(p.keep_alive());
  }
  {
    RequestParser p;
    IoBuffer in;
    ASSERT_EQ(head_of(p, in, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), Step::kHead);
    EXPECT_TRUE(p.keep_alive());
  }
  {
    RequestParser p;
    IoBuffer in;
    ASSERT_EQ(head_of(p, in, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), Step::kHead);
    EXPECT_FALSE(p.keep_alive());
  }
}

TEST(H1RequestParser, HeadIsKnownEvenWhenTheHeadIsRefused) {
  RequestParser p;
  IoBuffer in;
  ASSERT_EQ(head_of(p, in, "HEAD / HTTP/1.1\r\n\r\n"), Step::kRefused);  // no Host
  EXPECT_TRUE(p.is_head());
}

}  // namespace
}  // namespace ringproxy::h1
