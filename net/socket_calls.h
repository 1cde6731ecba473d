// recv, send and sendmsg on a non-blocking socket, without glibc's cancellation-point
// wrappers. glibc makes these three calls pthread cancellation points: in a process
// with more than one thread (ours: the main loop and the workers) every call first
// enables and then disables asynchronous cancellation around the syscall (perf at 50
// keep-alive connections: __pthread_disable_asynccancel and _enable_asynccancel were
// 1.2% of the proxy's CPU, 2026-12-06, Intel Xeon). ringproxy never cancels a thread, so the plain
// syscall(2) does the same work without them. Same results as the glibc calls: the
// count, or -1 with errno set.
//
// Thread: any.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>

namespace ringproxy::sock {

inline ssize_t recv(int fd, void* buf, size_t len, int flags) {
  return syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr);
}

inline ssize_t send(int fd, const void* buf, size_t len, int flags) {
  return syscall(SYS_sendto, fd, buf, len, flags, nullptr, 0);
}

inline ssize_t sendmsg(int fd, const msghdr* msg, int flags) { return syscall(SYS_sendmsg, fd, msg, flags); }

}  // namespace ringproxy::sock
