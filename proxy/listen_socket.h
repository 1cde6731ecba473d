// The listening sockets of the proxy and of the admin endpoint: made with socket(2),
// bound, non-blocking and close-on-exec, and accepted from with accept4 by their loop
// (Worker, AdminServer) rather than through uv_listen, which out of descriptors drops
// the queued connections (proxy/worker.h says how).
//
// Thread: any.
#pragma once

#include <sys/socket.h>

#include <string>

#include "config/config.h"

namespace ringproxy {

// A bound socket for `address` (not yet listening): SO_REUSEADDR, IPV6_V6ONLY for an
// IPv6 address, TCP_NODELAY (accepted sockets inherit it), and SO_REUSEPORT when
// `reuseport` (each worker has its own accept queue; libuv 1.44 has no flag for it).
// Returns the descriptor, or -errno (a libuv error code) with *error set.
int bind_listener(const Address& address, bool reuseport, std::string* error);

// Takes one pending connection of `listen_fd`, non-blocking and close-on-exec, with the
// peer's address in *peer (no getpeername per connection). Returns the descriptor;
// -EAGAIN when the queue is empty; another -errno when accepting failed (EMFILE, say).
// A connection its client gave up before it was taken (ECONNABORTED), or an EINTR, is
// passed over for the next.
int accept_connection(int listen_fd, sockaddr_storage* peer);

}  // namespace ringproxy
