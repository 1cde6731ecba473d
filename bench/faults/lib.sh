# Shared by bench/faults/faults.sh and bench/soak/soak.sh (sourced, not run): four demo
# backends b1..b4 and two ringproxy instances pa, pb in one gossip cluster, all on
# 127.0.0.1 from BASE_PORT, with the helpers the fault timelines use. The caller sets
# `root`, `build` and BASE before sourcing.
proxy_bin=$build/proxy/ringproxy
backend_bin=$build/examples/demo-backend/ringproxy-demo-backend
for b in "$proxy_bin" "$backend_bin"; do
  [[ -x $b ]] || { echo "bench: build first ($b missing)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "bench: wrk missing: scripts/install-deps.sh --bench" >&2; exit 1; }

work=$(mktemp -d /tmp/ringproxy-bench-XXXXXX)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

P_A=$((BASE + 11)) P_B=$((BASE + 12)) ADMIN_A=$((BASE + 21)) ADMIN_B=$((BASE + 22))
G_A=$((BASE + 31)) G_B=$((BASE + 32))

t0=$(date +%s.%N)
stamp() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%6.1f s", b - a}'; }
say() { printf '  [%s] %s\n' "$(stamp)" "$*"; }

wait_line() {  # FILE NEEDLE: up to 10 s
  for _ in $(seq 200); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: '$2' never appeared in $1" >&2
  exit 1
}

# start_backend N [demo-backend options...]
start_backend() {
  local n=$1; shift
  : >"$work/b$n.out"
  "$backend_bin" --name "b$n" --listen "127.0.0.1:$((BASE + n))" "$@" >"$work/b$n.out" 2>>"$work/b$n.err" &
  pid[b$n]=$!
  wait_line "$work/b$n.out" listening
}
stop() { kill -9 "${pid[$1]}" 2>/dev/null || true; wait "${pid[$1]}" 2>/dev/null || true; }

proxy_config() {  # NAME PORT ADMIN GOSSIP
  cat <<CONF
[proxy]
listen = "127.0.0.1:$2"
workers = 1
hash_key = "uri"
retries = 2
connect_timeout_ms = 500
upstream_timeout_ms = 1000
idle_timeout_ms = 1000
log_level = "info"
[health]
interval_ms = 200
timeout_ms = 200
rise = 2
fall = 2
eject_after_failures = 3
eject_base_ms = 2000
[admin]
listen = "127.0.0.1:$3"
[gossip]
bind = "127.0.0.1:$4"
name = "$1"
interval_ms = 200
seeds = ["127.0.0.1:$G_A", "127.0.0.1:$G_B"]
CONF
  for n in 1 2 3 4; do printf '[[backend]]\nname = "b%s"\naddress = "127.0.0.1:%s"\n' "$n" "$((BASE + n))"; done
}
start_proxy() {  # NAME PORT ADMIN GOSSIP
  proxy_config "$@" >"$work/$1.toml"
  "$proxy_bin" -c "$work/$1.toml" 2>>"$work/$1.err" &
  pid[$1]=$!
  wait_line "$work/$1.err" "listening on"
}

fds() { ls "/proc/${pid[pa]}/fd" | wc -l; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/${pid[pa]}/status"; }

start_cluster() {
  for n in 1 2 3 4; do start_backend "$n"; done
  start_proxy pa "$P_A" "$ADMIN_A" "$G_A"
  start_proxy pb "$P_B" "$ADMIN_B" "$G_B"
  wait_line "$work/pa.err" "member pb"
}
