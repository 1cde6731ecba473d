// Whose fault is a failed connect or accept: this process's or the node's.
//
// Out of descriptors (EMFILE for the process, ENFILE for the system) or of kernel
// memory (ENOBUFS, ENOMEM) is a shortage here, not a fault of the node we were trying to
// reach: it says nothing of the node's health, and another node would fail alike. So
// neither a health probe nor a proxied request counts it against the node (no verdict,
// no passive failure, no retry elsewhere), and the proxy answers 503 (its own
// condition), not 502 (which blames the upstream).
//
// In net/, below both health/checker.cc and proxy/, which need the same definition
// (health never includes proxy/: STYLE.md "The house").
#pragma once

#include <uv.h>

namespace ringproxy {

// `uv_status`: a libuv error code (negative) from socket creation, connect or accept.
constexpr bool is_local_resource_error(int uv_status) {
  return uv_status == UV_EMFILE || uv_status == UV_ENFILE || uv_status == UV_ENOBUFS || uv_status == UV_ENOMEM;
}

}  // namespace ringproxy
