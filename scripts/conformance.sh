#!/bin/bash
# scripts/conformance.sh [--pending] [-v] [RINGPROXY]
#
# Runs the HTTP conformance suite (tests/conformance/*.vtc, see its README.md) against
# RINGPROXY (default: build/proxy/ringproxy), two cases at a time, and prints one line
# per case. --pending runs tests/conformance/pending/*.vtc instead: a pending case that
# passes is ready to move up into tests/conformance/ (and so into ctest). -v prints the
# varnishtest log of each failing case. Exit 0 when every case run passed (or, with
# --pending, always: pending cases are expected to fail).
#
# ctest runs the same cases one by one: ctest --test-dir build -L conformance
set -u
cd "$(dirname "$0")/.."

dir=tests/conformance
pending=0
verbose=0
ringproxy=build/proxy/ringproxy
for arg in "$@"; do
  case "$arg" in
    --pending) pending=1; dir=tests/conformance/pending ;;
    -v) verbose=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; exit 2 ;;
    *) ringproxy=$arg ;;
  esac
done
ringproxy=$(realpath "$ringproxy" 2> /dev/null || echo "$ringproxy")
if [ ! -x "$ringproxy" ]; then
  echo "no ringproxy binary at $ringproxy: build it (cmake --build build --target ringproxy) or name it" >&2
  exit 2
fi
for tool in varnishtest curl; do
  command -v "$tool" > /dev/null || { echo "$tool not found (Debian: apt-get install varnish curl)" >&2; exit 2; }
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-conformance.XXXXXX")
trap 'rm -rf "$logs"' EXIT
start=$(date +%s%N)
# One varnishtest per case (as ctest does), two at a time: the cases take their ports
# from their own mock servers, so they never collide.
printf '%s\n' "$dir"/*.vtc | xargs -P 2 -I{} sh -c '
  name=$(basename "{}" .vtc)
  if varnishtest -v -t 30 -D ringproxy="$1" "{}" > "$2/$name.log" 2>&1; then
    echo "pass $name"
  else
    echo "FAIL $name"
  fi' sh "$ringproxy" "$logs" | sort -k2 > "$logs/summary"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))

cat "$logs/summary"
failed=$(grep -c '^FAIL' "$logs/summary")
total=$(wc -l < "$logs/summary")
printf '%d of %d passed in %d.%01d s (%s)\n' $((total - failed)) "$total" $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100)) "$dir"
if [ "$verbose" = 1 ]; then
  for name in $(awk '$1 == "FAIL" { print $2 }' "$logs/summary"); do
    echo "===== $name"
    cat "$logs/$name.log"
  done
fi
[ "$pending" = 1 ] || [ "$failed" = 0 ]
