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

namespace ringproxy {

class Worker;

// Counts one failure of node `b` (a refused or reset connection, a timeout, a 5xx)
// and wakes the control loop when the run reaches health.eject_after_failures.
void note_node_failure(Worker& worker, const Backend& b, uint32_t eject_after);

class RequestLog {
 public:
  // A new request's first byte arrived at `now_us`.
  void start(uint64_t now_us) {
    start_us_ = now_us;
    finished_ = false;
  }
  // Takes the access-log fields of the head now (its bytes may move once the body
  // streams). Costs nothing when the access log is off.
  void take_head(std::string_view client_ip, std::string_view method, std::string_view target, bool http10,
                 std::span<const HeaderView> fields);

  struct Outcome {
    int status = 0;
    uint64_t bytes = 0;               // sent to the client
    const Backend* node = nullptr;    // the node last tried, null when none was
    bool from_backend = false;        // the status is the node's, not the proxy's
    uint32_t eject_after = 0;         // health.eject_after_failures
  };
  // Records the outcome; later calls for the same request do nothing.
  void finish(Worker& worker, const Outcome& outcome, uint64_t now_us);
  bool finished() const { return finished_; }

 private:
  uint64_t start_us_ = 0;
  bool finished_ = false;
  std::string prefix_;  // client, time, request line: up to the status
  std::string tail_;    // referer and user agent, quoted
};

}  // namespace ringproxy
