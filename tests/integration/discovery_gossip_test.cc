// [[discover]] with gossip, end to end (SPEC "Backends by name (DNS)"): three gossiping
// ringproxy instances, each with its own resolver (three dnsmasq processes on loopback,
// the same SRV records at first). When ONE resolver's records change, every instance
// takes the change (equal ring fingerprints, keys routed alike) though the other two
// resolvers still answer the old records; when those change the same way later, nothing
// flips back. An instance restarted while its resolver still answers the OLD records
// adopts the shared set rather than imposing the old one: when it joins before its first
// answer, and when its first answer comes first (the others SIGSTOPped meanwhile).
// AStaleNodeTheClusterNeverHadIsNotImposedByALateJoiner fails on the code of this
// commit: a late joiner's early first answer adds a node the cluster never had to every
// instance's ring, for good (see the test).
//
// Every wait is a bounded poll of the instances' admin API or logs.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <map>
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
using Clock = std::chrono::steady_clock;

const char kSource[] = "_http._tcp.tier.test";

// A port free a moment ago for both TCP and UDP on 127.0.0.1 (dnsmasq binds both, and
// must be told its port). Racy by nature: the caller retries when dnsmasq cannot bind.
uint16_t free_dns_port() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    uint16_t port = 0;
    if (::bind(tcp, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
        ::getsockname(tcp, reinterpret_cast<sockaddr*>(&sa), &len) == 0 &&
        ::bind(udp, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      port = ntohs(sa.sin_port);
    }
    ::close(tcp);
    ::close(udp);
    if (port != 0) return port;
  }
  return 0;
}

// Polls `done` until it holds or `timeout` passes (each poll is itself a bounded admin
// request, so this is a bounded busy wait, not a sleep).
bool eventually(const std::function<bool()>& done, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  do {
    if (done()) return true;
  } while (Clock::now() < deadline);
  return done();
}

struct Instance {
  std::string name;
  uint16_t port = 0, admin = 0, gossip = 0, dns = 0;
  std::unique_ptr<Process> process;
  std::unique_ptr<Process> dnsmasq;
};

class DiscoveryGossip : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* n : {"d1", "d2", "d3", "d4"}) backends_.push_back(std::make_unique<DemoBackend>(dir_, n));
    for (int i = 0; i < 3; ++i) {
      Instance in;
      in.name = "p" + std::to_string(i);
      in.port = free_port();
      in.admin = free_port();
      in.gossip = free_port();
      instances_.push_back(std::move(in));
    }
  }

  // Ring node names for backends `which` (indexes into backends_): "be.test:PORT".
  std::set<std::string> names(const std::vector<int>& which) const {
    std::set<std::string> out;
    for (int i : which) out.insert("be.test:" + std::to_string(backends_[i]->port()));
    return out;
  }

  // (Re)starts instance `in`'s dnsmasq, serving SRV records for backends `which`, on its
  // port (a new one the first time). dnsmasq says "started, version" once bound.
  void start_dns(Instance& in, const std::vector<int>& which) {
    if (in.dnsmasq) in.dnsmasq->kill();
    std::string failures;
    for (int attempt = 0; attempt < 10; ++attempt) {
      if (in.dns == 0 || attempt > 0) {
        // A port must stay the same once the instance's config names it.
        if (in.process && in.dns != 0) break;
        in.dns = free_dns_port();
      }
      std::vector<std::string> args = {"--keep-in-foreground", "--conf-file=/dev/null", "--port=" + std::to_string(in.dns),
                                       "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                                       "--user=root", "--group=root", "--pid-file=", "--local=/test/",
                                       "--local-ttl=1", "--log-facility=-", "--host-record=be.test,127.0.0.1"};
      for (int i : which) {
        args.push_back("--srv-host=" + std::string(kSource) + ",be.test," + std::to_string(backends_[i]->port()) + ",0,1");
      }
      in.dnsmasq = std::make_unique<Process>("/usr/sbin/dnsmasq", args, dir_.path(), "dnsmasq-" + in.name);
      if (in.dnsmasq->wait_for_output(Output::err, "started, version", Millis(5000))) return;
      failures += "port " + std::to_string(in.dns) + ": " + in.dnsmasq->describe() + "\n";
    }
    FAIL() << "dnsmasq for " << in.name << " did not start:\n" << failures;
  }

  std::string config(const Instance& in) const {
    std::ostringstream c;
    c << "[proxy]\nlisten = \"127.0.0.1:" << in.port << "\"\nworkers = 1\n"
      << "[admin]\nlisten = \"127.0.0.1:" << in.admin << "\"\n"
      << "[health]\ninterval_ms = 200\ntimeout_ms = 100\nfall = 1\nrise = 1\n"
      << "[gossip]\nbind = \"127.0.0.1:" << in.gossip << "\"\nname = \"" << in.name << "\"\ninterval_ms = 100\n"
      << "secret = \"a shared secret of 32 bytes long\"\nseeds = [";
    for (size_t i = 0; i < instances_.size(); ++i) {
      c << (i ? ", " : "") << "\"127.0.0.1:" << instances_[i].gossip << "\"";
    }
    c << "]\n"
      << "[dns]\nresolvers = [\"127.0.0.1:" << in.dns << "\"]\ntimeout_ms = 500\nmin_ttl_ms = 200\n"
      << "max_ttl_ms = 1000\nhold_ms = 600000\n"
      << "[[discover]]\nname = \"" << kSource << "\"\ntype = \"srv\"\n";
    return c.str();
  }

  void start(Instance& in) {
    const std::string path = dir_.write_file(in.name + ".toml", config(in));
    in.process = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", path},
                                           dir_.path(), in.name);
    ASSERT_TRUE(in.process->wait_for_output(Output::err, "listening on")) << in.process->describe();
  }

  std::string fingerprint(const Instance& in) {
    ReadOptions o;
    o.timeout = Millis(2000);
    Response r = http_get(in.admin, "/ring", {}, o);
    if (r.status != 200) return "(" + r.describe() + ")";
    return json::parse(r.body)["fingerprint"];
  }

  // The ring's node names from GET /nodes.
  std::set<std::string> nodes(const Instance& in) {
    ReadOptions o;
    o.timeout = Millis(2000);
    Response r = http_get(in.admin, "/nodes", {}, o);
    std::set<std::string> out;
    if (r.status != 200) return {"(" + r.describe() + ")"};
    const json body = json::parse(r.body);
    for (const json& n : body["nodes"]) out.insert(n["name"].get<std::string>());
    return out;
  }

  // All instances have `want` as their nodes and one fingerprint.
  bool agree_on(const std::set<std::string>& want, std::string* why = nullptr) {
    std::ostringstream w;
    bool ok = true;
    const std::string f0 = fingerprint(instances_[0]);
    for (Instance& in : instances_) {
      if (!in.process) continue;  // not started yet
      const std::string f = fingerprint(in);
      const std::set<std::string> n = nodes(in);
      w << in.name << ": " << f << " [";
      for (const std::string& s : n) w << s << " ";
      w << "]\n";
      ok = ok && f == f0 && n == want;
    }
    if (why) *why = w.str();
    return ok;
  }

  // The set stays agreed on for `span` (several TTLs and gossip periods): nothing flips.
  void stays_agreed(const std::set<std::string>& want, Millis span, const std::string& when) {
    const auto until = Clock::now() + span;
    int polls = 0;
    while (Clock::now() < until) {
      std::string why;
      ++polls;
      ASSERT_TRUE(agree_on(want, &why)) << when << ": agreement lost after " << polls << " polls:\n" << why;
    }
  }

  // Waits until the instances agree on `want`; returns how long it took.
  Millis converge(const std::set<std::string>& want, const std::string& when, Millis timeout = Millis(6000)) {
    const auto t0 = Clock::now();
    std::string why;
    const bool ok = eventually([&] { return agree_on(want, &why); }, timeout);
    const auto took = std::chrono::duration_cast<Millis>(Clock::now() - t0);
    EXPECT_TRUE(ok) << when << ": no agreement within " << timeout.count() << " ms:\n" << why << logs();
    std::cout << "[ " << when << " ] agreed after " << took.count() << " ms\n";
    return took;
  }

  // Every instance routes every key alike: GET /ring/lookup for 300 keys and 30
  // requests through each proxy (same X-Backend). Health may lag a moment on a node just
  // found, so the lookups are polled until they agree (bounded).
  void route_alike(const std::string& when) {
    std::string diff;
    const bool ok = eventually(
        [&] {
          diff.clear();
          for (int k = 0; k < 300; ++k) {
            const std::string key = "key-" + std::to_string(k);
            std::string first;
            for (Instance& in : instances_) {
              Response r = http_get(in.admin, "/ring/lookup?key=" + key);
              const std::string node = r.status == 200 ? json::parse(r.body)["node"].dump() : r.describe();
              if (&in == &instances_[0]) first = node;
              else if (node != first) diff += key + ": " + in.name + " " + node + " vs p0 " + first + "\n";
            }
            if (!diff.empty()) return false;
          }
          return true;
        },
        Millis(4000));
    EXPECT_TRUE(ok) << when << ": lookups differ:\n" << diff.substr(0, 2000);
    for (int k = 0; k < 30; ++k) {
      const std::string target = "/alike/" + std::to_string(k);
      Response r0 = http_get(instances_[0].port, target);
      EXPECT_EQ(r0.status, 200) << when << " " << r0.describe();
      for (int i : {1, 2}) {
        Response r = http_get(instances_[i].port, target);
        EXPECT_EQ(r.header("X-Backend"), r0.header("X-Backend")) << when << " " << target << " at " << instances_[i].name;
      }
    }
  }

  std::string logs() {
    std::string out;
    for (Instance& in : instances_) {
      if (!in.process) continue;
      const std::string e = in.process->stderr_text();
      out += "\n--- " + in.name + " stderr (tail) ---\n" + e.substr(e.size() > 3000 ? e.size() - 3000 : 0);
    }
    return out;
  }

  // Waits until instance `in`'s own resolver has answered `count` nodes, changed
  // (its log line), from byte `from` of its log.
  void resolver_saw_change(Instance& in, size_t from) {
    ASSERT_TRUE(in.process->wait_for_output(Output::err, std::string("discover ") + kSource + ": 3 nodes (was 3 nodes)",
                                            Millis(5000), from))
        << in.process->describe();
  }

  std::vector<std::unique_ptr<DemoBackend>> backends_;
  std::vector<Instance> instances_;
  TempDir dir_;
};

TEST_F(DiscoveryGossip, OneResolverSeesAChangeAndAllInstancesTakeIt) {
  const std::vector<int> old_set = {0, 1, 2}, new_set = {0, 2, 3};  // d4 added, d2 removed
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start_dns(in, old_set));
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start(in));
  converge(names(old_set), "start");
  ASSERT_FALSE(HasFailure());
  route_alike("start");

  // p0's resolver alone answers the new records; p1's and p2's still the old ones.
  size_t from = instances_[0].process->output_size(Output::err);
  ASSERT_NO_FATAL_FAILURE(start_dns(instances_[0], new_set));
  ASSERT_NO_FATAL_FAILURE(resolver_saw_change(instances_[0], from));
  converge(names(new_set), "p0's resolver changed");
  ASSERT_FALSE(HasFailure());
  route_alike("p0's resolver changed");
  // p1 and p2 keep asking theirs (same old answer) meanwhile: nothing flips back.
  ASSERT_NO_FATAL_FAILURE(stays_agreed(names(new_set), Millis(1500), "after p0's change"));

  // Later, p1's and p2's resolvers change the same way: still the same set everywhere.
  for (int i : {1, 2}) {
    from = instances_[i].process->output_size(Output::err);
    ASSERT_NO_FATAL_FAILURE(start_dns(instances_[i], new_set));
    ASSERT_NO_FATAL_FAILURE(resolver_saw_change(instances_[i], from));
    ASSERT_NO_FATAL_FAILURE(stays_agreed(names(new_set), Millis(800), instances_[i].name + "'s resolver changed"));
  }
  route_alike("all resolvers changed");
}

// The restart case: the cluster shares the new set; p2 stops, its resolver goes back to
// the OLD records, and p2 starts again. Its first answer comes before it has joined (it
// has no shared set yet when its resolver answers), so whether it imposes the old set on
// the cluster or adopts the shared one depends on how its early write merges.
TEST_F(DiscoveryGossip, ARestartedInstanceWithAStaleResolverAdoptsTheSharedSet) {
  const std::vector<int> old_set = {0, 1, 2}, new_set = {0, 2, 3};
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start_dns(in, old_set));
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start(in));
  converge(names(old_set), "start");
  ASSERT_FALSE(HasFailure());
  for (int i : {0, 1}) {
    const size_t from = instances_[i].process->output_size(Output::err);
    ASSERT_NO_FATAL_FAILURE(start_dns(instances_[i], new_set));
    ASSERT_NO_FATAL_FAILURE(resolver_saw_change(instances_[i], from));
  }
  converge(names(new_set), "p0's and p1's resolvers changed");
  ASSERT_FALSE(HasFailure());
  const std::string agreed = fingerprint(instances_[0]);

  // p2 dies; its resolver (still the old records) stays; it comes back on new ports.
  instances_[2].process->kill();
  instances_[2].port = free_port();
  instances_[2].admin = free_port();
  instances_[2].gossip = free_port();
  ASSERT_NO_FATAL_FAILURE(start(instances_[2]));
  // Its own resolver answered the old set (the first answer is awaited before it listens).
  ASSERT_TRUE(instances_[2].process->wait_for_output(Output::err, std::string("discover ") + kSource + ": 3 nodes (was 0 nodes)",
                                                     Millis(5000)))
      << instances_[2].process->describe();
  converge(names(new_set), "p2 restarted with a stale resolver");
  EXPECT_EQ(fingerprint(instances_[0]), agreed) << logs();
  ASSERT_FALSE(HasFailure());
  ASSERT_NO_FATAL_FAILURE(stays_agreed(names(new_set), Millis(1500), "after p2's restart"));
  route_alike("after p2's restart");
}

// The same, with the order forced the other way: p0 and p1 are stopped (SIGSTOP) while
// p2 starts, so p2's own resolver answers (the OLD records) before p2 has joined and
// before it holds any shared set; so it shares its old set. Once p0 and p1 resume, the
// cluster must still end with the NEW set everywhere (p2's early writes lose to the
// cluster's later ones), p2 included.
TEST_F(DiscoveryGossip, AnInstanceWhoseFirstAnswerComesBeforeItJoinsAdoptsTheSharedSet) {
  const std::vector<int> old_set = {0, 1, 2}, new_set = {0, 2, 3};
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start_dns(in, old_set));
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start(in));
  converge(names(old_set), "start");
  ASSERT_FALSE(HasFailure());
  for (int i : {0, 1}) {
    const size_t from = instances_[i].process->output_size(Output::err);
    ASSERT_NO_FATAL_FAILURE(start_dns(instances_[i], new_set));
    ASSERT_NO_FATAL_FAILURE(resolver_saw_change(instances_[i], from));
  }
  converge(names(new_set), "p0's and p1's resolvers changed");
  ASSERT_FALSE(HasFailure());
  const std::string agreed = fingerprint(instances_[0]);

  instances_[2].process->kill();
  for (int i : {0, 1}) ASSERT_TRUE(instances_[i].process->send_signal(SIGSTOP));
  instances_[2].port = free_port();
  instances_[2].admin = free_port();
  instances_[2].gossip = free_port();
  ASSERT_NO_FATAL_FAILURE(start(instances_[2]));
  const std::string first_answer = std::string("discover ") + kSource + ": 3 nodes (was 0 nodes)";
  const bool answered = instances_[2].process->wait_for_output(Output::err, first_answer, Millis(5000));
  const std::string p2_log = instances_[2].process->stderr_text();
  // While the others are stopped, p2 routes by its own (old) answer.
  const std::set<std::string> alone = nodes(instances_[2]);
  for (int i : {0, 1}) ASSERT_TRUE(instances_[i].process->send_signal(SIGCONT));
  ASSERT_TRUE(answered) << p2_log;
  ASSERT_EQ(p2_log.find("gossip: member p0"), std::string::npos) << "p2 joined before its first answer:\n" << p2_log;
  EXPECT_EQ(alone, names(old_set));

  converge(names(new_set), "p2 answered the old set before joining", Millis(8000));
  EXPECT_EQ(fingerprint(instances_[0]), agreed) << logs();
  ASSERT_FALSE(HasFailure());
  ASSERT_NO_FATAL_FAILURE(stays_agreed(names(new_set), Millis(1500), "after p2's early answer"));
  route_alike("after p2's early answer");
}

// A node the cluster never had: p0 and p1 start with the NEW records and share them; p2
// then starts (p0 and p1 stopped meanwhile, so its first answer comes before it joins)
// with a resolver still answering the OLD records, one of which (d2) the cluster never
// saw, so there is no tombstone of it in the shared state. The cluster must still end
// with the NEW set: p2's first answer is not to overwrite a set the cluster shares.
TEST_F(DiscoveryGossip, AStaleNodeTheClusterNeverHadIsNotImposedByALateJoiner) {
  const std::vector<int> old_set = {0, 1, 2}, new_set = {0, 2, 3};
  ASSERT_NO_FATAL_FAILURE(start_dns(instances_[0], new_set));
  ASSERT_NO_FATAL_FAILURE(start_dns(instances_[1], new_set));
  ASSERT_NO_FATAL_FAILURE(start_dns(instances_[2], old_set));
  ASSERT_NO_FATAL_FAILURE(start(instances_[0]));
  ASSERT_NO_FATAL_FAILURE(start(instances_[1]));
  converge(names(new_set), "p0 and p1 started");
  ASSERT_FALSE(HasFailure());
  const std::string agreed = fingerprint(instances_[0]);

  for (int i : {0, 1}) ASSERT_TRUE(instances_[i].process->send_signal(SIGSTOP));
  ASSERT_NO_FATAL_FAILURE(start(instances_[2]));
  const bool answered = instances_[2].process->wait_for_output(
      Output::err, std::string("discover ") + kSource + ": 3 nodes (was 0 nodes)", Millis(5000));
  const std::string p2_log = instances_[2].process->stderr_text();
  for (int i : {0, 1}) ASSERT_TRUE(instances_[i].process->send_signal(SIGCONT));
  ASSERT_TRUE(answered) << p2_log;
  ASSERT_EQ(p2_log.find("gossip: member p0"), std::string::npos) << "p2 joined before its first answer:\n" << p2_log;

  converge(names(new_set), "p2 joined with a stale resolver", Millis(5000));
  EXPECT_EQ(fingerprint(instances_[0]), agreed) << logs();
}

// A restarted instance whose first answer was deferred to the shared set (same records
// everywhere here) still shares its resolver's later change: the "first answer" rule
// defers only the first one.
TEST_F(DiscoveryGossip, ARestartedInstancesLaterChangeIsStillShared) {
  const std::vector<int> old_set = {0, 1, 2}, new_set = {0, 2, 3};
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start_dns(in, old_set));
  for (Instance& in : instances_) ASSERT_NO_FATAL_FAILURE(start(in));
  converge(names(old_set), "start");
  ASSERT_FALSE(HasFailure());
  // p1 restarts (same records everywhere): nothing changes.
  instances_[1].process->kill();
  instances_[1].port = free_port();
  instances_[1].admin = free_port();
  instances_[1].gossip = free_port();
  ASSERT_NO_FATAL_FAILURE(start(instances_[1]));
  converge(names(old_set), "p1 restarted");
  ASSERT_FALSE(HasFailure());
  // Then p1's resolver changes: its change is taken everywhere, though its first answer
  // since its start was deferred to the shared set.
  const size_t from = instances_[1].process->output_size(Output::err);
  ASSERT_NO_FATAL_FAILURE(start_dns(instances_[1], new_set));
  ASSERT_NO_FATAL_FAILURE(resolver_saw_change(instances_[1], from));
  converge(names(new_set), "p1's resolver changed after its restart");
  ASSERT_FALSE(HasFailure());
  route_alike("p1's change after restart");
}

}  // namespace
}  // namespace ringproxy::integration
