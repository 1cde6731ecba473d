// Ring microbenchmarks: what users feel of the ring (STYLE rule 10).
//   lookup ns per request, hashing a 40-byte key included, for a hot key set and for
//   a key set far larger than the caches; rebuild time; memory per node; keys moved
//   against the optimal 1/N; peak-to-mean share.
// Run: build/bench/ring_bench   (figures in README.md, "Ring benchmarks")
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "proxy/backends.h"
#include "proxy/discovery.h"
#include "ring/ring.h"

namespace ringproxy {
namespace {

std::vector<RingNode> make_nodes(int count) {
  std::vector<RingNode> nodes;
  for (int i = 0; i < count; ++i) {
    nodes.push_back({"cache-" + std::to_string(i), "10.0.0." + std::to_string(i % 250) + ":11211", 1});
  }
  return nodes;
}

// 40-byte keys shaped like request URIs.
std::vector<std::string> make_keys(size_t count) {
  std::vector<std::string> keys(count);
  std::mt19937_64 rng(42);
  char buf[48];
  for (auto& k : keys) {
    std::snprintf(buf, sizeof buf, "/objects/%016llx/%013llu",
                  static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng() % 10000000000000ULL));
    k.assign(buf, 40);
  }
  return keys;
}

void lookup_bench(benchmark::State& state, size_t key_count) {
  auto ring = Ring::build(make_nodes(static_cast<int>(state.range(0))), 160).ring;
  const auto keys = make_keys(key_count);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ring->lookup(std::string_view(keys[i])));
    if (++i == keys.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// 1,024 keys: the ring's touched lines stay in cache.
void BM_LookupHot(benchmark::State& state) { lookup_bench(state, 1024); }
BENCHMARK(BM_LookupHot)->Arg(10)->Arg(100)->Arg(1000);

// A new key every time, as a proxy sees a key space far larger than its caches: 2M
// distinct 40-byte keys (80 MB) laid end to end and read in order, so fetching the key
// streams (as a request just read would be in cache) while each lookup lands on a
// random, cold part of the ring.
void BM_LookupDistinct(benchmark::State& state) {
  auto ring = Ring::build(make_nodes(static_cast<int>(state.range(0))), 160).ring;
  constexpr size_t kKeys = 2'000'000, kLen = 40;
  static const std::vector<char> keys = [] {
    std::vector<char> out(kKeys * kLen);
    const auto strings = make_keys(kKeys);
    for (size_t i = 0; i < kKeys; ++i) std::memcpy(out.data() + i * kLen, strings[i].data(), kLen);
    return out;
  }();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ring->lookup(std::string_view(keys.data() + i * kLen, kLen)));
    if (++i == kKeys) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupDistinct)->Arg(10)->Arg(100)->Arg(1000);

// A lookup that skips one down node in ten (health, without a rebuild).
void BM_PickSkippingDown(benchmark::State& state) {
  auto ring = Ring::build(make_nodes(static_cast<int>(state.range(0))), 160).ring;
  const auto keys = make_keys(1024);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        ring->pick(Ring::hash(keys[i]), [](NodeIndex n) { return n % 10 != 3; }));
    if (++i == keys.size()) i = 0;
  }
}
BENCHMARK(BM_PickSkippingDown)->Arg(10)->Arg(1000);

// Rebuild time, memory per node, peak-to-mean share, keys moved against optimal.
void BM_Build(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const auto nodes = make_nodes(n);
  std::shared_ptr<const Ring> ring;
  for (auto _ : state) {
    ring = Ring::build(nodes, 160).ring;
    benchmark::DoNotOptimize(ring.get());
  }
  const auto shares = ring->shares();
  const double peak = *std::max_element(shares.begin(), shares.end());
  state.counters["bytes_per_node"] = static_cast<double>(ring->memory_bytes()) / n;
  state.counters["peak_to_mean"] = peak * n;
  auto grown_nodes = nodes;
  grown_nodes.push_back({"cache-new", "10.0.1.1:11211", 1});
  auto grown = Ring::build(grown_nodes, 160).ring;
  // Adding one node to n: the optimum moves 1/(n+1) of the keys, all onto it.
  state.counters["moved_vs_optimal"] = Ring::moved_fraction(*ring, *grown) * (n + 1);
}
BENCHMARK(BM_Build)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

// Issue 14's figure: a discovery source's SRV answer of n records (in a shuffled order,
// as a resolver may give them) to the routing the workers get, as Server::refresh_found
// makes it: the records named and sorted (proxy/discovery.h nodes_of), each target's
// address from the resolved names, the ring built, and every node's state carried over
// from the previous routing (build_routing). Target: under 10 ms for 1,000 records.
void BM_RebuildFromSrvAnswer(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  DnsAnswer answer;
  answer.status = DnsAnswer::Status::kOk;
  answer.ttl_s = 30;
  ResolvedNames names;
  for (int i = 0; i < n; ++i) {
    const std::string target = "cache-" + std::to_string(i) + ".cache.default.svc.cluster.local";
    answer.srv.push_back({10, 1, 6081, target + "."});
    names[target] = {"10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)};
  }
  std::shuffle(answer.srv.begin(), answer.srv.end(), std::mt19937(42));
  DiscoverConfig source;
  source.name = "_http._tcp.cache.default.svc.cluster.local";
  source.type = DiscoverConfig::Type::kSrv;
  auto config = std::make_shared<const Config>();
  const auto found_of = [&] {
    std::vector<FoundNode> found;
    for (const DiscoveredNode& d : nodes_of(answer, source)) {
      found.push_back({{d.name, Address{d.host, d.port, false, true}, d.weight, false, ""}, source.name, d.priority});
    }
    return found;
  };
  std::string error;
  std::shared_ptr<const Routing> previous = build_routing(config, found_of(), names, nullptr, 1, 2, &error);
  for (auto _ : state) {
    auto routing = build_routing(config, found_of(), names, previous.get(), 2, 2, &error);
    benchmark::DoNotOptimize(routing.get());
  }
}
BENCHMARK(BM_RebuildFromSrvAnswer)->Arg(1000)->Unit(benchmark::kMillisecond);

// Issue 15's figure: the pool of one request with n [[route]]s (match_route, what the
// exchange runs for every request once routes exist). Half the routes name a host and
// half a path prefix, like an nginx site's server_name and location lines; the request
// matches none (arg 0: the worst case, every route looked at and the default pool
// taken) or the last one (arg 1). No allocation: the Host and target are views.
void BM_MatchRoute(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const bool last = state.range(1) != 0;
  auto config = std::make_shared<Config>();
  config->backends.push_back({"a", Address{"127.0.0.1", 9001, false}, 1, false, ""});
  PoolConfig pool;
  pool.name = "tier";
  pool.backends.push_back({"b", Address{"127.0.0.1", 9002, false}, 1, false, ""});
  config->pools.push_back(pool);
  for (int i = 0; i < n; ++i) {
    RouteConfig r;
    if (i % 2 == 0) {
      r.host = (i % 4 == 0 ? "*.site" : "www.site") + std::to_string(i) + ".example.com";
    } else {
      r.path_prefix = "/section-" + std::to_string(i) + "/";
    }
    r.pool = "tier";
    config->routes.push_back(r);
  }
  std::string error;
  const auto routing = build_routing(config, nullptr, 1, 1, &error);
  if (!routing) {
    state.SkipWithError(error.c_str());
    return;
  }
  const std::string host = last && (n - 1) % 2 == 0 ? "www.site" + std::to_string(n - 1) + ".example.com" : "cache.example.net:8080";
  const std::string target = last && (n - 1) % 2 == 1 ? "/section-" + std::to_string(n - 1) + "/item?id=42"
                                                      : "/products/item-42?ref=home";
  for (auto _ : state) {
    benchmark::DoNotOptimize(match_route(*routing, host, target, 0));
  }
}
BENCHMARK(BM_MatchRoute)->Args({0, 0})->Args({20, 0})->Args({100, 0})->Args({100, 1});

}  // namespace
}  // namespace ringproxy

BENCHMARK_MAIN();
