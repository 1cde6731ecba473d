// One record per request, from its first byte to its answer, and where its outcome
// goes when it ends: the worker's metrics, the node's passive health (a 5xx or a
// failure counts towards ejection; a good answer ends the run), and the access log
// (combined log format, fields escaped as nginx does). Once per request, whoever ends
// it (the node's answer, the proxy's own, a failure). Thread: the owning worker's.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "http/message.h"
#include "proxy/backends.h"
#include "proxy/metrics.h"

namespace ringproxy {

class TlsTransport;
class Worker;

// Counts one failure of node `b` (a refused or reset connection, a timeout, a 5xx)
// and wakes the control loop when the run reaches health.eject_after_failures.
void note_node_failure(Worker& worker, const Backend& b, uint32_t eject_after);

// A client's TLS handshake ended (done or failed): counted by result
// (ringproxy_tls_handshakes_total) and, when it failed, one access-log line
//   IP - - [time] "-" 0 0 "-" "-" - 12ms tls-failed=timeout
// (error, timeout, closed, plain-http), with OpenSSL's reason at debug level in the
// error log. `accepted_us`: when the connection was accepted.
void note_tls_handshake(Worker& worker, const TlsTransport& tls, std::string_view client_ip,
                        uint64_t accepted_us);

class RequestLog {
 public:
  // A new request's first byte arrived at `now_us`.
  void start(uint64_t now_us) {
    start_us_ = now_us;
    finished_ = false;
  }
  // Takes the access-log fields of the head now (its bytes may move once the body
  // streams), and of the client's TLS (null: plain), which the line ends with as
  // " tls=TLSv1.3/TLS_AES_128_GCM_SHA256" (and "/resumed" after a resumed handshake).
  // Costs nothing when the access log is off.
  // `version`: the request line's ("HTTP/1.1", "HTTP/1.0", "HTTP/2.0").
  void take_head(std::string_view client_ip, std::string_view method, std::string_view target,
                 std::string_view version, std::span<const HeaderView> fields, const TlsTransport* tls = nullptr);

  struct Outcome {
    int status = 0;
    uint64_t bytes = 0;               // sent to the client
    const Backend* node = nullptr;    // the node last tried, null when none was
    std::string_view pool;            // its pool's name when not "default" (logged as POOL/NODE)
    bool from_backend = false;        // the status is the node's, not the proxy's
    uint32_t eject_after = 0;         // health.eject_after_failures
    ClientProtocol protocol = kProtoHttp1;
  };
  // Records the outcome; later calls for the same request do nothing.
  void finish(Worker& worker, const Outcome& outcome, uint64_t now_us);
  bool finished() const { return finished_; }

 private:
  uint64_t start_us_ = 0;
  bool finished_ = false;
  std::string prefix_;  // client, time, request line: up to the status
  std::string tail_;    // referer and user agent, quoted
  std::string tls_;     // " tls=...", or "" on a plain connection
};

}  // namespace ringproxy
