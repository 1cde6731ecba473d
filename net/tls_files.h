// What the files named by a Config's TLS settings hold (SPEC "TLS"), checked before
// they are used: by --check, and at start-up and reload, where an error refuses the
// file like a config error. Each problem points at the key that names the file, so it
// prints as "FILE:LINE:COLUMN: key.path: message" like the loader's errors.
//
// Checked, for proxy.tls.certificates[] and upstream_tls.cert/key: the file can be read;
// the cert file holds a PEM certificate (the leaf, then its chain) and every PEM block
// in it parses; the key file holds an unencrypted PEM private key; the key matches the
// leaf; the leaf is valid at `now` (errors), and not within kCertificateExpiryWarning of
// its end (a warning naming the date). For proxy.tls.client_ca and upstream_tls.ca: the
// file can be read and holds at least one PEM certificate. CA certificates' dates are
// not checked: trust stores routinely carry expired roots that no chain uses.
//
// Paths are opened as written: a relative one is relative to the working directory, as
// it is for whatever later loads the same files. No network, no libssl: libcrypto only.
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "config/config.h"

namespace ringproxy {

enum class TlsFileSeverity { kError, kWarning };

struct TlsFileProblem {
  TlsFileSeverity severity = TlsFileSeverity::kError;
  SourcePos pos;        // of the value that names the file
  std::string key;      // that value's key path: "proxy.tls.certificates[1].key"
  std::string message;  // what is wrong, naming the file
  bool operator==(const TlsFileProblem&) const = default;

  // As --check prints it: "FILE:LINE:COLUMN: key: message" (ConfigError's form, FILE
  // being the config file), after "warning: " for a warning.
  std::string to_string(const std::string& config_path) const;
};

// A certificate that ends within this time of `now` is a warning (SPEC "TLS": 14 days).
inline constexpr std::time_t kCertificateExpiryWarning = 14 * 24 * 60 * 60;

// Reads every file `config`'s TLS settings name (proxy.tls when enabled, upstream_tls
// whenever its keys are set) and returns the problems found, in the order their keys
// appear in the config file; empty when all is well. `now` is the time certificates must
// be valid at (time(nullptr) in the proxy; a fixed instant in tests). Blocks on file
// reads: call it where the config is loaded, never on a worker's loop. Never throws but
// std::bad_alloc; thread-safe (OpenSSL 3's error queue is per thread).
std::vector<TlsFileProblem> check_tls_files(const Config& config, std::time_t now);

// True when one of `problems` is an error (not only warnings): the file must be refused.
bool has_tls_file_errors(const std::vector<TlsFileProblem>& problems);

}  // namespace ringproxy
