#include "ring/ring.h"
#include "ring/crc32.h"
#include "ring/point_sort.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace ringproxy {
namespace {

std::shared_ptr<const Ring> must_build(std::vector<RingNode> nodes, uint32_t vnodes = 160) {
  RingBuildResult r = Ring::build(std::move(nodes), vnodes);
  EXPECT_TRUE(r.error.empty()) << r.error;
  return r.ring;
}

std::vector<RingNode> named(std::initializer_list<std::string> names) {
  std::vector<RingNode> out;
  for (const auto& n : names) out.push_back({n, "127.0.0.1:1", 1});
  return out;
}

std::string owner_name(const Ring& ring, std::optional<NodeIndex> i) {
  return i ? ring.nodes()[*i].name : std::string("<none>");
}

std::vector<std::string> walk_names(const Ring& ring, uint64_t h) {
  std::vector<std::string> out;
  ring.walk(h, [&](NodeIndex i) {
    out.push_back(ring.nodes()[i].name);
    return true;
  });
  return out;
}

// Golden mappings, computed outside ring/ by tools/ring_reference.py (python3-xxhash
// and a bisect, no code shared with ring.cc). Regenerate with:
//   /usr/bin/python3 tools/ring_reference.py golden
// The ring: cache-a:1 cache-b:1 cache-c:2 cache-d:1 cache-e:0, 160 vnodes. A change to
// any line here is a change of every deployed mapping: never update it silently.
struct Golden {
  const char* key;
  uint64_t hash;
  std::vector<std::string> walk;  // owner first, then the fallbacks in ring order
};
const std::vector<Golden> kGolden = {
    {"/", 0x474292953285562eULL, {"cache-c", "cache-d", "cache-b", "cache-a"}},
    {"/index.html", 0xaa8f18ab73b5f828ULL, {"cache-a", "cache-d", "cache-b", "cache-c"}},
    {"/a", 0xe292ab48a6b06805ULL, {"cache-c", "cache-a", "cache-d", "cache-b"}},
    {"/b", 0x6ec97c4aa03d16d2ULL, {"cache-b", "cache-c", "cache-d", "cache-a"}},
    {"/c", 0xb8c931e414c0e44fULL, {"cache-a", "cache-c", "cache-b", "cache-d"}},
    {"/users/42", 0xa7d8d2c93539d950ULL, {"cache-d", "cache-c", "cache-a", "cache-b"}},
    {"/users/43", 0x9e6ddc5a205c668fULL, {"cache-c", "cache-b", "cache-d", "cache-a"}},
    {"/img/logo.png?v=3", 0x36272644c71411fbULL, {"cache-c", "cache-d", "cache-b", "cache-a"}},
    {"/api/v1/items?page=2", 0xace63a26c7f43c95ULL, {"cache-c", "cache-a", "cache-d", "cache-b"}},
    {"key-0", 0x819f6b51706f0178ULL, {"cache-c", "cache-a", "cache-b", "cache-d"}},
    {"key-1", 0x2d29f1336b0229f9ULL, {"cache-a", "cache-d", "cache-b", "cache-c"}},
    {"key-2", 0x59d506bf6d9c9524ULL, {"cache-c", "cache-b", "cache-d", "cache-a"}},
    {"key-3", 0xaf14c38e673062d6ULL, {"cache-c", "cache-d", "cache-b", "cache-a"}},
    {"key-4", 0xac72cbba78ee75dfULL, {"cache-b", "cache-c", "cache-a", "cache-d"}},
    {"key-5", 0xdcad29cc48fc08d0ULL, {"cache-c", "cache-d", "cache-a", "cache-b"}},
    {"key-6", 0xeb5e7517831f46a2ULL, {"cache-c", "cache-d", "cache-a", "cache-b"}},
    {"key-7", 0xe683dd62c3f8ac4fULL, {"cache-a", "cache-b", "cache-d", "cache-c"}},
    {"key-8", 0x3ba9588b170fbf8eULL, {"cache-d", "cache-a", "cache-b", "cache-c"}},
    {"key-9", 0x56ba8e0ec883cac2ULL, {"cache-a", "cache-c", "cache-d", "cache-b"}},
    {"session=abc123", 0x5edb34afd3d5b000ULL, {"cache-b", "cache-c", "cache-d", "cache-a"}},
    {"127.0.0.1", 0x9a071d171774168cULL, {"cache-c", "cache-a", "cache-b", "cache-d"}},
    {"::1", 0xfc86fb9bd1c62faeULL, {"cache-c", "cache-a", "cache-b", "cache-d"}},
    {"ünicode/été", 0xfb631413cee2a2d6ULL, {"cache-b", "cache-c", "cache-d", "cache-a"}},
    {"", 0x2d06800538d394c2ULL, {"cache-a", "cache-d", "cache-b", "cache-c"}},
};

std::vector<RingNode> golden_nodes() {
  return {{"cache-a", "127.0.0.1:9001", 1},
          {"cache-b", "127.0.0.1:9002", 1},
          {"cache-c", "127.0.0.1:9003", 2},
          {"cache-d", "127.0.0.1:9004", 1},
          {"cache-e", "127.0.0.1:9005", 0}};
}

TEST(RingGolden, PointHashesFollowSpec) {
  // XXH3_64bits("NAME#j"), seed 0; values from /usr/bin/python3 with python3-xxhash.
  EXPECT_EQ(Ring::hash("cache-a#0"), 0xa4686ece224f0b6cULL);
  EXPECT_EQ(Ring::hash("cache-a#159"), 0x5878b12268e61aa4ULL);
  EXPECT_EQ(Ring::hash("cache-c#319"), 0x55cab077955401d4ULL);
  EXPECT_EQ(Ring::hash(std::string_view("n\0ul#1", 6)), 0x69519178c290432aULL);

  auto ring = must_build(golden_nodes());
  ASSERT_EQ(ring->points(), 5u * 160u);
  std::set<std::pair<uint64_t, std::string>> points;
  for (size_t i = 0; i < ring->points(); ++i) {
    points.insert({ring->point_hash(i), ring->nodes()[ring->point_owner(i)].name});
  }
  EXPECT_TRUE(points.count({0xa4686ece224f0b6cULL, "cache-a"}));
  EXPECT_TRUE(points.count({0x5878b12268e61aa4ULL, "cache-a"}));
  EXPECT_TRUE(points.count({0x55cab077955401d4ULL, "cache-c"}));  // weight 2: j up to 319
}

TEST(RingGolden, KeysMapAsTheReferenceSays) {
  auto ring = must_build(golden_nodes());
  for (const Golden& g : kGolden) {
    SCOPED_TRACE(g.key);
    EXPECT_EQ(Ring::hash(g.key), g.hash);
    EXPECT_EQ(owner_name(*ring, ring->lookup(std::string_view(g.key))), g.walk.front());
    EXPECT_EQ(walk_names(*ring, g.hash), g.walk);
  }
}

TEST(RingGolden, IPv6AddressesAsNames) {
  // From tools/ring_reference.py map 127.0.0.1:9001:1 [::1]:9001:1 [::1]:9002:1 -- /x /y /z /w
  auto ring = must_build({{"127.0.0.1:9001", "127.0.0.1:9001", 1},
                          {"[::1]:9001", "[::1]:9001", 1},
                          {"[::1]:9002", "[::1]:9002", 1}});
  EXPECT_EQ(Ring::hash("[::1]:9001#0"), 0x3257c4db2e4b6338ULL);
  EXPECT_EQ(owner_name(*ring, ring->lookup(std::string_view("/x"))), "127.0.0.1:9001");
  EXPECT_EQ(owner_name(*ring, ring->lookup(std::string_view("/y"))), "127.0.0.1:9001");
  EXPECT_EQ(owner_name(*ring, ring->lookup(std::string_view("/z"))), "[::1]:9002");
  EXPECT_EQ(owner_name(*ring, ring->lookup(std::string_view("/w"))), "127.0.0.1:9001");
}

TEST(Crc32, MatchesZlibAndChains) {
  EXPECT_EQ(crc32::of("123456789"), 0xCBF43926u);  // the CRC-32/ISO-HDLC check value
  EXPECT_EQ(crc32::of(""), 0u);
  // Feeding in pieces continues the unfinished state, as ngx_crc32_update does.
  EXPECT_EQ(crc32::finish(crc32::update(crc32::update(crc32::kInit, "1234"), "56789")), 0xCBF43926u);
}

// nginx placement (ring.h), computed outside ring/ by tools/ring_reference.py with
// Python's zlib, which matched a real nginx 1.22 on 10,000 URIs with weights
// (tests/integration/nginx_placement_test.cc). Regenerate with:
//   /usr/bin/python3 tools/ring_reference.py golden-nginx
// Hashes are nginx's 32-bit CRC-32; the ring keeps them in the top half (<< 32).
// The ring: cache-a@127.0.0.1:9001, cache-b@127.0.0.1:9002, cache-c@127.0.0.1:9003 weight
// 2, cache-d@[::1]:9004, cache-e@127.0.0.1:9005 weight 0.
const std::vector<Golden> kGoldenNginx = {
    {"/", 0x79d3d2d4ULL, {"cache-b", "cache-d", "cache-c", "cache-a"}},
    {"/index.html", 0xea224b42ULL, {"cache-c", "cache-b", "cache-a", "cache-d"}},
    {"/a", 0x69707b5cULL, {"cache-a", "cache-d", "cache-c", "cache-b"}},
    {"/b", 0xf0792ae6ULL, {"cache-c", "cache-d", "cache-b", "cache-a"}},
    {"/c", 0x877e1a70ULL, {"cache-c", "cache-b", "cache-a", "cache-d"}},
    {"/users/42", 0x603c8d00ULL, {"cache-c", "cache-b", "cache-d", "cache-a"}},
    {"/users/43", 0x173bbd96ULL, {"cache-c", "cache-a", "cache-b", "cache-d"}},
    {"/img/logo.png?v=3", 0x6c3b5d83ULL, {"cache-c", "cache-d", "cache-a", "cache-b"}},
    {"/api/v1/items?page=2", 0xe9f3ded7ULL, {"cache-b", "cache-c", "cache-a", "cache-d"}},
    {"key-0", 0x79eb8fecULL, {"cache-b", "cache-d", "cache-c", "cache-a"}},
    {"key-1", 0x0eecbf7aULL, {"cache-b", "cache-c", "cache-d", "cache-a"}},
    {"key-2", 0x97e5eec0ULL, {"cache-b", "cache-c", "cache-d", "cache-a"}},
    {"key-3", 0xe0e2de56ULL, {"cache-b", "cache-d", "cache-c", "cache-a"}},
    {"key-4", 0x7e864bf5ULL, {"cache-c", "cache-a", "cache-b", "cache-d"}},
    {"key-5", 0x09817b63ULL, {"cache-d", "cache-c", "cache-b", "cache-a"}},
    {"key-6", 0x90882ad9ULL, {"cache-b", "cache-c", "cache-a", "cache-d"}},
    {"key-7", 0xe78f1a4fULL, {"cache-c", "cache-a", "cache-b", "cache-d"}},
    {"key-8", 0x773007deULL, {"cache-b", "cache-c", "cache-d", "cache-a"}},
    {"key-9", 0x00373748ULL, {"cache-c", "cache-b", "cache-d", "cache-a"}},
    {"session=abc123", 0xbc40ecc9ULL, {"cache-c", "cache-b", "cache-d", "cache-a"}},
    {"127.0.0.1", 0xd7b7e7a8ULL, {"cache-d", "cache-c", "cache-b", "cache-a"}},
    {"::1", 0xa2ca6717ULL, {"cache-c", "cache-d", "cache-a", "cache-b"}},
    {"ünicode/été", 0xf86f3248ULL, {"cache-d", "cache-c", "cache-b", "cache-a"}},
    {"", 0x00000000ULL, {"cache-c", "cache-b", "cache-d", "cache-a"}},
};

std::vector<RingNode> golden_nginx_nodes() {
  return {{"cache-a", "127.0.0.1:9001", 1},
          {"cache-b", "127.0.0.1:9002", 1},
          {"cache-c", "127.0.0.1:9003", 2},
          {"cache-d", "[::1]:9004", 1},
          {"cache-e", "127.0.0.1:9005", 0}};
}

TEST(RingGolden, NginxPlacementMapsAsNginxDoes) {
  // vnodes does not apply: 160 points per unit of weight.
  auto built = Ring::build(golden_nginx_nodes(), 7, Placement::kNginx);
  ASSERT_TRUE(built.ring) << built.error;
  const Ring& ring = *built.ring;
  EXPECT_EQ(ring.points(), 5u * 160u);
  EXPECT_EQ(ring.placement(), Placement::kNginx);
  for (const Golden& g : kGoldenNginx) {
    SCOPED_TRACE(g.key);
    EXPECT_EQ(ring.key_hash(g.key), g.hash << 32);
    EXPECT_EQ(owner_name(ring, ring.lookup(std::string_view(g.key))), g.walk.front());
    EXPECT_EQ(walk_names(ring, g.hash << 32), g.walk);
  }
  // Same nodes, the default placement: another ring, another fingerprint.
  auto xxh3 = must_build(golden_nginx_nodes());
  EXPECT_NE(xxh3->fingerprint(), ring.fingerprint());
  EXPECT_GT(Ring::moved_fraction(*xxh3, ring), 0.5);
}

TEST(RingEdge, EmptyRingFindsNothing) {
  auto ring = must_build({});
  ASSERT_TRUE(ring);
  EXPECT_TRUE(ring->empty());
  EXPECT_FALSE(ring->lookup(std::string_view("/")).has_value());
  EXPECT_FALSE(ring->lookup(uint64_t{0}).has_value());
  EXPECT_FALSE(ring->pick(123, [](NodeIndex) { return true; }).has_value());
  EXPECT_TRUE(walk_names(*ring, 5).empty());
  EXPECT_TRUE(ring->shares().empty());
  EXPECT_EQ(ring->fingerprint().size(), 32u);
}

TEST(RingEdge, AllWeightZeroIsEmptyButKeepsNodes) {
  auto ring = must_build({{"a", "x", 0}, {"b", "y", 0}});
  EXPECT_TRUE(ring->empty());
  EXPECT_EQ(ring->nodes().size(), 2u);
  EXPECT_FALSE(ring->lookup(std::string_view("/k")).has_value());
  EXPECT_EQ(ring->shares(), (std::vector<double>{0.0, 0.0}));
}

TEST(RingEdge, OneNodeOwnsEverything) {
  auto ring = must_build(named({"solo"}));
  for (uint64_t h : {uint64_t{0}, uint64_t{1}, UINT64_MAX, uint64_t{1} << 63}) {
    EXPECT_EQ(owner_name(*ring, ring->lookup(h)), "solo");
  }
  EXPECT_DOUBLE_EQ(ring->shares()[0], 1.0);
  EXPECT_EQ(walk_names(*ring, 42), std::vector<std::string>{"solo"});
}

TEST(RingEdge, OnePointOwnsEverything) {
  auto ring = must_build(named({"solo"}), 1);
  EXPECT_EQ(ring->points(), 1u);
  EXPECT_DOUBLE_EQ(ring->shares()[0], 1.0);
  EXPECT_EQ(owner_name(*ring, ring->lookup(UINT64_MAX)), "solo");
}

TEST(RingEdge, WeightZeroTakesNoKeysAndIsNotWalked) {
  auto ring = must_build({{"a", "", 1}, {"b", "", 0}, {"c", "", 1}});
  auto b = ring->find("b");
  ASSERT_TRUE(b.has_value());
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) EXPECT_NE(ring->lookup(rng()), b);
  EXPECT_EQ(ring->shares()[*b], 0.0);
  EXPECT_EQ(walk_names(*ring, 99).size(), 2u);
}

TEST(RingEdge, RefusesDuplicateAndEmptyNamesAndZeroVnodes) {
  EXPECT_EQ(Ring::build(named({"a", "b", "a"}), 160).error, "duplicate node name \"a\"");
  EXPECT_EQ(Ring::build(named({"a", ""}), 160).error, "a node has an empty name");
  EXPECT_EQ(Ring::build(named({"a"}), 0).error, "vnodes must be at least 1");
  EXPECT_FALSE(Ring::build(named({"a", "a"}), 160).ring);
  std::vector<RingNode> huge = {{"a", "", 1000}};
  EXPECT_NE(Ring::build(huge, 100000).error.find("too many ring points"), std::string::npos);
}

TEST(RingEdge, NamesWithAnyBytes) {
  std::vector<RingNode> nodes = {{std::string("n\0ul", 4), "", 1},
                                 {"h#sh#0", "", 1},
                                 {"\xc3\xbcnicode \xe2\x9c\x93", "", 1},
                                 {"\xff\xfe", "", 1}};
  auto ring = must_build(nodes);
  EXPECT_EQ(ring->points(), 4u * 160u);
  auto nul = ring->find(std::string_view("n\0ul", 4));
  ASSERT_TRUE(nul.has_value());
  EXPECT_FALSE(ring->find("n").has_value());
  // The point XXH3("n\0ul#1") belongs to the node with the embedded NUL.
  bool found = false;
  for (size_t i = 0; i < ring->points(); ++i) {
    found |= ring->point_hash(i) == 0x69519178c290432aULL && ring->point_owner(i) == *nul;
  }
  EXPECT_TRUE(found);
  for (double s : ring->shares()) EXPECT_GT(s, 0.1);
}

TEST(RingLookup, AtOrAfterAndWrap) {
  auto ring = must_build(named({"a", "b", "c"}), 50);
  const size_t n = ring->points();
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(ring->lookup(ring->point_hash(i)), ring->point_owner(i));
    if (ring->point_hash(i) > 0) {
      // Just before point i: still point i (unless the previous point sits there).
      const uint64_t before = ring->point_hash(i) - 1;
      if (i == 0 || ring->point_hash(i - 1) != before) {
        EXPECT_EQ(ring->lookup(before), ring->point_owner(i));
      }
    }
    if (i + 1 < n && ring->point_hash(i) + 1 < ring->point_hash(i + 1)) {
      EXPECT_EQ(ring->lookup(ring->point_hash(i) + 1), ring->point_owner(i + 1));
    }
  }
  EXPECT_EQ(ring->lookup(UINT64_MAX), ring->point_owner(0));
  EXPECT_EQ(ring->lookup(ring->point_hash(n - 1) + 1), ring->point_owner(0));
  EXPECT_EQ(ring->lookup(uint64_t{0}), ring->point_owner(0));
  for (size_t i = 1; i < n; ++i) {
    const bool ordered = ring->point_hash(i - 1) < ring->point_hash(i) ||
                         (ring->point_hash(i - 1) == ring->point_hash(i) &&
                          ring->nodes()[ring->point_owner(i - 1)].name <
                              ring->nodes()[ring->point_owner(i)].name);
    ASSERT_TRUE(ordered) << i;
  }
}

TEST(RingLookup, MatchesBinarySearchForManyNodes) {
  // The bucket index must agree with a plain lower_bound at every size.
  for (size_t count : {1u, 2u, 3u, 7u, 50u, 1000u}) {
    std::vector<RingNode> nodes;
    for (size_t i = 0; i < count; ++i) nodes.push_back({"node-" + std::to_string(i), "", 1});
    auto ring = must_build(nodes, count == 1000 ? 160 : 3);
    std::vector<uint64_t> hashes(ring->points());
    for (size_t i = 0; i < hashes.size(); ++i) hashes[i] = ring->point_hash(i);
    std::mt19937_64 rng(count);
    for (int k = 0; k < 20000; ++k) {
      const uint64_t h = rng();
      auto it = std::lower_bound(hashes.begin(), hashes.end(), h);
      const size_t i = it == hashes.end() ? 0 : static_cast<size_t>(it - hashes.begin());
      ASSERT_EQ(ring->lookup(h), ring->point_owner(i)) << count << " nodes, hash " << h;
    }
  }
}

TEST(RingBuild, OrderChangesNothing) {
  std::vector<RingNode> nodes;
  for (int i = 0; i < 20; ++i) nodes.push_back({"n" + std::to_string(i), "10.0.0.1:1", 1u + i % 3});
  auto first = must_build(nodes);
  std::mt19937 rng(1);
  std::shuffle(nodes.begin(), nodes.end(), rng);
  auto second = must_build(nodes);
  EXPECT_EQ(first->fingerprint(), second->fingerprint());
  ASSERT_EQ(first->points(), second->points());
  for (size_t i = 0; i < first->points(); ++i) {
    ASSERT_EQ(first->point_hash(i), second->point_hash(i));
    ASSERT_EQ(first->point_owner(i), second->point_owner(i));
  }
  EXPECT_TRUE(std::equal(first->nodes().begin(), first->nodes().end(), second->nodes().begin()));
}

TEST(RingBuild, FingerprintTracksEverythingThatPlaces) {
  auto base = must_build({{"a", "127.0.0.1:1", 1}, {"b", "127.0.0.1:2", 1}});
  auto same = must_build({{"b", "127.0.0.1:2", 1}, {"a", "127.0.0.1:1", 1}});
  auto weight = must_build({{"a", "127.0.0.1:1", 2}, {"b", "127.0.0.1:2", 1}});
  auto address = must_build({{"a", "127.0.0.1:3", 1}, {"b", "127.0.0.1:2", 1}});
  auto vnodes = must_build({{"a", "127.0.0.1:1", 1}, {"b", "127.0.0.1:2", 1}}, 100);
  auto renamed = must_build({{"a", "127.0.0.1:1", 1}, {"c", "127.0.0.1:2", 1}});
  // Length-prefixed fields: moving bytes from a name into the address is a change.
  auto shifted = must_build({{"a1", "27.0.0.1:1", 1}, {"b", "127.0.0.1:2", 1}});
  EXPECT_EQ(base->fingerprint(), same->fingerprint());
  std::set<std::string> all = {base->fingerprint(), weight->fingerprint(),
                               address->fingerprint(), vnodes->fingerprint(),
                               renamed->fingerprint(), shifted->fingerprint()};
  EXPECT_EQ(all.size(), 6u);
}

// Keys 0..n-1 as strings, hashed once.
std::vector<uint64_t> key_hashes(size_t n) {
  std::vector<uint64_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = Ring::hash("/object/" + std::to_string(i));
  return out;
}

std::vector<std::string> map_all(const Ring& ring, const std::vector<uint64_t>& keys) {
  std::vector<std::string> out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) out[i] = owner_name(ring, ring.lookup(keys[i]));
  return out;
}

std::vector<RingNode> ten_nodes() {
  std::vector<RingNode> nodes;
  for (int i = 0; i < 10; ++i) {
    nodes.push_back({"cache-" + std::to_string(i), "127.0.0.1:" + std::to_string(9000 + i), 1});
  }
  return nodes;
}

TEST(RingMovement, RemovingANodeMovesOnlyItsKeysAndReAddingRestores) {
  const auto keys = key_hashes(1000000);
  auto nodes = ten_nodes();
  auto full = must_build(nodes);
  const auto before = map_all(*full, keys);

  const RingNode removed = nodes[3];
  nodes.erase(nodes.begin() + 3);
  auto without = must_build(nodes);
  const auto after = map_all(*without, keys);

  size_t own = 0, collateral = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (before[i] == removed.name) {
      ++own;
      // Each orphaned key lands on the next distinct node of the full ring's walk.
      std::string next;
      full->walk(keys[i], [&](NodeIndex n) {
        if (full->nodes()[n].name == removed.name) return true;
        next = full->nodes()[n].name;
        return false;
      });
      ASSERT_EQ(after[i], next);
    } else if (after[i] != before[i]) {
      ++collateral;
    }
  }
  EXPECT_EQ(collateral, 0u);
  EXPECT_GT(own, keys.size() / 20);  // about 1/10 of the keys were its own
  EXPECT_LT(own, keys.size() / 5);
  EXPECT_NEAR(Ring::moved_fraction(*full, *without), static_cast<double>(own) / keys.size(), 0.002);

  nodes.push_back(removed);
  auto readded = must_build(nodes);
  EXPECT_EQ(readded->fingerprint(), full->fingerprint());
  EXPECT_EQ(map_all(*readded, keys), before);
}

TEST(RingMovement, SkippingADownNodeEqualsRemovingIt) {
  const auto keys = key_hashes(200000);
  auto nodes = ten_nodes();
  auto full = must_build(nodes);
  const NodeIndex down = *full->find("cache-7");
  nodes.erase(nodes.begin() + 7);
  auto without = must_build(nodes);
  for (uint64_t h : keys) {
    auto picked = full->pick(h, [&](NodeIndex i) { return i != down; });
    ASSERT_EQ(owner_name(*full, picked), owner_name(*without, without->lookup(h)));
  }
}

TEST(RingMovement, AddingANodeMovesKeysOnlyOntoIt) {
  const auto keys = key_hashes(1000000);
  auto nodes = ten_nodes();
  auto before_ring = must_build(nodes);
  const auto before = map_all(*before_ring, keys);
  nodes.push_back({"cache-new", "[::1]:9100", 1});
  auto after_ring = must_build(nodes);
  const auto after = map_all(*after_ring, keys);
  size_t moved = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (after[i] != before[i]) {
      ASSERT_EQ(after[i], "cache-new");
      ++moved;
    }
  }
  // The optimum is 1/11 of the keys; 160 vnodes keep it within a few points of that.
  EXPECT_NEAR(static_cast<double>(moved) / keys.size(), 1.0 / 11, 0.03);
  EXPECT_NEAR(Ring::moved_fraction(*before_ring, *after_ring),
              static_cast<double>(moved) / keys.size(), 0.002);
}

TEST(RingShares, FollowWeightsAndMatchKeys) {
  auto ring = must_build({{"w1", "", 1}, {"w2", "", 2}, {"w3", "", 3}, {"w4", "", 4}});
  const auto shares = ring->shares();
  EXPECT_NEAR(std::accumulate(shares.begin(), shares.end(), 0.0), 1.0, 1e-12);
  for (NodeIndex i = 0; i < 4; ++i) {
    const double weight = ring->nodes()[i].weight;
    EXPECT_NEAR(shares[i], weight / 10.0, 0.2 * weight / 10.0) << ring->nodes()[i].name;
  }
  // The share is the fraction of keys a node gets.
  const auto keys = key_hashes(400000);
  std::vector<size_t> counts(4, 0);
  for (uint64_t h : keys) ++counts[*ring->lookup(h)];
  for (NodeIndex i = 0; i < 4; ++i) {
    EXPECT_NEAR(static_cast<double>(counts[i]) / keys.size(), shares[i], 0.005);
  }
}

TEST(RingShares, MovedFractionEdges) {
  auto empty = must_build({});
  auto a = must_build(named({"a", "b"}));
  auto a_again = must_build(named({"b", "a"}));
  auto other = must_build(named({"x", "y"}));
  EXPECT_EQ(Ring::moved_fraction(*empty, *empty), 0.0);
  EXPECT_EQ(Ring::moved_fraction(*empty, *a), 1.0);
  EXPECT_EQ(Ring::moved_fraction(*a, *empty), 1.0);
  EXPECT_EQ(Ring::moved_fraction(*a, *a_again), 0.0);
  EXPECT_DOUBLE_EQ(Ring::moved_fraction(*a, *other), 1.0);
  // Same names, another address: keys stay (the ring places by name).
  auto readdressed = must_build({{"a", "127.0.0.9:1", 1}, {"b", "127.0.0.1:1", 1}});
  EXPECT_EQ(Ring::moved_fraction(*a, *readdressed), 0.0);
}

TEST(RingWalk, VisitsEachNodeWithPointsOnceInRingOrder) {
  std::vector<RingNode> nodes;
  for (int i = 0; i < 300; ++i) nodes.push_back({"n" + std::to_string(i), "", i % 50 == 0 ? 0u : 1u});
  auto ring = must_build(nodes, 20);  // 300 nodes: the heap seen-set
  std::mt19937_64 rng(3);
  for (int k = 0; k < 50; ++k) {
    const uint64_t h = rng();
    std::vector<NodeIndex> order;
    ring->walk(h, [&](NodeIndex i) {
      order.push_back(i);
      return true;
    });
    EXPECT_EQ(order.size(), 294u);  // the six weight-0 nodes own no points
    EXPECT_EQ(std::set<NodeIndex>(order.begin(), order.end()).size(), order.size());
    EXPECT_EQ(order.front(), ring->lookup(h));
  }
  // Stopping early.
  int visits = 0;
  ring->walk(1, [&](NodeIndex) { return ++visits < 3; });
  EXPECT_EQ(visits, 3);
}

TEST(RingWalk, PickSkipsUnusableToTheNextInWalkOrder) {
  auto ring = must_build(golden_nodes());
  for (const Golden& g : kGolden) {
    // With the owner unusable, the first fallback serves; with two, the second.
    const NodeIndex first = *ring->find(g.walk[0]);
    const NodeIndex second = *ring->find(g.walk[1]);
    EXPECT_EQ(owner_name(*ring, ring->pick(g.hash, [&](NodeIndex i) { return i != first; })),
              g.walk[1]);
    EXPECT_EQ(owner_name(*ring, ring->pick(g.hash, [&](NodeIndex i) {
                return i != first && i != second;
              })),
              g.walk[2]);
  }
  EXPECT_FALSE(ring->pick(5, [](NodeIndex) { return false; }).has_value());
}

// pick_bounded's in-flight counts from a vector indexed by NodeIndex.
auto counts(const std::vector<uint32_t>& in_flight) {
  return [&in_flight](NodeIndex i) { return in_flight[i]; };
}

TEST(RingBoundedLoads, BoundFormula) {
  // ceil(c * (total + 1) / usable)
  EXPECT_EQ(Ring::load_bound(1.25, 0, 4), 1u);   // ceil(0.3125)
  EXPECT_EQ(Ring::load_bound(1.25, 15, 4), 5u);  // ceil(5.0)
  EXPECT_EQ(Ring::load_bound(1.25, 16, 4), 6u);  // ceil(5.3125)
  EXPECT_EQ(Ring::load_bound(2.0, 9, 5), 4u);
  EXPECT_EQ(Ring::load_bound(2.0, 9, 0), 0u);
}

TEST(RingBoundedLoads, OverTheBoundSkipsToTheNextNodeInRingOrder) {
  auto ring = must_build(golden_nodes());
  const auto all = [](NodeIndex) { return true; };
  for (const Golden& g : kGolden) {
    SCOPED_TRACE(g.key);
    std::vector<uint32_t> in_flight(ring->nodes().size(), 0);
    // Owner holds 4 of 4 in flight; 4 usable nodes (cache-e has weight 0):
    // bound = ceil(1.5 * 5 / 4) = 2, so the owner is skipped.
    in_flight[*ring->find(g.walk[0])] = 4;
    EXPECT_EQ(owner_name(*ring, ring->pick_bounded(g.hash, all, counts(in_flight), 1.5)), g.walk[1]);
    // Under the bound it keeps its keys: total 4, bound = ceil(1.5 * 5 / 4) = 2.
    in_flight[*ring->find(g.walk[0])] = 1;
    in_flight[*ring->find(g.walk[3])] = 3;
    EXPECT_EQ(owner_name(*ring, ring->pick_bounded(g.hash, all, counts(in_flight), 1.5)), g.walk[0]);
    in_flight[*ring->find(g.walk[3])] = 0;
    // Off (c = 0): load is ignored.
    in_flight[*ring->find(g.walk[0])] = 1000;
    EXPECT_EQ(owner_name(*ring, ring->pick_bounded(g.hash, all, counts(in_flight), 0.0)), g.walk[0]);
    // The overflow walks on past a second loaded node.
    in_flight[*ring->find(g.walk[0])] = 4;
    in_flight[*ring->find(g.walk[1])] = 4;
    EXPECT_EQ(owner_name(*ring, ring->pick_bounded(g.hash, all, counts(in_flight), 1.5)), g.walk[2]);
  }
}

TEST(RingBoundedLoads, NoNodeExceedsTheBoundUnderSkewedLoad) {
  // Every request for one hot key: with c = 1.25 the load spreads in ring order, and
  // no node ever holds more than the bound in force when it was chosen.
  auto ring = must_build(ten_nodes());
  std::vector<uint32_t> in_flight(10, 0);
  const uint64_t hot = Ring::hash("/hot");
  const auto all = [](NodeIndex) { return true; };
  uint64_t total = 0;
  for (int r = 0; r < 1000; ++r) {
    const uint64_t bound = Ring::load_bound(1.25, total, 10);
    const NodeIndex n = *ring->pick_bounded(hot, all, counts(in_flight), 1.25);
    ASSERT_LT(in_flight[n], bound);
    ++in_flight[n];
    ++total;
  }
  const uint32_t max = *std::max_element(in_flight.begin(), in_flight.end());
  EXPECT_LE(max, static_cast<uint32_t>(std::ceil(1.25 * 1000 / 10)));
}

TEST(RingBoundedLoads, UnusableNodesDoNotCount) {
  auto ring = must_build(golden_nodes());
  std::vector<uint32_t> in_flight(ring->nodes().size(), 0);
  const Golden& g = kGolden[0];
  const NodeIndex down = *ring->find(g.walk[0]);
  in_flight[down] = 100;  // a down node's stale requests do not raise the bound
  in_flight[*ring->find(g.walk[1])] = 2;
  // Usable: 3 nodes, total 2: bound = ceil(1.5 * 3 / 3) = 2: walk[1] is at the bound.
  auto picked = ring->pick_bounded(g.hash, [&](NodeIndex i) { return i != down; }, counts(in_flight), 1.5);
  EXPECT_EQ(owner_name(*ring, picked), g.walk[2]);
  EXPECT_FALSE(ring->pick_bounded(g.hash, [](NodeIndex) { return false; }, counts(in_flight), 1.5));
}

}  // namespace
}  // namespace ringproxy

// Ring::build's point sort (ring/point_sort.h) at every branch: the sorted order equals
// std::stable_sort's (equal hashes keep their arrival order, which is owner order), and
// the index points at each bucket's first point, whether buckets hold a few points
// (insertion sort) or many (the stable_sort fallback a skewed input takes).
TEST(RingPointSort, EqualsStableSortAndIndexesEveryBucket) {
  struct P {
    uint64_t hash;
    uint32_t owner;
    bool operator==(const P&) const = default;
  };
  std::mt19937_64 rng(7);
  const auto check = [](std::vector<P> points, unsigned bits) {
    std::vector<P> expected = points;
    std::stable_sort(expected.begin(), expected.end(),
                     [](const P& a, const P& b) { return a.hash < b.hash; });
    std::vector<uint32_t> index;
    ringproxy::sort_points_by_hash(points, bits, index);
    ASSERT_EQ(points, expected) << "bits " << bits;
    ASSERT_EQ(index.size(), (size_t{1} << bits) + 1);
    for (size_t b = 0; b + 1 < index.size(); ++b) {
      const auto first = std::lower_bound(
          points.begin(), points.end(), b, [bits](const P& p, size_t bucket) {
            return (bits == 0 ? 0 : p.hash >> (64 - bits)) < bucket;
          });
      ASSERT_EQ(index[b], static_cast<uint32_t>(first - points.begin())) << "bucket " << b;
    }
    ASSERT_EQ(index.back(), points.size());
  };
  for (const size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{100}, size_t{5000}}) {
    std::vector<P> uniform;
    for (size_t i = 0; i < n; ++i) uniform.push_back({rng(), static_cast<uint32_t>(i)});
    for (const unsigned bits : {0u, 1u, 4u, 10u}) check(uniform, bits);
  }
  // Skewed: 200 points in one bucket of 16 (past kInsertionMax), with runs of equal
  // hashes whose owners must stay in arrival order.
  std::vector<P> skewed;
  for (uint32_t i = 0; i < 200; ++i) skewed.push_back({(rng() >> 4) % 50, i});
  for (uint32_t i = 0; i < 20; ++i) skewed.push_back({rng(), 200 + i});
  check(skewed, 4);
  // Equal hashes within small buckets (insertion sort): arrival order kept.
  std::vector<P> ties;
  for (uint32_t i = 0; i < 64; ++i) ties.push_back({(uint64_t{i % 8} << 60) | (i % 3), i});
  check(ties, 3);
}
