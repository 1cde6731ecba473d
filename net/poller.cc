#include "net/poller.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace ringproxy {

namespace {

uint64_t token_of(uint32_t slot, uint32_t generation) { return static_cast<uint64_t>(generation) << 32 | slot; }

}  // namespace

int Poller::init(uv_loop_t* loop) {
  loop_ = loop;
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return -errno;  // libuv's codes are -errno on Unix
  int rc = uv_poll_init(loop, &poll_, epfd_);
  if (rc < 0) {
    ::close(epfd_);
    epfd_ = -1;
    return rc;
  }
  poll_.data = this;
  uv_idle_init(loop, &idle_);
  idle_.data = this;
  uv_poll_start(&poll_, UV_READABLE, on_readable);
  // Referenced only while a socket is registered: like a uv_tcp_t, a socket keeps the
  // loop alive; an empty set does not.
  uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
  return 0;
}

void Poller::close() {
  if (closing_ || loop_ == nullptr || epfd_ < 0) return;
  closing_ = true;
  if (open_ == 0 && retired_.empty() && ready_.empty()) finish_close();
}

void Poller::finish_close() {
  if (closed_) return;
  closed_ = true;
  // uv_close stops the poll and takes the descriptor out of the loop's epoll before it
  // returns; the descriptor itself is ours to close.
  uv_close(keepalive(), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  ::close(epfd_);
  epfd_ = -1;
}

int Poller::add(int fd, Socket* socket, uint64_t* token) {
  return register_fd(fd, socket, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, false, token);
}

int Poller::add_listener(int fd, Socket* socket, uint64_t* token) {
  return register_fd(fd, socket, EPOLLIN, true, token);
}

int Poller::watch_listener(int fd, uint64_t token, bool on) {
  epoll_event ev{};
  ev.events = on ? EPOLLIN : 0;
  ev.data.u64 = token;
  return ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -errno;
}

int Poller::register_fd(int fd, Socket* socket, uint32_t events, bool listener, uint64_t* token) {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.push_back({});
  }
  Slot& s = slots_[slot];
  s.socket = socket;
  s.listener = listener;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token_of(slot, s.generation);
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = -errno;
    s.socket = nullptr;
    free_slots_.push_back(slot);
    return err;
  }
  *token = ev.data.u64;
  if (open_++ == 0) uv_ref(keepalive());
  return 0;
}

void Poller::forget(uint64_t token) {
  const auto slot = static_cast<uint32_t>(token);
  Slot& s = slots_[slot];
  if (s.socket == nullptr || s.generation != static_cast<uint32_t>(token >> 32)) return;
  s.socket = nullptr;
  ++s.generation;  // a late event of this registration no longer matches
  free_slots_.push_back(slot);
  if (--open_ == 0) uv_unref(keepalive());
}

void Poller::forget_listener(int fd, uint64_t token) {
  epoll_event ev{};  // ignored by EPOLL_CTL_DEL; kernels before 2.6.9 wanted it non-null
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
  forget(token);
}

void Poller::defer(Socket* socket) {
  if (socket->deferred_) return;
  socket->deferred_ = true;
  ready_.push_back(socket);
  if (!dispatching_) wake();
}

void Poller::retire(Socket* socket) {
  if (socket->deferred_) {  // its on_poll_ready would come after its memory is gone
    socket->deferred_ = false;
    ready_.erase(std::remove(ready_.begin(), ready_.end(), socket), ready_.end());
    std::replace(ready_now_.begin(), ready_now_.end(), socket, static_cast<Socket*>(nullptr));
  }
  retired_.push_back(socket);
  if (!dispatching_) wake();
}

void Poller::cancel(Socket* socket) {
  if (!socket->deferred_) return;
  socket->deferred_ = false;
  ready_.erase(std::remove(ready_.begin(), ready_.end(), socket), ready_.end());
  std::replace(ready_now_.begin(), ready_now_.end(), socket, static_cast<Socket*>(nullptr));
}

void Poller::wake() {
  // Driving, run() looks at the lists after every wait and does not block while they
  // hold anything.
  if (!closed_ && !driving_) uv_idle_start(&idle_, on_idle);
}

void Poller::on_readable(uv_poll_t* p, int status, int) {
  auto* self = static_cast<Poller*>(p->data);
  if (status < 0) return;  // an epoll descriptor does not fail; nothing to read if it did
  self->dispatch();
}

void Poller::on_idle(uv_idle_t* h) {
  auto* self = static_cast<Poller*>(h->data);
  self->run_deferred();
}

void Poller::dispatch() {
  // One wait per turn of the loop: when it fills the array, the set is still readable
  // and the loop reports it again on its next turn.
  deliver(wait(0));
  run_deferred();
  deliver_listeners();
}

int Poller::wait(int timeout_ms) {
  int n;
  do {
    n = ::epoll_wait(epfd_, events_, kEventsPerWait, timeout_ms);
  } while (n < 0 && errno == EINTR);
  return n;  // -1 only for a bad set, which deliver() takes as no event
}

bool Poller::deliver(int n) {
  bool backend = false;
  dispatching_ = true;
  for (int i = 0; i < n; ++i) {
    const uint64_t token = events_[i].data.u64;
    if (token == kBackendToken) {
      backend = true;
      continue;
    }
    const Slot& s = slots_[static_cast<uint32_t>(token)];
    if (s.socket != nullptr && s.generation == static_cast<uint32_t>(token >> 32)) {
      if (s.listener) {
        listeners_ready_.push_back(events_[i]);
        continue;
      }
      s.socket->on_poll_events(events_[i].events);
    }
  }
  dispatching_ = false;
  return backend;
}

void Poller::deliver_listeners() {
  if (listeners_ready_.empty()) return;
  dispatching_ = true;
  for (const epoll_event& ev : listeners_ready_) {
    const uint64_t token = ev.data.u64;
    const Slot& s = slots_[static_cast<uint32_t>(token)];
    if (s.socket != nullptr && s.generation == static_cast<uint32_t>(token >> 32)) {
      s.socket->on_poll_events(ev.events);
    }
  }
  listeners_ready_.clear();
  dispatching_ = false;
  // What the accepted connections deferred (or retired, when one failed at once) runs
  // next turn, which then does not block.
  if (!ready_.empty() || !retired_.empty()) wake();
}

void Poller::run_deferred() {
  dispatching_ = true;
  // What is ready now runs now; what it defers waits for the next turn (fairness).
  ready_now_.swap(ready_);
  for (size_t i = 0; i < ready_now_.size(); ++i) {
    Socket* s = ready_now_[i];
    if (s == nullptr) continue;  // retired meanwhile
    s->deferred_ = false;
    s->on_poll_ready();
  }
  ready_now_.clear();
  // A retired socket's owner may close more while hearing of it: until none is left.
  while (!retired_.empty()) {
    Socket* s = retired_.back();
    retired_.pop_back();
    s->on_poll_retired();
  }
  dispatching_ = false;
  if (!ready_.empty()) {
    wake();
    return;
  }
  if (!closed_) uv_idle_stop(&idle_);
  if (closing_ && open_ == 0) finish_close();
}

void Poller::run(void (*on_wake)(void*), void* arg) {
  if (!driving_ && !closed_) {
    // Out of the loop's epoll first (uv_poll_stop takes the descriptor out at once):
    // were both sets in each other, the kernel would refuse the add (ELOOP).
    uv_poll_stop(&poll_);
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: readable while libuv has events to take
    ev.data.u64 = kBackendToken;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, uv_backend_fd(loop_), &ev) == 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
      // The poll handle kept the loop alive while a socket was registered; a started
      // prepare handle does that now. libuv counts only referenced active handles, and
      // without one it reports no timeout at all: an unreferenced timer would never
      // fire while only sockets are left.
      uv_prepare_init(loop_, &alive_);
      uv_prepare_start(&alive_, [](uv_prepare_t*) {});
      if (open_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&alive_));
      driving_ = true;
    } else {
      uv_poll_start(&poll_, UV_READABLE, on_readable);
    }
  }
  if (!driving_) {  // could not embed: libuv waits, with this set in its epoll
    uv_run(loop_, UV_RUN_DEFAULT);
    return;
  }
  for (;;) {
    if (closed_) {  // the set is gone: what is left is libuv's (close callbacks)
      uv_run(loop_, UV_RUN_DEFAULT);
      return;
    }
    // A registered socket keeps the loop alive (alive_ is referenced meanwhile).
    if (uv_loop_alive(loop_) == 0 && ready_.empty() && retired_.empty()) return;
    int timeout = 0;
    if (ready_.empty() && retired_.empty()) {
      uv_update_time(loop_);
      timeout = uv_backend_timeout(loop_);  // the next timer, or -1
    }
    const int n = wait(timeout);
    uv_update_time(loop_);  // timers armed by the callbacks below count from now
    on_wake(arg);
    const bool backend = deliver(n);
    run_deferred();
    deliver_listeners();
    if (backend || uv_backend_timeout(loop_) == 0) uv_run(loop_, UV_RUN_NOWAIT);
  }
}

}  // namespace ringproxy
