#include "gossip/swim.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace ringproxy::gossip {
namespace {

bool is_live(MemberState s) { return s == MemberState::kAlive || s == MemberState::kSuspect; }

// memberlist util.go pushPullScale: above 32 members the push-pull interval grows with
// log2(n) so that full-state traffic stays bounded as the cluster grows.
int64_t push_pull_interval(const SwimConfig& cfg, size_t n) {
  const int64_t base = static_cast<int64_t>(cfg.push_pull_periods) * cfg.probe_interval_ms;
  constexpr double kThreshold = 32;
  if (static_cast<double>(n) <= kThreshold) return base;
  const double mult = std::ceil(std::log2(static_cast<double>(n)) - std::log2(kThreshold)) + 1.0;
  return static_cast<int64_t>(mult) * base;
}

}  // namespace

Swim::Swim(SwimConfig config, Rng rng, int64_t now_ms) : cfg_(std::move(config)), rng_(rng) {
  assert(!cfg_.name.empty() && cfg_.name.size() <= kMaxName);
  assert(!cfg_.address.empty() && cfg_.address.size() <= kMaxName);
  assert(cfg_.probe_timeout_ms > 0 && cfg_.probe_timeout_ms < cfg_.probe_interval_ms);
  assert(cfg_.awareness_max >= 1);
  if (cfg_.tombstone_ttl_ms == SwimConfig::kTombstoneTtlDefault) cfg_.tombstone_ttl_ms = 2 * cfg_.reap_after_ms;
  if (cfg_.tombstone_ttl_ms != 0 && cfg_.tombstone_ttl_ms <= cfg_.reap_after_ms) {
    throw std::invalid_argument("gossip: tombstone_ttl_ms " + std::to_string(cfg_.tombstone_ttl_ms) +
                                " must be 0 or above reap_after_ms " + std::to_string(cfg_.reap_after_ms));
  }
  assert(cfg_.packet_budget <= kMaxPacket && cfg_.packet_budget >= 1100);
  Entry self;
  self.member = Member{cfg_.name, cfg_.address, cfg_.incarnation, MemberState::kAlive, now_ms};
  members_.emplace(cfg_.name, std::move(self));
  next_seq_ = rng_.below(uint64_t{1} << 20) + 1;
  // Random phases, so that instances started together do not probe in lockstep.
  const auto interval = static_cast<uint64_t>(cfg_.probe_interval_ms);
  next_probe_ms_ = now_ms + static_cast<int64_t>(rng_.below(interval));
  next_gossip_ms_ = now_ms + static_cast<int64_t>(rng_.below(interval));
  next_push_pull_ms_ = now_ms + push_pull_interval(cfg_, 1);
  next_reconnect_ms_ = now_ms + cfg_.join_retry_ms;
  next_reap_ms_ = now_ms + cfg_.reconnect_interval_ms;
  wanted_tick_ms_ = now_ms;
}

// ---- views -------------------------------------------------------------------------

const Member& Swim::self() const { return members_.find(cfg_.name)->second.member; }

const Member* Swim::member(std::string_view name) const {
  auto it = members_.find(name);
  return it == members_.end() ? nullptr : &it->second.member;
}

std::vector<Member> Swim::members() const {
  std::vector<Member> out;
  out.reserve(members_.size());
  for (const auto& [name, e] : members_) out.push_back(e.member);
  return out;
}

// ---- entry points --------------------------------------------------------------------

Output Swim::join(std::span<const std::string> seeds, int64_t now_ms) {
  seeds_.assign(seeds.begin(), seeds.end());
  if (!left_) {
    for (const std::string& s : seeds_) {
      if (s != cfg_.address) push_pull(s, /*response=*/false, /*join=*/true, next_seq_++);
    }
  }
  next_reconnect_ms_ = now_ms + cfg_.join_retry_ms;
  return finish(now_ms);
}

Output Swim::tick(int64_t now_ms) {
  if (cfg_.lifeguard && now_ms - wanted_tick_ms_ > cfg_.probe_interval_ms) {
    ++stats_.late_ticks;
    adjust_awareness(+1);
    defer_due_deadlines(now_ms);
    return finish(now_ms);
  }
  check_suspicions(now_ms);

  if (probe_.active && !probe_.acked && !probe_.indirect_sent && now_ms >= probe_.ack_deadline_ms) {
    probe_timeout_passed(now_ms);
  }
  if (probe_.active && now_ms >= probe_.period_end_ms) finish_probe(now_ms);
  if (!probe_.active && !left_ && now_ms >= next_probe_ms_) start_probe(now_ms);

  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline_ms > now_ms) {
      ++it;
      continue;
    }
    if (it->second.kind == PendingKind::kRelay && cfg_.lifeguard) {
      Message nack;
      nack.type = MessageType::kNack;
      nack.seq = it->second.reply_seq;
      nack.from = cfg_.name;
      send(it->second.reply_to, std::move(nack), true);
    }
    it = pending_.erase(it);
  }

  if (now_ms >= next_gossip_ms_) {
    if (!queue_.empty()) gossip(now_ms);
    next_gossip_ms_ = now_ms + cfg_.probe_interval_ms;
  }
  if (!left_ && now_ms >= next_push_pull_ms_) {
    if (!live_names_.empty()) {
      const std::string& peer = live_names_[rng_.below(live_names_.size())];
      push_pull(members_.find(peer)->second.member.address, false, false, next_seq_++);
    }
    next_push_pull_ms_ = now_ms + push_pull_interval(cfg_, live_count());
  }
  if (!left_ && now_ms >= next_reconnect_ms_) {
    reconnect(now_ms);
    next_reconnect_ms_ = now_ms + (live_names_.empty() || !synced_ ? cfg_.join_retry_ms : cfg_.reconnect_interval_ms);
  }
  if (now_ms >= next_reap_ms_) {
    reap(now_ms);
    if (cfg_.tombstone_ttl_ms > 0) store_.collect(now_ms, cfg_.tombstone_ttl_ms);
    next_reap_ms_ = now_ms + cfg_.reconnect_interval_ms;
  }
  return finish(now_ms);
}

Output Swim::receive(std::string_view from_address, const Message& m, int64_t now_ms) {
  if (m.from == cfg_.name) return finish(now_ms);  // our own packet looped back
  const bool push_pull = m.type == MessageType::kPushPull;
  std::vector<Update> corrections;
  for (const Update& u : m.updates) {
    // A member claim is judged before it is applied (applying it may make us refute);
    // a store entry after, so that one refused below the floor is answered with the
    // tombstone that refused it (state.h).
    const bool member = std::holds_alternative<MemberUpdate>(u);
    if (!push_pull && member) {
      if (std::optional<Update> newer = newer_than(u)) corrections.push_back(std::move(*newer));
    }
    on_update(u, m.from, push_pull, now_ms);
    if (!push_pull && !member) {
      if (std::optional<Update> newer = newer_than(u)) corrections.push_back(std::move(*newer));
    }
  }
  // The sender gossiped a claim we know to be outdated (a suspicion of an incarnation
  // already refuted, say): tell it what we know, or it may hold on to the claim, and
  // a stale suspicion can time out into a false death there, since nobody else repeats
  // the refutation. Ours, found with the simulator (10% loss, 50 members). Push-pull
  // needs none: its response carries our whole state.
  if (!corrections.empty()) {
    Message c;
    c.type = MessageType::kGossip;
    c.from = cfg_.name;
    size_t room = cfg_.packet_budget - encoded_size_without_updates(c);
    for (Update& u : corrections) {
      const size_t size = encoded_size(u);
      if (size > room || c.updates.size() == kMaxUpdates) break;
      room -= size;
      c.updates.push_back(std::move(u));
    }
    out_.messages.push_back(Outgoing{std::string(from_address), std::move(c)});
  }
  if (m.type == MessageType::kPing || m.type == MessageType::kAck) {
    anti_entropy(from_address, m, now_ms);
  }
  switch (m.type) {
    case MessageType::kPing: on_ping(from_address, m); break;
    case MessageType::kAck: on_ack(m, now_ms); break;
    case MessageType::kPingReq: on_ping_req(from_address, m, now_ms); break;
    case MessageType::kNack:
      if (probe_.active && m.seq == probe_.seq) ++probe_.nacks;
      break;
    case MessageType::kGossip: break;
    case MessageType::kPushPull: on_push_pull(from_address, m, now_ms); break;
  }
  return finish(now_ms);
}

Output Swim::leave(int64_t now_ms) {
  if (left_) return finish(now_ms);
  left_ = true;
  probe_.active = false;
  Member& me = members_.find(cfg_.name)->second.member;
  me.state = MemberState::kLeft;
  me.state_change_ms = now_ms;
  changed_member(me.name);
  enqueue(me);
  // Tell `limit` members now rather than waiting for probes: a leaving member stops
  // probing, and its leave must outrun the suspicion its silence will cause.
  for (const std::string& name : random_live(limit(), "")) {
    Message g;
    g.type = MessageType::kGossip;
    g.from = cfg_.name;
    send(members_.find(name)->second.member.address, std::move(g), true);
  }
  return finish(now_ms);
}

Output Swim::put(const std::string& key, std::string value, int64_t now_ms) {
  assert(key.size() <= kMaxName && value.size() <= kMaxValue);
  const KvEntry& e = store_.put(key, std::move(value), cfg_.name);
  recent_.push_back({now_ms, e.version});
  queue_.push(KvUpdate{key, e});
  out_.keys_changed.push_back(key);
  return finish(now_ms);
}

Output Swim::erase(const std::string& key, int64_t now_ms) {
  assert(key.size() <= kMaxName);
  const KvEntry& e = store_.erase(key, cfg_.name, now_ms);
  recent_.push_back({now_ms, e.version});
  queue_.push(KvUpdate{key, e});
  out_.keys_changed.push_back(key);
  return finish(now_ms);
}

Output Swim::finish(int64_t now_ms) {
  int64_t next = next_reap_ms_;
  auto consider = [&next](int64_t t) { next = std::min(next, t); };
  if (!left_) {
    if (!probe_.active) consider(next_probe_ms_);
    consider(next_push_pull_ms_);
    consider(next_reconnect_ms_);
  }
  if (probe_.active) {
    consider(!probe_.acked && !probe_.indirect_sent ? probe_.ack_deadline_ms : probe_.period_end_ms);
  }
  if (!queue_.empty()) consider(next_gossip_ms_);
  for (const auto& [seq, p] : pending_) consider(p.deadline_ms);
  for (const std::string& name : suspects_) {
    const Entry& e = members_.find(name)->second;
    if (e.suspicion) consider(e.suspicion->deadline_ms());
  }
  next = std::max(next, now_ms);
  wanted_tick_ms_ = next;
  // Every ping and ack carries the settled part of the store, for anti_entropy().
  bool stamped = false;
  uint64_t bound = 0, digest = 0;
  for (Outgoing& o : out_.messages) {
    if (o.message.type != MessageType::kPing && o.message.type != MessageType::kAck) continue;
    if (!stamped) {
      bound = settled_bound(now_ms);
      digest = store_.digest_upto(bound);
      stamped = true;
    }
    o.message.store_bound = bound;
    o.message.store_digest = digest;
  }
  Output out = std::move(out_);
  out_ = Output{};
  out.next_tick_ms = next;
  auto dedupe = [](std::vector<std::string>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
  };
  dedupe(out.members_changed);
  dedupe(out.keys_changed);
  return out;
}

// ---- message handlers ------------------------------------------------------------------

void Swim::on_update(const Update& update, const std::string& sender, bool from_push_pull, int64_t now) {
  if (const auto* mu = std::get_if<MemberUpdate>(&update)) {
    MemberUpdate u = *mu;
    if (from_push_pull && u.state == MemberState::kDead && u.name != cfg_.name) {
      u.state = MemberState::kSuspect;  // memberlist mergeState: suspect, not dead
      u.from = sender;
    }
    on_member_update(std::move(u), now);
    return;
  }
  const auto& kv = std::get<KvUpdate>(update);
  if (kv.key.empty() || kv.key.size() > kMaxName) return;
  if (store_.merge(kv.key, kv.entry, now)) {
    // What we hold now: the entry, or the tombstone that refused it.
    const KvEntry& held = *store_.find(kv.key);
    recent_.push_back({now, held.version});
    queue_.push(KvUpdate{kv.key, held});
    out_.keys_changed.push_back(kv.key);
  }
}

std::optional<Update> Swim::newer_than(const Update& update) const {
  if (const auto* u = std::get_if<MemberUpdate>(&update)) {
    const Member* m = member(u->name);
    if (m == nullptr || m->incarnation <= u->incarnation) return std::nullopt;
    if (left_ && m->name == cfg_.name) return std::nullopt;
    return to_update(*m, cfg_.name);
  }
  const auto& kv = std::get<KvUpdate>(update);
  const KvEntry* mine = store_.find(kv.key);
  if (mine == nullptr || !supersedes(*mine, kv.entry)) return std::nullopt;
  return KvUpdate{kv.key, *mine};
}

void Swim::on_member_update(MemberUpdate u, int64_t now) {
  if (u.name.empty()) return;
  if (u.name == cfg_.name) {
    on_self_update(u);
    return;
  }
  auto it = members_.find(u.name);
  if (it == members_.end()) {
    // Only an alive claim introduces a member (memberlist ignores suspect and dead
    // claims about members it does not know, so a reaped member is not resurrected by
    // an accusation).
    if (u.state != MemberState::kAlive || u.address.empty()) return;
    Entry e;
    e.member = Member{u.name, u.address, u.incarnation, MemberState::kDead, now};
    it = members_.emplace(u.name, std::move(e)).first;
    set_state(it->second, MemberState::kAlive, now);
    enqueue(it->second.member);
    changed_member(u.name);
    return;
  }
  Entry& e = it->second;
  Member& m = e.member;
  switch (u.state) {
    case MemberState::kAlive:
      // Strictly newer only: at equal incarnations an accusation stands until refuted.
      // A restarted member's new address comes with its new incarnation.
      if (u.incarnation <= m.incarnation || u.address.empty()) return;
      m.incarnation = u.incarnation;
      m.address = u.address;
      set_state(e, MemberState::kAlive, now);
      enqueue(m);
      changed_member(m.name);
      return;
    case MemberState::kSuspect:
      if (u.incarnation < m.incarnation) return;
      if (m.state == MemberState::kSuspect && u.incarnation == m.incarnation) {
        if (e.suspicion && e.suspicion->confirm(u.from)) enqueue(m, u.from);
        return;
      }
      // A suspicion at a higher incarnation is a new one (the member refuted the old
      // one, and we missed the refutation): it starts its own timer. memberlist would
      // count it as a confirmation of the old timer, and so could time out a member
      // that had already refuted.
      if (m.state == MemberState::kSuspect) {
        m.incarnation = u.incarnation;
        e.suspicion.emplace(u.from, timeouts(), now);
        enqueue(m, u.from);
        changed_member(m.name);
        return;
      }
      if (m.state != MemberState::kAlive) return;
      m.incarnation = u.incarnation;
      set_state(e, MemberState::kSuspect, now);
      e.suspicion.emplace(u.from, timeouts(), now);
      enqueue(m, u.from);
      changed_member(m.name);
      return;
    case MemberState::kDead:
      if (u.incarnation < m.incarnation) return;
      if (m.state == MemberState::kDead || m.state == MemberState::kLeft) return;
      m.incarnation = u.incarnation;
      set_state(e, MemberState::kDead, now);
      enqueue(m, u.from);
      changed_member(m.name);
      return;
    case MemberState::kLeft:
      if (u.incarnation < m.incarnation || m.state == MemberState::kLeft) return;
      m.incarnation = u.incarnation;
      set_state(e, MemberState::kLeft, now);
      enqueue(m);
      changed_member(m.name);
      return;
  }
}

void Swim::on_self_update(const MemberUpdate& u) {
  if (left_) return;  // a member that has left does not argue
  Member& me = members_.find(cfg_.name)->second.member;
  bool refute = false;
  bool accused = false;
  switch (u.state) {
    case MemberState::kAlive:
      // A claim from a former life (higher incarnation, or ours at another address).
      refute = u.incarnation > me.incarnation ||
               (u.incarnation == me.incarnation && u.address != me.address);
      break;
    case MemberState::kSuspect:
    case MemberState::kDead:
      refute = accused = u.incarnation >= me.incarnation;
      break;
    case MemberState::kLeft:
      refute = u.incarnation >= me.incarnation;
      break;
  }
  if (!refute) return;
  // memberlist refute(): the new incarnation is above the accused one.
  me.incarnation = std::max(me.incarnation, u.incarnation) + 1;
  ++stats_.refutations;
  enqueue(me);
  changed_member(me.name);
  if (accused && cfg_.lifeguard) adjust_awareness(+1);  // Lifeguard IV-A
}

uint64_t Swim::settled_bound(int64_t now) {
  const int64_t settle = settle_ms();
  while (!recent_.empty() && recent_.front().first <= now - settle) recent_.pop_front();
  // Nothing arrived lately: every entry we hold, and any we may lack, is "settled".
  if (recent_.empty()) return UINT64_MAX;
  uint64_t low = UINT64_MAX;
  for (const auto& [at, version] : recent_) low = std::min(low, version);
  return low == 0 ? 0 : low - 1;  // local writes start at 1
}

void Swim::anti_entropy(std::string_view from_address, const Message& m, int64_t now) {
  const int64_t settle = settle_ms();
  if (settle == 0 || left_ || now < next_anti_entropy_ms_) return;
  // Compare what both sides have held for a settle time: the entries at or below the
  // sender's bound, if that is within ours.
  if (m.store_bound > settled_bound(now)) return;
  if (m.store_digest == store_.digest_upto(m.store_bound)) return;
  // One of us is missing an entry the other has held for longer than an update takes to
  // spread: nobody gossips it any more. Repair it now rather than at the next periodic
  // push-pull (up to push_pull_periods away).
  ++stats_.anti_entropy_pulls;
  next_anti_entropy_ms_ = now + settle;
  push_pull(std::string(from_address), false, false, next_seq_++);
}

void Swim::on_ping(std::string_view from_address, const Message& m) {
  // A ping meant for another name reached us (that member moved, and we took its
  // address): do not answer for it (memberlist handlePing).
  if (!m.target.empty() && m.target != cfg_.name) return;
  Message ack;
  ack.type = MessageType::kAck;
  ack.seq = m.seq;
  ack.from = cfg_.name;
  // The buddy system both ways: an ack to a member we suspect carries that suspicion
  // first, as a ping to it does (Lifeguard IV-C only does the ping). A suspicion raised
  // while we were cut off may have been gossiped into the void; without this the
  // suspect learns of it only when our own probe reaches it, which at a high health
  // score can take longer than the suspicion timeout. Found with the simulator.
  std::optional<Update> buddy;
  const Member* sender = m.from.empty() ? nullptr : member(m.from);
  if (cfg_.lifeguard && sender != nullptr && sender->state == MemberState::kSuspect) {
    buddy = to_update(*sender, cfg_.name);
  }
  send(std::string(from_address), std::move(ack), true, std::move(buddy));
}

void Swim::on_ping_req(std::string_view from_address, const Message& m, int64_t now) {
  if (m.target.empty() || m.target_address.empty()) return;
  const uint64_t seq = next_seq_++;
  pending_[seq] = Pending{PendingKind::kRelay, now + scale(cfg_.probe_timeout_ms),
                          std::string(from_address), m.seq};
  Message ping;
  ping.type = MessageType::kPing;
  ping.seq = seq;
  ping.from = cfg_.name;
  ping.from_address = cfg_.address;
  ping.target = m.target;
  send(m.target_address, std::move(ping), true);
}

void Swim::on_ack(const Message& m, int64_t now) {
  (void)now;
  if (probe_.active && m.seq == probe_.seq) {
    probe_.acked = true;
    probe_.active = false;  // the next probe still waits for the end of the period
    if (cfg_.lifeguard) adjust_awareness(-1);
    return;
  }
  auto it = pending_.find(m.seq);
  if (it == pending_.end()) return;
  const Pending p = it->second;
  pending_.erase(it);
  if (p.kind == PendingKind::kRelay) {
    Message ack;
    ack.type = MessageType::kAck;
    ack.seq = p.reply_seq;
    ack.from = cfg_.name;
    send(p.reply_to, std::move(ack), true);
    return;
  }
  // A re-contact ping was answered: if by someone we do not hold alive (a healed
  // partition, a seed we had lost), exchange full states.
  const Member* known = m.from.empty() ? nullptr : member(m.from);
  if (known == nullptr || !is_live(known->state)) push_pull(p.reply_to, false, false, next_seq_++);
}

void Swim::on_push_pull(std::string_view from_address, const Message& m, int64_t now) {
  (void)now;
  if (!synced_ && m.part < m.parts) {
    // Its updates are merged by now (receive()); count the part.
    auto [it, fresh] = partial_.try_emplace({m.from, m.seq, m.response});
    if (fresh && partial_.size() > 8) {  // someone keeps starting exchanges we never finish
      partial_.erase(it == partial_.begin() ? std::next(it) : partial_.begin());
    }
    it->second.insert(m.part);
    if (it->second.size() == m.parts) {
      synced_ = true;
      partial_.clear();
    }
  }
  if (!m.response && m.part == 0 && !left_) push_pull(std::string(from_address), true, false, m.seq);
}

// ---- probing ---------------------------------------------------------------------------

void Swim::start_probe(int64_t now) {
  const Entry* target = nullptr;
  for (int rebuilds = 0; target == nullptr && rebuilds < 2;) {
    if (probe_index_ >= probe_order_.size()) {
      probe_order_ = live_names_;
      shuffle(probe_order_, rng_);
      probe_index_ = 0;
      ++rebuilds;
      if (probe_order_.empty()) break;
    }
    auto it = members_.find(probe_order_[probe_index_++]);
    if (it != members_.end() && is_live(it->second.member.state)) target = &it->second;
  }
  if (target == nullptr) {
    next_probe_ms_ = now + scale(cfg_.probe_interval_ms);
    return;
  }
  ++stats_.probes;
  probe_ = Probe{};
  probe_.active = true;
  probe_.target = target->member.name;
  probe_.seq = next_seq_++;
  probe_.ack_deadline_ms = now + scale(cfg_.probe_timeout_ms);
  probe_.period_end_ms = now + scale(cfg_.probe_interval_ms);
  next_probe_ms_ = probe_.period_end_ms;

  Message ping;
  ping.type = MessageType::kPing;
  ping.seq = probe_.seq;
  ping.from = cfg_.name;
  ping.from_address = cfg_.address;
  ping.target = target->member.name;
  std::optional<Update> buddy;
  if (cfg_.lifeguard && target->member.state == MemberState::kSuspect) {
    buddy = to_update(target->member, cfg_.name);  // Lifeguard IV-C
  }
  send(target->member.address, std::move(ping), true, std::move(buddy));
}

void Swim::probe_timeout_passed(int64_t now) {
  (void)now;
  probe_.indirect_sent = true;
  auto it = members_.find(probe_.target);
  if (it == members_.end()) return;
  const std::vector<std::string> relays = random_live(cfg_.indirect_checks, probe_.target);
  for (const std::string& relay : relays) {
    Message req;
    req.type = MessageType::kPingReq;
    req.seq = probe_.seq;
    req.from = cfg_.name;
    req.from_address = cfg_.address;
    req.target = probe_.target;
    req.target_address = it->second.member.address;
    send(members_.find(relay)->second.member.address, std::move(req), true);
  }
  stats_.ping_reqs_sent += relays.size();
  probe_.expected_nacks = cfg_.lifeguard ? static_cast<uint32_t>(relays.size()) : 0;
}

void Swim::finish_probe(int64_t now) {
  probe_.active = false;
  ++stats_.probes_failed;
  if (cfg_.lifeguard) {
    // memberlist probeNode: with relays to hear from, each missing nack says we may be
    // the slow one; with none, every failed probe counts once.
    const int delta = probe_.expected_nacks > 0
                          ? static_cast<int>(probe_.expected_nacks) - static_cast<int>(probe_.nacks)
                          : 1;
    adjust_awareness(std::max(delta, 0));
  }
  auto it = members_.find(probe_.target);
  if (it == members_.end() || !is_live(it->second.member.state)) return;
  const Member& m = it->second.member;
  if (m.state == MemberState::kAlive) ++stats_.suspicions_raised;
  on_member_update(MemberUpdate{m.name, m.address, m.incarnation, MemberState::kSuspect, cfg_.name}, now);
}

void Swim::check_suspicions(int64_t now) {
  std::vector<std::string> due;
  for (const std::string& name : suspects_) {
    const Entry& e = members_.find(name)->second;
    if (e.suspicion && now >= e.suspicion->deadline_ms()) due.push_back(name);
  }
  for (const std::string& name : due) {
    Entry& e = members_.find(name)->second;
    ++stats_.deaths_declared;
    set_state(e, MemberState::kDead, now);
    enqueue(e.member, cfg_.name);
    changed_member(name);
  }
}

void Swim::defer_due_deadlines(int64_t now) {
  const int64_t t = now + scale(cfg_.probe_timeout_ms);
  if (probe_.active) {
    if (!probe_.indirect_sent) probe_.ack_deadline_ms = std::max(probe_.ack_deadline_ms, t);
    probe_.period_end_ms = std::max(probe_.period_end_ms,
                                    probe_.ack_deadline_ms + scale(cfg_.probe_interval_ms - cfg_.probe_timeout_ms));
    if (probe_.indirect_sent) probe_.period_end_ms = std::max(probe_.period_end_ms, t);
    next_probe_ms_ = probe_.period_end_ms;
  }
  for (auto& [seq, p] : pending_) p.deadline_ms = std::max(p.deadline_ms, t);
  for (const std::string& name : suspects_) {
    Entry& e = members_.find(name)->second;
    if (e.suspicion && e.suspicion->deadline_ms() <= t) e.suspicion->defer_until(t);
  }
}

void Swim::adjust_awareness(int delta) {
  awareness_ = std::clamp(awareness_ + delta, 0, static_cast<int>(cfg_.awareness_max) - 1);
}

SuspicionTimeouts Swim::timeouts() const {
  SuspicionTimeouts t = suspicion_timeouts(live_count(), cfg_.probe_interval_ms, cfg_.suspicion_mult,
                                           cfg_.suspicion_max_timeout_mult, cfg_.suspicion_floor_ms);
  if (!cfg_.lifeguard) {  // plain SWIM: one fixed timeout
    t.max_ms = t.min_ms;
    t.k = 0;
  }
  return t;
}

// ---- dissemination ---------------------------------------------------------------------

void Swim::gossip(int64_t now) {
  // Targets: live members, and dead ones for gossip_to_the_dead_ms after their death so
  // that a member wrongly declared dead hears it and refutes (memberlist gossip()).
  std::vector<std::string> recent_dead;
  for (const std::string& name : dead_) {
    if (now - members_.find(name)->second.member.state_change_ms < cfg_.gossip_to_the_dead_ms) {
      recent_dead.push_back(name);
    }
  }
  const size_t total = live_names_.size() + recent_dead.size();
  const size_t k = std::min<size_t>(cfg_.gossip_nodes, total);
  std::vector<size_t> picked;
  for (size_t tries = 0; picked.size() < k && tries < 4 * k + 8; ++tries) {
    const size_t i = static_cast<size_t>(rng_.below(total));
    if (std::find(picked.begin(), picked.end(), i) == picked.end()) picked.push_back(i);
  }
  for (size_t i : picked) {
    if (queue_.empty()) break;
    const std::string& name = i < live_names_.size() ? live_names_[i] : recent_dead[i - live_names_.size()];
    Message g;
    g.type = MessageType::kGossip;
    g.from = cfg_.name;
    send(members_.find(name)->second.member.address, std::move(g), true);
  }
}

void Swim::send(const std::string& to, Message m, bool piggyback, std::optional<Update> first) {
  // finish() stamps pings and acks with the store's bound and digest; reserve the
  // bound's largest encoding now so that the updates packed below still fit then.
  if (m.type == MessageType::kPing || m.type == MessageType::kAck) m.store_bound = UINT64_MAX - 1;  // 10 bytes
  if (piggyback) {
    size_t room = cfg_.packet_budget - encoded_size_without_updates(m);
    if (first && encoded_size(*first) <= room) {
      room -= encoded_size(*first);
      m.updates.push_back(std::move(*first));
    }
    std::vector<Update> more = queue_.take(room, limit(), kMaxUpdates - m.updates.size());
    for (Update& u : more) m.updates.push_back(std::move(u));
  }
  out_.messages.push_back(Outgoing{to, std::move(m)});
}

void Swim::push_pull(const std::string& address, bool response, bool join, uint64_t seq) {
  if (!response) ++stats_.push_pulls_started;
  Message tmpl;
  tmpl.type = MessageType::kPushPull;
  tmpl.seq = seq;
  tmpl.from = cfg_.name;
  tmpl.from_address = cfg_.address;
  tmpl.response = response;
  tmpl.join = join;
  tmpl.part = kMaxParts - 1;  // the largest part numbers: the header never grows past this
  tmpl.parts = kMaxParts;
  const size_t room = cfg_.packet_budget - encoded_size_without_updates(tmpl);

  std::vector<std::vector<Update>> chunks(1);
  size_t used = 0;
  auto add = [&](Update u) {
    const size_t size = encoded_size(u);
    if (used + size > room || chunks.back().size() == kMaxUpdates) {
      chunks.emplace_back();
      used = 0;
    }
    used += size;
    chunks.back().push_back(std::move(u));
  };
  for (const auto& [name, e] : members_) add(to_update(e.member, cfg_.name));
  for (const auto& [key, entry] : store_.entries()) add(KvUpdate{key, entry});
  // More than kMaxParts packets (several MB of state) is far beyond what we carry; the
  // rest would wait for piggybacking.
  if (chunks.size() > kMaxParts) chunks.resize(kMaxParts);
  const auto parts = static_cast<uint32_t>(chunks.size());
  for (uint32_t i = 0; i < parts; ++i) {
    Message m = tmpl;
    m.part = i;
    m.parts = parts;
    m.updates = std::move(chunks[i]);
    out_.messages.push_back(Outgoing{address, std::move(m)});
  }
}

void Swim::reconnect(int64_t now) {
  auto ping = [&](const std::string& address, const std::string& target) {
    const uint64_t seq = next_seq_++;
    pending_[seq] = Pending{PendingKind::kReconnect, now + cfg_.probe_interval_ms, address, 0};
    Message p;
    p.type = MessageType::kPing;
    p.seq = seq;
    p.from = cfg_.name;
    p.from_address = cfg_.address;
    p.target = target;
    ++stats_.reconnect_pings;
    send(address, std::move(p), true);
  };
  if (!synced_ && !live_names_.empty()) {
    // Someone answered, but no full state has reached us whole (synced()): ask again.
    const std::string& peer = live_names_[rng_.below(live_names_.size())];
    push_pull(members_.find(peer)->second.member.address, false, false, next_seq_++);
  }
  std::set<std::string_view> live_addresses;
  for (const std::string& name : live_names_) live_addresses.insert(members_.find(name)->second.member.address);
  for (const std::string& seed : seeds_) {
    if (seed == cfg_.address || live_addresses.count(seed) != 0) continue;
    if (live_names_.empty()) {
      push_pull(seed, false, true, next_seq_++);  // still alone: join directly
    } else {
      ping(seed, "");
    }
  }
  if (!dead_.empty()) {
    auto it = dead_.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(rng_.below(dead_.size())));
    const Member& m = members_.find(*it)->second.member;
    ping(m.address, m.name);
  }
}

void Swim::reap(int64_t now) {
  for (auto it = members_.begin(); it != members_.end();) {
    const Member& m = it->second.member;
    if (m.name != cfg_.name && !is_live(m.state) && now - m.state_change_ms >= cfg_.reap_after_ms) {
      dead_.erase(m.name);
      changed_member(m.name);
      it = members_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---- bookkeeping -----------------------------------------------------------------------

void Swim::set_state(Entry& e, MemberState state, int64_t now) {
  const MemberState old = e.member.state;
  e.member.state = state;
  e.member.state_change_ms = now;
  const std::string& name = e.member.name;
  if (is_live(old) && !is_live(state)) remove_live(e);
  if (!is_live(old) && is_live(state)) add_live(name);
  if (state == MemberState::kSuspect) {
    suspects_.insert(name);
  } else {
    suspects_.erase(name);
    e.suspicion.reset();
  }
  if (state == MemberState::kDead) {
    dead_.insert(name);
  } else {
    dead_.erase(name);
  }
}

void Swim::add_live(const std::string& name) {
  Entry& e = members_.find(name)->second;
  e.live_index = live_names_.size();
  live_names_.push_back(name);
  // A new member is probed within this pass, at a random place ahead (memberlist
  // addNode inserts it at a random offset).
  const size_t span = probe_order_.size() - std::min(probe_index_, probe_order_.size());
  const size_t at = probe_index_ + static_cast<size_t>(rng_.below(span + 1));
  probe_order_.insert(probe_order_.begin() + static_cast<std::ptrdiff_t>(std::min(at, probe_order_.size())), name);
}

void Swim::remove_live(Entry& e) {
  const size_t i = e.live_index;
  assert(i < live_names_.size());
  if (i + 1 != live_names_.size()) {
    live_names_[i] = std::move(live_names_.back());
    members_.find(live_names_[i])->second.live_index = i;
  }
  live_names_.pop_back();
  e.live_index = SIZE_MAX;
}

void Swim::enqueue(const Member& m, const std::string& from) { queue_.push(to_update(m, from)); }

void Swim::changed_member(const std::string& name) { out_.members_changed.push_back(name); }

MemberUpdate Swim::to_update(const Member& m, const std::string& from) const {
  const bool accusation = m.state == MemberState::kSuspect || m.state == MemberState::kDead;
  return MemberUpdate{m.name, m.address, m.incarnation, m.state, accusation ? from : std::string()};
}

std::vector<std::string> Swim::random_live(size_t k, std::string_view exclude) {
  std::vector<std::string> out;
  const size_t n = live_names_.size();
  if (n <= k + 1) {
    for (const std::string& name : live_names_) {
      if (name != exclude) out.push_back(name);
    }
    shuffle(out, rng_);
    if (out.size() > k) out.resize(k);
    return out;
  }
  for (size_t tries = 0; out.size() < k && tries < 4 * k + 16; ++tries) {
    const std::string& name = live_names_[rng_.below(n)];
    if (name == exclude) continue;
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

}  // namespace ringproxy::gossip
