#include "proxy/client_conn.h"

#include <string>

#include "proxy/log.h"
#include "proxy/request_log.h"
#include "proxy/worker.h"

namespace ringproxy {

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
  return {p.header_timeout_ms, p.idle_timeout_ms, p.max_header_bytes};
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
