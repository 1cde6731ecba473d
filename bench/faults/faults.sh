#!/usr/bin/env bash
# Faults under load: wrk drives one ringproxy instance (of a two-instance gossip
# cluster) for DURATION seconds while, on a timeline, its backends are killed and
# restarted, paused (SIGSTOP), slowed, made to reset every connection, and the other
# gossip instance is killed and restarted. Prints every fault with its time, the
# responses by status, wrk's socket errors, the proxy's 5xx log lines by cause, and the
# proxy's open file descriptors and RSS before and after (each measured once pooled
# connections have idled out), then a verdict.
#
# Expected: with retries on, every GET succeeds except one caught mid-response by its
# backend's death (a 502, or a closed connection when the head had gone out); nothing
# hangs; file descriptors equal before and after; RSS about equal.
#
#   bench/faults/faults.sh [build-dir]      env: DURATION=40 CONNS=20 BASE_PORT=28300
# Everything listens on 127.0.0.1 and stops by itself. Needs wrk (install-deps --bench).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
DURATION=${DURATION:-40}
CONNS=${CONNS:-20}
BASE=${BASE_PORT:-28300}
proxy_bin=$build/proxy/ringproxy
backend_bin=$build/examples/demo-backend/ringproxy-demo-backend
for b in "$proxy_bin" "$backend_bin"; do
  [[ -x $b ]] || { echo "faults: build first ($b missing)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "faults: wrk missing: scripts/install-deps.sh --bench" >&2; exit 1; }
((DURATION >= 20)) || { echo "faults: DURATION must be at least 20 s" >&2; exit 2; }

work=$(mktemp -d /tmp/ringproxy-faults-XXXXXX)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

P_A=$((BASE + 11)) P_B=$((BASE + 12)) ADMIN_A=$((BASE + 21)) ADMIN_B=$((BASE + 22))
G_A=$((BASE + 31)) G_B=$((BASE + 32))

t0=$(date +%s.%N)
stamp() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%6.1f s", b - a}'; }
say() { printf '  [%s] %s\n' "$(stamp)" "$*"; }

wait_line() {  # FILE NEEDLE: up to 10 s
  for _ in $(seq 200); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "faults: '$2' never appeared in $1" >&2
  exit 1
}

# start_backend N [demo-backend options...]
start_backend() {
  local n=$1; shift
  : >"$work/b$n.out"
  "$backend_bin" --name "b$n" --listen "127.0.0.1:$((BASE + n))" "$@" >"$work/b$n.out" 2>>"$work/b$n.err" &
  pid[b$n]=$!
  wait_line "$work/b$n.out" listening
}
stop() { kill -9 "${pid[$1]}" 2>/dev/null || true; wait "${pid[$1]}" 2>/dev/null || true; }

proxy_config() {  # NAME PORT ADMIN GOSSIP
  cat <<CONF
[proxy]
listen = "127.0.0.1:$2"
workers = 1
hash_key = "uri"
retries = 2
connect_timeout_ms = 500
upstream_timeout_ms = 1000
idle_timeout_ms = 1000
log_level = "info"
[health]
interval_ms = 200
timeout_ms = 200
rise = 2
fall = 2
eject_after_failures = 3
eject_base_ms = 2000
[admin]
listen = "127.0.0.1:$3"
[gossip]
bind = "127.0.0.1:$4"
name = "$1"
interval_ms = 200
seeds = ["127.0.0.1:$G_A", "127.0.0.1:$G_B"]
CONF
  for n in 1 2 3 4; do printf '[[backend]]\nname = "b%s"\naddress = "127.0.0.1:%s"\n' "$n" "$((BASE + n))"; done
}
start_proxy() {  # NAME PORT ADMIN GOSSIP
  proxy_config "$@" >"$work/$1.toml"
  "$proxy_bin" -c "$work/$1.toml" 2>>"$work/$1.err" &
  pid[$1]=$!
  wait_line "$work/$1.err" "listening on"
}

fds() { ls "/proc/${pid[pa]}/fd" | wc -l; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/${pid[pa]}/status"; }

for n in 1 2 3 4; do start_backend "$n"; done
start_proxy pa "$P_A" "$ADMIN_A" "$G_A"
start_proxy pb "$P_B" "$ADMIN_B" "$G_B"
wait_line "$work/pa.err" "member pb"

echo "ringproxy under faults, $(date -u +%F), $DURATION s, $CONNS connections, wrk 1 thread"
# Warm up (pools, allocator), then let every keep-alive connection idle out.
wrk -t1 -c"$CONNS" -d2s -s "$root/bench/compare/uris.lua" "http://127.0.0.1:$P_A/" >/dev/null
sleep 2
fds_before=$(fds) rss_before=$(rss_kb)

wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$here/count.lua" "http://127.0.0.1:$P_A/" >"$work/wrk.out" &
wrk_pid=$!
t0=$(date +%s.%N)

step=$(awk -v d="$DURATION" 'BEGIN{printf "%.2f", d / 13}')
pause() { sleep "$step"; }
echo "faults (one every $step s):"
pause; say "b1 killed (SIGKILL)"; stop b1
pause; say "b1 restarted"; start_backend 1
pause; say "b2 paused (SIGSTOP)"; kill -STOP "${pid[b2]}"
pause; say "b2 resumed (SIGCONT)"; kill -CONT "${pid[b2]}"
pause; say "b3 restarted slow (--delay-ms 300)"; stop b3; start_backend 3 --delay-ms 300
pause; say "b3 restarted normal"; stop b3; start_backend 3
pause; say "b4 restarted resetting every connection (--mode reset)"; stop b4; start_backend 4 --mode reset
pause; say "b4 restarted normal"; stop b4; start_backend 4
pause; say "gossip instance pb killed (SIGKILL)"; stop pb
pause; say "pb restarted"; start_proxy pb "$P_B" "$ADMIN_B" "$G_B"
pause; say "b1 and b2 killed at once"; stop b1; stop b2
pause; say "b1 and b2 restarted"; start_backend 1; start_backend 2
wait "$wrk_pid"
say "wrk done"

sleep 2  # pooled and client connections idle out (idle_timeout_ms = 1000)
fds_after=$(fds) rss_after=$(rss_kb)

line=$(grep '^RESULT' "$work/wrk.out")
field() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<"$line"; }
requests=$(field requests)
statuses=$(field statuses)
sock_errors=$(( $(field connect) + $(field read) + $(field write) + $(field timeout) ))
non2xx=$(tr ',' '\n' <<<"$statuses" | awk -F: '$1 !~ /^2/ {s += $2} END {print s + 0}')

echo
echo "| measure | value |"
echo "|---|---|"
echo "| requests | $requests |"
echo "| responses by status | $statuses |"
echo "| failed (non-2xx + socket errors) | $non2xx + $sock_errors (connect $(field connect), read $(field read), write $(field write), timeout $(field timeout)) |"
echo "| latency p50 / p99 / max | $(field p50_us) / $(field p99_us) / $(field max_us) us |"
echo "| retries (ringproxy_retries_total) | $(curl -s "http://127.0.0.1:$ADMIN_A/metrics" | awk '/^ringproxy_retries_total/{print $2}') |"
echo "| open fds before / after | $fds_before / $fds_after |"
echo "| RSS before / after | $rss_before / $rss_after KiB |"
echo
echo "pa's warnings and errors by kind (first 60 characters after the level):"
grep -E ' (warn|error) ' "$work/pa.err" | sed -E 's/^[^ ]+ [a-z]+ //' | cut -c1-60 | sort | uniq -c | sort -rn | head -20

verdict=0
if ((fds_after != fds_before)); then echo "FAIL: file descriptors $fds_before -> $fds_after"; verdict=1; fi
if ((rss_after > rss_before + 4096)); then echo "FAIL: RSS grew by more than 4 MiB"; verdict=1; fi
failed=$((non2xx + sock_errors))
if ((failed > 10)); then echo "FAIL: $failed requests failed"; verdict=1; fi
((verdict == 0)) && echo "PASS: $failed of $requests requests failed; no descriptor leak; RSS $rss_before -> $rss_after KiB"
echo "(logs in $work)"
exit "$verdict"
