// One connection to an HTTP/2 node (protocol = "h2c", or "h2" over TLS with ALPN h2),
// per worker, carrying the streams of many exchanges at once: the UpstreamConn below
// it does TCP and TLS, the ClientSession (http/h2/client_session.h) does HTTP/2.
//
// Its node's pool (proxy/upstream_pool.h) lists it while it is open; an exchange takes
// a stream on the first listed connection with room (the node's
// SETTINGS_MAX_CONCURRENT_STREAMS), so streams fill few connections: nghttpx measured
// about 1/100 of the connections HTTP/1.1 needs for the same load. When every one is
// full, a new one opens only below [http2] upstream_connections; past it the stream
// waits on the least loaded (place_h2_stream in proxy/upstream_pool.h says where).
//
// The streams' timeouts share the connection's timer (each stream has a deadline; the
// timer is set for the earliest), so a stream costs no timer handle.
//
// Thread: the owning worker's loop. Freed after close(), at the end of the loop's turn.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "http/h2/client_session.h"
#include "net/poller.h"
#include "proxy/upstream_pool.h"

namespace ringproxy {

class Worker;

class H2Upstream final : private UpstreamConn::Owner, private h2::ClientSession::Wire {
 public:
  // Connects to `addr`; null with `*error` (a libuv code) when the connect could not
  // start (no descriptor, no memory).
  static H2Upstream* create(Worker& worker, UpstreamPool& pool, const sockaddr* addr, uint32_t connect_timeout_ms,
                            int* error);

  h2::ClientSession& session() { return session_; }
  const h2::ClientSession& session() const { return session_; }
  // Takes streams at all: connected or connecting, no GOAWAY either way, ids left.
  bool accepting() const { return !closing_ && session_.accepting(); }
  bool connected() const { return connected_; }
  UpstreamPool& pool() { return pool_; }
  uint64_t tls_context_id() const { return tls_context_id_; }

  // No new streams; GOAWAY and close once the last one ends.
  void shutdown() { session_.shutdown(); }
  void close(std::string_view why = {});

 private:
  H2Upstream(Worker& worker, UpstreamPool& pool, UpstreamConn* conn);
  ~H2Upstream() = default;
  // Closes without a log line: the streams fail with `cause` (`connect_status`: the
  // connection never came up), and the exchanges log it with their requests.
  void shut(std::string_view cause, int connect_status);
  void rearm();
  void remove_timed(size_t slot);
  void idle_check();

  // UpstreamConn::Owner
  void on_upstream_connect(int status) override;
  void on_upstream_read(ssize_t nread) override;
  void on_upstream_write(int status) override;
  void on_upstream_timeout() override;
  // h2::ClientSession::Wire
  int wire_send(uv_buf_t* buf) override;
  bool wire_pending() const override { return conn_ && conn_->write_pending(); }
  Poller& wire_poller() override;
  void wire_close(std::string_view why) override { close(why); }
  void wire_capacity() override;
  void wire_arm(h2::ClientStream& s, uint32_t ms) override;
  void wire_disarm(h2::ClientStream& s) override;
  uint64_t wire_now_us() override;

  // Frees the connection once the turn's events are over (the session may be on the
  // stack when it asks to close).
  void reap() { delete this; }
  DeferredCall<H2Upstream, &H2Upstream::reap> reaper_{*this};

  Worker& worker_;
  UpstreamPool& pool_;
  UpstreamConn* conn_;
  struct Deadline {
    h2::ClientStream* stream;
    uint64_t at;  // loop time in ms
  };
  std::vector<Deadline> timed_;  // streams with a deadline
  // When the connection's timer is set for (0: not set): a later deadline leaves it
  // (it fires, finds nothing due, and is set for the earliest left), an earlier one
  // moves it. Arming a stream is O(1).
  uint64_t timer_at_ = 0;
  h2::ClientSession session_;  // after timed_: its streams leave timed_ as it goes
  uint64_t idle_since_ = 0;    // loop time the last stream ended (0: streams open)
  uint64_t tls_context_id_ = 0;  // the ClientTlsContext it was made with (0: plain)
  bool connected_ = false;
  bool closing_ = false;
};

}  // namespace ringproxy
