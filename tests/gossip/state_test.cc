// The LWW store: the merge order, local writes as a Lamport clock, tombstones, the
// semilattice properties (commutative, associative, idempotent) on random operations,
// and collecting tombstones: the horizon, the floor that keeps a deleted value from
// coming back, and digests that do not see whether a tombstone was collected.
#include "gossip/state.h"

#include <gtest/gtest.h>

#include <vector>

#include "gossip/rng.h"

namespace ringproxy::gossip {
namespace {

TEST(KvStore, HigherVersionWinsThenLargerOriginThenTombstone) {
  KvStore s;
  EXPECT_TRUE(s.merge("k", KvEntry{"a", 5, "n1", false}, 0));
  EXPECT_FALSE(s.merge("k", KvEntry{"b", 4, "n9", false}, 0));  // older version loses
  EXPECT_EQ(s.get("k"), "a");
  EXPECT_TRUE(s.merge("k", KvEntry{"c", 5, "n2", false}, 0));   // same version, larger origin
  EXPECT_EQ(s.get("k"), "c");
  EXPECT_FALSE(s.merge("k", KvEntry{"d", 5, "n1", false}, 0));
  EXPECT_TRUE(s.merge("k", KvEntry{"", 5, "n2", true}, 0));     // tombstone beats value
  EXPECT_EQ(s.get("k"), std::nullopt);
  ASSERT_NE(s.find("k"), nullptr);
  EXPECT_TRUE(s.find("k")->tombstone);
  EXPECT_FALSE(s.merge("k", KvEntry{"", 5, "n2", true}, 0));    // idempotent
  EXPECT_TRUE(s.merge("k", KvEntry{"e", 6, "n0", false}, 0));   // a later write revives it
  EXPECT_EQ(s.get("k"), "e");
  EXPECT_EQ(s.max_version(), 6u);
}

TEST(KvStore, LocalWritesFollowEverythingSeen) {
  KvStore s;
  s.merge("other", KvEntry{"x", 41, "far-away", false}, 0);
  const KvEntry& e = s.put("mine", "v", "me");
  EXPECT_EQ(e.version, 42u);  // a Lamport clock over the whole store
  EXPECT_EQ(e.origin, "me");
  const KvEntry& d = s.erase("other", "me", 0);
  EXPECT_EQ(d.version, 43u);
  EXPECT_TRUE(d.tombstone);
  EXPECT_EQ(s.get("other"), std::nullopt);
  const KvEntry& n = s.erase("never-seen", "me", 0);
  EXPECT_TRUE(n.tombstone);
  EXPECT_EQ(s.size(), 3u);
}

TEST(KvStore, DigestIsOrderFreeAndSeesEveryField) {
  KvStore a, b;
  a.merge("x", KvEntry{"1", 1, "o", false}, 0);
  a.merge("y", KvEntry{"2", 2, "o", false}, 0);
  b.merge("y", KvEntry{"2", 2, "o", false}, 0);
  b.merge("x", KvEntry{"1", 1, "o", false}, 0);
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
    c.merge("x", e, 0);
    c.merge("y", KvEntry{"2", 2, "o", false}, 0);
    EXPECT_NE(c.digest(), a.digest()) << "field " << field;
  }
  // Length prefixes: ("ab","c") and ("a","bc") differ.
  KvStore p, q;
  p.merge("ab", KvEntry{"c", 1, "o", false}, 0);
  q.merge("a", KvEntry{"bc", 1, "o", false}, 0);
  EXPECT_NE(p.digest(), q.digest());
}

TEST(KvStore, DigestUptoComparesOnlyTheEntriesAtOrBelowTheBound) {
  KvStore a, b;
  a.merge("x", KvEntry{"1", 1, "o", false}, 0);
  a.merge("y", KvEntry{"2", 2, "o", false}, 0);
  b.merge("y", KvEntry{"2", 2, "o", false}, 0);
  b.merge("x", KvEntry{"1", 1, "o", false}, 0);
  EXPECT_EQ(a.digest_upto(2), b.digest_upto(2));
  // b gets a newer entry: equal below it, different from it on.
  b.merge("z", KvEntry{"3", 3, "p", false}, 0);
  EXPECT_EQ(a.digest_upto(2), b.digest_upto(2));
  EXPECT_NE(a.digest_upto(3), b.digest_upto(3));
  // An old entry a lacks shows below the bound, whatever comes after.
  a.merge("z", KvEntry{"3", 3, "p", false}, 0);
  a.erase("w", "o", 0);  // version 4
  b.merge("w", KvEntry{"", 4, "o", true}, 0);
  EXPECT_EQ(a.digest_upto(UINT64_MAX), b.digest_upto(UINT64_MAX));
  KvStore c = b;
  c.merge("x", KvEntry{"1b", 5, "o", false}, 0);  // x replaced: its old version leaves the range
  EXPECT_NE(c.digest_upto(4), b.digest_upto(4));
  EXPECT_EQ(c.digest_upto(0), KvStore().digest_upto(0));
  // Cached per bound, and the cache follows changes.
  const uint64_t before = c.digest_upto(9);
  c.merge("v", KvEntry{"6", 6, "o", false}, 0);
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
  for (const auto& [k, e] : ops) s.merge(k, e, 0);
  return s;
}

// Merging one store into another, as push-pull does.
void merge_into(KvStore& to, const KvStore& from) {
  for (const auto& [k, e] : from.entries()) to.merge(k, e, 0);
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
    for (const auto& [k, e] : a.entries()) ASSERT_FALSE(aa.merge(k, e, 0));

    // Any order of the same operations, with repeats, gives the same store.
    auto shuffled = a_ops;
    shuffled.insert(shuffled.end(), a_ops.begin(), a_ops.end());
    for (size_t i = shuffled.size(); i > 1; --i) std::swap(shuffled[i - 1], shuffled[rng.below(i)]);
    ASSERT_EQ(apply_all(shuffled).entries(), a.entries());
  }
}

// ---- collecting tombstones (state.h, "Collecting tombstones") ---------------------------

constexpr int64_t kHour = 3600 * 1000;
constexpr int64_t kHorizon = 48 * kHour;

TEST(KvStoreCollect, DropsTombstonesPastTheHorizonAndKeepsYoungerOnes) {
  KvStore s;
  s.put("live", "v", "a");                 // version 1
  s.erase("old", "a", 1 * kHour);          // version 2
  s.erase("young", "a", 10 * kHour);       // version 3
  s.put("top", "x", "a");                  // version 4: neither tombstone holds the clock
  EXPECT_EQ(s.tombstones(), 2u);
  EXPECT_EQ(s.collect(1 * kHour + kHorizon - 1, kHorizon), 0u);  // one ms short
  EXPECT_EQ(s.floor(), 0u);
  EXPECT_EQ(s.collect(1 * kHour + kHorizon, kHorizon), 1u);
  EXPECT_EQ(s.find("old"), nullptr);
  ASSERT_NE(s.find("young"), nullptr);
  EXPECT_TRUE(s.find("young")->tombstone);
  EXPECT_EQ(s.floor(), 3u);  // one above the version dropped
  EXPECT_EQ(s.tombstones(), 1u);
  EXPECT_EQ(s.collected(), 1u);
  // Live entries are never collected, however old.
  EXPECT_EQ(s.collect(1000 * kHour, kHorizon), 1u);
  EXPECT_EQ(s.get("live"), "v");
  EXPECT_EQ(s.get("top"), "x");
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.floor(), 4u);
  EXPECT_EQ(s.collected(), 2u);
  EXPECT_EQ(s.max_version(), 4u);  // the Lamport clock never goes back
  EXPECT_EQ(s.put("next", "n", "a").version, 5u);
}

TEST(KvStoreCollect, AgeIsFromWhenThisStoreTookTheTombstone) {
  KvStore s;
  s.merge("k", KvEntry{"", 7, "far", true}, 5 * kHour);  // written who knows when, there
  s.put("top", "x", "me");
  EXPECT_EQ(s.collect(5 * kHour + kHorizon - 1, kHorizon), 0u);
  // A newer tombstone for the key ages from its own arrival.
  s.merge("k", KvEntry{"", 8, "far", true}, 6 * kHour);
  s.put("top", "y", "me");
  EXPECT_EQ(s.collect(5 * kHour + kHorizon, kHorizon), 0u);
  EXPECT_EQ(s.collect(6 * kHour + kHorizon, kHorizon), 1u);
  // A value that replaces a tombstone ends its ageing.
  s.erase("j", "me", 0);
  s.merge("j", KvEntry{"back", 100, "far", false}, 1);
  EXPECT_EQ(s.tombstones(), 0u);
  EXPECT_EQ(s.collect(1000 * kHour, kHorizon), 0u);
  EXPECT_EQ(s.get("j"), "back");
}

TEST(KvStoreCollect, TheTombstoneThatHoldsTheClockIsKept) {
  KvStore s;
  s.put("k", "v", "a");
  s.erase("k", "a", 0);  // version 2, the highest
  EXPECT_EQ(s.collect(1000 * kHour, kHorizon), 0u);
  ASSERT_NE(s.find("k"), nullptr);
  s.put("other", "v", "a");  // version 3: the tombstone goes at the next pass
  EXPECT_EQ(s.collect(1000 * kHour, kHorizon), 1u);
  EXPECT_EQ(s.find("k"), nullptr);
}

// A store that deleted "k" (version 5) and collected the tombstone: floor 6.
KvStore collected_k() {
  KvStore s;
  s.put("k", "old", "a");         // 1
  s.put("keep", "kept", "b");     // 2
  s.put("k", "newer", "c");       // 3
  s.put("x", "1", "a");           // 4
  s.erase("k", "a", 0);           // 5
  s.put("top", "t", "a");         // 6
  EXPECT_EQ(s.collect(kHorizon, kHorizon), 1u);
  EXPECT_EQ(s.floor(), 6u);
  return s;
}

TEST(KvStoreCollect, ADeletedValueDoesNotComeBackAfterItsTombstoneIsCollected) {
  KvStore s = collected_k();
  // An instance cut off before the delete sends its value back: refused, and answered
  // with a tombstone at the highest collected version, the sender's origin.
  EXPECT_TRUE(s.merge("k", KvEntry{"newer", 3, "c", false}, kHorizon + 1));
  EXPECT_EQ(s.get("k"), std::nullopt);
  EXPECT_EQ(*s.find("k"), (KvEntry{"", 5, "c", true}));
  EXPECT_EQ(s.refused(), 1u);
  // An older value of it from another: still refused (the answer stays a tombstone).
  EXPECT_FALSE(s.merge("k", KvEntry{"old", 1, "a", false}, kHorizon + 2));
  EXPECT_EQ(s.get("k"), std::nullopt);
  // At the highest collected version, any origin: a tombstone beats it at its origin.
  EXPECT_TRUE(s.merge("k", KvEntry{"odd", 5, "zz", false}, kHorizon + 3));
  EXPECT_EQ(*s.find("k"), (KvEntry{"", 5, "zz", true}));
  EXPECT_EQ(s.refused(), 2u);
  // A key never seen here, below the floor: refused the same way.
  EXPECT_TRUE(s.merge("gone", KvEntry{"v", 2, "a", false}, kHorizon + 4));
  EXPECT_EQ(s.get("gone"), std::nullopt);
  EXPECT_EQ(s.refused(), 3u);
}

TEST(KvStoreCollect, ACollectedTombstoneSentBackIsDropped) {
  KvStore s = collected_k();
  const size_t size = s.size();
  // A peer that has not collected it yet sends it in its push-pull: no bounce.
  EXPECT_FALSE(s.merge("k", KvEntry{"", 5, "a", true}, kHorizon + 1));
  EXPECT_EQ(s.find("k"), nullptr);
  EXPECT_EQ(s.size(), size);
  EXPECT_EQ(s.refused(), 0u);
}

TEST(KvStoreCollect, AtAndAboveTheFloorAndForLiveKeysMergeIsAsBefore) {
  KvStore s = collected_k();
  // At the floor: a write made after the delete was seen.
  EXPECT_TRUE(s.merge("k", KvEntry{"again", 6, "b", false}, kHorizon + 1));
  EXPECT_EQ(s.get("k"), "again");
  EXPECT_TRUE(s.merge("fresh", KvEntry{"f", 7, "b", false}, kHorizon + 1));
  EXPECT_EQ(s.get("fresh"), "f");
  // A key held live takes any newer entry, below the floor too: a value, a delete.
  EXPECT_TRUE(s.merge("keep", KvEntry{"kept2", 4, "c", false}, kHorizon + 1));
  EXPECT_EQ(s.get("keep"), "kept2");
  EXPECT_TRUE(s.merge("keep", KvEntry{"", 5, "c", true}, kHorizon + 1));
  EXPECT_EQ(s.get("keep"), std::nullopt);
  EXPECT_EQ(s.refused(), 0u);
}

TEST(KvStoreCollect, TheRefusalDeletesTheValueAtItsHolderAndMovesItsClockPastTheFloor) {
  KvStore here = collected_k();
  // The holder: cut off after version 3, it kept "k" and wrote on (its clock lagged).
  KvStore holder;
  holder.put("k", "old", "a");
  holder.put("keep", "kept", "b");
  holder.put("k", "newer", "c");
  holder.put("health/p/n", "down", "p");  // version 4, below 6: a write of its own
  for (const auto& [k, e] : holder.entries()) here.merge(k, e, kHorizon + 1);
  EXPECT_EQ(here.get("k"), std::nullopt);
  EXPECT_EQ(here.get("health/p/n"), std::nullopt);  // the documented cost: refused too
  EXPECT_EQ(here.refused(), 2u);
  for (const auto& [k, e] : here.entries()) holder.merge(k, e, 10);
  EXPECT_EQ(holder.get("k"), std::nullopt);
  EXPECT_EQ(holder.get("health/p/n"), std::nullopt);
  EXPECT_EQ(holder.digest(), here.digest());
  // Its clock is past the floor now: what it writes next is taken.
  const KvEntry& again = holder.put("health/p/n", "down", "p");
  EXPECT_GE(again.version, here.floor());
  EXPECT_TRUE(here.merge("health/p/n", again, kHorizon + 2));
  EXPECT_EQ(here.get("health/p/n"), "down");
}

TEST(KvStoreCollect, DigestsAgreeWhetherOrNotATombstoneIsCollected) {
  KvStore a, b;
  for (KvStore* s : {&a, &b}) {
    s->put("x", "1", "o");
    s->erase("x", "o", 0);
    s->put("y", "2", "o");
  }
  EXPECT_EQ(a.collect(kHorizon, kHorizon), 1u);
  EXPECT_NE(a.entries(), b.entries());
  EXPECT_EQ(a.digest(), b.digest());
  EXPECT_EQ(a.digest_upto(UINT64_MAX), b.digest_upto(UINT64_MAX));
  EXPECT_EQ(a.digest_upto(2), b.digest_upto(2));
  // A key live on one side and deleted on the other still differs.
  KvStore c = b;
  EXPECT_FALSE(c.merge("x", KvEntry{"1", 1, "o", false}, 0));  // the tombstone is newer
  KvStore d;
  d.put("x", "1", "o");
  d.put("y", "2", "o");
  EXPECT_NE(d.digest(), b.digest());
  EXPECT_NE(d.digest_upto(UINT64_MAX), b.digest_upto(UINT64_MAX));
}

}  // namespace
}  // namespace ringproxy::gossip
