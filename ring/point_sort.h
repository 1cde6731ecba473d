// Ring::build's sort of its points (ring.cc), apart so that tests reach every branch.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ringproxy {

// Sorts points by hash, stably, and fills `index` (2^bits + 1 entries: index[b] = the
// first point whose top `bits` bits are >= b). Points arrive in owner order, so equal
// hashes keep the smaller owner (= the smaller name) first, as SPEC requires.
// A bucket sort on the index's own buckets: one counting pass, one stable scatter, then
// each bucket (~4 points, the hashes being uniform) sorted by insertion. An LSD radix
// sort of the whole 64 bits made eight scatter passes and took 1.7x as long at 160,000
// points (BM_Build/1000); a 2-pass radix sort of the top bits only, 1.1x.
// P has a uint64_t `hash`; bits <= 24 (ring.cc index_bits_for). A bucket larger than
// kInsertionMax all the same (equal hashes, a skewed placement) goes to stable_sort.
inline constexpr ptrdiff_t kInsertionMax = 32;

template <typename P>
void sort_points_by_hash(std::vector<P>& points, unsigned bits, std::vector<uint32_t>& index) {
  const size_t buckets = size_t{1} << bits;
  const auto bucket_of = [bits](uint64_t h) -> size_t { return bits == 0 ? 0 : h >> (64 - bits); };
  index.assign(buckets + 1, 0);
  for (const P& p : points) ++index[bucket_of(p.hash) + 1];
  for (size_t b = 1; b <= buckets; ++b) index[b] += index[b - 1];
  std::vector<P> sorted(points.size());
  {
    std::vector<uint32_t> next(index.begin(), index.end() - 1);
    for (const P& p : points) sorted[next[bucket_of(p.hash)]++] = p;
  }
  const auto by_hash = [](const P& x, const P& y) { return x.hash < y.hash; };
  for (size_t b = 0; b < buckets; ++b) {
    P* const first = sorted.data() + index[b];
    P* const last = sorted.data() + index[b + 1];
    if (last - first > kInsertionMax) {
      std::stable_sort(first, last, by_hash);
      continue;
    }
    for (P* i = first + 1; i < last; ++i) {  // insertion sort: stable (strict <)
      const P v = *i;
      P* j = i;
      for (; j > first && v.hash < (j - 1)->hash; --j) *j = *(j - 1);
      *j = v;
    }
  }
  points.swap(sorted);
}

}  // namespace ringproxy
