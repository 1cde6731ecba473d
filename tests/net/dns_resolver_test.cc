// net/dns_resolver.h against a real DNS server: Debian's dnsmasq, started by each test
// on 127.0.0.1 with the records the test needs (its own config, no system resolver, no
// hosts file). And answer_min_ttl() on messages made by hand.
#include "net/dns_resolver.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/support/loopback.h"

namespace ringproxy {
namespace {

using integration::TempDir;

// A UDP socket bound to 127.0.0.1 on a port the kernel chose (*port), never read; -1
// when none could be made.
int bound_udp(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

class DnsResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &guard_);
  }
  void TearDown() override {
    if (resolver_) resolver_->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    resolver_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // dnsmasq serving `records` (its options: --host-record=..., --srv-host=...) for the
  // domain "test" alone, every answer with TTL 42. Returns its "127.0.0.1:PORT" once it
  // answers (NXDOMAIN for a name it does not have).
  std::string start_dns(const std::vector<std::string>& records) {
    dns_.set_ttl(42);
    if (!dns_.start(records)) return {};
    const std::string server = "127.0.0.1:" + std::to_string(dns_.port());
    EXPECT_EQ(resolve_with({server}, "ready.test", DnsResolver::Type::kA).status, DnsAnswer::Status::kNotFound);
    return server;
  }


  DnsAnswer resolve_with(const std::vector<std::string>& servers, const std::string& name, DnsResolver::Type type,
                         uint32_t timeout_ms = 2000) {
    DnsResolver r(&loop_);
    EXPECT_EQ(r.init(servers, timeout_ms), "");
    std::optional<DnsAnswer> got;
    r.query(name, type, [&](DnsAnswer a) { got = std::move(a); });
    EXPECT_FALSE(got) << "called back from inside query()";
    test::run_loop_until(&loop_, &guard_, [&] { return got.has_value(); });
    r.close();
    uv_run(&loop_, UV_RUN_NOWAIT);  // its handles' close callbacks
    return got.value_or(DnsAnswer{});
  }

  TempDir dir_;
  uv_loop_t loop_{};
  uv_timer_t guard_{};
  integration::Dnsmasq dns_{dir_};
  std::unique_ptr<DnsResolver> resolver_;
};

TEST_F(DnsResolverTest, ARecordsWithTheirTtl) {
  const std::string server = start_dns({"--host-record=a.test,10.0.0.1", "--host-record=a.test,10.0.0.2"});
  const DnsAnswer a = resolve_with({server}, "a.test", DnsResolver::Type::kA);
  EXPECT_EQ(a.status, DnsAnswer::Status::kOk) << a.error;
  std::vector<std::string> got = a.addresses;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"10.0.0.1", "10.0.0.2"}));
  EXPECT_EQ(a.ttl_s, 42u);
}

TEST_F(DnsResolverTest, AaaaRecords) {
  const std::string server = start_dns({"--host-record=v6.test,fd00::1"});
  const DnsAnswer a = resolve_with({server}, "v6.test", DnsResolver::Type::kAaaa);
  EXPECT_EQ(a.status, DnsAnswer::Status::kOk) << a.error;
  EXPECT_EQ(a.addresses, std::vector<std::string>{"fd00::1"});
}

TEST_F(DnsResolverTest, SrvRecordsWithPriorityWeightPortAndTtl) {
  const std::string server = start_dns({"--srv-host=_http._tcp.svc.test,n1.test,8080,10,5",
                                        "--srv-host=_http._tcp.svc.test,n2.test,8081,20,0"});
  const DnsAnswer a = resolve_with({server}, "_http._tcp.svc.test", DnsResolver::Type::kSrv);
  ASSERT_EQ(a.status, DnsAnswer::Status::kOk) << a.error;
  std::vector<DnsAnswer::Srv> got = a.srv;
  std::sort(got.begin(), got.end(), [](const auto& x, const auto& y) { return x.target < y.target; });
  EXPECT_EQ(got, (std::vector<DnsAnswer::Srv>{{10, 5, 8080, "n1.test"}, {20, 0, 8081, "n2.test"}}));
  EXPECT_EQ(a.ttl_s, 42u);  // read by answer_min_ttl: c-ares gives no SRV TTL
}

TEST_F(DnsResolverTest, NxdomainAndAnEmptyAnswerAreToldApart) {
  const std::string server = start_dns({"--host-record=a.test,10.0.0.1"});
  const DnsAnswer missing = resolve_with({server}, "missing.test", DnsResolver::Type::kA);
  EXPECT_EQ(missing.status, DnsAnswer::Status::kNotFound) << missing.error;
  EXPECT_FALSE(missing.error.empty());
  const DnsAnswer no_aaaa = resolve_with({server}, "a.test", DnsResolver::Type::kAaaa);
  EXPECT_EQ(no_aaaa.status, DnsAnswer::Status::kEmpty) << no_aaaa.error;
  EXPECT_TRUE(no_aaaa.addresses.empty());
}

TEST_F(DnsResolverTest, AServerThatNeverAnswersTimesOut) {
  // A socket bound and never read: queries to it vanish.
  uint16_t port = 0;
  const int silent = bound_udp(&port);
  ASSERT_GE(silent, 0);
  const DnsAnswer a = resolve_with({"127.0.0.1:" + std::to_string(port)}, "a.test", DnsResolver::Type::kA, 200);
  EXPECT_EQ(a.status, DnsAnswer::Status::kTimeout) << a.error;
  ::close(silent);
}

// dnsmasq with no local domain and no upstream REFUSES every query. c-ares 1.18 ends
// such a query as "could not contact DNS servers" (ECONNREFUSED), as for a server that
// is not there at all; the resolver says what the server answered, and who.
TEST_F(DnsResolverTest, ARefusalIsReportedAsARefusalNamingTheServer) {
  ASSERT_TRUE(dns_.start({}, /*local=*/false));
  const std::string server = "127.0.0.1:" + std::to_string(dns_.port());
  const DnsAnswer a = resolve_with({server}, "a.test", DnsResolver::Type::kA);
  EXPECT_EQ(a.status, DnsAnswer::Status::kRefused) << a.error;
  EXPECT_EQ(a.error, server + " answered REFUSED");
  EXPECT_STREQ(to_string(a.status), "refused");
}

// A refusing server first, a good one next: c-ares still goes on to the next (the
// rcode is only noted on the way), and the good answer is what comes back.
TEST_F(DnsResolverTest, ARefusingServerIsStillPassedOverForTheNext) {
  const std::string good = start_dns({"--host-record=a.test,10.0.0.1"});
  TempDir other_dir;
  integration::Dnsmasq refusing(other_dir, 0, "refusing");
  ASSERT_TRUE(refusing.start({}, /*local=*/false));
  const std::string bad = "127.0.0.1:" + std::to_string(refusing.port());
  const DnsAnswer a = resolve_with({bad, good}, "a.test", DnsResolver::Type::kA);
  EXPECT_EQ(a.status, DnsAnswer::Status::kOk) << a.error;
  EXPECT_EQ(a.addresses, std::vector<std::string>{"10.0.0.1"});
  // And no note of the refusal is left to blame a later failure on.
  const DnsAnswer missing = resolve_with({good}, "missing.test", DnsResolver::Type::kA);
  EXPECT_EQ(missing.status, DnsAnswer::Status::kNotFound) << missing.error;
}

// No server at the port (the kernel answers ICMP port unreachable): still "error",
// c-ares's words, with no refusal or SERVFAIL invented.
TEST_F(DnsResolverTest, NoServerAtAllIsAnError) {
  uint16_t port = 0;
  const int s = bound_udp(&port);
  ASSERT_GE(s, 0);
  ::close(s);  // the port is now closed
  const DnsAnswer a = resolve_with({"127.0.0.1:" + std::to_string(port)}, "a.test",
                                   DnsResolver::Type::kA, 500);
  EXPECT_TRUE(a.status == DnsAnswer::Status::kError || a.status == DnsAnswer::Status::kTimeout) << a.error;
}

TEST_F(DnsResolverTest, CloseWithAQueryPendingCallsNothingAndLeavesNoHandle) {
  uint16_t port = 0;
  const int silent = bound_udp(&port);
  ASSERT_GE(silent, 0);
  resolver_ = std::make_unique<DnsResolver>(&loop_);
  ASSERT_EQ(resolver_->init({"127.0.0.1:" + std::to_string(port)}, 5000), "");
  bool called = false;
  resolver_->query("a.test", DnsResolver::Type::kA, [&](DnsAnswer) { called = true; });
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(resolver_->pending(), 1u);
  resolver_->close();
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_FALSE(called);
  ::close(silent);
}

// c-ares still uses its channel after a callback returns: a close() from inside one
// must wait for it (ASan would see the channel used after it was freed).
TEST_F(DnsResolverTest, CloseFromInsideACallback) {
  const std::string server = start_dns({"--host-record=a.test,10.0.0.1"});
  resolver_ = std::make_unique<DnsResolver>(&loop_);
  ASSERT_EQ(resolver_->init({server}, 2000), "");
  int called = 0;
  resolver_->query("a.test", DnsResolver::Type::kA, [&](DnsAnswer a) {
    ++called;
    EXPECT_EQ(a.status, DnsAnswer::Status::kOk);
    resolver_->close();
  });
  resolver_->query("a.test", DnsResolver::Type::kA, [&](DnsAnswer) { ++called; });
  test::run_loop_until(&loop_, &guard_, [&] { return called > 0; });
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(called, 1);  // the second query was dropped with the close
}

TEST_F(DnsResolverTest, AQueryWithoutAWorkingInitIsNeitherSentNorAnswered) {
  DnsResolver r(&loop_);
  EXPECT_NE(r.init({"not an address"}, 1000), "");
  bool called = false;
  r.query("a.test", DnsResolver::Type::kA, [&](DnsAnswer) { called = true; });
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_FALSE(called);
  r.close();
}

TEST_F(DnsResolverTest, AResolverListThatDoesNotParseIsRefused) {
  DnsResolver r(&loop_);
  EXPECT_NE(r.init({"not an address"}, 1000), "");
  r.close();
}

// ---- answer_min_ttl, on messages made by hand ----

std::vector<unsigned char> message(uint16_t answers, const std::vector<unsigned char>& body) {
  std::vector<unsigned char> m = {0x12, 0x34, 0x81, 0x80, 0, 1, static_cast<unsigned char>(answers >> 8),
                                  static_cast<unsigned char>(answers), 0, 0, 0, 0};
  // The question: "a.t" IN A.
  const std::vector<unsigned char> q = {1, 'a', 1, 't', 0, 0, 1, 0, 1};
  m.insert(m.end(), q.begin(), q.end());
  m.insert(m.end(), body.begin(), body.end());
  return m;
}

// An A record named by a pointer to the question's name, with `ttl`.
std::vector<unsigned char> a_record(uint32_t ttl) {
  return {0xC0, 12, 0, 1, 0, 1, static_cast<unsigned char>(ttl >> 24), static_cast<unsigned char>(ttl >> 16),
          static_cast<unsigned char>(ttl >> 8), static_cast<unsigned char>(ttl), 0, 4, 10, 0, 0, 1};
}

TEST(AnswerMinTtl, TheSmallestOfTheAnswersRecords) {
  std::vector<unsigned char> body = a_record(300);
  const auto second = a_record(60);
  body.insert(body.end(), second.begin(), second.end());
  const auto m = message(2, body);
  EXPECT_EQ(answer_min_ttl(m.data(), m.size()), 60u);
}

TEST(AnswerMinTtl, ATtlWithTheTopBitSetReadsAsZero) {
  const auto m = message(1, a_record(0x80000010));
  EXPECT_EQ(answer_min_ttl(m.data(), m.size()), 0u);  // RFC 2181 8
}

TEST(AnswerMinTtl, TruncatedOrEmptyMessagesDoNotParse) {
  const auto m = message(1, a_record(300));
  for (size_t cut = 0; cut < m.size(); ++cut) {
    EXPECT_EQ(answer_min_ttl(m.data(), cut), std::nullopt) << "cut at " << cut;
  }
  const auto none = message(0, {});
  EXPECT_EQ(answer_min_ttl(none.data(), none.size()), std::nullopt);  // no answer records
}

TEST(AnswerMinTtl, ANameThatRunsOnIsRefused) {
  // 200 one-byte labels without an end: over the 255-byte limit of a name.
  std::vector<unsigned char> body;
  for (int i = 0; i < 200; ++i) {
    body.push_back(1);
    body.push_back('x');
  }
  const auto m = message(1, body);
  EXPECT_EQ(answer_min_ttl(m.data(), m.size()), std::nullopt);
}

// ---- failed_question, on messages made by hand ----

// A response with `flags` (QR and the rcode in the low bits) to "Ab.t" type 33.
std::vector<unsigned char> response(uint8_t rcode, bool qr = true) {
  return {0x12, 0x34, static_cast<unsigned char>(qr ? 0x81 : 0x01), static_cast<unsigned char>(0x80 | rcode),
          0, 1, 0, 0, 0, 0, 0, 0, 2, 'A', 'b', 1, 't', 0, 0, 33, 0, 1};
}

TEST(FailedQuestion, ServfailRefusedAndNotimpNameTheirQuestion) {
  for (const uint8_t rcode : {2, 4, 5}) {
    const auto m = response(rcode);
    const auto f = failed_question(m.data(), m.size());
    ASSERT_TRUE(f.has_value()) << int{rcode};
    EXPECT_EQ(f->name, "Ab.t");
    EXPECT_EQ(f->type, 33);
    EXPECT_EQ(f->rcode, rcode);
  }
}

TEST(FailedQuestion, AnythingElseIsNone) {
  for (const uint8_t rcode : {0, 1, 3, 6, 15}) {
    const auto m = response(rcode);
    EXPECT_FALSE(failed_question(m.data(), m.size())) << int{rcode};
  }
  const auto query = response(2, /*qr=*/false);
  EXPECT_FALSE(failed_question(query.data(), query.size()));
  auto no_question = response(2);
  no_question[5] = 0;
  EXPECT_FALSE(failed_question(no_question.data(), no_question.size()));
  const auto whole = response(2);
  for (size_t cut = 0; cut < whole.size(); ++cut) {  // every cut, down to the class's last byte
    EXPECT_FALSE(failed_question(whole.data(), cut)) << cut;
  }
  auto pointer = response(2);
  pointer[12] = 0xC0;  // a compressed question name: nothing to point back to
  EXPECT_FALSE(failed_question(pointer.data(), pointer.size()));
}

}  // namespace
}  // namespace ringproxy
