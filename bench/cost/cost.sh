#!/usr/bin/env bash
# Per-request cost of ringproxy: user-space instructions (callgrind) and syscalls (perf).
# The method of README.md's "Where ringproxy's CPU goes" (the 8,738 figure); see
# bench/cost/README.md for how to read the output.
#
#   bench/cost/cost.sh BUILD_DIR     (a Release build: BUILD_DIR/proxy/ringproxy and
#                                     BUILD_DIR/examples/demo-backend/ringproxy-demo-backend)
#
# One demo backend and one ringproxy (workers = 1, access log off, admin off, log_level
# warn) on 127.0.0.1, with a temporary config, then:
#   1. callgrind: ringproxy under `valgrind --tool=callgrind` while `wrk -t1 -c4 -d8s`
#      requests /k/1 (keep-alive); then the same for an idle run of the same length
#      (start-up, 8 s of health probes and timers, shutdown; no request). Prints
#      (Ir of the loaded run - Ir of the idle run) / requests wrk counted, and the
#      functions with the most self instructions per request, net of the idle run.
#   2. syscalls: ringproxy natively; a 1 s unmeasured wrk warm-up, then
#      `perf stat -e 'syscalls:sys_enter_*' -p PID` attached for the whole of
#      `wrk -t1 -c50 -d6s`. Prints each syscall per request (those >= 0.01) and the
#      total of all syscalls per request.
# Every process it starts it stops by pid (trap on EXIT); it stops no other.
#
# env: PARTS="callgrind syscalls"  CG_CONNS=4 CG_DURATION=8  SC_CONNS=50 SC_DURATION=6
#      MODE=keepalive (close: every request carries "Connection: close", so each is a new
#      client connection and the figures are per new connection)
#      TLS=1: the listener speaks TLS 1.3 (an ECDSA P-256 certificate made here) and wrk
#      https: the figures then include the TLS layer (its handshakes are amortised over
#      the keep-alive requests of wrk's connections)
#      TOP=15 (functions listed; 0: none)  BASE_PORT=18400 (backend BASE+1, proxy BASE+2)
#      KEEP=1 keeps the work directory (callgrind outputs, logs) and prints its path.
#      RINGPROXY_EXTRA=FILE is appended to ringproxy's config (bench/routes/routes20.toml:
#      20 [[route]]s no request matches)
set -euo pipefail

usage() { echo "usage: bench/cost/cost.sh BUILD_DIR   (see the comment at the top)" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
build=$(cd "$1" && pwd) || usage
proxy=$build/proxy/ringproxy
backend=$build/examples/demo-backend/ringproxy-demo-backend
[[ -x $proxy ]] || { echo "cost: no $proxy" >&2; exit 1; }
[[ -x $backend ]] || { echo "cost: no $backend (build target ringproxy-demo-backend)" >&2; exit 1; }

PARTS=${PARTS:-callgrind syscalls}
CG_CONNS=${CG_CONNS:-4}
CG_DURATION=${CG_DURATION:-8}
SC_CONNS=${SC_CONNS:-50}
SC_DURATION=${SC_DURATION:-6}
TOP=${TOP:-15}
BASE=${BASE_PORT:-18400}
KEEP=${KEEP:-0}
MODE=${MODE:-keepalive}
case $MODE in
  keepalive) wrk_hdr=() ;;
  close) wrk_hdr=(-H "Connection: close") ;;
  *) echo "cost: MODE is keepalive or close, got '$MODE'" >&2; exit 2 ;;
esac
B_PORT=$((BASE + 1))
P_PORT=$((BASE + 2))
TLS=${TLS:-0}
scheme=http
[[ $TLS == 1 ]] && scheme=https
URL=$scheme://127.0.0.1:$P_PORT/k/1

for p in $PARTS; do
  case $p in
    callgrind) need=(valgrind callgrind_annotate wrk ss) ;;
    syscalls) need=(perf wrk ss) ;;
    *) echo "cost: PARTS lists callgrind and/or syscalls, got '$p'" >&2; exit 2 ;;
  esac
  for t in "${need[@]}"; do
    command -v "$t" >/dev/null || { echo "cost: $t missing (needed for $p)" >&2; exit 1; }
  done
done
for port in "$B_PORT" "$P_PORT"; do
  if [[ -n $(ss -ltnH "sport = :$port") ]]; then
    echo "cost: port $port is in use; set BASE_PORT" >&2
    exit 1
  fi
done

work=$(mktemp -d /tmp/ringproxy-cost-XXXXXX)
pids=()       # everything started here, stopped by pid on exit
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ $KEEP == 1 ]]; then echo "cost: work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$work/ringproxy.toml" <<CONF
[proxy]
listen = "127.0.0.1:$P_PORT"
workers = 1
access_log = ""
log_level = "warn"

[admin]
listen = ""

[[backend]]
name = "a"
address = "127.0.0.1:$B_PORT"
CONF
if [[ $TLS == 1 ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/site.key" \
    -out "$work/site.pem" -days 7 -subj /CN=cost.test 2>/dev/null
  printf '\n[proxy.tls]\ncertificates = [{ cert = "%s", key = "%s" }]\nmin_version = "TLSv1.3"\n' \
    "$work/site.pem" "$work/site.key" >>"$work/ringproxy.toml"
fi
if [[ -n ${RINGPROXY_EXTRA:-} ]]; then
  printf '\n' >>"$work/ringproxy.toml"
  cat "$RINGPROXY_EXTRA" >>"$work/ringproxy.toml"
fi
"$proxy" --check -c "$work/ringproxy.toml" >/dev/null

# Listening, as ss sees it: no probe connection, which the proxy would count as work.
wait_listen() {  # PORT PID SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [[ -n $(ss -ltnH "sport = :$1") ]] && return 0
    kill -0 "$2" 2>/dev/null || { echo "cost: process $2 exited before listening on $1" >&2; exit 1; }
    sleep 0.1
  done
  echo "cost: nothing listens on port $1 after $3 s" >&2
  exit 1
}
forget() {  # PID: no longer ours to stop (it has exited and been waited for)
  local q keep=()
  for q in "${pids[@]}"; do [[ $q == "$1" ]] || keep+=("$q"); done
  pids=("${keep[@]}")
}
# Stops one process we started (SIGTERM: ringproxy drains and exits), waits for it.
stop() {  # PID
  local rc=0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" || rc=$?
  forget "$1"
  return "$rc"
}
requests_of() { sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$1"; }
rps_of() { sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' "$1"; }
check_wrk() {  # FILE: errors are reported; a run with none at all stops here
  local n
  n=$(requests_of "$1")
  [[ -n $n && $n -gt 0 ]] || { echo "cost: wrk counted no requests:" >&2; cat "$1" >&2; exit 1; }
  if grep -qE 'Socket errors|Non-2xx' "$1"; then
    echo "cost: warning: wrk saw errors: $(grep -E 'Socket errors|Non-2xx' "$1" | tr -s ' ')" >&2
  fi
}

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
echo "ringproxy per-request cost, $(date -u '+%F %H:%M') UTC, ${cpu_model:-unknown CPU} ($(nproc) cores)"
echo "binary: $proxy ($("$proxy" --version 2>/dev/null | head -n1), built $(date -u -r "$proxy" '+%F %H:%M') UTC)"
echo "one demo backend, ringproxy workers=1, access log off; wrk to $URL"

"$backend" --name a --listen "127.0.0.1:$B_PORT" >"$work/backend.log" 2>&1 &
backend_pid=$!
pids+=("$backend_pid")
wait_listen "$B_PORT" "$backend_pid" 10

# ---------------------------------------------------------------------------------------
# 1. Instructions per request (callgrind), net of an idle run of the same length.

callgrind_run() {  # NAME LOAD(0/1): sets total_ir (and wrk's file when LOAD)
  local name=$1 load=$2 pid out=$work/cg-$1.out
  valgrind --tool=callgrind --callgrind-out-file="$out" "$proxy" -c "$work/ringproxy.toml" \
    >"$work/cg-$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_listen "$P_PORT" "$pid" 60
  if [[ $load == 1 ]]; then
    wrk -t1 -c"$CG_CONNS" -d"${CG_DURATION}s" "${wrk_hdr[@]}" "$URL" >"$work/wrk-cg.txt" 2>&1
  else
    sleep "$CG_DURATION"
  fi
  stop "$pid" || { echo "cost: ringproxy under callgrind exited with an error:" >&2; tail -5 "$work/cg-$name.log" >&2; exit 1; }
  total_ir=$(awk '/^totals:/ {print $2; exit} /^summary:/ {s = $2} END {if (s != "") print s}' "$out" | head -n1)
  [[ -n $total_ir ]] || { echo "cost: no totals in $out" >&2; exit 1; }
}
# Self instructions per function (callgrind_annotate, inclusive off), "IR<TAB>function [object]".
self_costs() {
  callgrind_annotate --threshold=100 --inclusive=no "$1" 2>/dev/null |
    awk '/PROGRAM TOTALS/ {next}
      match($0, /^ *[0-9,]+ \( *[0-9.]+%\)  /) {
        n = substr($0, 1, RLENGTH); sub(/ \(.*/, "", n); gsub(/[ ,]/, "", n)
        f = substr($0, RLENGTH + 1); sub(/^[^:]*:/, "", f)
        obj = f; fn = f
        if (match(f, / \[[^]]*\]$/)) { obj = substr(f, RSTART + 2, RLENGTH - 3); fn = substr(f, 1, RSTART - 1); sub(/.*\//, "", obj) } else obj = ""
        cost[fn " [" obj "]"] += n
      }
      END {for (k in cost) printf "%s\t%s\n", cost[k], k}'
}

if [[ " $PARTS " == *" callgrind "* ]]; then
  echo
  echo "## 1. user-space instructions per request (callgrind; wrk -t1 -c$CG_CONNS -d${CG_DURATION}s, $MODE)"
  callgrind_run load 1
  load_ir=$total_ir
  check_wrk "$work/wrk-cg.txt"
  cg_requests=$(requests_of "$work/wrk-cg.txt")
  callgrind_run idle 0
  idle_ir=$total_ir
  awk -v l="$load_ir" -v i="$idle_ir" -v r="$cg_requests" -v rps="$(rps_of "$work/wrk-cg.txt")" -v d="$CG_DURATION" 'BEGIN {
    printf "loaded run: %.0f instructions, %d requests (%s requests/s under valgrind)\n", l, r, rps
    printf "idle run:   %.0f instructions (start-up, %s s idle, shutdown)\n", i, d
    printf "instructions per request, all of the run:     %.0f\n", l / r
    printf "instructions per request, net of the idle run: %.0f\n", (l - i) / r
  }'
  if ((TOP > 0)); then
    echo
    echo "top $TOP functions by self instructions per request (loaded run minus idle run, per function):"
    self_costs "$work/cg-load.out" >"$work/self-load.tsv"
    self_costs "$work/cg-idle.out" >"$work/self-idle.tsv"
    awk -F'\t' -v r="$cg_requests" -v top="$TOP" '
      NR == FNR {idle[$2] = $1; next}
      {net[$2] = $1 - idle[$2]}
      END {
        n = 0
        for (k in net) keys[++n] = k
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (net[keys[j]] > net[keys[i]]) {t = keys[i]; keys[i] = keys[j]; keys[j] = t}
        for (i = 1; i <= n && i <= top; i++) printf "  %8.1f  %s\n", net[keys[i]] / r, substr(keys[i], 1, 120)
      }' "$work/self-idle.tsv" "$work/self-load.tsv"
  fi
fi

# ---------------------------------------------------------------------------------------
# 2. Syscalls per request (perf stat on the syscall-entry tracepoints of the proxy).

perf_ready() {  # PERF_PID: its event descriptors are open and their count has settled
  local prev=-1 n i
  for ((i = 0; i < 100; i++)); do
    n=$(find /proc/"$1"/fd -lname '*perf_event*' 2>/dev/null | wc -l)
    if ((n > 0 && n == prev)); then return 0; fi
    prev=$n
    sleep 0.2
  done
  return 1
}

if [[ " $PARTS " == *" syscalls "* ]]; then
  echo
  echo "## 2. syscalls per request (perf stat -e 'syscalls:sys_enter_*' -p PID; wrk -t1 -c$SC_CONNS -d${SC_DURATION}s, $MODE)"
  "$proxy" -c "$work/ringproxy.toml" >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_listen "$P_PORT" "$proxy_pid" 10
  wrk -t1 -c"$SC_CONNS" -d1s "${wrk_hdr[@]}" "$URL" >/dev/null 2>&1   # warm-up: connections, pool, allocator
  perf stat -x, -e 'syscalls:sys_enter_*' -p "$proxy_pid" -o "$work/perf.csv" >"$work/perf.log" 2>&1 &
  perf_pid=$!
  pids+=("$perf_pid")
  perf_ready "$perf_pid" || { echo "cost: perf stat did not attach: $(cat "$work/perf.log")" >&2; exit 1; }
  wrk -t1 -c"$SC_CONNS" -d"${SC_DURATION}s" "${wrk_hdr[@]}" "$URL" >"$work/wrk-sc.txt" 2>&1
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  forget "$perf_pid"
  check_wrk "$work/wrk-sc.txt"
  sc_requests=$(requests_of "$work/wrk-sc.txt")
  stop "$proxy_pid" || echo "cost: warning: ringproxy exited with an error" >&2
  grep -q 'sys_enter_' "$work/perf.csv" || { echo "cost: perf counted nothing:" >&2; cat "$work/perf.csv" "$work/perf.log" >&2; exit 1; }
  echo "$sc_requests requests ($(rps_of "$work/wrk-sc.txt") requests/s, perf attached from before wrk's start to after its end)"
  awk -F, -v r="$sc_requests" '
    $3 ~ /syscalls:sys_enter_/ && $1 ~ /^[0-9]+$/ {
      name = $3; sub(/.*sys_enter_/, "", name)
      c[name] += $1; total += $1
    }
    END {
      n = 0
      for (k in c) if (c[k] / r >= 0.01) keys[++n] = k
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (c[keys[j]] > c[keys[i]]) {t = keys[i]; keys[i] = keys[j]; keys[j] = t}
      printf "  %-16s %10s %9s\n", "syscall", "count", "/request"
      for (i = 1; i <= n; i++) printf "  %-16s %10d %9.3f\n", keys[i], c[keys[i]], c[keys[i]] / r
      printf "  %-16s %10d %9.3f   (all syscalls, those under 0.01/request included)\n", "total", total, total / r
    }' "$work/perf.csv"
fi
