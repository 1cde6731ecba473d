// A one-shot timeout that is cheap to move. Connections re-arm their timeouts several
// times per request (header, upstream, idle); each uv_timer_start/stop is a heap
// operation. Here arming only records a deadline, and the libuv timer is restarted only
// when the new deadline is earlier than the one it is set for. When it fires early
// (the deadline moved later), due() re-arms it for the rest and says "not yet".
//
// Thread: the loop's. The uv_timer_t belongs to the owning object, which closes it.
#pragma once

#include <uv.h>

#include <cstdint>

namespace ringproxy {

class DeadlineTimer {
 public:
  void init(uv_loop_t* loop, void* data) {
    uv_timer_init(loop, &timer_);
    timer_.data = data;
  }
  uv_timer_t* handle() { return &timer_; }

  void arm(uint32_t ms, uv_timer_cb cb) {
    const uint64_t now = uv_now(timer_.loop);
    deadline_ = now + ms;
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_)) || set_for_ > deadline_) {
      uv_timer_start(&timer_, cb, ms, 0);
      set_for_ = deadline_;
    }
  }
  void disarm() { deadline_ = 0; }
  bool armed() const { return deadline_ != 0; }

  // In the timer callback: true when the deadline has really passed (and disarms);
  // false when it is off or later (then the timer is set again for the remainder).
  bool due(uv_timer_cb cb) {
    if (deadline_ == 0) return false;
    const uint64_t now = uv_now(timer_.loop);
    if (now < deadline_) {
      uv_timer_start(&timer_, cb, deadline_ - now, 0);
      set_for_ = deadline_;
      return false;
    }
    deadline_ = 0;
    return true;
  }

 private:
  uv_timer_t timer_{};
  uint64_t deadline_ = 0;  // loop time in ms; 0 = off
  uint64_t set_for_ = 0;   // when the libuv timer is due, while active
};

}  // namespace ringproxy
