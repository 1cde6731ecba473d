// Reading a whole file named by the operator: the config file, and the certificates,
// keys and CA bundles it names (net/tls_files.h).
//
// Thread: any.
#pragma once

#include <cstddef>
#include <string>

namespace ringproxy {

// Far above any config file, certificate chain or CA bundle (Debian's whole trust store
// is 200 KB); stops a path like /dev/zero from being read forever.
inline constexpr size_t kMaxReadFileBytes = 16 * 1024 * 1024;

// Appends the file's bytes to *out; returns 0, or the errno that stopped it (EFBIG past
// `max_bytes`). A regular file is read into one allocation, and the stack buffer is
// wiped after use: a private key's text is left nowhere but in *out.
int read_whole_file(const std::string& path, std::string* out, size_t max_bytes = kMaxReadFileBytes);

}  // namespace ringproxy
