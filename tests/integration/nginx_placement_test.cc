// [ring] placement = "nginx" end to end: a real nginx (`hash $request_uri consistent`),
// a real ringproxy and the independent reference (tools/ring_reference.py --placement
// nginx, stdlib zlib only) must send every URI to the same backend (STYLE rule 11).
//
// The reference is first held against nginx alone, so a disagreement between nginx and
// ringproxy can be told apart from a wrong reference. nginx is Debian's /usr/sbin/nginx
// (nginx-light, installed by scripts/install-deps.sh --test); it runs in the foreground,
// one process (master_process off), with every path in the test's temp dir.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

constexpr const char* kNginx = "/usr/sbin/nginx";
constexpr int kUris = 10000;

// Demo backends and the weights both balancers give them. The addresses are written
// the same way ("127.0.0.1:PORT") in nginx.conf and ringproxy.toml: nginx hashes the
// server string as written, and so must ringproxy.
class NginxPlacement : public ::testing::TestWithParam<std::vector<int>> {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kNginx, X_OK), 0)
        << kNginx << " is missing: this test compares ringproxy with a real nginx; "
        << "run scripts/install-deps.sh --test (it installs Debian's nginx-light)";
    const std::vector<int>& weights = GetParam();
    for (size_t i = 0; i < weights.size(); ++i) {
      backends_.push_back(std::make_unique<DemoBackend>(dir_, std::string("cache-") + char('a' + i)));
    }
    for (int i = 0; i < kUris; ++i) uris_.push_back("/obj/" + std::to_string(i));
  }

  std::vector<std::pair<std::string, std::string>> name_address() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& b : backends_) out.emplace_back(b->name(), b->address());
    return out;
  }

  // nginx on 127.0.0.1:PORT in front of the backends; returns its port once it accepts.
  uint16_t start_nginx() {
    const uint16_t port = free_port();
    EXPECT_NE(port, 0);
    std::string upstream = "    hash $request_uri consistent;\n";
    for (size_t i = 0; i < backends_.size(); ++i) {
      upstream += "    server " + backends_[i]->address() + " weight=" + std::to_string(GetParam()[i]) + ";\n";
    }
    nginx_ = start_private_nginx(dir_, port, upstream + "    keepalive 8;\n");
    return port;
  }

  uint16_t start_ringproxy() {
    const uint16_t port = free_port();
    EXPECT_NE(port, 0);
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << port << "\"\nworkers = 2\nretries = 0\n"
      << "\n[ring]\nplacement = \"nginx\"\n\n[admin]\nlisten = \"\"\n";
    for (size_t i = 0; i < backends_.size(); ++i) {
      c << "\n[[backend]]\nname = \"" << backends_[i]->name() << "\"\naddress = \"" << backends_[i]->address()
        << "\"\nweight = " << GetParam()[i] << "\n";
    }
    const std::string conf = dir_.write_file("ringproxy.toml", c.str());
    ringproxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", conf},
                                           dir_.path(), "ringproxy");
    EXPECT_TRUE(ringproxy_->wait_for_output(Output::err, "listening on")) << ringproxy_->describe();
    return port;
  }

  // URI -> X-Backend of its answer, every URI over one keep-alive connection.
  std::map<std::string, std::string> route_all(uint16_t port, const char* who) {
    std::map<std::string, std::string> out;
    Conn conn("127.0.0.1", port);
    EXPECT_TRUE(conn.connected()) << who << ": " << conn.error();
    if (!conn.connected()) return out;
    for (const auto& uri : uris_) {
      const Response r = conn.request("GET", uri);
      if (!r.ok() || r.status != 200) {
        ADD_FAILURE() << who << ": " << uri << ": " << r.describe();
        return out;
      }
      EXPECT_EQ(r.body, r.header("X-Backend") + " " + uri + "\n") << who;
      out[uri] = r.header("X-Backend");
    }
    return out;
  }

  // Every URI of `expected` must be in `got` with the same backend; reports the first few.
  static void expect_same(const std::map<std::string, std::string>& got, const char* got_name,
                          const std::map<std::string, std::string>& expected, const char* expected_name) {
    ASSERT_EQ(got.size(), expected.size()) << got_name << " vs " << expected_name;
    int wrong = 0;
    std::map<std::string, int> share;
    for (const auto& [uri, backend] : expected) {
      ++share[backend];
      const auto it = got.find(uri);
      const std::string other = it == got.end() ? "(nothing)" : it->second;
      if (other != backend && ++wrong <= 5) {
        ADD_FAILURE() << uri << ": " << got_name << " says " << other << ", " << expected_name << " says " << backend;
      }
    }
    EXPECT_EQ(wrong, 0) << got_name << " and " << expected_name << " disagree on " << wrong << " of "
                        << expected.size() << " URIs";
    // With 10,000 URIs every backend owns some: fewer means both sides broke alike.
    EXPECT_EQ(share.size(), GetParam().size()) << expected_name << " used only " << share.size() << " backends";
  }

  TempDir dir_;
  std::vector<std::unique_ptr<DemoBackend>> backends_;
  std::vector<std::string> uris_;
  std::unique_ptr<Process> nginx_;
  std::unique_ptr<Process> ringproxy_;
};

// The reference against nginx alone: independent of ringproxy's C++ placement.
TEST_P(NginxPlacement, ReferenceMatchesRealNginx) {
  const auto reference = reference_map_nginx(name_address(), uris_, GetParam());
  ASSERT_EQ(reference.size(), uris_.size());
  const uint16_t port = start_nginx();
  ASSERT_FALSE(HasFailure());
  const auto via_nginx = route_all(port, "nginx");
  ASSERT_FALSE(HasFailure());
  expect_same(via_nginx, "nginx", reference, "the reference");
}

// ringproxy with placement = "nginx" on the same backends, addresses and weights.
TEST_P(NginxPlacement, RingproxyRoutesEveryUriAsNginxDoes) {
  const auto reference = reference_map_nginx(name_address(), uris_, GetParam());
  ASSERT_EQ(reference.size(), uris_.size());
  const uint16_t nginx_port = start_nginx();
  ASSERT_FALSE(HasFailure());
  const uint16_t ringproxy_port = start_ringproxy();
  ASSERT_FALSE(HasFailure());
  const auto via_nginx = route_all(nginx_port, "nginx");
  const auto via_ringproxy = route_all(ringproxy_port, "ringproxy");
  ASSERT_FALSE(HasFailure());
  expect_same(via_ringproxy, "ringproxy", via_nginx, "nginx");
  expect_same(via_ringproxy, "ringproxy", reference, "the reference");
}

INSTANTIATE_TEST_SUITE_P(Weights, NginxPlacement,
                         ::testing::Values(std::vector<int>{1, 1, 1, 1}, std::vector<int>{1, 1, 2, 1}),
                         [](const ::testing::TestParamInfo<std::vector<int>>& p) {
                           std::string name = "w";
                           for (int w : p.param) name += std::to_string(w);
                           return name;
                         });

}  // namespace
}  // namespace ringproxy::integration
