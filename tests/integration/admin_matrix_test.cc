// Every admin route (proxy/admin_api.cc) against the edge checks of SPEC "Admin HTTP
// endpoint", on a real ringproxy with `admin.token` set:
//   (a) each method a route does not serve: 405, an Allow header naming what it serves,
//       and a JSON {"error"} body;
//   (b) each mutating route without the token, with a wrong one, or with another scheme:
//       401 with WWW-Authenticate, and nothing changes (GET /ring and GET /nodes compared
//       before and after); each read-only route answers without a token; each mutating
//       route with the token succeeds (so the 401s were for the token, not the request);
//   (c) a body over the admin limit (AdminServer::kMaxBody, 64 KiB), announced by
//       Content-Length or sent chunked: 413 on every route, and nothing changes;
//   (d) malformed JSON: 400 with {"error"} on every route that reads a JSON body.
// The routes are a table; every check loops over it. The proxy is not sent any traffic,
// so the nodes' counters stay 0 and the state snapshot compares exactly.
//
// Also here, because it is read through GET /metrics: gossip datagrams a real instance
// drops as malformed or undecodable are counted in ringproxy_gossip_dropped_total.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

using nlohmann::json;

constexpr std::string_view kToken = "m4trix-Token-0123456789";
constexpr size_t kMaxBody = 64 * 1024;  // AdminServer::kMaxBody

// Every method a test sends. CONNECT is left out: what follows it is a tunnel, not a
// request a route can answer; the request codec refuses it (405) before any route.
const std::vector<std::string> kMethods = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"};

// Every method but GET and HEAD needs the token, served by the route or not.
bool is_mutating(std::string_view method) { return method != "GET" && method != "HEAD"; }

struct Route {
  std::string target;              // with a real node name and query where needed
  std::set<std::string> allowed;   // every method the route serves (HEAD wherever GET)
  std::string body;                // a valid body for its mutating method, "" if none
  bool json_body = false;          // its mutating method parses the body as JSON
};

// What admin_api.cc serves. a-1 is the node each per-node route names, except undrain,
// which names a-2 (drained first, so that an unauthorized undrain would show).
std::vector<Route> routes(const std::string& fourth_address) {
  return {
      {"/healthz", {"GET", "HEAD"}, "", false},
      {"/nodes", {"GET", "HEAD", "POST"}, json{{"name", "a-4"}, {"address", fourth_address}}.dump(), true},
      {"/nodes/a-1", {"GET", "HEAD", "DELETE"}, "", false},
      {"/nodes/a-1/drain", {"POST"}, "", false},
      {"/nodes/a-2/undrain", {"POST"}, "", false},
      {"/nodes/a-1/weight", {"PUT"}, R"({"weight": 3})", true},
      {"/ring", {"GET", "HEAD"}, "", false},
      {"/ring/lookup?key=/obj/1", {"GET", "HEAD"}, "", false},
      {"/members", {"GET", "HEAD"}, "", false},
      {"/reload", {"POST"}, "", false},
      {"/reload?dry_run=1", {"POST"}, "", false},
      {"/metrics", {"GET", "HEAD"}, "", false},
      {"/", {"GET", "HEAD"}, "", false},
  };
}

std::string mutating_method(const Route& r) {
  for (const std::string& m : r.allowed) {
    if (is_mutating(m)) return m;
  }
  return "";
}

// "GET, HEAD, POST" -> {"GET", "HEAD", "POST"}.
std::set<std::string> split_allow(const std::string& allow) {
  std::set<std::string> out;
  std::stringstream in(allow);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.insert(item);
  }
  return out;
}

Headers bearer(std::string_view token) { return {{"Authorization", "Bearer " + std::string(token)}}; }

class AdminMatrix : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* n : {"a-1", "a-2", "a-3"}) backends_.push_back(std::make_unique<DemoBackend>(dir_, n));
    fourth_ = std::make_unique<DemoBackend>(dir_, "a-4");
    table_ = routes(fourth_->address());
  }

  // a-3 at `a3_weight`: the file a reload would apply (2 makes a different ring).
  // `proxy_extra`: more [proxy] keys; `sections`: whole tables before the backends.
  std::string config(int a3_weight = 1, const std::string& proxy_extra = "", const std::string& sections = "") const {
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\n" << proxy_extra
      << "[admin]\nlisten = \"127.0.0.1:" << admin_port_ << "\"\ntoken = \"" << kToken << "\"\n" << sections;
    for (const auto& b : backends_) {
      c << "\n[[backend]]\nname = \"" << b->name() << "\"\naddress = \"" << b->address() << "\"\n";
      if (b->name() == "a-3") c << "weight = " << a3_weight << "\n";
    }
    return c.str();
  }

  void start(const std::string& proxy_extra = "", const std::string& sections = "") {
    port_ = free_port();
    admin_port_ = free_port();
    path_ = dir_.write_file("ringproxy.toml", config(1, proxy_extra, sections));
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", path_},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }

  Response admin(std::string_view method, std::string_view target, std::string_view body = {}, Headers headers = {}) {
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return http_request(admin_port_, method, target, headers, body);
  }

  // What a mutation could change: the ring, and each node's address, weight and state.
  std::string snapshot() {
    Response ring = admin("GET", "/ring");
    Response nodes = admin("GET", "/nodes");
    if (ring.status != 200 || nodes.status != 200) return "(unreadable: " + ring.describe() + nodes.describe() + ")";
    std::string out = json::parse(ring.body).dump();
    const json list = json::parse(nodes.body);
    for (const json& n : list["nodes"]) {
      out += " " + n["name"].get<std::string>() + "=" + n["address"].get<std::string>() + "/" +
             n["weight"].dump() + "/" + n["state"].get<std::string>();
    }
    return out;
  }

  // A 4xx answer's body must be {"error": "<non-empty>"}, as JSON.
  static void expect_error_json(const Response& r, const std::string& what) {
    EXPECT_EQ(r.header("Content-Type"), "application/json") << what << ": " << r.describe();
    json j;
    try {
      j = json::parse(r.body);
    } catch (const std::exception&) {
      ADD_FAILURE() << what << ": not JSON: " << r.describe();
      return;
    }
    ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_string()) << what << ": " << r.body;
    EXPECT_FALSE(j["error"].get<std::string>().empty()) << what;
  }

  TempDir dir_;
  std::vector<std::unique_ptr<DemoBackend>> backends_;
  std::unique_ptr<DemoBackend> fourth_;
  std::vector<Route> table_;
  uint16_t port_ = 0, admin_port_ = 0;
  std::string path_;
  std::unique_ptr<Process> proxy_;
};

// (a) Sent with the token, so that the method check is what answers.
TEST_F(AdminMatrix, EveryUnservedMethodIs405WithAllow) {
  start();
  const std::string before = snapshot();
  int checked = 0;
  for (const Route& route : table_) {
    for (const std::string& method : kMethods) {
      if (route.allowed.count(method)) continue;
      const std::string what = method + " " + route.target;
      Response r = admin(method, route.target, {}, bearer(kToken));
      ASSERT_TRUE(r.ok()) << what << ": " << r.error;
      EXPECT_EQ(r.status, 405) << what << ": " << r.describe();
      ASSERT_TRUE(r.has_header("Allow")) << what << ": " << r.describe();
      // Allow names exactly the methods the route serves, HEAD included.
      EXPECT_EQ(split_allow(r.header("Allow")), route.allowed) << what << ": Allow \"" << r.header("Allow") << "\"";
      if (method != "HEAD") {
        expect_error_json(r, what);
        EXPECT_EQ(json::parse(r.body)["error"], "method not allowed; allowed: " + r.header("Allow")) << what;
      } else {
        EXPECT_EQ(r.body, "") << what;  // HEAD: the head only
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 60);
  // A 405 for a mutating method changed nothing.
  EXPECT_EQ(snapshot(), before);
}

// The token is checked before the method: any method but GET and HEAD without the token
// is 401 even where the route would answer 405 (a caller without the token learns
// nothing about which routes take which methods, and a route added later cannot forget
// the check).
TEST_F(AdminMatrix, UnservedMutatingMethodWithoutTokenIs401) {
  start();
  for (const Route& route : table_) {
    for (const std::string& method : kMethods) {
      if (route.allowed.count(method)) continue;
      const std::string what = method + " " + route.target;
      Response r = admin(method, route.target);
      EXPECT_EQ(r.status, is_mutating(method) ? 401 : 405) << what << ": " << r.describe();
    }
  }
}

// (b)
TEST_F(AdminMatrix, MutationsNeedTheTokenReadsDoNot) {
  start();
  // Set up so that each unauthorized mutation would show: a-2 drained (for undrain), and
  // a file on disk that a reload would apply (a-3 at weight 2: a different ring).
  ASSERT_EQ(admin("POST", "/nodes/a-2/drain", {}, bearer(kToken)).status, 200);
  dir_.write_file("ringproxy.toml", config(/*a3_weight=*/2));
  const std::string before = snapshot();
  ASSERT_NE(before.find("/draining"), std::string::npos) << before;

  std::string wrong = std::string(kToken);
  wrong.back() = wrong.back() == 'x' ? 'y' : 'x';
  std::string upper = std::string(kToken);
  std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) { return static_cast<char>(::toupper(c)); });
  const std::vector<std::pair<std::string, Headers>> bad_auth = {
      {"no Authorization", {}},
      {"same length, last byte wrong", bearer(wrong)},
      {"a prefix of the token", bearer(kToken.substr(0, kToken.size() - 1))},
      {"the token and one byte more", bearer(std::string(kToken) + "x")},
      {"the token in another case", bearer(upper)},
      {"an empty token", {{"Authorization", "Bearer "}}},
      {"the scheme alone", {{"Authorization", "Bearer"}}},
      {"an empty header", {{"Authorization", ""}}},
      {"Basic scheme", {{"Authorization", "Basic " + std::string(kToken)}}},
      {"Token scheme", {{"Authorization", "Token " + std::string(kToken)}}},
      {"no scheme", {{"Authorization", std::string(kToken)}}},
      {"the token in another header", {{"X-Admin-Token", std::string(kToken)}}},
  };
  int checked = 0;
  for (const Route& route : table_) {
    const std::string method = mutating_method(route);
    if (method.empty()) continue;
    for (const auto& [why, headers] : bad_auth) {
      const std::string what = method + " " + route.target + " with " + why;
      Response r = admin(method, route.target, route.body, headers);
      EXPECT_EQ(r.status, 401) << what << ": " << r.describe();
      EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer") << what;
      expect_error_json(r, what);
      ++checked;
    }
    EXPECT_EQ(snapshot(), before) << "an unauthorized " << method << " " << route.target << " changed something";
  }
  EXPECT_EQ(checked, 7 * static_cast<int>(bad_auth.size()));

  // Every read-only route answers without a token, GET and HEAD alike.
  for (const Route& route : table_) {
    if (!mutating_method(route).empty()) continue;
    for (const char* method : {"GET", "HEAD"}) {
      Response r = admin(method, route.target);
      EXPECT_EQ(r.status, 200) << method << " " << route.target << ": " << r.describe();
    }
  }
  // GET /nodes and GET /nodes/a-1 share their routes with POST and DELETE.
  EXPECT_EQ(admin("GET", "/nodes/a-1").status, 200);

  // With the token (and the scheme in any case, RFC 9110 section 11.1), each mutation
  // is carried out: the 401s above were for the token alone.
  const Headers ok = bearer(kToken);
  json j = json::parse(admin("POST", "/nodes/a-1/drain", {}, ok).body);
  EXPECT_EQ(j["state"], "draining") << j.dump();
  j = json::parse(admin("POST", "/nodes/a-2/undrain", {}, {{"Authorization", "bearer " + std::string(kToken)}}).body);
  EXPECT_EQ(j["state"], "up") << j.dump();
  const std::string fp = json::parse(admin("GET", "/ring").body)["fingerprint"];
  Response w = admin("PUT", "/nodes/a-1/weight", R"({"weight": 3})", ok);
  EXPECT_EQ(w.status, 200) << w.describe();
  EXPECT_NE(json::parse(admin("GET", "/ring").body)["fingerprint"], fp);
  Response add = admin("POST", "/nodes", table_[1].body, ok);
  EXPECT_EQ(add.status, 201) << add.describe();
  Response del = admin("DELETE", "/nodes/a-1", {}, ok);
  EXPECT_EQ(del.status, 200) << del.describe();
  EXPECT_EQ(admin("GET", "/nodes/a-1").status, 404);
  Response dry = admin("POST", "/reload?dry_run=1", {}, ok);
  EXPECT_EQ(dry.status, 200) << dry.describe();
  Response reload = admin("POST", "/reload", {}, ok);
  EXPECT_EQ(reload.status, 200) << reload.describe();
  // The file's three nodes again, a-3 at weight 2.
  j = json::parse(admin("GET", "/nodes/a-3").body);
  EXPECT_EQ(j["weight"], 2) << j.dump();
  EXPECT_EQ(json::parse(admin("GET", "/nodes").body)["nodes"].size(), 3u);
}

// (c) The limit is the server's, before any route: every route, with the token, by
// Content-Length (answered as soon as the head is read: no body is sent) and chunked
// (answered at the byte past the limit: exactly that many are sent, so that the server
// has read everything when it closes, and the answer is not lost to a reset).
TEST_F(AdminMatrix, BodiesOverTheLimitAre413OnEveryRoute) {
  start();
  const std::string before = snapshot();
  const std::string over(kMaxBody + 1, ' ');
  std::ostringstream size_hex;
  size_hex << std::hex << over.size();
  for (const Route& route : table_) {
    const std::string method = mutating_method(route).empty() ? "GET" : mutating_method(route);
    const std::string what = method + " " + route.target;
    Headers head = bearer(kToken);
    head.emplace_back("Host", "admin");
    head.emplace_back("Content-Type", "application/json");

    Headers by_length = head;
    by_length.emplace_back("Content-Length", std::to_string(over.size()));
    Conn a("127.0.0.1", admin_port_);
    ASSERT_TRUE(a.send_raw(format_request(method, route.target, by_length))) << what << ": " << a.error();
    Response r = a.read_response();
    EXPECT_EQ(r.status, 413) << what << " (Content-Length): " << r.describe();
    expect_error_json(r, what + " (Content-Length)");
    EXPECT_EQ(a.wait_close(Millis(5000)), CloseKind::eof) << what;

    Headers chunked = head;
    chunked.emplace_back("Transfer-Encoding", "chunked");
    Conn b("127.0.0.1", admin_port_);
    ASSERT_TRUE(b.send_raw(format_request(method, route.target, chunked) + size_hex.str() + "\r\n" + over))
        << what << ": " << b.error();
    r = b.read_response();
    EXPECT_EQ(r.status, 413) << what << " (chunked): " << r.describe();
    expect_error_json(r, what + " (chunked)");
  }
  EXPECT_EQ(snapshot(), before);

  // Exactly at the limit is not too large: the JSON routes parse it (and refuse
  // 65,536 spaces as invalid JSON).
  for (const Route& route : table_) {
    if (!route.json_body) continue;
    Response r = admin(mutating_method(route), route.target, std::string(kMaxBody, ' '), bearer(kToken));
    EXPECT_EQ(r.status, 400) << route.target << ": " << r.describe();
  }
}

// (d)
TEST_F(AdminMatrix, MalformedJsonIs400WithErrorOnEveryJsonRoute) {
  start();
  const std::string before = snapshot();
  struct Bad {
    std::string why;
    std::string body;
    std::string error_prefix;  // what the error starts with
  };
  const std::vector<Bad> bad = {
      {"empty", "", "invalid JSON: "},
      {"cut short", R"({"weight": )", "invalid JSON: "},
      {"an open brace", "{", "invalid JSON: "},
      {"not JSON", "weight=3", "invalid JSON: "},
      {"a trailing comma", R"({"weight": 3,})", "invalid JSON: "},
      {"single quotes", "{'weight': 3}", "invalid JSON: "},
      {"two documents", R"({"weight": 3} {"weight": 4})", "invalid JSON: "},
      {"a NUL byte", std::string("{\"weight\": 3\0}", 14), "invalid JSON: "},
      {"invalid UTF-8", "{\"name\": \"\xff\xfe\"}", "invalid JSON: "},
      {"a number out of range", R"({"weight": 1e999})", "invalid JSON: "},
      {"unbalanced nesting", std::string(20000, '['), "invalid JSON: "},
      {"an array", "[1, 2]", "expected a JSON object"},
      {"a string", R"("weight")", "expected a JSON object"},
      {"null", "null", "expected a JSON object"},
      {"deep nesting", std::string(20000, '[') + std::string(20000, ']'), "expected a JSON object"},
  };
  int checked = 0;
  for (const Route& route : table_) {
    if (!route.json_body) continue;
    const std::string method = mutating_method(route);
    for (const Bad& b : bad) {
      const std::string what = method + " " + route.target + " with " + b.why;
      Response r = admin(method, route.target, b.body, bearer(kToken));
      ASSERT_TRUE(r.ok()) << what << ": " << r.error << "; " << proxy_->describe();
      EXPECT_EQ(r.status, 400) << what << ": " << r.describe();
      expect_error_json(r, what);
      if (r.status == 400) {
        const std::string error = json::parse(r.body)["error"];
        EXPECT_EQ(error.rfind(b.error_prefix, 0), 0u) << what << ": " << error;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2 * static_cast<int>(bad.size()));
  EXPECT_TRUE(proxy_->running()) << proxy_->describe();
  EXPECT_EQ(snapshot(), before);
}

// The value of ringproxy_gossip_dropped_total{cause="CAUSE"} in GET /metrics, -1 if absent.
long long dropped(const std::string& metrics, const std::string& cause) {
  const std::string needle = "ringproxy_gossip_dropped_total{cause=\"" + cause + "\"} ";
  const size_t at = metrics.find(needle);
  if (at == std::string::npos) return -1;
  return std::stoll(metrics.substr(at + needle.size()));
}

// Garbage on the gossip port of an instance without a secret: shorter than a codec
// header, the transport drops it as malformed; longer, the transport hands it on and the
// decoder refuses it (undecodable). Nothing is answered, so the wait is on the debug log
// line the agent writes per undecodable datagram; datagrams from one socket over
// loopback arrive in order, so once the last one is logged, all have been dealt with.
TEST_F(AdminMatrix, GossipGarbageIsCountedOnMetrics) {
  const uint16_t gossip_port = free_port();
  start("log_level = \"debug\"\n",
        "[gossip]\nbind = \"127.0.0.1:" + std::to_string(gossip_port) + "\"\nname = \"m0\"\n");
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(gossip_port);
  const auto send = [&](const std::string& bytes) {
    EXPECT_EQ(::sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(bytes.size()));
  };
  const std::vector<std::string> undecodable = {
      "ABCD",                                        // wrong magic
      std::string("\xA7\x02\x00\x01", 4),            // unknown version
      std::string("\xA7\x01\x80\x01", 4),            // unknown flag bit
      std::string("\xA7\x01\x00\x63", 4) + "body",   // unknown type
      std::string("\xA7\x01\x00\x01", 4),            // a ping with no body
      std::string(1000, '\xff'),
  };
  for (const std::string& s : {std::string(), std::string("a"), std::string("\xA7\x01\x00", 3)}) send(s);
  for (const std::string& d : undecodable) {
    const size_t from = proxy_->output_size(Output::err);
    send(d);
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "gossip: dropped a datagram", kDefaultTimeout, from))
        << proxy_->describe();
  }
  ::close(fd);
  Response m = admin("GET", "/metrics");
  ASSERT_EQ(m.status, 200) << m.describe();
  EXPECT_EQ(dropped(m.body, "malformed"), 3) << m.body;
  EXPECT_EQ(dropped(m.body, "undecodable"), static_cast<long long>(undecodable.size())) << m.body;
  for (const char* cause : {"unauthenticated", "unknown_key", "forged", "replayed", "oversized"}) {
    EXPECT_EQ(dropped(m.body, cause), 0) << cause;
  }
}

// Paths name one route only, and the token survives the usual header whitespace.
TEST_F(AdminMatrix, PathsAreNotReinterpretedAndTokenWhitespaceIsTrimmed) {
  start();
  const std::string before = snapshot();
  // "%2F" would turn /nodes/a-1%2Fdrain into /nodes/a-1/drain after decoding.
  for (const char* target : {"/nodes/a-1%2Fdrain", "/nodes/a-1%2fdrain", "/nodes%2Fa-1"}) {
    Response r = admin("POST", target, {}, bearer(kToken));
    EXPECT_EQ(r.status, 400) << target << ": " << r.describe();
  }
  // A trailing slash is not the node itself.
  EXPECT_EQ(admin("DELETE", "/nodes/a-1/", {}, bearer(kToken)).status, 404);
  EXPECT_EQ(snapshot(), before);
  // RFC 9110 5.5: trailing whitespace is not part of the field value.
  EXPECT_EQ(admin("POST", "/nodes/a-1/drain", {}, {{"Authorization", "Bearer " + std::string(kToken) + " \t"}}).status,
            200);
}

}  // namespace
}  // namespace ringproxy::integration
