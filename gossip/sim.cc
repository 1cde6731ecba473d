#include "gossip/sim.h"

#include <algorithm>
#include <cassert>
#include <stdexcept>

#include "gossip/codec.h"

namespace ringproxy::gossip {
namespace {
// Min-heap on (time, insertion order).
bool later(const auto& a, const auto& b) {
  return a.at != b.at ? a.at > b.at : a.order > b.order;
}
}  // namespace

Sim::Sim(SimConfig config) : cfg_(std::move(config)), rng_(cfg_.seed) {}

size_t Sim::index(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw std::invalid_argument("sim: no member " + name);
  return it->second;
}

size_t Sim::add(const std::string& name, const std::vector<std::string>& seeds) {
  const size_t i = nodes_.size();
  nodes_.emplace_back();
  nodes_[i].name = name;
  nodes_[i].seeds = seeds;
  by_name_[name] = i;
  start(i, 1);
  return i;
}

void Sim::start(size_t i, uint64_t incarnation) {
  Node& n = nodes_[i];
  ++n.generation;
  n.address = name_address(n.name, n.generation);
  by_address_[n.address] = i;
  SwimConfig sc = cfg_.swim;
  sc.name = n.name;
  sc.address = n.address;
  sc.incarnation = incarnation;
  n.swim = std::make_unique<Swim>(std::move(sc), rng_.split(), now_);
  n.running = true;
  n.paused_until = 0;
  n.inbox.clear();
  std::vector<std::string> seed_addresses;
  for (const std::string& s : n.seeds) seed_addresses.push_back(nodes_[index(s)].address);
  apply(i, n.swim->join(seed_addresses, now_));
}

std::string Sim::name_address(const std::string& name, uint64_t generation) {
  return name + "@" + std::to_string(generation) + ":7946";
}

void Sim::push(Event e) {
  e.order = order_++;
  heap_.push_back(e);
  std::push_heap(heap_.begin(), heap_.end(), [](const Event& a, const Event& b) { return later(a, b); });
}

void Sim::run_until(int64_t t_ms) {
  auto cmp = [](const Event& a, const Event& b) { return later(a, b); };
  while (!heap_.empty() && heap_.front().at <= t_ms) {
    std::pop_heap(heap_.begin(), heap_.end(), cmp);
    const Event e = heap_.back();
    heap_.pop_back();
    now_ = e.at;
    handle(e);
  }
  now_ = std::max(now_, t_ms);
}

double Sim::link_loss(size_t a, size_t b) const {
  auto it = link_loss_.find({std::min(a, b), std::max(a, b)});
  return it == link_loss_.end() ? cfg_.loss : it->second;
}

void Sim::apply(size_t i, Output out) {
  Node& n = nodes_[i];
  for (Outgoing& o : out.messages) {
    ++stats_.packets_sent;
    size_t slot = 0;
    if (free_payloads_.empty()) {
      slot = payloads_.size();
      payloads_.emplace_back();
    } else {
      slot = free_payloads_.back();
      free_payloads_.pop_back();
    }
    Payload& p = payloads_[slot];
    p.from_address = n.address;
    size_t size = 0;
    if (cfg_.through_codec) {
      Encoded enc = encode(o.message, cfg_.swim.packet_budget);
      if (enc.updates_sent != o.message.updates.size()) ++stats_.over_budget;
      size = enc.bytes.size();
      p.bytes = std::move(enc.bytes);
    } else {
      size = encoded_size_without_updates(o.message);
      for (const Update& u : o.message.updates) size += encoded_size(u);
      p.message = std::move(o.message);
    }
    // UDP/IP headers are not counted: bytes are what the codec produced.
    stats_.bytes_sent += size;
    n.bytes_sent += size;
    auto to = by_address_.find(o.to);
    // Loss is drawn for every packet, delivered or not, so that the random stream does
    // not depend on who happens to be reachable.
    const double draw = rng_.unit();
    const int64_t delay =
        cfg_.delay_min_ms + static_cast<int64_t>(rng_.below(static_cast<uint64_t>(cfg_.delay_max_ms - cfg_.delay_min_ms + 1)));
    if (to == by_address_.end() || nodes_[to->second].group != n.group || draw < link_loss(i, to->second)) {
      ++stats_.packets_lost;
      free_payloads_.push_back(slot);
      continue;
    }
    Event e;
    e.kind = EventKind::kDeliver;
    e.node = to->second;
    e.generation = nodes_[to->second].generation;
    e.token = slot;
    e.at = now_ + delay;
    push(e);
  }
  if (n.running) {
    Event t;
    t.kind = EventKind::kTick;
    t.node = i;
    t.generation = n.generation;
    t.token = ++n.tick_token;
    t.at = out.next_tick_ms;
    push(std::move(t));
  }
  // False deaths: a running member seen dead by another.
  for (const std::string& name : out.members_changed) {
    const Member* m = n.swim->member(name);
    auto it = by_name_.find(name);
    if (m != nullptr && m->state == MemberState::kDead && it != by_name_.end() &&
        nodes_[it->second].running) {
      ++stats_.false_deaths;
    }
  }
  if (on_output) on_output(n.name, out, now_);
}

void Sim::deliver(size_t i, const std::string& from, const Message& m) {
  apply(i, nodes_[i].swim->receive(from, m, now_));
}

void Sim::handle(const Event& e) {
  Node& n = nodes_[e.node];
  if (e.kind == EventKind::kDeliver) {
    const size_t slot = static_cast<size_t>(e.token);
    Payload& p = payloads_[slot];
    Message m;
    std::string from = std::move(p.from_address);
    bool ok = true;
    if (e.generation != n.generation || !n.running) {
      ++stats_.packets_lost;
      ok = false;
    } else if (cfg_.through_codec) {
      Decoded d = decode(p.bytes);
      if (d.message) {
        m = std::move(*d.message);
      } else {
        ++stats_.decode_failures;
        ok = false;
      }
    } else {
      m = std::move(p.message);
    }
    p.bytes.clear();
    free_payloads_.push_back(slot);
    if (!ok) return;
    if (now_ < n.paused_until) {
      if (n.inbox.size() >= kInboxCap) {
        ++stats_.packets_lost;
      } else {
        n.inbox.emplace_back(std::move(from), std::move(m));
      }
      return;
    }
    deliver(e.node, from, m);
    return;
  }
  if (e.generation != n.generation || !n.running) return;
  switch (e.kind) {
    case EventKind::kDeliver:
      return;  // handled above
    case EventKind::kTick:
      if (e.token != n.tick_token || now_ < n.paused_until) return;  // resume ticks instead
      apply(e.node, n.swim->tick(now_));
      return;
    case EventKind::kResume: {
      n.resume_scheduled = false;
      if (now_ < n.paused_until) return;  // paused again meanwhile; a later resume comes
      apply(e.node, n.swim->tick(now_));
      std::deque<std::pair<std::string, Message>> inbox;
      inbox.swap(n.inbox);
      for (auto& [from, m] : inbox) deliver(e.node, from, m);
      return;
    }
    case EventKind::kStop:
      n.running = false;
      by_address_.erase(n.address);
      return;
  }
}

void Sim::set_link_loss(const std::string& a, const std::string& b, double p) {
  const size_t x = index(a), y = index(b);
  link_loss_[{std::min(x, y), std::max(x, y)}] = p;
}

void Sim::partition(const std::vector<std::string>& island) {
  for (Node& n : nodes_) n.group = 0;
  for (const std::string& name : island) nodes_[index(name)].group = 1;
}

void Sim::heal() {
  for (Node& n : nodes_) n.group = 0;
}

void Sim::pause(const std::string& name, int64_t duration_ms) {
  const size_t i = index(name);
  Node& n = nodes_[i];
  n.paused_until = std::max(n.paused_until, now_ + duration_ms);
  Event e;
  e.kind = EventKind::kResume;
  e.node = i;
  e.generation = n.generation;
  e.at = n.paused_until;
  push(std::move(e));
}

void Sim::crash(const std::string& name) {
  Node& n = nodes_[index(name)];
  n.running = false;
  ++n.generation;  // void its pending events
  by_address_.erase(n.address);
  n.inbox.clear();
}

void Sim::restart(const std::string& name) {
  const size_t i = index(name);
  Node& n = nodes_[i];
  if (n.running) crash(name);
  // As the shell would with wall-clock seconds: above any incarnation of a former life
  // in these simulations.
  start(i, n.swim->self().incarnation + 1000);
}

void Sim::leave(const std::string& name) {
  const size_t i = index(name);
  Node& n = nodes_[i];
  apply(i, n.swim->leave(now_));
  Event e;
  e.kind = EventKind::kStop;
  e.node = i;
  e.generation = n.generation;
  e.at = now_ + n.swim->leave_grace_ms();
  push(std::move(e));
}

void Sim::put(const std::string& name, const std::string& key, const std::string& value) {
  const size_t i = index(name);
  apply(i, nodes_[i].swim->put(key, value, now_));
}

void Sim::erase(const std::string& name, const std::string& key) {
  const size_t i = index(name);
  apply(i, nodes_[i].swim->erase(key, now_));
}

const Swim& Sim::swim(const std::string& name) const { return *nodes_[index(name)].swim; }
bool Sim::running(const std::string& name) const { return nodes_[index(name)].running; }
const std::string& Sim::address(const std::string& name) const { return nodes_[index(name)].address; }
uint64_t Sim::bytes_sent_by(const std::string& name) const { return nodes_[index(name)].bytes_sent; }

std::vector<std::string> Sim::names() const {
  std::vector<std::string> out;
  for (const Node& n : nodes_) out.push_back(n.name);
  return out;
}

}  // namespace ringproxy::gossip
