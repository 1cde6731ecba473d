#!/usr/bin/env bash
# HTTPS comparison: ringproxy, nginx and HAProxy terminating TLS in front of the same
# four plain backends, in one run (issue 13's "Speed"). Each proxy: one worker, the
# same ECDSA P-256 certificate (made here, self-signed), TLS 1.3 only, its defaults for
# session tickets. The backends and routing are compare.sh's (`return 200` nginx, four
# ports, hashing on the URI; upstream connections kept alive).
#
# Three workloads, each for every proxy in turn, ROUNDS rounds (each round starts with
# the next proxy):
#   keepalive  wrk -c CONNS over https: one handshake per connection, then requests
#   full       CLIENTS processes of `openssl s_time -new`: every connection a full
#              handshake, one request on it. (Not wrk with `Connection: close`: wrk
#              keeps each connection's session through SSL_clear and resumes about
#              half of its reconnections.)
#   resumed    CLIENTS processes of `openssl s_time -reuse`: one full handshake each,
#              then every connection resumes its session (a TLS 1.3 ticket, PSK with
#              (EC)DHE), one request per connection
# s_time makes one connection at a time, so the handshake rates are as much the
# clients' as the proxies' (the same clients for all three); the CPU per handshake is
# the proxy's own.
# Printed per run: requests (or connections) per second, p99 where wrk measures it, and
# the proxy process's CPU microseconds per request or handshake (utime+stime from
# /proc/PID/stat); for ringproxy the handshakes counted by its metrics say whether the
# resumed run really resumed. Medians at the end with ringproxy's ratio to the better
# peer. Everything listens on 127.0.0.1 and stops by itself; only the processes started
# here are stopped, by pid.
#
#   bench/compare/tls.sh [build-dir]     env: DURATION=8 CONNS=50 ROUNDS=3 CLIENTS=2
#                                             MODES="keepalive full resumed"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
DURATION=${DURATION:-8}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-2}
MODES=${MODES:-keepalive full resumed}
PROXIES=(ringproxy nginx haproxy)
for tool in wrk nginx haproxy openssl; do
  command -v "$tool" >/dev/null || { echo "tls.sh: $tool missing: run scripts/install-deps.sh --bench" >&2; exit 1; }
done
[[ -x $build/proxy/ringproxy ]] || { echo "tls.sh: build ringproxy first ($build/proxy/ringproxy)" >&2; exit 1; }
need=$((CONNS * 8 + 4096))
(($(ulimit -Sn) < need)) && { ulimit -Hn "$need" 2>/dev/null || true; ulimit -Sn "$need" 2>/dev/null || true; }
nofile=$(ulimit -Sn)

work=$(mktemp -d /tmp/ringproxy-tls-compare-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

BASE=${BASE_PORT:-28200}
B1=$((BASE + 1)) B2=$((BASE + 2)) B3=$((BASE + 3)) B4=$((BASE + 4))
P_RING=$((BASE + 11)) P_NGINX=$((BASE + 12)) P_HAPROXY=$((BASE + 13)) A_RING=$((BASE + 14))
declare -A port=([ringproxy]=$P_RING [nginx]=$P_NGINX [haproxy]=$P_HAPROXY)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/site.key" -out "$work/site.pem" \
  -days 7 -subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null
cat "$work/site.pem" "$work/site.key" >"$work/site.both.pem"   # HAProxy's crt: both in one file

cat >"$work/backends.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $work/backends.pid;
error_log $work/backends.err;
events { worker_connections $((CONNS * 8 + 4096)); }
http {
  access_log off;
  server {
    listen 127.0.0.1:$B1 backlog=4096; listen 127.0.0.1:$B2 backlog=4096;
    listen 127.0.0.1:$B3 backlog=4096; listen 127.0.0.1:$B4 backlog=4096;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    location / { return 200 "ok\n"; }
  }
}
CONF

cat >"$work/ringproxy.toml" <<CONF
[proxy]
listen = "127.0.0.1:$P_RING"
workers = 1
hash_key = "uri"
log_level = "warn"
[proxy.tls]
certificates = [{ cert = "$work/site.pem", key = "$work/site.key" }]
min_version = "TLSv1.3"
[admin]
listen = "127.0.0.1:$A_RING"
[[backend]]
name = "b1"
address = "127.0.0.1:$B1"
[[backend]]
name = "b2"
address = "127.0.0.1:$B2"
[[backend]]
name = "b3"
address = "127.0.0.1:$B3"
[[backend]]
name = "b4"
address = "127.0.0.1:$B4"
CONF

# nginx as compare.sh tunes it (upstream keepalive sized to the concurrency), TLS 1.3,
# its default ticket keys (one random key per process: tickets resume on that worker).
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections $((CONNS * 6 > 4096 ? CONNS * 6 : 4096)); }
http {
  access_log off;
  upstream ring {
    hash \$request_uri consistent;
    server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3; server 127.0.0.1:$B4;
    keepalive $((4 * CONNS));
  }
  server {
    listen 127.0.0.1:$P_NGINX ssl;
    ssl_certificate $work/site.pem;
    ssl_certificate_key $work/site.key;
    ssl_protocols TLSv1.3;
    keepalive_requests 100000000;
    location / {
      proxy_pass http://ring;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF

# HAProxy as compare.sh tunes it, TLS 1.3 (its session cache and tickets on by default).
hap_maxconn=$((CONNS * 10 > 4096 ? CONNS * 10 : 4096))
((hap_maxconn > (nofile - 64) / 2)) && hap_maxconn=$(((nofile - 64) / 2))
cat >"$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn $hap_maxconn
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$P_HAPROXY ssl crt $work/site.both.pem
  default_backend be
backend be
  balance uri
  hash-type consistent
  server b1 127.0.0.1:$B1
  server b2 127.0.0.1:$B2
  server b3 127.0.0.1:$B3
  server b4 127.0.0.1:$B4
CONF

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "tls.sh: nothing listens on port $1" >&2
  exit 1
}
nginx -c "$work/backends.conf" -p "$work" & pids+=($!)
wait_port "$B1"
"$build/proxy/ringproxy" -c "$work/ringproxy.toml" 2>"$work/ringproxy.err" & pids+=($!); ring_pid=$!
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!); nginx_pid=$!
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.err" & pids+=($!); haproxy_pid=$!
wait_port "$P_RING"; wait_port "$P_NGINX"; wait_port "$P_HAPROXY"
worker_of() {
  local child
  child=$(pgrep -P "$1" | head -n1 || true)
  echo "${child:-$1}"
}
declare -A proc=([ringproxy]=$ring_pid [nginx]=$(worker_of "$nginx_pid") [haproxy]=$(worker_of "$haproxy_pid"))
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
handshakes() {  # ringproxy's handshake counters: "full resumed"
  exec 3<>"/dev/tcp/127.0.0.1/$A_RING"
  printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
  awk '/^ringproxy_tls_handshakes_total\{result="full"\}/{f = $2} /^ringproxy_tls_handshakes_total\{result="resumed"\}/{r = $2}
    END {printf "%d %d\n", f, r}' <&3
  exec 3<&-
}

runs=$work/runs
: >"$runs"
# One measured run: "rate p99_ms cpu_us" into $result.
run() {
  local name=$1 mode=$2 pid=${proc[$1]} p=${port[$1]} before after out count seconds p99=-
  local hdr=()
  if [[ $mode != keepalive ]]; then
    # s_time prints "N connections in T real seconds"; one request each (GET /obj/1).
    local how=-new
    [[ $mode == resumed ]] && how=-reuse
    timeout 3 openssl s_time -connect "127.0.0.1:$p" "$how" -time 1 -www / >/dev/null 2>&1 || true   # warm-up
    before=$(cpu_ticks "$pid")
    for _ in $(seq "$CLIENTS"); do
      openssl s_time -connect "127.0.0.1:$p" "$how" -time "$DURATION" -www /obj/1 >"$work/stime.$_" 2>&1 &
    done
    wait_stime
    after=$(cpu_ticks "$pid")
    count=$(cat "$work"/stime.* | awk '/connections in [0-9.]+ real seconds/ {n += $1} END {print n + 0}')
    seconds=$DURATION
  else
    wrk -t1 -c"$CONNS" -d1s "${hdr[@]}" -s "$here/uris.lua" "https://127.0.0.1:$p/" >/dev/null
    before=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "${hdr[@]}" -s "$here/uris.lua" "https://127.0.0.1:$p/" | grep '^RESULT')
    after=$(cpu_ticks "$pid")
    count=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
    seconds=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$out" | awk '{print $1 / 1e6}')
    p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$out" | awk '{printf "%.2f", $1 / 1000}')
    errors=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$out")
    ((errors > 0)) && echo "tls.sh: $name $mode: $errors errors" >&2
  fi
  ((count > 0)) || { echo "tls.sh: $name $mode: nothing measured" >&2; exit 1; }
  result="$(awk -v c="$count" -v s="$seconds" 'BEGIN{printf "%.0f", c / s}') $p99 $(awk -v t=$((after - before)) -v hz="$hz" -v c="$count" 'BEGIN{printf "%.2f", t / hz * 1e6 / c}')"
}
wait_stime() {
  local j
  for j in $(jobs -p); do
    # Only the s_time jobs are waited for (the servers started above are jobs too).
    if [[ $(ps -o comm= -p "$j" 2>/dev/null) == openssl ]]; then wait "$j" || true; fi
  done
}

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
printf '%s, %s (%s cores), %ss per run, %s rounds, wrk -c%s, %s s_time processes; TLS 1.3, ECDSA P-256\n' \
  "$(date -u +%F)" "${cpu_model:-unknown CPU}" "$(nproc)" "$DURATION" "$ROUNDS" "$CONNS" "$CLIENTS"
read -r -a modes <<<"$MODES"
for mode in "${modes[@]}"; do
  [[ $mode =~ ^(keepalive|full|resumed)$ ]] || { echo "tls.sh: MODES lists keepalive, full, resumed" >&2; exit 2; }
  case $mode in
    keepalive) printf '\n## keep-alive HTTPS, %s connections: per request\n' "$CONNS" ;;
    full) printf '\n## full handshakes (openssl s_time -new, %s processes; a request each): per handshake\n' "$CLIENTS" ;;
    resumed) printf '\n## resumed handshakes (openssl s_time -reuse, %s processes; a request each): per handshake\n' "$CLIENTS" ;;
  esac
  printf '| round | proxy | per second | p99 ms | CPU us |\n|---|---|---|---|---|\n'
  for round in $(seq "$ROUNDS"); do
    for ((k = 0; k < 3; k++)); do
      name=${PROXIES[$(((round - 1 + k) % 3))]}
      [[ $name == ringproxy ]] && hs_before=$(handshakes)
      run "$name" "$mode"
      note=""
      if [[ $name == ringproxy ]]; then
        read -r f0 r0 <<<"$hs_before"
        read -r f1 r1 <<<"$(handshakes)"
        note=" (ringproxy handshakes: $((f1 - f0)) full, $((r1 - r0)) resumed)"
      fi
      read -r rate p99 cpu <<<"$result"
      echo "$mode $name $rate $p99 $cpu" >>"$runs"
      printf '| %s | %s | %s | %s | %s |%s\n' "$round" "$name" "$rate" "$p99" "$cpu" "$note"
    done
  done
  # "per CPU-second": 1e6 / CPU us, what one worker's core can do at most; for the
  # handshake workloads, whose measured rate is the clients' as much as the proxy's.
  printf '\nmedians (%s)\n| proxy | per second | p99 ms | CPU us | per CPU-second |\n|---|---|---|---|---|\n' "$mode"
  for name in "${PROXIES[@]}"; do
    awk -v m="$mode" -v n="$name" '$1 == m && $2 == n {r[++k] = $3; p[k] = $4; c[k] = $5}
      function med(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
        return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
      END {m = med(c, k); printf "| %s | %.0f | %s | %.2f | %.0f |\n", n, med(r, k), (p[1] == "-") ? "-" : sprintf("%.2f", med(p, k)), m, 1e6 / m}' "$runs"
  done | tee "$work/med.$mode"
  awk -v m="$mode" '{gsub(/\|/, ""); n = $1; r[n] = $2; c[n] = $4}
    END {br = (r["nginx"] > r["haproxy"]) ? r["nginx"] : r["haproxy"]; bc = (c["nginx"] < c["haproxy"]) ? c["nginx"] : c["haproxy"]
      printf "ringproxy vs the better peer (%s): CPU %.2fx, rate %.2fx, per CPU-second %.2fx\n", m, c["ringproxy"] / bc, r["ringproxy"] / br, bc / c["ringproxy"]}' "$work/med.$mode"
done
