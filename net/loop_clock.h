// A microsecond clock for one loop, read at most once per loop phase instead of once
// per use. A request asks the time four times (its start, the head sent upstream, the
// response head, the log line); at 50 keep-alive connections one turn of the loop
// serves about 8 requests (17 events per epoll_wait), so reading the clock per turn
// takes 32 clock_gettime calls down to one or two. nginx (ngx_time_update after each
// poll) and HAProxy (now_ms/now_us per poll loop) do the same.
//
// The cached value is dropped before the loop polls (a prepare handle) and after it
// has run the I/O callbacks (a check handle): I/O callbacks see the time after the
// poll's wait, and the next turn's timers the time after the I/O. Within one phase
// the time stands still: durations measured with it are exact to the phase's length
// (microseconds at most, as a loop turn does no blocking work).
//
// Thread: the loop's.
#pragma once

#include <uv.h>

#include <cstdint>

namespace ringproxy {

class LoopClock {
 public:
  LoopClock() = default;
  LoopClock(const LoopClock&) = delete;
  LoopClock& operator=(const LoopClock&) = delete;

  // Starts the two handles (unreferenced: they keep no loop alive). Once this ran,
  // close() must be called before the loop closes.
  void init(uv_loop_t* loop) {
    uv_prepare_init(loop, &prepare_);
    uv_check_init(loop, &check_);
    prepare_.data = this;
    check_.data = this;
    uv_prepare_start(&prepare_, on_prepare);
    uv_check_start(&check_, on_check);
    uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
    uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  }
  void close() {
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&prepare_), reinterpret_cast<uv_handle_t*>(&check_)}) {
      if (h->loop != nullptr && !uv_is_closing(h)) uv_close(h, nullptr);
    }
  }

  // Drops the cached value: for a loop whose wait is not libuv's (net/poller.h, run).
  void invalidate() { fresh_ = false; }

  uint64_t now_us() {
    if (!fresh_) {
      now_us_ = uv_hrtime() / 1000;
      fresh_ = true;
    }
    return now_us_;
  }

 private:
  static void on_prepare(uv_prepare_t* p) { static_cast<LoopClock*>(p->data)->fresh_ = false; }
  static void on_check(uv_check_t* c) { static_cast<LoopClock*>(c->data)->fresh_ = false; }

  uv_prepare_t prepare_{};
  uv_check_t check_{};
  uint64_t now_us_ = 0;
  bool fresh_ = false;
};

}  // namespace ringproxy
