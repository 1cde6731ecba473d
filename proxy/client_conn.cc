#include "proxy/client_conn.h"

#include <string>

#include "proxy/log.h"
#include "proxy/request_log.h"
#include "proxy/worker.h"

namespace ringproxy {

thread_local int64_t ClientConn::h2_streams_out_ = 0;

ClientConn::ClientConn(Worker& worker)
    : worker_(worker), codec_(worker.poller(), worker.buffers(), *this, ex_), ex_(worker, codec_) {}

void ClientConn::accept(Worker& worker, int fd, const sockaddr* peer, uint32_t listener_id, bool nodelay) {
  auto* c = new ClientConn(worker);  // freed in on_freed
  Shared& shared = worker.shared();
  const uint32_t before = shared.connections.fetch_add(1, std::memory_order_relaxed);
  // The worker's routing has every listener it accepts on (Server::change_listeners: a
  // listener stops accepting before the routing without it is published).
  const ListenerRouting* found = worker.routing().listener(listener_id);
  const ListenerRouting& listener = found ? *found : worker.routing().listeners[0];
  c->accepted_us_ = worker.now_us();
  c->listener_id_ = listener_id;
  c->ex_.set_listener(listener);
  const int rc = listener.tls ? c->codec_.open_tls(fd, nodelay, listener.tls, listener.tls_config.handshake_timeout_ms)
                              : c->codec_.open(fd, nodelay);
  if (rc != 0) return;  // closed; on_freed follows
  worker.add_connection(c);
  c->listed_ = true;

  const Config& cfg = *worker.routing().config;
  if (before >= cfg.proxy.max_connections || worker.draining()) {
    RP_LOG(LogLevel::kWarn, "connection refused: max_connections " +
                                std::to_string(cfg.proxy.max_connections) + " reached");
    c->close();
    return;
  }
  // The request is read at once: the exchange answers only once a node has, so this
  // returns to the accept loop without serving the client's next connection.
  c->codec_.start(peer, h1::ServerConn::FirstRead::kOnEvent);
}

h1::ServerLimits ClientConn::limits() const {
  const ProxyConfig& p = worker_.routing().config->proxy;
  return {p.header_timeout_ms, p.idle_timeout_ms, p.max_header_bytes, p.h2c};
}

h1::Takeover* ClientConn::http2(h1::ServerConn& conn, bool) {
  const Config& cfg = *worker_.routing().config;
  h2::Settings settings;
  settings.max_concurrent_streams = cfg.http2.max_concurrent_streams;
  settings.initial_window_bytes = cfg.http2.initial_window_bytes;
  settings.max_header_list_bytes = cfg.http2.max_header_list_bytes;
  settings.idle_timeout_ms = cfg.http2.idle_timeout_ms;
  settings.header_timeout_ms = cfg.proxy.header_timeout_ms;
  h2::ServerSession::Owner& owner = *this;  // a private base: named here, where it is reachable
  h2_ = std::make_unique<h2::ServerSession>(conn, owner, settings);
  if (!h2_->start()) {
    RP_LOG(LogLevel::kWarn, "client " + std::string(conn.client_ip()) + ": HTTP/2 session could not start (out of memory)");
    h2_.reset();
    return nullptr;
  }
  return h2_.get();
}

h2::Stream* ClientConn::new_stream() {
  StreamSlot* s;
  if (!free_slots_.empty()) {
    s = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slots_.push_back(std::make_unique<StreamSlot>(worker_));
    s = slots_.back().get();
    s->stream.owner_data = s;
  }
  s->ex.copy_listener(ex_);
  ++h2_streams_out_;
  return &s->stream;
}

void ClientConn::on_session_note(std::string_view what) {
  RP_LOG(LogLevel::kInfo, "client " + std::string(codec_.client_ip()) + ": " + std::string(what));
}

void ClientConn::free_stream(h2::Stream* s) {
  --h2_streams_out_;
  free_slots_.push_back(static_cast<StreamSlot*>(s->owner_data));
}

void ClientConn::on_closing(h1::ServerConn&) {
  if (listed_) worker_.remove_connection(this);
  listed_ = false;
}

void ClientConn::on_tls_handshake(h1::ServerConn& conn, const TlsTransport& tls) {
  note_tls_handshake(worker_, tls, conn.client_ip(), accepted_us_);
}

void ClientConn::on_freed(h1::ServerConn&) {
  worker_.shared().connections.fetch_sub(1, std::memory_order_relaxed);
  delete this;
}

}  // namespace ringproxy
