#!/usr/bin/env bash
# A gRPC tier through ringproxy: three gRPC servers (tests/integration/grpc_node.py, on
# python3-grpcio) behind the proxy, hashed on the x-user metadata field. Makes unary and
# bidirectional streaming calls for a few users and shows which shard answered each
# (always the same one per user), then the ring lookup the admin endpoint gives for the
# same keys. Everything runs on 127.0.0.1 on free ports, in a temp dir, and stops by
# itself (about ten seconds). Needs python3-grpcio: scripts/install-deps.sh --test.
#
#   examples/grpc-tier/run.sh [--keep]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KEEP=0
[[ ${1:-} == --keep ]] && KEEP=1
PY=/usr/bin/python3
if ! "$PY" -c 'import grpc' 2>/dev/null; then
  echo "run.sh: python3-grpcio is missing; run scripts/install-deps.sh --test" >&2
  exit 1
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "${JOBS:-$(nproc)}" --target ringproxy >/dev/null
RINGPROXY=$ROOT/build/proxy/ringproxy

T=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-grpc-tier-XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((KEEP)); then echo "logs and configs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A PORT=()
for shard in a b c; do
  "$PY" tests/integration/grpc_node.py --port 0 --name "shard-$shard" >"$T/shard-$shard.out" 2>"$T/shard-$shard.err" &
  PIDS+=($!)
done
for shard in a b c; do
  for _ in $(seq 100); do
    if grep -q '^READY ' "$T/shard-$shard.out" 2>/dev/null; then break; fi
    sleep 0.1
  done
  PORT[$shard]=$(awk '/^READY /{print $2; exit}' "$T/shard-$shard.out")
  [[ -n ${PORT[$shard]} ]] || { echo "run.sh: shard-$shard did not start: $(cat "$T/shard-$shard.err")" >&2; exit 1; }
done
P=$(free_port)
ADMIN=$(free_port)
sed -e "s/@PORT@/$P/" -e "s/@ADMIN@/$ADMIN/" -e "s/@A@/${PORT[a]}/" -e "s/@B@/${PORT[b]}/" -e "s/@C@/${PORT[c]}/" \
  examples/grpc-tier/ringproxy.toml >"$T/ringproxy.toml"
"$RINGPROXY" -c "$T/ringproxy.toml" 2>"$T/ringproxy.log" &
PIDS+=($!)
for _ in $(seq 100); do
  if grep -q 'listening on' "$T/ringproxy.log"; then break; fi
  sleep 0.1
done

echo "== unary and bidirectional streaming calls through ringproxy (127.0.0.1:$P), hashed on x-user"
for user in alice bob carol dave erin; do
  for method in Unary Bidi; do
    "$PY" tests/integration/grpc_client.py --target "127.0.0.1:$P" --method "$method" --count 3 \
      --metadata "x-user=$user" --message hi |
      "$PY" -c '
import json, sys
for line in sys.stdin:
    j = json.loads(line)
    shard = (j["replies"][0].split(":")[0] if j["replies"] else "-")
    print("  %-6s %-5s %-3s %-8s %s" % (sys.argv[1], j["method"], j["code"], shard, " ".join(j["replies"])))
' "$user"
  done
done
echo "== what the ring says for the same keys (admin /ring/lookup)"
for user in alice bob carol dave erin; do
  curl -s "http://127.0.0.1:$ADMIN/ring/lookup?key=$user" |
    "$PY" -c 'import json, sys; j = json.load(sys.stdin); print("  %-6s %s" % (j["key"], j["node"]))'
done
