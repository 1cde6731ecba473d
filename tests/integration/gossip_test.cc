// Several ringproxy instances gossiping on loopback (real processes, real UDP): an admin
// change at one reaches all (equal ring fingerprints, keys routed alike), one that it
// refuses reaches none; a killed
// instance is marked dead; restarted, it rejoins and catches up on what it missed; a
// stopped one leaves gracefully. Waits are on the instances' log lines.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <chrono>
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
    if (pools_) {
      // Pool "images" (g-c) in every file, behind /img/; p0 also has default's g-a, g-b.
      c << "[[pool]]\nname = \"images\"\nring = { vnodes = 50 }\nbackends = [ { name = \"i-c\", address = \""
        << backends_[2]->address() << "\" } ]\n[[route]]\npath_prefix = \"/img/\"\npool = \"images\"\n";
    }
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
  bool pools_ = false;  // every file has pool "images" and a route to it
  TempDir dir_;
};

// Issue 15: gossip carries every pool. An admin change in pool "images" at one instance
// reaches every instance, and pool "default"'s ring stays as it was everywhere (and the
// other way round); a drain of a node of "images" too; every instance routes alike.
TEST_F(GossipFixture, EveryPoolIsSharedAndAChangeInOneLeavesTheOther) {
  pools_ = true;
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start(in));
  const auto ring_of = [&](const Instance& in, const std::string& pool) -> std::string {
    Response r = http_get(in.admin, "/pools/" + pool + "/ring");
    if (r.status != 200) return "(" + r.describe() + ")";
    return json::parse(r.body)["fingerprint"];
  };
  const auto agree = [&](const std::string& pool) {
    const std::string f = ring_of(instances_[0], pool);
    return ring_of(instances_[1], pool) == f && ring_of(instances_[2], pool) == f;
  };
  const auto logs = [&] {
    std::string out;
    for (const Instance& in : instances_) out += in.name + ":\n" + in.process->stderr_text() + "\n";
    return out;
  };
  // p1 and p2 learn p0's default backends; "images" is alike in every file.
  ASSERT_TRUE(eventually([&] { return json::parse(http_get(instances_[2].admin, "/nodes").body)["nodes"].size() == 2; }))
      << logs();
  ASSERT_TRUE(eventually([&] { return agree("default") && agree("images"); })) << logs();
  const std::string default_ring = ring_of(instances_[0], "default");
  const std::string images_ring = ring_of(instances_[0], "images");

  // A node added to "images" at p1 reaches p0 and p2; "default" does not move.
  Response add = http_request(instances_[1].admin, "POST", "/pools/images/nodes", {{"Content-Type", "application/json"}},
                              json{{"name", "i-a"}, {"address", backends_[0]->address()}}.dump());
  ASSERT_EQ(add.status, 201) << add.describe();
  ASSERT_TRUE(eventually([&] { return agree("images") && ring_of(instances_[0], "images") != images_ring; })) << logs();
  EXPECT_EQ(json::parse(http_get(instances_[2].admin, "/pools/images/nodes").body)["nodes"].size(), 2u);
  for (const Instance& in : instances_) EXPECT_EQ(ring_of(in, "default"), default_ring) << in.name;
  EXPECT_TRUE(instances_[0].process->wait_for_output(Output::err, "applied shared backends of pool images: 2 nodes"))
      << logs();

  // A change in "default" at p2 leaves "images" as it now is.
  const std::string images_now = ring_of(instances_[0], "images");
  ASSERT_EQ(http_request(instances_[2].admin, "DELETE", "/nodes/g-a").status, 200);
  ASSERT_TRUE(eventually([&] { return agree("default") && ring_of(instances_[0], "default") != default_ring; })) << logs();
  for (const Instance& in : instances_) EXPECT_EQ(ring_of(in, "images"), images_now) << in.name;

  // A drain of an "images" node at p2 reaches p0 and p1; the default node of that
  // address is untouched.
  ASSERT_EQ(http_request(instances_[2].admin, "POST", "/pools/images/nodes/i-a/drain").status, 200);
  ASSERT_TRUE(eventually([&] {
    for (int i : {0, 1}) {
      if (json::parse(http_get(instances_[i].admin, "/pools/images/nodes/i-a").body)["state"] != "draining") return false;
    }
    return true;
  })) << logs();
  EXPECT_NE(json::parse(http_get(instances_[0].admin, "/nodes/g-b").body)["state"], "draining");

  // Every instance routes every key of both pools alike.
  for (int k = 0; k < 100; ++k) {
    for (const std::string prefix : {"/img/", "/page/"}) {
      const std::string key = prefix + std::to_string(k);
      const std::string at0 = http_get(instances_[0].port, key).header("X-Backend");
      EXPECT_FALSE(at0.empty()) << key;
      EXPECT_EQ(http_get(instances_[1].port, key).header("X-Backend"), at0) << key;
      EXPECT_EQ(http_get(instances_[2].port, key).header("X-Backend"), at0) << key;
    }
  }
}

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
  // The store: g-a's delete is held (for 48 h), nothing was collected or refused yet.
  const std::string tombstones = "ringproxy_gossip_entries{kind=\"tombstone\"} ";
  const size_t at = m.body.find(tombstones);
  ASSERT_NE(at, std::string::npos) << m.body;
  EXPECT_GE(std::stoul(m.body.substr(at + tombstones.size())), 1u) << m.body;
  EXPECT_NE(m.body.find("ringproxy_gossip_entries{kind=\"live\"} "), std::string::npos);
  EXPECT_NE(m.body.find("ringproxy_gossip_tombstones_collected_total 0\n"), std::string::npos);
  EXPECT_NE(m.body.find("ringproxy_gossip_refused_total 0\n"), std::string::npos);
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

// The health majority per pool: p0 and p1 see every node down (their checks fail), so
// p2 takes pool images' node out too, and says which node of which pool. (A pool's node
// travels in the health entries as "images@i-c": instance names may hold '/'.)
TEST_F(GossipFixture, AMajoritySeeingAPoolsNodeDownTakesItOutEverywhere) {
  pools_ = true;
  health_path_["p0"] = "/status/503";
  health_path_["p1"] = "/status/503";
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start(in));
  ASSERT_TRUE(instances_[2].process->wait_for_output(Output::err, "most instances see node=images/i-c down"))
      << instances_[2].process->stderr_text();
  EXPECT_EQ(json::parse(http_get(instances_[2].admin, "/pools/images/nodes/i-c").body)["state"], "down");
  EXPECT_EQ(http_get(instances_[2].port, "/img/x").status, 503);
  // A node of the same name in another pool is another node: nothing is said of "i-c".
  EXPECT_EQ(instances_[2].process->stderr_text().find("node=i-c "), std::string::npos);
}

// An admin change the instance refuses (400) must not reach the gossip state: it used
// to be written there before it was validated, so it spread, and every instance was
// handed a backend set its own admin had refused.
//
// Refusing needs a change that makes too many ring points (Ring::kMaxPoints, 2^26 =
// 67,108,864); admin input is otherwise checked before Server::apply. No single node
// reaches that (vnodes <= 10,000 x weight <= 1,000 = 10^7), so p0's ring is already
// near the limit: vnodes 10,000 and n0..n5 at weight 1,000 (60,000,000 points), n6 at
// weight 0; n6 at 1,000, or a new node at 1,000, would be 70,000,000. That costs: each
// build of p0's ring takes seconds (20 on a busy 2-core machine) and about a gigabyte,
// twice that while a change rebuilds it, and p0's control loop answers no gossip
// meanwhile, so p1 may see it suspect or dead for a moment; p0 refutes that on return.
// p1 runs the default 160 vnodes: its ring is small, and a leaked change shows there as
// a changed ring (with p0's vnodes it would be refused and logged as "shared backends
// refused" instead, which is checked for too).
TEST(GossipAdmin, ARefusedChangeIsNotShared) {
  TempDir dir;
  Instance p0{"p0", free_port(), free_port(), free_port(), nullptr};
  Instance p1{"p1", free_port(), free_port(), free_port(), nullptr};
  const auto config = [&](const Instance& in) {
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << in.port << "\"\nworkers = 1\n"
      << "[admin]\nlisten = \"127.0.0.1:" << in.admin << "\"\n"
      // Nothing listens at the backends; their checks do not matter here.
      << "[health]\ninterval_ms = 60000\n"
      << "[gossip]\nbind = \"127.0.0.1:" << in.gossip << "\"\nname = \"" << in.name << "\"\ninterval_ms = 100\n"
      << "seeds = [\"127.0.0.1:" << p0.gossip << "\", \"127.0.0.1:" << p1.gossip << "\"]\n";
    if (in.name == "p0") {
      c << "[ring]\nvnodes = 10000\n";
      for (int i = 0; i <= 6; ++i) {
        c << "\n[[backend]]\nname = \"n" << i << "\"\naddress = \"127.0.0.1:" << 20 + i << "\"\nweight = "
          << (i < 6 ? 1000 : 0) << "\n";
      }
    }
    return c.str();
  };
  // A 60,000,000-point build takes seconds, more on a busy machine.
  const Millis kBuild(120000);
  for (Instance* in : {&p0, &p1}) {
    const std::string path = dir.write_file(in->name + ".toml", config(*in));
    in->process = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", path},
                                            dir.path(), in->name);
    ASSERT_TRUE(in->process->wait_for_output(Output::err, "listening on", kBuild)) << in->process->describe();
  }
  ASSERT_TRUE(p1.process->wait_for_output(Output::err, "applied shared backends: 7 nodes", Millis(30000)))
      << p1.process->describe();

  ReadOptions slow;
  slow.timeout = kBuild;
  // name -> "ADDRESS WEIGHT", from GET /nodes: what the gossip state carries.
  const auto nodes = [&](const Instance& in) {
    std::map<std::string, std::string> out;
    Response r = http_get(in.admin, "/nodes", {}, slow);
    EXPECT_EQ(r.status, 200) << r.describe();
    if (r.status != 200) return out;
    const json body = json::parse(r.body);
    for (const json& n : body["nodes"]) {
      out[n["name"]] = n["address"].get<std::string>() + " " + std::to_string(n["weight"].get<int>());
    }
    return out;
  };
  const auto fingerprint = [&](const Instance& in) {
    Response r = http_get(in.admin, "/ring", {}, slow);
    if (r.status != 200) return "(" + r.describe() + ")";
    return json::parse(r.body)["fingerprint"].get<std::string>();
  };
  const auto request = [&](const std::string& method, const std::string& target, const json& body) {
    return http_request(p0.admin, method, target, {{"Content-Type", "application/json"}}, body.dump(), slow);
  };
  const auto p0_nodes = nodes(p0), p1_nodes = nodes(p1);
  const std::string p0_ring = fingerprint(p0), p1_ring = fingerprint(p1);
  ASSERT_EQ(p0_nodes.size(), 7u);
  ASSERT_EQ(p1_nodes, p0_nodes);

  Response weight = request("PUT", "/nodes/n6/weight", json{{"weight", 1000}});
  EXPECT_EQ(weight.status, 400) << weight.describe();
  EXPECT_NE(weight.body.find("too many ring points"), std::string::npos) << weight.body;
  Response add = request("POST", "/nodes", json{{"name", "n7"}, {"address", "127.0.0.1:27"}, {"weight", 1000}});
  EXPECT_EQ(add.status, 400) << add.describe();
  EXPECT_NE(add.body.find("too many ring points"), std::string::npos) << add.body;

  // A barrier: a drain written at p0 after the refused changes. Anything written before
  // it travels in the same packet or an earlier one (both are small, and the broadcast
  // queue sends the least-sent first), so once p1 shows the drain it has whatever p0
  // shared before it. p1 logs nothing for a drain: its /nodes is polled.
  ASSERT_EQ(request("POST", "/nodes/n0/drain", json::object()).status, 200);
  const auto deadline = std::chrono::steady_clock::now() + kDefaultTimeout;
  bool drained = false;
  while (!drained && std::chrono::steady_clock::now() < deadline) {
    Response r = http_get(p1.admin, "/nodes/n0");
    drained = r.status == 200 && json::parse(r.body)["state"] == "draining";
    if (!drained) poll(nullptr, 0, 10);
  }
  ASSERT_TRUE(drained) << "p1 never saw the drain made at p0";

  EXPECT_EQ(nodes(p1), p1_nodes);
  EXPECT_EQ(fingerprint(p1), p1_ring);
  EXPECT_EQ(nodes(p0), p0_nodes);
  EXPECT_EQ(fingerprint(p0), p0_ring);
  for (Instance* in : {&p0, &p1}) {
    EXPECT_EQ(in->process->stderr_text().find("shared backends refused"), std::string::npos)
        << in->process->stderr_text();
  }

  // p0's own state is intact: a valid change works, and reaches p1.
  const size_t from = p1.process->output_size(Output::err);
  Response valid = request("PUT", "/nodes/n6/weight", json{{"weight", 1}});
  ASSERT_EQ(valid.status, 200) << valid.describe();
  ASSERT_TRUE(p1.process->wait_for_output(Output::err, "applied shared backends: 7 nodes", Millis(30000), from))
      << p1.process->describe();
  auto expected = p0_nodes;
  expected["n6"] = "127.0.0.1:26 1";
  EXPECT_EQ(nodes(p0), expected);
  EXPECT_EQ(nodes(p1), expected);
  EXPECT_NE(fingerprint(p1), p1_ring);
}

}  // namespace
}  // namespace ringproxy::integration
