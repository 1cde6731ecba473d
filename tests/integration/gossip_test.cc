// Several ringproxy instances gossiping on loopback (real processes, real UDP): an admin
// change at one reaches all (equal ring fingerprints, keys routed alike); a killed
// instance is marked dead; restarted, it rejoins and catches up on what it missed; a
// stopped one leaves gracefully. Waits are on the instances' log lines.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

using nlohmann::json;

struct Instance {
  std::string name;
  uint16_t port = 0, admin = 0, gossip = 0;
  std::unique_ptr<Process> process;
};

class GossipFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* n : {"g-a", "g-b", "g-c"}) backends_.push_back(std::make_unique<DemoBackend>(dir_, n));
    for (int i = 0; i < 3; ++i) {
      Instance in;
      in.name = "p" + std::to_string(i);
      in.port = free_port();
      in.admin = free_port();
      in.gossip = free_port();
      instances_.push_back(std::move(in));
    }
  }

  // p0's file lists g-a and g-b; the others list no backends and learn them.
  std::string config(const Instance& in) const {
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << in.port << "\"\nworkers = 1\n"
      << "[admin]\nlisten = \"127.0.0.1:" << in.admin << "\"\n"
      << "[health]\ninterval_ms = 200\ntimeout_ms = 100\nfall = 1\nrise = 1\n"
      << (health_path_.count(in.name) ? "path = \"" + health_path_.at(in.name) + "\"\n" : std::string())
      << "[gossip]\nbind = \"127.0.0.1:" << in.gossip << "\"\nname = \"" << in.name << "\"\ninterval_ms = 100\n"
      << "secret = \"a shared secret of 32 bytes long\"\nseeds = [";
    for (size_t i = 0; i < instances_.size(); ++i) {
      c << (i ? ", " : "") << "\"127.0.0.1:" << instances_[i].gossip << "\"";
    }
    c << "]\n";
    if (in.name == "p0") {
      for (size_t i = 0; i < 2; ++i) {
        c << "\n[[backend]]\nname = \"" << backends_[i]->name() << "\"\naddress = \"" << backends_[i]->address()
          << "\"\n";
      }
    }
    return c.str();
  }

  void start(Instance& in) {
    const std::string path = dir_.write_file(in.name + ".toml", config(in));
    in.process = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", path},
                                           dir_.path(), in.name);
    ASSERT_TRUE(in.process->wait_for_output(Output::err, "listening on")) << in.process->describe();
  }

  std::string fingerprint(const Instance& in) {
    Response r = http_get(in.admin, "/ring");
    if (r.status != 200) return "(" + r.describe() + ")";
    return json::parse(r.body)["fingerprint"];
  }

  std::vector<std::unique_ptr<DemoBackend>> backends_;
  std::vector<Instance> instances_;
  std::map<std::string, std::string> health_path_;  // instance -> health.path
  TempDir dir_;
};

TEST_F(GossipFixture, InstancesAgreeLeaveRejoinAndCatchUp) {
  for (Instance& in : instances_) start(in);
  // p1 and p2 learn p0's backends.
  for (int i : {1, 2}) {
    ASSERT_TRUE(instances_[i].process->wait_for_output(Output::err, "applied shared backends: 2 nodes"))
        << instances_[i].process->describe();
  }
  EXPECT_EQ(fingerprint(instances_[1]), fingerprint(instances_[0]));
  EXPECT_EQ(fingerprint(instances_[2]), fingerprint(instances_[0]));

  // An admin change at p1 reaches everyone; every instance routes every key alike.
  Response add = http_request(instances_[1].admin, "POST", "/nodes", {{"Content-Type", "application/json"}},
                              json{{"name", "g-c"}, {"address", backends_[2]->address()}}.dump());
  ASSERT_EQ(add.status, 201) << add.describe();
  for (int i : {0, 2}) {
    ASSERT_TRUE(instances_[i].process->wait_for_output(Output::err, "applied shared backends: 3 nodes"))
        << instances_[i].process->describe();
  }
  const std::string agreed = fingerprint(instances_[0]);
  EXPECT_EQ(fingerprint(instances_[1]), agreed);
  EXPECT_EQ(fingerprint(instances_[2]), agreed);
  for (int k = 0; k < 200; ++k) {
    const std::string key = "/shared/" + std::to_string(k);
    const std::string at0 = http_get(instances_[0].port, key).header("X-Backend");
    EXPECT_EQ(http_get(instances_[1].port, key).header("X-Backend"), at0) << key;
    EXPECT_EQ(http_get(instances_[2].port, key).header("X-Backend"), at0) << key;
  }
  json members = json::parse(http_get(instances_[0].admin, "/members").body);
  EXPECT_EQ(members["self"], "p0");
  ASSERT_EQ(members["members"].size(), 3u);
  for (const json& m : members["members"]) EXPECT_EQ(m["state"], "alive") << m.dump();

  // p2 is killed: the others declare it dead.
  instances_[2].process->kill();
  ASSERT_TRUE(instances_[0].process->wait_for_output(Output::err, "gossip: member p2", Millis(30000)));
  ASSERT_TRUE(instances_[0].process->wait_for_output(Output::err, "is dead", Millis(30000)))
      << instances_[0].process->stderr_text();

  // A change while it is away ...
  ASSERT_EQ(http_request(instances_[0].admin, "DELETE", "/nodes/g-a").status, 200);
  ASSERT_TRUE(instances_[1].process->wait_for_output(Output::err, "applied shared backends: 2 nodes",
                                                     kDefaultTimeout, instances_[1].process->output_size(Output::err) / 2));
  // ... and it comes back, on new ports (a restarted instance may get a new address;
  // new ports also keep clear of other tests taking the old ones): it rejoins under its
  // name and catches up.
  instances_[2].port = free_port();
  instances_[2].admin = free_port();
  instances_[2].gossip = free_port();
  start(instances_[2]);
  ASSERT_TRUE(instances_[2].process->wait_for_output(Output::err, "applied shared backends: 2 nodes", Millis(30000)))
      << instances_[2].process->describe();
  EXPECT_EQ(fingerprint(instances_[2]), fingerprint(instances_[0]));

  // p1 stops: a graceful leave, seen as "left", not "dead".
  const size_t from = instances_[0].process->output_size(Output::err);
  ASSERT_TRUE(instances_[1].process->send_signal(SIGTERM));
  ASSERT_TRUE(instances_[0].process->wait_for_output(Output::err, "is left", Millis(30000), from))
      << instances_[0].process->stderr_text();
  auto status = instances_[1].process->wait(Millis(15000));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->describe(), "exit 0");

  Response m = http_get(instances_[0].admin, "/metrics");
  EXPECT_NE(m.body.find("ringproxy_gossip_members{state=\"left\"} 1"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("ringproxy_gossip_dropped_total{cause=\"forged\"} 0"), std::string::npos);
}

TEST_F(GossipFixture, AMajorityOfInstancesSeeingANodeDownTakesItOutEverywhere) {
  // p0 and p1 check a path that fails on every backend; p2's checks pass. Two of three
  // instances report every node down, so p2 skips them too.
  health_path_["p0"] = "/status/503";
  health_path_["p1"] = "/status/503";
  for (Instance& in : instances_) start(in);
  ASSERT_TRUE(instances_[2].process->wait_for_output(Output::err, "applied shared backends: 2 nodes"))
      << instances_[2].process->describe();
  ASSERT_TRUE(instances_[2].process->wait_for_output(Output::err, "most instances see node=g-a down"))
      << instances_[2].process->stderr_text();
  ASSERT_TRUE(instances_[2].process->wait_for_output(Output::err, "most instances see node=g-b down"));
  EXPECT_EQ(json::parse(http_get(instances_[2].admin, "/nodes/g-a").body)["state"], "down");
  EXPECT_EQ(http_get(instances_[2].port, "/anything").status, 503);
  // p2's own view is up: it does not vote, and reports nothing.
  Response m = http_get(instances_[0].admin, "/nodes/g-a");
  EXPECT_EQ(json::parse(m.body)["state"], "down");
}

}  // namespace
}  // namespace ringproxy::integration
