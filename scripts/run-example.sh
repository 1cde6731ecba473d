#!/usr/bin/env bash
# Installs the dependencies, builds ringproxy, and runs it on examples/ringproxy.toml
# with five demo backends: the page tier cache-a, cache-b, cache-c on 127.0.0.1:9001-9003
# and the image tier (pool "images", requests under /img/) img-a, img-b on 9011-9012.
# Ctrl-C stops everything. With --once it sends a few requests and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target ringproxy ringproxy-demo-backend

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for i in cache-a:9001 cache-b:9002 cache-c:9003 img-a:9011 img-b:9012; do
  ./build/examples/demo-backend/ringproxy-demo-backend --name "${i%%:*}" \
    --listen "127.0.0.1:${i##*:}" >/dev/null &
  pids+=($!)
done
./build/proxy/ringproxy -c examples/ringproxy.toml &
pids+=($!)

# Wait until the proxy answers (it binds within milliseconds; give it 5 s at most).
for _ in $(seq 50); do
  curl -s -o /dev/null http://127.0.0.1:8080/ && break
  sleep 0.1
done

cat <<'TXT'

ringproxy is listening on 127.0.0.1:8080 in front of two tiers: pages on cache-a,
cache-b and cache-c, and images (/img/...) on img-a and img-b, each with its own ring.
Try:
  curl -i http://127.0.0.1:8080/users/42          # X-Backend names the node
  curl -i http://127.0.0.1:8080/img/logo.png      # the image tier
  curl -i --http2-prior-knowledge http://127.0.0.1:8080/users/42   # the same over HTTP/2
  for k in a b c d e f; do curl -s http://127.0.0.1:8080/$k; done
  ./build/proxy/ringproxy -c examples/ringproxy.toml --lookup /users/42 /a /b
  ./build/proxy/ringproxy -c examples/ringproxy.toml --lookup --pool images /img/logo.png
  curl -s http://127.0.0.1:9090/pools             # both tiers, their rings and routes
  kill -HUP <pid of ringproxy>                      # reload examples/ringproxy.toml
TXT
for k in /users/42 /a /b /c /img/logo.png /img/banner.jpg; do curl -s "http://127.0.0.1:8080$k"; done

if [[ "${1:-}" == "--once" ]]; then exit 0; fi
echo "Ctrl-C to stop."
wait
