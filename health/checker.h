// Active health checks on libuv: every interval, for each target, GET health.path on a
// fresh connection (in HTTP/1.1, or HTTP/2 to a node that speaks it); 2xx and 3xx pass, anything else (refused, reset, timeout, another
// status, a malformed answer) fails. The verdicts go to a callback; what they mean is
// HealthTable's business (health/node_health.h).
//
// Thread: the loop's (the proxy's control loop, never a worker). One probe per target
// at a time: a target whose last probe is still running is skipped that round.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/poller.h"
#include "net/tls_context.h"

namespace ringproxy {

struct CheckTarget {
  std::string name;
  sockaddr_storage address{};
  // A named node's other addresses (SPEC "Backends by name"): when a connect fails
  // (refused, unreachable; not a timeout), the probe tries the next before it fails, so
  // the node passes while any of its addresses answers.
  std::vector<sockaddr_storage> more_addresses;
  std::string host;  // Host header: the backend's address as configured
  // A node with tls = true is probed over TLS, made with this context, to tls_name
  // (SNI and the name verified); null: plain TCP.
  std::shared_ptr<const ClientTlsContext> tls;
  std::string tls_name;
  // The node speaks HTTP/2 (protocol = "h2c", or "h2" over TLS): probed over HTTP/2,
  // as its requests go, one stream on a connection of the probe's own.
  bool h2 = false;
};

struct CheckSettings {
  std::string path = "/health";
  uint32_t interval_ms = 1000;
  uint32_t timeout_ms = 500;
};

class HealthChecker {
 public:
  // ok: the verdict; detail: why it failed ("connect: ECONNREFUSED", "status 503",
  // "timeout after 500 ms"), or the status when it passed.
  using OnResult = std::function<void(const std::string& name, bool ok, const std::string& detail)>;

  // Probes are sockets of `poller` (net/poller.h); timers run on poller.loop().
  HealthChecker(Poller& poller, OnResult on_result);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Replaces the targets and settings (at start and on every routing change). Probes in
  // flight for targets that left finish and are not reported.
  void configure(std::vector<CheckTarget> targets, CheckSettings settings);
  void start();  // first round at once, then every interval_ms
  // Closes the timer and aborts probes; their handles close on the loop, which must
  // run again to free them. The checker itself may be destroyed at once.
  void stop();

 private:
  class Probe;
  static void on_tick(uv_timer_t* t);
  void round();
  void begin_probe(const CheckTarget& target, size_t index, std::shared_ptr<TlsSessionCache> session);
  void finished(Probe* probe, bool ok, const std::string& detail);
  void forget(Probe* probe);

  Poller& poller_;  // and its loop, for the timers
  OnResult on_result_;
  // Open from start() to stop(); null otherwise. On the heap and freed by its close
  // callback, not with the checker: the checker may be destroyed (a failed start-up)
  // before the loop runs again and finishes the close (STYLE rule 4).
  uv_timer_t* timer_ = nullptr;
  std::vector<CheckTarget> targets_;
  CheckSettings settings_;
  std::vector<Probe*> probes_;  // running, owned by their handles
  // Per TLS target: its last session, so that a probe resumes rather than costing the
  // node a full handshake every interval. Shared with the probe using it (a probe may
  // outlive the checker).
  std::map<std::string, std::shared_ptr<TlsSessionCache>, std::less<>> sessions_;
};

}  // namespace ringproxy
