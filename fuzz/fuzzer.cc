// One libFuzzer binary per entry point of targets.h: CMake compiles this file once per
// target with RINGPROXY_FUZZ_ENTRY set to the function's name. A check that fails is
// reported and aborts, so libFuzzer saves the input like any crash.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string violation = ringproxy::fuzz::RINGPROXY_FUZZ_ENTRY({data, size});
  if (!violation.empty()) {
    std::fprintf(stderr, "\nFINDING: %s\n", violation.c_str());
    std::abort();
  }
  return 0;
}
