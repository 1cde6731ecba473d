#!/usr/bin/env bash
# End-to-end comparison: ringproxy, nginx and HAProxy doing the same job in one run.
#
# Four backends (one nginx, `return 200`, four ports) stand behind each proxy in turn:
#   ringproxy  workers = 1, hash_key = uri
#   nginx      1 worker, `hash $request_uri consistent`, upstream keepalive 4 x CONNS
#   HAProxy    nbthread 1, `balance uri`, `hash-type consistent`, `http-reuse always`
# wrk (1 thread, CONNS connections, DURATION seconds) drives each over 10,000 distinct
# URIs, ROUNDS rounds in turn, for each MODE and each CONNS listed:
#   MODE=keepalive  each wrk connection sends request after request (HTTP/1.1 keep-alive)
#   MODE=close      each request carries `Connection: close`: one new client connection
#                   per request, so CPU per request is CPU per new connection
# For each run: requests/s, p50 and p99 latency, the proxy process's CPU microseconds
# per request (utime+stime from /proc/PID/stat), ratios to the first proxy listed, and
# the upstream connects per request the proxy made (UPSTREAM_COUNT below). Each block
# ends with ringproxy's verdict against the better peer. Everything listens on
# 127.0.0.1 and stops by itself; only the processes started here are stopped, by pid.
#
#   bench/compare/compare.sh [build-dir]      env: DURATION=10 CONNS=50 MODE=keepalive
#                                             ROUNDS=3 PROXIES="ringproxy nginx haproxy"
#                                             PIN=0 DIRECT=1 STEAL_MAX=3 TRIES=3
#                                             UPSTREAM_COUNT=auto HAPROXY_REUSE=always
#                                             FORWARDED=same
#   e.g. CONNS="50 1000" MODE="keepalive close" runs four blocks (each MODE x CONNS).
#   RINGPROXY_EXTRA=FILE is appended to ringproxy's config (bench/routes/routes20.toml:
#   20 [[route]]s no request matches, issue 15's "20 routes configured" case).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}          # one or more wrk concurrencies, each a block of its own
MODE=${MODE:-keepalive}     # keepalive, close, or both ("keepalive close")
ROUNDS=${ROUNDS:-3}
PROXIES=${PROXIES:-ringproxy nginx haproxy}
# PIN=1 (2+ cores): each proxy runs on CPU 1, wrk and the backends on CPU 0, so that
# the proxy never shares its core with the load generator (three busy processes on two
# cores time-slice in milliseconds, which is what p99 mostly measures unpinned). Off by
# default, as the README's tables were made.
PIN=${PIN:-0}
DIRECT=${DIRECT:-1}   # also run wrk straight to a backend each round: the no-proxy floor
# HAProxy's connection sharing. "safe" is its default and what its manual recommends in
# general; "always" is what it recommends for a cache farm whose path to the servers
# never breaks idle connections, which is this setup (loopback, backends that never
# close an idle connection during a run), and gives HAProxy its best figures: a new
# client connection's first request also goes over a pooled server connection.
HAPROXY_REUSE=${HAPROXY_REUSE:-always}
# The request headers each proxy adds, so that all do the same job: ringproxy sets
# X-Forwarded-For (appended), X-Forwarded-Proto, X-Forwarded-Host and Via on every
# request it forwards (README "How requests are routed"), which nginx and HAProxy do
# not by default.
#   same     nginx and HAProxy add the four too, as their docs show it done
#            (nginx: proxy_set_header with $proxy_add_x_forwarded_for, $scheme, $host;
#            HAProxy: option forwardfor, http-request set-header / add-header)
#   default  each proxy as it comes: ringproxy does four headers' work more per request
FORWARDED=${FORWARDED:-same}
# How upstream connects are counted:
#   perf      `perf stat -e syscalls:sys_enter_connect -p PID` on the proxy process for
#             the measured run: every connect(2) it made, health probes included
#             (ringproxy probes each backend once a second; nginx and HAProxy here do
#             not probe). While attached, the syscall tracepoint sends every process's
#             syscalls through the kernel's slower tracing path, which adds to each
#             proxy's CPU per request in proportion to its syscalls.
#   backends  the backends' nginx stub_status `accepts` before and after the run: the
#             connections that reached the backends, from whoever ran. No tracing cost.
#   auto      perf when `perf list` shows the tracepoint and perf can attach, else backends.
UPSTREAM_COUNT=${UPSTREAM_COUNT:-auto}
if [[ $PIN == 1 ]] && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
  on_load=(taskset -c 0) on_proxy=(taskset -c 1)
else
  PIN=0 on_load=() on_proxy=()
fi
for tool in wrk nginx haproxy; do
  command -v "$tool" >/dev/null || { echo "compare: $tool missing: run scripts/install-deps.sh --bench" >&2; exit 1; }
done
[[ -x $build/proxy/ringproxy ]] || { echo "compare: build ringproxy first ($build/proxy/ringproxy)" >&2; exit 1; }

read -r -a conns_list <<<"$CONNS"
read -r -a mode_list <<<"$MODE"
max_conns=0
for c in "${conns_list[@]}"; do
  [[ $c =~ ^[1-9][0-9]*$ ]] || { echo "compare: CONNS must list positive integers, got '$c'" >&2; exit 2; }
  ((c > max_conns)) && max_conns=$c
done
((max_conns > 0)) || { echo "compare: CONNS is empty" >&2; exit 2; }
for m in "${mode_list[@]}"; do
  [[ $m == keepalive || $m == close ]] || { echo "compare: MODE must list keepalive and/or close, got '$m'" >&2; exit 2; }
done
[[ $HAPROXY_REUSE =~ ^(never|safe|aggressive|always)$ ]] || { echo "compare: HAPROXY_REUSE: never, safe, aggressive or always" >&2; exit 2; }
[[ $FORWARDED == same || $FORWARDED == default ]] || { echo "compare: FORWARDED: same or default" >&2; exit 2; }
nginx_forwarded="" hap_forwarded=""
if [[ $FORWARDED == same ]]; then
  nginx_forwarded='proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header Via "1.1 nginx";'
  hap_forwarded='option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request add-header Via "1.1 haproxy"'
fi

# File descriptors: every process started below inherits this limit. At CONNS=1000 a
# proxy holds 1,000 client sockets and up to as many to the backends, wrk 1,000, and the
# backends the idle pools of all three proxies; 1,024 (a common default) is too few.
# Raised to NOFILE (the hard limit too, when allowed: root may), never lowered.
NOFILE=${NOFILE:-65536}
need_fds=$((max_conns * 8 + 4096 + 64))   # the backends' worker_connections below, and a margin
((NOFILE < need_fds)) && NOFILE=$need_fds
if (($(ulimit -Sn) < NOFILE)); then
  (($(ulimit -Hn) < NOFILE)) && { ulimit -Hn "$NOFILE" 2>/dev/null || true; }
  ulimit -Sn "$NOFILE" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
fi
if (($(ulimit -Sn) < need_fds)); then
  echo "compare: ulimit -n is $(ulimit -Sn) and cannot be raised; CONNS=$max_conns needs $need_fds" >&2
  exit 1
fi
nofile=$(ulimit -Sn)
# The backends keep every proxy's idle connections at once, plus wrk's in the direct run.
backend_wc=$((max_conns * 8 + 4096))
nginx_keepalive=$((4 * max_conns))   # 4 servers (see the nginx config below)
# A proxy holds a client socket per connection and an upstream socket per request in
# flight, plus its idle ones (nginx: up to nginx_keepalive).
proxy_wc=$((max_conns * 6 > 4096 ? max_conns * 6 : 4096))

work=$(mktemp -d /tmp/ringproxy-compare-XXXXXX)
pids=()
perf_pid=""
cleanup() {
  [[ -n $perf_pid ]] && kill "$perf_pid" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

BASE=${BASE_PORT:-28100}
B1=$((BASE + 1)) B2=$((BASE + 2)) B3=$((BASE + 3)) B4=$((BASE + 4)) B_STATUS=$((BASE + 5))
P_RING=$((BASE + 11)) P_NGINX=$((BASE + 12)) P_HAPROXY=$((BASE + 13))

# keepalive_timeout 600s: an idle pooled connection of one proxy survives while the
# others take their turns, so no proxy finds its pool closed by the backends at the
# start of its run (its 1 s warm-up would refill it anyway). backlog 4096: the
# backends are not under test, and a proxy opening many connections at once should
# meet no dropped SYN there. stub_status on its own
# port counts the connections the backends accepted (UPSTREAM_COUNT=backends).
cat > "$work/backends.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $work/backends.pid;
error_log $work/backends.err;
events { worker_connections $backend_wc; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$B1 backlog=4096; listen 127.0.0.1:$B2 backlog=4096;
    listen 127.0.0.1:$B3 backlog=4096; listen 127.0.0.1:$B4 backlog=4096;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    location / { return 200 "ok\n"; }
  }
  server {
    listen 127.0.0.1:$B_STATUS;
    location / { stub_status; }
  }
}
CONF

cat > "$work/ringproxy.toml" <<CONF
[proxy]
listen = "127.0.0.1:$P_RING"
workers = 1
hash_key = "uri"
log_level = "warn"
[admin]
listen = ""
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
if [[ -n ${RINGPROXY_EXTRA:-} ]]; then  # e.g. bench/routes/routes20.toml
  printf '\n' >>"$work/ringproxy.toml"
  cat "$RINGPROXY_EXTRA" >>"$work/ringproxy.toml"
fi

# nginx's upstream `keepalive N` is the most idle connections each worker keeps for
# the whole upstream block, all four servers together: when it is full, releasing a
# connection to one server closes the least recently used one, to any server. With
# fewer than the requests in flight to each server at its peak, summed over the
# servers, bursts open connections and close others (at CONNS=50, `keepalive 50` made
# 0.13 connects per request). So N = 4 servers x the largest CONNS, the most that can
# be in flight: it only caps the cache, nothing is opened ahead, and nginx keeps no
# more than it used. worker_connections counts client and upstream sockets together.
# Upstream keepalive_requests and keepalive_time stay at nginx's defaults (1000
# requests, 1 h; its docs advise against high values): each upstream connection is
# replaced after 1,000 requests: up to 0.001 connects per request.
# proxy_http_version 1.1 with an empty Connection header is what makes nginx keep
# upstream connections alive at all (its docs, ngx_http_upstream_module "keepalive");
# it also means a client's `Connection: close` is not passed on to the backend. The
# listen backlog stays at nginx's default on Linux, 511, which is ringproxy's too
# (HAProxy's is its maxconn, capped by net.core.somaxconn).
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections $proxy_wc; }
http {
  access_log off;
  upstream ring {
    hash \$request_uri consistent;
    server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3; server 127.0.0.1:$B4;
    keepalive $nginx_keepalive;
  }
  server {
    listen 127.0.0.1:$P_NGINX;
    keepalive_requests 100000000;
    location / {
      proxy_pass http://ring;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      $nginx_forwarded
    }
  }
}
CONF

# HAProxy: its idle server connections are capped by pool-max-conn (default -1: no
# limit, left so) and by its file descriptors in use: over tune.pool-low-fd-ratio (20%)
# of the most it may open, a released server connection is closed instead of pooled,
# and over tune.pool-high-fd-ratio (25%) idle ones are killed to open new ones. That
# most is 2 x maxconn + a few (HAProxy 2.6 refuses to start when ulimit -n is lower),
# and at CONNS=1000 the proxy holds about 2,000 descriptors (a client and a server
# socket per connection). So the global maxconn is 10 x the largest CONNS, at least
# 4096, and under half of ulimit -n: the 20% line is then 2 x CONNS or more. (With
# maxconn 4096 at CONNS=1000 HAProxy made 0.2 upstream connects per request.) The
# frontend's maxconn defaults to the global one. pool-purge-delay (5 s) closes half
# of the idle connections not used lately. HTTP keep-alive on both sides is HAProxy's
# default mode; a client's `Connection: close` closes the client side only.
hap_maxconn=$((max_conns * 10 > 4096 ? max_conns * 10 : 4096))
((hap_maxconn > (nofile - 64) / 2)) && hap_maxconn=$(((nofile - 64) / 2))
if ((hap_maxconn < max_conns * 5)); then
  echo "compare: HAProxy maxconn $hap_maxconn (ulimit -n $nofile) is under 5 x CONNS: it may close server connections instead of pooling them" >&2
fi
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn $hap_maxconn
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse $HAPROXY_REUSE
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  $hap_forwarded
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
  echo "compare: nothing listens on port $1" >&2
  exit 1
}

"${on_load[@]}" nginx -c "$work/backends.conf" -p "$work" & pids+=($!); backends_pid=$!
wait_port "$B1"; wait_port "$B_STATUS"
"${on_proxy[@]}" "$build/proxy/ringproxy" -c "$work/ringproxy.toml" 2>"$work/ringproxy.err" & pids+=($!); ring_pid=$!
"${on_proxy[@]}" nginx -c "$work/nginx.conf" -p "$work" & pids+=($!); nginx_pid=$!
"${on_proxy[@]}" haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.err" & pids+=($!); haproxy_pid=$!
wait_port "$P_RING"; wait_port "$P_NGINX"; wait_port "$P_HAPROXY"

# The process doing the proxying: nginx's and HAProxy's single worker (a child when
# they run a master; nginx here runs its worker under the master we started).
worker_of() {
  local pid=$1 child
  child=$(pgrep -P "$pid" | head -n1 || true)
  echo "${child:-$pid}"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Time the hypervisor gave to someone else (all CPUs): a round with much steal is noise.
steal_ticks() { awk '/^cpu /{print $9}' /proc/stat; }
ticks_per_s=$(getconf CLK_TCK)

# The kernel's scheduler statistics for the process's threads: nanoseconds on a CPU and
# nanoseconds runnable but waiting for one (a proxy that waits for a CPU holds every
# request it has; this is what moves p99 when processes share cores).
wait_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $2} END {printf "%.0f\n", s}' || echo 0; }
# Context switches of all its threads: voluntary (it slept: epoll_wait found nothing to
# do) and not (the scheduler took the CPU away while it had work).
switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt/{v += $2} /^nonvoluntary_ctxt/{n += $2} END{printf "%.0f %.0f\n", v, n}' ||
    echo 0 0
}

# Upstream connects (UPSTREAM_COUNT above): count_start PID before wrk; count_stop
# after it sets `counted` to the connects in between.
backend_accepts() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$B_STATUS"
  printf 'GET / HTTP/1.0\r\nHost: status\r\n\r\n' >&3
  # "Active connections: N", then "server accepts handled requests", then the numbers.
  line=$(awk 'p {print $1; exit} /accepts handled requests/ {p = 1}' <&3)
  exec 3<&-
  echo "${line:-0}"
}
perf_attached() {  # perf stat has opened its counter on the process
  local fd
  for fd in /proc/"$1"/fd/*; do
    [[ $(readlink "$fd" 2>/dev/null) == *perf_event* ]] && return 0
  done
  return 1
}
# perf stat -x, prints "COUNT,UNIT,EVENT,RUNNING-TIME,PERCENT,...": "<not counted>" with
# a running time of 0 is a process that never ran while perf watched (so made no
# connect); any other count that is not a number is one perf could not take: -1.
perf_count() {
  awk -F, '$3 ~ /sys_enter_connect/ {found = 1; print ($1 ~ /^[0-9]+$/) ? $1 : ($1 == "<not counted>" && $4 == 0) ? 0 : -1}
    END {if (!found) print -1}' "$1"
}
count_start() {
  if [[ $UPSTREAM_COUNT == perf ]]; then
    perf stat -x, -e syscalls:sys_enter_connect -p "$1" -o "$work/perf.out" 2>"$work/perf.err" &
    perf_pid=$!
    for _ in $(seq 100); do perf_attached "$perf_pid" && return 0; sleep 0.05; done
    echo "compare: perf stat did not attach to $1: $(cat "$work/perf.err")" >&2
    exit 1
  else
    accepts_before=$(backend_accepts)
  fi
}
count_stop() {  # -1: perf could not count. Not in a subshell: it waits for perf, its child
  if [[ $UPSTREAM_COUNT == perf ]]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf_pid=""
    counted=$(perf_count "$work/perf.out")
  else
    # The request that reads the counter after the run is one of the accepts counted.
    counted=$(($(backend_accepts) - accepts_before - 1))
  fi
}
if [[ $UPSTREAM_COUNT == auto ]]; then
  UPSTREAM_COUNT=backends
  # (Read whole, not piped to grep -q: perf list dies of SIGPIPE then, and pipefail.)
  if command -v perf >/dev/null && [[ $(perf list 2>/dev/null) == *syscalls:sys_enter_connect* ]]; then
    # Try it once on the backends' nginx, for 0.1 s: perf may be there and not allowed.
    if perf stat -x, -e syscalls:sys_enter_connect -p "$backends_pid" -o "$work/perf.try" -- sleep 0.1 2>/dev/null &&
      (($(perf_count "$work/perf.try") >= 0)); then
      UPSTREAM_COUNT=perf
    fi
  fi
fi
case $UPSTREAM_COUNT in
  perf) count_method="connect(2) calls of the proxy process (perf stat -e syscalls:sys_enter_connect -p PID)" ;;
  backends) count_method="connections the backends accepted (nginx stub_status)" ;;
  *) echo "compare: UPSTREAM_COUNT must be auto, perf or backends" >&2; exit 2 ;;
esac

STEAL_MAX=${STEAL_MAX:-3}   # a run with more steal than this (%) is run again,
TRIES=${TRIES:-3}           # up to this many times in all; the table says how many it
                            # took ("3!": every try had more, the last one stands)
declare -A rps p50 p99 cpu steal waitp tries sw upc upn
# All rounds, for the medians: "mode conns name rps p99us cpu upstream-connects/req" per line.
all_runs=$work/runs
: >"$all_runs"
# wrk for the current block: $conns connections, `Connection: close` in MODE=close.
wrk_run() {
  local port=$1 seconds=$2
  local hdr=()
  [[ $mode == close ]] && hdr=(-H "Connection: close")
  "${on_load[@]}" wrk -t1 -c"$conns" -d"${seconds}s" "${hdr[@]}" -s "$here/uris.lua" "http://127.0.0.1:$port/"
}
measure() {
  local name=$1 port=$2 pid=$3 out before after wait_before wait_after steal_before steal_after connects=-1
  if [[ $name != direct ]]; then count_start "$pid"; fi
  before=$(cpu_ticks "$pid")
  steal_before=$(steal_ticks)
  wait_before=$(wait_ns "$pid")
  local sw_before sw_after; sw_before=$(switches "$pid")
  out=$(wrk_run "$port" "$DURATION" | grep '^RESULT' || true)
  after=$(cpu_ticks "$pid")
  steal_after=$(steal_ticks)
  wait_after=$(wait_ns "$pid")
  sw_after=$(switches "$pid")
  if [[ $name != direct ]]; then count_stop; connects=$counted; fi
  if [[ -z $out ]] || [[ $out == *"requests=0 "* ]]; then
    echo "compare: $name: wrk measured no requests" >&2
    exit 1
  fi
  local requests errors duration p50us p99us
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  errors=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$out")
  duration=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$out")
  p50us=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$out")
  p99us=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$out")
  if ((errors > 0)); then echo "compare: $name ($mode, $conns connections): $errors errors" >&2; fi
  rps[$name]=$(awk -v r="$requests" -v d="$duration" 'BEGIN{printf "%.0f", r / (d / 1e6)}')
  p50[$name]=$p50us
  p99[$name]=$p99us
  steal[$name]=$(awk -v t=$((steal_after - steal_before)) -v hz="$ticks_per_s" -v d="$duration" -v n="$(nproc)" \
    'BEGIN{printf "%.1f", t / hz * 1e6 / (d * n) * 100}')
  waitp[$name]=$(awk -v w=$((wait_after - wait_before)) -v d="$duration" 'BEGIN{printf "%.1f", w / 1e3 / d * 100}')
  sw[$name]=$(awk -v a="$sw_before" -v b="$sw_after" -v r="$requests" 'BEGIN{split(a, x, " "); split(b, y, " ");
    printf "%.0f / %.0f", (y[1] - x[1]) * 1000 / r, (y[2] - x[2]) * 1000 / r}')
  cpu[$name]=$(awk -v t=$((after - before)) -v hz="$ticks_per_s" -v r="$requests" \
    'BEGIN{printf "%.2f", t / hz * 1e6 / r}')
  # Upstream connects per request: "-" for the direct run and for a count perf could
  # not take. The count covers the whole measured run (perf: from attach to ^C), so
  # it may hold a few health probes from just before or after wrk's requests.
  upn[$name]=$connects
  upc[$name]=$(awk -v c="$connects" -v r="$requests" 'BEGIN{if (c < 0) print "-"; else printf "%.4f", c / r}')
}
run_one() {
  local name=$1 port=$2 pid=$3 try
  # Warm up connections and pools, unmeasured.
  wrk_run "$port" 1 >/dev/null
  for try in $(seq "$TRIES"); do
    measure "$name" "$port" "$pid"
    tries[$name]=$try
    awk -v s="${steal[$name]}" -v m="$STEAL_MAX" 'BEGIN{exit !(s <= m)}' && break
    # Every try over the limit: the last one stands, marked with a "!".
    ((try == TRIES)) && tries[$name]="$try!"
  done
  echo "$mode $conns $name ${rps[$name]} ${p99[$name]} ${cpu[$name]} ${upc[$name]}" >>"$all_runs"
}

# The verdict for the first proxy listed against the better of the others on each
# measure. stdin: "name rps p99us cpu upstream-connects/req" per proxy.
#   keepalive: CPU per request <= the better peer's, requests/s >= its, and fewer than
#              0.01 upstream connects per request (a pool that keeps its connections)
#   close:     CPU per request, which is CPU per new client connection, <= the better peer's
verdict() {
  local label=$1
  awk -v base="$base" -v mode="$mode" -v conns="$conns" -v label="$label" '
    {n[NR] = $1; r[$1] = $2; c[$1] = $4; u[$1] = $5}
    END {
      br = -1; bc = -1; peers = ""
      for (i = 1; i <= NR; i++) {
        if (n[i] == base) continue
        if (r[n[i]] > br) {br = r[n[i]]; brn = n[i]}
        if (bc < 0 || c[n[i]] < bc) {bc = c[n[i]]; bcn = n[i]}
        peers = peers sprintf("%s%s %s", (peers == "") ? "" : ", ", n[i], u[n[i]])
      }
      if (br < 0 || !(base in r)) exit
      cpu_ok = c[base] <= bc; rps_ok = r[base] >= br
      if (mode == "keepalive") {
        up_ok = (u[base] != "-" && u[base] < 0.01)
        printf "verdict (%s, keep-alive, %d connections): %s CPU %.2f us/request vs %s %.2f (%.2fx, <= 1) %s; requests/s %d vs %s %d (%.2fx, >= 1) %s; upstream connects/req %s (< 0.01) %s [%s]: %s\n",
          label, conns, base, c[base], bcn, bc, c[base] / bc, cpu_ok ? "met" : "NOT met",
          r[base], brn, br, r[base] / br, rps_ok ? "met" : "NOT met",
          u[base], up_ok ? "met" : "NOT met", peers, (cpu_ok && rps_ok && up_ok) ? "all met" : "NOT all met"
      } else {
        printf "verdict (%s, new connection per request, %d connections): %s CPU per new connection %.2f us vs %s %.2f (%.2fx, <= 1) %s [requests/s %d vs %s %d; upstream connects/req: %s %s, %s]\n",
          label, conns, base, c[base], bcn, bc, c[base] / bc, cpu_ok ? "met" : "NOT met",
          r[base], brn, br, base, u[base], peers
      }
    }'
}

# Field $2 of proxy $1's rounds in the current block (mode, conns) of all_runs.
this_block() { awk -v m="$mode" -v c="$conns" -v n="$1" -v f="$2" '$1 == m && $2 == c && $3 == n {print $f}' "$all_runs"; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
printf '%s, %s (%s cores), %ss per run, %s rounds, %s; a run with over %s%% steal is repeated (%s tries at most)\n' \
  "$(date -u +%F)" "${cpu_model:-unknown CPU}" "$(nproc)" "$DURATION" "$ROUNDS" \
  "$( ((PIN == 1)) && echo "proxy on CPU 1, wrk and backends on CPU 0" || echo "not pinned")" "$STEAL_MAX" "$TRIES"
printf 'ulimit -n %s; nginx upstream keepalive %s; HAProxy maxconn %s, http-reuse %s; upstream connects counted as %s; forwarded headers: %s\n' \
  "$nofile" "$nginx_keepalive" "$hap_maxconn" "$HAPROXY_REUSE" "$count_method" \
  "$([[ $FORWARDED == same ]] && echo "every proxy adds X-Forwarded-For/-Proto/-Host and Via" || echo "each proxy's default (only ringproxy adds them)")"
read -r -a order <<<"$PROXIES"
for name in "${order[@]}"; do
  [[ $name =~ ^(ringproxy|nginx|haproxy)$ ]] || { echo "compare: unknown proxy '$name' in PROXIES" >&2; exit 2; }
done
base=${order[0]}   # the ratios are to the first one listed
n=${#order[@]}
declare -A m_rps m_p99 m_cpu m_upc
for mode in "${mode_list[@]}"; do
  for conns in "${conns_list[@]}"; do
    rps=() p50=() p99=() cpu=() steal=() waitp=() tries=() sw=() upc=() upn=()
    if [[ $mode == close ]]; then
      printf '\n## new connection per request (Connection: close), %s connections: CPU per request is CPU per new client connection\n' "$conns"
    else
      printf '\n## keep-alive, %s connections\n' "$conns"
    fi
    for round in $(seq "$ROUNDS"); do
      # Each round starts with the next proxy, so none is always first (or always last).
      for ((k = 0; k < n; k++)); do
        name=${order[$(((round - 1 + k) % n))]}
        case $name in
          ringproxy) run_one ringproxy "$P_RING" "$ring_pid" ;;
          nginx) run_one nginx "$P_NGINX" "$(worker_of "$nginx_pid")" ;;
          haproxy) run_one haproxy "$P_HAPROXY" "$(worker_of "$haproxy_pid")" ;;
        esac
      done
      # The floor: wrk straight to one backend, no proxy. What a proxy's row adds to this
      # row's latency is the proxy's cost (and the extra process on the two cores).
      ((DIRECT == 1)) && run_one direct "$B1" "$(worker_of "$backends_pid")"
      printf '\nround %s (run in the order: %s)\n' "$round" "$(for ((k = 0; k < n; k++)); do printf '%s ' "${order[$(((round - 1 + k) % n))]}"; done)"
      printf '| proxy | requests/s | p50 ms | p99 ms | CPU us/request | upstream connects/req (count) | rps vs %s | CPU vs %s | steal %% | tries | waiting for a CPU %% | sleeps / preemptions per 1k requests |\n' "$base" "$base"
      printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
      for name in "${order[@]}"; do
        awk -v n="$name" -v r="${rps[$name]}" -v a="${p50[$name]}" -v b="${p99[$name]}" -v c="${cpu[$name]}" -v st="${steal[$name]}" \
            -v r0="${rps[$base]}" -v c0="${cpu[$base]}" -v t="${tries[$name]}" -v w="${waitp[$name]}" -v sw="${sw[$name]}" \
            -v u="${upc[$name]}" -v un="${upn[$name]}" \
          'BEGIN{printf "| %s | %d | %.2f | %.2f | %.2f | %s (%s) | %.2fx | %.2fx | %s | %s | %s | %s |\n", n, r, a/1000, b/1000, c, u, (un < 0) ? "-" : un, r/r0, c/c0, st, t, w, sw}'
      done
      if ((DIRECT == 1)); then
        awk -v r="${rps[direct]}" -v a="${p50[direct]}" -v b="${p99[direct]}" -v st="${steal[direct]}" -v t="${tries[direct]}" \
          'BEGIN{printf "| (no proxy: wrk to one backend) | %d | %.2f | %.2f | - | - | - | - | %s | %s | - | - |\n", r, a/1000, b/1000, st, t}'
      fi
      if ((n > 1)); then
        for name in "${order[@]}"; do echo "$name ${rps[$name]} ${p99[$name]} ${cpu[$name]} ${upc[$name]}"; done |
          verdict "round $round"
      fi
    done

    # Medians over the rounds, and the first proxy listed against the better of the others.
    printf '\nmedian over %s rounds (%s, %s connections)\n| proxy | requests/s | p99 ms | CPU us/request | upstream connects/req |\n|---|---|---|---|---|\n' \
      "$ROUNDS" "$mode" "$conns"
    for name in "${order[@]}"; do
      m_rps[$name]=$(this_block "$name" 4 | median)
      m_p99[$name]=$(this_block "$name" 5 | median)
      m_cpu[$name]=$(this_block "$name" 6 | median)
      if this_block "$name" 7 | grep -q -- '-'; then
        m_upc[$name]=-
      else
        m_upc[$name]=$(this_block "$name" 7 | median | awk '{printf "%.4f", $1}')
      fi
      awk -v n="$name" -v r="${m_rps[$name]}" -v p="${m_p99[$name]}" -v c="${m_cpu[$name]}" -v u="${m_upc[$name]}" \
        'BEGIN{printf "| %s | %d | %.2f | %.2f | %s |\n", n, r, p / 1000, c, u}'
    done
    if ((DIRECT == 1)); then
      awk -v r="$(this_block direct 4 | median)" -v p="$(this_block direct 5 | median)" \
        'BEGIN{printf "| (no proxy) | %d | %.2f | - | - |\n", r, p / 1000}'
    fi
    if ((n > 1)); then
      for name in "${order[@]}"; do echo "$name ${m_rps[$name]} ${m_p99[$name]} ${m_cpu[$name]} ${m_upc[$name]}"; done |
        verdict "medians"
      if [[ $mode == keepalive ]]; then
        # Issue 3's targets, kept from the first version of this comparison.
        best_rps=0 best_p99=-1 best_cpu=-1
        for name in "${order[@]:1}"; do
          best_rps=$(awk -v a="$best_rps" -v b="${m_rps[$name]}" 'BEGIN{print (b > a) ? b : a}')
          best_p99=$(awk -v a="$best_p99" -v b="${m_p99[$name]}" 'BEGIN{print (a < 0 || b < a) ? b : a}')
          best_cpu=$(awk -v a="$best_cpu" -v b="${m_cpu[$name]}" 'BEGIN{print (a < 0 || b < a) ? b : a}')
        done
        awk -v n="$base" -v r="${m_rps[$base]}" -v p="${m_p99[$base]}" -v c="${m_cpu[$base]}" \
            -v br="$best_rps" -v bp="$best_p99" -v bc="$best_cpu" 'BEGIN{
          printf "%s against the better of the others (medians), issue 3: CPU %.2fx (target <= 0.80x) %s; requests/s %.2fx (>= 1) %s; p99 %.2fx (<= 1) %s\n",
            n, c / bc, (c / bc <= 0.8) ? "met" : "NOT met", r / br, (r >= br) ? "met" : "NOT met", p / bp, (p <= bp) ? "met" : "NOT met"
        }'
      fi
    fi
  done
done
