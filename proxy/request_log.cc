#include "proxy/request_log.h"

#include <ctime>

#include "proxy/log.h"
#include "proxy/worker.h"

namespace ringproxy {
using namespace std::string_view_literals;

void note_node_failure(Worker& worker, const Backend& b, uint32_t eject_after) {
  bump(b.state->per_worker[worker.id()].failures);
  const uint32_t run = b.state->consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  // ">=": a reload may lower the threshold under a run in progress; the control loop
  // resets the count when it acts, and wake-ups coalesce.
  if (eject_after > 0 && run >= eject_after) worker.notify_passive_failure();
}

void RequestLog::take_head(std::string_view client_ip, std::string_view method, std::string_view target, bool http10,
                           std::span<const HeaderView> fields) {
  if (!AccessLog::enabled()) return;
  // What the client wrote is escaped (\xHH), so a '"' in a User-Agent cannot forge a
  // field, nor a control byte a line.
  prefix_.assign(client_ip);
  prefix_ += " - - ";
  prefix_ += clf_time(static_cast<long>(time(nullptr)));
  prefix_ += " \"";
  prefix_ += method;
  prefix_ += ' ';
  append_log_escaped(prefix_, target);
  prefix_ += http10 ? " HTTP/1.0\" " : " HTTP/1.1\" ";
  const std::string_view referer = find_header(fields, "referer");
  const std::string_view agent = find_header(fields, "user-agent");
  tail_.assign(" \"");
  append_log_escaped(tail_, referer.empty() ? "-"sv : referer);
  tail_ += "\" \"";
  append_log_escaped(tail_, agent.empty() ? "-"sv : agent);
  tail_ += "\" ";
}

void RequestLog::finish(Worker& worker, const Outcome& o, uint64_t now_us) {
  if (finished_) return;
  finished_ = true;
  WorkerStats& stats = worker.stats();
  stats.duration.observe_us(now_us - start_us_);
  if (o.node) {
    const Backend& b = *o.node;
    const int status_class = o.status >= 100 && o.status < 600 ? o.status / 100 : 5;
    bump(b.state->per_worker[worker.id()].by_class[status_class]);
    if (o.from_backend && o.status >= 500) {
      note_node_failure(worker, b, o.eject_after);
    } else if (o.from_backend && b.state->consecutive_failures.load(std::memory_order_relaxed) != 0) {
      b.state->consecutive_failures.store(0, std::memory_order_relaxed);
    }
  } else if (o.status == 503) {
    bump(stats.no_node);
  } else if (o.status >= 400) {
    bump(stats.client_errors);
  }
  if (!AccessLog::enabled() || prefix_.empty()) return;
  std::string& line = worker.scratch();
  line.assign(prefix_);
  line += std::to_string(o.status);
  line += ' ';
  line += std::to_string(o.bytes);
  line += tail_;
  line += o.node ? std::string_view(o.node->name) : "-"sv;
  line += ' ';
  line += std::to_string((now_us - start_us_) / 1000);
  line += "ms\n";
  worker.access_log(line);
  prefix_.clear();
}

}  // namespace ringproxy
