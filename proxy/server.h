// The process: loads the config, binds the listener, runs the workers, and serves
// signals on the control loop (SIGHUP reload, SIGTERM/SIGINT drain, SIGUSR1 reopen).
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/worker.h"

namespace ringproxy {

class Server {
 public:
  explicit Server(std::string config_path) : config_path_(std::move(config_path)) {}
  // Runs until drained. Returns the process exit code (SPEC "Command line").
  int run();

  // Loads, validates and publishes the config file; on any error the running
  // routing stays. Returns the errors (empty on success). Control thread only.
  std::vector<std::string> reload();

 private:
  static void on_signal(uv_signal_t* s, int signum);
  void publish(std::shared_ptr<const Routing> routing);

  std::string config_path_;
  std::shared_ptr<const Config> config_;
  Shared shared_;
  uint64_t generation_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  uv_loop_t loop_{};
  uv_signal_t signals_[4]{};
  bool draining_ = false;
};

}  // namespace ringproxy
