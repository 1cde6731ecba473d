#!/usr/bin/env bash
# DNS failures under load (issue 14): wrk drives one ringproxy whose nodes come from an
# SRV [[discover]] source and one backend by DNS name, answered by a real dnsmasq on
# 127.0.0.1, for DURATION seconds while, on a timeline, the DNS server is stopped
# (ICMP port unreachable: "could not contact"), replaced by a server answering SERVFAIL
# (tests/integration/hostile_dns.py: dnsmasq has no way to), restarted answering
# NXDOMAIN, answering with no SRV record (NODATA), and REFUSED, then with the records
# again. Each
# failure must leave the last good set in place (dns.hold_ms): every request succeeds.
# Prints the timeline, the responses by status, wrk's socket errors, the proxy's
# discovery log lines and its ring fingerprint before and after, then a verdict.
#
#   bench/faults/dns-outage.sh [build-dir]      env: DURATION=24 CONNS=20 BASE_PORT=28400
# Everything listens on 127.0.0.1 and stops by itself. Needs wrk (install-deps --bench)
# and dnsmasq (install-deps --test).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
DURATION=${DURATION:-24}
CONNS=${CONNS:-20}
BASE=${BASE_PORT:-28400}
((DURATION >= 12)) || { echo "dns-outage: DURATION must be at least 12 s" >&2; exit 2; }
dnsmasq=/usr/sbin/dnsmasq
[[ -x $dnsmasq ]] || { echo "dns-outage: $dnsmasq missing: scripts/install-deps.sh --test" >&2; exit 1; }
# The binaries and wrk checked, the work directory, the pid table and its cleanup, say,
# wait_line, start_backend (bN on BASE+N) and stop: shared with faults.sh and soak.sh.
# shellcheck source=bench/faults/lib.sh
source "$here/lib.sh"

DNS=$((BASE + 53)) P=$P_A ADMIN=$ADMIN_A
# dnsmasq with MODE: records | nxdomain | empty | refused
start_dns() {
  local args=(--keep-in-foreground --conf-file=/dev/null --port="$DNS" --listen-address=127.0.0.1
    --bind-interfaces --no-resolv --no-hosts --user=root --group=root --pid-file= --log-facility=-)
  case $1 in
    records) args+=(--local=/test/ --local-ttl=1 --host-record=cache.test,127.0.0.1 --host-record=be.test,127.0.0.1)
      for n in 1 2 3; do args+=(--srv-host=_http._tcp.tier.test,be.test,$((BASE + n)),10,1); done ;;
    nxdomain) args+=(--local=/test/ --local-ttl=1) ;;
    empty) args+=(--local=/test/ --local-ttl=1 --host-record=cache.test,127.0.0.1 --host-record=be.test,127.0.0.1
      --host-record=_http._tcp.tier.test,127.0.0.9) ;;
    refused) ;;  # no zone and no upstream: REFUSED
    servfail)
      : >"$work/dns.err"
      python3 "$root/tests/integration/hostile_dns.py" servfail --port "$DNS" >"$work/dns.out" 2>"$work/dns.err" &
      pid[dns]=$!
      wait_line "$work/dns.out" "ready"
      return ;;
  esac
  : >"$work/dns.err"
  "$dnsmasq" "${args[@]}" 2>"$work/dns.err" &
  pid[dns]=$!
  wait_line "$work/dns.err" "started, version"
}
for n in 1 2 3 4; do start_backend "$n"; done
start_dns records
cat >"$work/ringproxy.toml" <<CONF
[proxy]
listen = "127.0.0.1:$P"
workers = 1
hash_key = "uri"
retries = 2
log_level = "info"
[health]
interval_ms = 200
timeout_ms = 200
[admin]
listen = "127.0.0.1:$ADMIN"
[dns]
resolvers = ["127.0.0.1:$DNS"]
timeout_ms = 300
min_ttl_ms = 200
max_ttl_ms = 1000
hold_ms = 600000
[[backend]]
name = "b4"
address = "cache.test:$((BASE + 4))"
[[discover]]
name = "_http._tcp.tier.test"
type = "srv"
CONF
"$proxy_bin" -c "$work/ringproxy.toml" >"$work/proxy.out" 2>"$work/proxy.err" &
pid[proxy]=$!
wait_line "$work/proxy.err" "listening on"
fingerprint() { curl -s "http://127.0.0.1:$ADMIN/ring" | sed -nE 's/.*"fingerprint": "([0-9a-f]+)".*/\1/p'; }
nodes() { curl -s "http://127.0.0.1:$ADMIN/nodes" | grep -c '"name"'; }
before=$(fingerprint)
echo "ringproxy through DNS failures, $(date -u +%F), $DURATION s, $CONNS connections, wrk 1 thread; $(nodes) nodes, ring $before"

wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$here/count.lua" "http://127.0.0.1:$P/" >"$work/wrk.out" &
wrk_pid=$!
step=$(awk -v d="$DURATION" 'BEGIN{printf "%.2f", d / 8}')
pause() { sleep "$step"; }
echo "DNS faults (one every $step s):"
pause; say "dnsmasq stopped (port closed)"; stop dns
pause; say "a server answering SERVFAIL"; start_dns servfail
pause; say "dnsmasq answering NXDOMAIN"; stop dns; start_dns nxdomain
pause; say "dnsmasq answering NODATA (no SRV records)"; stop dns; start_dns empty
pause; say "dnsmasq answering REFUSED"; stop dns; start_dns refused
pause; say "dnsmasq answering the records again"; stop dns; start_dns records
wait "$wrk_pid"
say "wrk done"
after=$(fingerprint)

line=$(grep '^RESULT' "$work/wrk.out")
field() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<"$line"; }
statuses=$(field statuses)
sock_errors=$(( $(field connect) + $(field read) + $(field write) + $(field timeout) ))
non2xx=$(tr ',' '\n' <<<"$statuses" | awk -F: '$1 !~ /^2/ {s += $2} END {print s + 0}')
echo
echo "| measure | value |"
echo "|---|---|"
echo "| requests | $(field requests) |"
echo "| responses by status | $statuses |"
echo "| failed (non-2xx + socket errors) | $non2xx + $sock_errors |"
echo "| latency p50 / p99 / max | $(field p50_us) / $(field p99_us) / $(field max_us) us |"
echo "| ring before / after | $before / $after |"
echo "| DNS answers by result | $(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -F'[{}]' '/^ringproxy_dns_resolutions_total\{source="_http/{split($2, a, "result=\""); sub(/"/, "", a[2]); printf "%s:%s ", a[2], $3}') |"
echo
echo "the proxy's discovery lines:"
grep -E 'discover|dns:' "$work/proxy.err" | sed -E 's/^[^ ]+ //' | cut -c1-140 | uniq | head -20
verdict=0
if ((non2xx + sock_errors > 0)); then echo "FAIL: $((non2xx + sock_errors)) requests failed"; verdict=1; fi
if [[ $before != "$after" ]]; then echo "FAIL: the ring changed"; verdict=1; fi
((verdict == 0)) && echo "PASS: 0 of $(field requests) requests failed through every DNS failure; the ring never changed"
echo "(logs in $work)"
exit "$verdict"
