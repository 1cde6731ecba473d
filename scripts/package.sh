#!/usr/bin/env bash
# Builds the Debian package: a Release build in build-pkg/ (tests and benchmarks off,
# prefix /usr so the config lands in /etc), then `cpack -G DEB`. Prints the .deb's path
# as the last line of stdout. Needs dpkg-dev (dpkg-shlibdeps; part of build-essential).
#   JOBS=N  parallel build jobs (default 2)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-pkg"
jobs=${JOBS:-2}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DRINGPROXY_TESTS=OFF -DRINGPROXY_BENCH=OFF -DRINGPROXY_FUZZ=OFF \
  -DRINGPROXY_SANITIZE=OFF -DRINGPROXY_TSAN=OFF >&2
cmake --build "$build" -j"$jobs" >&2
# Only this version's package, so a stale one from an older version is never printed.
rm -f "$build"/ringproxy_*.deb
(cd "$build" && cpack -G DEB --config CPackConfig.cmake >&2)

debs=("$build"/ringproxy_*.deb)
if [[ ${#debs[@]} -ne 1 || ! -f ${debs[0]} ]]; then
  echo "package: expected one ringproxy_*.deb in $build, found: ${debs[*]}" >&2
  exit 1
fi
echo "${debs[0]}"
