// The process's file descriptors: the RLIMIT_NOFILE raised at start, how many client
// connections it serves, and whether a few are free right now.
//
// Each client connection needs about two: its own socket and one to a backend (pooled
// idle ones are reused, not added). Besides those, the process holds what it opened
// before the first client (stdio, per loop an epoll, an eventfd and a signal pipe, the
// listeners, the admin and gossip sockets, the access log), and some come and go on the
// control thread (health probes, admin connections, a log reopened). Under `ulimit -n 100` and 300 clients, without a budget, the workers
// accepted clients until no descriptor was left for any backend connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ringproxy {

// What the process may open, and how much of it is spoken for before any client.
struct DescriptorBudget {
  static constexpr uint64_t kPerConnection = 2;  // the client's socket and one upstream
  // Transient, on the control thread: a health probe per backend, a few admin
  // connections, a reopened log. An estimate, not a bound: a shortfall beyond it is
  // met by the checks at run time (Worker::may_accept), not by a crash.
  static constexpr uint64_t kTransient = 16;

  uint64_t limit = 0;   // the soft RLIMIT_NOFILE
  uint64_t in_use = 0;  // open before the first client

  // Client connections the limit serves at kPerConnection each; at least 1, so that a
  // proxy started with too few descriptors still serves one at a time.
  uint64_t connections() const;
  // Descriptors `max_connections` would need.
  uint64_t needed(uint64_t max_connections) const { return max_connections * kPerConnection + in_use + kTransient; }
};

// What to log at start when `max_connections` needs more descriptors than the limit
// allows: the numbers, and how loud. `hard`: the hard limit (the soft one is already
// raised to it, so the fix is outside the process). `chosen`: the operator set
// max_connections to a value of their own, not the default.
//
// A warning when the operator chose a value that does not fit (they asked for something
// this machine will not give), or when even one connection does not fit (nothing can be
// served as configured). Otherwise, a default that does not fit is an info line: a
// machine whose hard limit is, say, 20000 serves about 9990 connections instead of 10000,
// and every start warning about a value nobody picked is noise. The default written out
// (packaging/ringproxy.toml and SPEC's example have `max_connections = 10000`) counts as
// the default: the config cannot tell it from a choice, and most who have it kept it.
struct ShortfallNote {
  bool warn = false;
  std::string text;  // "" when it fits: nothing to log
};
ShortfallNote shortfall_note(const DescriptorBudget& budget, uint64_t max_connections, uint64_t hard, bool chosen);

struct NofileLimit {
  uint64_t before = 0;  // the soft limit found
  uint64_t soft = 0;    // the soft limit now
  uint64_t hard = 0;
  std::string error;    // why raising failed; "" when it did not
};

// Raises the soft RLIMIT_NOFILE to the hard one. The soft default (often 1024) is for
// programs that use select(), whose fd_set holds 1024 descriptors; libuv uses epoll.
// The hard limit is the administrator's word: it is never exceeded.
NofileLimit raise_nofile_limit();

// Descriptors open in this process now (the entries of /proc/self/fd); std::nullopt
// where /proc is not mounted.
std::optional<uint64_t> count_open_descriptors();

// Whether `n` more descriptors can be opened now: takes n (duplicates of `fd`, an open
// descriptor) and gives them back. A snapshot: another thread may take them a moment
// later. Costs 2n system calls: for use only when short (Worker::may_accept).
bool descriptors_free(int fd, int n);

}  // namespace ringproxy
