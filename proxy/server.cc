#include "proxy/server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>

#include "proxy/backends.h"
#include "proxy/cli.h"
#include "proxy/log.h"

namespace ringproxy {
namespace {

// A listening socket for one worker: SO_REUSEPORT so each worker has its own accept
// queue and the kernel spreads connections (libuv 1.44 has no flag for it).
int bind_listener(const Address& address, bool reuseport, std::string* error) {
  sockaddr_storage sa{};
  to_sockaddr(address, &sa);
  const int fd = ::socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::strerror(errno);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (sa.ss_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  const socklen_t len = sa.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) {
    *error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

void Server::publish(std::shared_ptr<const Routing> routing) {
  {
    std::lock_guard<std::mutex> lock(shared_.mu);
    shared_.routing = std::move(routing);
  }
  for (auto& w : workers_) w->notify_routing();
}

std::vector<std::string> Server::reload() {
  std::vector<std::string> errors;
  ConfigResult r = load_config_file(config_path_);
  for (const ConfigError& e : r.errors) errors.push_back(e.to_string());
  if (!r.ok()) return errors;
  auto config = std::make_shared<const Config>(std::move(r.config));
  if (config->proxy.listen != config_->proxy.listen || config->proxy.workers != config_->proxy.workers) {
    RP_LOG(LogLevel::kWarn, "reload: proxy.listen and proxy.workers take effect at restart only");
  }
  std::string error;
  std::shared_ptr<const Routing> current;
  {
    std::lock_guard<std::mutex> lock(shared_.mu);
    current = shared_.routing;
  }
  auto routing = build_routing(config, current.get(), ++generation_, &error);
  if (!routing) {
    errors.push_back(config_path_ + ": " + error);
    return errors;
  }
  if (config->proxy.access_log != config_->proxy.access_log) {
    const std::string e = AccessLog::open(config->proxy.access_log);
    if (!e.empty()) RP_LOG(LogLevel::kError, e);
  }
  Log::set_level(config->proxy.log_level);
  const double moved = Ring::moved_fraction(*current->ring, *routing->ring);
  config_ = config;
  publish(std::move(routing));
  RP_LOG(LogLevel::kInfo, "reloaded " + config_path_ + ": " + std::to_string(config_->backends.size()) +
                              " backends, " + std::to_string(moved * 100.0).substr(0, 5) +
                              "% of keys moved");
  return errors;
}

void Server::on_signal(uv_signal_t* s, int signum) {
  auto* self = static_cast<Server*>(s->data);
  switch (signum) {
    case SIGHUP: {
      const auto errors = self->reload();
      for (const auto& e : errors) RP_LOG(LogLevel::kError, "reload refused: " + e);
      break;
    }
    case SIGUSR1: {
      const std::string e = AccessLog::reopen();
      if (!e.empty()) RP_LOG(LogLevel::kError, e);
      break;
    }
    default:  // SIGTERM, SIGINT
      if (self->draining_) break;
      self->draining_ = true;
      RP_LOG(LogLevel::kInfo, "draining: finishing requests in flight");
      for (auto& w : self->workers_) w->notify_drain();
      for (auto& sig : self->signals_) uv_close(reinterpret_cast<uv_handle_t*>(&sig), nullptr);
      break;
  }
}

int Server::run() {
  ConfigResult r = load_config_file(config_path_);
  if (!r.ok()) {
    for (const ConfigError& e : r.errors) std::cerr << e.to_string() << '\n';
    return kExitConfig;
  }
  config_ = std::make_shared<const Config>(std::move(r.config));
  Log::set_level(config_->proxy.log_level);
  if (std::string e = AccessLog::open(config_->proxy.access_log); !e.empty()) {
    std::cerr << "ringproxy: " << e << '\n';
    return kExitConfig;
  }
  std::string error;
  auto routing = build_routing(config_, nullptr, ++generation_, &error);
  if (!routing) {
    std::cerr << "ringproxy: " << config_path_ << ": " << error << '\n';
    return kExitConfig;
  }
  shared_.routing = routing;

  const Address& listen = config_->proxy.listen;
  // A plain bind first: SO_REUSEPORT would let us share a port another process holds.
  const int probe = bind_listener(listen, false, &error);
  if (probe < 0) {
    std::cerr << "ringproxy: cannot listen on " << listen.to_string() << ": " << error << '\n';
    return kExitConfig;
  }
  ::close(probe);

  signal(SIGPIPE, SIG_IGN);
  const unsigned count = config_->proxy.workers ? config_->proxy.workers : uv_available_parallelism();
  for (unsigned i = 0; i < count; ++i) {
    const int fd = bind_listener(listen, true, &error);
    if (fd < 0) {
      std::cerr << "ringproxy: cannot listen on " << listen.to_string() << ": " << error << '\n';
      return kExitConfig;
    }
    auto w = std::make_unique<Worker>(static_cast<int>(i), shared_, fd);
    if (const int rc = w->init(); rc < 0) {
      std::cerr << "ringproxy: cannot listen on " << listen.to_string() << ": " << uv_strerror(rc) << '\n';
      return kExitConfig;
    }
    workers_.push_back(std::move(w));
  }

  uv_loop_init(&loop_);
  const int signums[4] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
  for (int i = 0; i < 4; ++i) {
    uv_signal_init(&loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], on_signal, signums[i]);
  }
  for (auto& w : workers_) w->start();
  RP_LOG(LogLevel::kInfo, "listening on " + listen.to_string() + " with " + std::to_string(count) +
                              " workers, " + std::to_string(config_->backends.size()) + " backends");

  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  workers_.clear();
  uv_loop_close(&loop_);
  RP_LOG(LogLevel::kInfo, "drained, exiting");
  return kExitOk;
}

}  // namespace ringproxy
