// Edge-triggered readiness for the sockets of one libuv loop: an epoll set of our own,
// watched by the loop as one more descriptor (a uv_poll_t on it, uv_backend_fd's
// embedding in reverse).
//
// Why not a uv_tcp_t per socket, as before: libuv's epoll is level-triggered and its
// handles cost a system call at each end of a socket's life. Level-triggered, every
// event is polled twice: epoll_wait puts a ready socket back on its ready list, and
// the next epoll_wait polls it once more to learn that it is no longer ready (perf at
// 50 keep-alive connections, 2026-12-06, Intel Xeon: tcp_poll, sock_poll and
// ep_item_poll 6.7% of ringproxy's CPU, 0.53 us a request, against 0.20 us for nginx,
// which registers each socket once, edge-triggered). And uv_tcp_open sets O_NONBLOCK
// again with an ioctl on a socket that accept4 made non-blocking, and uv_close removes
// the socket from epoll with an EPOLL_CTL_DEL that close(2) does anyway: two system
// calls of the nine a new connection costs.
//
// Here a socket is added once, for input, output and peer half-close, edge-triggered,
// and leaves the set when it is closed. A listening socket is the exception: level-
// triggered for input (add_listener), so that what its owner leaves in the queue is
// reported again; on libuv's loop (a uv_poll_t) each accept took a second epoll_wait,
// libuv's own, under this set's. An event carries a slot number and the slot's
// generation, not a pointer: a socket closed while its events are still queued (a
// descriptor shared with a child between fork and exec stays in the set) is forgotten
// when it closes, and its late events fall on a newer generation and are dropped.
//
// Edge-triggered means nothing is reported again for bytes already waiting: a socket
// that stops reading with data left, or reads its 32 buffers in one turn, asks for
// on_poll_ready() with defer(). Deferred work and the closed sockets' on_poll_retired()
// run after the events of the turn (or from an idle handle, when asked from outside an
// event: a timer, say), so a socket's memory outlives every event of the turn that
// names it.
//
// Thread: the loop's.
#pragma once

#include <sys/epoll.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ringproxy {

class Poller {
 public:
  class Socket {
   public:
    // `events`: EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR, as epoll says them.
    virtual void on_poll_events(uint32_t events) = 0;
    // What defer() asked for.
    virtual void on_poll_ready() = 0;
    // After retire(), once no event of the current turn can name the socket any more.
    virtual void on_poll_retired() = 0;

   protected:
    virtual ~Socket() = default;

   private:
    friend class Poller;
    bool deferred_ = false;  // in the Poller's ready list
  };

  Poller() = default;
  ~Poller() = default;
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  // Creates the epoll set and watches it on `loop`: 0 or a libuv error. After 0, close()
  // must be called, and the loop run, before the loop closes.
  int init(uv_loop_t* loop);
  // Closes the handles once every socket added has been forgotten and retired (at once
  // when none is left). Idempotent.
  void close();
  uv_loop_t* loop() const { return loop_; }

  // Watches `fd` (edge-triggered: in, out, peer half-close) for `socket`: 0 or a libuv
  // error. `*token` names the registration for forget().
  int add(int fd, Socket* socket, uint64_t* token);
  // Watches a listening socket `fd` for `socket`, level-triggered and for input only:
  // while connections wait in its queue every turn reports it again, so its owner may
  // take a bounded number a turn and leave the rest. Its events come last in the turn,
  // after the deferred work and the retired sockets: the memory of the connections
  // closed this turn is free again when the new ones are made (delivered with the
  // others, each new connection took fresh chunks from malloc's bins while the closed
  // ones' waited: +480 user-space instructions per new connection, callgrind).
  // 0 or a libuv error.
  int add_listener(int fd, Socket* socket, uint64_t* token);
  // Stops (false) or resumes (true) reporting a listener's input: a paused listener
  // keeps its queue, the kernel's. 0 or a libuv error.
  int watch_listener(int fd, uint64_t token, bool on);
  // Before the socket's fd is closed: no event of this registration reaches it again.
  void forget(uint64_t token);
  // forget() for a listener, which also leaves the set at once: level-triggered, a
  // listening socket whose descriptor lives on in another process (a child between
  // fork and exec) would otherwise be reported, and dropped, every turn.
  void forget_listener(int fd, uint64_t token);
  // on_poll_ready() this turn, after its events (or next turn, when asked while the
  // deferred work runs: a socket that read its fill waits for the others).
  void defer(Socket* socket);
  // on_poll_retired() after this turn's events. The socket must have been forgotten.
  void retire(Socket* socket);
  // Takes back a defer(): no on_poll_ready() comes (for an object going away that was
  // never added, such as a task deferred to the end of the turn).
  void cancel(Socket* socket);

  // Runs the loop until nothing is left in it (no active handle or request, no socket):
  // the loop's one wait is then this epoll set, with libuv's own backend descriptor in
  // it (uv_backend_fd, the documented way to embed a libuv loop), instead of libuv's
  // epoll with this set in it. A turn of the loop is then one epoll_wait, not two:
  // uv_run(UV_RUN_NOWAIT) runs libuv's part only when its backend is readable or its
  // timers are due (or it has close callbacks or idle handles to run). Without run(),
  // uv_run alone serves the sockets (tests do). `on_wake` runs after each wait, before
  // any callback (the worker drops its cached clock there). Returns once the loop has
  // nothing left; uv_loop_close follows.
  void run(void (*on_wake)(void*), void* arg);

  // Registrations open (tests).
  size_t sockets() const { return open_; }
  // Sockets waiting in the ready list (defer()); tests read it to see the loop idle.
  size_t deferred() const { return ready_.size(); }

 private:
  static void on_readable(uv_poll_t* p, int status, int events);
  static void on_idle(uv_idle_t* h);
  void dispatch();
  // epoll_wait into events_, again after EINTR.
  int wait(int timeout_ms);
  // Hands the first `n` of events_ to their sockets; true when libuv's backend was
  // among them (driving).
  bool deliver(int n);
  void run_deferred();
  // The listeners' events deliver() set aside, to the listeners still registered.
  void deliver_listeners();
  void finish_close();
  void wake();  // the idle handle runs the deferred work next turn
  // The handle whose reference stands for the registered sockets.
  int register_fd(int fd, Socket* socket, uint32_t events, bool listener, uint64_t* token);
  uv_handle_t* keepalive() {
    return driving_ ? reinterpret_cast<uv_handle_t*>(&alive_) : reinterpret_cast<uv_handle_t*>(&poll_);
  }

  struct Slot {
    Socket* socket = nullptr;
    uint32_t generation = 0;
    bool listener = false;  // add_listener: its events wait for deliver_listeners()
  };
  static constexpr int kEventsPerWait = 128;
  static constexpr uint64_t kBackendToken = ~uint64_t{0};  // no slot's token: 2^32 - 1 slots at most

  uv_loop_t* loop_ = nullptr;
  uv_poll_t poll_{};
  uv_idle_t idle_{};
  uv_prepare_t alive_{};  // driving: referenced while a socket is registered
  int epfd_ = -1;
  size_t open_ = 0;
  bool dispatching_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool driving_ = false;  // run() owns the wait: poll_ is closed, the backend is in epfd_
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<Socket*> ready_;
  std::vector<Socket*> ready_now_;  // the batch being run (ready_ takes what it defers)
  std::vector<Socket*> retired_;
  std::vector<epoll_event> listeners_ready_;  // deliver() sets them aside, token and events
  epoll_event events_[kEventsPerWait];
};

// A call of Owner::*Fn at the end of the loop's turn: Poller::defer() of a socket that is
// never added (the HTTP/2 sessions' end-of-turn flush, a connection freed once off the
// stack). `scheduled` is the owner's to keep; Poller::cancel() takes it back.
template <class Owner, void (Owner::*Fn)()>
class DeferredCall final : public Poller::Socket {
 public:
  explicit DeferredCall(Owner& owner) : owner_(owner) {}
  bool scheduled = false;

 private:
  void on_poll_events(uint32_t) override {}
  void on_poll_ready() override {
    scheduled = false;
    (owner_.*Fn)();
  }
  void on_poll_retired() override {}
  Owner& owner_;
};

}  // namespace ringproxy
