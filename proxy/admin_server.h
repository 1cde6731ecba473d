// A small HTTP/1.1 server for the admin endpoint, on the control loop (not a worker).
// Each connection is the proxy's own HTTP/1 server codec (h1::ServerConn, as in
// proxy/client_conn.h), so the admin port refuses exactly what the proxy refuses, with
// the same canned answers (400, 408, 431, 501, 505), serves keep-alive and pipelining
// in order, one request at a time, and ends a connection after an answer that closes
// it with a lingering close. What differs is the request handler: a request that
// passes is read whole (a body of at most kMaxBody bytes, else a JSON 413) and answered
// by the handler (admin_request.h), whose answer is written whole.
//
// Thread: the control loop's.
#pragma once

#include <uv.h>

#include <cstddef>
#include <string>
#include <vector>

#include "config/config.h"
#include "net/poller.h"
#include "proxy/admin_request.h"

namespace ringproxy {

class AdminServer {
 public:
  static constexpr size_t kMaxBody = 64 * 1024;
  static constexpr uint32_t kMaxHead = 16 * 1024;
  static constexpr size_t kMaxConnections = 64;
  // A connection's first head, and each head once its first byte came, must be
  // complete in this time (else 408); between requests and reads of a body, at most
  // kIdleTimeoutMs of silence.
  static constexpr uint32_t kHeaderTimeoutMs = 10000;
  static constexpr uint32_t kIdleTimeoutMs = 60000;

  // Connections are sockets of `poller` (net/poller.h), on poller.loop().
  AdminServer(Poller& poller, AdminHandler handler) : poller_(poller), handler_(std::move(handler)) {}
  ~AdminServer();
  // Binds and listens. Returns "" or what went wrong (then close() or the destructor
  // closes the listener).
  std::string listen(const Address& address);
  // Stops listening and closes every connection. Their handles close on the loop, which
  // must run again to free them; the AdminServer itself may be destroyed at once.
  void close();

 private:
  class Conn;
  struct Listener;
  static void on_readable(uv_poll_t* p, int status, int events);
  static void on_retry(uv_timer_t* t);
  void accept_pending();
  friend class Conn;

  // Connections taken per readiness event; the rest wait for the loop's next turn.
  static constexpr int kAcceptsPerEvent = 16;
  // After an accept error (out of descriptors, say): listening pauses this long, the
  // connections waiting in the kernel's queue, instead of failing again at once.
  static constexpr uint64_t kAcceptRetryMs = 100;

  Poller& poller_;
  AdminHandler handler_;
  // From listen() to close(); null otherwise. On the heap and freed by its handles'
  // close callbacks, not with the server: a failed start-up destroys the AdminServer
  // before the loop runs again and finishes the close (STYLE rule 4).
  Listener* listener_ = nullptr;
  std::vector<Conn*> conns_;
};

}  // namespace ringproxy
