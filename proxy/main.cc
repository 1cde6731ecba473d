// ringproxy: a consistent-hash reverse proxy. See README.md and SPEC.md.
#include <iostream>

#include "proxy/cli.h"
#include "proxy/server.h"

int main(int argc, char** argv) {
  using namespace ringproxy;
  const CliOptions opts = parse_cli(argc, argv);
  switch (opts.mode) {
    case CliMode::kHelp:
      print_usage(std::cout);
      return kExitOk;
    case CliMode::kVersion:
      std::cout << version_string() << '\n';
      return kExitOk;
    case CliMode::kUsageError:
      std::cerr << "ringproxy: " << opts.error << "\n";
      print_usage(std::cerr);
      return kExitUsage;
    case CliMode::kCheck:
      return run_check(opts.config_path, std::cout, std::cerr);
    case CliMode::kLookup:
      return run_lookup(opts.config_path, opts.keys, std::cout, std::cerr, opts.pool);
    case CliMode::kShares:
      return run_shares(opts.config_path, opts.compare_path, std::cout, std::cerr, opts.pool);
    case CliMode::kRun:
      return Server(opts.config_path).run();
  }
  return kExitUsage;
}
