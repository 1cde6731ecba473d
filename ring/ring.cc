#include "ring/ring.h"

#include "ring/crc32.h"
#include "ring/point_sort.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace ringproxy {
namespace {

// Sums of arcs reach 2^64 exactly, one past uint64_t.
__extension__ typedef unsigned __int128 uint128;

// Index bits for P points: about 4 points per bucket, so the scan after the index
// touches one cache line, and the index (4 bytes per bucket) stays a sixteenth of the
// points (16 bytes each). At 160,000 points: 2^15 buckets, 128 KiB.
unsigned index_bits_for(size_t points) {
  if (points < 8) return 0;
  const unsigned bits = static_cast<unsigned>(std::bit_width(points / 4)) - 1;
  return std::min(bits, 24u);
}

// Appends a length-prefixed field, so that no two node lists serialise alike.
void append_field(std::string& out, std::string_view field) {
  const uint64_t n = field.size();
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out.append(field);
}

}  // namespace

uint64_t Ring::hash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

uint64_t Ring::nginx_hash(std::string_view key) { return uint64_t{crc32::of(key)} << 32; }

namespace {

// nginx's points for one server (ring.h): `count` chained CRC-32s, each passed to emit
// as a 64-bit ring position.
template <typename Emit>
void nginx_points(std::string_view address, uint64_t count, Emit&& emit) {
  std::string_view host = address, port;
  for (size_t j = 0; j < address.size(); ++j) {
    const char c = address[address.size() - j - 1];
    if (c == ':') {
      host = address.substr(0, address.size() - j - 1);
      port = address.substr(address.size() - j);
      break;
    }
    if (c < '0' || c > '9') break;
  }
  uint32_t base = crc32::update(crc32::kInit, host);
  base = crc32::update(base, std::string_view("\0", 1));
  base = crc32::update(base, port);
  uint32_t prev = 0;
  for (uint64_t j = 0; j < count; ++j) {
    const char le[4] = {static_cast<char>(prev & 0xFF), static_cast<char>((prev >> 8) & 0xFF),
                        static_cast<char>((prev >> 16) & 0xFF), static_cast<char>((prev >> 24) & 0xFF)};
    const uint32_t h = crc32::finish(crc32::update(base, std::string_view(le, 4)));
    emit(uint64_t{h} << 32);
    prev = h;
  }
}

}  // namespace

RingBuildResult Ring::build(std::vector<RingNode> nodes, uint32_t vnodes, Placement placement) {
  if (vnodes == 0) return {nullptr, "vnodes must be at least 1"};
  // nginx: 160 points per unit of weight, whatever vnodes says.
  const uint32_t per_weight = placement == Placement::kNginx ? kNginxPointsPerWeight : vnodes;
  std::sort(nodes.begin(), nodes.end(),
            [](const RingNode& a, const RingNode& b) { return a.name < b.name; });
  size_t total_points = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].name.empty()) return {nullptr, "a node has an empty name"};
    if (i > 0 && nodes[i].name == nodes[i - 1].name) {
      return {nullptr, "duplicate node name \"" + nodes[i].name + "\""};
    }
    total_points += size_t{nodes[i].weight} * per_weight;
    if (total_points > kMaxPoints) {
      return {nullptr, "too many ring points (vnodes x total weight above " +
                           std::to_string(kMaxPoints) + ")"};
    }
  }

  auto ring = std::shared_ptr<Ring>(new Ring());
  ring->vnodes_ = vnodes;
  ring->placement_ = placement;

  std::vector<Point>& points = ring->points_;
  points.reserve(total_points);
  std::string label;
  for (NodeIndex owner = 0; owner < nodes.size(); ++owner) {
    const RingNode& node = nodes[owner];
    const uint64_t count = uint64_t{node.weight} * per_weight;
    if (count > 0) ++ring->nodes_with_points_;
    if (placement == Placement::kNginx) {
      nginx_points(node.address, count, [&](uint64_t h) { points.push_back({h, owner}); });
      continue;
    }
    // "NAME#j": the digits are written in place after the prefix, no copy per point.
    label.assign(node.name);
    label.push_back('#');
    const size_t prefix = label.size();
    label.resize(prefix + 20);  // room for any uint64_t
    char* const digits = label.data() + prefix;
    for (uint64_t j = 0; j < count; ++j) {
      const char* const end = std::to_chars(digits, digits + 20, j).ptr;
      points.push_back({XXH3_64bits(label.data(), static_cast<size_t>(end - label.data())), owner});
    }
  }
  const unsigned bits = index_bits_for(points.size());
  ring->index_shift_ = 64 - bits;
  sort_points_by_hash(points, bits, ring->index_);

  std::string canon;
  append_field(canon, std::to_string(vnodes));
  if (placement == Placement::kNginx) append_field(canon, "placement=nginx");
  for (const RingNode& node : nodes) {
    append_field(canon, node.name);
    append_field(canon, node.address);
    append_field(canon, std::to_string(node.weight));
  }
  const XXH128_hash_t digest = XXH3_128bits(canon.data(), canon.size());
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(digest.high64),
                static_cast<unsigned long long>(digest.low64));
  ring->fingerprint_ = hex;

  ring->nodes_ = std::move(nodes);
  return {std::move(ring), {}};
}

std::optional<NodeIndex> Ring::find(std::string_view name) const {
  auto it = std::lower_bound(nodes_.begin(), nodes_.end(), name,
                             [](const RingNode& n, std::string_view v) { return n.name < v; });
  if (it == nodes_.end() || it->name != name) return std::nullopt;
  return static_cast<NodeIndex>(it - nodes_.begin());
}

uint64_t Ring::load_bound(double load_factor, uint64_t total_in_flight, size_t usable_count) {
  if (usable_count == 0) return 0;
  const double bound =
      std::ceil(load_factor * static_cast<double>(total_in_flight + 1) /
                static_cast<double>(usable_count));
  return static_cast<uint64_t>(bound);
}

std::vector<double> Ring::shares() const {
  std::vector<double> out(nodes_.size(), 0.0);
  const size_t n = points_.size();
  if (n == 0) return out;
  // Point i owns the arc (point i-1, point i]; point 0 also owns everything past
  // the last point. Unsigned subtraction wraps, which makes point 0's arc come out right.
  if (n == 1) {
    out[points_[0].owner] = 1.0;
    return out;
  }
  std::vector<uint128> owned(nodes_.size(), 0);
  for (size_t i = 0; i < n; ++i) {
    owned[points_[i].owner] += points_[i].hash - points_[i == 0 ? n - 1 : i - 1].hash;
  }
  const double space = 18446744073709551616.0;  // 2^64
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(owned[i]) / space;
  return out;
}

double Ring::moved_fraction(const Ring& a, const Ring& b) {
  if (a.empty() && b.empty()) return 0.0;
  if (a.empty() || b.empty()) return 1.0;
  // Sweep the union of both rings' points. Between two consecutive boundaries both
  // owners are constant: the owner in each ring of the next point at or after.
  const auto owner_name = [](const Ring& r, size_t i) -> const std::string& {
    return r.nodes_[r.points_[i == r.points_.size() ? 0 : i].owner].name;
  };
  uint128 moved = 0;
  size_t ia = 0, ib = 0;
  uint64_t prev = 0;  // start of the current interval (inclusive)
  bool at_start = true;
  const size_t na = a.points_.size(), nb = b.points_.size();
  while (ia < na || ib < nb) {
    const uint64_t ha = ia < na ? a.points_[ia].hash : UINT64_MAX;
    const uint64_t hb = ib < nb ? b.points_[ib].hash : UINT64_MAX;
    const bool a_next = ia < na && ha <= hb;
    const bool b_next = ib < nb && hb <= ha;
    const uint64_t end = a_next ? ha : hb;  // interval [prev, end] when at_start, (prev, end]
    if (owner_name(a, ia) != owner_name(b, ib)) {
      moved += static_cast<uint128>(end - prev) + (at_start ? 1 : 0);
    }
    prev = end;
    at_start = false;
    if (a_next) ++ia;
    if (b_next) ++ib;
  }
  // The tail (prev, 2^64 - 1] wraps to both rings' first points.
  if (owner_name(a, 0) != owner_name(b, 0)) moved += UINT64_MAX - prev;
  return static_cast<double>(moved) / 18446744073709551616.0;
}

size_t Ring::memory_bytes() const {
  size_t bytes = sizeof(Ring) + points_.capacity() * sizeof(Point) +
                 index_.capacity() * sizeof(uint32_t) +
                 fingerprint_.capacity();
  for (const RingNode& n : nodes_) {
    bytes += sizeof(RingNode) + n.name.capacity() + n.address.capacity();
  }
  return bytes;
}

}  // namespace ringproxy
