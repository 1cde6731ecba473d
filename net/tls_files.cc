#include "net/tls_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <new>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>

#include "config/read_file.h"

namespace ringproxy {

std::string TlsFileProblem::to_string(const std::string& config_path) const {
  // A position of 0 (a Config built in code) prints as 1:1, as the loader's errors do.
  const ConfigError error{config_path, std::max<uint32_t>(pos.line, 1), std::max<uint32_t>(pos.column, 1),
                          key, message};
  return (severity == TlsFileSeverity::kWarning ? "warning: " : "") + error.to_string();
}

bool has_tls_file_errors(const std::vector<TlsFileProblem>& problems) {
  return std::ranges::any_of(problems,
                             [](const TlsFileProblem& p) { return p.severity == TlsFileSeverity::kError; });
}

namespace {

struct FreeBio {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct FreeX509 {
  void operator()(X509* x) const { X509_free(x); }
};
struct FreePkey {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, FreeX509>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, FreePkey>;

// A private key's text, wiped when done with (read_whole_file reads a regular file into
// one allocation, so no earlier copy is left in freed memory).
class SecretText {
 public:
  SecretText() = default;
  SecretText(const SecretText&) = delete;
  SecretText& operator=(const SecretText&) = delete;
  ~SecretText() { OPENSSL_cleanse(text.data(), text.size()); }
  std::string text;
};

// PEM reads are given this instead of OpenSSL's default, which would prompt on the
// terminal for the passphrase of an encrypted block. `user` is a bool set when asked.
int refuse_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* user) {
  *static_cast<bool*>(user) = true;
  return -1;
}

// A read-only BIO over `text` (at most kMaxReadFileBytes, so its size fits an int).
std::unique_ptr<BIO, FreeBio> memory_bio(const std::string& text) {
  std::unique_ptr<BIO, FreeBio> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) throw std::bad_alloc();
  return bio;
}

// The reason of the last OpenSSL error ("bad base64 decode"), or "unknown error".
std::string openssl_reason() {
  const char* reason = ERR_reason_error_string(ERR_peek_last_error());
  return reason != nullptr ? reason : "unknown error";
}

// True when `text` has a PEM block labelled "... PRIVATE KEY" (PKCS #8, plain or
// encrypted; the traditional RSA, EC and DSA forms). OpenSSL 3's decoders report a file
// without one as "unsupported", which would not tell the user what is wrong.
bool has_private_key_block(std::string_view text) {
  static constexpr std::string_view kBegin = "-----BEGIN ", kEnd = "-----";
  for (size_t at = text.find(kBegin); at != std::string_view::npos; at = text.find(kBegin, at + 1)) {
    const size_t label = at + kBegin.size();
    const size_t end = text.find(kEnd, label);
    if (end == std::string_view::npos) return false;
    if (text.substr(label, end - label).ends_with("PRIVATE KEY")) return true;
  }
  return false;
}

// True when the last error only says no further PEM block was found: the end of input.
bool no_more_pem() {
  const unsigned long e = ERR_peek_last_error();
  return e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
}

std::optional<std::time_t> time_of(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return timegm(&tm);
}

std::string date_text(std::time_t t) {
  std::tm tm{};
  char buf[64];
  if (gmtime_r(&t, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) {
    return "(a date out of range)";
  }
  return buf;
}

std::string in_days(std::time_t seconds) {
  const std::time_t days = seconds / (24 * 60 * 60);
  if (days == 0) return "in less than a day";
  return "in " + std::to_string(days) + (days == 1 ? " day" : " days");
}

std::string in_file(const std::string& path) {
  // Paths are shown as written; quoted so that spaces and odd bytes are visible.
  std::string out = "\"";
  for (const char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
  }
  return out + "\"";
}

// One named file, as the config wrote it.
struct FileRef {
  const std::string& path;
  SourcePos pos;
  std::string key;
};

class Checker {
 public:
  explicit Checker(std::time_t now) : now_(now) {}

  // A certificate with its key: proxy.tls.certificates[i], upstream_tls.cert/key.
  void check_pair(const FileRef& cert, const FileRef& key) {
    const std::vector<X509Ptr> chain = certificates(cert, "");
    if (!chain.empty()) check_dates(cert, chain.front().get());
    const PkeyPtr private_key = read_private_key(key);
    if (chain.empty() || !private_key) return;
    ERR_clear_error();
    if (X509_check_private_key(chain.front().get(), private_key.get()) != 1) {
      error(key, "the private key in " + in_file(key.path) + " does not match the certificate in " +
                     in_file(cert.path));
    }
    ERR_clear_error();
  }

  // A CA bundle: proxy.tls.client_ca, upstream_tls.ca.
  void check_bundle(const FileRef& bundle) {
    (void)certificates(bundle, " (a PEM bundle of CA certificates is expected)");
  }

  std::vector<TlsFileProblem> take() && {
    std::ranges::stable_sort(problems_, [](const TlsFileProblem& a, const TlsFileProblem& b) {
      return std::pair(a.pos.line, a.pos.column) < std::pair(b.pos.line, b.pos.column);
    });
    return std::move(problems_);
  }

 private:
  void error(const FileRef& file, std::string message) {
    problems_.push_back({TlsFileSeverity::kError, file.pos, file.key, std::move(message)});
  }
  void warning(const FileRef& file, std::string message) {
    problems_.push_back({TlsFileSeverity::kWarning, file.pos, file.key, std::move(message)});
  }

  bool read(const FileRef& file, std::string* text) {
    if (const int e = read_whole_file(file.path, text); e != 0) {
      error(file, "cannot read " + in_file(file.path) + ": " + std::generic_category().message(e));
      return false;
    }
    return true;
  }

  // Every certificate in the file, in order; none after recording why. A block that
  // does not parse is an error even after good ones: loading the chain would fail there.
  std::vector<X509Ptr> certificates(const FileRef& file, std::string_view hint) {
    std::string text;
    if (!read(file, &text)) return {};
    ERR_clear_error();
    const auto bio = memory_bio(text);
    std::vector<X509Ptr> out;
    bool asked = false;
    while (X509* x = PEM_read_bio_X509_AUX(bio.get(), nullptr, refuse_passphrase, &asked)) {
      out.emplace_back(x);
    }
    if (!no_more_pem()) {
      error(file, "cannot parse certificate " + std::to_string(out.size() + 1) + " in " + in_file(file.path) +
                      ": " + openssl_reason());
      out.clear();
    } else if (out.empty()) {
      error(file, "no PEM certificate in " + in_file(file.path) + std::string(hint));
    }
    ERR_clear_error();
    return out;
  }

  PkeyPtr read_private_key(const FileRef& file) {
    SecretText secret;
    if (!read(file, &secret.text)) return nullptr;
    ERR_clear_error();
    const auto bio = memory_bio(secret.text);
    bool asked = false;
    PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, &asked));
    if (!key) {
      if (asked) {
        error(file, "the private key in " + in_file(file.path) +
                        " is encrypted, and ringproxy asks for no passphrase: store it decrypted "
                        "(openssl pkey -in KEY -out PLAIN), readable by ringproxy only");
      } else if (!has_private_key_block(secret.text)) {
        error(file, "no PEM private key in " + in_file(file.path));
      } else {
        error(file, "cannot parse the private key in " + in_file(file.path) + ": " + openssl_reason());
      }
    }
    ERR_clear_error();
    return key;
  }

  void check_dates(const FileRef& file, X509* cert) {
    const std::optional<std::time_t> not_before = time_of(X509_get0_notBefore(cert));
    const std::optional<std::time_t> not_after = time_of(X509_get0_notAfter(cert));
    if (!not_before || !not_after) {
      error(file, "the certificate in " + in_file(file.path) + " has validity dates that do not parse");
    } else if (now_ < *not_before) {
      error(file, "the certificate in " + in_file(file.path) + " is not valid before " + date_text(*not_before));
    } else if (now_ > *not_after) {
      error(file, "the certificate in " + in_file(file.path) + " expired on " + date_text(*not_after));
    } else if (*not_after - now_ < kCertificateExpiryWarning) {
      warning(file, "the certificate in " + in_file(file.path) + " expires on " + date_text(*not_after) + ", " +
                        in_days(*not_after - now_));
    }
  }

  std::time_t now_;
  std::vector<TlsFileProblem> problems_;
};

}  // namespace

std::vector<TlsFileProblem> check_tls_files(const Config& config, std::time_t now) {
  Checker checker(now);
  const auto check_server = [&](const ServerTlsConfig& server, const std::string& prefix) {
    if (!server.enabled) return;
    for (size_t i = 0; i < server.certificates.size(); ++i) {
      const TlsCertificateConfig& c = server.certificates[i];
      const std::string key = prefix + ".certificates[" + std::to_string(i) + "]";
      checker.check_pair({c.cert, c.cert_pos, key + ".cert"}, {c.key, c.key_pos, key + ".key"});
    }
    if (!server.client_ca.empty()) checker.check_bundle({server.client_ca, server.client_ca_pos, prefix + ".client_ca"});
  };
  check_server(config.proxy.tls, "proxy.tls");
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    check_server(config.listeners[i].tls, "listener[" + std::to_string(i) + "].tls");
  }
  const auto check_upstream = [&](const UpstreamTlsConfig& upstream, const std::string& key) {
    if (!upstream.ca.empty()) checker.check_bundle({upstream.ca, upstream.ca_pos, key + ".ca"});
    // The loader refuses one without the other.
    if (!upstream.cert.empty() && !upstream.key.empty()) {
      checker.check_pair({upstream.cert, upstream.cert_pos, key + ".cert"}, {upstream.key, upstream.key_pos, key + ".key"});
    }
  };
  check_upstream(config.upstream_tls, "upstream_tls");
  // A pool's own [upstream_tls] (one it took from the top level is checked above).
  for (size_t i = 0; i < config.pools.size(); ++i) {
    if (config.pools[i].upstream_tls != config.upstream_tls) {
      check_upstream(config.pools[i].upstream_tls, "pool[" + std::to_string(i) + "].upstream_tls");
    }
  }
  return std::move(checker).take();
}

}  // namespace ringproxy
