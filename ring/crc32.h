// CRC-32 as zlib and nginx compute it (CRC-32/ISO-HDLC: reflected polynomial 0xEDB88320,
// initial value and final XOR 0xFFFFFFFF; crc32("123456789") = 0xCBF43926). Used by the
// nginx-compatible placement (ring.h), which chains the unfinished state across feeds
// as ngx_crc32_update does, hence the three steps.
#pragma once

#include <cstdint>
#include <string_view>

namespace ringproxy::crc32 {

inline constexpr uint32_t kInit = 0xFFFFFFFFu;
uint32_t update(uint32_t state, std::string_view bytes);
inline uint32_t finish(uint32_t state) { return state ^ 0xFFFFFFFFu; }
inline uint32_t of(std::string_view bytes) { return finish(update(kInit, bytes)); }

}  // namespace ringproxy::crc32
