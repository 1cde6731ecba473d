// Several tiers seen from the admin side, end to end (SPEC "Several tiers: pools, routes
// and listeners", issue 15): a real ringproxy with [[pool]]s and [[route]]s in front of
// demo backends on loopback, driven through its admin endpoint.
// - /pools and /pools/NAME: each pool's settings and ring fingerprint, the same as its
//   /pools/NAME/ring (and /ring for "default"); unknown pools are 404 JSON.
// - /pools/NAME/nodes...: drain, undrain, add, remove and weight act on that pool alone,
//   although pools "default" and "images" both have a node named "a"; each step's
//   placement is checked against tools/ring_reference.py and real requests.
// - /metrics: every series with a backend label has pool="P",backend="B", pool first,
//   and counts land in the series of the pool that served.
// - Health per pool: the pool's own [health] path, its own down nodes, and
//   max_ejected_percent counted within the pool.
// - Reloads under load (wrk): a pool and a route added, then removed, while requests
//   flow; none fails, and the route's requests follow.
// Which backend answered is its X-Backend: each demo backend is named POOLPREFIX-NODE
// ("def-a" is node "a" of pool "default", "img-a" node "a" of pool "images").
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/load.h"

namespace ringproxy::integration {
namespace {

using nlohmann::json;
using Weighted = std::vector<std::pair<std::string, uint32_t>>;

constexpr const char* kToken = "pools-admin-token-0123";

Weighted ones(const std::vector<std::string>& names) {
  Weighted out;
  for (const std::string& n : names) out.emplace_back(n, 1);
  return out;
}

// key -> node for `nodes` (name, weight) with `vnodes` points per unit of weight, from
// tools/ring_reference.py (harness.h reference_map_weighted). Keys and names must be
// plain words.
std::map<std::string, std::string> reference(const Weighted& nodes, unsigned vnodes,
                                             const std::vector<std::string>& keys) {
  return reference_map_weighted(nodes, keys, vnodes);
}

std::vector<std::string> keys(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// The value of the series `series` (name and labels exactly as exposed, e.g.
// ringproxy_backend_up{pool="images",backend="a"}) in a /metrics text.
std::optional<double> metric(const std::string& text, const std::string& series) {
  const std::string needle = series + " ";
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    if (at != 0 && text[at - 1] != '\n') continue;
    return std::stod(text.substr(at + needle.size(), text.find('\n', at) - at - needle.size()));
  }
  return std::nullopt;
}

std::string series(const std::string& name, const std::string& pool, const std::string& backend,
                   const std::string& more = "") {
  return name + "{pool=\"" + pool + "\",backend=\"" + backend + "\"" + more + "}";
}

class PoolsAdmin : public ::testing::Test {
 protected:
  DemoBackend& backend(const std::string& name, DemoBackendOptions options = {}) {
    auto& slot = backends_[name];
    if (!slot) slot = std::make_unique<DemoBackend>(dir_, name, options);
    return *slot;
  }
  std::string address(const std::string& name) { return backend(name).address(); }

  // `nodes`: node name -> demo backend name, as a pool's `backends = [...]` value.
  std::string pool_backends(const std::vector<std::pair<std::string, std::string>>& nodes) {
    std::string out = "[";
    for (const auto& [node, demo] : nodes) {
      out += (out.size() > 1 ? ",\n  " : "\n  ") + std::string("{ name = \"") + node + "\", address = \"" +
             address(demo) + "\" }";
    }
    return out + " ]";
  }
  // The same as top-level [[backend]] tables: pool "default".
  std::string backend_tables(const std::vector<std::pair<std::string, std::string>>& nodes) {
    std::string out;
    for (const auto& [node, demo] : nodes) {
      out += "\n[[backend]]\nname = \"" + node + "\"\naddress = \"" + address(demo) + "\"\n";
    }
    return out;
  }

  // [proxy] (listen, workers = 2, `proxy_extra`), [admin] (listen, `admin_extra`), `body`.
  std::string config(const std::string& proxy_extra, const std::string& admin_extra, const std::string& body) {
    if (port_ == 0) port_ = free_port();
    if (admin_port_ == 0) admin_port_ = free_port();
    return "[proxy]\nlisten = \"127.0.0.1:" + std::to_string(port_) + "\"\nworkers = 2\n" + proxy_extra +
           "\n[admin]\nlisten = \"127.0.0.1:" + std::to_string(admin_port_) + "\"\n" + admin_extra + "\n" + body;
  }

  void start(const std::string& proxy_extra, const std::string& admin_extra, const std::string& body) {
    const std::string text = config(proxy_extra, admin_extra, body);
    ASSERT_NE(port_, 0);
    ASSERT_NE(admin_port_, 0);
    path_ = dir_.write_file("ringproxy.toml", text);
    proxy_ = std::make_unique<Process>(std::string(RINGPROXY_BIN), std::vector<std::string>{"-c", path_},
                                       dir_.path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on"))
        << "ringproxy did not start:\n" << proxy_->describe() << "\nconfig:\n" << text;
  }

  // An admin request; mutations carry the bearer token when the test set one.
  Response admin(std::string_view method, std::string_view target, std::string_view body = {},
                 Headers headers = {}) {
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    if (!token_.empty() && method != "GET" && method != "HEAD") {
      headers.emplace_back("Authorization", "Bearer " + token_);
    }
    return http_request(admin_port_, method, target, headers, body);
  }

  json admin_json(std::string_view method, std::string_view target, int expect_status, std::string_view body = {}) {
    const Response r = admin(method, target, body);
    EXPECT_EQ(r.status, expect_status) << method << " " << target << ": " << r.describe();
    EXPECT_EQ(r.header("Content-Type"), "application/json") << method << " " << target;
    try {
      return json::parse(r.body);
    } catch (const std::exception&) {
      ADD_FAILURE() << method << " " << target << ": not JSON: " << r.body;
      return json::object();
    }
  }

  std::string metrics() {
    const Response m = admin("GET", "/metrics");
    EXPECT_EQ(m.status, 200) << m.describe();
    return m.body;
  }

  std::string host_port() const { return "127.0.0.1:" + std::to_string(port_); }

  // Each key sent as the target with Host `host` over one keep-alive connection: the
  // X-Backend of each answer, "(status N)" or "(error ...)" when it was not a 200
  // whose body is the demo backend's "NAME TARGET\n" (those are test failures too).
  std::vector<std::string> served_by(const std::string& host, const std::vector<std::string>& targets) {
    Conn conn;
    std::vector<std::string> out;
    int failures = 0;
    for (const std::string& t : targets) {
      if (!conn.connected()) conn.connect("127.0.0.1", port_);
      const Response r = conn.request("GET", t, {{"Host", host}});
      if (!r.ok() || !r.keep_alive) conn.close();
      const std::string b = r.header("X-Backend");
      if (!r.ok() || r.status != 200 || r.body != b + " " + t + "\n") {
        if (++failures <= 5) ADD_FAILURE() << "GET " << t << " Host: " << host << ": " << r.describe();
        out.push_back(r.ok() ? "(status " + std::to_string(r.status) + ")" : "(error " + r.error + ")");
        continue;
      }
      out.push_back(b);
    }
    EXPECT_EQ(failures, 0) << "of " << targets.size() << " requests with Host: " << host;
    return out;
  }

  // Key -> node as the proxy's /pools/POOL/ring/lookup says, and each key's first fallback.
  std::map<std::string, std::string> lookups(const std::string& pool, const std::vector<std::string>& ks,
                                             std::map<std::string, std::string>* first_fallback = nullptr) {
    std::map<std::string, std::string> out;
    for (const std::string& k : ks) {
      const json j = admin_json("GET", "/pools/" + pool + "/ring/lookup?key=" + k, 200);
      EXPECT_EQ(j.value("pool", ""), pool) << k;
      EXPECT_EQ(j.value("key", ""), k);
      out[k] = j.value("node", "(none)");
      if (first_fallback && j.contains("fallbacks") && !j["fallbacks"].empty()) {
        (*first_fallback)[k] = j["fallbacks"][0].get<std::string>();
      }
    }
    return out;
  }

  // How many keys `got` places otherwise than `want` (with demo prefix `prefix` on
  // want's node names when given); the first few are test failures.
  static int differences(const std::vector<std::string>& ks, const std::vector<std::string>& got,
                         const std::map<std::string, std::string>& want, const std::string& prefix,
                         const std::string& what) {
    return placement_differences(ks, got, want, prefix, what);
  }
  static int differences(const std::vector<std::string>& ks, const std::map<std::string, std::string>& got,
                         const std::map<std::string, std::string>& want, const std::string& what) {
    std::vector<std::string> v;
    for (const std::string& k : ks) v.push_back(got.count(k) ? got.at(k) : "(none)");
    return differences(ks, v, want, "", what);
  }

  // Three pools: "default" (top level: a, b, c; [ring] vnodes 120), "images" (a, b, c
  // too, other backends; vnodes 100; Host img.example.com) and "api" (hash key
  // X-User, nginx placement; path /api/).
  std::string three_pools() {
    return "\n[ring]\nvnodes = 120\n" + backend_tables({{"a", "def-a"}, {"b", "def-b"}, {"c", "def-c"}}) +
           "\n[[pool]]\nname = \"images\"\nring = { vnodes = 100 }\nbackends = " +
           pool_backends({{"a", "img-a"}, {"b", "img-b"}, {"c", "img-c"}}) +
           "\n\n[[pool]]\nname = \"api\"\nhash_key = \"header:x-user\"\nring = { placement = \"nginx\" }\n"
           "backends = " +
           pool_backends({{"api-a", "api-a"}, {"api-b", "api-b"}}) +
           "\n\n[[route]]\nhost = \"img.example.com\"\npool = \"images\"\n"
           "\n[[route]]\npath_prefix = \"/api/\"\npool = \"api\"\n";
  }

  TempDir dir_;
  std::map<std::string, std::unique_ptr<DemoBackend>> backends_;
  uint16_t port_ = 0, admin_port_ = 0;
  std::string path_;
  std::string token_;
  std::unique_ptr<Process> proxy_;
};

// 1. GET /pools and /pools/NAME: each pool's settings and ring; a pool's fingerprint is
// its /pools/NAME/ring's (and /ring's for "default"); lookups per pool match the
// reference; node JSON names its pool; unknown pools and nodes are 404 JSON.
TEST_F(PoolsAdmin, PoolsListTheirSettingsAndRings) {
  start("", "", three_pools());
  if (HasFatalFailure()) return;

  const json list = admin_json("GET", "/pools", 200);
  ASSERT_TRUE(list.contains("pools") && list["pools"].is_array()) << list.dump();
  std::map<std::string, json> pools;
  std::vector<std::string> order;
  for (const json& p : list["pools"]) {
    order.push_back(p.value("name", ""));
    pools[p.value("name", "")] = p;
  }
  EXPECT_EQ(order, (std::vector<std::string>{"default", "images", "api"})) << list.dump();
  ASSERT_EQ(pools.size(), 3u) << list.dump();
  for (const auto& [name, p] : pools) {
    for (const char* field : {"name", "declared", "hash_key", "nodes", "usable", "fingerprint", "points", "vnodes",
                              "placement", "routes"}) {
      EXPECT_TRUE(p.contains(field)) << name << " lacks " << field << ": " << p.dump();
    }
  }

  const json& d = pools["default"];
  EXPECT_EQ(d["declared"], true);
  EXPECT_EQ(d["hash_key"], "uri");
  EXPECT_EQ(d["nodes"], 3);
  EXPECT_EQ(d["usable"], 3);
  EXPECT_EQ(d["vnodes"], 120);
  EXPECT_EQ(d["points"], 360);
  EXPECT_EQ(d["placement"], "xxh3");
  EXPECT_EQ(d["routes"], json::array()) << d.dump();

  const json& i = pools["images"];
  EXPECT_EQ(i["declared"], true);
  EXPECT_EQ(i["hash_key"], "uri");
  EXPECT_EQ(i["nodes"], 3);
  EXPECT_EQ(i["usable"], 3);
  EXPECT_EQ(i["vnodes"], 100);
  EXPECT_EQ(i["points"], 300);
  EXPECT_EQ(i["placement"], "xxh3");
  EXPECT_EQ(i["routes"], json::parse(R"([{"host": "img.example.com", "path_prefix": ""}])")) << i.dump();

  const json& a = pools["api"];
  EXPECT_EQ(a["hash_key"], "header:x-user");
  EXPECT_EQ(a["nodes"], 2);
  EXPECT_EQ(a["placement"], "nginx");
  EXPECT_EQ(a["points"], 320) << "nginx placement: 160 points per unit of weight";
  EXPECT_EQ(a["routes"], json::parse(R"([{"host": "", "path_prefix": "/api/"}])")) << a.dump();

  // Fingerprints: one per ring, the same from every route that shows it.
  std::set<std::string> distinct;
  for (const auto& [name, p] : pools) {
    const std::string fp = p.value("fingerprint", "");
    EXPECT_TRUE(std::regex_match(fp, std::regex("[0-9a-f]{32}"))) << name << ": " << fp;
    distinct.insert(fp);
    const json one = admin_json("GET", "/pools/" + name, 200);
    EXPECT_EQ(one, p) << "/pools/" << name << " and its /pools entry";
    const json ring = admin_json("GET", "/pools/" + name + "/ring", 200);
    EXPECT_EQ(ring.value("pool", ""), name);
    EXPECT_EQ(ring.value("fingerprint", ""), fp) << name;
    EXPECT_EQ(ring["points"], p["points"]) << name;
    double total = 0;
    for (const json& n : ring["nodes"]) total += n.value("share", 0.0);
    EXPECT_NEAR(total, 1.0, 1e-9) << name << ": " << ring.dump();
    EXPECT_EQ(ring["nodes"].size(), p["nodes"].get<size_t>()) << name;
  }
  EXPECT_EQ(distinct.size(), 3u) << "three different rings";
  const json root_ring = admin_json("GET", "/ring", 200);
  EXPECT_EQ(root_ring.value("pool", ""), "default");
  EXPECT_EQ(root_ring.value("fingerprint", ""), d.value("fingerprint", "?"));
  EXPECT_EQ(root_ring, admin_json("GET", "/pools/default/ring", 200));

  // Lookups: each pool's own ring (the reference with that pool's vnodes / placement).
  const auto ks = keys("/k/", 40);
  EXPECT_EQ(differences(ks, lookups("images", ks), reference(ones({"a", "b", "c"}), 100, ks), "images lookup"), 0);
  EXPECT_EQ(differences(ks, lookups("default", ks), reference(ones({"a", "b", "c"}), 120, ks), "default lookup"), 0);
  const auto users = keys("user-", 40);
  const auto api_want =
      reference_map_nginx({{"api-a", address("api-a")}, {"api-b", address("api-b")}}, users);
  EXPECT_EQ(differences(users, lookups("api", users), api_want, "api lookup"), 0);
  // The root's lookup is pool "default"'s.
  const json root_lookup = admin_json("GET", "/ring/lookup?key=/k/1", 200);
  EXPECT_EQ(root_lookup.value("pool", ""), "default");
  EXPECT_EQ(root_lookup, admin_json("GET", "/pools/default/ring/lookup?key=/k/1", 200));

  // Nodes name their pool; the root's nodes are default's.
  for (const std::string pool : {"default", "images", "api"}) {
    const json nodes = admin_json("GET", "/pools/" + pool + "/nodes", 200);
    ASSERT_TRUE(nodes.contains("nodes")) << nodes.dump();
    EXPECT_EQ(nodes["nodes"].size(), pools[pool]["nodes"].get<size_t>());
    for (const json& n : nodes["nodes"]) EXPECT_EQ(n.value("pool", ""), pool) << n.dump();
  }
  EXPECT_EQ(admin_json("GET", "/nodes", 200), admin_json("GET", "/pools/default/nodes", 200));
  const json img_a = admin_json("GET", "/pools/images/nodes/a", 200);
  EXPECT_EQ(img_a.value("pool", ""), "images");
  EXPECT_EQ(img_a.value("address", ""), address("img-a"));
  const json def_a = admin_json("GET", "/nodes/a", 200);
  EXPECT_EQ(def_a.value("pool", ""), "default");
  EXPECT_EQ(def_a.value("address", ""), address("def-a"));

  // Unknown: 404 with a JSON error.
  for (const std::string target : {"/pools/nope", "/pools/nope/nodes", "/pools/nope/ring",
                                   "/pools/nope/ring/lookup?key=x", "/pools/nope/nodes/a/drain"}) {
    const bool post = target.ends_with("/drain");
    const json e = admin_json(post ? "POST" : "GET", target, 404);
    EXPECT_EQ(e.value("error", ""), "no pool named \"nope\"") << target;
  }
  EXPECT_EQ(admin_json("GET", "/pools/images/nodes/nope", 404).value("error", ""),
            "no node named \"nope\" in pool images");
  EXPECT_EQ(admin_json("GET", "/pools/api/nodes/a", 404).value("error", ""), "no node named \"a\" in pool api");
  EXPECT_TRUE(admin_json("GET", "/pools/images/bogus", 404).contains("error"));
  EXPECT_EQ(admin_json("POST", "/pools", 405).value("error", ""), "method not allowed; allowed: GET, HEAD");

  // The status page: a section per pool, non-default rows named POOL/NODE.
  const Response page = admin("GET", "/");
  ASSERT_EQ(page.status, 200);
  for (const std::string pool : {"default", "images", "api"}) {
    EXPECT_NE(page.body.find("<h2>pool " + pool + "</h2>"), std::string::npos) << pool;
  }
  for (const std::string row : {"data-node=\"a\"", "data-node=\"images/a\"", "data-node=\"api/api-b\""}) {
    EXPECT_NE(page.body.find(row), std::string::npos) << row;
  }
}

// 2. Node admin per pool. Both "default" and "images" have a node "a": draining,
// adding, re-weighting and removing under /pools/images/ changes pool images alone,
// each step checked by /pools/images/ring/lookup, real requests routed to images, and
// the reference; pool default's lookups and requests do not change at all. With
// admin.token set, a mutation without it is refused.
TEST_F(PoolsAdmin, NodeAdminActsOnItsPoolOnly) {
  backend("img-d");
  token_ = kToken;
  start("", "token = \"" + std::string(kToken) + "\"\n", three_pools());
  if (HasFatalFailure()) return;

  const auto ks = keys("/k/", 300);
  const std::string img_host = "img.example.com";
  const auto img_abc = reference(ones({"a", "b", "c"}), 100, ks);
  const auto def_abc = reference(ones({"a", "b", "c"}), 120, ks);
  std::map<std::string, std::string> next_after;
  const auto img_lookup_before = lookups("images", ks, &next_after);
  ASSERT_EQ(differences(ks, img_lookup_before, img_abc, "images lookup before"), 0);
  ASSERT_EQ(differences(ks, served_by(img_host, ks), img_abc, "img-", "images before"), 0);
  ASSERT_EQ(differences(ks, served_by(host_port(), ks), def_abc, "def-", "default before"), 0);
  const std::string img_fp = admin_json("GET", "/pools/images", 200).value("fingerprint", "");
  const std::string def_fp = admin_json("GET", "/pools/default", 200).value("fingerprint", "");

  // The token: one mutation without it is refused and changes nothing.
  {
    const Response r = http_request(admin_port_, "POST", "/pools/images/nodes/a/drain");
    EXPECT_EQ(r.status, 401) << r.describe();
    EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer");
    EXPECT_EQ(admin_json("GET", "/pools/images/nodes/a", 200).value("state", ""), "up");
  }

  // Drain images/a: its keys go to each one's next node; default's a keeps its own.
  const json drained = admin_json("POST", "/pools/images/nodes/a/drain", 200);
  EXPECT_EQ(drained.value("pool", ""), "images");
  EXPECT_EQ(drained.value("name", ""), "a");
  EXPECT_EQ(drained.value("state", ""), "draining");
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "admin: drain node=images/a")) << proxy_->stderr_text();
  EXPECT_EQ(admin_json("GET", "/nodes/a", 200).value("state", ""), "up");
  EXPECT_EQ(admin_json("GET", "/pools/default/nodes/a", 200).value("state", ""), "up");
  EXPECT_EQ(admin_json("GET", "/pools/images", 200)["usable"], 2);
  EXPECT_EQ(admin_json("GET", "/pools/default", 200)["usable"], 3);
  {
    const auto img_bc = reference(ones({"b", "c"}), 100, ks);
    std::map<std::string, std::string> want = img_lookup_before;
    int moved = 0;
    for (const std::string& k : ks) {
      if (want[k] == "a") {
        want[k] = next_after[k];
        ++moved;
      }
    }
    ASSERT_GT(moved, 50) << "the test's premise: images/a holds about a third of the keys";
    EXPECT_EQ(differences(ks, want, img_bc, "the next node is the ring's without a"), 0);
    EXPECT_EQ(differences(ks, lookups("images", ks), want, "images lookup, a drained"), 0);
    EXPECT_EQ(differences(ks, served_by(img_host, ks), want, "img-", "images, a drained"), 0);
  }
  EXPECT_EQ(differences(ks, lookups("default", ks), def_abc, "default lookup, images/a drained"), 0);
  EXPECT_EQ(differences(ks, served_by(host_port(), ks), def_abc, "def-", "default, images/a drained"), 0);

  // Undrain: exactly the keys it had.
  EXPECT_EQ(admin_json("POST", "/pools/images/nodes/a/undrain", 200).value("state", ""), "up");
  EXPECT_EQ(differences(ks, lookups("images", ks), img_abc, "images lookup, a undrained"), 0);
  EXPECT_EQ(differences(ks, served_by(img_host, ks), img_abc, "img-", "images, a undrained"), 0);
  EXPECT_EQ(admin_json("GET", "/pools/images", 200).value("fingerprint", ""), img_fp);

  // Draining default's a leaves images/a alone (the other way round).
  EXPECT_EQ(admin_json("POST", "/nodes/a/drain", 200).value("pool", ""), "default");
  EXPECT_EQ(admin_json("GET", "/pools/images/nodes/a", 200).value("state", ""), "up");
  EXPECT_EQ(differences(ks, served_by(img_host, ks), img_abc, "img-", "images, default/a drained"), 0);
  EXPECT_EQ(differences(ks, served_by(host_port(), ks), reference(ones({"b", "c"}), 120, ks), "def-",
                        "default, default/a drained"),
            0);
  EXPECT_EQ(admin_json("POST", "/pools/default/nodes/a/undrain", 200).value("state", ""), "up");
  EXPECT_EQ(admin_json("GET", "/pools/default", 200).value("fingerprint", ""), def_fp);
  EXPECT_EQ(differences(ks, served_by(host_port(), ks), def_abc, "def-", "default, a undrained"), 0);

  // Add d to images: there only.
  const json added = admin_json("POST", "/pools/images/nodes", 201,
                                json{{"name", "d"}, {"address", address("img-d")}}.dump());
  EXPECT_EQ(added.value("pool", ""), "images");
  EXPECT_EQ(added.value("name", ""), "d");
  EXPECT_EQ(added.value("state", ""), "up");
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "admin: added node=images/d")) << proxy_->stderr_text();
  EXPECT_EQ(admin_json("GET", "/pools/images/nodes", 200)["nodes"].size(), 4u);
  EXPECT_EQ(admin_json("GET", "/nodes", 200)["nodes"].size(), 3u);
  EXPECT_EQ(admin("GET", "/nodes/d").status, 404);
  EXPECT_EQ(admin("GET", "/pools/default/nodes/d").status, 404);
  EXPECT_EQ(admin("GET", "/pools/api/nodes/d").status, 404);
  const json images_4 = admin_json("GET", "/pools/images", 200);
  EXPECT_EQ(images_4["nodes"], 4);
  EXPECT_EQ(images_4["points"], 400);
  EXPECT_NE(images_4.value("fingerprint", ""), img_fp);
  EXPECT_EQ(admin_json("GET", "/pools/default", 200).value("fingerprint", ""), def_fp);
  const auto img_abcd = reference(ones({"a", "b", "c", "d"}), 100, ks);
  EXPECT_EQ(differences(ks, lookups("images", ks), img_abcd, "images lookup with d"), 0);
  EXPECT_EQ(differences(ks, served_by(img_host, ks), img_abcd, "img-", "images with d"), 0);
  EXPECT_EQ(differences(ks, served_by(host_port(), ks), def_abc, "def-", "default, images has d"), 0);
  // The same name in another pool is not a conflict; the same name in this one is.
  EXPECT_EQ(admin_json("POST", "/pools/images/nodes", 409, json{{"name", "d"}, {"address", "127.0.0.1:1"}}.dump())
                .value("error", ""),
            "a node named \"d\" exists");

  // Weight b in images to 3: images' share and placement change; default's b stays 1.
  const json weighted = admin_json("PUT", "/pools/images/nodes/b/weight", 200, R"({"weight": 3})");
  EXPECT_EQ(weighted.value("pool", ""), "images");
  EXPECT_EQ(weighted["weight"], 3);
  EXPECT_GT(weighted.value("share", 0.0), 0.35) << weighted.dump();
  EXPECT_EQ(admin_json("GET", "/nodes/b", 200)["weight"], 1);
  EXPECT_EQ(admin_json("GET", "/pools/images", 200)["points"], 600);
  const Weighted img_b3 = {{"a", 1}, {"b", 3}, {"c", 1}, {"d", 1}};
  const auto img_b3_map = reference(img_b3, 100, ks);
  EXPECT_EQ(differences(ks, lookups("images", ks), img_b3_map, "images lookup, b weight 3"), 0);
  EXPECT_EQ(differences(ks, served_by(img_host, ks), img_b3_map, "img-", "images, b weight 3"), 0);
  EXPECT_EQ(differences(ks, served_by(host_port(), ks), def_abc, "def-", "default, images/b weight 3"), 0);

  // Remove d from images; then b back to 1: the ring it started with.
  EXPECT_EQ(admin_json("DELETE", "/pools/images/nodes/d", 200).value("removed", ""), "d");
  EXPECT_EQ(admin("DELETE", "/pools/images/nodes/d").status, 404);
  EXPECT_EQ(admin_json("GET", "/pools/images/nodes", 200)["nodes"].size(), 3u);
  const auto img_b3_no_d = reference({{"a", 1}, {"b", 3}, {"c", 1}}, 100, ks);
  EXPECT_EQ(differences(ks, served_by(img_host, ks), img_b3_no_d, "img-", "images without d"), 0);
  admin_json("PUT", "/pools/images/nodes/b/weight", 200, R"({"weight": 1})");
  EXPECT_EQ(admin_json("GET", "/pools/images", 200).value("fingerprint", ""), img_fp);
  EXPECT_EQ(differences(ks, served_by(img_host, ks), img_abc, "img-", "images as it started"), 0);
  EXPECT_EQ(admin_json("GET", "/pools/default", 200).value("fingerprint", ""), def_fp);
  // Deleting a node of images never touches default's node of the same name.
  EXPECT_EQ(admin_json("DELETE", "/pools/images/nodes/c", 200).value("removed", ""), "c");
  EXPECT_EQ(admin_json("GET", "/nodes/c", 200).value("state", ""), "up");
  EXPECT_EQ(differences(ks, served_by(host_port(), ks), def_abc, "def-", "default, images/c removed"), 0);
  EXPECT_EQ(differences(ks, served_by(img_host, ks), reference(ones({"a", "b"}), 100, ks), "img-",
                        "images without c"),
            0);
}

// 3. /metrics: every series with a backend label has pool="P",backend="B" (pool first),
// for every node of every pool; requests are counted in the series of the pool and
// node that served them; a drain shows in its own pool's series only.
TEST_F(PoolsAdmin, MetricsCarryThePoolLabel) {
  start("", "", three_pools());
  if (HasFatalFailure()) return;

  const std::set<std::pair<std::string, std::string>> all = {
      {"default", "a"}, {"default", "b"}, {"default", "c"}, {"images", "a"},
      {"images", "b"},  {"images", "c"},  {"api", "api-a"}, {"api", "api-b"}};
  const std::vector<std::string> per_node = {
      "ringproxy_backend_up",           "ringproxy_backend_draining",       "ringproxy_backend_in_flight",
      "ringproxy_backend_failures_total", "ringproxy_ring_share",           "ringproxy_ejections_total",
      "ringproxy_ejections_refused_total", "ringproxy_upstream_header_duration_seconds_count",
      "ringproxy_upstream_header_duration_seconds_sum"};

  // Requests: images via Host, default without a route, api by path and X-User.
  std::map<std::string, int> served;  // X-Backend -> count
  for (const std::string& b : served_by("img.example.com", keys("/m/", 90))) ++served[b];
  for (const std::string& b : served_by(host_port(), keys("/m/", 60))) ++served[b];
  {
    Conn conn("127.0.0.1", port_);
    for (int i = 0; i < 40; ++i) {
      const Response r = conn.request("GET", "/api/x", {{"X-User", "u" + std::to_string(i)}});
      ASSERT_EQ(r.status, 200) << r.describe();
      ++served[r.header("X-Backend")];
    }
  }

  const std::string text = metrics();
  // Every line with a backend label: pool first.
  std::set<std::pair<std::string, std::string>> seen;
  std::map<std::string, std::set<std::pair<std::string, std::string>>> by_family;
  const std::regex labelled(R"re(^([a-z_]+)\{pool="([^"]*)",backend="([^"]*)"[,}].*)re");
  std::istringstream lines(text);
  int bad = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || line.find("backend=\"") == std::string::npos) continue;
    std::smatch m;
    if (!std::regex_match(line, m, labelled)) {
      if (++bad <= 5) ADD_FAILURE() << "a backend series without pool=\"...\" first: " << line;
      continue;
    }
    if (m[3].str().empty()) {
      EXPECT_EQ(m[2].str(), "") << "the no-node series has an empty pool too: " << line;
      continue;
    }
    seen.emplace(m[2].str(), m[3].str());
    by_family[m[1].str()].emplace(m[2].str(), m[3].str());
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(seen, all);
  for (const std::string& f : per_node) EXPECT_EQ(by_family[f], all) << f;
  EXPECT_EQ(by_family["ringproxy_requests_total"], all);
  EXPECT_EQ(by_family["ringproxy_upstream_header_duration_seconds_bucket"], all);

  // Counts in the right pool's series. Demo "img-a" is node a of images, and so on.
  const std::map<std::string, std::pair<std::string, std::string>> demo = {
      {"def-a", {"default", "a"}}, {"def-b", {"default", "b"}}, {"def-c", {"default", "c"}},
      {"img-a", {"images", "a"}},  {"img-b", {"images", "b"}},  {"img-c", {"images", "c"}},
      {"api-a", {"api", "api-a"}}, {"api-b", {"api", "api-b"}}};
  std::map<std::string, double> pool_total;
  for (const auto& [name, pb] : demo) {
    const auto& [pool, node] = pb;
    const int want = served.count(name) ? served[name] : 0;
    EXPECT_EQ(metric(text, series("ringproxy_requests_total", pool, node, ",code=\"2xx\",protocol=\"http1\"")), want)
        << pool << "/" << node;
    EXPECT_EQ(metric(text, series("ringproxy_upstream_header_duration_seconds_count", pool, node)), want)
        << pool << "/" << node;
    EXPECT_EQ(metric(text, series("ringproxy_backend_up", pool, node)), 1) << pool << "/" << node;
    pool_total[pool] += metric(text, series("ringproxy_requests_total", pool, node, ",code=\"2xx\",protocol=\"http1\"")).value_or(-1e9);
  }
  EXPECT_EQ(pool_total["images"], 90);
  EXPECT_EQ(pool_total["default"], 60);
  EXPECT_EQ(pool_total["api"], 40);
  // Shares sum to 1 within each pool.
  for (const std::string pool : {"default", "images", "api"}) {
    double share = 0;
    for (const auto& [p, n] : all) {
      if (p == pool) share += metric(text, series("ringproxy_ring_share", p, n)).value_or(-1);
    }
    EXPECT_NEAR(share, 1.0, 1e-5) << pool;
  }

  // The exposition parses with a real Prometheus parser (Debian's python3-prometheus-client),
  // and every sample it sees with a backend label has a pool label.
  const std::string file = dir_.write_file("metrics.txt", text);
  const std::string script = dir_.write_file("check.py", R"(import sys
from prometheus_client.parser import text_string_to_metric_families
n = 0
missing = 0
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in f.samples:
        if 'backend' in s.labels:
            n += 1
            missing += 'pool' not in s.labels
print(n > 0, missing)
)");
  const std::string out = dir_.file("check.out");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " " + file + " > " + out + " 2>&1").c_str()), 0)
      << read_file(out);
  EXPECT_EQ(read_file(out), "True 0\n");

  // A drain shows in its own pool's series only.
  admin_json("POST", "/pools/images/nodes/a/drain", 200);
  const std::string after = metrics();
  EXPECT_EQ(metric(after, series("ringproxy_backend_draining", "images", "a")), 1);
  EXPECT_EQ(metric(after, series("ringproxy_backend_draining", "default", "a")), 0);
  EXPECT_EQ(metric(after, series("ringproxy_ring_share", "default", "a")),
            metric(text, series("ringproxy_ring_share", "default", "a")));
}

// 4. Health per pool. Pool images checks "/ping-images" (the demo backend answers 200
// on any path but its few special ones, so its live node is up there), and its node b
// is a port where nothing listens: images/b goes down, default's b (a live backend)
// stays up. Pool "strict" checks "/status/503" against the very address of default's
// node a: down in strict, up in default, so each pool's own [health] path is used.
TEST_F(PoolsAdmin, HealthIsPerPool) {
  const DeadPort dead;
  start("retries = 0\n", "",
        "\n[health]\ninterval_ms = 400\ntimeout_ms = 400\nfall = 2\nrise = 1\n" +
            backend_tables({{"a", "def-a"}, {"b", "def-b"}}) +
            "\n[[pool]]\nname = \"images\"\nhealth = { path = \"/ping-images\" }\nbackends = [\n"
            "  { name = \"a\", address = \"" +
            address("img-a") + "\" },\n  { name = \"b\", address = \"127.0.0.1:" + std::to_string(dead.port()) +
            "\" } ]\n"
            "\n[[pool]]\nname = \"strict\"\nhealth = { path = \"/status/503\" }\nbackends = [\n"
            "  { name = \"a\", address = \"" +
            address("def-a") + "\" } ]\n" +
            "\n[[route]]\nhost = \"img.example.com\"\npool = \"images\"\n"
            "\n[[route]]\npath_prefix = \"/strict/\"\npool = \"strict\"\n");
  if (HasFatalFailure()) return;

  const auto state = [&](const std::string& pool, const std::string& node) {
    return admin_json("GET", "/pools/" + pool + "/nodes/" + node, 200).value("state", "?");
  };
  ASSERT_TRUE(eventually([&] { return state("images", "b") == "down" && state("strict", "a") == "down"; }))
      << "images/b: " << state("images", "b") << ", strict/a: " << state("strict", "a") << "\n"
      << proxy_->describe();
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "health: node=images/b up -> down")) << proxy_->stderr_text();
  EXPECT_TRUE(proxy_->wait_for_output(Output::err, "health: node=strict/a up -> down")) << proxy_->stderr_text();

  // Those took two failed rounds (fall = 2) of every pool's checks: the rest passed theirs.
  EXPECT_EQ(state("default", "a"), "up");
  EXPECT_EQ(state("default", "b"), "up");
  EXPECT_EQ(state("images", "a"), "up") << "images' check path /ping-images answers 200";
  const std::string log = proxy_->stderr_text();
  EXPECT_EQ(log.find("health: node=a "), std::string::npos) << log;
  EXPECT_EQ(log.find("health: node=b "), std::string::npos) << log;
  EXPECT_EQ(log.find("health: node=images/a "), std::string::npos) << log;

  EXPECT_EQ(admin_json("GET", "/pools/images", 200)["usable"], 1);
  EXPECT_EQ(admin_json("GET", "/pools/strict", 200)["usable"], 0);
  EXPECT_EQ(admin_json("GET", "/pools/default", 200)["usable"], 2);
  const std::string m = metrics();
  EXPECT_EQ(metric(m, series("ringproxy_backend_up", "images", "b")), 0);
  EXPECT_EQ(metric(m, series("ringproxy_backend_up", "images", "a")), 1);
  EXPECT_EQ(metric(m, series("ringproxy_backend_up", "strict", "a")), 0);
  EXPECT_EQ(metric(m, series("ringproxy_backend_up", "default", "a")), 1);
  EXPECT_EQ(metric(m, series("ringproxy_backend_up", "default", "b")), 1);

  // Requests: images' all on its live node; strict has none (503); default both.
  const auto ks = keys("/h/", 60);
  for (const std::string& b : served_by("img.example.com", ks)) EXPECT_EQ(b, "img-a");
  EXPECT_EQ(differences(ks, served_by(host_port(), ks), reference(ones({"a", "b"}), 160, ks), "def-", "default"), 0);
  const Response s = http_get(port_, "/strict/x");
  EXPECT_EQ(s.status, 503) << s.describe();
}

// 5. max_ejected_percent within the pool. Every node fails (the demo backends reset
// every request; retries = 0; active checks every minute, fall 5, so only passive
// ejection acts). Pool default (max_ejected_percent 100) ejects both its nodes first.
// Pool images (max_ejected_percent 50, two nodes) may then still eject one, and must
// refuse the second: default's ejections count neither towards images' share nor in
// its node count.
TEST_F(PoolsAdmin, MaxEjectedPercentCountsWithinThePool) {
  DemoBackendOptions resets;
  resets.mode = "reset";
  for (const char* n : {"def-1", "def-2", "img-1", "img-2"}) backend(n, resets);
  start("retries = 0\n", "",
        "\n[health]\ninterval_ms = 60000\nfall = 5\neject_after_failures = 2\neject_base_ms = 60000\n"
        "max_ejected_percent = 100\n" +
            backend_tables({{"d-1", "def-1"}, {"d-2", "def-2"}}) +
            "\n[[pool]]\nname = \"images\"\nhealth = { max_ejected_percent = 50 }\nbackends = " +
            pool_backends({{"i-1", "img-1"}, {"i-2", "img-2"}}) +
            "\n\n[[route]]\nhost = \"img.example.com\"\npool = \"images\"\n");
  if (HasFatalFailure()) return;

  // Keys of each node, from each pool's lookup while every node is up.
  const auto ks = keys("/e/", 100);
  std::map<std::string, std::vector<std::string>> owned;  // "POOL/NODE" -> keys
  for (const auto& [k, n] : lookups("default", ks)) owned["default/" + n].push_back(k);
  for (const auto& [k, n] : lookups("images", ks)) owned["images/" + n].push_back(k);
  for (const std::string pn : {"default/d-1", "default/d-2", "images/i-1", "images/i-2"}) {
    ASSERT_GE(owned[pn].size(), 4u) << pn;
  }
  // Two failing requests to `pool_node`'s keys (the pool's eject_after_failures).
  const auto fail_twice = [&](const std::string& host, const std::string& pool_node) {
    for (int i = 0; i < 2; ++i) {
      const Response r = http_get(port_, owned[pool_node][static_cast<size_t>(i)], {{"Host", host}});
      EXPECT_EQ(r.status, 502) << pool_node << ": " << r.describe();
    }
  };
  const auto state = [&](const std::string& pool, const std::string& node) {
    return admin_json("GET", "/pools/" + pool + "/nodes/" + node, 200).value("state", "?");
  };

  fail_twice(host_port(), "default/d-1");
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=d-1 up -> ejected")) << proxy_->stderr_text();
  fail_twice(host_port(), "default/d-2");  // d-1 is out: these go to d-2 whoever owned them
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=d-2 up -> ejected"))
      << "default's max_ejected_percent is 100\n" << proxy_->stderr_text();
  EXPECT_EQ(state("default", "d-1"), "ejected");
  EXPECT_EQ(state("default", "d-2"), "ejected");

  fail_twice("img.example.com", "images/i-1");
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=images/i-1 up -> ejected"))
      << "images' first ejection is 1 of its 2 nodes: default's two must not count\n" << proxy_->stderr_text();
  // i-1 is out: every images key goes to i-2, which fails as much.
  const size_t log_at = proxy_->output_size(Output::err);
  fail_twice("img.example.com", "images/i-2");
  // Its event: "up -> up: ..., ejection refused" (or, wrongly, "up -> ejected").
  ASSERT_TRUE(proxy_->wait_for_output(Output::err, "health: node=images/i-2 up -> ", kDefaultTimeout, log_at))
      << proxy_->stderr_text();
  const std::string log = proxy_->stderr_text().substr(log_at);
  EXPECT_NE(log.find("health: node=images/i-2 up -> up: "), std::string::npos) << log;
  EXPECT_NE(log.find("ejection refused: max_ejected_percent 50 reached (1 of 2 nodes ejected)"), std::string::npos)
      << log;
  EXPECT_EQ(proxy_->stderr_text().find("node=images/i-2 up -> ejected"), std::string::npos);
  EXPECT_EQ(state("images", "i-1"), "ejected");
  EXPECT_EQ(state("images", "i-2"), "up");
  EXPECT_EQ(admin_json("GET", "/pools/images", 200)["usable"], 1);
  EXPECT_EQ(admin_json("GET", "/pools/default", 200)["usable"], 0);

  const std::string m = metrics();
  EXPECT_EQ(metric(m, series("ringproxy_ejections_total", "default", "d-1")), 1);
  EXPECT_EQ(metric(m, series("ringproxy_ejections_total", "default", "d-2")), 1);
  EXPECT_EQ(metric(m, series("ringproxy_ejections_total", "images", "i-1")), 1);
  EXPECT_EQ(metric(m, series("ringproxy_ejections_total", "images", "i-2")), 0);
  EXPECT_GE(metric(m, series("ringproxy_ejections_refused_total", "images", "i-2")).value_or(0), 1);
  EXPECT_EQ(metric(m, series("ringproxy_ejections_refused_total", "default", "d-2")), 0);
  EXPECT_EQ(metric(m, series("ringproxy_backend_up", "images", "i-1")), 0);
  EXPECT_EQ(metric(m, series("ringproxy_backend_up", "images", "i-2")), 1);
}

// 6. Reloads under load. wrk (Debian's) keeps 8 keep-alive connections busy with
// requests alternating /obj/N and /new/N while the config is reloaded (POST /reload)
// to add pool "fresh" with a route for /new/, then reloaded back without them, three
// times over (about a second of load in all on an idle machine). No
// request may fail (every answer a 200, no socket error); after the first reload /new/
// requests reach pool fresh (by the reference placement), after the second pool
// default again, and wrk itself saw both.
// With slow start on, a pool a reload adds serves every key at once, as every pool does
// at start: ramping all its nodes together would turn the same keys away from each of
// them (slow start admits by the key's hash), and those requests would find no node.
TEST_F(PoolsAdmin, APoolAddedByAReloadServesAtOnceWithSlowStart) {
  const std::string base = "\n[health]\ninterval_ms = 500\nslow_start_ms = 60000\n" +
                           backend_tables({{"a", "def-a"}, {"b", "def-b"}});
  start("", "", base);
  if (HasFatalFailure()) return;
  dir_.write_file("ringproxy.toml", config("", "", base + "\n[[pool]]\nname = \"fresh\"\nbackends = " +
                                                          pool_backends({{"a", "new-a"}, {"b", "new-b"}}) +
                                                          "\n\n[[route]]\npath_prefix = \"/new/\"\npool = \"fresh\"\n"));
  EXPECT_EQ(admin_json("POST", "/reload", 200).value("ok", false), true);
  const auto ks = keys("/new/s", 200);
  // served_by fails the test for any answer but a node's 200.
  EXPECT_EQ(differences(ks, served_by(host_port(), ks), reference(ones({"a", "b"}), 160, ks), "new-", "fresh at once"),
            0);
}

TEST_F(PoolsAdmin, ReloadAddsAndRemovesAPoolUnderLoad) {
  ASSERT_EQ(access(kWrk, X_OK), 0) << "wrk missing: scripts/install-deps.sh --bench installs it";
  const std::string base = "\n[health]\ninterval_ms = 500\n" +
                           backend_tables({{"a", "def-a"}, {"b", "def-b"}, {"c", "def-c"}});
  const std::string with_fresh = base + "\n[[pool]]\nname = \"fresh\"\nbackends = " +
                                 pool_backends({{"a", "new-a"}, {"b", "new-b"}}) +
                                 "\n\n[[route]]\npath_prefix = \"/new/\"\npool = \"fresh\"\n";
  start("", "", base);
  if (HasFatalFailure()) return;

  Wrk load = start_wrk(dir_, "wrk", port_, 8, {"/obj/", "/new/"});

  // The sum of the 2xx counts of pool `pool`'s nodes.
  const auto served = [&](const std::string& pool) {
    const std::string text = metrics();
    double sum = 0;
    std::istringstream lines(text);
    const std::string prefix = "ringproxy_requests_total{pool=\"" + pool + "\",";
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(prefix, 0) == 0 && line.find("code=\"2xx\"") != std::string::npos) {
        sum += std::stod(line.substr(line.rfind(' ') + 1));
      }
    }
    return sum;
  };
  json last_reload;
  const auto reload = [&](const std::string& body) {
    dir_.write_file("ringproxy.toml", config("", "", body));
    last_reload = admin_json("POST", "/reload", 200);
    EXPECT_EQ(last_reload.value("ok", false), true) << last_reload.dump();
  };
  const auto newk = keys("/new/r", 50);

  // Under load before anything changes.
  ASSERT_TRUE(eventually([&] { return served("default") >= 500; }, Millis(15000)))
      << "wrk's requests did not arrive\n" << load.describe() << "\n" << proxy_->describe();

  const auto fresh_want = reference(ones({"a", "b"}), 160, newk);
  const auto def_want = reference(ones({"a", "b", "c"}), 160, newk);
  // Three rounds of adding and removing, each with a few thousand requests after it.
  for (int round = 1; round <= 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    reload(with_fresh);
    // Each pool's moved share: all of the new pool's keys are new, none of default's moved.
    EXPECT_EQ(last_reload["moved_by_pool"], (json{{"default", 0.0}, {"fresh", 1.0}})) << last_reload.dump();
    EXPECT_EQ(admin_json("GET", "/pools/fresh", 200)["nodes"], 2);
    EXPECT_EQ(differences(newk, served_by(host_port(), newk), fresh_want, "new-", "/new/ after the pool was added"), 0);
    // wrk's connections, open since before the reload, reach the new pool too.
    const double fresh_seen = served("fresh");
    ASSERT_TRUE(eventually([&] { return served("fresh") >= fresh_seen + 1500; }, Millis(15000)))
        << "wrk's /new/ requests did not reach pool fresh\n" << proxy_->describe();
    ASSERT_TRUE(load.running()) << "wrk ended early: " << load.describe();

    reload(base);
    EXPECT_EQ(last_reload["moved_by_pool"], (json{{"default", 0.0}})) << last_reload.dump();
    EXPECT_EQ(admin("GET", "/pools/fresh").status, 404);
    EXPECT_EQ(metrics().find("pool=\"fresh\""), std::string::npos) << "pool fresh's series outlived it";
    EXPECT_EQ(differences(newk, served_by(host_port(), newk), def_want, "def-", "/new/ after the pool was removed"),
              0);
    const double default_seen = served("default");
    ASSERT_TRUE(eventually([&] { return served("default") >= default_seen + 3000; }, Millis(15000)))
        << "no load after the pool was removed\n" << proxy_->describe();
    ASSERT_TRUE(load.running()) << "wrk ended early: " << load.describe();
  }

  const WrkResult w = stop_wrk(load);
  ASSERT_TRUE(w.parsed);
  EXPECT_GT(w.requests, 10000) << w.text;
  // No request waited kWrkTimeout (5 s) in the proxy: those wrk's clock alone made
  // late (a paused machine, WallClockWatch) aside.
  EXPECT_EQ(w.errors(), "0 0 0 0 0") << "socket errors (connect read write), non-2xx (status), timeouts:\n"
                                     << w.describe();
  EXPECT_EQ(w.statuses, "200:" + std::to_string(w.requests)) << "every answer a 200:\n" << w.text;
  for (const std::string name : {"def-a:", "def-b:", "def-c:", "new-a:", "new-b:"}) {
    EXPECT_NE(w.backends.find(name), std::string::npos) << name << " never answered wrk: " << w.backends;
  }
  EXPECT_EQ(w.backends.find("(none)"), std::string::npos) << w.backends;
  // The proxy answered no request itself (no 5xx, no 4xx) meanwhile.
  const std::string text = metrics();
  EXPECT_EQ(metric(text, "ringproxy_requests_total{pool=\"\",backend=\"\",code=\"5xx\",protocol=\"http1\"}"), 0);
  EXPECT_EQ(metric(text, "ringproxy_requests_total{pool=\"\",backend=\"\",code=\"4xx\",protocol=\"http1\"}"), 0);
  EXPECT_TRUE(proxy_->running()) << proxy_->describe();
}

}  // namespace
}  // namespace ringproxy::integration
