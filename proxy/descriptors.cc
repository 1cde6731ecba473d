#include "proxy/descriptors.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace ringproxy {

uint64_t DescriptorBudget::connections() const {
  const uint64_t spoken_for = in_use + kTransient;
  if (limit <= spoken_for + kPerConnection) return 1;
  return (limit - spoken_for) / kPerConnection;
}

ShortfallNote shortfall_note(const DescriptorBudget& budget, uint64_t max_connections, uint64_t hard, bool chosen) {
  const uint64_t needed = budget.needed(max_connections);
  if (needed <= budget.limit) return {};
  ShortfallNote note;
  // budget.needed(1) > limit: not one connection fits beside what is open and the
  // transient reserve (connections() then says 1 all the same, to serve one at a time).
  note.warn = chosen || budget.needed(1) > budget.limit;
  const std::string hard_text = hard == RLIM_INFINITY ? "unlimited" : std::to_string(hard);
  note.text = std::string(chosen ? "" : "the default ") + "proxy.max_connections = " +
              std::to_string(max_connections) + " needs about " + std::to_string(needed) + " file descriptors (" +
              std::to_string(DescriptorBudget::kPerConnection) + " per connection, " + std::to_string(budget.in_use) +
              " open at start, " + std::to_string(DescriptorBudget::kTransient) +
              " for health checks and admin) but RLIMIT_NOFILE is " + std::to_string(budget.limit) +
              " (hard limit " + hard_text + "): about " + std::to_string(budget.connections()) +
              " connections can be served at once, more wait in the listen queue; raise the limit (ulimit -n, "
              "systemd LimitNOFILE=) or lower proxy.max_connections";
  return note;
}

NofileLimit raise_nofile_limit() {
  NofileLimit out;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    out.error = std::strerror(errno);
    return out;
  }
  out.before = out.soft = rl.rlim_cur;
  out.hard = rl.rlim_max;
  if (rl.rlim_cur >= rl.rlim_max) return out;
  rl.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    // An "unlimited" hard limit is refused above fs.nr_open: that is a ceiling then.
    out.error = std::strerror(errno);
    return out;
  }
  out.soft = rl.rlim_cur;
  return out;
}

std::optional<uint64_t> count_open_descriptors() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return std::nullopt;
  uint64_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // the directory's own descriptor, open while it was read
}

bool descriptors_free(int fd, int n) {
  std::vector<int> taken;
  taken.reserve(static_cast<size_t>(n > 0 ? n : 0));
  while (static_cast<int>(taken.size()) < n) {
    const int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) break;
    taken.push_back(d);
  }
  for (const int d : taken) ::close(d);
  return static_cast<int>(taken.size()) == n;
}

}  // namespace ringproxy
