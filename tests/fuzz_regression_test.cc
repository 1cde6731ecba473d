// Replays the fuzz targets' seed corpora (fuzz/corpus/TARGET/) and every finding kept
// in tests/regressions/TARGET/ through the same entry points as the libFuzzer binaries
// (fuzz/targets.h), so that they run under ctest in every build, gcc included.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/targets.h"

namespace ringproxy::fuzz {
namespace {

namespace fs = std::filesystem;
using Entry = std::string (*)(std::span<const uint8_t>);

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every seed and every fixed finding of `target` passes its checks.
void replay(const std::string& target, Entry entry) {
  const fs::path root = RINGPROXY_SOURCE_DIR;
  size_t count = 0;
  for (const fs::path& dir : {root / "fuzz/corpus" / target, root / "tests/regressions" / target}) {
    for (const fs::path& file : files_in(dir)) {
      SCOPED_TRACE(file.string());
      const std::vector<uint8_t> input = read(file);
      EXPECT_EQ(entry(input), "");
      ++count;
    }
  }
  EXPECT_GT(count, 0u) << "no seeds for " << target;
}

TEST(FuzzRegression, Request) { replay("fuzz_request", request); }
TEST(FuzzRegression, Response) { replay("fuzz_response", response); }
TEST(FuzzRegression, H1Response) { replay("fuzz_h1_response", h1_response); }
TEST(FuzzRegression, GossipDecode) { replay("fuzz_gossip_decode", gossip_decode); }
TEST(FuzzRegression, Config) { replay("fuzz_config", config); }
TEST(FuzzRegression, Admin) { replay("fuzz_admin", admin); }
TEST(FuzzRegression, TlsServer) { replay("fuzz_tls_server", tls_server); }
TEST(FuzzRegression, DnsAnswer) { replay("fuzz_dns_answer", dns_answer); }
TEST(FuzzRegression, RouteMatch) { replay("fuzz_route_match", route_match); }
TEST(FuzzRegression, H2Frames) { replay("fuzz_h2_frames", h2_frames); }
TEST(FuzzRegression, H2Client) { replay("fuzz_h2_client", h2_client); }

}  // namespace
}  // namespace ringproxy::fuzz
