// Connections to one backend, per worker: the idle keep-alive ones, reused newest
// first, and the count of those in use. Thread: the owning worker's loop only.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/deadline_timer.h"
#include "net/io_buffer.h"
#include "net/tcp_transport.h"
#include "net/tls_context.h"
#include "net/tls_transport.h"
#include "proxy/backends.h"

namespace ringproxy {

class Worker;
class UpstreamPool;
class H2Upstream;

// One connection to a backend, over TCP or, to a node with tls = true, over TLS (the
// handshake is part of the connect: on_upstream_connect comes after it, and the connect
// timeout bounds both). Owned by its pool while idle and by a client connection's
// exchange while in use; freed only in its close callback (STYLE rule 4).
class UpstreamConn final : private Transport::Handler {
 public:
  // Callbacks into the exchange that holds the connection.
  struct Owner {
    virtual void on_upstream_connect(int status) = 0;
    virtual void on_upstream_read(ssize_t nread) = 0;  // data in buffer(), or <0 error/EOF
    virtual void on_upstream_write(int status) = 0;
    virtual void on_upstream_timeout() = 0;

   protected:
    ~Owner() = default;
  };

  static UpstreamConn* create(Worker& worker, UpstreamPool& pool);

  // Starts connecting; the owner's on_upstream_connect follows, unless this returns an
  // error (a libuv code), in which case nothing follows and the caller must close().
  // A TLS failure is on_upstream_connect(UV_EPROTO), tls_error() saying why.
  int connect(const sockaddr* addr, Owner* owner, uint32_t timeout_ms);
  void set_owner(Owner* owner) { owner_ = owner; }
  int start_reading() { return io_->start_reading(); }
  void stop_reading() { io_->stop_reading(); }
  // Writes as much as the socket takes now; the rest is queued with uv_write and
  // on_upstream_write follows. Returns 0 (all written, no callback), 1 (queued, a
  // callback follows) or a libuv error (nothing follows).
  int write(const uv_buf_t* bufs, unsigned count);
  bool write_pending() const { return io_->write_pending(); }
  // Sends FIN after the queued writes (a tunnel's client finished sending).
  int shutdown_write();
  void arm_timer(uint32_t ms);
  void disarm_timer();
  void close();  // idempotent; the object is freed later

  IoBuffer& buffer() { return io_->buffer(); }
  // Why the TLS handshake failed ("" for a plain connection or none failed).
  std::string_view tls_error() const { return tls_ ? std::string_view(tls_->handshake_error()) : std::string_view(); }
  // Why a connect (a libuv error) failed, for the log: "connect timeout", "TLS
  // handshake failed: ...", "connect failed: ECONNREFUSED".
  std::string connect_failure(int status) const { return connect_failure(status, tls_error()); }
  static std::string connect_failure(int status, std::string_view tls_error);
  // The protocol the node chose by ALPN ("" for a plain connection or none chosen).
  std::string_view alpn() const { return tls_ ? tls_->alpn() : std::string_view(); }
  UpstreamPool& pool() { return *pool_; }
  bool reused() const { return reused_; }
  void mark_reused() { reused_ = true; }

 private:
  UpstreamConn(Worker& worker, UpstreamPool& pool);
  // Transport::Handler
  void on_connect(int status) override;
  void on_read(ssize_t nread) override;
  void on_write_done(int status) override;
  void on_closed() override;
  static void on_timer(uv_timer_t* t);
  static void on_timer_closed(uv_handle_t* h);
  void handle_closed();

  friend class UpstreamPool;
  Worker& worker_;
  UpstreamPool* pool_;
  Owner* owner_ = nullptr;  // null while idle in the pool
  TcpTransport tcp_;                   // a plain connection's (unused under TLS)
  std::unique_ptr<TlsTransport> tls_;  // a TLS node's
  Transport* io_;                      // the one in use
  DeadlineTimer timer_;
  int open_handles_ = 0;
  bool closing_ = false;
  bool reused_ = false;
  uint64_t tls_context_id_ = 0;  // the ClientTlsContext it was made with (0: plain)
  bool connecting_ = false;
};

// One connection to an HTTP/2 node as stream placement sees it.
struct H2ConnLoad {
  // Takes streams at all: up or connecting, no GOAWAY either way, stream ids left, and
  // made under the current [upstream_tls].
  bool usable = false;
  size_t streams = 0;  // open and waiting
  uint32_t limit = 0;  // the node's SETTINGS_MAX_CONCURRENT_STREAMS on it
};

// Where place_h2_stream puts a stream.
struct H2Place {
  // The connection's index, or n (the count of connections): open a new one.
  size_t at = 0;
  // The node allows no stream on a connection of ours (its
  // SETTINGS_MAX_CONCURRENT_STREAMS is 0, RFC 9113 6.5.2) and none has room: it takes
  // no stream now. `at` is where the stream would wait if it must stay on this node.
  bool node_full = false;
};

// Where a new stream to an HTTP/2 node goes, among its `n` connections, oldest first,
// `load_of(i)` the i-th's H2ConnLoad; `cap` is [http2] upstream_connections. In order:
//  1. the first connection with room under the node's limit: streams fill the oldest
//     connections, the young ones empty and reach their idle timeout after a burst;
//  2. when the node allows no stream on some usable connection (limit 0: shedding load,
//     or about to go away), no new connection opens, whatever the cap: the node says
//     it takes no stream, and a new connection per request would only be refused too
//     (2 x 0 leaves no room to wait, so steps 3-5 opened one per request, without
//     bound). The stream waits on the least loaded connection with a limit, under
//     twice it (step 4); else the node is full (H2Place::node_full): the Exchange sends
//     the stream to the next node, not the node's failure, or, with none to go to,
//     lets it wait at `at` (the least loaded of all) until the node allows some or its
//     deadline passes;
//  3. none has room and fewer than `cap` are usable: a new connection;
//  4. the usable one with the fewest streams (the oldest of equals), if it holds fewer
//     than twice the node's limit: the stream waits there for a slot (nghttp2 holds
//     its HEADERS: h2::ClientStream::waiting);
//  5. a new connection all the same. The cap is soft: a burst beyond cap x 2 x limit
//     streams opens more connections rather than refusing a request or waiting
//     without bound.
// A waiting stream the node's lowered limit leaves no slot for is placed again through
// here as a new one (h2::ClientSession, "a limit that drops", says why the session
// decides it).
// Why wait at all: HTTP/2 clients walking the same URIs side by side send bursts of
// 500-640 streams to one node (h2load -c 100 -m 10 over 4 nodes), and opening a
// connection for each burst held 4-5 per node per worker (issue 16: at most 4); a
// slot frees as soon as any of the node's streams ends, sooner than a new connection's
// handshake and SETTINGS come.
// Pure: proxy/upstream_pool.cc calls it on its H2Upstreams, the tests on plain values.
template <class LoadOf>
H2Place place_h2_stream(size_t n, uint32_t cap, LoadOf load_of) {
  size_t usable = 0;
  size_t zero = 0;           // usable connections whose limit is 0
  size_t fewest = n;         // the least loaded of those with a limit
  size_t fewest_streams = 0;
  uint32_t fewest_limit = 0;
  size_t fewest_zero = n;    // the least loaded of those without
  size_t fewest_zero_streams = 0;
  for (size_t i = 0; i < n; ++i) {
    const H2ConnLoad c = load_of(i);
    if (!c.usable) continue;
    if (c.streams < c.limit) return {i, false};
    ++usable;
    if (c.limit == 0) {
      ++zero;
      if (fewest_zero == n || c.streams < fewest_zero_streams) {
        fewest_zero = i;
        fewest_zero_streams = c.streams;
      }
      continue;
    }
    if (fewest == n || c.streams < fewest_streams) {
      fewest = i;
      fewest_streams = c.streams;
      fewest_limit = c.limit;
    }
  }
  const bool may_wait = fewest != n && fewest_streams < 2 * size_t{fewest_limit};
  if (zero > 0) {
    if (may_wait) return {fewest, false};
    return {fewest != n ? fewest : fewest_zero, true};
  }
  if (usable < cap || fewest == n) return {n, false};
  return {may_wait ? fewest : n, false};
}

class UpstreamPool {
 public:
  friend class UpstreamConn;
  // `key`: Backend::pool_key. `tier`: the name of the routing's Pool the node is in
  // (its [upstream_tls]). `tls`: connections speak TLS to `tls_name` (SNI and the name
  // verified).
  UpstreamPool(Worker& worker, std::string key, std::string tier = "default", bool tls = false,
               std::string tls_name = {}, BackendProtocol protocol = BackendProtocol::kHttp1);
  ~UpstreamPool();

  // An idle connection ready for a request (its owner set), or null.
  UpstreamConn* take_idle(UpstreamConn::Owner* owner);
  // A new, unconnected connection.
  UpstreamConn* make();
  // Back to the pool after a complete exchange; closed instead when the pool is full
  // or retired. Idle connections keep reading: the backend closing one, or sending
  // anything unasked, closes it, so a dead connection is never handed out.
  void release(UpstreamConn* conn, uint32_t idle_timeout_ms);
  void forget(UpstreamConn* conn);  // a closing connection leaves the idle list
  void close_idle();
  void retire();  // the backend left the configuration
  bool retired() const { return retired_; }
  // The node speaks HTTP/2 (h2c, or h2 over TLS): its connections are H2Upstreams,
  // each carrying many streams (proxy/upstream_h2.h).
  bool h2() const { return protocol_ != BackendProtocol::kHttp1; }
  BackendProtocol protocol() const { return protocol_; }
  // The HTTP/2 connection a new stream goes on (place_h2_stream, `cap` its
  // upstream_connections), or null: open a new one. A stream placed beyond the node's
  // limit waits on its connection (h2::ClientStream::waiting). `node_full`: the node
  // allows no stream now (H2Place::node_full); the connection returned is where the
  // stream would wait, should it stay.
  struct H2Placement {
    H2Upstream* conn = nullptr;
    bool node_full = false;
  };
  H2Placement h2_place(uint32_t cap);
  void h2_add(H2Upstream* c) { h2_.push_back(c); }
  void h2_forget(H2Upstream* c);
  // Open HTTP/2 connections, draining ones included.
  size_t h2_connections() const { return h2_.size(); }
  // The node's SETTINGS_MAX_CONCURRENT_STREAMS as last seen (none: not yet), 0 included:
  // a new connection assumes it until its own SETTINGS come.
  std::optional<uint32_t> h2_peer_streams() const { return h2_peer_streams_; }
  void set_h2_peer_streams(uint32_t n) { h2_peer_streams_ = n; }
  // "NAME ADDRESS" of the node, from the key, for log lines.
  std::string label() const;
  void unretire() { retired_ = false; }
  const std::string& key() const { return key_; }
  bool tls() const { return tls_; }
  const std::string& tls_name() const { return tls_name_; }
  // The current routing's [upstream_tls] context for this pool's tier (null: none).
  const std::shared_ptr<const ClientTlsContext>& tls_context() const;
  TlsSessionCache& tls_session() { return tls_session_; }
  size_t live() const { return live_; }
  // A connection of this pool was freed (its last close callback).
  void on_conn_freed();

  // Idle connections follow demand: every connection a finished exchange gives back is
  // kept (newest reused first, so the least recently used age at the bottom) until it
  // has been idle for idle_timeout_ms, as HAProxy's pool-purge-delay and nginx's
  // keepalive_timeout trim. A fixed cap below the concurrency closes and reopens
  // connections all the time under load (64 per node at 1,000 clients: 42% of
  // requests opened one). This bound only guards against a runaway.
  static constexpr size_t kMaxIdle = 65536;

 private:
  Worker& worker_;
  std::string key_;
  std::string tier_;
  bool tls_ = false;
  std::string tls_name_;
  TlsSessionCache tls_session_;  // the node's last session, for the next handshake
  std::vector<UpstreamConn*> idle_;
  size_t live_ = 0;  // connections made and not yet freed
  bool retired_ = false;
  BackendProtocol protocol_ = BackendProtocol::kHttp1;
  std::vector<H2Upstream*> h2_;  // open HTTP/2 connections, oldest first
  std::optional<uint32_t> h2_peer_streams_;
};

}  // namespace ringproxy
