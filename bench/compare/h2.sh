#!/usr/bin/env bash
# HTTP/2 comparison (issue 16's speed target): HTTP/2 from h2load through each proxy to
# the same four backends, in one run. Two parts (UPSTREAM):
#   http1  ringproxy, nginx, HAProxy and h2o passing the requests to HTTP/1.1 backends;
#   h2c    ringproxy and HAProxy passing them to HTTP/2 backends (cleartext, prior
#          knowledge), multiplexed over few connections per node. nginx and h2o take no
#          part: nginx proxies to HTTP/2 only as gRPC (grpc_pass), Debian's h2o 2.2 not at
#          all.
#
# Backends as compare.sh's: one nginx, `return 200`, upstream connections kept alive; four
# ports speak HTTP/1.1, four others HTTP/2 only (`listen ... http2` on a plain port: h2c by
# prior knowledge), http2_max_concurrent_streams 128 (the default, set explicitly: it is
# the SETTINGS_MAX_CONCURRENT_STREAMS the proxies must respect), keepalive_requests high
# (since 1.19.7 it also caps requests per HTTP/2 connection, http2_max_requests is gone:
# its default, 1000, would recycle the proxies' connections every 1,000 requests). In
# front of them, in turn, each proxy with one worker, tuned as its docs advise:
#   ringproxy  workers = 1, hash_key = "uri"; h2c = true (plain), [proxy.tls] with
#              alpn = ["h2", "http/1.1"] (TLS); its nodes with protocol = "h2c" for the
#              h2c part (its health probes then speak HTTP/2 too)
#   nginx      1 worker, `listen PORT http2` (h2c by prior knowledge) or `listen PORT ssl
#              http2` (1.22's syntax), `hash $request_uri consistent`, upstream keepalive
#              4 x the requests in flight, keepalive_requests high (it also caps requests
#              per HTTP/2 connection since 1.19.7: its default, 1000, would make h2load
#              reconnect)
#   HAProxy    nbthread 1, `bind ... proto h2` (h2c) or `bind ... ssl crt ... alpn
#              h2,http/1.1`, `balance uri`, `hash-type consistent`, `http-reuse always`
#              (first requests too go over connections already open: with h2 servers,
#              any connection with a free stream); `server ... proto h2` for the h2c
#              part. 2.6 has no setting of its own for streams per server connection
#              (tune.h2.be.max-concurrent-streams came later): it takes the node's
#              SETTINGS_MAX_CONCURRENT_STREAMS capped by tune.h2.max-concurrent-streams
#              (default 100, also what it announces to clients), set here to the nodes'
#              128 so that both proxies may put as many streams on a node's connection.
#              max-reuse (requests per server connection) is left unlimited, its default
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
# it side by side). MODES: h2c (plain, prior knowledge) and tls (ALPN h2), the client
# side; UPSTREAM: http1 and h2c, the backend side; each UPSTREAM x MODES pair is a part
# of its own. Each proxy in turn, ROUNDS rounds, each round starting with the next proxy;
# an unmeasured 1 s h2load run first each time (pools, caches).
# Per run: requests/s (h2load's), p50 and p99 latency (from h2load --log-file: each
# request's microseconds to the end of its response), the proxy's CPU microseconds per
# request (utime+stime of its process, all threads, and its child processes if any, over
# the run, / requests that succeeded), ratios to the first proxy listed, upstream connects
# per request (connections the backends accepted, from their stub_status: near 0 is a
# pool that keeps its connections), upstream conns/node (max): the most ESTABLISHED TCP
# connections the proxy's process held to one backend port at once, sampled every 200 ms
# during the run (`ss state established '( dport = :PORT )'`, kept to the sockets among
# the proxy's descriptors: the other proxies' idle pools are not counted; ringproxy's
# health probe, one short connection a second per node, counts when a sample catches
# it), h2load's own CPU (% of one core: near 100 means the load generator, not the
# proxy, was the limit), other processes' CPU on the machine (% of one core: the cores
# are shared; the sampler's own CPU is taken out) and steal; a run with too much of
# either is run again. Medians over the rounds (upstream conns/node: the largest of the
# rounds'), and the verdict against the better peer: requests/s >= 1.2 x the best peer's,
# CPU per request <= 0.8 x the lowest peer's; with h2c backends also upstream conns/node
# <= 4 (issue 16: "under 1,000 concurrent streams"; 1,000 in flight over 4 nodes at 128
# streams a connection is 2 a node when the hash spreads them evenly).
# Everything listens on 127.0.0.1 and stops by itself; only the processes started here
# are stopped, by pid.
# Time: with the defaults, 24 runs to HTTP/1.1 backends and 12 to h2c ones, about 13 s
# each: about 8 minutes, up to twice that when noisy runs are repeated.
#
#   bench/compare/h2.sh [build-dir]      env: DURATION=10 (or REQUESTS=N) ROUNDS=3
#       (build-dir: build-rel)                MODES="h2c tls" UPSTREAM="http1 h2c"
#                                             CLIENTS=100 STREAMS=10
#                                             PROXIES="ringproxy nginx haproxy h2o"
#                                             URIS=10000 PIN=0 STEAL_MAX=3 OTHER_MAX=30
#                                             TRIES=2 FORWARDED=same
#                                             BASE_PORT=28300 KEEP=0 (1: keep the
#                                             work directory: configs, logs, samples)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build-rel}
DURATION=${DURATION:-10}
REQUESTS=${REQUESTS:-}      # set: each measured run is `h2load -n REQUESTS` instead of -D
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-h2c tls}
UPSTREAM=${UPSTREAM:-http1 h2c}
PROXIES=${PROXIES:-ringproxy nginx haproxy h2o}
CLIENTS=${CLIENTS:-100}
STREAMS=${STREAMS:-10}
URIS=${URIS:-10000}
# PIN=1: each proxy on CPU 1, h2load and the backends on CPU 0 (see compare.sh).
PIN=${PIN:-0}
STEAL_MAX=${STEAL_MAX:-3}   # a run with more steal (%) than this is run again,
OTHER_MAX=${OTHER_MAX:-30}  # or with other processes using more than this % of a core,
TRIES=${TRIES:-2}           # up to this many times in all ("2!": the last one stands)
# The request headers each proxy adds (see compare.sh): "same" has nginx and HAProxy add
# X-Forwarded-For, -Proto, -Host and Via as ringproxy does by default; h2o 2.2 adds
# X-Forwarded-For, -Proto and Via by default (proxy.emit-x-forwarded-headers,
# proxy.emit-via-header) and has no directive for a fourth. "default": each as it comes.
FORWARDED=${FORWARDED:-same}
[[ $FORWARDED == same || $FORWARDED == default ]] || { echo "h2.sh: FORWARDED: same or default" >&2; exit 2; }
if [[ $PIN == 1 ]] && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
  on_load=(taskset -c 0) on_proxy=(taskset -c 1)
else
  PIN=0 on_load=() on_proxy=()
fi

read -r -a mode_list <<<"$MODES"
read -r -a up_list <<<"$UPSTREAM"
read -r -a proxies <<<"$PROXIES"
for m in "${mode_list[@]}"; do
  [[ $m == h2c || $m == tls ]] || { echo "h2.sh: MODES must list h2c and/or tls, got '$m'" >&2; exit 2; }
done
((${#mode_list[@]} > 0)) || { echo "h2.sh: MODES is empty" >&2; exit 2; }
for u in "${up_list[@]}"; do
  [[ $u == http1 || $u == h2c ]] || { echo "h2.sh: UPSTREAM must list http1 and/or h2c, got '$u'" >&2; exit 2; }
done
((${#up_list[@]} > 0)) || { echo "h2.sh: UPSTREAM is empty" >&2; exit 2; }
for name in "${proxies[@]}"; do
  [[ $name =~ ^(ringproxy|nginx|haproxy|h2o)$ ]] || { echo "h2.sh: unknown proxy '$name' in PROXIES" >&2; exit 2; }
done
((${#proxies[@]} > 0)) || { echo "h2.sh: PROXIES is empty" >&2; exit 2; }
# The proxies of a part: all of PROXIES to HTTP/1.1 backends; to h2c ones, those that can
# speak HTTP/2 to a backend (ringproxy, HAProxy).
proxies_for() {  # $1 upstream
  local name
  for name in "${proxies[@]}"; do
    if [[ $1 == http1 || $name == ringproxy || $name == haproxy ]]; then echo "$name"; fi
  done
}
for v in ROUNDS CLIENTS STREAMS URIS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "h2.sh: $v must be a positive integer" >&2; exit 2; }
done
if [[ -n $REQUESTS ]]; then
  [[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || { echo "h2.sh: REQUESTS must be a positive integer" >&2; exit 2; }
else
  [[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "h2.sh: DURATION must be a positive integer (seconds)" >&2; exit 2; }
fi
tools=(h2load nginx openssl ss)
for name in "${proxies[@]}"; do if [[ $name == haproxy || $name == h2o ]]; then tools+=("$name"); fi; done
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
pids=()          # the processes started here and still running, for the cleanup
declare -A ppid  # proxy name -> its pid, for the current part
sampler_pid=     # the connection sampler, while a run is measured
cleanup() {
  for p in "${pids[@]}" $sampler_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} == 1 ]]; then echo "h2.sh: KEEP=1: configs, logs and samples kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

BASE=${BASE_PORT:-28300}
B_STATUS=$((BASE + 5))
# The backends' ports: HTTP/1.1 on BASE+1..4, HTTP/2 (h2c) on BASE+6..9.
declare -A bports=(
  [http1]="$((BASE + 1)) $((BASE + 2)) $((BASE + 3)) $((BASE + 4))"
  [h2c]="$((BASE + 6)) $((BASE + 7)) $((BASE + 8)) $((BASE + 9))"
)
read -r B1 B2 B3 B4 <<<"${bports[http1]}"
read -r H1 H2 H3 H4 <<<"${bports[h2c]}"
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
# health probes included: 4 a second, each on a new connection). The h2c ports take
# HTTP/2 by prior knowledge only; keepalive_requests and keepalive_timeout are also
# HTTP/2's requests per connection and idle timeout (1.19.7 folded http2_max_requests and
# http2_idle_timeout into them).
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
    listen 127.0.0.1:$H1 backlog=4096 http2; listen 127.0.0.1:$H2 backlog=4096 http2;
    listen 127.0.0.1:$H3 backlog=4096 http2; listen 127.0.0.1:$H4 backlog=4096 http2;
    http2_max_concurrent_streams 128;
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

# One config per proxy of the part ($1: http1 or h2c, the backends; $2: h2c or tls, the
# clients), named PROXY.UPSTREAM.MODE.*
write_configs() {
  local up=$1 mode=$2 p i
  local -a bp
  read -r -a bp <<<"${bports[$up]}"
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
      printf '[[backend]]\nname = "b%s"\naddress = "127.0.0.1:%s"\n' "$i" "${bp[i - 1]}"
      if [[ $up == h2c ]]; then printf 'protocol = "h2c"\n'; fi
    done
  } >"$work/ringproxy.$up.$mode.toml"

  local hap_bind="bind 127.0.0.1:${port[$mode.haproxy]} proto h2" hap_proto="" hap_streams=""
  [[ $mode == tls ]] && hap_bind="bind 127.0.0.1:${port[$mode.haproxy]} ssl crt $work/site.both.pem alpn h2,http/1.1"
  if [[ $up == h2c ]]; then hap_proto=" proto h2" hap_streams="tune.h2.max-concurrent-streams 128"; fi
  local hap_forwarded="" nginx_forwarded="" scheme=http
  [[ $mode == tls ]] && scheme=https
  if [[ $FORWARDED == same ]]; then
    hap_forwarded="option forwardfor
  http-request set-header X-Forwarded-Proto $scheme
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request add-header Via \"1.1 haproxy\""
    nginx_forwarded='proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header Via "1.1 nginx";'
  fi
  cat >"$work/haproxy.$up.$mode.cfg" <<CONF
global
  nbthread 1
  maxconn $hap_maxconn
  ssl-default-bind-options ssl-min-ver TLSv1.3
  $hap_streams
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  $hap_bind
  $hap_forwarded
  default_backend be
backend be
  balance uri
  hash-type consistent
  server b1 127.0.0.1:${bp[0]}$hap_proto
  server b2 127.0.0.1:${bp[1]}$hap_proto
  server b3 127.0.0.1:${bp[2]}$hap_proto
  server b4 127.0.0.1:${bp[3]}$hap_proto
CONF
  [[ $up == http1 ]] || return 0   # nginx and h2o proxy to HTTP/1.1 only

  local nginx_listen="listen 127.0.0.1:${port[$mode.nginx]} http2;" nginx_tls=""
  if [[ $mode == tls ]]; then
    nginx_listen="listen 127.0.0.1:${port[$mode.nginx]} ssl http2;"
    nginx_tls="ssl_certificate $work/site.pem; ssl_certificate_key $work/site.key; ssl_protocols TLSv1.3;"
  fi
  cat >"$work/nginx.$up.$mode.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $nofile;
daemon off;
pid $work/nginx.$up.$mode.pid;
error_log $work/nginx.$up.$mode.err;
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
      $nginx_forwarded
    }
  }
}
CONF

  # h2o refuses to keep root and switches to `nobody` unless told; `user: root` keeps it
  # able to write its files in $work (0700). The access log is off without access-log.
  {
    printf 'num-threads: 1\nerror-log: %s\n' "$work/h2o.$up.$mode.err"
    (($(id -u) == 0)) && printf 'user: root\n'
    printf 'listen:\n  host: 127.0.0.1\n  port: %s\n' "${port[$mode.h2o]}"
    if [[ $mode == tls ]]; then
      printf '  ssl:\n    certificate-file: %s\n    key-file: %s\n    minimum-version: TLSv1.3\n    ocsp-update-interval: 0\n' \
        "$work/site.pem" "$work/site.key"
    fi
    printf 'hosts:\n  "bench":\n    paths:\n      /:\n        proxy.reverse.url: http://127.0.0.1:%s/\n' "$B1"
  } >"$work/h2o.$up.$mode.conf"
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

launch() {  # $1 upstream, $2 mode, $3 name: starts it in the background (started[name])
  local f=$work/$3.$1.$2
  case $3 in
    ringproxy) "${on_proxy[@]}" "$build/proxy/ringproxy" -c "$f.toml" 2>>"$f.err" & ;;
    nginx) "${on_proxy[@]}" nginx -c "$f.conf" -p "$work" 2>>"$f.stderr" & ;;
    haproxy) "${on_proxy[@]}" haproxy -f "$f.cfg" -db 2>>"$f.err" & ;;
    h2o) "${on_proxy[@]}" h2o -c "$f.conf" >>"$f.out" 2>&1 & ;;
  esac
  started[$3]=$!
  pids+=("$!")
}
# The last lines of a proxy's log, indented, on stderr.
log_tail() {  # $1 upstream, $2 mode, $3 name
  local f
  for f in "$work/$3.$1.$2".{err,stderr,out}; do
    if [[ -s $f ]]; then tail -n 8 "$f" | sed "s|^|  ${f##*/}: |" >&2; fi
  done
}
ready() {  # $1 upstream, $2 mode, $3 name: waits for its port; sets ppid[name], the process to measure
  if ! wait_port "${port[$2.$3]}"; then
    echo "h2.sh: $3 did not start ($1 upstream, $2); its log:" >&2
    log_tail "$1" "$2" "$3"
    exit 1
  fi
  ppid[$3]=${started[$3]}
  if [[ $3 == nginx ]]; then ppid[$3]=$(worker_of "${started[$3]}"); fi
}
forget() {  # $1 pid: no longer one for the cleanup to stop (it was waited for)
  local p keep=()
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}
start_proxies() {  # $1: upstream, $2: mode
  local name
  for name in "${order[@]}"; do launch "$1" "$2" "$name"; done
  for name in "${order[@]}"; do ready "$1" "$2" "$name"; done
}
stop_proxies() {
  local name
  for name in "${order[@]}"; do kill "${started[$name]}" 2>/dev/null || true; done
  for name in "${order[@]}"; do
    wait "${started[$name]}" 2>/dev/null || true
    forget "${started[$name]}"
  done
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
# Upstream connections per node: every 200 ms, the ESTABLISHED connections to each
# backend port (ss, filtered in the kernel by destination port) whose socket is one of the
# process's descriptors or its children's (the other proxies' idle pooled connections to
# the same ports are not its). One line per sample, a count per port in the order given.
# Runs in the background until a TERM, which ends it between two samples.
conn_sampler() {  # $1 pid, $2 output file, the rest: backend ports
  local pid=$1 out=$2 filter="" p stop=0
  shift 2
  trap 'stop=1' TERM
  trap - EXIT INT
  for p in "$@"; do filter+="${filter:+ or }dport = :$p"; done
  while ((stop == 0)); do
    {
      for p in "$pid" $(pgrep -P "$pid" || true); do
        find "/proc/$p/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null || true
      done
      echo --
      ss -Htne state established "( $filter )" 2>/dev/null || true
    } | awk -v ports="$*" '
      $0 == "--" {table = 1; next}
      !table {gsub(/[^0-9]/, ""); mine[$0] = 1; next}
      {
        ino = ""
        for (i = 5; i <= NF; i++) if ($i ~ /^ino:/) ino = substr($i, 5)
        n = split($4, a, ":")
        if (ino in mine) count[a[n]]++
      }
      END {k = split(ports, pl, " "); for (i = 1; i <= k; i++) printf "%d%s", count[pl[i]], (i < k) ? " " : "\n"}' >>"$out" || true
    sleep 0.2
  done
}
# The most connections to one node over the samples: "max samples".
conn_max() {  # $1 sampler output, $2 number of ports
  awk -v k="$2" 'NF == k {s++; for (i = 1; i <= NF; i++) if ($i > m) m = $i} END {print m + 0, s + 0}' "$1"
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

declare -A rps p50 p99 cpu loadp steal otherp upc upn conns tries ok why
all_runs=$work/runs   # "upstream mode name rps p50us p99us cpu upstream-connects/req conns/node" per successful run
: >"$all_runs"
measure() {  # $1 upstream, $2 mode, $3 name
  local up=$1 mode=$2 name=$3 pid=${ppid[$3]} out before after cb ca sb sa t0 t1 log=$work/h2load.log
  local samples=$work/conns.$up.$mode.$name nsamples
  rm -f "$log"
  : >"$samples"
  local ab aa bb ba kb ka sc
  # shellcheck disable=SC2086  # the ports, one word each
  conn_sampler "$pid" "$samples" ${bports[$up]} &
  sampler_pid=$!
  ab=$(backend_accepts)
  before=$(cpu_ticks "$pid"); cb=$(children_ticks); sb=$(steal_ticks); bb=$(busy_ticks); kb=$(cpu_ticks "$backends_worker"); t0=$(now_us)
  out=$(h2load_run "$work/uris.$mode.$name" measured --log-file "$log" || true)
  after=$(cpu_ticks "$pid"); ca=$(children_ticks); sa=$(steal_ticks); ba=$(busy_ticks); ka=$(cpu_ticks "$backends_worker"); t1=$(now_us)
  aa=$(backend_accepts)
  # The sampler stops after the figures above are read: its CPU reaches this shell's
  # children's figure only now, and is taken out of the other processes'.
  kill -TERM "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=
  sc=$(($(children_ticks) - ca))
  read -r "conns[$name]" nsamples < <(conn_max "$samples" 4)
  printf '%s\n' "$out" >"$work/h2load.$up.$mode.$name.out"
  local line succeeded failed proto
  line=$(grep -E '^requests: ' <<<"$out" || true)
  if ! kill -0 "$pid" 2>/dev/null; then   # a run the proxy did not live through does not count
    echo "h2.sh: $name ($up upstream, $mode): its process ($pid) exited after the previous h2load run (the warm-up or the try before) and before this one ended; h2load: ${line:-no requests line}; $(grep -E '^status codes: ' <<<"$out" || true)" >&2
    log_tail "$up" "$mode" "$name"
    ok[$name]=0 why[$name]=exited
    return 1
  fi
  succeeded=$(sed -nE 's/.* ([0-9]+) succeeded.*/\1/p' <<<"$line")
  failed=$(awk '{for (i = 1; i < NF; i++) if ($(i + 1) ~ /^(failed|errored|timeout)/) s += $i} END {print s + 0}' <<<"$line")
  proto=$(sed -nE 's/^Application protocol: *//p' <<<"$out")
  if [[ -z $succeeded ]] || ((succeeded == 0)) || [[ $proto != h2* ]]; then
    echo "h2.sh: $name ($up upstream, $mode): no successful HTTP/2 requests (protocol '${proto:-none}'); h2load said:" >&2
    tail -n 12 <<<"$out" | sed 's/^/  /' >&2
    log_tail "$up" "$mode" "$name"
    ok[$name]=0 why[$name]=failed
    return 1
  fi
  ((failed > 0)) && echo "h2.sh: $name ($up upstream, $mode): $failed requests failed, errored or timed out" >&2
  # Answers other than 2xx: h2load's line of status codes says how many of each class.
  local status
  status=$(grep -E '^status codes: ' <<<"$out" || true)
  if (($(awk '{print $5 + $7 + $9}' <<<"$status") > 0)); then
    echo "h2.sh: $name ($up upstream, $mode): not every answer was a 2xx: $status" >&2
  fi
  ((nsamples > 0)) || echo "h2.sh: $name ($up upstream, $mode): no connection sample was taken" >&2
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
  otherp[$name]=$(awk -v t=$((ba - bb - (after - before) - (ca - cb) - (ka - kb) - sc)) -v hz="$ticks_per_s" -v d=$((t1 - t0)) \
    'BEGIN{v = t / hz * 1e6 / d * 100; printf "%.0f", (v < 0) ? 0 : v}')
  # The request that read the counter before the run is one of the accepts counted.
  upn[$name]=$((aa - ab - 1))
  upc[$name]=$(awk -v c="${upn[$name]}" -v r="$succeeded" 'BEGIN{printf "%.3f", c / r}')
  steal[$name]=$(awk -v t=$((sa - sb)) -v hz="$ticks_per_s" -v d=$((t1 - t0)) -v n="$(nproc)" \
    'BEGIN{printf "%.1f", t / hz * 1e6 / (d * n) * 100}')
}
run_one() {  # $1 upstream, $2 mode, $3 name
  local up=$1 mode=$2 name=$3 try rc=0 old=${started[$3]}
  # A proxy that exited in an earlier run (said then) is started again for this one.
  if ! kill -0 "$old" 2>/dev/null; then
    wait "$old" 2>/dev/null || rc=$?
    forget "$old"
    echo "h2.sh: $name ($up upstream, $mode): started again (it had exited, status $rc)" >&2
    launch "$up" "$mode" "$name"
    ready "$up" "$mode" "$name"
  elif [[ $name == nginx ]]; then
    ppid[$name]=$(worker_of "$old")   # a worker that died was replaced by its master
  fi
  h2load_run "$work/uris.$mode.$name" warm >/dev/null || true
  for try in $(seq "$TRIES"); do
    measure "$up" "$mode" "$name" || { tries[$name]=$try; return 0; }
    tries[$name]=$try
    awk -v s="${steal[$name]}" -v m="$STEAL_MAX" -v o="${otherp[$name]}" -v om="$OTHER_MAX" \
      'BEGIN{exit !(s <= m && o <= om)}' && break
    if ((try == TRIES)); then tries[$name]="$try!"; fi
  done
  echo "$up $mode $name ${rps[$name]} ${p50[$name]} ${p99[$name]} ${cpu[$name]} ${upc[$name]} ${conns[$name]}" >>"$all_runs"
}

# The verdict of the first proxy listed against the better of the others (that ran); with
# h2c backends, also its upstream connections per node against issue 16's 4.
# stdin: "name rps p99us cpu conns/node" per proxy that ran.
verdict() {  # $1 label, $2 upstream
  awk -v base="$base" -v label="$1" -v up="$2" -v inflight="$inflight" '
    {n[NR] = $1; r[$1] = $2; c[$1] = $4; k[$1] = $5}
    END {
      if (!(base in r)) {printf "verdict (%s): %s did not run\n", label, base; exit}
      br = -1; bc = -1; peers = ""
      for (i = 1; i <= NR; i++) {
        if (n[i] == base) continue
        if (r[n[i]] > br) {br = r[n[i]]; brn = n[i]}
        if (bc < 0 || c[n[i]] < bc) {bc = c[n[i]]; bcn = n[i]}
        peers = peers sprintf("%s%s %d", (peers == "") ? "" : ", ", n[i], k[n[i]])
      }
      if (br >= 0) {
        rps_ok = r[base] >= 1.2 * br; cpu_ok = c[base] <= 0.8 * bc
        printf "verdict (%s): %s requests/s %d vs %s %d (%.2fx, target >= 1.2x) %s; CPU %.2f us/request vs %s %.2f (%.2fx, target <= 0.8x) %s: %s\n",
          label, base, r[base], brn, br, r[base] / br, rps_ok ? "met" : "NOT met",
          c[base], bcn, bc, c[base] / bc, cpu_ok ? "met" : "NOT met", (rps_ok && cpu_ok) ? "both met" : "NOT both met"
      }
      if (up == "h2c")
        printf "verdict (%s): %s upstream conns/node (max) %d with %d streams in flight (target <= 4): %s%s\n",
          label, base, k[base], inflight, (k[base] <= 4) ? "met" : "NOT met", (peers == "") ? "" : " [" peers "]"
    }'
}
# A figure of the current part's successful runs of a proxy: $1 name, $2 field of all_runs.
this_part() { awk -v u="$up" -v m="$mode" -v n="$1" -v f="$2" '$1 == u && $2 == m && $3 == n {print $f}' "$all_runs"; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
load_desc="-D ${DURATION}s"
[[ -n $REQUESTS ]] && load_desc="-n $REQUESTS"
printf 'CPU: %s (%s cores)\n' "${cpu_model:-unknown}" "$(nproc)"
printf '%s; h2load -c %s -m %s %s -t 1 over %s URIs, %s rounds, modes: %s, upstream: %s; %s; a run with over %s%% steal or others over %s%% of a core is repeated (%s tries at most)\n' \
  "$(date -u +%F)" "$CLIENTS" "$STREAMS" "$load_desc" "$URIS" "$ROUNDS" "$MODES" "$UPSTREAM" \
  "$( ((PIN == 1)) && echo "proxy on CPU 1, h2load and backends on CPU 0" || echo "not pinned")" "$STEAL_MAX" "$OTHER_MAX" "$TRIES"
printf '%s; nginx %s; %s; h2o %s\n' "$(h2load --version 2>&1 | head -n1)" \
  "$(nginx -v 2>&1 | sed 's/.*nginx\///')" "$(haproxy -v 2>/dev/null | head -n1 | awk '{print "HAProxy " $3}')" \
  "$(h2o --version 2>/dev/null | head -n1 | awk '{print $3}')"
printf 'ulimit -n %s; nginx upstream keepalive %s; HAProxy maxconn %s; h2o proxies to one backend (2.2 cannot balance); h2c backends: nginx http2, 128 streams a connection; to them only ringproxy and HAProxy (nginx and h2o cannot proxy to HTTP/2); forwarded headers: %s\n' \
  "$nofile" "$nginx_keepalive" "$hap_maxconn" \
  "$([[ $FORWARDED == same ]] && echo "ringproxy, nginx and HAProxy add X-Forwarded-For/-Proto/-Host and Via, h2o its default three" || echo "each proxy's default")"

"${on_load[@]}" nginx -c "$work/backends.conf" -p "$work" & pids+=($!)
backends_pid=$!
for p in $B_STATUS ${bports[http1]} ${bports[h2c]}; do wait_port "$p" || exit 1; done
backends_worker=$(worker_of "$backends_pid")

# One part: the proxies of `order` taking HTTP/2 from h2load ($2: h2c or tls) and passing
# it to the backends ($1: http1 or h2c), ROUNDS rounds, then the medians and the verdict.
run_part() {
  local up=$1 mode=$2 round k name runs v to r0 c0
  write_configs "$up" "$mode"
  for name in "${order[@]}"; do write_uris "$mode" "$name"; done
  start_proxies "$up" "$mode"
  to="to HTTP/1.1 backends"
  [[ $up == h2c ]] && to="to h2c backends (HTTP/2 by prior knowledge, 128 streams a connection)"
  if [[ $mode == h2c ]]; then
    printf '\n## h2c (HTTP/2 by prior knowledge, plain TCP), %s connections x %s streams, %s\n' "$CLIENTS" "$STREAMS" "$to"
  else
    printf '\n## TLS 1.3, ALPN h2, %s connections x %s streams (a full handshake per connection, in the run), %s\n' \
      "$CLIENTS" "$STREAMS" "$to"
  fi
  for round in $(seq "$ROUNDS"); do
    rps=() p50=() p99=() cpu=() loadp=() steal=() upc=() upn=() conns=() tries=() ok=() why=()
    for ((k = 0; k < n; k++)); do
      name=${order[$(((round - 1 + k) % n))]}
      run_one "$up" "$mode" "$name"
    done
    printf '\nround %s (run in the order: %s)\n' "$round" "$(for ((k = 0; k < n; k++)); do printf '%s ' "${order[$(((round - 1 + k) % n))]}"; done)"
    printf '| proxy | requests/s | p50 ms | p99 ms | CPU us/request | rps vs %s | CPU vs %s | upstream connects/req | upstream connects | upstream conns/node (max) | h2load CPU %% | others CPU %% | steal %% | tries |\n' "$base" "$base"
    printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
    r0=0 c0=0   # the base's figures, if its run of this round counts (a failed retry leaves the earlier try's)
    if [[ ${ok[$base]:-0} == 1 ]]; then r0=${rps[$base]} c0=${cpu[$base]}; fi
    for name in "${order[@]}"; do
      if [[ ${ok[$name]:-0} != 1 ]]; then
        printf '| %s | %s | - | - | - | - | - | - | - | - | - | - | - | %s |\n' "$name" "${why[$name]:-failed}" "${tries[$name]:-1}"
        continue
      fi
      awk -v n="$name" -v r="${rps[$name]}" -v a="${p50[$name]}" -v b="${p99[$name]}" -v c="${cpu[$name]}" \
          -v r0="$r0" -v c0="$c0" -v l="${loadp[$name]}" -v st="${steal[$name]}" -v t="${tries[$name]}" \
          -v u="${upc[$name]}" -v un="${upn[$name]}" -v cn="${conns[$name]}" -v o="${otherp[$name]}" \
        'BEGIN{printf "| %s | %d | %.2f | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, r, a / 1000, b / 1000, c,
          (r0 > 0) ? sprintf("%.2fx", r / r0) : "-", (c0 > 0) ? sprintf("%.2fx", c / c0) : "-", u, un, cn, l, o, st, t}'
    done
    for name in "${order[@]}"; do
      if [[ ${ok[$name]:-0} == 1 ]]; then echo "$name ${rps[$name]} ${p99[$name]} ${cpu[$name]} ${conns[$name]}"; fi
    done | verdict "$up upstream, $mode, round $round" "$up"
  done
  stop_proxies

  printf '\nmedian over %s rounds (%s upstream, %s)\n' "$ROUNDS" "$up" "$mode"
  printf '| proxy | requests/s | p50 ms | p99 ms | CPU us/request | rps vs %s | CPU vs %s | upstream connects/req | upstream conns/node (max) | runs |\n' "$base" "$base"
  printf '|---|---|---|---|---|---|---|---|---|---|\n'
  local -A m_rps=() m_p50=() m_p99=() m_cpu=() m_upc=() m_conns=()
  for name in "${order[@]}"; do
    runs=$(this_part "$name" 4 | wc -l)
    ((runs > 0)) || { printf '| %s | failed | - | - | - | - | - | - | - | 0 |\n' "$name"; continue; }
    m_rps[$name]=$(this_part "$name" 4 | median)
    m_p50[$name]=$(this_part "$name" 5 | median)
    m_p99[$name]=$(this_part "$name" 6 | median)
    m_cpu[$name]=$(this_part "$name" 7 | median)
    m_upc[$name]=$(this_part "$name" 8 | median)
    m_conns[$name]=$(this_part "$name" 9 | sort -n | tail -n1)   # the largest of the rounds'
  done
  for name in "${order[@]}"; do
    [[ -n ${m_rps[$name]:-} ]] || continue
    awk -v n="$name" -v r="${m_rps[$name]}" -v a="${m_p50[$name]}" -v p="${m_p99[$name]}" -v c="${m_cpu[$name]}" \
        -v r0="${m_rps[$base]:-0}" -v c0="${m_cpu[$base]:-0}" -v k="$(this_part "$name" 4 | wc -l)" -v u="${m_upc[$name]}" \
        -v cn="${m_conns[$name]}" \
      'BEGIN{printf "| %s | %d | %.2f | %.2f | %.2f | %s | %s | %.3f | %s | %s |\n", n, r, a / 1000, p / 1000, c,
        (r0 > 0) ? sprintf("%.2fx", r / r0) : "-", (c0 > 0) ? sprintf("%.2fx", c / c0) : "-", u, cn, k}'
  done
  v=$(for name in "${order[@]}"; do
    if [[ -n ${m_rps[$name]:-} ]]; then echo "$name ${m_rps[$name]} ${m_p99[$name]} ${m_cpu[$name]} ${m_conns[$name]}"; fi
  done | verdict "$up upstream, $mode, medians, issue 16" "$up")
  if [[ -n $v ]]; then
    echo "$v"
    summary+=("$v")
  fi
}

summary=()
for up in "${up_list[@]}"; do
  mapfile -t order < <(proxies_for "$up")
  if ((${#order[@]} == 0)); then
    printf '\n## %s upstream: none of PROXIES (%s) can proxy to HTTP/2 backends (only ringproxy and HAProxy)\n' "$up" "$PROXIES"
    continue
  fi
  base=${order[0]}   # ratios and verdicts are the first listed's
  n=${#order[@]}
  for mode in "${mode_list[@]}"; do run_part "$up" "$mode"; done
done
if ((${#summary[@]} > 1)); then
  printf '\n'
  printf '%s\n' "${summary[@]}"
fi
