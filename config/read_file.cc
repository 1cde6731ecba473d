#include "config/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ringproxy {

int read_whole_file(const std::string& path, std::string* out, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0) {
    out->reserve(out->size() + std::min(static_cast<size_t>(st.st_size), max_bytes) + 1);
  }
  int error = 0;
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      if (out->size() + static_cast<size_t>(n) > max_bytes) {
        error = EFBIG;
        break;
      }
      out->append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      error = errno;
      break;
    }
  }
  explicit_bzero(buf, sizeof buf);  // it may have held a private key
  ::close(fd);
  return error;
}

}  // namespace ringproxy
