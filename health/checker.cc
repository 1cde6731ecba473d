#include "health/checker.h"

#include <algorithm>
#include <cstring>

#include "http/h1/response_parser.h"
#include "http/h2/client_session.h"
#include "net/local_error.h"
#include "net/tcp_transport.h"
#include "net/tls_transport.h"

namespace ringproxy {

namespace {
// A TLS target's sessions are its name's and its TLS name's: a node whose tls_name
// changes verifies the new name in full.
std::string session_key(const CheckTarget& t) { return t.name + '\0' + t.tls_name; }
}  // namespace

// One probe: connect (and the TLS handshake, to a TLS node), send the request, read
// the response head (h1::ResponseParser, or the HTTP/2 client session's stream), close.
// The probe's socket is a Transport, as every connection of ours is. Owned by its
// handles; freed when both are closed.
class HealthChecker::Probe final : private Transport::Handler,
                                   private h2::ClientSession::Wire,
                                   private h2::ClientStream::Handler {
 public:
  Probe(HealthChecker& checker, const CheckTarget& target, std::shared_ptr<TlsSessionCache> session)
      : checker_(checker),
        poller_(checker.poller_),
        name_(target.name),
        session_(std::move(session)),
        tcp_(buffers_, *this),
        io_(&tcp_),
        h2_(target.h2) {
    request_ = "GET " + checker.settings_.path + " HTTP/1.1\r\nHost: " + target.host +
               "\r\nUser-Agent: ringproxy-health\r\nConnection: close\r\n\r\n";
    if (h2_) {
      h2::ClientSession::Wire& wire = *this;  // a private base: named here, where it is reachable
      h2_session_ = std::make_unique<h2::ClientSession>(wire, h2::ClientSettings{});
      h2::ClientStream::Handler& handler = *this;
      stream_.set_handler(&handler);
    }
    uv_timer_init(checker.poller_.loop(), &timer_);
    timer_.data = this;
    handles_ = 1;
    if (target.tls) {
      Transport::Handler& self = *this;  // a private base: named here, where it is reachable
      tls_ = std::make_unique<TlsTransport>(buffers_, self);
      io_ = tls_.get();
      if (tls_->init(checker.poller_) == 0) handles_ = 2;
    } else if (tcp_.init(checker.poller_) == 0) {
      handles_ = 2;
    }
  }

  // Starts the probe on the target's address `index` (0: address, then more_addresses).
  // Precondition: the checker lists it (a failure here reports at once, and finished()
  // must find it).
  void begin(const CheckTarget& target, size_t index) {
    index_ = index;
    const auto* addr =
        reinterpret_cast<const sockaddr*>(index == 0 ? &target.address : &target.more_addresses[index - 1]);
    int rc = UV_ENOMEM;
    if (handles_ == 2) {
      // The handshake is bounded by the probe's timeout, as the connect is.
      static constexpr std::string_view kAlpnH2("\x02h2", 3);
      rc = tls_ ? tls_->connect_client(addr, target.tls, target.tls_name, session_.get(), 0,
                                       h2_ ? kAlpnH2 : std::string_view())
                : tcp_.connect(addr);
    }
    if (rc < 0) {
      if (is_local_resource_error(rc)) {  // no verdict: see net/local_error.h
        abandon();
        return;
      }
      connect_failed_ = true;
      fail(std::string("connect: ") + uv_err_name(rc));
      return;
    }
    uv_timer_start(&timer_, on_timeout, checker_.settings_.timeout_ms, 0);
  }

  const std::string& name() const { return name_; }
  size_t index() const { return index_; }
  // It failed to connect (an error, not a timeout): another address may answer.
  bool connect_failed() const { return connect_failed_; }
  // The checker is going away: close without reporting. From here on nothing touches
  // checker_, which may be freed before the close callbacks run.
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
    io_->close();  // a no-op when its init failed
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_timer_closed);
  }

  // Transport::Handler
  void on_connect(int status) override {
    if (closing_) return;
    if (is_local_resource_error(status)) {  // may come here too, not only from connect()
      abandon();
      return;
    }
    if (status < 0) {
      if (tls_ && !tls_->handshake_error().empty()) {
        fail("TLS handshake failed: " + tls_->handshake_error());
      } else {
        connect_failed_ = status != UV_ETIMEDOUT;
        fail(std::string("connect: ") + uv_err_name(status));
      }
      return;
    }
    if (h2_) {
      start_h2();
      return;
    }
    uv_buf_t buf = uv_buf_init(request_.data(), static_cast<unsigned>(request_.size()));
    int rc = io_->write(&buf, 1);
    if (rc >= 0) rc = io_->start_reading();
    if (rc < 0) fail(std::string("write: ") + uv_err_name(rc));
  }

  void on_write_done(int status) override {
    if (status < 0 && !closing_) fail(std::string("write: ") + uv_err_name(status));
    if (h2_ && !closing_) h2_session_->on_write_done(status);
  }

  // HTTP/2: the same request as a stream (the request line's target, Host as
  // :authority), over TLS only when the node chose h2 by ALPN.
  void start_h2() {
    if (tls_ && tls_->alpn() != "h2") {
      fail("the node did not choose h2 by ALPN");
      return;
    }
    std::string names;
    std::vector<nghttp2_nv> nv;
    if (!h2_session_->start() ||
        !h2::request_fields_from_http1(request_, tls_ ? "https" : "http", {}, false, names, nv)) {
      fail("cannot start HTTP/2");
      return;
    }
    if (h2_session_->submit(stream_, nv, false) < 0) {
      fail("cannot open a stream");
      return;
    }
    h2_session_->on_connected();
    if (closing_) return;
    if (const int rc = io_->start_reading(); rc < 0) fail(std::string("read: ") + uv_err_name(rc));
  }

  // h2::ClientSession::Wire
  int wire_send(uv_buf_t* buf) override { return closing_ ? UV_ECANCELED : io_->write(buf, 1); }
  bool wire_pending() const override { return io_->write_pending(); }
  Poller& wire_poller() override { return poller_; }
  void wire_close(std::string_view why) override { fail(why.empty() ? std::string("closed before answering") : std::string(why)); }
  void wire_capacity() override {}
  // The probe's own timer bounds it whole: no deadline per stream.
  void wire_arm(h2::ClientStream&, uint32_t) override {}
  void wire_disarm(h2::ClientStream&) override {}
  uint64_t wire_now_us() override { return uv_hrtime() / 1000; }  // unused: a probe times itself
  void on_stream_timeout() override {}
  // h2::ClientStream::Handler
  void on_upstream_stream() override {
    if (closing_) return;
    if (stream_.head_ready()) {
      const int status = stream_.status();
      done(status >= 200 && status < 400, "status " + std::to_string(status));
    } else if (stream_.interim_ready()) {
      done(false, "status " + std::to_string(stream_.interim_status()));  // as HTTP/1's first head
    } else if (stream_.failed()) {
      fail(stream_.cause());
    }
  }

  void on_read(ssize_t n) override {
    if (closing_) return;
    if (n < 0) {
      fail(n == UV_EOF ? "closed before answering" : std::string("read: ") + uv_err_name(static_cast<int>(n)));
      return;
    }
    if (h2_) {
      IoBuffer& in = io_->buffer();
      if (!h2_session_->on_read(in.begin_ptr(), in.size()) || closing_) return;
      in.clear();
      if (const int rc = io_->start_reading(); rc < 0) fail(std::string("read: ") + uv_err_name(rc));
      return;
    }
    // The head is all a verdict needs: the first one, an interim 1xx included (which
    // fails the check, as any status outside 200-399 does).
    switch (parser_.execute(io_->buffer()).step) {
      case h1::ResponseParser::Step::kMore:
        // More of the head to come. Reading stopped if the buffer was full (the parser
        // has grown it since): go on.
        if (const int rc = io_->start_reading(); rc < 0) fail(std::string("read: ") + uv_err_name(rc));
        return;
      case h1::ResponseParser::Step::kError:
        fail(std::string(parser_.error_reason()));
        return;
      default:
        break;  // kHead
    }
    const int status = parser_.status();
    if (status > 599) {
      fail("malformed response: status " + std::to_string(status));
      return;
    }
    done(status >= 200 && status < 400, "status " + std::to_string(status));
  }

  void on_closed() override { handle_closed(); }

  static void on_timeout(uv_timer_t* t) {
    auto* p = static_cast<Probe*>(t->data);
    p->fail("timeout after " + std::to_string(p->checker_.settings_.timeout_ms) + " ms");
  }

  static void on_timer_closed(uv_handle_t* h) { static_cast<Probe*>(h->data)->handle_closed(); }
  void handle_closed() {
    if (--handles_ == 0) delete this;
  }

  // A probe's answer head beyond this is not a health check's (and is not read on).
  static constexpr uint32_t kMaxHead = 16 * 1024;

  HealthChecker& checker_;
  Poller& poller_;  // outlives the checker (abort())
  std::string name_;
  std::string request_;
  std::shared_ptr<TlsSessionCache> session_;  // the target's, for a TLS probe
  BufferPool buffers_;  // the probe's read buffers
  TcpTransport tcp_;                   // a plain probe's transport
  std::unique_ptr<TlsTransport> tls_;  // a TLS probe's
  Transport* io_;                      // the one in use
  uv_timer_t timer_{};
  h1::ResponseParser parser_{kMaxHead};
  bool closing_ = false;
  bool orphan_ = false;
  bool connect_failed_ = false;
  size_t index_ = 0;
  int handles_ = 0;
  bool h2_ = false;
  std::unique_ptr<h2::ClientSession> h2_session_;  // an HTTP/2 probe's
  h2::ClientStream stream_;  // after the session: freed first
};

HealthChecker::HealthChecker(Poller& poller, OnResult on_result)
    : poller_(poller), on_result_(std::move(on_result)) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::configure(std::vector<CheckTarget> targets, CheckSettings settings) {
  const bool interval_changed = settings.interval_ms != settings_.interval_ms;
  targets_ = std::move(targets);
  settings_ = std::move(settings);
  // Sessions of nodes no longer probed over TLS are let go.
  std::erase_if(sessions_, [&](const auto& entry) {
    return std::none_of(targets_.begin(), targets_.end(),
                        [&](const CheckTarget& t) { return t.tls && session_key(t) == entry.first; });
  });
  if (timer_ && interval_changed) uv_timer_start(timer_, on_tick, settings_.interval_ms, settings_.interval_ms);
}

void HealthChecker::start() {
  if (timer_) return;
  timer_ = new uv_timer_t{};  // freed in its close callback (stop)
  uv_timer_init(poller_.loop(), timer_);
  timer_->data = this;
  uv_timer_start(timer_, on_tick, 0, settings_.interval_ms);
}

void HealthChecker::stop() {
  if (timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  const std::vector<Probe*> running = probes_;
  probes_.clear();
  for (Probe* p : running) p->abort();
}

void HealthChecker::on_tick(uv_timer_t* t) { static_cast<HealthChecker*>(t->data)->round(); }

void HealthChecker::round() {
  for (const CheckTarget& target : targets_) {
    const bool busy = std::any_of(probes_.begin(), probes_.end(), [&](Probe* p) { return p->name() == target.name; });
    if (busy) continue;
    std::shared_ptr<TlsSessionCache> session;
    if (target.tls) {
      auto& slot = sessions_[session_key(target)];
      if (!slot) slot = std::make_shared<TlsSessionCache>();
      session = slot;
    }
    begin_probe(target, 0, std::move(session));
  }
}

void HealthChecker::begin_probe(const CheckTarget& target, size_t index, std::shared_ptr<TlsSessionCache> session) {
  auto* probe = new Probe(*this, target, std::move(session));  // owned by its handles
  probes_.push_back(probe);
  probe->begin(target, index);
}

void HealthChecker::forget(Probe* probe) {
  probes_.erase(std::remove(probes_.begin(), probes_.end(), probe), probes_.end());
}

void HealthChecker::finished(Probe* probe, bool ok, const std::string& detail) {
  forget(probe);
  const auto target =
      std::find_if(targets_.begin(), targets_.end(), [&](const CheckTarget& t) { return t.name == probe->name(); });
  if (target == targets_.end()) return;
  if (!ok && probe->connect_failed() && probe->index() < target->more_addresses.size()) {
    // The node's next address, in this round: the node passes if any answers.
    std::shared_ptr<TlsSessionCache> session;
    if (target->tls) session = sessions_[session_key(*target)];
    begin_probe(*target, probe->index() + 1, std::move(session));
    return;
  }
  const size_t tried = probe->index() + 1;
  on_result_(probe->name(), ok,
             !ok && tried > 1 ? detail + " (each of " + std::to_string(tried) + " addresses)" : detail);
}

}  // namespace ringproxy
