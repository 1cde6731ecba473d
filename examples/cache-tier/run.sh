#!/usr/bin/env bash
# A cache tier, measured: three Varnish caches in front of one slow origin, with
# ringproxy (consistent hash on the URI) and, for comparison, nginx round-robin in front
# of the same caches. Prints cache hit ratios (from each answer's X-Cache header, set by
# cache.vcl) for:
#   (a) two passes over N distinct URIs through ringproxy, and through round-robin;
#   (b) one cache killed: right after, and after one refill pass;
#   (c) the cache back: restarted empty (malloc storage does not survive a restart),
#       without slow start; paused and resumed (its storage survives); another cache
#       restarted empty with slow start, pass by pass over the ramp.
# Everything runs on 127.0.0.1 on free ports, in a temp dir, and stops by itself
# (a minute or so). Needs varnish and nginx-light: scripts/install-deps.sh --test.
#
#   examples/cache-tier/run.sh [--uris N] [--delay-ms MS] [--slow-start-ms MS] [--keep]
#
# --keep leaves the temp dir (configs and every log) for reading; JOBS=N sets the build
# parallelism (default: the number of CPUs).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

URIS=3000
DELAY_MS=20
SLOW_START_MS=8000
KEEP=0
CONCURRENCY=32
while (($#)); do
  case "$1" in
    --uris) URIS=$2; shift 2 ;;
    --delay-ms) DELAY_MS=$2; shift 2 ;;
    --slow-start-ms) SLOW_START_MS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: $0 [--uris N] [--delay-ms MS] [--slow-start-ms MS] [--keep]" >&2; exit 2 ;;
  esac
done

VARNISHD=/usr/sbin/varnishd
NGINX=/usr/sbin/nginx
PY=/usr/bin/python3
for exe in "$VARNISHD" "$NGINX" "$PY"; do
  if [[ ! -x $exe ]]; then
    echo "run.sh: $exe is missing; run scripts/install-deps.sh --test" >&2
    exit 1
  fi
done
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "${JOBS:-$(nproc)}" --target ringproxy ringproxy-demo-backend >/dev/null
RINGPROXY=$ROOT/build/proxy/ringproxy
BACKEND=$ROOT/build/examples/demo-backend/ringproxy-demo-backend

T=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-cache-tier-XXXXXX")
declare -A PID=()
cleanup() {
  local p
  for p in "${PID[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((KEEP)); then echo "logs and configs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port that was free a moment ago (racy by nature; fine on a quiet loopback).
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 50 ms, fails after SECONDS.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 20; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "run.sh: timed out waiting for $what (logs in $T)" >&2
  KEEP=1
  exit 1
}
in_log() { grep -qF -- "$2" "$1"; }
node_state_is() { curl -sf "http://127.0.0.1:$1/nodes/$2" | grep -q "\"state\": *\"$3\""; }

ORIGIN_PORT=$(free_port)
"$BACKEND" --name origin --listen "127.0.0.1:$ORIGIN_PORT" --delay-ms "$DELAY_MS" >"$T/origin.log" 2>&1 &
PID[origin]=$!
wait_for "the origin" 10 in_log "$T/origin.log" listening
sed "s/ORIGIN_PORT/$ORIGIN_PORT/" examples/cache-tier/cache.vcl >"$T/cache.vcl"

CACHES=(cache-a cache-b cache-c)
declare -A PORT=()
for c in "${CACHES[@]}"; do PORT[$c]=$(free_port); done

# Varnish in the foreground (-F), no management port (-T none), no privilege
# separation (-j none: the temp dir is root's and 0700, which the default jail's
# unprivileged user could not read), 64 MB of memory storage, named by -i.
start_cache() {
  local c=$1 from
  from=$(($(stat -c %s "$T/$c.log" 2>/dev/null || echo 0) + 1))
  "$VARNISHD" -F -j none -T none -n "$T/varnish-$c" -a "127.0.0.1:${PORT[$c]}" -f "$T/cache.vcl" \
    -s malloc,64m -i "$c" >>"$T/$c.log" 2>&1 &
  PID[$c]=$!
  wait_for "$c to start" 30 sh -c "tail -c +$from '$T/$c.log' | grep -q 'said Child starts'"
}
# SIGTERM: the manager stops its child, then exits.
stop_cache() { kill -TERM "${PID[$1]}"; wait "${PID[$1]}" 2>/dev/null || true; unset "PID[$1]"; }
for c in "${CACHES[@]}"; do start_cache "$c"; done

# Two ringproxies over the same caches: P0 without slow start, P1 with it. P1 starts
# only for the slow-start run at the end, so it has seen no earlier churn (a node still
# ramping up, or held down by flap damping, would blur its numbers).
start_ringproxy() {
  local name=$1 slow=$2 port=$3 admin=$4 c
  {
    printf '[proxy]\nlisten = "127.0.0.1:%s"\nworkers = 2\nhash_key = "uri"\nupstream_timeout_ms = 2000\n' "$port"
    printf '[admin]\nlisten = "127.0.0.1:%s"\n' "$admin"
    printf '[health]\npath = "/health"\ninterval_ms = 100\ntimeout_ms = 100\nfall = 2\nrise = 2\nslow_start_ms = %s\n' "$slow"
    for c in "${CACHES[@]}"; do printf '[[backend]]\nname = "%s"\naddress = "127.0.0.1:%s"\n' "$c" "${PORT[$c]}"; done
  } >"$T/$name.toml"
  "$RINGPROXY" -c "$T/$name.toml" >"$T/$name.log" 2>&1 &
  PID[$name]=$!
  wait_for "$name" 10 in_log "$T/$name.log" "listening on"
}
P0=$(free_port) A0=$(free_port) P1=$(free_port) A1=$(free_port)
start_ringproxy ringproxy "0" "$P0" "$A0"

# nginx round-robin (its default) over the same caches, one process in the foreground.
RR=$(free_port)
cat >"$T/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $T/nginx.pid;
error_log $T/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $T/nginx-body;
  proxy_temp_path $T/nginx-proxy;
  fastcgi_temp_path $T/nginx-fastcgi;
  uwsgi_temp_path $T/nginx-uwsgi;
  scgi_temp_path $T/nginx-scgi;
  upstream caches {
$(for c in "${CACHES[@]}"; do echo "    server 127.0.0.1:${PORT[$c]};"; done)
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$RR;
    keepalive_requests 100000;
    location / {
      proxy_pass http://caches;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
EOF
"$NGINX" -p "$T" -e "$T/nginx-error.log" -c "$T/nginx.conf" >"$T/nginx.log" 2>&1 &
PID[nginx]=$!
wait_for nginx 10 curl -sf -o /dev/null "http://127.0.0.1:$RR/health"

# pass LABEL PORT PREFIX [load.py options]: one pass over the URIs, one line printed.
pass() {
  local label=$1 port=$2 prefix=$3
  shift 3
  printf '  %-50s %s\n' "$label" "$("$PY" examples/cache-tier/load.py --port "$port" --prefix "$prefix" \
    --count "$URIS" --concurrency "$CONCURRENCY" "$@")"
}
share_of() { curl -sf "http://127.0.0.1:$1/nodes/$2" | "$PY" -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["share"])'; }

echo "cache tier: origin 127.0.0.1:$ORIGIN_PORT (${DELAY_MS} ms a request), varnish" \
  "$(for c in "${CACHES[@]}"; do printf '%s=%s ' "$c" "${PORT[$c]}"; done)"
echo "ringproxy :$P0 (slow start off), nginx round-robin :$RR, later ringproxy :$P1 (slow_start_ms $SLOW_START_MS);" \
  "$URIS URIs a pass, $CONCURRENCY connections"
SHARE_B=$(share_of "$A0" cache-b)
echo "cache-b's share of the ring: $SHARE_B"
START=$SECONDS

echo
echo "(a) two passes over the same URIs, fresh objects (a URI prefix per balancer)"
pass "ringproxy pass 1" "$P0" /rp/
pass "ringproxy pass 2" "$P0" /rp/
pass "round-robin pass 1" "$RR" /rr/
pass "round-robin pass 2 (shuffled order)" "$RR" /rr/ --shuffle 1
pass "round-robin pass 3 (shuffled order)" "$RR" /rr/ --shuffle 2
objects() {
  local c total=0 n
  for c in "${CACHES[@]}"; do
    n=$(varnishstat -n "$T/varnish-$c" -1 -f MAIN.n_object 2>/dev/null | awk '{print $2}')
    total=$((total + ${n:-0}))
  done
  echo "$total"
}
echo "  objects held by the three caches now: $(objects) (ringproxy's $URIS URIs once; round-robin's held 1-3 times)"

echo
echo "(b) cache-b killed (SIGTERM to its varnishd)"
stop_cache cache-b
wait_for "cache-b down on ringproxy" 10 node_state_is "$A0" cache-b down
pass "ringproxy right after (expect 1 - $SHARE_B)" "$P0" /rp/
pass "ringproxy after that refill pass" "$P0" /rp/

echo
echo "(c) cache-b back"
start_cache cache-b
wait_for "cache-b up on ringproxy" 10 node_state_is "$A0" cache-b up
pass "restarted empty, no slow start: right after" "$P0" /rp/
pass "  the pass after" "$P0" /rp/

# SIGSTOP to the child, then the manager: no answers, so the checks take it down, but
# its memory (the objects) survives, which a restart of malloc storage never does.
CHILD_B=$(pgrep -P "${PID[cache-b]}")
kill -STOP "$CHILD_B" "${PID[cache-b]}"
PID[cache-b-child]=$CHILD_B
wait_for "cache-b down on ringproxy" 10 node_state_is "$A0" cache-b down
pass "paused (storage kept): while away" "$P0" /rp/
kill -CONT "${PID[cache-b]}" "$CHILD_B"
unset "PID[cache-b-child]"
wait_for "cache-b up on ringproxy" 10 node_state_is "$A0" cache-b up
pass "  resumed: right after" "$P0" /rp/

# Slow start, on a fresh ringproxy and on cache-c: cache-b has fallen twice within a
# minute by now, and a third fall would get it held down for about two minutes by flap
# damping (README "Health", RFC 2439).
start_ringproxy ringproxy-slow "$SLOW_START_MS" "$P1" "$A1"
SHARE_C=$(share_of "$A1" cache-c)
pass "ringproxy-slow, all three up" "$P1" /rp/
stop_cache cache-c
wait_for "cache-c down on ringproxy-slow" 10 node_state_is "$A1" cache-c down
pass "cache-c killed, ringproxy-slow: right after" "$P1" /rp/
pass "  refill pass" "$P1" /rp/
from=$(stat -c %s "$T/ringproxy-slow.log")
start_cache cache-c
wait_for "slow start on ringproxy-slow" 10 sh -c "tail -c +$((from + 1)) '$T/ringproxy-slow.log' | grep -q 'node=cache-c down -> up.*slow start'"
ramp_start=$SECONDS
pass "cache-c restarted empty, slow start: right after" "$P1" /rp/
while ((SECONDS - ramp_start < SLOW_START_MS / 1000 + 1)); do
  sleep 1
  pass "  $((SECONDS - ramp_start)) s into the ramp" "$P1" /rp/
done
pass "  after the ramp (cache-c share $SHARE_C)" "$P1" /rp/

echo
echo "done in $((SECONDS - START)) s"
