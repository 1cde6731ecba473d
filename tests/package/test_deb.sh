#!/usr/bin/env bash
# The Debian package, end to end, without installing it on this machine:
#   1. scripts/package.sh builds ringproxy_<version>_<arch>.deb;
#   2. its control data: name, version, Depends computed by dpkg-shlibdeps (libuv1,
#      libssl3, ...), the example config listed as a conffile;
#   3. dpkg installs it into a private root (`dpkg --root`, its own database; never
#      on the host), registers the conffile, removes it keeping an edited conffile, and
#      purges it; then `dpkg -x` unpacks it into a throwaway root: the
#      binary, unit, logrotate snippet, man page and example config are there, the demo
#      backend is not; the man page renders without warnings; the unit passes
#      `systemd-analyze verify` (skipped if systemd-analyze is missing);
#   4. the unpacked binary accepts the unpacked example config with --check, then runs
#      it (ports moved to free loopback ports, access log into the root): "listening
#      on" in its stderr, 200 "ok" from /healthz, a request lands in the access log,
#      SIGUSR1 reopens the log after it is moved (what the logrotate snippet relies
#      on), and SIGTERM drains it to exit 0.
# Everything listens on 127.0.0.1. Exit 0 when every check passes.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-deb.XXXXXX")
pid=""
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
skip() { echo "skip - $*"; }
check() {  # check DESCRIPTION COMMAND...: one line per check, go on after a failure
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# wait_for SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds; 1 on timeout.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

echo "# building the package (scripts/package.sh)"
deb=$("$repo/scripts/package.sh" | tail -n1)
[[ -f $deb ]] || { echo "FAIL - scripts/package.sh printed no package: '$deb'"; exit 1; }
echo "# $deb"

# ---- control data ----
version=$(sed -nE 's/^project\(ringproxy VERSION ([0-9.]+).*/\1/p' "$repo/CMakeLists.txt")
arch=$(dpkg --print-architecture)
check "file name is ringproxy_${version}_${arch}.deb" test "$(basename "$deb")" = "ringproxy_${version}_${arch}.deb"
check "Package: ringproxy" test "$(dpkg-deb -f "$deb" Package)" = ringproxy
check "Version: $version" test "$(dpkg-deb -f "$deb" Version)" = "$version"
check "Section: net" test "$(dpkg-deb -f "$deb" Section)" = net
depends=$(dpkg-deb -f "$deb" Depends)
echo "# Depends: $depends"
check "Depends (dpkg-shlibdeps) names libuv1" grep -q 'libuv1' <<<"$depends"
check "Depends (dpkg-shlibdeps) names libssl3 (libcrypto)" grep -q 'libssl3' <<<"$depends"
check "Depends (dpkg-shlibdeps) names libc6" grep -q 'libc6' <<<"$depends"
dpkg-deb -e "$deb" "$work/DEBIAN"
check "conffiles lists /etc/ringproxy/ringproxy.toml" grep -qx /etc/ringproxy/ringproxy.toml "$work/DEBIAN/conffiles"
check "conffiles lists /etc/logrotate.d/ringproxy" grep -qx /etc/logrotate.d/ringproxy "$work/DEBIAN/conffiles"
check "conffiles lists each file once" test -z "$(sort "$work/DEBIAN/conffiles" | uniq -d)"
check "no maintainer script starts anything" test ! -e "$work/DEBIAN/postinst"

# ---- a real dpkg install, into a private root (dpkg --root: its own database, not the
# host's; the libraries it depends on are the host's, so their absence there is forced) ----
droot="$work/dpkg-root"
mkdir -p "$droot/var/lib/dpkg/info" "$droot/var/lib/dpkg/updates"
: >"$droot/var/lib/dpkg/status"
dpkg_r() { dpkg --root="$droot" --force-not-root --force-depends "$@" >>"$work/dpkg.log" 2>&1; }
check "dpkg -i installs it (private root)" dpkg_r -i "$deb"
check "dpkg says: install ok installed" \
  test "$(dpkg --root="$droot" -s ringproxy 2>/dev/null | sed -n 's/^Status: //p')" = "install ok installed"
check "dpkg registered the example config as a conffile" \
  grep -q '/etc/ringproxy/ringproxy.toml' <(dpkg --root="$droot" -s ringproxy 2>/dev/null)
check "the installed binary accepts the installed config" \
  "$droot/usr/bin/ringproxy" --check -c "$droot/etc/ringproxy/ringproxy.toml"
echo "# a local edit" >>"$droot/etc/ringproxy/ringproxy.toml"
check "dpkg -r removes the binary" dpkg_r -r ringproxy
check "... and keeps the edited conffile" test -f "$droot/etc/ringproxy/ringproxy.toml" -a ! -e "$droot/usr/bin/ringproxy"
check "dpkg --purge removes the conffile too" dpkg_r --purge ringproxy
check "... which is then gone" test ! -e "$droot/etc/ringproxy/ringproxy.toml"

# ---- unpacked files ----
root="$work/root"
dpkg -x "$deb" "$root"
bin="$root/usr/bin/ringproxy"
unit="$root/usr/lib/systemd/system/ringproxy.service"
conf="$root/etc/ringproxy/ringproxy.toml"
check "binary /usr/bin/ringproxy, executable" test -x "$bin"
check "unit /usr/lib/systemd/system/ringproxy.service" test -f "$unit"
check "logrotate /etc/logrotate.d/ringproxy" test -f "$root/etc/logrotate.d/ringproxy"
check "man page /usr/share/man/man1/ringproxy.1" test -f "$root/usr/share/man/man1/ringproxy.1"
check "example config /etc/ringproxy/ringproxy.toml" test -f "$conf"
check "demo backend not installed" test -z "$(find "$root" -name '*demo*' -print -quit)"
check "--version prints ringproxy $version" test "$("$bin" --version)" = "ringproxy $version"

man_page="$root/usr/share/man/man1/ringproxy.1"
if command -v groff >/dev/null; then
  man_warnings=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$man_page" 2>&1)
  check "man page renders without groff warnings" test -z "$man_warnings"
  [[ -z $man_warnings ]] || echo "$man_warnings"
  rendered=$(LC_ALL=C.UTF-8 MANWIDTH=200 groff -man -Tutf8 "$man_page" 2>/dev/null | col -bx 2>/dev/null || true)
  for section in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" SIGNALS FILES CONFIGURATION "SEE ALSO"; do
    check "man page has section $section" grep -q "^$section" <<<"$rendered"
  done
  # Every key of README's "Config reference" table is described in the man page.
  missing_keys=()
  while read -r key; do
    grep -qF "$key" <<<"$rendered" || missing_keys+=("$key")
  done < <(sed -n '/^## Config reference/,/^## /p' "$repo/README.md" |
           grep -oE '^\| `[a-z_]+(\[\])?\.[a-z_]+`( / `[a-z_]+\.[a-z_]+`)?' |
           grep -oE '[a-z_]+(\[\])?\.[a-z_]+')
  check "man page describes every README config key${missing_keys:+ (missing: ${missing_keys[*]})}" \
    test ${#missing_keys[@]} -eq 0
else
  skip "groff not installed: man page rendering not checked"
fi

if command -v systemd-analyze >/dev/null; then
  # A copy of the unit whose ExecStart/ExecStartPre point at the unpacked binary, and
  # MANPATH so its Documentation=man:ringproxy(1) resolves to the unpacked man page.
  # verify exits 0 on unknown keys and bad values too (it prints them), so any
  # output is a failure.
  mkdir -p "$work/unit"
  sed "s|/usr/bin/ringproxy|$bin|g" "$unit" >"$work/unit/ringproxy.service"
  if verify_out=$(MANPATH="$root/usr/share/man" systemd-analyze verify "$work/unit/ringproxy.service" 2>&1) &&
     [[ -z $verify_out ]]; then
    pass "systemd-analyze verify ringproxy.service"
  else
    fail "systemd-analyze verify ringproxy.service"
    echo "$verify_out"
  fi
else
  skip "systemd-analyze not installed: unit not verified"
fi

# ---- the unpacked binary with the unpacked config ----
check "--check accepts the example config" "$bin" --check -c "$conf"

py=$(command -v python3 || echo /usr/bin/python3)
# Two free loopback ports (bound to port 0 together, so they differ, then released).
read -r port admin_port < <("$py" - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
run_conf="$work/run.toml"
access_log="$work/log/access.log"
mkdir -p "$work/log"
sed -e "s|^listen = \"127.0.0.1:8080\"|listen = \"127.0.0.1:$port\"|" \
    -e "s|^listen = \"127.0.0.1:9090\"|listen = \"127.0.0.1:$admin_port\"|" \
    -e "s|^access_log = \"/var/log/ringproxy/access.log\"|access_log = \"$access_log\"|" \
    -e "s|^workers = 0 |workers = 1 |" \
    "$conf" >"$run_conf"
check "sed moved listen, admin.listen and access_log" \
  test "$(grep -cE "127.0.0.1:($port|$admin_port)\"|^access_log = \"$access_log\"" "$run_conf")" -eq 3
check "--check accepts the modified config" "$bin" --check -c "$run_conf"

stderr_log="$work/stderr.log"
"$bin" -c "$run_conf" 2>"$stderr_log" &
pid=$!
listening() { grep -q "listening on" "$stderr_log" || ! kill -0 "$pid" 2>/dev/null; }
wait_for 20 listening || true
if grep -q "listening on" "$stderr_log"; then
  pass "started: $(grep -m1 "listening on" "$stderr_log")"
else
  fail "no 'listening on' in stderr within 20 s"
  cat "$stderr_log"
  exit 1
fi

check "GET /healthz on the admin port answers 200 ok" \
  test "$(curl -sS --max-time 5 "http://127.0.0.1:$admin_port/healthz")" = ok
# No backend runs on 9001-9003: the proxy answers itself (502/503), and logs the request.
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/first")
check "a proxied request with no backend up gets 502 or 503 (got $code)" grep -qE '^50[23]$' <<<"$code"
logged() { grep -q "/first" "$access_log" 2>/dev/null; }
check "the request is in the access log" wait_for 10 logged
# What logrotate does: move the file, send SIGUSR1; the proxy reopens the path.
mv "$access_log" "$access_log.1"
kill -USR1 "$pid"
reopened() { [[ -e $access_log ]]; }
check "SIGUSR1 reopens the access log at its path" wait_for 10 reopened
curl -sS --max-time 10 -o /dev/null "http://127.0.0.1:$port/second" || true
logged_after() { grep -q "/second" "$access_log" 2>/dev/null; }
check "requests after SIGUSR1 go to the new file" wait_for 10 logged_after
check "and not to the moved one" test -z "$(grep "/second" "$access_log.1" || true)"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
check "SIGTERM drains and exits 0 (got $status)" test "$status" -eq 0

if ((failures > 0)); then
  echo "# $failures check(s) failed; proxy stderr:"
  cat "$stderr_log"
  exit 1
fi
echo "# all package checks passed"
