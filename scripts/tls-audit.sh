#!/usr/bin/env bash
# Audits ringproxy's TLS listener with Debian's testssl.sh (scripts/install-deps.sh
# --bench installs it): protocols, cipher suites and their order, forward secrecy,
# server defaults (certificates, tickets, resumption), HTTP security headers that
# apply, and the known vulnerabilities it tests (Heartbleed, CCS, ticketbleed, ROBOT,
# renegotiation, CRIME, BREACH, POODLE, SWEET32, FREAK, DROWN, LOGJAM, BEAST, LUCKY13,
# RC4, ...). README.md "TLS" summarises its findings.
#
# One demo backend and one ringproxy on 127.0.0.1 with an ECDSA P-256 and an RSA 2048
# certificate for the same name (made here, self-signed: testssl.sh's trust verdict is
# then "self signed", expected). Everything it starts it stops, by pid.
#
#   scripts/tls-audit.sh [BUILD_DIR]    env: OUT=FILE (the full report; default: a temp
#                                       file, printed at the end) BASE_PORT=18900
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
proxy=$build/proxy/ringproxy
backend=$build/examples/demo-backend/ringproxy-demo-backend
[[ -x $proxy && -x $backend ]] || { echo "tls-audit: build ringproxy and ringproxy-demo-backend in $build first" >&2; exit 1; }
command -v testssl >/dev/null || { echo "tls-audit: testssl missing: scripts/install-deps.sh --bench" >&2; exit 1; }
BASE=${BASE_PORT:-18900}
work=$(mktemp -d /tmp/ringproxy-tls-audit-XXXXXX)
OUT=${OUT:-$work/testssl.txt}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ec.key" -out "$work/ec.pem" \
  -days 30 -subj /CN=audit.test -addext subjectAltName=DNS:audit.test 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/rsa.key" -out "$work/rsa.pem" \
  -days 30 -subj /CN=audit.test -addext subjectAltName=DNS:audit.test 2>/dev/null
cat >"$work/ringproxy.toml" <<CONF
[proxy]
listen = "127.0.0.1:$((BASE + 2))"
workers = 2
log_level = "warn"
[proxy.tls]
certificates = [
  { cert = "$work/ec.pem", key = "$work/ec.key" },
  { cert = "$work/rsa.pem", key = "$work/rsa.key" },
]
[admin]
listen = ""
[[backend]]
name = "a"
address = "127.0.0.1:$((BASE + 1))"
CONF
"$backend" --name a --listen "127.0.0.1:$((BASE + 1))" >"$work/backend.log" 2>&1 & pids+=($!)
"$proxy" -c "$work/ringproxy.toml" 2>"$work/proxy.log" & pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$((BASE + 2))") 2>/dev/null && break
  sleep 0.05
done
echo "tls-audit: $(testssl --version 2>/dev/null | grep -m1 -o 'testssl.sh *[0-9.]*[^ ]*' || echo testssl), OpenSSL $(openssl version | cut -d' ' -f2), $(date -u +%F)"
# --ip one: the address given; --sneaky: a browser-like User-Agent; warnings off: no
# interactive questions. Exit status is testssl's count of findings: not ours to fail on.
testssl --quiet --color 0 --warnings off --ip one --sneaky "https://127.0.0.1:$((BASE + 2))/" >"$OUT" 2>&1 || true
cat "$OUT"
