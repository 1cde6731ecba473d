#!/usr/bin/env bash
# HTTP/2 comparison (issue 16's speed target): ringproxy, nginx, HAProxy and h2o taking
# HTTP/2 from h2load and passing it to the same four HTTP/1.1 backends, in one run.
#
# Backends as compare.sh's: one nginx, `return 200`, four ports, upstream connections kept
# alive. In front of them, in turn, each proxy with one worker, tuned as its docs advise:
#   ringproxy  workers = 1, hash_key = "uri"; h2c = true (plain), [proxy.tls] with
#              alpn = ["h2", "http/1.1"] (TLS)
#   nginx      1 worker, `listen PORT http2` (h2c by prior knowledge) or `listen PORT ssl
#              http2` (1.22's syntax), `hash $request_uri consistent`, upstream keepalive
#              4 x the requests in flight, keepalive_requests high (it also caps requests
#              per HTTP/2 connection since 1.19.7: its default, 1000, would make h2load
#              reconnect)
#   HAProxy    nbthread 1, `bind ... proto h2` (h2c) or `bind ... ssl crt ... alpn
#              h2,http/1.1`, `balance uri`, `hash-type consistent`, `http-reuse always`
#   h2o        Debian's 2.2: num-threads 1, h2c by prior knowledge on its plain listener,
#              ALPN h2 on the TLS one. It runs a second process (neverbleed: the private
#              key's operations, privilege-separated; 2.2 has no directive to turn it
#              off): its CPU is counted with the main one's (cpu_ticks). LIMITATION: h2o 2.2's
#              proxy.reverse.url takes one URL: no list of backends, no balancing of any
#              kind, no hashing (load balancing came in 2.3). So h2o proxies everything to
#              ONE backend (the first); it does no hashing work, and its upstream pool is
#              one server's. Its figures are a lower bound on what balancing would cost it.
# All with TLS 1.3 only, the same self-signed ECDSA P-256 certificate, their own session
# defaults.
#
# Load: h2load (nghttp2-client) -c CLIENTS (100) -m STREAMS (10): 100 HTTP/2 connections
# with up to 10 streams each, 1,000 requests in flight, for DURATION seconds (-D) or
# REQUESTS requests (-n), over URIS (10,000) distinct URIs (/obj/0 ... from `-i FILE`:
# h2load gives each connection the list in the same order, so the 100 connections walk
# it side by side). MODES: h2c (plain, prior knowledge) and tls (ALPN h2). Each proxy in
# turn, ROUNDS rounds, each round starting with the next proxy; an unmeasured 1 s h2load
# run first each time (pools, caches).
# Per run: requests/s (h2load's), p50 and p99 latency (from h2load --log-file: each
# request's microseconds to the end of its response), the proxy's CPU microseconds per
# request (utime+stime of its process, all threads, and its child processes if any, over
# the run, / requests that succeeded), ratios to the first proxy listed, upstream connects
# per request (connections the backends accepted, from their stub_status: near 0 is a
# pool that keeps its connections), h2load's own CPU (% of one core: near 100 means the
# load generator, not the proxy, was the limit), other processes' CPU on the machine (%
# of one core: the cores are shared) and steal; a run with too much of either is run
# again. Medians over the rounds, and the verdict against the better peer:
# requests/s >= 1.2 x the best peer's, CPU per request <= 0.8 x the lowest peer's.
# Everything listens on 127.0.0.1 and stops by itself; only the processes started here
# are stopped, by pid.
#
#   bench/compare/h2.sh [build-dir]      env: DURATION=10 (or REQUESTS=N) ROUNDS=3
#       (build-dir: build-rel)                MODES="h2c tls" CLIENTS=100 STREAMS=10
#                                             PROXIES="ringproxy nginx haproxy h2o"
#                                             URIS=10000 PIN=0 STEAL_MAX=3 OTHER_MAX=30
#                                             TRIES=2
#                                             BASE_PORT=28300
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build-rel}
DURATION=${DURATION:-10}
REQUESTS=${REQUESTS:-}      # set: each measured run is `h2load -n REQUESTS` instead of -D
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-h2c tls}
PROXIES=${PROXIES:-ringproxy nginx haproxy h2o}
CLIENTS=${CLIENTS:-100}
STREAMS=${STREAMS:-10}
URIS=${URIS:-10000}
# PIN=1: each proxy on CPU 1, h2load and the backends on CPU 0 (see compare.sh).
PIN=${PIN:-0}
STEAL_MAX=${STEAL_MAX:-3}   # a run with more steal (%) than this is run again,
OTHER_MAX=${OTHER_MAX:-30}  # or with other processes using more than this % of a core,
TRIES=${TRIES:-2}           # up to this many times in all ("2!": the last one stands)
if [[ $PIN == 1 ]] && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
  on_load=(taskset -c 0) on_proxy=(taskset -c 1)
else
  PIN=0 on_load=() on_proxy=()
fi

read -r -a mode_list <<<"$MODES"
read -r -a order <<<"$PROXIES"
for m in "${mode_list[@]}"; do
  [[ $m == h2c || $m == tls ]] || { echo "h2.sh: MODES must list h2c and/or tls, got '$m'" >&2; exit 2; }
done
((${#mode_list[@]} > 0)) || { echo "h2.sh: MODES is empty" >&2; exit 2; }
for name in "${order[@]}"; do
  [[ $name =~ ^(ringproxy|nginx|haproxy|h2o)$ ]] || { echo "h2.sh: unknown proxy '$name' in PROXIES" >&2; exit 2; }
done
((${#order[@]} > 0)) || { echo "h2.sh: PROXIES is empty" >&2; exit 2; }
for v in ROUNDS CLIENTS STREAMS URIS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "h2.sh: $v must be a positive integer" >&2; exit 2; }
done
if [[ -n $REQUESTS ]]; then
  [[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || { echo "h2.sh: REQUESTS must be a positive integer" >&2; exit 2; }
else
  [[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "h2.sh: DURATION must be a positive integer (seconds)" >&2; exit 2; }
fi
tools=(h2load nginx openssl)
for name in "${order[@]}"; do if [[ $name == haproxy || $name == h2o ]]; then tools+=("$name"); fi; done
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "h2.sh: $tool missing: run scripts/install-deps.sh --bench" >&2; exit 1; }
done
[[ -x $build/proxy/ringproxy ]] || { echo "h2.sh: build ringproxy first ($build/proxy/ringproxy)" >&2; exit 1; }

inflight=$((CLIENTS * STREAMS))   # the most requests in flight, so upstream connections
need_fds=$((inflight * 8 + 4096))
if (($(ulimit -Sn) < need_fds)); then
  (($(ulimit -Hn) < need_fds)) && { ulimit -Hn "$need_fds" 2>/dev/null || true; }
  ulimit -Sn "$need_fds" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
fi
nofile=$(ulimit -Sn)
((nofile >= inflight * 4)) || { echo "h2.sh: ulimit -n is $nofile, too few for $inflight requests in flight" >&2; exit 1; }
backend_wc=$((inflight * 8 + 4096))
proxy_wc=$((inflight * 6 > 4096 ? inflight * 6 : 4096))
nginx_keepalive=$((4 * inflight))   # compare.sh's rule: 4 servers x the most in flight
hap_maxconn=$((inflight * 10 > 4096 ? inflight * 10 : 4096))
((hap_maxconn > (nofile - 64) / 2)) && hap_maxconn=$(((nofile - 64) / 2))

work=$(mktemp -d /tmp/ringproxy-h2-compare-XXXXXX)
pids=()          # every process started here, for the cleanup
declare -A ppid  # proxy name -> its pid, for the current mode
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

BASE=${BASE_PORT:-28300}
B1=$((BASE + 1)) B2=$((BASE + 2)) B3=$((BASE + 3)) B4=$((BASE + 4)) B_STATUS=$((BASE + 5))
# Listening ports per mode: h2c BASE+11.., tls BASE+21..
declare -A port=(
  [h2c.ringproxy]=$((BASE + 11)) [h2c.nginx]=$((BASE + 12)) [h2c.haproxy]=$((BASE + 13)) [h2c.h2o]=$((BASE + 14))
  [tls.ringproxy]=$((BASE + 21)) [tls.nginx]=$((BASE + 22)) [tls.haproxy]=$((BASE + 23)) [tls.h2o]=$((BASE + 24))
)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/site.key" -out "$work/site.pem" \
  -days 7 -subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null
cat "$work/site.pem" "$work/site.key" >"$work/site.both.pem"   # HAProxy's crt: both in one file

# The backends: compare.sh's (keepalive_timeout 600s: idle pooled connections outlive the
# other proxies' turns), with stub_status on a port of its own: the connections the
# backends accepted during a run are the upstream connects the proxy made (ringproxy's
# health probes included: 4 a second, each on a new connection).
cat >"$work/backends.conf" <<CONF
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

# One config per proxy and mode ($1: h2c or tls).
write_configs() {
  local mode=$1 p
  p=${port[$mode.ringproxy]}
  {
    printf '[proxy]\nlisten = "127.0.0.1:%s"\nworkers = 1\nhash_key = "uri"\nlog_level = "warn"\n' "$p"
    if [[ $mode == h2c ]]; then
      printf 'h2c = true\n'
    else
      printf 'alpn = ["h2", "http/1.1"]\n[proxy.tls]\ncertificates = [{ cert = "%s", key = "%s" }]\nmin_version = "TLSv1.3"\n' \
        "$work/site.pem" "$work/site.key"
    fi
    printf '[admin]\nlisten = ""\n'
    for i in 1 2 3 4; do
      printf '[[backend]]\nname = "b%s"\naddress = "127.0.0.1:%s"\n' "$i" "$((BASE + i))"
    done
  } >"$work/ringproxy.$mode.toml"

  local nginx_listen="listen 127.0.0.1:${port[$mode.nginx]} http2;" nginx_tls=""
  if [[ $mode == tls ]]; then
    nginx_listen="listen 127.0.0.1:${port[$mode.nginx]} ssl http2;"
    nginx_tls="ssl_certificate $work/site.pem; ssl_certificate_key $work/site.key; ssl_protocols TLSv1.3;"
  fi
  cat >"$work/nginx.$mode.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $work/nginx.$mode.pid;
error_log $work/nginx.$mode.err;
events { worker_connections $proxy_wc; }
http {
  access_log off;
  upstream ring {
    hash \$request_uri consistent;
    server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3; server 127.0.0.1:$B4;
    keepalive $nginx_keepalive;
  }
  server {
    $nginx_listen
    $nginx_tls
    keepalive_requests 100000000;
    location / {
      proxy_pass http://ring;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF

  local hap_bind="bind 127.0.0.1:${port[$mode.haproxy]} proto h2"
  [[ $mode == tls ]] && hap_bind="bind 127.0.0.1:${port[$mode.haproxy]} ssl crt $work/site.both.pem alpn h2,http/1.1"
  cat >"$work/haproxy.$mode.cfg" <<CONF
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
  $hap_bind
  default_backend be
backend be
  balance uri
  hash-type consistent
  server b1 127.0.0.1:$B1
  server b2 127.0.0.1:$B2
  server b3 127.0.0.1:$B3
  server b4 127.0.0.1:$B4
CONF

  # h2o refuses to keep root and switches to `nobody` unless told; `user: root` keeps it
  # able to write its files in $work (0700). The access log is off without access-log.
  {
    printf 'num-threads: 1\nerror-log: %s\n' "$work/h2o.$mode.err"
    (($(id -u) == 0)) && printf 'user: root\n'
    printf 'listen:\n  host: 127.0.0.1\n  port: %s\n' "${port[$mode.h2o]}"
    if [[ $mode == tls ]]; then
      printf '  ssl:\n    certificate-file: %s\n    key-file: %s\n    minimum-version: TLSv1.3\n    ocsp-update-interval: 0\n' \
        "$work/site.pem" "$work/site.key"
    fi
    printf 'hosts:\n  "bench":\n    paths:\n      /:\n        proxy.reverse.url: http://127.0.0.1:%s/\n' "$B1"
  } >"$work/h2o.$mode.conf"
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "h2.sh: nothing listens on port $1" >&2
  return 1
}
# The process doing the proxying: nginx's worker (a child of the master started here).
# The others proxy in the process started here (h2o's child is its neverbleed helper).
worker_of() {
  local pid=$1 child
  child=$(pgrep -P "$pid" | head -n1 || true)
  echo "${child:-$pid}"
}

start_proxies() {  # $1: mode. Sets ppid[name] to the process to measure.
  local mode=$1 name pid
  for name in "${order[@]}"; do
    case $name in
      ringproxy) "${on_proxy[@]}" "$build/proxy/ringproxy" -c "$work/ringproxy.$mode.toml" 2>"$work/ringproxy.$mode.err" & ;;
      nginx) "${on_proxy[@]}" nginx -c "$work/nginx.$mode.conf" -p "$work" 2>"$work/nginx.$mode.stderr" & ;;
      haproxy) "${on_proxy[@]}" haproxy -f "$work/haproxy.$mode.cfg" -db 2>"$work/haproxy.$mode.err" & ;;
      h2o) "${on_proxy[@]}" h2o -c "$work/h2o.$mode.conf" >"$work/h2o.$mode.out" 2>&1 & ;;
    esac
    pid=$!
    pids+=("$pid")
    started[$name]=$pid
  done
  for name in "${order[@]}"; do
    if ! wait_port "${port[$mode.$name]}"; then
      echo "h2.sh: $name did not start ($mode); its log:" >&2
      tail -n 20 "$work/$name.$mode".* >&2 2>/dev/null || true
      exit 1
    fi
    ppid[$name]=${started[$name]}
    if [[ $name == nginx ]]; then ppid[$name]=$(worker_of "${started[$name]}"); fi
  done
}
stop_proxies() {
  local name
  for name in "${order[@]}"; do kill "${started[$name]}" 2>/dev/null || true; done
  for name in "${order[@]}"; do wait "${started[$name]}" 2>/dev/null || true; done
}
declare -A started

# utime+stime in clock ticks of a process (all its threads) and of its children (h2o's
# neverbleed process does its private-key operations; the others have none).
cpu_ticks() {
  local pid=$1 c t=0
  for c in "$pid" $(pgrep -P "$pid" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# The CPU of this shell's waited-for children (h2load, run in a subshell), for the load
# generator's share: cutime + cstime of this shell.
children_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
steal_ticks() { awk '/^cpu /{print $9}' /proc/stat; }
# All CPUs' process time (user, nice, system; not irq and softirq, mostly the loopback
# traffic of the run itself): what is left after the proxy, h2load and the backends is
# other processes' load on the machine (the cores may be shared).
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4}' /proc/stat; }
backend_accepts() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$B_STATUS"
  printf 'GET / HTTP/1.0\r\nHost: status\r\n\r\n' >&3
  # "Active connections: N", then "server accepts handled requests", then the numbers.
  line=$(awk 'p {print $1; exit} /accepts handled requests/ {p = 1}' <&3)
  exec 3<&-
  echo "${line:-0}"
}
ticks_per_s=$(getconf CLK_TCK)
now_us() { echo $(($(date +%s%N) / 1000)); }

# The URI lists: h2load takes the scheme, host and port from the first line only.
write_uris() {  # $1 mode, $2 name
  local scheme=http
  [[ $1 == tls ]] && scheme=https
  {
    echo "$scheme://127.0.0.1:${port[$1.$2]}/obj/0"
    cat "$work/uris.tail"
  } >"$work/uris.$1.$2"
}
seq 1 $((URIS - 1)) | sed 's|^|/obj/|' >"$work/uris.tail"

h2load_run() {  # $1 uri file, $2: "warm" for the unmeasured run; the rest: extra options
  local uris=$1 kind=$2
  shift 2
  local args=(-c "$CLIENTS" -m "$STREAMS" -t 1 -i "$uris")
  if [[ $kind == warm ]]; then
    args+=(-D 1)
  elif [[ -n $REQUESTS ]]; then
    args+=(-n "$REQUESTS")
  else
    args+=(-D "$DURATION")
  fi
  "${on_load[@]}" h2load "${args[@]}" "$@" 2>&1
}

declare -A rps p50 p99 cpu loadp steal otherp upc tries ok
all_runs=$work/runs   # "mode name rps p50us p99us cpu upstream-connects/req" per successful run
: >"$all_runs"
measure() {  # $1 mode, $2 name
  local mode=$1 name=$2 pid=${ppid[$2]} out before after cb ca sb sa t0 t1 log=$work/h2load.log
  rm -f "$log"
  local ab aa bb ba kb ka
  ab=$(backend_accepts)
  before=$(cpu_ticks "$pid"); cb=$(children_ticks); sb=$(steal_ticks); bb=$(busy_ticks); kb=$(cpu_ticks "$backends_worker"); t0=$(now_us)
  out=$(h2load_run "$work/uris.$mode.$name" measured --log-file "$log" || true)
  after=$(cpu_ticks "$pid"); ca=$(children_ticks); sa=$(steal_ticks); ba=$(busy_ticks); ka=$(cpu_ticks "$backends_worker"); t1=$(now_us)
  aa=$(backend_accepts)
  printf '%s\n' "$out" >"$work/h2load.$mode.$name.out"
  local line succeeded failed proto
  line=$(grep -E '^requests: ' <<<"$out" || true)
  succeeded=$(sed -nE 's/.* ([0-9]+) succeeded.*/\1/p' <<<"$line")
  failed=$(awk '{for (i = 1; i < NF; i++) if ($(i + 1) ~ /^(failed|errored|timeout)/) s += $i} END {print s + 0}' <<<"$line")
  proto=$(sed -nE 's/^Application protocol: *//p' <<<"$out")
  if [[ -z $succeeded ]] || ((succeeded == 0)) || [[ $proto != h2* ]]; then
    echo "h2.sh: $name ($mode): no successful HTTP/2 requests (protocol '${proto:-none}'); h2load said:" >&2
    tail -n 12 <<<"$out" | sed 's/^/  /' >&2
    ok[$name]=0
    return 1
  fi
  ((failed > 0)) && echo "h2.sh: $name ($mode): $failed requests failed, errored or timed out" >&2
  ok[$name]=1
  rps[$name]=$(sed -nE 's/^finished in [^,]*, ([0-9.]+) req\/s.*/\1/p' <<<"$out" | awk '{printf "%.0f", $1}')
  # Latency: the third column of h2load's log, for the requests that got a 2xx.
  local q50 q99
  read -r q50 q99 < <(awk -F'\t' '$2 >= 200 && $2 < 300 {print $3}' "$log" | sort -n |
    awk '{v[NR] = $1} END {if (NR == 0) {print 0, 0; exit}
      i = int(NR * 0.50); if (i < NR * 0.50) i++; j = int(NR * 0.99); if (j < NR * 0.99) j++
      print v[i < 1 ? 1 : i], v[j < 1 ? 1 : j]}')
  p50[$name]=$q50 p99[$name]=$q99
  cpu[$name]=$(awk -v t=$((after - before)) -v hz="$ticks_per_s" -v r="$succeeded" 'BEGIN{printf "%.2f", t / hz * 1e6 / r}')
  loadp[$name]=$(awk -v t=$((ca - cb)) -v hz="$ticks_per_s" -v d=$((t1 - t0)) 'BEGIN{printf "%.0f", t / hz * 1e6 / d * 100}')
  # Other processes, % of one core: all busy time less the proxy's, h2load's, the backends'.
  otherp[$name]=$(awk -v t=$((ba - bb - (after - before) - (ca - cb) - (ka - kb))) -v hz="$ticks_per_s" -v d=$((t1 - t0)) \
    'BEGIN{v = t / hz * 1e6 / d * 100; printf "%.0f", (v < 0) ? 0 : v}')
  # The request that read the counter before the run is one of the accepts counted.
  upc[$name]=$(awk -v c=$((aa - ab - 1)) -v r="$succeeded" 'BEGIN{printf "%.3f", c / r}')
  steal[$name]=$(awk -v t=$((sa - sb)) -v hz="$ticks_per_s" -v d=$((t1 - t0)) -v n="$(nproc)" \
    'BEGIN{printf "%.1f", t / hz * 1e6 / (d * n) * 100}')
}
run_one() {  # $1 mode, $2 name
  local mode=$1 name=$2 try
  h2load_run "$work/uris.$mode.$name" warm >/dev/null || true
  for try in $(seq "$TRIES"); do
    measure "$mode" "$name" || { tries[$name]=$try; return 0; }
    tries[$name]=$try
    awk -v s="${steal[$name]}" -v m="$STEAL_MAX" -v o="${otherp[$name]}" -v om="$OTHER_MAX" \
      'BEGIN{exit !(s <= m && o <= om)}' && break
    if ((try == TRIES)); then tries[$name]="$try!"; fi
  done
  echo "$mode $name ${rps[$name]} ${p50[$name]} ${p99[$name]} ${cpu[$name]} ${upc[$name]}" >>"$all_runs"
}

# The verdict of the first proxy listed against the better of the others (that ran).
# stdin: "name rps p99us cpu" per proxy that ran.
verdict() {  # $1 label
  awk -v base="$base" -v label="$1" '
    {n[NR] = $1; r[$1] = $2; c[$1] = $4}
    END {
      br = -1; bc = -1
      for (i = 1; i <= NR; i++) {
        if (n[i] == base) continue
        if (r[n[i]] > br) {br = r[n[i]]; brn = n[i]}
        if (bc < 0 || c[n[i]] < bc) {bc = c[n[i]]; bcn = n[i]}
      }
      if (!(base in r)) {printf "verdict (%s): %s did not run\n", label, base; exit}
      if (br < 0) exit
      rps_ok = r[base] >= 1.2 * br; cpu_ok = c[base] <= 0.8 * bc
      printf "verdict (%s): %s requests/s %d vs %s %d (%.2fx, target >= 1.2x) %s; CPU %.2f us/request vs %s %.2f (%.2fx, target <= 0.8x) %s: %s\n",
        label, base, r[base], brn, br, r[base] / br, rps_ok ? "met" : "NOT met",
        c[base], bcn, bc, c[base] / bc, cpu_ok ? "met" : "NOT met", (rps_ok && cpu_ok) ? "both met" : "NOT both met"
    }'
}
this_mode() { awk -v m="$mode" -v n="$1" -v f="$2" '$1 == m && $2 == n {print $f}' "$all_runs"; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
load_desc="-D ${DURATION}s"
[[ -n $REQUESTS ]] && load_desc="-n $REQUESTS"
printf 'CPU: %s (%s cores)\n' "${cpu_model:-unknown}" "$(nproc)"
printf '%s; h2load -c %s -m %s %s -t 1 over %s URIs, %s rounds, modes: %s; %s; a run with over %s%% steal or others over %s%% of a core is repeated (%s tries at most)\n' \
  "$(date -u +%F)" "$CLIENTS" "$STREAMS" "$load_desc" "$URIS" "$ROUNDS" "$MODES" \
  "$( ((PIN == 1)) && echo "proxy on CPU 1, h2load and backends on CPU 0" || echo "not pinned")" "$STEAL_MAX" "$OTHER_MAX" "$TRIES"
printf '%s; nginx %s; %s; h2o %s\n' "$(h2load --version 2>&1 | head -n1)" \
  "$(nginx -v 2>&1 | sed 's/.*nginx\///')" "$(haproxy -v 2>/dev/null | head -n1 | awk '{print "HAProxy " $3}')" \
  "$(h2o --version 2>/dev/null | head -n1 | awk '{print $3}')"
printf 'ulimit -n %s; nginx upstream keepalive %s; HAProxy maxconn %s; h2o proxies to one backend (2.2 cannot balance)\n' \
  "$nofile" "$nginx_keepalive" "$hap_maxconn"

"${on_load[@]}" nginx -c "$work/backends.conf" -p "$work" & pids+=($!)
backends_pid=$!
wait_port "$B1" || exit 1
wait_port "$B4" || exit 1
wait_port "$B_STATUS" || exit 1
backends_worker=$(worker_of "$backends_pid")

base=${order[0]}   # ratios and verdicts are the first listed's
n=${#order[@]}
summary=()
for mode in "${mode_list[@]}"; do
  write_configs "$mode"
  for name in "${order[@]}"; do write_uris "$mode" "$name"; done
  start_proxies "$mode"
  if [[ $mode == h2c ]]; then
    printf '\n## h2c (HTTP/2 by prior knowledge, plain TCP), %s connections x %s streams\n' "$CLIENTS" "$STREAMS"
  else
    printf '\n## TLS 1.3, ALPN h2, %s connections x %s streams (a full handshake per connection, in the run)\n' "$CLIENTS" "$STREAMS"
  fi
  for round in $(seq "$ROUNDS"); do
    rps=() p50=() p99=() cpu=() loadp=() steal=() tries=() ok=()
    for ((k = 0; k < n; k++)); do
      name=${order[$(((round - 1 + k) % n))]}
      run_one "$mode" "$name"
    done
    printf '\nround %s (run in the order: %s)\n' "$round" "$(for ((k = 0; k < n; k++)); do printf '%s ' "${order[$(((round - 1 + k) % n))]}"; done)"
    printf '| proxy | requests/s | p50 ms | p99 ms | CPU us/request | rps vs %s | CPU vs %s | upstream connects/req | h2load CPU %% | others CPU %% | steal %% | tries |\n' "$base" "$base"
    printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
    for name in "${order[@]}"; do
      if [[ ${ok[$name]:-0} != 1 ]]; then
        printf '| %s | failed | - | - | - | - | - | - | - | - | - | %s |\n' "$name" "${tries[$name]:-1}"
        continue
      fi
      awk -v n="$name" -v r="${rps[$name]}" -v a="${p50[$name]}" -v b="${p99[$name]}" -v c="${cpu[$name]}" \
          -v r0="${rps[$base]:-0}" -v c0="${cpu[$base]:-0}" -v l="${loadp[$name]}" -v st="${steal[$name]}" -v t="${tries[$name]}" \
          -v u="${upc[$name]}" -v o="${otherp[$name]}" \
        'BEGIN{printf "| %s | %d | %.2f | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %s |\n", n, r, a / 1000, b / 1000, c,
          (r0 > 0) ? sprintf("%.2fx", r / r0) : "-", (c0 > 0) ? sprintf("%.2fx", c / c0) : "-", u, l, o, st, t}'
    done
    if ((n > 1)); then
      for name in "${order[@]}"; do
        if [[ ${ok[$name]:-0} == 1 ]]; then echo "$name ${rps[$name]} ${p99[$name]} ${cpu[$name]}"; fi
      done | verdict "$mode, round $round"
    fi
  done
  stop_proxies

  printf '\nmedian over %s rounds (%s)\n| proxy | requests/s | p50 ms | p99 ms | CPU us/request | rps vs %s | CPU vs %s | upstream connects/req | runs |\n|---|---|---|---|---|---|---|---|---|\n' \
    "$ROUNDS" "$mode" "$base" "$base"
  declare -A m_rps=() m_p50=() m_p99=() m_cpu=() m_upc=()
  for name in "${order[@]}"; do
    runs=$(this_mode "$name" 3 | wc -l)
    ((runs > 0)) || { printf '| %s | failed | - | - | - | - | - | - | 0 |\n' "$name"; continue; }
    m_rps[$name]=$(this_mode "$name" 3 | median)
    m_p50[$name]=$(this_mode "$name" 4 | median)
    m_p99[$name]=$(this_mode "$name" 5 | median)
    m_cpu[$name]=$(this_mode "$name" 6 | median)
    m_upc[$name]=$(this_mode "$name" 7 | median)
  done
  for name in "${order[@]}"; do
    [[ -n ${m_rps[$name]:-} ]] || continue
    awk -v n="$name" -v r="${m_rps[$name]}" -v a="${m_p50[$name]}" -v p="${m_p99[$name]}" -v c="${m_cpu[$name]}" \
        -v r0="${m_rps[$base]:-0}" -v c0="${m_cpu[$base]:-0}" -v k="$(this_mode "$name" 3 | wc -l)" -v u="${m_upc[$name]}" \
      'BEGIN{printf "| %s | %d | %.2f | %.2f | %.2f | %s | %s | %.3f | %s |\n", n, r, a / 1000, p / 1000, c,
        (r0 > 0) ? sprintf("%.2fx", r / r0) : "-", (c0 > 0) ? sprintf("%.2fx", c / c0) : "-", u, k}'
  done
  if ((n > 1)); then
    v=$(for name in "${order[@]}"; do
      if [[ -n ${m_rps[$name]:-} ]]; then echo "$name ${m_rps[$name]} ${m_p99[$name]} ${m_cpu[$name]}"; fi
    done | verdict "$mode, medians, issue 16")
    echo "$v"
    summary+=("$v")
  fi
done
if ((${#summary[@]} > 1)); then
  printf '\n'
  printf '%s\n' "${summary[@]}"
fi
