#include "proxy/request_log.h"

#include <ctime>

#include "net/tls_transport.h"
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

void note_tls_handshake(Worker& worker, const TlsTransport& tls, std::string_view client_ip,
                        uint64_t accepted_us) {
  WorkerStats& stats = worker.stats();
  std::string_view result;
  switch (tls.failure()) {
    case TlsTransport::Failure::kNone:
      bump(stats.tls_handshakes[tls.resumed() ? WorkerStats::kTlsResumed : WorkerStats::kTlsFull]);
      return;
    case TlsTransport::Failure::kError:
      bump(stats.tls_handshakes[WorkerStats::kTlsError]);
      result = "error";
      break;
    case TlsTransport::Failure::kTimeout:
      bump(stats.tls_handshakes[WorkerStats::kTlsTimeout]);
      result = "timeout";
      break;
    case TlsTransport::Failure::kPeerClosed:
      bump(stats.tls_handshakes[WorkerStats::kTlsClosed]);
      result = "closed";
      break;
    case TlsTransport::Failure::kPlainHttp:
      bump(stats.tls_handshakes[WorkerStats::kTlsPlainHttp]);
      result = "plain-http";
      break;
  }
  RP_LOG(LogLevel::kDebug, "TLS handshake with " + std::string(client_ip) + " failed (" + std::string(result) +
                               "): " + tls.handshake_error());
  if (!AccessLog::enabled()) return;
  std::string& line = worker.scratch();
  line.assign(client_ip);
  line += " - - ";
  line += clf_time(static_cast<long>(time(nullptr)));
  line += " \"-\" 0 0 \"-\" \"-\" - ";
  line += std::to_string((worker.now_us() - accepted_us) / 1000);
  line += "ms tls-failed=";
  line += result;
  line += '\n';
  worker.access_log(line);
}

void RequestLog::take_head(std::string_view client_ip, std::string_view method, std::string_view target,
                           std::string_view version,
                           std::span<const HeaderView> fields, const TlsTransport* tls) {
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
  prefix_ += ' ';
  prefix_ += version;
  prefix_ += "\" ";
  const std::string_view referer = find_header(fields, "referer");
  const std::string_view agent = find_header(fields, "user-agent");
  tail_.assign(" \"");
  append_log_escaped(tail_, referer.empty() ? "-"sv : referer);
  tail_ += "\" \"";
  append_log_escaped(tail_, agent.empty() ? "-"sv : agent);
  tail_ += "\" ";
  tls_.clear();
  if (tls != nullptr) {
    tls_ += " tls=";
    tls_ += tls->version();
    tls_ += '/';
    tls_ += tls->cipher();
    if (tls->resumed()) tls_ += "/resumed";
  }
}

void RequestLog::finish(Worker& worker, const Outcome& o, uint64_t now_us) {
  if (finished_) return;
  finished_ = true;
  WorkerStats& stats = worker.stats();
  stats.duration.observe_us(now_us - start_us_);
  if (o.node) {
    const Backend& b = *o.node;
    const int status_class = o.status >= 100 && o.status < 600 ? o.status / 100 : 5;
    bump(b.state->per_worker[worker.id()].by_class[o.protocol][status_class]);
    if (o.from_backend && o.status >= 500) {
      note_node_failure(worker, b, o.eject_after);
    } else if (o.from_backend && b.state->consecutive_failures.load(std::memory_order_relaxed) != 0) {
      b.state->consecutive_failures.store(0, std::memory_order_relaxed);
    }
  } else if (o.status == 503) {
    bump(stats.no_node[o.protocol]);
  } else if (o.status >= 400) {
    bump(stats.client_errors[o.protocol]);
  }
  if (!AccessLog::enabled() || prefix_.empty()) return;
  std::string& line = worker.scratch();
  line.assign(prefix_);
  line += std::to_string(o.status);
  line += ' ';
  line += std::to_string(o.bytes);
  line += tail_;
  if (o.node && !o.pool.empty()) {
    line += o.pool;
    line += '/';
  }
  line += o.node ? std::string_view(o.node->name) : "-"sv;
  line += ' ';
  line += std::to_string((now_us - start_us_) / 1000);
  line += "ms";
  line += tls_;
  line += '\n';
  worker.access_log(line);
  prefix_.clear();
}

}  // namespace ringproxy
