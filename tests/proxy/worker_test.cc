// A worker's upstream pools across reloads (issue 12, defect 6): the pool of a backend
// that left goes with its last connection, instead of staying in the worker for good.
// A real Worker runs on the test's thread (as fuzz/proxy_harness.cc runs one); a timer
// of the test's on its loop publishes the next routing, then drains it.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/worker.h"
#include "tests/support/loopback.h"

namespace ringproxy {
namespace {

std::shared_ptr<const Routing> routing_of(const std::vector<std::string>& names, uint64_t generation,
                                          const Routing* previous) {
  auto config = std::make_shared<Config>();
  uint16_t port = 9001;
  for (const std::string& name : names) config->backends.push_back({name, Address{"127.0.0.1", port++, false}, 1, false, ""});
  std::string error;
  auto routing = build_routing(config, previous, generation, 1, &error);
  EXPECT_NE(routing, nullptr) << error;
  return routing;
}

struct Step {
  Worker* worker;
  Shared* shared;
  std::shared_ptr<const Routing> next;
  size_t pools_before = 0;
};

TEST(WorkerPools, ARemovedBackendsPoolIsFreed) {
  Shared shared;
  const auto both = routing_of({"a", "b"}, 1, nullptr);
  shared.routing = both;
  // A bound, not yet listening, socket: what the server hands a worker.
  Worker worker(0, shared, test::bound_loopback_socket(SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_EQ(worker.init(), 0);

  Step step{&worker, &shared, routing_of({"a"}, 2, both.get())};
  uv_timer_t timer;
  uv_timer_init(worker.loop(), &timer);
  timer.data = &step;
  uv_timer_start(
      &timer,
      [](uv_timer_t* t) {
        auto* s = static_cast<Step*>(t->data);
        s->pools_before = s->worker->pool_count();  // the first routing is taken by now
        {
          std::lock_guard<std::mutex> lock(s->shared->mu);
          s->shared->routing = s->next;
        }
        s->worker->notify_routing();
        s->worker->notify_drain();
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      },
      0, 0);
  EXPECT_EQ(worker.run(), 0) << "handles left open";
  EXPECT_EQ(step.pools_before, 2u);
  EXPECT_EQ(worker.pool_count(), 1u) << "the pool of backend b outlived its backend";
}

}  // namespace
}  // namespace ringproxy
