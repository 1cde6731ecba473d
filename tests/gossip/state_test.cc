// The LWW store: the merge order, local writes as a Lamport clock, tombstones, and the
// semilattice properties (commutative, associative, idempotent) on random operations.
#include "gossip/state.h"

#include <gtest/gtest.h>

#include <vector>

#include "gossip/rng.h"

namespace ringproxy::gossip {
namespace {

TEST(KvStore, HigherVersionWinsThenLargerOriginThenTombstone) {
  KvStore s;
  EXPECT_TRUE(s.merge("k", KvEntry{"a", 5, "n1", false}));
  EXPECT_FALSE(s.merge("k", KvEntry{"b", 4, "n9", false}));  // older version loses
  EXPECT_EQ(s.get("k"), "a");
  EXPECT_TRUE(s.merge("k", KvEntry{"c", 5, "n2", false}));   // same version, larger origin
  EXPECT_EQ(s.get("k"), "c");
  EXPECT_FALSE(s.merge("k", KvEntry{"d", 5, "n1", false}));
  EXPECT_TRUE(s.merge("k", KvEntry{"", 5, "n2", true}));     // tombstone beats value
  EXPECT_EQ(s.get("k"), std::nullopt);
  ASSERT_NE(s.find("k"), nullptr);
  EXPECT_TRUE(s.find("k")->tombstone);
  EXPECT_FALSE(s.merge("k", KvEntry{"", 5, "n2", true}));    // idempotent
  EXPECT_TRUE(s.merge("k", KvEntry{"e", 6, "n0", false}));   // a later write revives it
  EXPECT_EQ(s.get("k"), "e");
  EXPECT_EQ(s.max_version(), 6u);
}

TEST(KvStore, LocalWritesFollowEverythingSeen) {
  KvStore s;
  s.merge("other", KvEntry{"x", 41, "far-away", false});
  const KvEntry& e = s.put("mine", "v", "me");
  EXPECT_EQ(e.version, 42u);  // a Lamport clock over the whole store
  EXPECT_EQ(e.origin, "me");
  const KvEntry& d = s.erase("other", "me");
  EXPECT_EQ(d.version, 43u);
  EXPECT_TRUE(d.tombstone);
  EXPECT_EQ(s.get("other"), std::nullopt);
  const KvEntry& n = s.erase("never-seen", "me");
  EXPECT_TRUE(n.tombstone);
  EXPECT_EQ(s.size(), 3u);
}

TEST(KvStore, DigestIsOrderFreeAndSeesEveryField) {
  KvStore a, b;
  a.merge("x", KvEntry{"1", 1, "o", false});
  a.merge("y", KvEntry{"2", 2, "o", false});
  b.merge("y", KvEntry{"2", 2, "o", false});
  b.merge("x", KvEntry{"1", 1, "o", false});
  EXPECT_EQ(a.digest(), b.digest());
  KvStore empty;
  EXPECT_NE(empty.digest(), a.digest());
  for (int field = 0; field < 4; ++field) {
    KvStore c;
    KvEntry e{"1", 1, "o", false};
    if (field == 0) e.value = "2";
    if (field == 1) e.version = 3;
    if (field == 2) e.origin = "p";
    if (field == 3) e.tombstone = true;
    c.merge("x", e);
    c.merge("y", KvEntry{"2", 2, "o", false});
    EXPECT_NE(c.digest(), a.digest()) << "field " << field;
  }
  // Length prefixes: ("ab","c") and ("a","bc") differ.
  KvStore p, q;
  p.merge("ab", KvEntry{"c", 1, "o", false});
  q.merge("a", KvEntry{"bc", 1, "o", false});
  EXPECT_NE(p.digest(), q.digest());
}

TEST(KvStore, DigestUptoComparesOnlyTheEntriesAtOrBelowTheBound) {
  KvStore a, b;
  a.merge("x", KvEntry{"1", 1, "o", false});
  a.merge("y", KvEntry{"2", 2, "o", false});
  b.merge("y", KvEntry{"2", 2, "o", false});
  b.merge("x", KvEntry{"1", 1, "o", false});
  EXPECT_EQ(a.digest_upto(2), b.digest_upto(2));
  // b gets a newer entry: equal below it, different from it on.
  b.merge("z", KvEntry{"3", 3, "p", false});
  EXPECT_EQ(a.digest_upto(2), b.digest_upto(2));
  EXPECT_NE(a.digest_upto(3), b.digest_upto(3));
  // An old entry a lacks shows below the bound, whatever comes after.
  a.merge("z", KvEntry{"3", 3, "p", false});
  a.erase("w", "o");  // version 4
  b.merge("w", KvEntry{"", 4, "o", true});
  EXPECT_EQ(a.digest_upto(UINT64_MAX), b.digest_upto(UINT64_MAX));
  KvStore c = b;
  c.merge("x", KvEntry{"1b", 5, "o", false});  // x replaced: its old version leaves the range
  EXPECT_NE(c.digest_upto(4), b.digest_upto(4));
  EXPECT_EQ(c.digest_upto(0), KvStore().digest_upto(0));
  // Cached per bound, and the cache follows changes.
  const uint64_t before = c.digest_upto(9);
  c.merge("v", KvEntry{"6", 6, "o", false});
  EXPECT_NE(c.digest_upto(9), before);
}

// Random entries over few keys, versions, origins and values, so that ties happen.
std::vector<std::pair<std::string, KvEntry>> random_ops(Rng& rng, size_t n) {
  std::vector<std::pair<std::string, KvEntry>> ops;
  for (size_t i = 0; i < n; ++i) {
    const bool tomb = rng.below(5) == 0;
    ops.emplace_back("k" + std::to_string(rng.below(4)),
                     KvEntry{tomb ? "" : "v" + std::to_string(rng.below(3)), rng.below(4),
                             "o" + std::to_string(rng.below(3)), tomb});
  }
  return ops;
}

KvStore apply_all(const std::vector<std::pair<std::string, KvEntry>>& ops) {
  KvStore s;
  for (const auto& [k, e] : ops) s.merge(k, e);
  return s;
}

// Merging one store into another, as push-pull does.
void merge_into(KvStore& to, const KvStore& from) {
  for (const auto& [k, e] : from.entries()) to.merge(k, e);
}

TEST(KvStoreProperty, MergeIsCommutativeAssociativeAndIdempotent) {
  Rng rng(2024);
  for (int round = 0; round < 500; ++round) {
    const auto a_ops = random_ops(rng, rng.below(12));
    const auto b_ops = random_ops(rng, rng.below(12));
    const auto c_ops = random_ops(rng, rng.below(12));
    const KvStore a = apply_all(a_ops), b = apply_all(b_ops), c = apply_all(c_ops);

    KvStore ab = a, ba = b;  // commutative
    merge_into(ab, b);
    merge_into(ba, a);
    ASSERT_EQ(ab.entries(), ba.entries());
    ASSERT_EQ(ab.digest(), ba.digest());

    KvStore ab_c = ab, a_bc = a, bc = b;  // associative
    merge_into(ab_c, c);
    merge_into(bc, c);
    merge_into(a_bc, bc);
    ASSERT_EQ(ab_c.entries(), a_bc.entries());

    KvStore aa = a;  // idempotent
    merge_into(aa, a);
    ASSERT_EQ(aa.entries(), a.entries());
    for (const auto& [k, e] : a.entries()) ASSERT_FALSE(aa.merge(k, e));

    // Any order of the same operations, with repeats, gives the same store.
    auto shuffled = a_ops;
    shuffled.insert(shuffled.end(), a_ops.begin(), a_ops.end());
    for (size_t i = shuffled.size(); i > 1; --i) std::swap(shuffled[i - 1], shuffled[rng.below(i)]);
    ASSERT_EQ(apply_all(shuffled).digest(), a.digest());
  }
}

}  // namespace
}  // namespace ringproxy::gossip
