#!/bin/bash
# run_vtc.sh RINGPROXY FILE.vtc: one conformance case, as ctest runs it
# (tests/CMakeLists.txt). Exit 0 passed, 77 skipped (no varnishtest or no curl:
# ctest's SKIP_RETURN_CODE), anything else failed. The varnishtest log is printed
# whole on failure only; varnishtest -q would print the verdict without the log.
set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 RINGPROXY FILE.vtc" >&2
  exit 2
fi
ringproxy=$1
vtc=$2

for tool in varnishtest curl; do
  if ! command -v "$tool" > /dev/null 2>&1; then
    echo "SKIP: $tool not found (Debian: apt-get install varnish curl)"
    exit 77
  fi
done

log=$(mktemp "${TMPDIR:-/tmp}/ringproxy-vtc.XXXXXX")
trap 'rm -f "$log"' EXIT
# -t: the whole case, processes included, is bounded; each case takes about 1.5 s.
if varnishtest -v -t 30 -D ringproxy="$ringproxy" "$vtc" > "$log" 2>&1; then
  tail -n 1 "$log"
  exit 0
fi
cat "$log"
exit 1
