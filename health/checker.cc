#include "health/checker.h"

#include <algorithm>
#include <cstring>

#include "health/local_error.h"

namespace ringproxy {

// One probe: connect, send the request, read the status line, close. Owned by its
// handles; freed when both are closed.
class HealthChecker::Probe {
 public:
  Probe(HealthChecker& checker, const CheckTarget& target) : checker_(checker), name_(target.name) {
    request_ = "GET " + checker.settings_.path + " HTTP/1.1\r\nHost: " + target.host +
               "\r\nUser-Agent: ringproxy-health\r\nConnection: close\r\n\r\n";
    uv_tcp_init(checker.loop_, &tcp_);
    uv_timer_init(checker.loop_, &timer_);
    tcp_.data = timer_.data = this;
    connect_.data = this;
  }

  // Starts the probe. Precondition: the checker lists it (a failure here reports at
  // once, and finished() must find it).
  void begin(const CheckTarget& target) {
    const int rc = uv_tcp_connect(&connect_, &tcp_, reinterpret_cast<const sockaddr*>(&target.address), on_connect);
    if (rc < 0) {
      if (is_local_resource_error(rc)) {  // no verdict: see health/local_error.h
        abandon();
        return;
      }
      fail(std::string("connect: ") + uv_err_name(rc));
      return;
    }
    uv_timer_start(&timer_, on_timeout, checker_.settings_.timeout_ms, 0);
  }

  const std::string& name() const { return name_; }
  // The checker is going away: close without reporting.
  void abort() {
    orphan_ = true;
    close();
  }

 private:
  void fail(const std::string& why) { done(false, why); }

  void abandon() {
    orphan_ = true;  // not reported
    checker_.forget(this);
    close();
  }

  void done(bool ok, const std::string& detail) {
    if (closing_) return;
    if (!orphan_) checker_.finished(this, ok, detail);
    close();
  }

  void close() {
    if (closing_) return;
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_close);
  }

  static void on_connect(uv_connect_t* req, int status) {
    auto* p = static_cast<Probe*>(req->data);
    if (p->closing_) return;
    if (is_local_resource_error(status)) {  // may come here too, not only from uv_tcp_connect
      p->abandon();
      return;
    }
    if (status < 0) {
      p->fail(std::string("connect: ") + uv_err_name(status));
      return;
    }
    uv_buf_t buf = uv_buf_init(p->request_.data(), static_cast<unsigned>(p->request_.size()));
    p->write_.data = p;
    int rc = uv_write(&p->write_, reinterpret_cast<uv_stream_t*>(&p->tcp_), &buf, 1, on_write);
    if (rc == 0) rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&p->tcp_), on_alloc, on_read);
    if (rc < 0) p->fail(std::string("write: ") + uv_err_name(rc));
  }

  static void on_write(uv_write_t* req, int status) {
    auto* p = static_cast<Probe*>(req->data);
    if (status < 0 && !p->closing_) p->fail(std::string("write: ") + uv_err_name(status));
  }

  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* p = static_cast<Probe*>(h->data);
    buf->base = p->buf_ + p->len_;
    buf->len = sizeof p->buf_ - p->len_;
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t*) {
    auto* p = static_cast<Probe*>(s->data);
    if (p->closing_) return;
    if (n < 0) {
      p->fail(n == UV_EOF ? "closed before answering" : std::string("read: ") + uv_err_name(static_cast<int>(n)));
      return;
    }
    p->len_ += static_cast<size_t>(n);
    p->parse_status();
  }

  // "HTTP/1.x NNN ..." is all a verdict needs.
  void parse_status() {
    const std::string_view got(buf_, len_);
    const size_t eol = got.find('\n');
    if (eol == std::string_view::npos) {
      if (len_ == sizeof buf_) fail("malformed status line");
      return;
    }
    const std::string_view line = got.substr(0, eol);
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
        !std::all_of(line.begin() + 9, line.begin() + 12, [](char c) { return c >= '0' && c <= '9'; })) {
      fail("malformed status line");
      return;
    }
    const int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    done(status >= 200 && status < 400, "status " + std::to_string(status));
  }

  static void on_timeout(uv_timer_t* t) {
    auto* p = static_cast<Probe*>(t->data);
    p->fail("timeout after " + std::to_string(p->checker_.settings_.timeout_ms) + " ms");
  }

  static void on_close(uv_handle_t* h) {
    auto* p = static_cast<Probe*>(h->data);
    if (++p->closed_ == 2) delete p;
  }

  HealthChecker& checker_;
  std::string name_;
  std::string request_;
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_connect_t connect_{};
  uv_write_t write_{};
  char buf_[512];
  size_t len_ = 0;
  bool closing_ = false;
  bool orphan_ = false;
  int closed_ = 0;
};

HealthChecker::HealthChecker(uv_loop_t* loop, OnResult on_result) : loop_(loop), on_result_(std::move(on_result)) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::configure(std::vector<CheckTarget> targets, CheckSettings settings) {
  const bool interval_changed = settings.interval_ms != settings_.interval_ms;
  targets_ = std::move(targets);
  settings_ = std::move(settings);
  if (started_ && interval_changed) uv_timer_start(&timer_, on_tick, settings_.interval_ms, settings_.interval_ms);
}

void HealthChecker::start() {
  if (started_) return;
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  timer_open_ = true;
  started_ = true;
  uv_timer_start(&timer_, on_tick, 0, settings_.interval_ms);
}

void HealthChecker::stop() {
  if (timer_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    timer_open_ = false;
  }
  started_ = false;
  const std::vector<Probe*> running = probes_;
  probes_.clear();
  for (Probe* p : running) p->abort();
}

void HealthChecker::on_tick(uv_timer_t* t) { static_cast<HealthChecker*>(t->data)->round(); }

void HealthChecker::round() {
  for (const CheckTarget& target : targets_) {
    const bool busy = std::any_of(probes_.begin(), probes_.end(), [&](Probe* p) { return p->name() == target.name; });
    if (busy) continue;
    auto* probe = new Probe(*this, target);  // owned by its handles
    probes_.push_back(probe);
    probe->begin(target);
  }
}

void HealthChecker::forget(Probe* probe) {
  probes_.erase(std::remove(probes_.begin(), probes_.end(), probe), probes_.end());
}

void HealthChecker::finished(Probe* probe, bool ok, const std::string& detail) {
  forget(probe);
  const bool still_target =
      std::any_of(targets_.begin(), targets_.end(), [&](const CheckTarget& t) { return t.name == probe->name(); });
  if (still_target) on_result_(probe->name(), ok, detail);
}

}  // namespace ringproxy
