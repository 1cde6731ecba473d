#include "proxy/cli.h"

#include <cstdio>
#include <ostream>
#include <string_view>

#include "config/config.h"
#include "ring/ring.h"

namespace ringproxy {

CliOptions parse_cli(int argc, const char* const* argv) {
  CliOptions o;
  bool check = false, lookup = false, version = false, help = false;
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
      for (; i + 1 < argc && std::string_view(argv[i + 1]) != "-c" &&
             std::string_view(argv[i + 1]) != "--config";
           ++i) {
        o.keys.emplace_back(argv[i + 1]);
      }
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
  } else if (check && lookup) {
    o.error = "--check and --lookup do not go together";
  } else if (o.config_path.empty()) {
    o.error = "no config file: give -c FILE";
  } else if (lookup && o.keys.empty()) {
    o.error = "--lookup needs at least one key";
  } else {
    o.mode = check ? CliMode::kCheck : lookup ? CliMode::kLookup : CliMode::kRun;
  }
  return o;
}

std::string version_string() { return "ringproxy " RINGPROXY_VERSION; }

void print_usage(std::ostream& out) {
  out << "usage: ringproxy -c FILE              run with FILE (also --config FILE)\n"
         "       ringproxy --check -c FILE      validate FILE, print every error\n"
         "       ringproxy -c FILE --lookup KEY...  print each key's node and fallbacks\n"
         "       ringproxy --version            print the version\n"
         "       ringproxy --help               this text\n"
         "\n"
         "exit codes: 0 clean exit or valid file, 1 bad config or start-up failure,\n"
         "            2 bad usage\n"
         "signals: SIGHUP reloads the config, SIGTERM/SIGINT drain and exit,\n"
         "         SIGUSR1 reopens the logs\n";
}

int run_check(const std::string& path, std::ostream& out, std::ostream& err) {
  const ConfigResult r = load_config_file(path);
  for (const ConfigError& e : r.errors) err << e.to_string() << '\n';
  if (!r.ok()) {
    err << path << ": " << r.errors.size() << (r.errors.size() == 1 ? " error" : " errors")
        << '\n';
    return kExitConfig;
  }
  out << path << ": ok (" << r.config.backends.size() << " backends)\n";
  return kExitOk;
}

int run_lookup(const std::string& path, const std::vector<std::string>& keys,
               std::ostream& out, std::ostream& err) {
  const ConfigResult r = load_config_file(path);
  for (const ConfigError& e : r.errors) err << e.to_string() << '\n';
  if (!r.ok()) return kExitConfig;
  std::vector<RingNode> nodes;
  for (const BackendConfig& b : r.config.backends) {
    nodes.push_back({b.name, b.address.to_string(), b.weight});
  }
  const RingBuildResult built = Ring::build(std::move(nodes), r.config.ring.vnodes, r.config.ring.placement);
  if (!built.ring) {
    err << path << ": " << built.error << '\n';
    return kExitConfig;
  }
  const Ring& ring = *built.ring;
  for (const std::string& key : keys) {
    const uint64_t h = built.ring->key_hash(key);
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
