#!/usr/bin/env bash
# Soak: wrk drives one ringproxy instance (of a two-instance gossip cluster, the set-up
# of bench/faults) for DURATION seconds in back-to-back SAMPLE-second runs, while a
# fault is done or undone every FAULT_EVERY seconds, round and round: a backend killed
# and restarted, paused and resumed, slowed, made to reset connections, the gossip peer
# killed and restarted. After each run it prints a row: requests, failures by cause,
# and the proxy's RSS and open file descriptors (pooled connections included, so fds
# move with the load; at the end, once they idle out, they must be back to the start).
#
#   bench/soak/soak.sh [build-dir]      env: DURATION=600 SAMPLE=30 FAULT_EVERY=5 CONNS=20
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-30}
FAULT_EVERY=${FAULT_EVERY:-5}
CONNS=${CONNS:-20}
BASE=${BASE_PORT:-28400}
# shellcheck source=bench/faults/lib.sh
source "$root/bench/faults/lib.sh"

start_cluster
wrk -t1 -c"$CONNS" -d2s -s "$root/bench/compare/uris.lua" "http://127.0.0.1:$P_A/" >/dev/null
sleep 2
fds_start=$(fds) rss_start=$(rss_kb)

faults=(
  "b1 killed:stop b1" "b1 restarted:start_backend 1"
  "b2 paused:kill -STOP \${pid[b2]}" "b2 resumed:kill -CONT \${pid[b2]}"
  "b3 slow:stop b3; start_backend 3 --delay-ms 300" "b3 normal:stop b3; start_backend 3"
  "b4 resets:stop b4; start_backend 4 --mode reset" "b4 normal:stop b4; start_backend 4"
  "pb killed:stop pb" "pb restarted:start_proxy pb $P_B $ADMIN_B $G_B"
)
next_fault=0
declare -A cause_total

echo "ringproxy soak, $(date -u +%F), $DURATION s in $SAMPLE s runs, a fault every $FAULT_EVERY s, $CONNS connections"
echo "start: RSS $rss_start KiB, $fds_start fds"
echo
echo "| t (s) | requests | failed | responses by status | socket errors | faults in this run | RSS KiB | fds |"
echo "|---|---|---|---|---|---|---|---|"
t0=$(date +%s)
total_requests=0 total_failed=0
while (($(date +%s) - t0 < DURATION)); do
  wrk -t1 -c"$CONNS" -d"${SAMPLE}s" --timeout 5s -s "$root/bench/faults/count.lua" \
    "http://127.0.0.1:$P_A/" >"$work/wrk.out" &
  wrk_pid=$!
  done_here=()
  for ((s = FAULT_EVERY; s < SAMPLE; s += FAULT_EVERY)); do
    sleep "$FAULT_EVERY"
    entry=${faults[$next_fault]}
    next_fault=$(((next_fault + 1) % ${#faults[@]}))
    eval "${entry#*:}"
    done_here+=("${entry%%:*}")
  done
  wait "$wrk_pid"
  line=$(grep '^RESULT' "$work/wrk.out")
  field() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<"$line"; }
  requests=$(field requests) statuses=$(field statuses)
  sock="connect $(field connect), read $(field read), write $(field write), timeout $(field timeout)"
  sock_n=$(($(field connect) + $(field read) + $(field write) + $(field timeout)))
  non2xx=$(tr ',' '\n' <<<"$statuses" | awk -F: '$1 !~ /^2/ {s += $2} END {print s + 0}')
  total_requests=$((total_requests + requests))
  total_failed=$((total_failed + non2xx + sock_n))
  printf '| %d | %d | %d | %s | %s | %s | %s | %s |\n' "$(($(date +%s) - t0))" "$requests" \
    "$((non2xx + sock_n))" "$statuses" "$sock" "$(IFS=,; echo "${done_here[*]}")" "$(rss_kb)" "$(fds)"
done
# Undo whatever fault is still in force, then let connections idle out.
kill -CONT "${pid[b2]}" 2>/dev/null || true
sleep 3
fds_end=$(fds) rss_end=$(rss_kb)
echo
echo "total: $total_requests requests, $total_failed failed; RSS $rss_start -> $rss_end KiB; fds $fds_start -> $fds_end (idle)"
echo "pa's warnings and errors by kind:"
grep -E ' (warn|error) ' "$work/pa.err" | sed -E 's/^[^ ]+ [a-z]+ //' | cut -c1-60 | sort | uniq -c | sort -rn | head -20
echo "(logs in $work)"
((fds_end == fds_start)) || { echo "FAIL: fds $fds_start -> $fds_end"; exit 1; }
