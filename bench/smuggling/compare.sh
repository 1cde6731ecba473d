#!/usr/bin/env bash
# The request-smuggling corpus (tests/corpus/smuggling) against ringproxy, nginx and
# HAProxy, each a reverse proxy in front of the same recording backend
# (recorder.py: counts every byte that reaches it and answers 200 to each request it
# can frame). For every case: the status each proxy answered and whether anything of
# the request reached the backend, as a markdown table on stdout (run_cases.py).
#   ringproxy  workers = 1, one backend
#   nginx      1 worker, proxy_pass, proxy_http_version 1.1 (Debian nginx-light defaults)
#   HAProxy    nbthread 1, mode http, defaults otherwise
# Everything listens on 127.0.0.1 and stops by itself (the recorder exits after
# LIFETIME seconds even if this script is killed).
#
#   bench/smuggling/compare.sh [build-dir]      env: BASE_PORT=28300
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
LIFETIME=${LIFETIME:-900}
for tool in nginx haproxy python3; do
  command -v "$tool" >/dev/null || { echo "smuggling: $tool missing: run scripts/install-deps.sh --bench" >&2; exit 1; }
done
[[ -x $build/proxy/ringproxy ]] || { echo "smuggling: build ringproxy first ($build/proxy/ringproxy)" >&2; exit 1; }
work=$(mktemp -d /tmp/ringproxy-smuggling-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

BASE=${BASE_PORT:-28300}
REC=$((BASE + 1)) CTL=$((BASE + 2))
P_RING=$((BASE + 11)) P_NGINX=$((BASE + 12)) P_HAPROXY=$((BASE + 13))

cat > "$work/ringproxy.toml" <<CONF
[proxy]
listen = "127.0.0.1:$P_RING"
workers = 1
retries = 0
log_level = "warn"
[admin]
listen = ""
[health]
path = "/__bench_health"
interval_ms = 3600000
timeout_ms = 1000
[[backend]]
name = "recorder"
address = "127.0.0.1:$REC"
CONF
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  upstream rec { server 127.0.0.1:$REC; keepalive 16; }
  server {
    listen 127.0.0.1:$P_NGINX;
    location / {
      proxy_pass http://rec;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 1024
defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  default_backend be
backend be
  server rec 127.0.0.1:$REC
CONF

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "smuggling: nothing listens on port $1" >&2
  exit 1
}

python3 "$here/recorder.py" --port "$REC" --control "$CTL" --lifetime "$LIFETIME" >"$work/recorder.out" 2>&1 & pids+=($!)
wait_port "$CTL"
"$build/proxy/ringproxy" -c "$work/ringproxy.toml" 2>"$work/ringproxy.err" & pids+=($!)
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.err" & pids+=($!)
wait_port "$P_RING"; wait_port "$P_NGINX"; wait_port "$P_HAPROXY"

echo "ringproxy $("$build/proxy/ringproxy" --version 2>&1 | head -n1), $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -n1 | cut -d' ' -f1-3)"
echo
timeout 900 python3 "$here/run_cases.py" "$root/tests/corpus/smuggling" "$CTL" \
  ringproxy="$P_RING" nginx="$P_NGINX" HAProxy="$P_HAPROXY"
