// One client connection of a worker: the HTTP/1 server codec (http/h1/server_conn.h)
// and the Exchange (proxy/exchange.h) that its requests go through, allocated together
// once per connection. This class only ties them to the worker: the connection count
// and max_connections, the worker's list (for drains), the limits from the routing.
//
// Thread: the owning worker's loop. Freed when the codec's handles have closed.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include <memory>
#include <vector>

#include "http/h1/server_conn.h"
#include "http/h2/server_session.h"
#include "proxy/exchange.h"

namespace ringproxy {

class Worker;

class ClientConn final : private h1::ServerConn::Owner, private h2::ServerSession::Owner {
 public:
  // Takes `fd`, a connection the worker has just accepted (non-blocking, close-on-exec)
  // from `peer` on listener `listener_id` (ListenerRouting::id; `nodelay`: the socket
  // has TCP_NODELAY from it). Closes it at once when the process is at max_connections.
  static void accept(Worker& worker, int fd, const sockaddr* peer, uint32_t listener_id = 0, bool nodelay = false);

  void close() { codec_.close(); }  // idempotent; frees later
  // Draining: close now if idle, else after the response in progress.
  void drain() { codec_.drain(); }
  size_t slot = 0;  // index in the worker's connection list
  uint32_t listener_id() const { return listener_id_; }
  // Test-only (fuzz/h2_frames.cc): HTTP/2 streams that new_stream() handed out and
  // free_stream() has not yet taken back, over every connection of this thread.
  static int64_t h2_streams_out() { return h2_streams_out_; }

 private:
  explicit ClientConn(Worker& worker);
  ~ClientConn() = default;

  // h1::ServerConn::Owner
  h1::ServerLimits limits() const override;
  void on_closing(h1::ServerConn& conn) override;
  void on_freed(h1::ServerConn& conn) override;
  void on_tls_handshake(h1::ServerConn& conn, const TlsTransport& tls) override;
  h1::Takeover* http2(h1::ServerConn& conn, bool alpn) override;

  // h2::ServerSession::Owner: each stream an Exchange of its own, kept for reuse.
  h2::Stream* new_stream() override;
  void free_stream(h2::Stream* s) override;
  void on_session_note(std::string_view what) override;

  struct StreamSlot {
    // The two refer to each other; the stream only keeps the reference until used.
    explicit StreamSlot(Worker& worker) : stream(*static_cast<RequestHandler*>(&ex)), ex(worker, stream) {}
    h2::Stream stream;
    Exchange ex;
  };

  Worker& worker_;
  bool listed_ = false;  // in the worker's connection list
  uint64_t accepted_us_ = 0;
  uint32_t listener_id_ = 0;
  h1::ServerConn codec_;
  Exchange ex_;
  // HTTP/2, once the client chose it: the session and its streams' slots.
  std::unique_ptr<h2::ServerSession> h2_;
  std::vector<std::unique_ptr<StreamSlot>> slots_;
  std::vector<StreamSlot*> free_slots_;
  static thread_local int64_t h2_streams_out_;
};

}  // namespace ringproxy
