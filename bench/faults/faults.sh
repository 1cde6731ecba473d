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
((DURATION >= 20)) || { echo "faults: DURATION must be at least 20 s" >&2; exit 2; }
# shellcheck source=bench/faults/lib.sh
source "$here/lib.sh"

start_cluster

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
