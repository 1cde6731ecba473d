// A small HTTP/1.1 server for the admin endpoint, on the control loop (not a worker):
// it reads a whole request (head and a body of at most kMaxBody bytes) with llhttp and
// hands it to a handler that returns a whole response. Keep-alive and pipelining are
// served in order; malformed input gets 400 and a close, a body over the limit 413.
//
// Thread: the control loop's.
#pragma once

#include <llhttp.h>
#include <uv.h>

#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "net/deadline_timer.h"
#include "net/tcp_transport.h"

namespace ringproxy {

struct AdminRequest {
  std::string method;
  std::string target;  // as received
  std::string path;    // target up to '?', percent-decoded
  std::string query;   // after '?', raw
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The first header `name` (case-insensitive), "" if absent.
  std::string header(std::string_view name) const;
  // A query parameter, percent-decoded; found=false when absent.
  std::string param(std::string_view name, bool* found = nullptr) const;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones
};

using AdminHandler = std::function<AdminResponse(const AdminRequest&)>;

class AdminServer {
 public:
  static constexpr size_t kMaxBody = 64 * 1024;
  static constexpr size_t kMaxHead = 16 * 1024;
  static constexpr size_t kMaxConnections = 64;

  AdminServer(uv_loop_t* loop, AdminHandler handler) : loop_(loop), handler_(std::move(handler)) {}
  ~AdminServer();
  // Binds and listens. Returns "" or what went wrong (then close() or the destructor
  // closes the listener).
  std::string listen(const Address& address);
  // Stops listening and closes every connection. Their handles close on the loop, which
  // must run again to free them; the AdminServer itself may be destroyed at once.
  void close();

 private:
  class Conn;
  static void on_connection(uv_stream_t* server, int status);
  friend class Conn;

  uv_loop_t* loop_;
  AdminHandler handler_;
  // From listen() to close(); null otherwise. On the heap and freed by its close
  // callback, not with the server: a failed start-up destroys the AdminServer before
  // the loop runs again and finishes the close (STYLE rule 4).
  uv_tcp_t* listener_ = nullptr;
  std::vector<Conn*> conns_;
};

// "%41" -> "A"; '+' is kept (paths and our parameters are not form-encoded).
std::string percent_decode(std::string_view s);

}  // namespace ringproxy
