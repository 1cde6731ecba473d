// A network partition between gossiping instances, in network namespaces this test
// makes itself (ip netns, a veth pair; it needs root, and skips with the reason where
// namespaces cannot be made). Namespace "side A" holds instances pa and pb, "side C"
// holds pc; the veth pair between them is the only path. Cutting it (link down) must
// make each side declare the other dead; a change made on one side meanwhile must reach
// the other once the link is back; and both sides must find each other again by
// themselves (re-contact of seeds and dead members, swim.h), with no restart.
// Waits are on the instances' log lines; nothing sleeps.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

using nlohmann::json;

std::string ip_binary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

// Runs `ip ARGS...`; returns "" on success, else what it printed.
std::string ip(const std::vector<std::string>& args) {
  static const std::string bin = ip_binary();
  std::string cmd = bin;
  for (const std::string& a : args) cmd += " " + a;
  cmd += " 2>&1";
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return "popen failed";
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  const int status = pclose(f);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  return cmd + ": " + (out.empty() ? "failed" : out);
}

// Runs `fn` on a thread that has entered network namespace `ns`, so that its sockets
// (the harness's HTTP client) live there.
template <typename Fn>
auto in_netns(const std::string& ns, Fn fn) -> decltype(fn()) {
  decltype(fn()) result{};
  std::string error;
  std::thread t([&] {
    const std::string path = "/var/run/netns/" + ns;
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      error = "cannot enter " + path;
      if (fd >= 0) close(fd);
      return;
    }
    close(fd);
    result = fn();
  });
  t.join();
  if (!error.empty()) ADD_FAILURE() << error;
  return result;
}

struct Instance {
  std::string name, ns, gossip;  // gossip: "10.77.0.x:port"
  uint16_t admin = 0;
  std::unique_ptr<Process> process;
};

class PartitionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "network namespaces need root; skipped";
    if (ip_binary().empty()) GTEST_SKIP() << "no ip(8) binary (Debian package iproute2); skipped";
    const std::string tag = std::to_string(getpid() % 100000);
    ns_a_ = "rp-a-" + tag;
    ns_c_ = "rp-c-" + tag;
    veth_a_ = "rpva" + tag;
    veth_c_ = "rpvc" + tag;
    if (std::string e = ip({"netns", "add", ns_a_}); !e.empty()) {
      GTEST_SKIP() << "cannot make a network namespace here; skipped: " << e;
    }
    made_a_ = true;
    ASSERT_EQ(ip({"netns", "add", ns_c_}), "");
    made_c_ = true;
    // Made inside the namespaces: nothing of this test touches the host's interfaces.
    ASSERT_EQ(ip({"link", "add", veth_a_, "netns", ns_a_, "type", "veth", "peer", "name", veth_c_, "netns", ns_c_}),
              "");
    ASSERT_EQ(ip({"-n", ns_a_, "addr", "add", "10.77.0.1/24", "dev", veth_a_}), "");
    ASSERT_EQ(ip({"-n", ns_c_, "addr", "add", "10.77.0.2/24", "dev", veth_c_}), "");
    for (const auto& [ns, dev] : {std::pair{ns_a_, veth_a_}, std::pair{ns_c_, veth_c_}}) {
      ASSERT_EQ(ip({"-n", ns, "link", "set", "lo", "up"}), "");
      ASSERT_EQ(ip({"-n", ns, "link", "set", dev, "up"}), "");
    }
    instances_.resize(3);
    instances_[0] = Instance{"pa", ns_a_, "10.77.0.1:7001", 9001, nullptr};
    instances_[1] = Instance{"pb", ns_a_, "10.77.0.1:7002", 9002, nullptr};
    instances_[2] = Instance{"pc", ns_c_, "10.77.0.2:7001", 9001, nullptr};
  }

  void TearDown() override {
    for (Instance& in : instances_) in.process.reset();  // SIGKILL and reap
    if (made_a_) ip({"netns", "del", ns_a_});             // deletes the veth pair too
    if (made_c_) ip({"netns", "del", ns_c_});
  }

  std::string config(const Instance& in) const {
    std::ostringstream c;
    // The proxy and admin listeners are on the namespace's own loopback; ports repeat
    // across namespaces without clashing.
    c << "[proxy]\nlisten = \"127.0.0.1:" << in.admin + 1000 << "\"\nworkers = 1\n"
      << "[admin]\nlisten = \"127.0.0.1:" << in.admin << "\"\n"
      << "[gossip]\nbind = \"" << in.gossip << "\"\nname = \"" << in.name << "\"\ninterval_ms = 100\n"
      << "secret = \"a shared secret of 32 bytes long\"\nseeds = [";
    for (size_t i = 0; i < instances_.size(); ++i) c << (i ? ", " : "") << "\"" << instances_[i].gossip << "\"";
    c << "]\n";
    return c.str();
  }

  void start(Instance& in) {
    const std::string path = dir_.write_file(in.name + ".toml", config(in));
    in.process = std::make_unique<Process>(
        ip_binary(), std::vector<std::string>{"netns", "exec", in.ns, RINGPROXY_BIN, "-c", path}, dir_.path(),
        in.name);
    ASSERT_TRUE(in.process->wait_for_output(Output::err, "listening on")) << in.process->describe();
  }

  Response admin(const Instance& in, std::string_view method, std::string_view target, std::string body = {}) {
    return in_netns(in.ns, [&] {
      Headers h;
      if (!body.empty()) h.push_back({"Content-Type", "application/json"});
      return http_request(in.admin, method, target, h, body);
    });
  }

  // name -> state, as `in` sees its members.
  std::map<std::string, std::string> members(const Instance& in) {
    std::map<std::string, std::string> out;
    Response r = admin(in, "GET", "/members");
    if (r.status != 200) return {{"(error)", r.describe()}};
    const json body = json::parse(r.body);  // not in the for: the temporary would die first
    for (const json& m : body["members"]) {
      out[m["name"].get<std::string>()] = m["state"].get<std::string>();
    }
    if (out.empty()) out["(no members)"] = r.body;
    return out;
  }

  bool wait_log(Instance& in, std::string_view needle, size_t from) {
    return in.process->wait_for_output(Output::err, needle, Millis(60000), from);
  }

  std::string ns_a_, ns_c_, veth_a_, veth_c_;
  bool made_a_ = false, made_c_ = false;
  std::vector<Instance> instances_;
  TempDir dir_;
};

TEST_F(PartitionTest, BothSidesDeclareTheOtherDeadThenMergeByThemselves) {
  for (Instance& in : instances_) start(in);
  Instance& pa = instances_[0];
  Instance& pb = instances_[1];
  Instance& pc = instances_[2];
  for (Instance* in : {&pa, &pb, &pc}) {
    for (const char* other : {"pa", "pb", "pc"}) {
      if (in->name == other) continue;
      ASSERT_TRUE(wait_log(*in, std::string("gossip: member ") + other + " at", 0)) << in->process->describe();
    }
  }
  for (Instance* in : {&pa, &pb, &pc}) {
    const std::map<std::string, std::string> want{{"pa", "alive"}, {"pb", "alive"}, {"pc", "alive"}};
    EXPECT_EQ(members(*in), want) << in->name;
  }

  // Cut the link. Each side suspects the other, then declares it dead (pc alone has
  // nobody to confirm its suspicions, so Lifeguard lets them run to the maximum).
  size_t from_a = pa.process->output_size(Output::err);
  size_t from_c = pc.process->output_size(Output::err);
  ASSERT_EQ(ip({"-n", ns_c_, "link", "set", veth_c_, "down"}), "");
  ASSERT_TRUE(wait_log(pa, "gossip: member pc at 10.77.0.2:7001 is dead", from_a)) << pa.process->stderr_text();
  ASSERT_TRUE(wait_log(pc, "gossip: member pa at 10.77.0.1:7001 is dead", from_c)) << pc.process->stderr_text();
  ASSERT_TRUE(wait_log(pc, "gossip: member pb at 10.77.0.1:7002 is dead", from_c)) << pc.process->stderr_text();
  EXPECT_EQ(members(pb)["pc"], "dead");

  // A change on side A while cut off: pc cannot know it yet.
  from_c = pc.process->output_size(Output::err);
  Response add = admin(pa, "POST", "/nodes", json{{"name", "cache-x"}, {"address", "10.77.0.1:11211"}}.dump());
  ASSERT_EQ(add.status, 201) << add.describe();
  const std::string fp_a = json::parse(admin(pa, "GET", "/ring").body)["fingerprint"];
  EXPECT_NE(json::parse(admin(pc, "GET", "/ring").body)["fingerprint"], fp_a);

  // Heal. Nobody is restarted or told: re-contact finds the other side, push-pull
  // merges, and the accused refute.
  from_a = pa.process->output_size(Output::err);
  const size_t from_b = pb.process->output_size(Output::err);
  ASSERT_EQ(ip({"-n", ns_c_, "link", "set", veth_c_, "up"}), "");
  ASSERT_TRUE(wait_log(pa, "gossip: member pc at 10.77.0.2:7001 is alive", from_a)) << pa.process->stderr_text();
  ASSERT_TRUE(wait_log(pb, "gossip: member pc at 10.77.0.2:7001 is alive", from_b)) << pb.process->stderr_text();
  ASSERT_TRUE(wait_log(pc, "gossip: member pa at 10.77.0.1:7001 is alive", from_c)) << pc.process->stderr_text();
  ASSERT_TRUE(wait_log(pc, "gossip: member pb at 10.77.0.1:7002 is alive", from_c)) << pc.process->stderr_text();
  ASSERT_TRUE(wait_log(pc, "applied shared backends: 1 nodes", from_c)) << pc.process->stderr_text();
  EXPECT_EQ(json::parse(admin(pc, "GET", "/ring").body)["fingerprint"], fp_a);
  EXPECT_EQ(json::parse(admin(pb, "GET", "/ring").body)["fingerprint"], fp_a);
}

}  // namespace
}  // namespace ringproxy::integration
