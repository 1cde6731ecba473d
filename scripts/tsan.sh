#!/usr/bin/env bash
# ThreadSanitizer over the tests that run ringproxy with several worker threads (and
# its control thread): a TSan build in build-tsan/, then those tests, with every report
# of every process (the tests' and each ringproxy they start) written under
# build-tsan/tsan-reports/. Any report fails the run, even one from a process whose
# test passed.
#   scripts/tsan.sh [test binary...]     default: the integration tests below
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh --test
build=build-tsan
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGPROXY_TSAN=ON -DRINGPROXY_BENCH=OFF
cmake --build "$build" -j "$(nproc)"

reports=$PWD/$build/tsan-reports
rm -rf "$reports"
mkdir -p "$reports"
# second_deadlock_stack: both stacks of a lock-order report. exitcode: a raced process
# exits 66, which the harness reports as a failed exit.
export TSAN_OPTIONS="log_path=$reports/tsan second_deadlock_stack=1 exitcode=66 ${TSAN_OPTIONS:-}"
tests=("$@")
if ((${#tests[@]} == 0)); then
  tests=(proxy_integration_test admin_integration_test health_integration_test gossip_integration_test
         discovery_integration_test discovery_gossip_test hostile_integration_test pools_integration_test
         pools_admin_test listeners_test h2_integration_test h2_hostile_test h2_upstream_test)
fi
status=0
for t in "${tests[@]}"; do
  echo "tsan: $t"
  "$build/tests/$t" --gtest_brief=1 || status=$?
done

shopt -s nullglob
found=("$reports"/tsan*)
if ((${#found[@]} > 0)); then
  echo "tsan: ${#found[@]} report file(s):"
  for f in "${found[@]}"; do echo "== $f"; head -60 "$f"; done
  exit 1
fi
if ((status != 0)); then
  echo "tsan: tests failed (status $status) without a TSan report"
  exit "$status"
fi
echo "tsan: no data race reported"
