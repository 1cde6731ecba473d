// DNS queries on a libuv loop, never blocking it (issue 14, SPEC "Backends by name"):
// c-ares (Debian's libc-ares-dev) does the protocol, retries and resolv.conf; this class
// drives its sockets with uv_poll handles and its timeouts with one uv_timer, and turns
// each answer into a DnsAnswer: addresses (A, AAAA) or SRV records, the answer's
// smallest TTL, or what went wrong in words a log line and /discovery can show.
//
// The TTL of an SRV answer is not given by c-ares 1.18's parser; answer_min_ttl() reads
// it from the answer's records itself (bounds-checked, fuzzed: fuzz_dns_answer).
//
// c-ares 1.18 tries a SERVFAIL, REFUSED or NOTIMP answer at the next server and, with
// none left, ends the query with ARES_ECONNREFUSED ("Could not contact DNS servers"),
// the same as when no server could be reached: an operator told "could not contact"
// looks at the network while Consul is saying SERVFAIL (no leader, say). So the
// resolver reads its UDP sockets through c-ares's socket functions
// (ares_set_socket_functions, c-ares 1.13+) and notes the response code of each answer
// to a pending question; a query that ends in ECONNREFUSED after such an answer is
// reported as the server said (kServFail, kRefused), naming the server.
//
// Thread: the loop's. Lifetime: close(), then the loop runs until its handles are
// closed, then the resolver may be destroyed (STYLE rule 4); queries still pending at
// close() are dropped without their callbacks.
#pragma once

#include <ares.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ringproxy {

struct DnsAnswer {
  enum class Status {
    kOk,         // records of the type asked for
    kEmpty,      // the name exists, with no record of that type (NODATA)
    kNotFound,   // NXDOMAIN
    kServFail,   // the server answered SERVFAIL (it could not resolve the name)
    kRefused,    // the server answered REFUSED or NOTIMP (it will not answer this query)
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

// A response that says its server failed the question (SERVFAIL) or will not answer it
// (REFUSED, NOTIMP): the question's name as sent (not lower-cased), its type and the
// rcode. nullopt for anything else (a query, another rcode, no question, a question
// that does not parse).
struct FailedQuestion {
  std::string name;
  int type = 0;
  int rcode = 0;
};
std::optional<FailedQuestion> failed_question(const unsigned char* msg, size_t len);

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
  // A pending question (lower-cased name and type) and the last failure rcode a server
  // answered it with.
  struct Failure {
    size_t queries = 0;  // pending queries with this question
    int rcode = 0;       // 0: none seen
    std::string server;  // who answered it
  };
  static std::string question_key(std::string_view name, int rrtype);
  // A UDP datagram c-ares read from `from`: notes a failure rcode to a pending question.
  void note_answer(const unsigned char* msg, size_t len, const sockaddr* from);
  static ares_ssize_t recv_from(ares_socket_t fd, void* buf, size_t len, int flags, sockaddr* from,
                                ares_socklen_t* from_len, void* data);
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
  std::map<std::string, Failure, std::less<>> failures_;  // by question_key, while pending
  size_t pending_ = 0;
  bool closing_ = false;
};

}  // namespace ringproxy
