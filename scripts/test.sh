#!/usr/bin/env bash
# Installs the dependencies, builds ringproxy and runs every test under ctest.
#   scripts/test.sh            RelWithDebInfo build in build/
#   SANITIZE=1 scripts/test.sh ASan+UBSan build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh --test

build=build
flags=()
if [[ "${SANITIZE:-0}" == 1 ]]; then
  build=build-asan
  flags+=(-DRINGPROXY_SANITIZE=ON -DRINGPROXY_BENCH=OFF)
fi
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${flags[@]}"
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 600
