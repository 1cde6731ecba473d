#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <iostream>
#include <mutex>
#include <chrono>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

#ifndef DEMO_BACKEND_BIN
#error "DEMO_BACKEND_BIN must name the ringproxy-demo-backend binary (see tests/CMakeLists.txt)"
#endif

namespace ringproxy::integration {
namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline`, for poll(): 0 when past, at most a day.
int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<Millis>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 86'400'000));
}

std::string errno_text(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

// Reads `path` from byte `from` on.
std::string read_from(const std::string& path, size_t from) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  f.seekg(static_cast<std::streamoff>(from));
  if (!f) return {};
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string sanitize(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  return s;
}

// IPv4/IPv6 literal (brackets allowed) or "localhost" -> sockaddr.
bool resolve(std::string_view host, uint16_t port, sockaddr_storage& out, socklen_t& len) {
  std::string h(host);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h == "localhost") h = "127.0.0.1";
  out = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

}  // namespace

// ---- files ----

TempDir::TempDir() {
  std::string label = "harness";
  if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info())
    label = sanitize(std::string(info->test_suite_name()) + "." + info->name());
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/ringproxy-it-" + label + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error(errno_text("mkdtemp " + tmpl));
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (std::getenv("RINGPROXY_KEEP_TMP") != nullptr || ::testing::Test::HasFailure()) {
    std::fprintf(stderr, "[harness] logs and files kept in %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write_file(std::string_view name, std::string_view contents) const {
  const std::string path = file(name);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path);
  return path;
}

std::string read_file(const std::string& path) { return read_from(path, 0); }

// ---- processes ----

std::string ExitStatus::describe() const {
  if (exited()) return "exit " + std::to_string(code);
  return "signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
}

Process::Process(const std::string& exe, const std::vector<std::string>& args, const std::string& log_dir,
                 std::string name)
    : name_(name.empty() ? std::filesystem::path(exe).filename().string() : std::move(name)),
      stdout_path_(log_dir + "/" + name_ + ".stdout"),
      stderr_path_(log_dir + "/" + name_ + ".stderr") {
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls (the test binary may have threads).
  std::vector<std::string> argv_store;
  argv_store.push_back(exe);
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);

  const int out = ::open(stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err = ::open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int report[2] = {-1, -1};  // the child writes errno here if exec fails
  if (out < 0 || err < 0 || null < 0 || pipe2(report, O_CLOEXEC) != 0) {
    const std::string why = errno_text("cannot start " + name_);
    for (int fd : {out, err, null, report[0], report[1]})
      if (fd >= 0) ::close(fd);
    throw std::runtime_error(why);
  }

  inotify_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_ >= 0) {
    // A missing watch only turns the wait into 10 ms polling (see wait_event).
    if (inotify_add_watch(inotify_, stdout_path_.c_str(), IN_MODIFY) < 0 ||
        inotify_add_watch(inotify_, stderr_path_.c_str(), IN_MODIFY) < 0) {
      ::close(inotify_);
      inotify_ = -1;
    }
  }

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // The child: die with the test process; default signal state; exec.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) sigaction(sig, &dfl, nullptr);
    if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(127);
    execv(argv[0], argv.data());
    const int e = errno;
    ssize_t ignored = write(report[1], &e, sizeof e);
    (void)ignored;
    _exit(127);
  }
  const int fork_errno = errno;
  for (int fd : {out, err, null, report[1]}) ::close(fd);
  if (pid < 0) {
    ::close(report[0]);
    errno = fork_errno;
    throw std::runtime_error(errno_text("fork for " + name_));
  }
  pid_ = pid;

  int exec_errno = 0;
  ssize_t n;
  do n = ::read(report[0], &exec_errno, sizeof exec_errno);
  while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n > 0) {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    release();
    throw std::runtime_error("cannot exec " + exe + ": " + std::strerror(exec_errno));
  }
  // pidfd_open(2) by number: glibc 2.36 has no wrapper in every distribution.
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
}

Process::~Process() {
  kill();
  release();
}

Process::Process(Process&& other) noexcept
    : name_(std::move(other.name_)),
      stdout_path_(std::move(other.stdout_path_)),
      stderr_path_(std::move(other.stderr_path_)),
      pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      inotify_(std::exchange(other.inotify_, -1)),
      status_(std::move(other.status_)),
      stdout_consumed_(other.stdout_consumed_) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    kill();
    release();
    name_ = std::move(other.name_);
    stdout_path_ = std::move(other.stdout_path_);
    stderr_path_ = std::move(other.stderr_path_);
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    inotify_ = std::exchange(other.inotify_, -1);
    status_ = std::move(other.status_);
    stdout_consumed_ = other.stdout_consumed_;
  }
  return *this;
}

void Process::release() {
  if (pidfd_ >= 0) ::close(pidfd_);
  if (inotify_ >= 0) ::close(inotify_);
  pidfd_ = inotify_ = -1;
}

bool Process::running() {
  if (pid_ < 0 || status_) return false;
  int status = 0;
  pid_t r;
  do r = waitpid(pid_, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return true;
  ExitStatus s;
  if (r == pid_ && WIFSIGNALED(status)) s.signal = WTERMSIG(status);
  else if (r == pid_) s.code = WEXITSTATUS(status);
  status_ = s;  // r < 0 (ECHILD: reaped elsewhere) leaves code -1, signal 0
  return false;
}

bool Process::wait_event(Clock::time_point deadline) {
  if (Clock::now() >= deadline) return false;
  std::array<pollfd, 2> fds{};
  nfds_t n = 0;
  if (inotify_ >= 0) fds[n++] = {inotify_, POLLIN, 0};
  if (pidfd_ >= 0 && !status_) fds[n++] = {pidfd_, POLLIN, 0};
  int ms = remaining_ms(deadline);
  // Without inotify or a pidfd nothing wakes us: fall back to polling every 10 ms.
  if (inotify_ < 0 || pidfd_ < 0) ms = std::min(ms, 10);
  if (poll(fds.data(), n, ms) > 0 && inotify_ >= 0) {
    std::array<char, 4096> events;
    while (::read(inotify_, events.data(), events.size()) > 0) {
    }
  }
  return true;
}

std::optional<std::string> Process::read_line(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // Check for the exit first: output written before it is then surely in the file.
    const bool alive = running();
    const std::string text = read_from(stdout_path_, stdout_consumed_);
    if (const size_t nl = text.find('\n'); nl != std::string::npos) {
      stdout_consumed_ += nl + 1;
      return text.substr(0, nl);
    }
    if (!alive || !wait_event(deadline)) return std::nullopt;
  }
}

bool Process::wait_for_output(Output which, std::string_view needle, Millis timeout, size_t from) {
  const auto deadline = Clock::now() + timeout;
  const std::string& path = which == Output::out ? stdout_path_ : stderr_path_;
  for (;;) {
    const bool alive = running();
    if (read_from(path, from).find(needle) != std::string::npos) return true;
    if (!alive || !wait_event(deadline)) return false;
  }
}

size_t Process::output_size(Output which) const {
  std::error_code ec;
  const auto size = std::filesystem::file_size(which == Output::out ? stdout_path_ : stderr_path_, ec);
  return ec ? 0 : static_cast<size_t>(size);
}

bool Process::send_signal(int sig) {
  if (pid_ < 0 || status_) return false;  // reaped: the pid may belong to someone else now
  return ::kill(pid_, sig) == 0;
}

std::optional<ExitStatus> Process::wait(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!running()) return status_;
    if (Clock::now() >= deadline) return std::nullopt;
    pollfd fd{pidfd_, POLLIN, 0};
    if (pidfd_ >= 0) poll(&fd, 1, remaining_ms(deadline));
    else poll(nullptr, 0, std::min(remaining_ms(deadline), 10));
  }
}

void Process::kill() {
  if (pid_ < 0 || !running()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  pid_t r;
  do r = waitpid(pid_, &status, 0);
  while (r < 0 && errno == EINTR);
  ExitStatus s;
  if (r == pid_ && WIFSIGNALED(status)) s.signal = WTERMSIG(status);
  else if (r == pid_) s.code = WEXITSTATUS(status);
  status_ = s;
}

std::string Process::describe() {
  std::string d = name_ + " (pid " + std::to_string(pid_) + ") ";
  d += running() ? "running" : (status_ ? status_->describe() : "not started");
  std::string err = stderr_text();
  if (err.size() > 2000) err = "..." + err.substr(err.size() - 2000);
  return d + "; stderr: " + (err.empty() ? "(empty)" : err);
}

// ---- the demo backend ----

std::string DemoBackend::binary() { return DEMO_BACKEND_BIN; }

namespace {

std::vector<std::string> demo_args(const std::string& name, const DemoBackendOptions& o) {
  const bool v6 = o.host.find(':') != std::string::npos;
  std::vector<std::string> args = {"--name", name, "--listen",
                                   (v6 ? "[" + o.host + "]" : o.host) + ":" + std::to_string(o.port),
                                   "--mode", o.mode, "--delay-ms", std::to_string(o.delay_ms)};
  args.insert(args.end(), o.extra_args.begin(), o.extra_args.end());
  return args;
}

}  // namespace

DemoBackend::DemoBackend(const TempDir& dir, std::string name, DemoBackendOptions options)
    : name_(std::move(name)), process_(binary(), demo_args(name_, options), dir.path(), "backend-" + name_) {
  const auto line = process_.read_line(Millis(10000));
  constexpr std::string_view kReady = "listening ";
  std::optional<std::pair<std::string, uint16_t>> hp;
  if (line && line->starts_with(kReady)) hp = split_host_port(std::string_view(*line).substr(kReady.size()));
  if (!hp || hp->second == 0)
    throw std::runtime_error("demo backend " + name_ + " gave no 'listening HOST:PORT' line (got '" +
                             line.value_or("") + "'): " + process_.describe());
  host_ = hp->first;
  port_ = hp->second;
}

std::string DemoBackend::address() const {
  const bool v6 = host_.find(':') != std::string::npos;
  return (v6 ? "[" + host_ + "]" : host_) + ":" + std::to_string(port_);
}

// ---- ports ----

std::optional<std::pair<std::string, uint16_t>> split_host_port(std::string_view address) {
  std::string_view host, port;
  if (address.starts_with('[')) {
    const size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':')
      return std::nullopt;
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
    return std::nullopt;
  return std::pair{std::string(host), static_cast<uint16_t>(value)};
}

namespace {

uint16_t bind_any_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

// Whether 127.0.0.1:port binds now, for TCP and for UDP (gossip takes the same number).
static bool port_binds(uint16_t port) {
  for (const int type : {SOCK_STREAM, SOCK_DGRAM}) {
    const int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (!ok) return false;
  }
  return true;
}

// The lowest port the kernel hands out as a connection's source port.
static uint16_t ephemeral_low() {
  unsigned low = 32768;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%u", &low) != 1) low = 32768;
    std::fclose(f);
  }
  return static_cast<uint16_t>(std::min(low, 65535u));
}

uint16_t free_port() {
  // Below the ephemeral range: a port taken from it (bind to port 0) was free when the
  // test took it, but until the process under test binds it, any connect() on the
  // machine (another test running beside, ctest -j2) may take it as its source port;
  // a clean-clone CI met "Address already in use" so (one test of 1,083, in the sixth
  // run of a day). Ports below the range
  // are only ever taken by an explicit bind: chosen at random (two test processes
  // rarely pick the same one) and tried first. The ports handed out in this process are
  // never handed out again (a test asks for several before starting what binds them).
  static std::mutex mutex;
  static std::unordered_set<uint16_t> given;
  static std::mt19937 random(static_cast<uint32_t>(getpid()) * 2654435761u ^
                             static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  const std::lock_guard<std::mutex> lock(mutex);
  const uint16_t high = ephemeral_low();
  if (high > 20000 + 1000) {
    std::uniform_int_distribution<int> pick(20000, high - 1);
    for (int attempt = 0; attempt < 256; ++attempt) {
      const auto port = static_cast<uint16_t>(pick(random));
      if (given.count(port) == 0 && port_binds(port)) {
        given.insert(port);
        return port;
      }
    }
  }
  for (int attempt = 0; attempt < 64; ++attempt) {  // a machine whose range starts low
    const uint16_t port = bind_any_port();
    if (port == 0) return 0;
    if (given.insert(port).second) return port;
  }
  return 0;
}

DeadPort::DeadPort() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port_ = ntohs(a.sin_port);
}

DeadPort::~DeadPort() {
  if (fd_ >= 0) ::close(fd_);
}

bool wait_for_port(uint16_t port, Millis timeout, std::string_view host, Process* watch) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    Conn c;
    if (c.connect(host, port, Millis(std::max(1, remaining_ms(deadline))))) return true;
    if (watch != nullptr && !watch->running()) return false;
    if (Clock::now() >= deadline) return false;
    // Refused: nothing to wait on but time. With a process to watch, wait on its exit.
    if (watch != nullptr) watch->wait(Millis(std::min(remaining_ms(deadline), 10)));
    else poll(nullptr, 0, std::min(remaining_ms(deadline), 10));
  }
}

std::unique_ptr<Process> start_private_nginx(const TempDir& dir, uint16_t port, const std::string& upstream) {
  const std::string d = dir.path();
  std::ostringstream c;
  c << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
    << "pid " << d << "/nginx.pid;\nerror_log " << d << "/nginx-error.log info;\n"
    << "events { worker_connections 256; }\n"
    << "http {\n  access_log off;\n"
    << "  client_body_temp_path " << d << "/nginx-body;\n  proxy_temp_path " << d << "/nginx-proxy;\n"
    << "  fastcgi_temp_path " << d << "/nginx-fastcgi;\n  uwsgi_temp_path " << d << "/nginx-uwsgi;\n"
    << "  scgi_temp_path " << d << "/nginx-scgi;\n"
    << "  upstream u {\n" << upstream << "  }\n"
    << "  server {\n    listen 127.0.0.1:" << port << ";\n"
    // nginx closes a client connection after 1000 requests by default.
    << "    keepalive_requests 100000;\n"
    << "    location / {\n      proxy_pass http://u;\n      proxy_http_version 1.1;\n"
    << "      proxy_set_header Connection \"\";\n    }\n  }\n}\n";
  const std::string conf = dir.write_file("nginx.conf", c.str());
  auto nginx = std::make_unique<Process>("/usr/sbin/nginx",
                                         std::vector<std::string>{"-p", d, "-e", d + "/nginx-error.log", "-c", conf},
                                         d, "nginx");
  // nginx prints no ready line; poll connect (bounded), giving up early if it exits.
  EXPECT_TRUE(wait_for_port(port, kDefaultTimeout, "127.0.0.1", nginx.get()))
      << nginx->describe() << "\nerror log: " << read_file(d + "/nginx-error.log");
  return nginx;
}

// ---- Response ----

std::string Response::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return {};
}

bool Response::has_header(std::string_view name) const {
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); });
}

std::vector<std::string> Response::header_values(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) out.push_back(v);
  return out;
}

std::string Response::trailer(std::string_view name) const {
  for (const auto& [n, v] : trailers)
    if (iequals(n, name)) return v;
  return {};
}

std::string Response::describe() const {
  std::string d;
  if (!ok()) d = "error: " + error + "; ";
  d += "status " + std::to_string(status) + " " + reason;
  for (const auto& [n, v] : headers) d += "\n  " + n + ": " + v;
  d += "\n  body (" + std::to_string(body_bytes) + " bytes): " + body.substr(0, 200);
  return d;
}

std::string to_string(CloseKind kind) {
  switch (kind) {
    case CloseKind::eof: return "eof";
    case CloseKind::reset: return "reset";
    case CloseKind::timeout: return "timeout";
    case CloseKind::data: return "data";
  }
  return "?";
}

// ---- Conn ----

Conn::Conn(std::string_view host, uint16_t port, Millis timeout) { connect(host, port, timeout); }

Conn::~Conn() { close(); }

Conn::Conn(Conn&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      host_header_(std::move(other.host_header_)),
      error_(std::move(other.error_)),
      inbuf_(std::move(other.inbuf_)),
      eof_(other.eof_),
      reset_(other.reset_),
      pending_heads_(std::move(other.pending_heads_)) {}

Conn& Conn::operator=(Conn&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    host_header_ = std::move(other.host_header_);
    error_ = std::move(other.error_);
    inbuf_ = std::move(other.inbuf_);
    eof_ = other.eof_;
    reset_ = other.reset_;
    pending_heads_ = std::move(other.pending_heads_);
  }
  return *this;
}

bool Conn::connect(std::string_view host, uint16_t port, Millis timeout) {
  close();
  error_.clear();
  inbuf_.clear();
  eof_ = reset_ = false;
  pending_heads_.clear();
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (!resolve(host, port, addr, len)) {
    error_ = "not an IP literal: " + std::string(host);
    return false;
  }
  const int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error_ = errno_text("socket");
    return false;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // best effort: latency only
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    if (errno != EINPROGRESS) {
      error_ = errno_text("connect");
      ::close(fd);
      return false;
    }
    pollfd p{fd, POLLOUT, 0};
    const int r = poll(&p, 1, static_cast<int>(timeout.count()));
    int so_error = 0;
    socklen_t so_len = sizeof so_error;
    if (r <= 0) {
      error_ = r == 0 ? "connect: timeout" : errno_text("connect: poll");
      ::close(fd);
      return false;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) != 0 || so_error != 0) {
      error_ = std::string("connect: ") + std::strerror(so_error != 0 ? so_error : errno);
      ::close(fd);
      return false;
    }
  }
  fd_ = fd;
  const bool v6 = addr.ss_family == AF_INET6;
  std::string h(host);
  if (v6 && !h.starts_with('[')) h = "[" + h + "]";
  host_header_ = h + ":" + std::to_string(port);
  return true;
}

void Conn::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Conn::abort() {
  if (fd_ < 0) return;
  const linger l{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close();
}

bool Conn::shutdown_write() {
  if (fd_ < 0 || ::shutdown(fd_, SHUT_WR) != 0) {
    error_ = fd_ < 0 ? "not connected" : errno_text("shutdown");
    return false;
  }
  return true;
}

Conn::Fill Conn::recv_once() {
  std::array<char, 65536> buf;
  for (;;) {
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n > 0) {
      inbuf_.append(buf.data(), static_cast<size_t>(n));
      return Fill::data;
    }
    if (n == 0) {
      eof_ = true;
      return Fill::eof;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Fill::timeout;
    if (errno == ECONNRESET) {
      reset_ = true;
      return Fill::reset;
    }
    error_ = errno_text("recv");
    return Fill::error;
  }
}

Conn::Fill Conn::fill(Clock::time_point deadline) {
  if (fd_ < 0) {
    error_ = "not connected";
    return Fill::error;
  }
  if (reset_) return Fill::reset;
  if (eof_) return Fill::eof;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int r = poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      error_ = errno_text("poll");
      return Fill::error;
    }
    if (r == 0) return Fill::timeout;
    const Fill f = recv_once();
    if (f != Fill::timeout) return f;  // spurious wake-up: poll again
    if (Clock::now() >= deadline) return Fill::timeout;
  }
}

bool Conn::send_raw(std::string_view bytes, Millis timeout) {
  if (fd_ < 0) {
    error_ = "not connected";
    return false;
  }
  const auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      if (errno == ECONNRESET) reset_ = true;
      error_ = errno_text("send");
      return false;
    }
    // Full: wait for room, reading whatever the server answers meanwhile.
    const bool can_read = !eof_ && !reset_;
    pollfd p{fd_, static_cast<short>(POLLOUT | (can_read ? POLLIN : 0)), 0};
    const int r = poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      error_ = r == 0 ? "send: timeout with " + std::to_string(bytes.size() - sent) + " bytes unsent"
                      : errno_text("send: poll");
      return false;
    }
    if (can_read && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const Fill f = recv_once();
      if (f == Fill::error) return false;
    }
  }
  return true;
}

std::string format_request(std::string_view method, std::string_view target, const Headers& headers,
                           std::string_view body) {
  std::string out = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\n";
  bool framed = false;
  for (const auto& [n, v] : headers) {
    out += n + ": " + v + "\r\n";
    framed = framed || iequals(n, "content-length") || iequals(n, "transfer-encoding");
  }
  if (!body.empty() && !framed) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "\r\n";
  out += body;
  return out;
}

bool Conn::send_request(std::string_view method, std::string_view target, const Headers& headers,
                        std::string_view body, Millis timeout) {
  const bool has_host = std::any_of(headers.begin(), headers.end(), [](const auto& h) { return iequals(h.first, "host"); });
  Headers all;
  if (!has_host) all.emplace_back("Host", host_header_);
  all.insert(all.end(), headers.begin(), headers.end());
  if (!send_raw(format_request(method, target, all, body), timeout)) return false;
  pending_heads_.push_back(iequals(method, "HEAD"));
  return true;
}

Response Conn::request(std::string_view method, std::string_view target, const Headers& headers,
                       std::string_view body, const ReadOptions& options) {
  if (!send_request(method, target, headers, body, options.timeout)) {
    Response r;
    r.error = error_;
    return r;
  }
  return read_response(options);
}

namespace {

// What the llhttp callbacks fill while Conn::read_response parses one response.
struct ResponseParse {
  Response* r = nullptr;
  bool head = false;
  bool keep_body = true;
  bool skip_interim = true;
  bool begun = false;
  bool done = false;
  bool headers_done = false;
  bool in_value = false;
};

ResponseParse& state(llhttp_t* p) { return *static_cast<ResponseParse*>(p->data); }

const llhttp_settings_t& response_settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_message_begin = [](llhttp_t* p) {
      ResponseParse& st = state(p);
      Response& r = *st.r;
      std::vector<int> interim = std::move(r.interim);
      std::string error = std::move(r.error);
      r = Response{};
      r.interim = std::move(interim);
      r.error = std::move(error);
      st.begun = true;
      st.headers_done = st.in_value = false;
      return 0;
    };
    v.on_status = [](llhttp_t* p, const char* at, size_t n) {
      state(p).r->reason.append(at, n);
      return 0;
    };
    v.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      ResponseParse& st = state(p);
      Headers& list = st.headers_done ? st.r->trailers : st.r->headers;
      if (st.in_value || list.empty()) list.emplace_back();
      st.in_value = false;
      list.back().first.append(at, n);
      return 0;
    };
    v.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      ResponseParse& st = state(p);
      Headers& list = st.headers_done ? st.r->trailers : st.r->headers;
      if (list.empty()) return -1;
      st.in_value = true;
      list.back().second.append(at, n);
      return 0;
    };
    v.on_headers_complete = [](llhttp_t* p) {
      ResponseParse& st = state(p);
      Response& r = *st.r;
      r.status = p->status_code;
      r.http_major = p->http_major;
      r.http_minor = p->http_minor;
      r.chunked = (p->flags & F_CHUNKED) != 0;
      st.headers_done = true;
      st.in_value = false;
      // 1: this response has no body: it answers a HEAD, or is a 1xx, 204 or 304 (RFC
      // 9110 6.4.1), which llhttp 8 would otherwise read a Content-Length body for.
      const int status = p->status_code;
      const bool bodiless = (status >= 100 && status < 200 && status != 101) || status == 204 || status == 304;
      return st.head || bodiless ? 1 : 0;
    };
    v.on_body = [](llhttp_t* p, const char* at, size_t n) {
      ResponseParse& st = state(p);
      st.r->body_bytes += n;
      if (st.keep_body) st.r->body.append(at, n);
      return 0;
    };
    v.on_message_complete = [](llhttp_t* p) {
      ResponseParse& st = state(p);
      Response& r = *st.r;
      r.keep_alive = llhttp_should_keep_alive(p) != 0;
      r.upgrade = p->upgrade != 0;
      if (st.skip_interim && r.status >= 100 && r.status < 200 && r.status != 101) {
        r.interim.push_back(r.status);
        return 0;  // the final response follows on the same parser
      }
      st.done = true;
      return static_cast<int>(HPE_PAUSED);  // leave pipelined bytes for the next read
    };
    return v;
  }();
  return s;
}

}  // namespace

Response Conn::read_response(const ReadOptions& options) {
  const auto deadline = Clock::now() + options.timeout;
  Response r;
  ResponseParse st;
  st.r = &r;
  st.keep_body = options.keep_body;
  st.skip_interim = options.skip_interim;
  st.head = pending_heads_.empty() ? false : pending_heads_.front();
  if (!pending_heads_.empty()) pending_heads_.pop_front();
  if (options.head) st.head = *options.head;
  if (fd_ < 0) {
    r.error = "not connected";
    return r;
  }
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &response_settings());
  parser.data = &st;

  for (;;) {
    if (!inbuf_.empty()) {
      const char* data = inbuf_.data();
      const llhttp_errno_t err = llhttp_execute(&parser, data, inbuf_.size());
      if (err == HPE_OK) {
        inbuf_.clear();
      } else if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        inbuf_.erase(0, static_cast<size_t>(llhttp_get_error_pos(&parser) - data));
      } else {
        r.error = std::string("bad response: ") + llhttp_errno_name(err) + ": " + llhttp_get_error_reason(&parser);
        return r;
      }
      if (st.done) return r;
    }
    switch (fill(deadline)) {
      case Fill::data:
        continue;
      case Fill::eof: {
        r.closed = true;
        if (!st.begun) {
          r.error = "connection closed before a response";
          return r;
        }
        // A body delimited by the close ends here; anything else was cut short.
        const llhttp_errno_t err = llhttp_finish(&parser);
        if ((err == HPE_OK || err == HPE_PAUSED) && st.done) return r;
        r.error = "connection closed in the middle of a response";
        return r;
      }
      case Fill::reset:
        r.closed = true;
        r.error = "connection reset by peer";
        return r;
      case Fill::timeout:
        r.error = "timeout after " + std::to_string(options.timeout.count()) + " ms waiting for " +
                  (st.begun ? "the rest of a response" : "a response");
        return r;
      case Fill::error:
        r.error = error_;
        return r;
    }
  }
}

std::optional<std::string> Conn::read_exact(size_t n, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (inbuf_.size() < n) {
    if (fill(deadline) != Fill::data) return std::nullopt;
  }
  std::string out = inbuf_.substr(0, n);
  inbuf_.erase(0, n);
  return out;
}

RawRead Conn::read_until_close(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  RawRead out;
  for (;;) {
    const Fill f = fill(deadline);
    if (f == Fill::data) continue;
    out.how = f == Fill::eof ? CloseKind::eof : f == Fill::reset ? CloseKind::reset : CloseKind::timeout;
    break;
  }
  out.bytes = std::exchange(inbuf_, std::string());
  return out;
}

CloseKind Conn::wait_close(Millis timeout) {
  if (!inbuf_.empty()) return CloseKind::data;
  switch (fill(Clock::now() + timeout)) {
    case Fill::data: return CloseKind::data;
    case Fill::eof: return CloseKind::eof;
    case Fill::reset:
    case Fill::error: return CloseKind::reset;  // broken either way
    case Fill::timeout: return CloseKind::timeout;
  }
  return CloseKind::timeout;
}

// ---- one-shot requests ----

Response http_request(uint16_t port, std::string_view method, std::string_view target, const Headers& headers,
                      std::string_view body, const ReadOptions& options, std::string_view host) {
  Conn c;
  if (!c.connect(host, port, options.timeout)) {
    Response r;
    r.error = c.error();
    return r;
  }
  return c.request(method, target, headers, body, options);
}

Response http_get(uint16_t port, std::string_view target, const Headers& headers, const ReadOptions& options,
                  std::string_view host) {
  return http_request(port, "GET", target, headers, {}, options, host);
}

namespace {

// Runs `tools/ring_reference.py map ARGS -- KEYS` and reads its "KEY NODE" lines. The
// keys go through a file and the shell's $(cat), so their number is bounded only by
// ARG_MAX (one `sh -c` string may hold no more than 128 KiB); `set -f` keeps a key
// from globbing. A failure is a test failure and an empty map.
std::map<std::string, std::string> run_reference(const char* who, const std::string& args,
                                                 const std::vector<std::string>& keys, unsigned vnodes = 160) {
  const TempDir dir;
  std::string key_lines;
  for (const auto& k : keys) {
    if (k.empty() || k.find_first_of(" \t\n'\"$`\\;&|<>()") != std::string::npos) {
      ADD_FAILURE() << who << ": key needs quoting: " << k;
      return {};
    }
    key_lines += k + "\n";
  }
  dir.write_file("keys.txt", key_lines);
  const std::string cmd = "set -f; VNODES=" + std::to_string(vnodes) + " /usr/bin/python3 " + RINGPROXY_SOURCE_DIR +
                          "/tools/ring_reference.py map " + args + " -- $(cat " + dir.file("keys.txt") + ") > " +
                          dir.file("map.txt");
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << who << ": failed: " << cmd.substr(0, 200);
    return {};
  }
  std::ifstream in(dir.file("map.txt"));
  std::map<std::string, std::string> out;
  std::string key, node;
  while (in >> key >> node) out[key] = node;
  return out;
}

}  // namespace

// ---- a DNS server ----

uint16_t free_dns_port() {
  unsigned low = 32768, high = 60999;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low >> high;
  if (low <= 12000) return 0;
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<unsigned> pick(10000, low - 1);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const auto port = static_cast<uint16_t>(pick(rng));
    bool free = true;
    for (const int type : {SOCK_DGRAM, SOCK_STREAM}) {
      const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
      const int one = 1;
      if (type == SOCK_STREAM) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as dnsmasq
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      sa.sin_port = htons(port);
      free = free && ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
      ::close(fd);
    }
    if (free) return port;
  }
  return 0;
}

bool Dnsmasq::start(const std::vector<std::string>& records, bool local) {
  stop();
  const bool fixed = port_ != 0;
  std::string last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (!fixed) port_ = free_dns_port();
    std::vector<std::string> args = {"--keep-in-foreground", "--conf-file=/dev/null", "--port=" + std::to_string(port_),
                                     "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                                     "--user=root", "--group=root", "--pid-file=", "--local-ttl=" + std::to_string(ttl_),
                                     "--log-facility=-"};
    if (local) args.push_back("--local=/test/");
    args.insert(args.end(), records.begin(), records.end());
    process_ = std::make_unique<Process>("/usr/sbin/dnsmasq", args, dir_.path(), name_ + "-" + std::to_string(++starts_));
    // "started" comes once its sockets are bound; it exits when the port is taken.
    if (process_->wait_for_output(Output::err, "started, version", Millis(5000))) return true;
    last = process_->describe();
    process_.reset();
  }
  ADD_FAILURE() << "dnsmasq did not start on port " << port_ << ": " << last;
  return false;
}

void Dnsmasq::stop() {
  if (process_) process_->kill();
  process_.reset();
}

uint16_t Dnsmasq::port() {
  if (port_ == 0) port_ = free_dns_port();
  return port_;
}

// ---- waiting for a condition ----

bool eventually(const std::function<bool()>& cond, Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    ::poll(nullptr, 0, 20);
  }
}

// ---- several backends on one port ----

uint16_t start_backends_on_one_port(const TempDir& dir, const std::vector<std::string>& ips,
                                    const std::string& prefix, std::vector<std::unique_ptr<DemoBackend>>* out) {
  const size_t base = out->size();
  for (int attempt = 0; attempt < 5; ++attempt) {
    out->resize(base);
    const uint16_t port = free_port();
    try {
      for (const std::string& ip : ips) {
        DemoBackendOptions o;
        o.host = ip;
        o.port = port;
        out->push_back(std::make_unique<DemoBackend>(dir, prefix + "-" + ip, o));
      }
      return port;
    } catch (const std::exception& e) {
      std::cerr << "retrying on another port: " << e.what() << "\n";
    }
  }
  out->resize(base);
  return 0;
}

std::map<std::string, std::string> reference_map(const std::vector<std::string>& nodes,
                                                 const std::vector<std::string>& keys) {
  std::string args;
  for (const auto& n : nodes) args += (args.empty() ? "" : " ") + n;
  return run_reference("reference_map", args, keys);
}

std::map<std::string, std::string> reference_map_weighted(const std::vector<std::pair<std::string, uint32_t>>& nodes,
                                                          const std::vector<std::string>& keys, unsigned vnodes) {
  std::string args;
  for (const auto& [name, weight] : nodes) {
    if (name.empty() || name.find_first_of(" \t\n'\"$`\\;&|<>()*?") != std::string::npos) {
      ADD_FAILURE() << "reference_map_weighted: node needs quoting: " << name;
      return {};
    }
    args += (args.empty() ? "" : " ") + name + ":" + std::to_string(weight);
  }
  return run_reference("reference_map_weighted", args, keys, vnodes);
}

int placement_differences(const std::vector<std::string>& keys, const std::vector<std::string>& got,
                          const std::map<std::string, std::string>& want, const std::string& prefix,
                          const std::string& what) {
  int wrong = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto it = want.find(keys[i]);
    const std::string w = it == want.end() ? "(no reference)" : prefix + it->second;
    if (got.at(i) == w) continue;
    if (++wrong <= 6) ADD_FAILURE() << what << ": " << keys[i] << " went to " << got[i] << ", want " << w;
  }
  return wrong;
}

std::map<std::string, std::string> reference_map_nginx(
    const std::vector<std::pair<std::string, std::string>>& name_address, const std::vector<std::string>& keys,
    const std::vector<int>& weights) {
  if (!weights.empty() && weights.size() != name_address.size()) {
    ADD_FAILURE() << "reference_map_nginx: " << weights.size() << " weights for " << name_address.size() << " nodes";
    return {};
  }
  std::string args = "--placement nginx";
  for (size_t i = 0; i < name_address.size(); ++i) {
    const auto& [name, address] = name_address[i];
    // Names and addresses are ours ([[backend]] rules: no '@', ',', quote or space).
    if ((name + address).find_first_of(" @,'\"$`\\;&|<>()*?") != std::string::npos) {
      ADD_FAILURE() << "reference_map_nginx: node needs quoting: " << name << " " << address;
      return {};
    }
    args += " " + name + "@" + address;
    if (!weights.empty()) args += "," + std::to_string(weights[i]);
  }
  return run_reference("reference_map_nginx", args, keys);
}

}  // namespace ringproxy::integration
