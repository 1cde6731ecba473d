// The command line of SPEC.md "Command line", parsed into a value, and the commands
// that need no event loop (--check, --lookup, --version, --help).
#pragma once

#include <ctime>
#include <iosfwd>
#include <string>
#include <vector>

#include "config/config.h"

namespace ringproxy {

enum class CliMode { kRun, kCheck, kLookup, kShares, kVersion, kHelp, kUsageError };

struct CliOptions {
  CliMode mode = CliMode::kUsageError;
  std::string config_path;
  std::vector<std::string> keys;  // --lookup KEY...
  std::string compare_path;       // --shares --compare OLD
  std::string pool = "default";   // --pool NAME, with --lookup or --shares
  std::string error;              // kUsageError: what was wrong
};

// argv[0] is the program name. Never exits or prints.
CliOptions parse_cli(int argc, const char* const* argv);

// Exit codes of SPEC: 0 clean, 1 bad config or start-up failure, 2 bad usage.
constexpr int kExitOk = 0;
constexpr int kExitConfig = 1;
constexpr int kExitUsage = 2;

void print_usage(std::ostream& out);
std::string version_string();

// --check: prints every error of the file to `err` (one per line) and a summary to
// `out`, warnings ("warning: " and the position) to `err` too; returns kExitOk when the
// file is valid, kExitConfig when not. A valid file's
// TLS files are then checked as of `now` (net/tls_files.h) and their problems printed
// the same way, warnings after "warning: "; an error among them makes it kExitConfig,
// warnings alone do not.
int run_check(const std::string& path, std::ostream& out, std::ostream& err,
              std::time_t now = std::time(nullptr));

// --lookup KEY...: builds the configured ring and prints, per key, its hash, node and
// fallbacks in ring order. Health is not known offline: every node counts as up. The
// nodes of [[discover]] sources are resolved first (proxy/discovery_agent.h).
// `pool`: whose ring ("default": the top level's; else a [[pool]]'s name).
int run_lookup(const std::string& path, const std::vector<std::string>& keys,
               std::ostream& out, std::ostream& err, const std::string& pool = "default");

// --shares [--compare OLD]: each node's share of the keys under the file's ring, and with
// OLD (another config, or the same file with another placement) each node's share there
// and the fraction of keys that would move from OLD to this file. Exact (measured over
// the hash space) when both place keys with the same hash; estimated over 1,000,000
// sample keys when the placements differ (their key hashes are not comparable).
// `pool` as for run_lookup, in both files.
int run_shares(const std::string& path, const std::string& compare_path, std::ostream& out,
               std::ostream& err, const std::string& pool = "default");

}  // namespace ringproxy
