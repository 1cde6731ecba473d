#include "proxy/cli.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <ostream>
#include <string_view>

#include "config/config.h"
#include "proxy/discovery_agent.h"
#include "net/tls_context.h"
#include "net/tls_files.h"
#include "ring/ring.h"

namespace ringproxy {

CliOptions parse_cli(int argc, const char* const* argv) {
  CliOptions o;
  bool check = false, lookup = false, shares = false, version = false, help = false, pool_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) {
        o.error = std::string(arg) + " needs a file";
        return o;
      }
      o.config_path = argv[++i];
    } else if (arg.starts_with("--config=")) {
      o.config_path = std::string(arg.substr(9));
    } else if (arg == "--check") {
      check = true;
    } else if (arg == "--lookup") {
      lookup = true;
      // The keys run to the end or to -c; a --pool among them is the option
      // ("--lookup --pool images KEY...").
      for (; i + 1 < argc && std::string_view(argv[i + 1]) != "-c" &&
             std::string_view(argv[i + 1]) != "--config";
           ++i) {
        if (std::string_view(argv[i + 1]) == "--pool") {
          if (i + 2 >= argc) {
            o.error = "--pool needs a pool name";
            return o;
          }
          o.pool = argv[i + 2];
          pool_given = true;
          ++i;
          continue;
        }
        o.keys.emplace_back(argv[i + 1]);
      }
    } else if (arg == "--pool") {
      if (i + 1 >= argc) {
        o.error = "--pool needs a pool name";
        return o;
      }
      o.pool = argv[++i];
      pool_given = true;
    } else if (arg == "--shares") {
      shares = true;
    } else if (arg == "--compare") {
      if (i + 1 >= argc) {
        o.error = "--compare needs a file";
        return o;
      }
      o.compare_path = argv[++i];
    } else if (arg == "--version" || arg == "-V") {
      version = true;
    } else if (arg == "--help" || arg == "-h") {
      help = true;
    } else {
      o.error = "unknown argument '" + std::string(arg) + "'";
      return o;
    }
  }
  if (help) {
    o.mode = CliMode::kHelp;
  } else if (version) {
    o.mode = CliMode::kVersion;
  } else if (int{check} + int{lookup} + int{shares} > 1) {
    o.error = "--check, --lookup and --shares do not go together";
  } else if (!o.compare_path.empty() && !shares) {
    o.error = "--compare goes with --shares";
  } else if (pool_given && !lookup && !shares) {
    o.error = "--pool goes with --lookup or --shares";
  } else if (o.config_path.empty()) {
    o.error = "no config file: give -c FILE";
  } else if (lookup && o.keys.empty()) {
    o.error = "--lookup needs at least one key";
  } else {
    o.mode = check ? CliMode::kCheck : lookup ? CliMode::kLookup : shares ? CliMode::kShares : CliMode::kRun;
  }
  return o;
}

std::string version_string() { return "ringproxy " RINGPROXY_VERSION; }

void print_usage(std::ostream& out) {
  out << "usage: ringproxy -c FILE              run with FILE (also --config FILE)\n"
         "       ringproxy --check -c FILE      validate FILE, print every error\n"
         "       ringproxy -c FILE --lookup KEY...  print each key's node and fallbacks\n"
         "       ringproxy -c FILE --shares [--compare OLD]\n"
         "                                      each node's share of the keys; with OLD, the\n"
         "                                      shares there and the keys that would move\n"
         "       (--lookup and --shares take --pool NAME: that [[pool]]'s ring, not \"default\")\n"
         "       ringproxy --version            print the version\n"
         "       ringproxy --help               this text\n"
         "\n"
         "exit codes: 0 clean exit or valid file, 1 bad config or start-up failure,\n"
         "            2 bad usage\n"
         "signals: SIGHUP reloads the config, SIGTERM/SIGINT drain and exit,\n"
         "         SIGUSR1 reopens the logs\n";
}

namespace {

std::string count_of(size_t n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

}  // namespace

int run_check(const std::string& path, std::ostream& out, std::ostream& err, std::time_t now) {
  const ConfigResult r = load_config_file(path);
  for (const ConfigError& e : r.errors) err << e.to_string() << '\n';
  for (const ConfigError& w : r.warnings) err << "warning: " << w.to_string() << '\n';
  if (!r.ok()) {
    err << path << ": " << count_of(r.errors.size(), "error") << '\n';
    return kExitConfig;
  }
  // The files only once the file itself is valid: their paths and positions come from it.
  const std::vector<TlsFileProblem> problems = check_tls_files(r.config, now);
  for (const TlsFileProblem& p : problems) err << p.to_string(path) << '\n';
  const auto errors = std::ranges::count(problems, TlsFileSeverity::kError, &TlsFileProblem::severity);
  const auto warnings = static_cast<size_t>(std::ssize(problems) - errors) + r.warnings.size();
  if (errors > 0) {
    err << path << ": " << count_of(static_cast<size_t>(errors), "error")
        << (warnings > 0 ? ", " + count_of(warnings, "warning") : "") << '\n';
    return kExitConfig;
  }
  // Then the contexts the proxy would build from them, which OpenSSL may still refuse
  // (a key too weak for the system's security level, a chain it cannot use).
  std::string context_error;
  if (r.config.proxy.tls.enabled &&
      !ServerTlsContext::create(r.config.proxy.tls, std::make_shared<TicketKeys>(), &context_error)) {
    err << path << ": proxy.tls: " << context_error << '\n' << path << ": 1 error\n";
    return kExitConfig;
  }
  for (size_t i = 0; i < r.config.listeners.size(); ++i) {
    const ServerTlsConfig& tls = r.config.listeners[i].tls;
    if (tls.enabled && !ServerTlsContext::create(tls, std::make_shared<TicketKeys>(), &context_error)) {
      err << path << ": listener[" << i << "].tls: " << context_error << '\n' << path << ": 1 error\n";
      return kExitConfig;
    }
  }
  if (!ClientTlsContext::create(r.config.upstream_tls, &context_error)) {
    err << path << ": upstream_tls: " << context_error << '\n' << path << ": 1 error\n";
    return kExitConfig;
  }
  for (const PoolConfig& pool : r.config.pools) {
    if (pool.upstream_tls != r.config.upstream_tls && !ClientTlsContext::create(pool.upstream_tls, &context_error)) {
      err << path << ": pool " << pool.name << ": upstream_tls: " << context_error << '\n' << path << ": 1 error\n";
      return kExitConfig;
    }
  }
  out << path << ": ok (" << r.config.backends.size() << " backends"
      << (r.config.discover.empty() ? "" : ", " + count_of(r.config.discover.size(), "discover source"))
      << (r.config.pools.empty() ? "" : ", " + count_of(r.config.pools.size(), "pool"))
      << (r.config.routes.empty() ? "" : ", " + count_of(r.config.routes.size(), "route"))
      << (r.config.listeners.empty() ? "" : ", " + count_of(r.config.listeners.size(), "listener"))
      << (warnings > 0 ? ", " + count_of(warnings, "warning") : "") << ")\n";
  return kExitOk;
}

namespace {

// The ring of pool `pool` a config file describes (every node up), or null after
// printing why.
std::shared_ptr<const Ring> ring_of(const std::string& path, std::ostream& err, const std::string& pool) {
  ConfigResult r = load_config_file(path);
  for (const ConfigError& e : r.errors) err << e.to_string() << '\n';
  if (!r.ok()) return nullptr;
  if (pool != "default") {
    // The pool's nodes, sources and ring settings in the top level's place.
    const auto it = std::find_if(r.config.pools.begin(), r.config.pools.end(),
                                 [&](const PoolConfig& p) { return p.name == pool; });
    if (it == r.config.pools.end()) {
      err << path << ": no pool named \"" << pool << "\"\n";
      return nullptr;
    }
    r.config.backends = it->backends;
    r.config.discover = it->discover;
    r.config.ring = it->ring;
  }
  std::vector<RingNode> nodes;
  for (const BackendConfig& b : r.config.backends) {
    nodes.push_back({b.name, b.address.to_string(), b.weight});
  }
  // [[discover]] sources: what they resolve to now (as the proxy would start with).
  std::vector<std::string> problems;
  for (const FoundNode& f : resolve_once(r.config, &problems)) {
    const bool taken = std::any_of(nodes.begin(), nodes.end(), [&](const RingNode& n) { return n.name == f.backend.name; });
    if (!taken) nodes.push_back({f.backend.name, f.backend.address.to_string(), f.backend.weight});
  }
  for (const std::string& p : problems) err << path << ": " << p << '\n';
  RingBuildResult built = Ring::build(std::move(nodes), r.config.ring.vnodes, r.config.ring.placement);
  if (!built.ring) err << path << ": " << built.error << '\n';
  return built.ring;
}

const char* placement_name(Placement p) { return p == Placement::kNginx ? "nginx" : "xxh3"; }

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", fraction * 100.0);
  return buf;
}

}  // namespace

int run_shares(const std::string& path, const std::string& compare_path, std::ostream& out,
               std::ostream& err, const std::string& pool) {
  const std::shared_ptr<const Ring> now = ring_of(path, err, pool);
  if (!now) return kExitConfig;
  std::shared_ptr<const Ring> old;
  if (!compare_path.empty() && !(old = ring_of(compare_path, err, pool))) return kExitConfig;
  const std::vector<double> now_shares = now->shares();
  out << path << ": " << now->nodes().size() << " nodes, placement " << placement_name(now->placement())
      << ", " << now->points() << " points\n";
  if (old) {
    out << compare_path << ": " << old->nodes().size() << " nodes, placement " << placement_name(old->placement())
        << ", " << old->points() << " points\n";
  }
  const std::vector<double> old_shares = old ? old->shares() : std::vector<double>{};
  out << "node  weight  share" << (old ? "  share in OLD" : "") << '\n';
  for (NodeIndex i = 0; i < now->nodes().size(); ++i) {
    const RingNode& n = now->nodes()[i];
    out << n.name << "  " << n.weight << "  " << percent(now_shares[i]);
    if (old) {
      const auto j = old->find(n.name);
      out << "  " << (j ? percent(old_shares[*j]) : std::string("(new)"));
    }
    out << '\n';
  }
  if (!old) return kExitOk;
  for (NodeIndex j = 0; j < old->nodes().size(); ++j) {
    if (!now->find(old->nodes()[j].name)) {
      out << old->nodes()[j].name << "  -  (removed)  " << percent(old_shares[j]) << '\n';
    }
  }
  if (old->placement() == now->placement()) {
    out << "keys that move: " << percent(Ring::moved_fraction(*old, *now)) << " (exact)\n";
    return kExitOk;
  }
  // Different key hashes: count over sample keys, each a URI-like string.
  constexpr int kSamples = 1'000'000;
  int moved = 0;
  std::string key;
  for (int k = 0; k < kSamples; ++k) {
    key = "/sample/" + std::to_string(k);
    const auto a = old->lookup(std::string_view(key));
    const auto b = now->lookup(std::string_view(key));
    const bool same = a && b && old->nodes()[*a].name == now->nodes()[*b].name;
    moved += same ? 0 : 1;
  }
  out << "keys that move: " << percent(static_cast<double>(moved) / kSamples) << " (estimated over "
      << kSamples << " sample keys: the placements hash keys differently)\n";
  return kExitOk;
}

int run_lookup(const std::string& path, const std::vector<std::string>& keys,
               std::ostream& out, std::ostream& err, const std::string& pool) {
  const std::shared_ptr<const Ring> built_ring = ring_of(path, err, pool);
  if (!built_ring) return kExitConfig;
  const Ring& ring = *built_ring;
  for (const std::string& key : keys) {
    const uint64_t h = ring.key_hash(key);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    std::vector<std::string_view> order;
    ring.walk(h, [&](NodeIndex i) {
      order.push_back(ring.nodes()[i].name);
      return true;
    });
    out << key << "  hash=" << hex << "  node=";
    if (order.empty()) {
      out << "(none: no node has weight)";
    } else {
      out << order[0] << "  fallbacks=";
      for (size_t i = 1; i < order.size(); ++i) out << (i > 1 ? "," : "") << order[i];
    }
    out << '\n';
  }
  return kExitOk;
}

}  // namespace ringproxy
