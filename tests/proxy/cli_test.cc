// The ringproxy binary's command line, run as a real process (SPEC "Command line").
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>

#include "proxy/cli.h"
#include "tests/support/tls_certs.h"

namespace ringproxy {
namespace {

struct CmdResult {
  int code = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string temp_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/ringproxy-cli-XXXXXX";
    return std::string(mkdtemp(tmpl));
  }();
  return dir;
}

// Runs the binary with `args` (shell words); stdout and stderr are kept apart.
CmdResult run(const std::string& args) {
  const std::string out = temp_dir() + "/out", err = temp_dir() + "/err";
  const std::string cmd = std::string(RINGPROXY_BIN) + " " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  CmdResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = temp_dir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// A TCP socket bound to 127.0.0.1 on an ephemeral port, listening (so the port is taken)
// unless `listen` is false (then the port was free a moment ago and is free again once
// this is destroyed: racy, as integration::free_port() says).
class LoopbackPort {
 public:
  explicit LoopbackPort(bool listen) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 ||
        (listen && ::listen(fd_, 1) != 0) || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      return;
    }
    port_ = ntohs(sa.sin_port);
    if (!listen) close();
  }
  ~LoopbackPort() { close(); }
  LoopbackPort(const LoopbackPort&) = delete;
  LoopbackPort& operator=(const LoopbackPort&) = delete;
  uint16_t port() const { return port_; }  // 0 when the socket could not be set up

 private:
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A config whose admin.listen is a port this test holds, so the start fails there:
// after the health checker's timer and the admin listener were opened on the control
// loop, the case that used to free them while their uv_close was pending.
std::string admin_port_taken_config(uint16_t proxy_port, uint16_t admin_port) {
  return write_file("admin-taken.toml", "[proxy]\nlisten = \"127.0.0.1:" + std::to_string(proxy_port) +
                                            "\"\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:" +
                                            std::to_string(admin_port) +
                                            "\"\n\n[[backend]]\nname = \"cache-a\"\naddress = \"127.0.0.1:9001\"\n");
}

const char* kValid = R"([proxy]
listen = "127.0.0.1:8080"

[[backend]]
name = "cache-a"
address = "127.0.0.1:9001"

[[backend]]
name = "cache-b"
address = "127.0.0.1:9002"

[[backend]]
name = "cache-c"
address = "127.0.0.1:9003"
weight = 2
)";

TEST(Cli, VersionAndHelp) {
  CmdResult v = run("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.out, version_string() + "\n");
  CmdResult h = run("--help");
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("usage: ringproxy -c FILE"), std::string::npos);
}

TEST(Cli, BadUsageExitsTwo) {
  for (const char* args : {"", "--bogus", "-c", "--check", "--check --lookup k -c x", "-c f --lookup"}) {
    SCOPED_TRACE(args);
    CmdResult r = run(args);
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.err.rfind("ringproxy: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("usage:"), std::string::npos);
  }
}

TEST(Cli, CheckValidFile) {
  const std::string path = write_file("valid.toml", kValid);
  for (const std::string& args : {"--check -c " + path, "--check --config " + path}) {
    CmdResult r = run(args);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, path + ": ok (3 backends)\n");
    EXPECT_EQ(r.err, "");
  }
}

TEST(Cli, CheckPrintsEveryErrorAndExitsOne) {
  const std::string path = write_file("invalid.toml", R"([proxy]
lisen = "127.0.0.1:8080"
retries = "two"

[[backend]]
name = "a"
address = "127.0.0.1:99999"
)");
  CmdResult r = run("--check -c " + path);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  std::istringstream lines(r.err);
  std::string line;
  int errors = 0;
  while (std::getline(lines, line)) {
    if (line.rfind(path + ":", 0) == 0 && line != path + ": 3 errors") ++errors;
  }
  EXPECT_EQ(errors, 3) << r.err;
  EXPECT_NE(r.err.find(path + ":2:1: proxy.lisen: unknown key (did you mean 'listen'?)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(path + ": 3 errors\n"), std::string::npos) << r.err;
}

TEST(Cli, CheckMissingFile) {
  CmdResult r = run("--check -c /nonexistent/ringproxy.toml");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/ringproxy.toml:1:1: cannot read file"), std::string::npos)
      << r.err;
}

TEST(Cli, LookupPrintsNodeAndFallbacks) {
  const std::string path = write_file("lookup.toml", kValid);
  CmdResult r = run("-c " + path + " --lookup /a /users/42");
  EXPECT_EQ(r.code, 0) << r.err;
  // Independent: /usr/bin/python3 tools/ring_reference.py map cache-a cache-b cache-c:2 -- /a /users/42
  std::istringstream lines(r.out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_EQ(first.rfind("/a  hash=e292ab48a6b06805  node=cache-c  fallbacks=", 0), 0u) << first;
  EXPECT_EQ(second.rfind("/users/42  hash=a7d8d2c93539d950  node=cache-c  fallbacks=", 0), 0u) << second;
  EXPECT_NE(first.find("fallbacks="), std::string::npos);
}

// --lookup and --shares --pool NAME: that pool's ring, the same as a file whose top level
// has the pool's nodes and ring settings.
TEST(Cli, LookupAndSharesOfAPool) {
  const std::string nodes = "backends = [ { name = \"i1\", address = \"127.0.0.1:9101\" }, "
                            "{ name = \"i2\", address = \"127.0.0.1:9102\", weight = 2 } ]\n";
  const std::string tiers = write_file(
      "lookup-tiers.toml", "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n"
                           "[[pool]]\nname = \"images\"\nring = { vnodes = 40 }\n" + nodes +
                           "[[route]]\npath_prefix = \"/img/\"\npool = \"images\"\n");
  const std::string flat = write_file(
      "lookup-flat.toml", "[ring]\nvnodes = 40\n[[backend]]\nname = \"i1\"\naddress = \"127.0.0.1:9101\"\n"
                          "[[backend]]\nname = \"i2\"\naddress = \"127.0.0.1:9102\"\nweight = 2\n");
  const CmdResult pooled = run("-c " + tiers + " --lookup --pool images /img/1 /img/2 /x");
  const CmdResult same = run("-c " + flat + " --lookup /img/1 /img/2 /x");
  EXPECT_EQ(pooled.code, 0) << pooled.err;
  EXPECT_EQ(pooled.out, same.out);
  EXPECT_EQ(run("--pool images -c " + tiers + " --lookup /img/1 /img/2 /x").out, same.out);  // anywhere
  const CmdResult shares = run("-c " + tiers + " --shares --pool images");
  EXPECT_EQ(shares.code, 0) << shares.err;
  const CmdResult flat_shares = run("-c " + flat + " --shares");
  // Past the first line (which names the file), the same table.
  EXPECT_EQ(shares.out.substr(shares.out.find('\n')), flat_shares.out.substr(flat_shares.out.find('\n')));
  // The default pool by default.
  EXPECT_NE(run("-c " + tiers + " --lookup /x").out.find("node=a"), std::string::npos);
  CmdResult r = run("-c " + tiers + " --lookup --pool nope /x");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, tiers + ": no pool named \"nope\"\n");
  r = run("-c " + tiers + " --check --pool images");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--pool goes with --lookup or --shares"), std::string::npos) << r.err;
}

TEST(Cli, LookupWithNginxPlacement) {
  const std::string path = write_file("nginx.toml", std::string("[ring]\nplacement = \"nginx\"\n") + kValid);
  CmdResult r = run("-c " + path + " --lookup /a /users/42");
  EXPECT_EQ(r.code, 0) << r.err;
  // /usr/bin/python3 tools/ring_reference.py map --placement nginx cache-a@127.0.0.1:9001
  //   cache-b@127.0.0.1:9002 cache-c@127.0.0.1:9003,2 -- /a /users/42; hash = CRC-32 << 32
  EXPECT_NE(r.out.find("/a  hash=69707b5c00000000  node=cache-a  fallbacks="), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/users/42  hash=603c8d0000000000  node=cache-c  fallbacks="), std::string::npos) << r.out;
}

TEST(Cli, SharesAndWhatAChangeWouldMove) {
  const std::string old_path = write_file("old.toml", kValid);
  CmdResult alone = run("-c " + old_path + " --shares");
  EXPECT_EQ(alone.code, 0) << alone.err;
  EXPECT_NE(alone.out.find("3 nodes, placement xxh3, 640 points"), std::string::npos) << alone.out;
  EXPECT_NE(alone.out.find("cache-c  2  "), std::string::npos) << alone.out;

  // A fourth node: exactly its own share moves, onto it.
  const std::string grown = write_file(
      "grown.toml", std::string(kValid) + "\n[[backend]]\nname = \"cache-d\"\naddress = \"127.0.0.1:9004\"\n");
  CmdResult add = run("-c " + grown + " --shares --compare " + old_path);
  EXPECT_EQ(add.code, 0) << add.err;
  const size_t d = add.out.find("cache-d  1  ");
  ASSERT_NE(d, std::string::npos) << add.out;
  const std::string d_share = add.out.substr(d + 12, add.out.find('%', d) - d - 12);
  EXPECT_NE(add.out.find("(new)"), std::string::npos) << add.out;
  EXPECT_NE(add.out.find("keys that move: " + d_share + "% (exact)"), std::string::npos) << add.out;

  // Another placement of the same nodes: almost everything moves, estimated by sampling.
  const std::string nginx = write_file("nginx2.toml", std::string("[ring]\nplacement = \"nginx\"\n") + kValid);
  CmdResult switch_placement = run("-c " + nginx + " --shares --compare " + old_path);
  EXPECT_EQ(switch_placement.code, 0) << switch_placement.err;
  EXPECT_NE(switch_placement.out.find("(estimated over 1000000 sample keys"), std::string::npos)
      << switch_placement.out;

  EXPECT_EQ(run("-c " + old_path + " --compare " + old_path).code, 2);
  EXPECT_EQ(run("-c " + old_path + " --shares --compare /nonexistent.toml").code, 1);
}

// ---------------------------------------------------------------------------------
// --check and the TLS files (SPEC "TLS"): keys and certificates made by the test.

constexpr std::time_t kDay = 24 * 60 * 60;

// An ECDSA key (fast to make), once per run.
EVP_PKEY* tls_key() {
  static const test::OwnedKey key(test::make_key(test::KeyType::kEc));
  return key.get();
}

// A config with one certificate entry on line 3 (the cert's value at column 12, the
// key's at key_column(cert)) and one backend.
std::string tls_config(const std::string& name, const std::string& cert, const std::string& key) {
  return write_file(name, "[proxy.tls]\ncertificates = [\n  { cert = \"" + cert + "\", key = \"" + key +
                              "\" },\n]\n\n[[backend]]\nname = \"cache-a\"\naddress = \"127.0.0.1:9001\"\n");
}

std::string key_column(const std::string& cert) { return std::to_string(12 + cert.size() + 10); }

std::string utc(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

TEST(Cli, CheckWithValidTlsFiles) {
  const std::time_t now = std::time(nullptr);
  const std::string cert = write_file("tls-ok.pem", test::self_signed_pem(tls_key(), "ok", now - kDay, now + 90 * kDay));
  const std::string key = write_file("tls-ok.key", test::private_key_pem(tls_key()));
  const std::string path = tls_config("tls-ok.toml", cert, key);
  CmdResult r = run("--check -c " + path);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, path + ": ok (1 backends)\n");
  EXPECT_EQ(r.err, "");
}

TEST(Cli, CheckRefusesAKeyOpenSslWillNotServe) {
  // Readable, matching, valid: but RSA 1024 is below the system's security level, so the
  // proxy could not start with it; --check says so rather than "ok".
  const test::OwnedKey weak(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024)));
  const std::time_t now = std::time(nullptr);
  const std::string cert = write_file("tls-weak.pem", test::self_signed_pem(weak.get(), "weak", now - kDay, now + 90 * kDay));
  const std::string key = write_file("tls-weak.key", test::private_key_pem(weak.get()));
  const std::string path = tls_config("tls-weak.toml", cert, key);
  CmdResult r = run("--check -c " + path);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find(path + ": proxy.tls: " + cert + ": "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("key too small"), std::string::npos) << r.err;
}

TEST(Cli, DnsNamesAreChecked) {
  // --check says what is wrong with a name, and takes a valid one and a source without
  // resolving them (a resolver down at deploy time is no config error).
  const std::string bad = write_file("dns-bad.toml", "[[backend]]\nname = \"a\"\naddress = \"cache_a:80\"\n");
  CmdResult r = run("--check -c " + bad);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, bad + ":3:11: backend[0].address: invalid address \"cache_a:80\": not an IP address nor a DNS "
                         "name\n" + bad + ": 1 error\n");
  const std::string named = write_file("dns-named.toml", "[[backend]]\nname = \"a\"\naddress = \"cache-a.test:80\"\n");
  r = run("--check -c " + named);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, named + ": ok (1 backends)\n");
  const std::string discover =
      write_file("dns-discover.toml", "[[discover]]\nname = \"_http._tcp.cache.test\"\ntype = \"srv\"\n");
  r = run("--check -c " + discover);
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Cli, PoolsAndRoutesAreCheckedWithTheirWarnings) {
  // --check prints a tier's warnings at their keys, and a valid file with pools and
  // routes passes, counting them.
  const std::string tiers = write_file(
      "tiers.toml",
      "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n"
      "[[pool]]\nname = \"img\"\nbackends = [ { name = \"i\", address = \"127.0.0.1:9101\" } ]\n"
      "[[route]]\npath_prefix = \"/img/\"\npool = \"img\"\n[[route]]\npath_prefix = \"/img/x/\"\npool = \"default\"\n");
  CmdResult r = run("--check -c " + tiers);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, tiers + ": ok (1 backends, 1 pool, 2 routes, 1 warning)\n");
  EXPECT_EQ(r.err, "warning: " + tiers + ":10:1: route[1]: never matches: route[0] comes first and matches every "
                   "request this one does\n");
}

TEST(Cli, ListenersAreChecked) {
  // A [[listener]] with TLS: its certificate files are checked as proxy.tls's are, at
  // their keys.
  const std::string tiers = write_file(
      "listeners.toml",
      "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n"
      "[[listener]]\nlisten = \"127.0.0.1:18443\"\ntls = { certificates = [ { cert = \"" + temp_dir() +
          "/none.pem\", key = \"" + temp_dir() + "/none.key\" } ] }\n");
  CmdResult r = run("--check -c " + tiers);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("listener[0].tls.certificates[0].cert: cannot read \"" + temp_dir() + "/none.pem\""),
            std::string::npos)
      << r.err;
  const std::string plain = write_file("listeners-plain.toml",
                                       "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n"
                                       "[[listener]]\nlisten = \"127.0.0.1:18443\"\n");
  r = run("--check -c " + plain);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, plain + ": ok (1 backends, 1 listener)\n");
}

TEST(Cli, CheckTlsFileErrorsExitOne) {
  const std::time_t now = std::time(nullptr);
  const std::string cert =
      write_file("tls-expired.pem", test::self_signed_pem(tls_key(), "old", now - 90 * kDay, now - 2 * kDay));
  const std::string key = temp_dir() + "/tls-missing.key";
  const std::string path = tls_config("tls-bad.toml", cert, key);
  CmdResult r = run("--check -c " + path);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  // The expiry date is the certificate's own, whole seconds.
  EXPECT_EQ(r.err, path + ":3:12: proxy.tls.certificates[0].cert: the certificate in \"" + cert + "\" expired on " +
                       utc(now - 2 * kDay) + "\n" + path + ":3:" + key_column(cert) +
                       ": proxy.tls.certificates[0].key: cannot read \"" + key +
                       "\": No such file or directory\n" + path + ": 2 errors\n");
}

TEST(Cli, CheckTlsWarningExitsZero) {
  // Ends in 3 days and an hour: "in 3 days" unless this test takes an hour.
  const std::time_t now = std::time(nullptr);
  const std::time_t end = now + 3 * kDay + 3600;
  const std::string cert = write_file("tls-soon.pem", test::self_signed_pem(tls_key(), "soon", now - kDay, end));
  const std::string key = write_file("tls-soon.key", test::private_key_pem(tls_key()));
  const std::string path = tls_config("tls-soon.toml", cert, key);
  CmdResult r = run("--check -c " + path);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, path + ": ok (1 backends, 1 warning)\n");
  EXPECT_EQ(r.err, "warning: " + path + ":3:12: proxy.tls.certificates[0].cert: the certificate in \"" + cert +
                       "\" expires on " + utc(end) + ", in 3 days\n");
}

TEST(Cli, CheckTlsFilesOnlyOnceTheFileIsValid) {
  // The TLS files are named by a file that is itself invalid: its errors alone.
  const std::string path = write_file("tls-invalid.toml", "[proxy.tls]\ncertificates = [{ cert = \"/nonexistent.pem\", "
                                                          "key = \"/nonexistent.key\" }]\nmin_version = \"TLSv1.0\"\n\n"
                                                          "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n");
  CmdResult r = run("--check -c " + path);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, path + ":3:15: proxy.tls.min_version: expected TLSv1.2 or TLSv1.3, got \"TLSv1.0\"\n" + path +
                       ": 1 error\n");
}

// In process, at a fixed instant: the whole output, warnings and errors together.
TEST(Cli, RunCheckAtAGivenTime) {
  constexpr std::time_t kNow = 1'700'000'000;  // 2023-11-14 22:13:20 UTC
  const std::string cert =
      write_file("tls-fixed.pem", test::self_signed_pem(tls_key(), "fixed", kNow - kDay, kNow + 3 * kDay + 3600));
  const std::string key = write_file("tls-fixed.key", test::private_key_pem(tls_key()));
  const std::string ca = write_file("tls-fixed-ca.pem", "");
  const std::string path = write_file(
      "tls-fixed.toml", "[proxy.tls]\ncertificates = [{ cert = \"" + cert + "\", key = \"" + key +
                            "\" }]\n\n[upstream_tls]\nca = \"" + ca +
                            "\"\n\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\ntls = true\n");
  std::ostringstream out, err;
  EXPECT_EQ(run_check(path, out, err, kNow), kExitConfig);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(err.str(), "warning: " + path + ":2:26: proxy.tls.certificates[0].cert: the certificate in \"" + cert +
                           "\" expires on 2023-11-17 23:13:20 UTC, in 3 days\n" + path +
                           ":5:6: upstream_tls.ca: no PEM certificate in \"" + ca +
                           "\" (a PEM bundle of CA certificates is expected)\n" + path + ": 1 error, 1 warning\n");

  // A year later the certificate has expired.
  std::ostringstream later_out, later_err;
  EXPECT_EQ(run_check(path, later_out, later_err, kNow + 365 * kDay), kExitConfig);
  EXPECT_NE(later_err.str().find(path + ":2:26: proxy.tls.certificates[0].cert: the certificate in \"" + cert +
                                 "\" expired on 2023-11-17 23:13:20 UTC\n"),
            std::string::npos)
      << later_err.str();

  // Without the bundle, a warning alone: valid.
  const std::string fine = write_file(
      "tls-fixed-ok.toml", "[proxy.tls]\ncertificates = [{ cert = \"" + cert + "\", key = \"" + key +
                               "\" }]\n\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n");
  std::ostringstream ok_out, ok_err;
  EXPECT_EQ(run_check(fine, ok_out, ok_err, kNow), kExitOk);
  EXPECT_EQ(ok_out.str(), fine + ": ok (1 backends, 1 warning)\n");
  EXPECT_EQ(ok_err.str(), "warning: " + fine + ":2:26: proxy.tls.certificates[0].cert: the certificate in \"" + cert +
                              "\" expires on 2023-11-17 23:13:20 UTC, in 3 days\n");
}

// SPEC "Command line": a start-up failure exits 1 with one line saying what and where.
TEST(Cli, AdminPortTakenExitsOneWithOneLine) {
  const LoopbackPort taken(/*listen=*/true);
  ASSERT_NE(taken.port(), 0);
  const LoopbackPort free_port(/*listen=*/false);
  ASSERT_NE(free_port.port(), 0);
  const std::string path = admin_port_taken_config(free_port.port(), taken.port());
  CmdResult r = run("-c " + path);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.err, "ringproxy: cannot listen on 127.0.0.1:" + std::to_string(taken.port()) +
                       " (admin): address already in use\n");
  EXPECT_EQ(r.out, "");
}

// The same failure under valgrind: fail_start() used to free the HealthChecker and the
// AdminServer, whose uv_timer_t and uv_tcp_t were already in uv_close, and then ran the
// loop, which walked them (an "Invalid write" and several "Invalid read"s in uv_run).
TEST(Cli, AdminPortTakenFailsWithoutInvalidAccessUnderValgrind) {
#if defined(__SANITIZE_ADDRESS__)
  // An ASan binary cannot run under valgrind; ASan itself checks this path in that build.
  GTEST_SKIP() << "built with AddressSanitizer, which checks the same path";
#endif
  if (std::system("command -v valgrind >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "valgrind is not on PATH: the start-up failure is not checked for invalid reads and writes";
  }
  const LoopbackPort taken(/*listen=*/true);
  ASSERT_NE(taken.port(), 0);
  const LoopbackPort free_port(/*listen=*/false);
  ASSERT_NE(free_port.port(), 0);
  const std::string path = admin_port_taken_config(free_port.port(), taken.port());
  const std::string log = temp_dir() + "/valgrind.log";
  const std::string out = temp_dir() + "/out", err = temp_dir() + "/err";
  const std::string cmd =
      "valgrind --log-file=" + log + " " + RINGPROXY_BIN + " -c " + path + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  const std::string report = slurp(log);
  ASSERT_TRUE(WIFEXITED(status)) << report;
  EXPECT_EQ(WEXITSTATUS(status), 1) << slurp(err) << report;
  EXPECT_NE(report.find("ERROR SUMMARY:"), std::string::npos) << report;
  EXPECT_EQ(report.find("Invalid read"), std::string::npos) << report;
  EXPECT_EQ(report.find("Invalid write"), std::string::npos) << report;
  EXPECT_EQ(slurp(err), "ringproxy: cannot listen on 127.0.0.1:" + std::to_string(taken.port()) +
                            " (admin): address already in use\n");
}

}  // namespace
}  // namespace ringproxy
