// DNS queries on a libuv loop, never blocking it (issue 14, SPEC "Backends by name"):
// c-ares (Debian's libc-ares-dev) does the protocol, retries and resolv.conf; this class
// drives its sockets with uv_poll handles and its timeouts with one uv_timer, and turns
// each answer into a DnsAnswer: addresses (A, AAAA) or SRV records, the answer's
// smallest TTL, or what went wrong in words a log line and /discovery can show.
//
// The TTL of an SRV answer is not given by c-ares 1.18's parser; answer_min_ttl() reads
// it from the answer's records itself (bounds-checked, fuzzed: fuzz_dns_answer).
//
// Thread: the loop's. Lifetime: close(), then the loop runs until its handles are
// closed, then the resolver may be destroyed (STYLE rule 4); queries still pending at
// close() are dropped without their callbacks.
#pragma once

#include <ares.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ringproxy {

struct DnsAnswer {
  enum class Status {
    kOk,         // records of the type asked for
    kEmpty,      // the name exists, with no record of that type (NODATA)
    kNotFound,   // NXDOMAIN
    kServFail,   // the server failed (SERVFAIL), or refused
    kTimeout,    // no answer within the timeout, after c-ares's tries
    kMalformed,  // an answer that does not parse
    kError,      // anything else (no server reachable, out of memory, ...)
  };
  Status status = Status::kError;
  std::string error;  // what went wrong ("" when kOk)
  uint32_t ttl_s = 0;  // the smallest TTL among the answer's records
  std::vector<std::string> addresses;  // A or AAAA: the addresses as text, in answer order
  struct Srv {
    uint16_t priority = 0;
    uint16_t weight = 0;
    uint16_t port = 0;
    std::string target;
    bool operator==(const Srv&) const = default;
  };
  std::vector<Srv> srv;  // SRV records, in answer order
};

const char* to_string(DnsAnswer::Status status);

// The smallest TTL of the records in the answer section of the DNS message [msg, msg +
// len); nullopt when the message does not parse (truncated, a name that runs off its
// end or loops) or has no answer records.
std::optional<uint32_t> answer_min_ttl(const unsigned char* msg, size_t len);

class DnsResolver {
 public:
  enum class Type { kA, kAaaa, kSrv };
  using Callback = std::function<void(DnsAnswer)>;

  explicit DnsResolver(uv_loop_t* loop) : loop_(loop) {}
  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  // `servers`: "IP:PORT" or "[IPV6]:PORT" each; empty: /etc/resolv.conf's. Each query
  // is tried once per server with `timeout_ms`. Returns "" or why not.
  std::string init(const std::vector<std::string>& servers, uint32_t timeout_ms);
  // Sends a query; `done` is called once from the loop (never from inside this call).
  // Before a successful init(), or after close(), nothing is sent and nothing called.
  void query(const std::string& name, Type type, Callback done);
  // Drops pending queries (no callbacks) and closes the handles.
  void close();
  size_t pending() const { return pending_; }

 private:
  struct Request;
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_poll(uv_poll_t* p, int status, int events);
  static void on_timer(uv_timer_t* t);
  void arm_timer();
  void finish_close();  // close()'s work, once no c-ares call is under way

  struct Deferred {
    Callback done;
    DnsAnswer answer;
  };

  uv_loop_t* loop_;
  ares_channel channel_ = nullptr;
  std::vector<Deferred> deferred_;  // answers c-ares gave inside query(): called back from the timer
  bool in_query_ = false;
  bool in_process_ = false;  // inside ares_process_fd (a callback may close())
  uv_timer_t* timer_ = nullptr;  // on the heap, freed by its close callback
  std::map<ares_socket_t, uv_poll_t*> polls_;
  size_t pending_ = 0;
  bool closing_ = false;
};

}  // namespace ringproxy
