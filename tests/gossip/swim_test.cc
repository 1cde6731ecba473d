// The SWIM state machine driven by hand, one message at a time: what it answers, when
// it suspects, how it refutes, what it piggybacks. Scenarios with many members are in
// sim_test.cc.
#include "gossip/swim.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace ringproxy::gossip {
namespace {

SwimConfig config(const std::string& name) {
  SwimConfig c;
  c.name = name;
  c.address = name + ":7946";
  c.incarnation = 1;
  return c;
}

Message alive_of(const std::string& from, std::vector<std::string> names, uint64_t inc = 1) {
  Message g;
  g.type = MessageType::kGossip;
  g.from = from;
  for (const std::string& n : names) g.updates.push_back(MemberUpdate{n, n + ":7946", inc, MemberState::kAlive, ""});
  return g;
}

const Outgoing* find(const Output& out, MessageType t, const std::string& to = "") {
  for (const Outgoing& o : out.messages) {
    if (o.message.type == t && (to.empty() || o.to == to)) return &o;
  }
  return nullptr;
}

size_t count(const Output& out, MessageType t) {
  size_t n = 0;
  for (const Outgoing& o : out.messages) n += o.message.type == t;
  return n;
}

// Ticks at every requested wakeup up to `until`, collecting what was sent.
std::vector<Outgoing> run(Swim& s, int64_t& now, int64_t until) {
  std::vector<Outgoing> sent;
  Output out = s.tick(now);
  while (true) {
    for (Outgoing& o : out.messages) sent.push_back(std::move(o));
    if (out.next_tick_ms > until) break;
    now = out.next_tick_ms;
    out = s.tick(now);
  }
  now = until;
  return sent;
}

// Ticks at each requested wakeup until a message of type `t` goes out; returns a copy
// of it and leaves `now` at that time.
Outgoing tick_until(Swim& s, int64_t& now, MessageType t) {
  for (int i = 0; i < 1000; ++i) {
    Output out = s.tick(now);
    if (const Outgoing* o = find(out, t)) return *o;
    now = out.next_tick_ms;
  }
  ADD_FAILURE() << "no message of type " << static_cast<int>(t);
  return {};
}

TEST(Swim, StartsAloneAndAlive) {
  Swim s(config("a"), Rng(1), 0);
  EXPECT_EQ(s.self().state, MemberState::kAlive);
  EXPECT_EQ(s.members().size(), 1u);
  EXPECT_EQ(s.live_count(), 1u);
  int64_t now = 0;
  EXPECT_TRUE(run(s, now, 10000).empty());  // nobody to talk to
}

TEST(Swim, JoinSendsPushPullToSeedsButNotToItself) {
  Swim s(config("a"), Rng(1), 0);
  std::vector<std::string> seeds = {"a:7946", "b:7946", "c:7946"};
  Output out = s.join(seeds, 0);
  ASSERT_EQ(out.messages.size(), 2u);
  for (const Outgoing& o : out.messages) {
    EXPECT_EQ(o.message.type, MessageType::kPushPull);
    EXPECT_TRUE(o.message.join);
    EXPECT_FALSE(o.message.response);
    ASSERT_EQ(o.message.updates.size(), 1u);  // our own alive entry
  }
  EXPECT_EQ(out.messages[0].to, "b:7946");
  // No answer: retried after join_retry_ms.
  int64_t now = 0;
  auto sent = run(s, now, 1500);
  size_t retries = 0;
  for (const Outgoing& o : sent) retries += o.message.type == MessageType::kPushPull;
  EXPECT_EQ(retries, 2u);
}

TEST(Swim, AnswersPushPullWithItsStateAndLearnsTheSender) {
  Swim s(config("a"), Rng(1), 0);
  s.put("backend/x", "1", 0);
  Message req{MessageType::kPushPull, 5, "b", "b:7946", "", "", false, true, 0, 1,
              {MemberUpdate{"b", "b:7946", 3, MemberState::kAlive, ""}}};
  Output out = s.receive("b:7946", req, 10);
  const Outgoing* resp = find(out, MessageType::kPushPull, "b:7946");
  ASSERT_NE(resp, nullptr);
  EXPECT_TRUE(resp->message.response);
  EXPECT_EQ(resp->message.seq, 5u);
  EXPECT_EQ(resp->message.updates.size(), 3u);  // a, b, backend/x
  ASSERT_NE(s.member("b"), nullptr);
  EXPECT_EQ(s.member("b")->incarnation, 3u);
  EXPECT_EQ(out.members_changed, std::vector<std::string>{"b"});
}

// synced(): a joiner holds the cluster's state once every part of one full state has
// arrived, not when the first (the members, which come first) has. A lost part is asked
// for again.
TEST(Swim, SyncedOnlyOnceEveryPartOfAPushPullHasArrived) {
  // b's state, as b would send it: its members, then its store, in three parts.
  Swim b(config("b"), Rng(2), 0);
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back("member-" + std::to_string(i));
  b.receive("x", alive_of("m", names), 0);
  for (int i = 0; i < 60; ++i) b.put("backend/node-" + std::to_string(i), std::string(40, 'v'), 0);
  Swim a(config("a"), Rng(1), 0);
  Output out = a.join(std::vector<std::string>{"b:7946"}, 0);
  const Outgoing* req = find(out, MessageType::kPushPull, "b:7946");
  ASSERT_NE(req, nullptr);
  std::vector<Message> parts;
  for (Outgoing& o : b.receive("a:7946", req->message, 1).messages) {
    if (o.message.type == MessageType::kPushPull) parts.push_back(std::move(o.message));
  }
  ASSERT_GE(parts.size(), 3u);
  EXPECT_FALSE(a.synced());
  a.receive("b:7946", parts[0], 2);
  EXPECT_GT(a.live_count(), 25u) << "someone answered...";
  EXPECT_LT(a.store().size(), b.store().size());
  EXPECT_LT(a.store().max_version(), b.store().max_version());
  EXPECT_FALSE(a.synced()) << "...but the store is still on its way";
  // The second part is lost: the last alone does not make it whole.
  a.receive("b:7946", parts.back(), 3);
  EXPECT_FALSE(a.synced());
  // Asked again within join_retry_ms (1 s), of a member it now holds alive.
  int64_t now = 3;
  size_t asked = 0;
  for (const Outgoing& o : run(a, now, 1100)) asked += o.message.type == MessageType::kPushPull && !o.message.response;
  EXPECT_GE(asked, 1u);
  for (size_t i = 1; i + 1 < parts.size(); ++i) a.receive("b:7946", parts[i], now);
  EXPECT_TRUE(a.synced());
  EXPECT_EQ(a.store().max_version(), b.store().max_version());
  // A first instance, alone, is synced by the whole of the second's join.
  Swim c(config("c"), Rng(3), 0);
  Message join{MessageType::kPushPull, 7, "d", "d:7946", "", "", false, true, 0, 2,
               {MemberUpdate{"d", "d:7946", 1, MemberState::kAlive, ""}}};
  c.receive("d:7946", join, 0);
  EXPECT_EQ(c.live_count(), 2u);
  EXPECT_FALSE(c.synced());
  join.part = 1;
  join.updates = {KvUpdate{"backend/x", KvEntry{"v", 3, "d", false}}};
  c.receive("d:7946", join, 1);
  EXPECT_TRUE(c.synced());
}

// tombstone_ttl_ms: twice reap_after_ms unless set, whatever reap_after_ms is; 0 keeps
// tombstones; one not above the reap time is refused, in release builds too.
TEST(Swim, TombstoneTtlFollowsTheReapTimeAndIsRefusedBelowIt) {
  EXPECT_EQ(Swim(config("a"), Rng(1), 0).config().tombstone_ttl_ms, 48LL * 3600 * 1000);
  SwimConfig c = config("a");
  c.reap_after_ms = 72LL * 3600 * 1000;
  EXPECT_EQ(Swim(c, Rng(1), 0).config().tombstone_ttl_ms, 144LL * 3600 * 1000);
  c.tombstone_ttl_ms = 0;
  EXPECT_EQ(Swim(c, Rng(1), 0).config().tombstone_ttl_ms, 0);
  c.tombstone_ttl_ms = c.reap_after_ms + 1;
  EXPECT_EQ(Swim(c, Rng(1), 0).config().tombstone_ttl_ms, c.reap_after_ms + 1);
  c.tombstone_ttl_ms = c.reap_after_ms;
  EXPECT_THROW(Swim(c, Rng(1), 0), std::invalid_argument);
  c.tombstone_ttl_ms = 1000;
  EXPECT_THROW(Swim(c, Rng(1), 0), std::invalid_argument);
}

TEST(Swim, AcksPingsForItselfOnly) {
  Swim s(config("a"), Rng(1), 0);
  Message ping{MessageType::kPing, 77, "b", "b:7946", "a", "", false, false, 0, 1, {}};
  Output out = s.receive("10.9.9.9:1", ping, 0);
  const Outgoing* ack = find(out, MessageType::kAck);
  ASSERT_NE(ack, nullptr);
  EXPECT_EQ(ack->to, "10.9.9.9:1");  // replies go where the packet came from
  EXPECT_EQ(ack->message.seq, 77u);
  ping.target = "someone-else";
  EXPECT_EQ(find(s.receive("10.9.9.9:1", ping, 0), MessageType::kAck), nullptr);
  ping.target = "";  // a seed ping: whoever is there answers
  EXPECT_NE(find(s.receive("10.9.9.9:1", ping, 0), MessageType::kAck), nullptr);
}

TEST(Swim, FailedProbeGoesIndirectThenSuspectsAndRaisesHealthScore) {
  Swim s(config("a"), Rng(7), 0);
  s.receive("x", alive_of("b", {"b", "c", "d", "e"}), 0);
  int64_t now = 0;
  const Outgoing ping = tick_until(s, now, MessageType::kPing);
  const int64_t sent_at = now;
  const std::string target = ping.message.target;
  EXPECT_EQ(ping.to, target + ":7946");
  std::vector<Outgoing> sent = run(s, now, sent_at + 150);
  size_t reqs = 0;
  for (const Outgoing& o : sent) {
    if (o.message.type != MessageType::kPingReq) continue;
    ++reqs;
    EXPECT_EQ(o.message.target, target);
    EXPECT_EQ(o.message.target_address, target + ":7946");
    EXPECT_NE(o.to, target + ":7946");
    EXPECT_EQ(o.message.seq, ping.message.seq);
  }
  EXPECT_EQ(reqs, 3u);  // indirect_checks
  run(s, now, sent_at + 200);  // the end of the probe period
  EXPECT_EQ(s.member(target)->state, MemberState::kSuspect);
  EXPECT_EQ(s.stats().suspicions_raised, 1u);
  EXPECT_EQ(s.health_score(), 3);  // three relays, no nack from any: we may be the slow one
}

TEST(Swim, NacksFromRelaysKeepHealthScoreDown) {
  Swim s(config("a"), Rng(7), 0);
  s.receive("x", alive_of("b", {"b", "c", "d", "e"}), 0);
  int64_t now = 0;
  const Outgoing ping = tick_until(s, now, MessageType::kPing);
  const int64_t sent_at = now;
  tick_until(s, now, MessageType::kPingReq);
  for (int i = 0; i < 3; ++i) {
    Message nack;
    nack.type = MessageType::kNack;
    nack.seq = ping.message.seq;
    nack.from = "relay";
    s.receive("relay:1", nack, now + 10);
  }
  run(s, now, sent_at + 200);
  EXPECT_EQ(s.stats().probes_failed, 1u);
  EXPECT_EQ(s.health_score(), 0);
}

TEST(Swim, RelaysPingReqsAndForwardsTheAckOrNacks) {
  Swim s(config("r"), Rng(9), 0);
  Message req{MessageType::kPingReq, 33, "a", "a:7946", "t", "t:7946", false, false, 0, 1, {}};
  Output out = s.receive("a:7946", req, 0);
  const Outgoing* ping = find(out, MessageType::kPing, "t:7946");
  ASSERT_NE(ping, nullptr);
  EXPECT_EQ(ping->message.target, "t");
  Message ack;
  ack.type = MessageType::kAck;
  ack.seq = ping->message.seq;
  ack.from = "t";
  out = s.receive("t:7946", ack, 20);
  const Outgoing* fwd = find(out, MessageType::kAck, "a:7946");
  ASSERT_NE(fwd, nullptr);
  EXPECT_EQ(fwd->message.seq, 33u);
  // No ack within the probe timeout: a nack (Lifeguard).
  s.receive("a:7946", req, 30);
  int64_t now = 30;
  std::vector<Outgoing> sent = run(s, now, 200);
  size_t nacks = 0;
  for (const Outgoing& o : sent) {
    if (o.message.type == MessageType::kNack) {
      ++nacks;
      EXPECT_EQ(o.to, "a:7946");
      EXPECT_EQ(o.message.seq, 33u);
    }
  }
  EXPECT_EQ(nacks, 1u);
}

TEST(Swim, AckEndsTheProbeAndLowersHealthScore) {
  Swim s(config("a"), Rng(3), 0);
  s.receive("x", alive_of("b", {"b"}), 0);
  // Raise the score first: a suspicion of ourselves.
  Message g;
  g.type = MessageType::kGossip;
  g.from = "b";
  g.updates = {MemberUpdate{"a", "a:7946", 1, MemberState::kSuspect, "b"}};
  s.receive("b:7946", g, 0);
  ASSERT_EQ(s.health_score(), 1);
  int64_t now = 0;
  const Outgoing ping = tick_until(s, now, MessageType::kPing);
  // The probe timeout is scaled by (score + 1) = 2: no ping-req (there is nobody to
  // ask anyway) and no suspicion before 200 ms.
  run(s, now, now + 150);
  Message ack;
  ack.type = MessageType::kAck;
  ack.seq = ping.message.seq;
  ack.from = "b";
  s.receive("b:7946", ack, now + 5);
  EXPECT_EQ(s.health_score(), 0);
  EXPECT_EQ(s.stats().probes_failed, 0u);
  EXPECT_EQ(s.member("b")->state, MemberState::kAlive);
}

TEST(Swim, RefutesSuspicionAndDeathWithAHigherIncarnation) {
  Swim s(config("a"), Rng(1), 0);
  s.receive("x", alive_of("b", {"b"}), 0);
  Message g;
  g.type = MessageType::kGossip;
  g.from = "b";
  g.updates = {MemberUpdate{"a", "a:7946", 5, MemberState::kDead, "b"}};
  Output out = s.receive("b:7946", g, 0);
  EXPECT_EQ(s.self().incarnation, 6u);
  EXPECT_EQ(s.self().state, MemberState::kAlive);
  EXPECT_EQ(s.stats().refutations, 1u);
  // An older accusation changes nothing.
  g.updates = {MemberUpdate{"a", "a:7946", 4, MemberState::kSuspect, "b"}};
  s.receive("b:7946", g, 0);
  EXPECT_EQ(s.self().incarnation, 6u);
  // The refutation goes out on the next packet.
  Message ping{MessageType::kPing, 1, "b", "b:7946", "a", "", false, false, 0, 1, {}};
  out = s.receive("b:7946", ping, 1);
  const Outgoing* ack = find(out, MessageType::kAck);
  ASSERT_NE(ack, nullptr);
  bool carried = false;
  for (const Update& u : ack->message.updates) {
    if (const auto* m = std::get_if<MemberUpdate>(&u)) {
      carried |= m->name == "a" && m->incarnation == 6 && m->state == MemberState::kAlive;
    }
  }
  EXPECT_TRUE(carried);
}

TEST(Swim, PingToASuspectCarriesTheSuspicionFirst) {
  SwimConfig c = config("a");
  Swim s(c, Rng(5), 0);
  s.receive("x", alive_of("b", {"b"}), 0);
  Message g;
  g.type = MessageType::kGossip;
  g.from = "c";
  g.updates = {MemberUpdate{"b", "b:7946", 1, MemberState::kSuspect, "c"}};
  s.receive("c:7946", g, 0);
  ASSERT_EQ(s.member("b")->state, MemberState::kSuspect);
  Output out = s.tick(0);
  int64_t now = 0;
  while (find(out, MessageType::kPing) == nullptr) {
    now = out.next_tick_ms;
    out = s.tick(now);
  }
  const Outgoing* ping = find(out, MessageType::kPing);
  EXPECT_EQ(ping->to, "b:7946");
  ASSERT_FALSE(ping->message.updates.empty());
  const auto& first = std::get<MemberUpdate>(ping->message.updates[0]);
  EXPECT_EQ(first.name, "b");
  EXPECT_EQ(first.state, MemberState::kSuspect);
}

TEST(Swim, SuspectBecomesDeadAfterTheTimeoutUnlessRefuted) {
  Swim s(config("a"), Rng(5), 0);
  s.receive("x", alive_of("b", {"b", "c"}), 0);
  Message g;
  g.type = MessageType::kGossip;
  g.from = "c";
  g.updates = {MemberUpdate{"b", "b:7946", 1, MemberState::kSuspect, "c"}};
  s.receive("c:7946", g, 0);
  // Three members: nobody to confirm (k = 0), so the timeout is min = the 4 s floor.
  EXPECT_EQ(s.member("b")->state, MemberState::kSuspect);
  int64_t now = 0;
  run(s, now, 3999);
  EXPECT_EQ(s.member("b")->state, MemberState::kSuspect);
  Output out = s.tick(4000);
  EXPECT_EQ(s.member("b")->state, MemberState::kDead);
  EXPECT_EQ(out.members_changed, std::vector<std::string>{"b"});
  // A restart with a new address and a higher incarnation is taken back.
  Message back = alive_of("b", {}, 0);
  back.updates = {MemberUpdate{"b", "10.1.1.1:7946", 9, MemberState::kAlive, ""}};
  s.receive("10.1.1.1:7946", back, 4100);
  EXPECT_EQ(s.member("b")->state, MemberState::kAlive);
  EXPECT_EQ(s.member("b")->address, "10.1.1.1:7946");
  // A stale alive claim (old address, old incarnation) does not undo it.
  s.receive("c:7946", alive_of("c", {"b"}, 1), 4200);
  EXPECT_EQ(s.member("b")->address, "10.1.1.1:7946");
}

TEST(Swim, TellsASenderOfAStaleClaimWhatItKnows) {
  Swim s(config("a"), Rng(5), 0);
  s.receive("x", alive_of("b", {"b"}, 7), 0);
  Message g;
  g.type = MessageType::kGossip;
  g.from = "c";
  g.updates = {MemberUpdate{"b", "b:7946", 6, MemberState::kSuspect, "c"}};
  Output out = s.receive("c:7946", g, 0);
  const Outgoing* c = find(out, MessageType::kGossip, "c:7946");
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->message.updates.size(), 1u);
  EXPECT_EQ(std::get<MemberUpdate>(c->message.updates[0]).incarnation, 7u);
}

TEST(Swim, LateTickJudgesNobody) {
  Swim s(config("a"), Rng(7), 0);
  s.receive("x", alive_of("b", {"b", "c", "d", "e"}), 0);
  int64_t now = 0;
  const Outgoing ping = tick_until(s, now, MessageType::kPing);
  // Stalled for 2 s right after sending the probe: the ack may be waiting unread.
  now += 2000;
  Output out = s.tick(now);
  EXPECT_EQ(s.stats().late_ticks, 1u);
  EXPECT_EQ(s.health_score(), 1);
  EXPECT_EQ(count(out, MessageType::kPingReq), 0u);
  // The ack read right after still counts.
  Message ack;
  ack.type = MessageType::kAck;
  ack.seq = ping.message.seq;
  ack.from = ping.message.target;
  s.receive("x", ack, now);
  EXPECT_EQ(s.health_score(), 0);
  EXPECT_EQ(s.stats().probes_failed, 0u);
}

TEST(Swim, LeaveIsGossipedAndFinal) {
  Swim s(config("a"), Rng(5), 0);
  s.receive("x", alive_of("b", {"b", "c", "d"}), 0);
  Output out = s.leave(10);
  EXPECT_TRUE(s.has_left());
  EXPECT_EQ(s.self().state, MemberState::kLeft);
  EXPECT_EQ(count(out, MessageType::kGossip), 3u);
  for (const Outgoing& o : out.messages) {
    const auto& u = std::get<MemberUpdate>(o.message.updates.at(0));
    EXPECT_EQ(u.name, "a");
    EXPECT_EQ(u.state, MemberState::kLeft);
  }
  // It no longer refutes, and no longer probes.
  Message g;
  g.type = MessageType::kGossip;
  g.from = "b";
  g.updates = {MemberUpdate{"a", "a:7946", 1, MemberState::kDead, "b"}};
  s.receive("b:7946", g, 20);
  EXPECT_EQ(s.self().state, MemberState::kLeft);
  int64_t now = 20;
  for (const Outgoing& o : run(s, now, 5000)) EXPECT_NE(o.message.type, MessageType::kPing);
  // Others take "left" over alive and over dead at the same incarnation.
  Swim other(config("b"), Rng(6), 0);
  other.receive("x", alive_of("a", {"a"}, 1), 0);
  Message left = alive_of("a", {}, 0);
  left.updates = {MemberUpdate{"a", "a:7946", 1, MemberState::kLeft, ""}};
  other.receive("a:7946", left, 1);
  EXPECT_EQ(other.member("a")->state, MemberState::kLeft);
}

TEST(Swim, StoreWritesArePiggybackedAndMergedOnlyWhenNewer) {
  Swim a(config("a"), Rng(1), 0);
  Swim b(config("b"), Rng(2), 0);
  a.receive("x", alive_of("b", {"b"}), 0);
  Output out = a.put("backend/x", "v1", 0);
  EXPECT_EQ(out.keys_changed, std::vector<std::string>{"backend/x"});
  Message ping{MessageType::kPing, 1, "b", "b:7946", "a", "", false, false, 0, 1, {}};
  out = a.receive("b:7946", ping, 1);
  const Outgoing* ack = find(out, MessageType::kAck);
  ASSERT_NE(ack, nullptr);
  Output got = b.receive("a:7946", ack->message, 2);
  EXPECT_EQ(got.keys_changed, std::vector<std::string>{"backend/x"});
  EXPECT_EQ(b.store().get("backend/x"), "v1");
  EXPECT_EQ(b.store().digest(), a.store().digest());
  got = b.receive("a:7946", ack->message, 3);
  EXPECT_TRUE(got.keys_changed.empty());
  a.erase("backend/x", 4);
  EXPECT_EQ(a.store().get("backend/x"), std::nullopt);
}

TEST(Swim, CollectsTombstonesOnTheReapTimerAndAnswersAStaleValueAtOnce) {
  SwimConfig c = config("a");
  c.reap_after_ms = 1000;
  c.tombstone_ttl_ms = 2000;
  Swim a(c, Rng(1), 0);
  a.receive("x", alive_of("p", {"p"}), 0);
  a.put("backend/x", "v1", 0);  // version 1
  a.erase("backend/x", 0);      // version 2
  a.put("backend/y", "v", 0);   // version 3: holds the clock
  int64_t now = 0;
  run(a, now, 9999);  // the reap timer runs every reconnect_interval_ms (10 s)
  EXPECT_NE(a.store().find("backend/x"), nullptr);
  run(a, now, 10000);
  EXPECT_EQ(a.store().find("backend/x"), nullptr);
  EXPECT_EQ(a.store().floor(), 3u);
  // p, cut off since before the delete, gossips the old value: refused, and told at once.
  Message g;
  g.type = MessageType::kGossip;
  g.from = "p";
  g.updates.push_back(KvUpdate{"backend/x", KvEntry{"v1", 1, "a", false}});
  Output out = a.receive("p:7946", g, now);
  EXPECT_EQ(a.store().get("backend/x"), std::nullopt);
  EXPECT_EQ(a.store().refused(), 1u);
  EXPECT_EQ(out.keys_changed, std::vector<std::string>{"backend/x"});
  const Outgoing* correction = find(out, MessageType::kGossip, "p:7946");
  ASSERT_NE(correction, nullptr);
  ASSERT_EQ(correction->message.updates.size(), 1u);
  EXPECT_EQ(correction->message.updates[0], Update(KvUpdate{"backend/x", KvEntry{"", 2, "a", true}}));
  // The same value again: nothing changes here, and p is told again.
  out = a.receive("p:7946", g, now);
  EXPECT_TRUE(out.keys_changed.empty());
  EXPECT_NE(find(out, MessageType::kGossip, "p:7946"), nullptr);
}

TEST(Swim, EveryPacketFitsTheBudget) {
  Swim s(config("a"), Rng(1), 0);
  std::vector<std::string> names;
  for (int i = 0; i < 300; ++i) names.push_back("member-with-a-long-name-" + std::to_string(i));
  s.receive("x", alive_of("m", names), 0);
  for (int i = 0; i < 100; ++i) s.put("backend/" + std::to_string(i), std::string(200, 'v'), 0);
  Message req{MessageType::kPushPull, 5, "zz", "zz:7946", "", "", false, false, 0, 1, {}};
  Output out = s.receive("zz:7946", req, 1);
  size_t parts = 0;
  for (const Outgoing& o : out.messages) {
    if (o.message.type != MessageType::kPushPull) continue;
    ++parts;
    Encoded e = encode(o.message, s.config().packet_budget);
    EXPECT_EQ(e.updates_sent, o.message.updates.size());
    EXPECT_LE(e.bytes.size(), kMaxPacket - kAuthTrailerReserve);
    EXPECT_EQ(o.message.part, parts - 1);
  }
  EXPECT_GT(parts, 20u);
  for (const Outgoing& o : out.messages) {
    if (o.message.type == MessageType::kPushPull) {
      EXPECT_EQ(o.message.parts, parts);
    }
  }
  int64_t now = 1;
  for (const Outgoing& o : run(s, now, 3000)) {
    Encoded e = encode(o.message, s.config().packet_budget);
    EXPECT_EQ(e.updates_sent, o.message.updates.size());
  }
}

}  // namespace
}  // namespace ringproxy::gossip
