// The DNS side of SPEC "Backends by name" on the control loop: asks the resolver
// (net/dns_resolver.h) for every [[discover]] source and every DNS name a node has, as
// their TTLs say, and keeps what each answered in a DiscoveryState (proxy/discovery.h:
// the names from the records, the hold for failures, the clamped TTL). Tells the server
// when a source's set or a name's addresses changed; the server builds the routing from
// them (proxy/backends.h) and, with gossip, shares the sets (proxy/gossip_agent.h).
//
// Never on a request's path: workers see only the routing built from what it found.
// Thread: the control loop's. Lifetime: close(), run the loop, then destroy.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "net/dns_resolver.h"
#include "proxy/backends.h"
#include "proxy/discovery.h"

namespace ringproxy {

// One address family of a name (A or AAAA): its last definitive answer, so that when it
// fails while the other family answers, its addresses stay for hold_ms (a resolver that
// times out on AAAA is not a removal of the IPv6 addresses).
struct FamilyMemory {
  std::vector<std::string> last;
  uint64_t failing_since_ms = 0;  // 0: not failing
  // `now_answer` as the merge is to take it: itself when it is definitive (addresses,
  // NODATA, NXDOMAIN), else within hold_ms of the first failure the last addresses.
  DnsAnswer answer(const DnsAnswer& now_answer, uint64_t now_ms, uint32_t hold_ms);
  // Addresses, NODATA or NXDOMAIN: what the name is; anything else is a failure to ask.
  static bool definitive(const DnsAnswer& a);
};

class DiscoveryAgent {
 public:
  struct Change {
    std::string source;  // the source whose set changed; "" for a name's addresses
    bool first = false;  // the source's first good answer since start
    bool good = false;   // a good answer; false: a failure past hold_ms emptied it
    bool same = false;   // a good answer with the set unchanged (for the gossip lease)
    uint64_t ttl_ms = 0;  // after a good answer: until the source is asked again
  };
  using OnChange = std::function<void(const Change&)>;

  DiscoveryAgent(uv_loop_t* loop, OnChange on_change);
  ~DiscoveryAgent();
  DiscoveryAgent(const DiscoveryAgent&) = delete;
  DiscoveryAgent& operator=(const DiscoveryAgent&) = delete;

  // At start and on every reload: the resolver settings and the sources. A source kept
  // (same name and type) keeps what it found; a new one is asked at once; one that
  // left is forgotten. Resolver settings that changed make a new resolver. Returns ""
  // or why the resolver cannot start (the caller refuses the config).
  std::string configure(const DnsConfig& dns, const std::vector<DiscoverConfig>& sources);
  // The DNS names (lower case) to keep resolved: named backends' hosts and SRV targets.
  // A new one is asked at once; one no longer given is forgotten. Of them, those in
  // `unheld` (SRV targets that no configured backend names) keep their last addresses
  // however long their resolution fails: their node stays while its source's set has it
  // (that set has the hold; with gossip it may be the others' answer), and health
  // checks say whether the address still answers.
  void set_names(const std::set<std::string>& names, const std::set<std::string>& unheld = {});

  // What one source found (empty for an unknown one).
  std::vector<FoundNode> found(const std::string& source) const;
  // What the names resolve to now.
  const ResolvedNames& names() const { return resolved_; }

  // For GET /discovery and the metrics. Times are uv_now milliseconds (0: never).
  struct Status {
    // With gossip, for a source: "" (this instance's own set), "shared" (the set the
    // instances share, some of whose leases is current), or "dropped" (no instance has
    // resolved it for dns.hold_ms: the shared set no longer counts). Set by the server.
    std::string shared;
    std::string name;  // the source's DNS name, or a node's host
    bool is_source = false;
    DiscoverConfig::Type type = DiscoverConfig::Type::kA;
    size_t found = 0;  // nodes (a source) or addresses (a name)
    uint64_t resolved_ms = 0;       // the last good answer
    uint64_t next_ms = 0;           // the next query
    bool holding = false;           // failing, within dns.hold_ms: the last good set stands
    std::string last_error;         // "" since the last good answer
    std::map<std::string, uint64_t> results;  // DnsAnswer status ("ok", "servfail", ...) -> count
  };
  std::vector<Status> status() const;

  // Runs the loop until every source and name has had an answer (good or not), or
  // about one resolver timeout has passed (dns.timeout_ms per resolver). True when all
  // answered. For a start with its nodes resolved, and for the command line.
  bool await_first_answers();

  // Drops pending queries and closes the resolver's and the timer's handles.
  void close();

 private:
  struct Entry {
    DiscoverConfig source;  // a name's: type a, port 0
    bool is_source = false;
    uint64_t serial = 0;  // answers to an earlier entry of the same key are dropped
    bool unheld = false;  // a name whose last addresses outlive hold_ms (set_names)
    DiscoveryState state;
    bool first_done = false;  // a good answer has been had
    // Answers awaited (0: none in flight). An A and an AAAA query go out together; the
    // entry takes their merged answer.
    int waiting = 0;
    DnsAnswer a, aaaa;
    FamilyMemory v4, v6;
    std::map<std::string, uint64_t> results;
    std::string failure_said;  // the failure line logged last ("" since a good answer)
  };
  static void on_timer(uv_timer_t* t);
  void ask_due();
  void ask(const std::string& key, Entry& e);
  void on_answer(const std::string& key, uint64_t serial, DnsAnswer answer);
  void arm();
  Entry* find(const std::string& key, uint64_t serial);
  void refresh_resolved();

  uv_loop_t* loop_;
  OnChange on_change_;
  DnsConfig dns_;
  bool configured_ = false;
  std::unique_ptr<DnsResolver> resolver_;
  uint64_t serial_ = 0;
  // "s:NAME" for a source, "n:NAME" for a name.
  std::map<std::string, Entry> entries_;
  ResolvedNames resolved_;
  uv_timer_t* timer_ = nullptr;  // heap: freed by its close callback
  bool closed_ = false;
};

// One answer for a name's A and AAAA queries: their addresses (A first), the smaller
// TTL of the good ones; when neither has an address, the failure that says most (a
// SERVFAIL or a timeout rather than an empty AAAA answer).
DnsAnswer merge_address_answers(const DnsAnswer& a, const DnsAnswer& aaaa);

}  // namespace ringproxy

namespace ringproxy {

// For the command line (--lookup, --shares): asks every [[discover]] source of `config`
// once on a loop of its own, waiting at most about one resolver timeout, and returns
// the nodes that serve (each source's best SRV priority: offline, every node counts as
// up). A source that fails is named in *problems and adds nothing.
std::vector<FoundNode> resolve_once(const Config& config, std::vector<std::string>* problems);

}  // namespace ringproxy
