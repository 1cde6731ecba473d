// The heads as the proxy sends them on, built from views without a socket. The same
// rules over real connections are in tests/conformance (varnishtest).
#include "proxy/rewrite.h"
#include "http/h2/client_session.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringproxy {
namespace {

// What `head`'s field lines say, read line by line ("Name: value" each, as we write them).
std::vector<std::pair<std::string, std::string>> field_lines(std::string_view head) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t at = head.find("\r\n") + 2;  // past the request line
  for (size_t end; (end = head.find("\r\n", at)) != std::string_view::npos && end > at; at = end + 2) {
    const std::string_view line = head.substr(at, end - at);
    const size_t colon = line.find(": ");
    out.emplace_back(line.substr(0, colon), line.substr(colon + 2));
  }
  return out;
}

// The head as built, checked on the way against the same head built with spans
// (HeadSpans, what an HTTP/2 node's fields are taken from): the bytes are the same, and
// the spans name the request line's method and target and every field line.
std::string request(const std::vector<HeaderView>& fields, RequestRewrite r = {}, bool* has_host = nullptr) {
  if (r.method.empty()) r.method = "GET";
  if (r.target.empty()) r.target = "/k";
  if (r.client_ip.empty()) r.client_ip = "10.0.0.9";
  r.fields = fields;
  std::string out = "stale bytes";
  const bool host = build_request_head(r, out);
  if (has_host) *has_host = host;
  std::string with_spans = "other stale bytes";
  HeadSpans spans;
  spans.fields.resize(40);  // stale entries: the build leaves exactly its own
  EXPECT_EQ(build_request_head(r, with_spans, &spans), host);
  EXPECT_EQ(with_spans, out);
  EXPECT_EQ(spans.method.in(out), r.method);
  EXPECT_EQ(spans.target.in(out), r.target);
  std::vector<std::pair<std::string, std::string>> from_spans;
  for (const auto& [name, value] : spans.fields) from_spans.emplace_back(name.in(out), value.in(out));
  EXPECT_EQ(from_spans, field_lines(out));
  // An HTTP/2 node gets the same fields from the spans as from parsing the head.
  const auto nv_text = [](const std::vector<nghttp2_nv>& nv) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const nghttp2_nv& n : nv) {
      out.emplace_back(std::string(reinterpret_cast<const char*>(n.name), n.namelen),
                       std::string(reinterpret_cast<const char*>(n.value), n.valuelen));
    }
    return out;
  };
  std::string names_a, names_b;
  std::vector<nghttp2_nv> nv_a, nv_b;
  for (const bool te : {false, true}) {
    const bool ok_a = h2::request_fields(out, spans, "http", "node:80", te, names_a, nv_a);
    const bool ok_b = h2::request_fields_from_http1(out, "http", "node:80", te, names_b, nv_b);
    EXPECT_EQ(ok_a, ok_b);
    EXPECT_EQ(nv_text(nv_a), nv_text(nv_b));
  }
  return out;
}

TEST(RequestRewrite, SendsHttp11WithForwardedFieldsAndDropsHopByHop) {
  const std::vector<HeaderView> f = {{"Host", "h"},          {"Connection", "keep-alive, X-Secret"},
                                     {"X-Secret", "s"},      {"Keep-Alive", "timeout=5"},
                                     {"TE", "trailers"},     {"Proxy-Authorization", "Basic x"},
                                     {"X-Forwarded-Proto", "https"}, {"Accept", "*/*"}};
  RequestRewrite r;
  r.client_http10 = true;
  r.via = "edge";
  EXPECT_EQ(request(f, r),
            "GET /k HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nVia: 1.0 edge\r\nX-Forwarded-For: 10.0.0.9\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n");
}

TEST(RequestRewrite, OverTlsSaysHttpsAndSendsTheVerifiedSubjectOnly) {
  // The client's own X-Client-Subject lines are dropped, whatever their case: only the
  // proxy vouches for a subject.
  const std::vector<HeaderView> f = {{"Host", "h"}, {"x-client-subject", "CN=forged"}, {"X-Client-Subject", "CN=b"}};
  RequestRewrite r;
  r.https = true;
  r.subject_header = "X-Client-Subject";
  r.client_subject = "CN=alice,O=Example";
  EXPECT_EQ(request(f, r),
            "GET /k HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: h\r\nX-Client-Subject: CN=alice,O=Example\r\n\r\n");
  // No verified certificate: none sent, the client's still dropped.
  r.client_subject = "";
  EXPECT_EQ(request(f, r),
            "GET /k HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: h\r\n\r\n");
}

TEST(RequestRewrite, AnotherListenersSubjectHeaderIsDroppedToo) {
  // A plain listener (no subject header of its own) in front of backends that trust
  // another listener's X-Client-Subject: the client's copy must not go through.
  const std::vector<HeaderView> f = {{"Host", "h"}, {"x-client-subject", "CN=admin"}, {"X-Other", "1"}};
  const std::vector<std::string> every = {"X-Client-Subject", "X-Mtls-DN"};
  RequestRewrite r;
  r.subject_headers = every;
  EXPECT_EQ(request(f, r),
            "GET /k HTTP/1.1\r\nHost: h\r\nX-Other: 1\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: h\r\n\r\n");
}

TEST(RequestRewrite, FoldsEveryViaAndXForwardedForLineOursLast) {
  const std::vector<HeaderView> f = {{"Host", "h"},
                                     {"Via", "1.1 a"},
                                     {"X-Forwarded-For", ""},
                                     {"X-Forwarded-For", "1.2.3.4"},
                                     {"via", "1.0 b, 1.1 c"},
                                     {"X-Forwarded-For", "5.6.7.8"}};
  RequestRewrite r;
  r.via = "rp";
  const std::string h = request(f, r);
  EXPECT_NE(h.find("\r\nVia: 1.1 a, 1.0 b, 1.1 c, 1.1 rp\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8, 10.0.0.9\r\n"), std::string::npos) << h;
}

TEST(RequestRewrite, WithoutAViaNameTheClientsViaGoesOnUntouched) {
  const std::vector<HeaderView> f = {{"Host", "h"}, {"Via", "1.1 a"}};
  const std::string h = request(f);
  EXPECT_NE(h.find("\r\nVia: 1.1 a\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("Via: 1.1 a, "), std::string::npos) << h;
}

TEST(RequestRewrite, MaxForwardsIsReplacedByTheDecrementedValue) {
  const std::vector<HeaderView> f = {{"Host", "h"}, {"Max-Forwards", "5"}};
  RequestRewrite r;
  r.method = "OPTIONS";
  r.max_forwards_set = true;
  r.max_forwards = 4;
  const std::string h = request(f, r);
  EXPECT_NE(h.find("\r\nMax-Forwards: 4\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("Max-Forwards: 5"), std::string::npos) << h;
}

TEST(RequestRewrite, SaysWhenTheRequestHasNoHost) {
  bool host = true;
  const std::string h = request({{"Accept", "*/*"}}, {}, &host);
  EXPECT_FALSE(host);
  EXPECT_EQ(h.substr(h.size() - 2), "\r\n");
  EXPECT_EQ(h.find("X-Forwarded-Host"), std::string::npos);
  request({{"Host", "h"}}, {}, &host);
  EXPECT_TRUE(host);
}

TEST(RequestRewrite, AnUpgradeKeepsItsConnectionAndUpgradeFields) {
  const std::vector<HeaderView> f = {{"Host", "h"}, {"Connection", "Upgrade"}, {"Upgrade", "websocket"}};
  RequestRewrite r;
  r.upgrade = true;
  const std::string h = request(f, r);
  EXPECT_NE(h.find("\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("Connection: Upgrade", h.find("Connection: Upgrade") + 1), std::string::npos) << h;
}

std::string response(const std::vector<HeaderView>& fields, ResponseRewrite r) {
  r.fields = fields;
  if (r.reason.empty()) r.reason = "OK";
  std::string out = "stale bytes";
  build_response_head(r, out);
  return out;
}

TEST(ResponseRewrite, ChunkedToAnHttp10ClientLosesItsCodingAndTrailerAndCloses) {
  ResponseRewrite r;
  r.status = 200;
  r.client_http10 = true;
  r.close_after = true;
  EXPECT_EQ(response({{"Transfer-Encoding", "chunked"}, {"Trailer", "X-T"}, {"Connection", "keep-alive"}, {"X", "1"}}, r),
            "HTTP/1.1 200 OK\r\nX: 1\r\nConnection: close\r\n\r\n");
}

TEST(ResponseRewrite, AKeptHttp10ConnectionSaysKeepAlive) {
  ResponseRewrite r;
  r.status = 200;
  r.client_http10 = true;
  EXPECT_EQ(response({{"Content-Length", "2"}}, r), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
  r.client_http10 = false;
  EXPECT_EQ(response({{"Content-Length", "2"}}, r), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
}

TEST(ResponseRewrite, NoContentLengthOn204OrInterim) {
  ResponseRewrite r;
  r.status = 204;
  r.reason = "No Content";
  EXPECT_EQ(response({{"Content-Length", "0"}}, r), "HTTP/1.1 204 No Content\r\n\r\n");
  r.status = 100;
  r.reason = "Continue";
  r.interim = true;
  r.close_after = true;  // an interim head says nothing of the connection
  EXPECT_EQ(response({{"Content-Length", "0"}}, r), "HTTP/1.1 100 Continue\r\n\r\n");
}

// RFC 9110 8.6 and RFC 9112 6.1: a response without content carries no framing fields,
// a 101 included. A chunked 101 relayed as such made a client read the tunnel's bytes
// as chunks (fuzz_response, tests/regressions/fuzz_response).
TEST(ResponseRewrite, NoFramingFieldsOn101Or204) {
  ResponseRewrite r;
  r.status = 101;
  r.reason = "Switching Protocols";
  r.tunnel = true;
  EXPECT_EQ(response({{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}, {"Upgrade", "ws"}}, r),
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\n");
  r = {};
  r.status = 204;
  r.reason = "No Content";
  EXPECT_EQ(response({{"Transfer-Encoding", "chunked"}, {"X-A", "1"}}, r),
            "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
}

TEST(ResponseRewrite, StatusIsThreeDigitsAndATunnelNamesItsProtocol) {
  ResponseRewrite r;
  r.status = 101;
  r.reason = "Switching Protocols";
  r.tunnel = true;
  EXPECT_EQ(response({{"Upgrade", "websocket"}, {"Connection", "upgrade"}}, r),
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  ResponseRewrite odd;
  odd.status = 799;
  odd.reason = "Odd";
  EXPECT_EQ(response({}, odd), "HTTP/1.1 799 Odd\r\n\r\n");
}

}  // namespace
}  // namespace ringproxy
