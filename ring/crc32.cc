#include "ring/crc32.h"

#include <array>

namespace ringproxy::crc32 {
namespace {

// One entry per byte value: that byte's contribution shifted through eight rounds of
// the reflected polynomial, computed at compile time.
constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kTable = make_table();

}  // namespace

uint32_t update(uint32_t state, std::string_view bytes) {
  for (const char ch : bytes) {
    state = kTable[(state ^ static_cast<unsigned char>(ch)) & 0xFF] ^ (state >> 8);
  }
  return state;
}

}  // namespace ringproxy::crc32
