#!/usr/bin/env bash
# A certificate rotated under load loses no request (issue 13): wrk over https, keep-alive
# and new connections at once, while the certificate file is replaced and the proxy
# reloaded (SIGHUP) every ROTATE_MS, alternating between two certificates (ECDSA, then
# RSA: different keys and names). Passes when wrk saw no socket error and no status but
# 200, and the proxy logged every reload and no refusal.
#
# One demo backend and one ringproxy (2 workers) on 127.0.0.1; everything it starts it
# stops, by pid.
#
#   bench/soak/tls-rotate.sh [BUILD_DIR]   env: DURATION=10 ROTATE_MS=500 CONNS=50
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
DURATION=${DURATION:-10}
ROTATE_MS=${ROTATE_MS:-500}
CONNS=${CONNS:-50}
BASE=${BASE_PORT:-18950}
command -v wrk >/dev/null || { echo "tls-rotate: wrk missing: scripts/install-deps.sh --bench" >&2; exit 1; }
work=$(mktemp -d /tmp/ringproxy-tls-rotate-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/a.key" -out "$work/a.pem" \
  -days 30 -subj /CN=one.test -addext subjectAltName=DNS:one.test 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/b.key" -out "$work/b.pem" \
  -days 30 -subj /CN=two.test -addext subjectAltName=DNS:two.test 2>/dev/null
cp "$work/a.pem" "$work/site.pem"
cp "$work/a.key" "$work/site.key"
cat >"$work/ringproxy.toml" <<CONF
[proxy]
listen = "127.0.0.1:$((BASE + 2))"
workers = 2
[proxy.tls]
certificates = [{ cert = "$work/site.pem", key = "$work/site.key" }]
[admin]
listen = ""
[[backend]]
name = "a"
address = "127.0.0.1:$((BASE + 1))"
CONF
"$build/examples/demo-backend/ringproxy-demo-backend" --name a --listen "127.0.0.1:$((BASE + 1))" >/dev/null 2>&1 & pids+=($!)
"$build/proxy/ringproxy" -c "$work/ringproxy.toml" 2>"$work/proxy.err" & pids+=($!); proxy=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$((BASE + 2))") 2>/dev/null && break; sleep 0.05; done

# Two loads at once: keep-alive connections, and a new connection per request.
wrk -t1 -c"$CONNS" -d"${DURATION}s" "https://127.0.0.1:$((BASE + 2))/k" >"$work/wrk-ka.txt" 2>&1 & w1=$!
wrk -t1 -c"$((CONNS / 5 + 1))" -d"${DURATION}s" -H "Connection: close" "https://127.0.0.1:$((BASE + 2))/n" \
  >"$work/wrk-new.txt" 2>&1 & w2=$!
rotations=0
end=$((SECONDS + DURATION - 1))
while ((SECONDS < end)); do
  sleep "$(awk -v ms="$ROTATE_MS" 'BEGIN{print ms / 1000}')"
  # Replaced whole (rename), as a deploy tool does: a reload never reads half a file.
  if ((rotations % 2 == 0)); then next=b; else next=a; fi
  cp "$work/$next.pem" "$work/site.pem.new" && mv "$work/site.pem.new" "$work/site.pem"
  cp "$work/$next.key" "$work/site.key.new" && mv "$work/site.key.new" "$work/site.key"
  kill -HUP "$proxy"
  rotations=$((rotations + 1))
done
wait "$w1" "$w2"
reloads=$(grep -c 'reloaded ' "$work/proxy.err" || true)
refused=$(grep -c 'reload refused' "$work/proxy.err" || true)
fail=0
for f in wrk-ka wrk-new; do
  requests=$(awk '/requests in/ {print $1}' "$work/$f.txt")
  errors=$(grep -E 'Socket errors|Non-2xx' "$work/$f.txt" || true)
  echo "tls-rotate: $f: $requests requests${errors:+; $errors}"
  [[ -n $errors || -z $requests ]] && fail=1
done
echo "tls-rotate: $rotations rotations, $reloads reloads logged, $refused refused"
((reloads == rotations && refused == 0)) || fail=1
((fail == 0)) && echo "tls-rotate: PASS: no request lost" || { echo "tls-rotate: FAIL"; cat "$work/proxy.err" | tail -20; }
exit "$fail"
