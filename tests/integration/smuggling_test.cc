// The request-smuggling corpus (tests/corpus/smuggling, see its MANIFEST) against a real
// ringproxy in front of a recording backend. For every case, on a fresh connection:
//  - a refused case gets the status MANIFEST names, then the connection closes, and
//    the backend has received not one byte (not even a head whose body turned out bad);
//  - a forwarded control gets one 200 per request in the file, and the backend has
//    received exactly those requests: same method, target and (dechunked) body, read
//    with llhttp exactly as the file's own bytes parse.
// One ringproxy and one backend serve the whole suite (a static fixture).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {
namespace {

const std::string kCorpusDir = std::string(RINGPROXY_SOURCE_DIR) + "/tests/corpus/smuggling";
// The proxy's active health check, told apart from the requests under test.
constexpr const char* kHealthPath = "/__corpus_health";

struct CorpusCase {
  std::string name;
  std::string expected;  // "400", "501", "505" or "forwarded"
  std::string source;
};
// For gtest's messages: the name, not the bytes of the struct.
void PrintTo(const CorpusCase& c, std::ostream* os) { *os << c.name; }

std::vector<CorpusCase> load_manifest() {
  std::vector<CorpusCase> out;
  std::ifstream in(kCorpusDir + "/MANIFEST");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    CorpusCase c;
    fields >> c.name >> c.expected;
    std::getline(fields, c.source);
    out.push_back(c);
  }
  return out;
}

// One request as llhttp reads it (the body dechunked, trailers apart).
struct ParsedRequest {
  std::string method, target;
  int http_major = 0, http_minor = 0;
  Headers headers, trailers;
  std::string body;
  std::string describe() const {
    return method + " " + target + " HTTP/" + std::to_string(http_major) + "." + std::to_string(http_minor) +
           " body(" + std::to_string(body.size()) + ")=" + body.substr(0, 60);
  }
};

// A request stream parser on llhttp (strict, as in the proxy): whole messages come out
// through `on_request`.
class RequestReader {
 public:
  RequestReader() {
    llhttp_settings_init(&settings_);
    settings_.on_message_begin = [](llhttp_t* p) {
      self(p).cur_ = ParsedRequest{};
      self(p).in_trailers_ = self(p).in_value_ = false;
      return 0;
    };
    settings_.on_url = [](llhttp_t* p, const char* at, size_t n) {
      self(p).cur_.target.append(at, n);
      return 0;
    };
    settings_.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      RequestReader& r = self(p);
      Headers& list = r.in_trailers_ ? r.cur_.trailers : r.cur_.headers;
      if (r.in_value_ || list.empty()) list.emplace_back();
      r.in_value_ = false;
      list.back().first.append(at, n);
      return 0;
    };
    settings_.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      RequestReader& r = self(p);
      Headers& list = r.in_trailers_ ? r.cur_.trailers : r.cur_.headers;
      r.in_value_ = true;
      if (!list.empty()) list.back().second.append(at, n);
      return 0;
    };
    settings_.on_headers_complete = [](llhttp_t* p) {
      RequestReader& r = self(p);
      r.cur_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
      r.cur_.http_major = p->http_major;
      r.cur_.http_minor = p->http_minor;
      r.in_trailers_ = true;
      r.in_value_ = false;
      return 0;
    };
    settings_.on_body = [](llhttp_t* p, const char* at, size_t n) {
      self(p).cur_.body.append(at, n);
      return 0;
    };
    settings_.on_message_complete = [](llhttp_t* p) {
      RequestReader& r = self(p);
      r.done_.push_back(std::move(r.cur_));
      return 0;
    };
    llhttp_init(&parser_, HTTP_REQUEST, &settings_);
    parser_.data = this;
  }
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // False once the stream is malformed (`error` says why).
  bool feed(std::string_view bytes) {
    if (!error.empty()) return false;
    const llhttp_errno e = llhttp_execute(&parser_, bytes.data(), bytes.size());
    if (e != HPE_OK) {
      error = std::string(llhttp_errno_name(e)) + ": " + (llhttp_get_error_reason(&parser_) ? llhttp_get_error_reason(&parser_) : "");
      return false;
    }
    return true;
  }
  // Complete requests not yet taken.
  std::vector<ParsedRequest> take() { return std::exchange(done_, {}); }
  std::string error;

 private:
  static RequestReader& self(llhttp_t* p) { return *static_cast<RequestReader*>(p->data); }
  llhttp_settings_t settings_{};
  llhttp_t parser_{};
  ParsedRequest cur_;
  std::vector<ParsedRequest> done_;
  bool in_trailers_ = false;
  bool in_value_ = false;
};

// A backend on 127.0.0.1 that records every byte it receives and every request it
// reads, answering each "200 ok" with a Content-Length. One thread, poll() over all
// connections; sync() makes it read everything the kernel holds for it (pending
// accepts included) before the test looks, so "nothing arrived" is not a race.
class RecordingBackend {
 public:
  RecordingBackend() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 || ::listen(listen_fd_, 128) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || ::pipe2(wake_, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "recording backend cannot listen";
      return;
    }
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~RecordingBackend() {
    command('q');
    if (thread_.joinable()) thread_.join();
    for (auto& [fd, c] : conns_) ::close(fd);
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }
  uint16_t port() const { return port_; }

  struct Snapshot {
    uint64_t bytes = 0;                   // received, all connections but health checks, ever
    std::vector<ParsedRequest> requests;  // in arrival order, health checks left out
    std::vector<std::string> errors;      // streams llhttp refused
    uint64_t connections = 0;
  };
  // Reads all that has arrived, then returns what was recorded so far.
  Snapshot sync() {
    command('s');
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return synced_ == sync_asked_; });
    return recorded_;
  }

 private:
  struct Connection {
    RequestReader reader;
    bool seen = false;    // has sent bytes
    bool health = false;  // the proxy's health checker: not counted
  };

  void command(char c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (c == 's') ++sync_asked_;
    }
    (void)!::write(wake_[1], &c, 1);
  }

  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      conns_.emplace(fd, std::make_unique<Connection>());
      std::lock_guard<std::mutex> lock(mu_);
      ++recorded_.connections;
    }
  }

  // Reads what `fd` has; false when it is finished with.
  bool read_conn(int fd, Connection& c) {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n <= 0) return false;
      if (!c.seen) {
        c.seen = true;
        c.health = std::string_view(buf, static_cast<size_t>(n)).starts_with(std::string("GET ") + kHealthPath + " ");
      }
      if (!c.health) {
        std::lock_guard<std::mutex> lock(mu_);
        recorded_.bytes += static_cast<uint64_t>(n);
      }
      const bool ok = c.reader.feed({buf, static_cast<size_t>(n)});
      for (ParsedRequest& r : c.reader.take()) {
        static const char kOk[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        (void)!::send(fd, kOk, sizeof kOk - 1, MSG_NOSIGNAL);
        if (r.target == kHealthPath) continue;
        std::lock_guard<std::mutex> lock(mu_);
        recorded_.requests.push_back(std::move(r));
      }
      if (!ok) {
        std::lock_guard<std::mutex> lock(mu_);
        recorded_.errors.push_back(c.reader.error);
        return false;
      }
    }
  }

  void drain_all() {
    accept_all();
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (!read_conn(it->first, *it->second)) {
        ::close(it->first);
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void run() {
    for (;;) {
      std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      for (auto& [fd, c] : conns_) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
      if (fds[0].revents & POLLIN) {
        char cmds[64];
        const ssize_t n = ::read(wake_[0], cmds, sizeof cmds);
        bool quit = false, sync = false;
        for (ssize_t i = 0; i < n; ++i) {
          quit = quit || cmds[i] == 'q';
          sync = sync || cmds[i] == 's';
        }
        if (quit) return;
        if (sync) {
          drain_all();
          std::lock_guard<std::mutex> lock(mu_);
          synced_ = sync_asked_;
          cv_.notify_all();
        }
      }
      drain_all();
    }
  }

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::thread thread_;
  std::map<int, std::unique_ptr<Connection>> conns_;  // the backend thread's own
  std::mutex mu_;
  std::condition_variable cv_;
  Snapshot recorded_;
  uint64_t sync_asked_ = 0, synced_ = 0;
};

class SmugglingCorpus : public ::testing::TestWithParam<CorpusCase> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    backend_ = new RecordingBackend();
    port_ = free_port();
    ASSERT_NE(port_, 0);
    std::ostringstream c;
    // The corpus is HTTP/1's: with h2c off, HTTP/2's preface is one more request line
    // to refuse (h2_test.cc speaks HTTP/2 on a listener that takes it).
    c << "[proxy]\nlisten = \"127.0.0.1:" << port_ << "\"\nworkers = 1\nretries = 0\nh2c = false\n"
      << "header_timeout_ms = 5000\nlog_level = \"info\"\n"
      << "[admin]\nlisten = \"\"\n"
      << "[health]\npath = \"" << kHealthPath << "\"\ninterval_ms = 3600000\ntimeout_ms = 1000\n"
      << "[[backend]]\nname = \"recorder\"\naddress = \"127.0.0.1:" << backend_->port() << "\"\n";
    const std::string config = dir_->write_file("ringproxy.toml", c.str());
    proxy_ = new Process(std::string(RINGPROXY_BIN), {"-c", config}, dir_->path(), "ringproxy");
    ASSERT_TRUE(proxy_->wait_for_output(Output::err, "listening on")) << proxy_->describe();
  }
  static void TearDownTestSuite() {
    delete proxy_;
    delete backend_;
    delete dir_;
    proxy_ = nullptr;
    backend_ = nullptr;
    dir_ = nullptr;
  }

  static TempDir* dir_;
  static RecordingBackend* backend_;
  static Process* proxy_;
  static uint16_t port_;
};

TempDir* SmugglingCorpus::dir_ = nullptr;
RecordingBackend* SmugglingCorpus::backend_ = nullptr;
Process* SmugglingCorpus::proxy_ = nullptr;
uint16_t SmugglingCorpus::port_ = 0;

TEST_P(SmugglingCorpus, Case) {
  const CorpusCase& c = GetParam();
  ASSERT_NE(proxy_, nullptr);
  ASSERT_TRUE(proxy_->running()) << proxy_->describe();
  const std::string bytes = read_file(kCorpusDir + "/" + c.name);
  ASSERT_FALSE(bytes.empty()) << c.name;
  SCOPED_TRACE(c.name + " (" + c.source + ")");

  const RecordingBackend::Snapshot before = backend_->sync();
  Conn conn("127.0.0.1", port_);
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send_raw(bytes)) << conn.error();

  if (c.expected == "forwarded") {
    // What the client meant: the file's own bytes, read as llhttp reads them.
    RequestReader intended_reader;
    ASSERT_TRUE(intended_reader.feed(bytes)) << "the control itself does not parse: " << intended_reader.error;
    const std::vector<ParsedRequest> intended = intended_reader.take();
    ASSERT_FALSE(intended.empty());
    for (size_t i = 0; i < intended.size(); ++i) {
      const Response r = conn.read_response();
      ASSERT_TRUE(r.ok()) << "response " << i << ": " << r.describe();
      EXPECT_EQ(r.status, 200) << "response " << i << ": " << r.describe();
      EXPECT_EQ(r.body, "ok");
    }
    const RecordingBackend::Snapshot after = backend_->sync();
    EXPECT_EQ(after.errors.size(), before.errors.size()) << "the backend could not parse what it got: "
                                                         << after.errors.back();
    ASSERT_EQ(after.requests.size() - before.requests.size(), intended.size());
    for (size_t i = 0; i < intended.size(); ++i) {
      const ParsedRequest& want = intended[i];
      const ParsedRequest& got = after.requests[before.requests.size() + i];
      EXPECT_EQ(got.method, want.method) << got.describe();
      // An absolute-form target goes on in origin form (RFC 9112 3.2.2).
      std::string want_target = want.target;
      if (const size_t scheme = want_target.find("://"); scheme != std::string::npos && want_target[0] != '/') {
        const size_t path = want_target.find_first_of("/?", scheme + 3);
        want_target = path == std::string::npos ? "/" : want_target.substr(path);
        if (want_target[0] == '?') want_target.insert(0, "/");
      }
      EXPECT_EQ(got.target, want_target) << got.describe();
      EXPECT_EQ(got.body, want.body) << got.describe();
      // RFC 9112 2.3: the proxy sends its own version, HTTP/1.1, whatever the client's.
      EXPECT_EQ(got.http_major, 1) << got.describe();
      EXPECT_EQ(got.http_minor, 1) << got.describe();
      ASSERT_EQ(got.trailers.size(), want.trailers.size()) << got.describe();
      for (size_t t = 0; t < want.trailers.size(); ++t) EXPECT_EQ(got.trailers[t], want.trailers[t]);
    }
    return;
  }

  const Response r = conn.read_response();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(std::to_string(r.status), c.expected) << r.describe();
  EXPECT_FALSE(r.keep_alive) << "an error for malformed input must say Connection: close";
  const CloseKind how = conn.wait_close(Millis(3000));
  EXPECT_TRUE(how == CloseKind::eof || how == CloseKind::reset)
      << "the connection must close after the error, got " << to_string(how);
  const RecordingBackend::Snapshot after = backend_->sync();
  // The key property: nothing of a refused request reached the backend.
  EXPECT_EQ(after.bytes, before.bytes) << "bytes reached the backend";
  EXPECT_EQ(after.requests.size(), before.requests.size())
      << "the backend received: " << after.requests.back().describe();
}

std::string case_name(const ::testing::TestParamInfo<CorpusCase>& info) {
  std::string n = info.param.name;
  for (char& ch : n) {
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return n;
}

INSTANTIATE_TEST_SUITE_P(Corpus, SmugglingCorpus, ::testing::ValuesIn(load_manifest()), case_name);

// The response side of obs-fold: a backend's folded header line would carry its CRLF
// into the head sent to the client (a response split). RFC 9112 5.2: the proxy answers
// 502 instead. The backend is a thread answering one connection with fixed bytes.
TEST(SmugglingResponse, ObsFoldFromTheBackendIs502) {
  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sa), len), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  // Every connection (the health checker's too) gets the folded answer to its first head.
  std::thread backend([lfd] {
    std::vector<int> conns;
    for (;;) {
      const int c = ::accept(lfd, nullptr, nullptr);
      if (c < 0) break;  // the listening socket was shut down: the test is over
      conns.push_back(c);
      std::string got;
      char buf[4096];
      while (got.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      static const char kFolded[] = "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok";
      (void)!::send(c, kFolded, sizeof kFolded - 1, MSG_NOSIGNAL);
    }
    for (int c : conns) ::close(c);
  });
  TempDir dir;
  const uint16_t port = free_port();
  const std::string config = dir.write_file(
      "ringproxy.toml", "[proxy]\nlisten = \"127.0.0.1:" + std::to_string(port) +
                            "\"\nworkers = 1\nretries = 0\n[admin]\nlisten = \"\"\n[health]\ninterval_ms = 3600000\n"
                            "timeout_ms = 1000\npath = \"" + kHealthPath + "\"\n[[backend]]\nname = \"folder\"\n"
                            "address = \"127.0.0.1:" + std::to_string(ntohs(sa.sin_port)) + "\"\n");
  Process proxy(std::string(RINGPROXY_BIN), {"-c", config}, dir.path(), "ringproxy");
  ASSERT_TRUE(proxy.wait_for_output(Output::err, "listening on")) << proxy.describe();
  const Response r = http_get(port, "/folded");
  EXPECT_EQ(r.status, 502) << r.describe();
  EXPECT_FALSE(r.has_header("b")) << r.describe();
  EXPECT_TRUE(proxy.wait_for_output(Output::err, "obs-fold")) << proxy.describe();
  proxy.kill();
  ::shutdown(lfd, SHUT_RDWR);
  backend.join();
  ::close(lfd);
}

// The corpus is whole: every file has a MANIFEST line and the reverse.
TEST(SmugglingManifest, ListsEveryFile) {
  const auto cases = load_manifest();
  ASSERT_GE(cases.size(), 60u);
  for (const auto& c : cases) {
    EXPECT_TRUE(c.expected == "400" || c.expected == "501" || c.expected == "505" || c.expected == "forwarded")
        << c.name << ": " << c.expected;
    EXPECT_FALSE(c.source.empty()) << c.name;
    EXPECT_FALSE(read_file(kCorpusDir + "/" + c.name).empty()) << c.name;
  }
  for (const auto& entry : std::filesystem::directory_iterator(kCorpusDir)) {
    const std::string file = entry.path().filename().string();
    if (file == "MANIFEST" || file[0] == '.') continue;
    EXPECT_TRUE(std::any_of(cases.begin(), cases.end(), [&](const CorpusCase& c) { return c.name == file; }))
        << file << " has no MANIFEST line";
  }
}

}  // namespace
}  // namespace ringproxy::integration
