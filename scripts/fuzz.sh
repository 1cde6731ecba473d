#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and runs each
# for FUZZ_SECONDS (default 60) over a working copy of its seed corpus, kept in
# build-fuzz/corpus/TARGET so that later runs start from what earlier ones found.
#   scripts/fuzz.sh                          every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh fuzz_request fuzz_response
# Prints each target's executions and any crash file; exits 1 if any target crashed
# (a crash, a sanitizer report, a failed check, a timeout or an out-of-memory).
# A finding goes to tests/regressions/TARGET/ (minimize it first: -minimize_crash=1),
# where tests/fuzz_regression_test.cc replays it under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
build=build-fuzz
all=(fuzz_request fuzz_response fuzz_h1_response fuzz_gossip_decode fuzz_config fuzz_admin fuzz_tls_server fuzz_dns_answer fuzz_route_match fuzz_h2_frames fuzz_h2_client)
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${all[@]}")

./scripts/install-deps.sh --fuzz

CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRINGPROXY_FUZZ=ON -DRINGPROXY_TESTS=OFF -DRINGPROXY_BENCH=OFF >/dev/null
# Two jobs at most: the machine is shared.
cmake --build "$build" -j 2 --target "${targets[@]}"

max_len() {
  case "$1" in
    fuzz_request | fuzz_response | fuzz_h1_response) echo 4096 ;;
    fuzz_gossip_decode) echo 3000 ;;  # transport records: several datagrams
    fuzz_config) echo 4096 ;;
    fuzz_admin) echo 2048 ;;
    fuzz_tls_server) echo 2048 ;;  # a ClientHello and a little more
    fuzz_dns_answer) echo 1500 ;;  # a UDP answer without EDNS is 512; with it, more
    fuzz_route_match) echo 2048 ;;
    fuzz_h2_frames) echo 4096 ;;  # frames after the preface: several streams' heads and DATA
    fuzz_h2_client) echo 4096 ;;  # two option bytes, then a node's frames to several streams
    *) echo 4096 ;;
  esac
}

failed=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  artifacts="$build/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [[ $t == fuzz_request || $t == fuzz_response || $t == fuzz_h1_response ]] && dict=(-dict=fuzz/dict/http.dict)
  [[ $t == fuzz_h2_frames || $t == fuzz_h2_client ]] && dict=(-dict=fuzz/dict/h2.dict)
  log="$build/$t.log"
  echo "== $t: ${seconds}s, max_len $(max_len "$t")"
  rc=0
  "$build/fuzz/$t" "$corpus" "${dict[@]}" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  echo "   executions: ${execs:-?} ($cov); log: $log"
  if [[ $rc -ne 0 ]]; then
    failed=1
    grep -E '^(FINDING|SUMMARY|==[0-9]+==ERROR)' "$log" | head -5 | sed 's/^/   /'
    for f in "$artifacts"/*; do [[ -e $f ]] && echo "   crash file: $f"; done
  fi
done
exit $failed
