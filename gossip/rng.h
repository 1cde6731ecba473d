// The randomness SWIM uses, injected (STYLE rule 3): a small seeded PRNG value, so that
// a simulation with the same seed replays exactly, and the shell seeds it from the OS
// once at start. Not cryptographic: it picks probe orders, ping-req relays, gossip
// targets and simulated losses, none of which an attacker gains from predicting (the
// authentication the transport adds does not depend on it).
//
// xoshiro256** 1.0 (Blackman and Vigna, https://prng.di.unimi.it/), seeded through
// splitmix64 as its authors recommend. Chosen over std::mt19937_64 because its output is
// the same on every standard library (std distributions are not), and it is 32 bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace ringproxy::gossip {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& word : s_) word = splitmix64(seed);
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n); 0 when n == 0. Lemire's multiply-shift: the bias for n far below
  // 2^64 (our n are member counts) is negligible and the result is portable.
  uint64_t below(uint64_t n) {
    if (n == 0) return 0;
    __extension__ using u128 = unsigned __int128;  // GCC/Clang; -Wpedantic otherwise
    return static_cast<uint64_t>((static_cast<u128>(next()) * n) >> 64);
  }

  // Uniform in [0, 1).
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // A fresh generator whose stream is independent of this one (for giving each
  // simulated member its own).
  Rng split() { return Rng(next()); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

// Fisher-Yates shuffle with our Rng (std::shuffle's draws are implementation-defined).
template <typename Vec>
void shuffle(Vec& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.below(i));
    using std::swap;
    swap(v[i - 1], v[j]);
  }
}

}  // namespace ringproxy::gossip
