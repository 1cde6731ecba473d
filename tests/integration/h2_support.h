// What the HTTP/2 integration tests share (h2_test.cc, h2_upstream_test.cc): running a
// client tool bounded in time, and reading h2_client.py's JSON lines.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace ringproxy::integration {

// Runs `cmd` under sh with stdout (and stderr) into DIR/NAME.out; its exit code and
// output.
struct Ran {
  int code = -1;
  std::string out;
};
inline Ran run(const TempDir& dir, const std::string& name, const std::string& cmd) {
  const std::string file = dir.file(name + ".out");
  const int rc = std::system(("timeout 120 " + cmd + " > " + file + " 2>&1").c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, read_file(file)};
}

// h2_client.py's lines: one JSON object per request, then the connection's.
struct H2Result {
  std::vector<nlohmann::json> streams;
  nlohmann::json connection;
  std::string raw;
};
inline H2Result parse_h2(const std::string& out) {
  H2Result r;
  r.raw = out;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("path")) {
      r.streams.push_back(j);
    } else {
      r.connection = j;
    }
  }
  return r;
}

}  // namespace ringproxy::integration
