#include "tests/integration/tls_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <utility>

#include "tests/support/tls_certs.h"

namespace ringproxy::integration {
namespace {

int millis_left(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// OpenSSL's error queue as one line, emptied. The same as net/'s tls_error_text, kept
// apart on purpose (see tls_client.h): the test client links nothing of net/.
std::string openssl_errors() {
  std::string out;
  char buf[256];
  while (const unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

}  // namespace

TlsClient::TlsClient(uint16_t port, const TlsOptions& options) {
  // OpenSSL writes with write(): a server that has closed would SIGPIPE the test.
  ::signal(SIGPIPE, SIG_IGN);
  handshake(port, options);
}

TlsClient::~TlsClient() {
  // Our close_notify, as a polite client sends (no wait for the server's). Without it
  // SSL_free marks the session not resumable (ssl_clear_bad_session), and so the
  // SSL_SESSION that session() shared. Not once wait_close has seen the server end the
  // connection: there is no one left to tell.
  if (ok_ && !closed_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  if (fd_ >= 0) ::close(fd_);
}

template <class Op>
TlsClient::Step TlsClient::drive(Op op, Clock::time_point deadline) {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int r = op();
    if (r == 1) return Step::ok;
    const int e = SSL_get_error(ssl_, r);
    short events = 0;
    if (e == SSL_ERROR_WANT_READ) {
      events = POLLIN;
    } else if (e == SSL_ERROR_WANT_WRITE) {
      events = POLLOUT;
    } else if (e == SSL_ERROR_ZERO_RETURN) {
      error_ = "close_notify";
      return Step::closed;
    } else if (e == SSL_ERROR_SYSCALL) {
      const std::string queued = openssl_errors();
      error_ = errno != 0 ? std::string(std::strerror(errno)) : "EOF";
      if (!queued.empty()) error_ += " (" + queued + ")";
      return Step::closed;
    } else {
      error_ = "SSL error " + std::to_string(e) + ": " + openssl_errors();
      return Step::error;
    }
    pollfd p{fd_, events, 0};
    const int left = millis_left(deadline);
    if (left == 0 || ::poll(&p, 1, left) == 0) {
      error_ = "timeout";
      return Step::timeout;
    }
  }
}

bool TlsClient::fill(Clock::time_point deadline, Response* r) {
  if (!ok_) {
    r->error = "no TLS connection";
    return false;
  }
  char buf[16384];
  size_t got = 0;
  const Step s = drive([&] { return SSL_read_ex(ssl_, buf, sizeof buf, &got); }, deadline);
  if (s == Step::ok) {
    in_.append(buf, got);
    return true;
  }
  r->error = (s == Step::timeout ? "timeout: " : "closed: ") + error_;
  r->closed = s != Step::timeout;
  return false;
}

Session TlsClient::session() const { return Session(ssl_ != nullptr ? SSL_get1_session(ssl_) : nullptr); }

bool TlsClient::send(std::string_view bytes) {
  const auto deadline = Clock::now() + timeout_;
  while (!bytes.empty()) {
    size_t written = 0;
    ERR_clear_error();
    const int r = SSL_write_ex(ssl_, bytes.data(), bytes.size(), &written);
    if (r == 1) {
      bytes.remove_prefix(written);
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
      error_ = "write: SSL error " + std::to_string(e) + ": " + openssl_errors() + " " + std::strerror(errno);
      return false;
    }
    pollfd p{fd_, static_cast<short>(POLLIN | (e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0)), 0};
    const int left = millis_left(deadline);
    if (left == 0 || ::poll(&p, 1, left) == 0) {
      error_ = "write: timeout";
      return false;
    }
    if ((p.revents & POLLIN) != 0) {
      // OpenSSL allows a read while a write waits; the write is retried as it was.
      char buf[16384];
      size_t got = 0;
      ERR_clear_error();
      if (SSL_read_ex(ssl_, buf, sizeof buf, &got) == 1) {
        in_.append(buf, got);
      } else {
        const int re = SSL_get_error(ssl_, 0);
        if (re != SSL_ERROR_WANT_READ && re != SSL_ERROR_WANT_WRITE) {
          error_ = "read while writing: SSL error " + std::to_string(re) + ": " + openssl_errors();
          return false;
        }
      }
    }
  }
  return true;
}

Response TlsClient::request(std::string_view method, std::string_view target, Headers headers, std::string_view body) {
  bool has_host = false;
  for (const auto& [name, value] : headers) has_host |= strcasecmp(name.c_str(), "host") == 0;
  if (!has_host) headers.emplace_back("Host", "tls.test");
  Response r;
  if (!ok_) {
    r.error = "no TLS connection: " + error_;
    return r;
  }
  if (!send(format_request(method, target, headers, body))) {
    r.error = "send: " + error_;
    return r;
  }
  return read_response(method == "HEAD");
}

Response TlsClient::read_response(bool head) {
  Response r;
  const auto deadline = Clock::now() + timeout_;
  size_t end;
  while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill(deadline, &r)) return r;
  }
  std::istringstream lines(in_.substr(0, end));
  std::string line;
  std::getline(lines, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) {
    r.error = "not a status line: " + line;
    return r;
  }
  r.http_major = 1;
  r.http_minor = line[7] - '0';
  r.status = std::stoi(line.substr(9, 3));
  r.reason = line.size() > 13 ? line.substr(13) : "";
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    r.headers.emplace_back(line.substr(0, colon), value);
  }
  in_.erase(0, end + 4);
  const bool bodiless = head || r.status == 204 || r.status == 304 || r.status < 200;
  if (bodiless) {
    // nothing
  } else if (strcasecmp(r.header("Transfer-Encoding").c_str(), "chunked") == 0) {
    r.chunked = true;
    for (;;) {
      size_t eol;
      while ((eol = in_.find("\r\n")) == std::string::npos) {
        if (!fill(deadline, &r)) return r;
      }
      const size_t size = std::stoul(in_.substr(0, eol), nullptr, 16);
      while (in_.size() < eol + 2 + size + 2) {
        if (!fill(deadline, &r)) return r;
      }
      r.body += in_.substr(eol + 2, size);
      in_.erase(0, eol + 2 + size + 2);
      if (size == 0) break;  // no trailers from these servers
    }
  } else if (r.has_header("Content-Length")) {
    const size_t length = std::stoul(r.header("Content-Length"));
    while (in_.size() < length) {
      if (!fill(deadline, &r)) return r;
    }
    r.body = in_.substr(0, length);
    in_.erase(0, length);
  } else {
    Response eof;
    while (fill(deadline, &eof)) {
    }
    r.body = std::move(in_);
    in_.clear();
    r.closed = true;
  }
  r.body_bytes = r.body.size();
  r.keep_alive = strcasecmp(r.header("Connection").c_str(), "close") != 0;
  return r;
}

std::optional<std::string> TlsClient::read_exact(size_t n) {
  const auto deadline = Clock::now() + timeout_;
  Response r;
  while (in_.size() < n) {
    if (!fill(deadline, &r)) return std::nullopt;
  }
  std::string out = in_.substr(0, n);
  in_.erase(0, n);
  return out;
}

bool TlsClient::close_notify() {
  ERR_clear_error();
  return ok_ && SSL_shutdown(ssl_) >= 0;
}

std::string TlsClient::wait_close(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  size_t got = 0;
  const Step s = drive([&] { return SSL_read_ex(ssl_, buf, sizeof buf, &got); }, deadline);
  if (s == Step::ok) return "data";
  if (s == Step::timeout) return "timeout";
  closed_ = true;
  if (error_ == "close_notify") return "close_notify";
  // OpenSSL 3 reports an EOF without close_notify as an SSL error ("unexpected eof").
  if (error_ == "EOF" || (s == Step::error && error_.find("unexpected eof") != std::string::npos)) return "eof";
  return error_.find("reset") != std::string::npos ? "reset" : "error: " + error_;
}

void TlsClient::handshake(uint16_t port, const TlsOptions& o) {
  timeout_ = o.timeout;
  const auto deadline = Clock::now() + o.timeout;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = std::string("socket: ") + std::strerror(errno);
    return;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    if (errno != EINPROGRESS) {
      error_ = std::string("connect: ") + std::strerror(errno);
      return;
    }
    pollfd p{fd_, POLLOUT, 0};
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (::poll(&p, 1, millis_left(deadline)) != 1 || ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0 ||
        so_error != 0) {
      error_ = std::string("connect: ") + (so_error != 0 ? std::strerror(so_error) : "timeout");
      return;
    }
  }
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (o.security_level >= 0) SSL_CTX_set_security_level(ctx_, o.security_level);
  if (o.min_version != 0) SSL_CTX_set_min_proto_version(ctx_, o.min_version);
  if (o.max_version != 0) SSL_CTX_set_max_proto_version(ctx_, o.max_version);
  if (!o.ciphers.empty() && SSL_CTX_set_cipher_list(ctx_, o.ciphers.c_str()) != 1) {
    error_ = "client cipher list refused locally: " + openssl_errors();
    return;
  }
  if (!o.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_, o.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, o.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      error_ = "client certificate: " + openssl_errors();
      return;
    }
  }
  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, o.ca_file.c_str(), nullptr) != 1) {
      error_ = "CA file: " + openssl_errors();
      return;
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  if (!o.sni.empty()) {
    // SSL_set_tlsext_host_name, without its C cast.
    SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(o.sni.c_str()));
    if (!o.ca_file.empty()) SSL_set1_host(ssl_, o.sni.c_str());
  }
  if (!o.alpn.empty()) {
    std::string wire;
    for (const std::string& p : o.alpn) wire += static_cast<char>(p.size()) + p;
    SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
  }
  if (o.session != nullptr) SSL_set_session(ssl_, o.session);
  if (drive([&] { return SSL_connect(ssl_); }, deadline) != Step::ok) {
    error_ = "handshake: " + error_;
    return;
  }
  ok_ = true;
  if (X509* peer = SSL_get1_peer_certificate(ssl_)) {
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    peer_cn = cn;
    BIO* mem = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(mem, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
    peer_subject = test::bio_text(mem);
    BIO_free(mem);
    auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(peer, NID_subject_alt_name, nullptr, nullptr));
    for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      peer_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName)),
                              static_cast<size_t>(ASN1_STRING_length(n->d.dNSName)));
    }
    GENERAL_NAMES_free(sans);
    X509_free(peer);
  }
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  if (p != nullptr) alpn.assign(reinterpret_cast<const char*>(p), len);
  version = SSL_get_version(ssl_);
  cipher = SSL_get_cipher_name(ssl_);
  resumed = SSL_session_reused(ssl_) == 1;
  if (!o.ca_file.empty()) verify_result = SSL_get_verify_result(ssl_);
}

}  // namespace ringproxy::integration
