// End-to-end test harness: real processes on loopback (STYLE.md rule 11).
//
// A test makes a TempDir, starts backends (DemoBackend) and whatever else it needs as a
// Process (e.g. `ringproxy -c DIR/ringproxy.toml`, the config written with
// TempDir::write_file), then talks HTTP/1.1 to them with the blocking client Conn and
// asserts on the answers, e.g. which X-Backend served each request.
//
// Nothing here sleeps to wait for behaviour: every wait is a poll() on a socket, on the
// child's pidfd or on an inotify watch of its output files, bounded by a timeout, and
// failures come back as values (an error string, std::nullopt, false) rather than hangs.
// The one exception is wait_for_port(), which must retry a refused connect; it says so.
//
// Everything is single-threaded and meant for the test's own thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringproxy::integration {

using Millis = std::chrono::milliseconds;
// Generous on purpose: a timeout only bounds how long a broken test takes to fail.
inline constexpr Millis kDefaultTimeout{10000};

using Headers = std::vector<std::pair<std::string, std::string>>;

// ---- files ----

// A fresh directory per test, /tmp/ringproxy-it-SUITE.TEST-XXXXXX (under $TMPDIR when
// set). Removed on destruction unless the current test failed or RINGPROXY_KEEP_TMP is
// set in the environment; then its path is printed so the logs can be read.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
  // Writes (replaces) DIR/name and returns its path. Throws std::runtime_error on failure.
  std::string write_file(std::string_view name, std::string_view contents) const;

 private:
  std::string path_;
};

// The whole file, or "" when it cannot be read.
std::string read_file(const std::string& path);

// The tests and the proxy they start are one build: under AddressSanitizer
// (SANITIZE=1 scripts/test.sh) the proxy's RSS holds ASan's shadow memory and its
// quarantine (freed blocks kept back, up to 256 MiB), so a bound on the proxy's memory
// is asserted in the plain build only (CI runs both).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizedBuild = true;
#else
inline constexpr bool kSanitizedBuild = false;
#endif

// ---- processes ----

struct ExitStatus {
  int code = -1;   // exit code when it exited; -1 when killed by a signal
  int signal = 0;  // the signal that killed it; 0 when it exited
  bool exited() const { return signal == 0; }
  std::string describe() const;  // "exit 0" / "signal 9 (Killed)"
};

enum class Output { out, err };

// A child process whose stdout and stderr go to DIR/NAME.stdout and DIR/NAME.stderr.
// It is SIGKILLed and reaped when the Process is destroyed, and gets SIGKILL from the
// kernel (PR_SET_PDEATHSIG) if the test process dies first, so no test leaks a process.
class Process {
 public:
  // Starts `exe` (a path, not searched in PATH) with `args` (argv[1..]), stdin from
  // /dev/null, in the current directory and environment. `name` names the log files;
  // default: the base name of `exe`. Throws std::runtime_error when it cannot start
  // (e.g. exec fails), with the reason.
  Process(const std::string& exe, const std::vector<std::string>& args, const std::string& log_dir,
          std::string name = {});
  ~Process();
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }

  // The next stdout line not yet returned by read_line, without its '\n'. std::nullopt
  // when none is complete within `timeout` or the process exits without one.
  std::optional<std::string> read_line(Millis timeout = kDefaultTimeout);
  // Waits until the captured output, from byte `from` on, contains `needle`. True when
  // found; false on timeout or when the process exited without printing it.
  bool wait_for_output(Output which, std::string_view needle, Millis timeout = kDefaultTimeout, size_t from = 0);

  // Sends `sig`; false once the process has been reaped (its pid may be reused).
  bool send_signal(int sig);
  // Waits for the process to end and reaps it. std::nullopt on timeout.
  std::optional<ExitStatus> wait(Millis timeout = kDefaultTimeout);
  // Without blocking: still running? Reaps it when it has ended.
  bool running();
  // The exit status once reaped (by wait, running or kill).
  const std::optional<ExitStatus>& status() const { return status_; }
  // SIGKILL and reap, unless already reaped. Also done by the destructor.
  void kill();

  const std::string& stdout_path() const { return stdout_path_; }
  const std::string& stderr_path() const { return stderr_path_; }
  std::string stdout_text() const { return read_file(stdout_path_); }
  std::string stderr_text() const { return read_file(stderr_path_); }
  size_t output_size(Output which) const;
  // "NAME (pid P) running|exit N|signal S; stderr: <its last 2000 bytes>", for messages.
  std::string describe();

 private:
  // Waits for new output or the exit, up to `deadline`; false once the deadline is past.
  bool wait_event(std::chrono::steady_clock::time_point deadline);
  void release();

  std::string name_;
  std::string stdout_path_;
  std::string stderr_path_;
  pid_t pid_ = -1;
  int pidfd_ = -1;    // readable when the child ends; -1 where pidfd_open is missing
  int inotify_ = -1;  // IN_MODIFY on both output files; -1 where inotify is missing
  std::optional<ExitStatus> status_;
  size_t stdout_consumed_ = 0;
};

// ---- the demo backend (examples/demo-backend) ----

struct DemoBackendOptions {
  std::string mode = "normal";  // normal | hang | garbage | reset | close
  int delay_ms = 0;
  std::string host = "127.0.0.1";  // or "::1"
  uint16_t port = 0;               // 0: an ephemeral port, learnt from its ready line
  std::vector<std::string> extra_args;
};

// `ringproxy-demo-backend --name NAME --listen HOST:PORT ...`, started and listening.
class DemoBackend {
 public:
  // Starts it and waits (10 s at most) for its "listening HOST:PORT" line. Throws
  // std::runtime_error, with its stderr, when it does not come.
  DemoBackend(const TempDir& dir, std::string name, DemoBackendOptions options = {});

  // The binary, from the DEMO_BACKEND_BIN compile definition (set by CMake).
  static std::string binary();

  const std::string& name() const { return name_; }
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  // "127.0.0.1:PORT" or "[::1]:PORT": what a [[backend]] address wants.
  std::string address() const;
  Process& process() { return process_; }

 private:
  std::string name_;
  std::string host_;
  uint16_t port_ = 0;
  Process process_;
};

// ---- ports ----

// "HOST:PORT" or "[V6]:PORT" -> (host without brackets, port).
std::optional<std::pair<std::string, uint16_t>> split_host_port(std::string_view address);

// A port that was free a moment ago: binds 127.0.0.1:0, reads the port, closes. Racy by
// nature: another process may take the port before the caller binds it. Prefer port 0
// plus a printed ready line (as DemoBackend does); use this only for programs that must
// be told their port up front, such as the proxy's config. Never the same port twice in
// one test process (two calls in a row could otherwise get one port). Returns 0 on failure.
uint16_t free_port();

// A port where nothing listens, for as long as this lives: a socket bound to
// 127.0.0.1:0 and never listening, so a connect to it is refused and no other process
// can take the port meanwhile (a free_port() for a dead node could be taken by a
// parallel test's server).
class DeadPort {
 public:
  DeadPort();
  ~DeadPort();
  DeadPort(const DeadPort&) = delete;
  DeadPort& operator=(const DeadPort&) = delete;
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// Connects to host:port until a connection is accepted (then closes it) or `timeout`
// passes. For processes that print no ready line. A refused connect is retried every
// 10 ms; when `watch` is given, that wait is a poll on its exit, and a watched process
// that exits ends the wait early with false.
bool wait_for_port(uint16_t port, Millis timeout = kDefaultTimeout, std::string_view host = "127.0.0.1",
                   Process* watch = nullptr);

// A private nginx (/usr/sbin/nginx, one process in the foreground, its pid, logs and
// temp paths under `dir`) listening on 127.0.0.1:`port` and proxying everything to the
// upstream block whose body is `upstream` (servers, balancing method, `keepalive N`;
// nginx wants the method before keepalive), with keep-alive both ways. Returns it once
// it accepts; on failure adds a test failure naming its error log, and returns what it
// started (or null).
std::unique_ptr<Process> start_private_nginx(const TempDir& dir, uint16_t port, const std::string& upstream);

// ---- a DNS server (dnsmasq, from Debian's dnsmasq-base) ----

// A port for a DNS server, free for UDP and TCP a moment ago (dnsmasq binds both). Taken
// below the kernel's ephemeral range (ip_local_port_range), where neither the
// connections nor the port-0 binds of this or parallel tests land: a test that restarts
// dnsmasq on the same port would otherwise find the number taken by an outgoing
// connection. 0 when none is found.
uint16_t free_dns_port();

// A dnsmasq on 127.0.0.1:port() answering for the domain "test" alone from its command
// line records (--srv-host=..., --host-record=...), TTL 1 s unless set_ttl says. start()
// again stops it and starts a new one on the same port with other records: to a
// resolver that is the same server with a changed zone. `port` 0: one of
// free_dns_port()'s, chosen at the first start() (or port()).
class Dnsmasq {
 public:
  explicit Dnsmasq(const TempDir& dir, uint16_t port = 0, std::string name = "dnsmasq")
      : dir_(dir), port_(port), name_(std::move(name)) {}

  // The TTL of every record from the next start() on (--local-ttl).
  void set_ttl(int seconds) { ttl_ = seconds; }
  // `local` false: no local domain and no upstream server, so every query is REFUSED
  // (to c-ares, a failed server). Adds a test failure and returns false when it cannot
  // start (a port chosen here is then chosen again, up to 5 times).
  bool start(const std::vector<std::string>& records, bool local = true);
  void stop();
  uint16_t port();
  bool running() const { return process_ != nullptr; }

 private:
  const TempDir& dir_;
  uint16_t port_ = 0;
  std::string name_;
  int starts_ = 0;
  int ttl_ = 1;
  std::unique_ptr<Process> process_;
};

// ---- waiting for a condition ----

// Polls `cond` every 20 ms until it holds or `timeout` passes; each poll is a bounded
// call of the caller's (an admin request, a log read), so this is a bounded wait for
// the behaviour, not a sleep standing in for it.
bool eventually(const std::function<bool()>& cond, Millis timeout = Millis(8000));

// ---- several backends on one port ----

// Demo backends named PREFIX-IP, listening on one port at each of `ips` (loopback
// addresses: 127.0.0.2, ...), appended to *out; up to 5 ports are tried. The port, or 0
// (and *out as it was) when none was free at every address.
uint16_t start_backends_on_one_port(const TempDir& dir, const std::vector<std::string>& ips,
                                    const std::string& prefix, std::vector<std::unique_ptr<DemoBackend>>* out);

// ---- the reference placement ----

// key -> node for nodes of weight 1 and 160 vnodes, from tools/ring_reference.py run with
// Debian's /usr/bin/python3 and python3-xxhash: an independent computation of SPEC's
// placement, sharing no code with ring/. Keys must be plain words (no shell quoting);
// a failure is a test failure and an empty map.
std::map<std::string, std::string> reference_map(const std::vector<std::string>& nodes,
                                                 const std::vector<std::string>& keys);

// key -> node for nodes with weights (`nodes`: name, weight; `vnodes` points per unit of
// weight, a pool's ring.vnodes), from the same script. Any name, including one with ':'
// ("be1.test:9001", "[::1]:9001"): the weight is always passed as the trailing ":W" the
// script splits off. Same key rules and failure behaviour as reference_map.
std::map<std::string, std::string> reference_map_weighted(const std::vector<std::pair<std::string, uint32_t>>& nodes,
                                                          const std::vector<std::string>& keys, unsigned vnodes = 160);

// How many of `keys` were served elsewhere than `want` says: got[i] is the node that
// served keys[i] (a demo backend's name), want's node names are prefixed with `prefix`
// (the demo backends' naming). The first few differences are test failures, named by
// `what`.
int placement_differences(const std::vector<std::string>& keys, const std::vector<std::string>& got,
                          const std::map<std::string, std::string>& want, const std::string& prefix,
                          const std::string& what);

// key -> node name under [ring] placement = "nginx" (what nginx's `hash KEY consistent`
// does, with 160 points per unit of weight), from the same script with the standard
// library's zlib only: `ring_reference.py map --placement nginx NAME@ADDRESS,W ...`.
// Each pair is (name, address), the address exactly as the [[backend]] and nginx's
// `server` write it ("127.0.0.1:9001"): only the address is hashed. `weights`: one per
// node, or empty for all 1. Same key rules and failure behaviour as reference_map.
std::map<std::string, std::string> reference_map_nginx(
    const std::vector<std::pair<std::string, std::string>>& name_address, const std::vector<std::string>& keys,
    const std::vector<int>& weights = {});

// ---- a blocking HTTP/1.1 client ----

struct Response {
  std::string error;  // empty when a whole response was read; else what went wrong
  int status = 0;
  int http_major = 0;
  int http_minor = 0;
  std::string reason;
  Headers headers;   // in order, names as received
  std::string body;  // dechunked; left empty when ReadOptions::keep_body is false
  uint64_t body_bytes = 0;  // the body's length, kept or not
  Headers trailers;
  std::vector<int> interim;  // 1xx statuses (100 Continue ...) skipped before this one
  bool chunked = false;
  bool keep_alive = false;  // the server intends to keep the connection open
  bool upgrade = false;     // 101: what follows on the connection is the new protocol
  bool closed = false;      // EOF or RST was seen while reading this response

  bool ok() const { return error.empty(); }
  // The first header `name` (ASCII case-insensitive); "" when absent.
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  std::vector<std::string> header_values(std::string_view name) const;
  std::string trailer(std::string_view name) const;
  // Status, headers and the first 200 body bytes, or the error: for assertion messages.
  std::string describe() const;
};

struct ReadOptions {
  Millis timeout = kDefaultTimeout;  // for the whole response
  // Whether this answers a HEAD (so has no body). Default: what send_request recorded
  // for the oldest request not yet answered, else false.
  std::optional<bool> head;
  bool keep_body = true;     // false: count body bytes only (for huge bodies)
  bool skip_interim = true;  // return the final response, noting 1xx ones in `interim`
};

// How a connection ended (or did not) while waiting for it to end.
enum class CloseKind { eof, reset, timeout, data };
std::string to_string(CloseKind kind);

struct RawRead {
  std::string bytes;
  CloseKind how = CloseKind::timeout;  // eof, reset or timeout (never data)
};

// One TCP connection to a server. Non-blocking underneath; every call waits with poll()
// up to its timeout. Bytes received but not yet consumed stay buffered in the Conn, so
// pipelined responses are read one read_response() at a time, and after a 101 the
// tunnel's first bytes are there for read_exact().
class Conn {
 public:
  Conn() = default;
  // Connects; check connected() and error().
  Conn(std::string_view host, uint16_t port, Millis timeout = kDefaultTimeout);
  ~Conn();
  Conn(Conn&& other) noexcept;
  Conn& operator=(Conn&& other) noexcept;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // host: an IPv4 literal, an IPv6 literal with or without brackets, or "localhost".
  // Closes any previous connection first. False, with error(), when it fails.
  bool connect(std::string_view host, uint16_t port, Millis timeout = kDefaultTimeout);
  bool connected() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }
  int fd() const { return fd_; }

  // Sends all of `bytes`. Whatever arrives meanwhile is buffered, so a large upload to
  // an echoing server cannot deadlock. False, with error(), on timeout or failure.
  bool send_raw(std::string_view bytes, Millis timeout = kDefaultTimeout);
  // Sends format_request(...) plus "Host: HOST:PORT" unless `headers` has a Host, and
  // remembers whether it was a HEAD for read_response.
  bool send_request(std::string_view method, std::string_view target, const Headers& headers = {},
                    std::string_view body = {}, Millis timeout = kDefaultTimeout);
  // Reads and parses one response (llhttp). Never hangs: a timeout, an EOF or RST
  // before the end, or a parse error comes back in Response::error.
  Response read_response(const ReadOptions& options = {});
  // send_request + read_response.
  Response request(std::string_view method, std::string_view target, const Headers& headers = {},
                   std::string_view body = {}, const ReadOptions& options = {});

  // Exactly n bytes (buffered ones first); std::nullopt on timeout or close before that.
  std::optional<std::string> read_exact(size_t n, Millis timeout = kDefaultTimeout);
  // Everything until the peer closes (eof or reset) or `timeout`.
  RawRead read_until_close(Millis timeout = kDefaultTimeout);
  // Waits for the peer to close. Returns data, keeping the bytes buffered, when bytes
  // arrive instead.
  CloseKind wait_close(Millis timeout = kDefaultTimeout);
  // Bytes received and not yet consumed.
  const std::string& buffered() const { return inbuf_; }

  bool shutdown_write();  // half-close: the server sees EOF
  void close();
  void abort();           // close with a RST (SO_LINGER 0)

 private:
  enum class Fill { data, eof, reset, timeout, error };
  // Reads what is available into inbuf_, waiting up to `deadline` for something.
  Fill fill(std::chrono::steady_clock::time_point deadline);
  // One recv() without waiting; data, eof, reset, error or timeout (= would block).
  Fill recv_once();

  int fd_ = -1;
  std::string host_header_;
  std::string error_;
  std::string inbuf_;
  bool eof_ = false;
  bool reset_ = false;
  std::deque<bool> pending_heads_;  // per request sent by send_request: was it a HEAD
};

// "METHOD TARGET HTTP/1.1\r\n", `headers`, a Content-Length when `body` is not empty
// and `headers` has neither Content-Length nor Transfer-Encoding, "\r\n", `body`.
// Adds no Host: Conn::send_request does.
std::string format_request(std::string_view method, std::string_view target, const Headers& headers = {},
                           std::string_view body = {});

// One request on a fresh connection to host:port, closed afterwards.
Response http_request(uint16_t port, std::string_view method, std::string_view target, const Headers& headers = {},
                      std::string_view body = {}, const ReadOptions& options = {},
                      std::string_view host = "127.0.0.1");
Response http_get(uint16_t port, std::string_view target, const Headers& headers = {},
                  const ReadOptions& options = {}, std::string_view host = "127.0.0.1");

}  // namespace ringproxy::integration
