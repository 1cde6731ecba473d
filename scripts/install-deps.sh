#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of ringproxy from Debian 12.
# Idempotent: packages already installed are skipped, and `apt-get update` runs only
# when something is missing and the package lists are absent or older than a day.
#
# Why each package:
#   build-essential cmake pkg-config   the toolchain (g++ 12, cmake 3.25)
#   libuv1-dev                         event loops and sockets
#   libxxhash-dev                      XXH3_64bits, the ring's hash (SPEC "The ring")
#   libtomlplusplus-dev                the config file parser
#   node-llhttp                        llhttp's generated C sources, compiled in our build
#   nlohmann-json3-dev                 JSON for the admin endpoint (header-only)
#   libssl-dev                         OpenSSL 3: TLS to clients and to backends (libssl); HMAC-SHA256
#                                      and RAND_bytes for gossip authentication (libcrypto)
#   libc-ares-dev                      DNS queries on the event loop (net/dns_resolver.h): the resolver
#                                      curl, Node.js and gRPC use; asynchronous, with resolv.conf,
#                                      retries and SRV parsing, where getaddrinfo would block a thread
#   libnghttp2-dev                     HTTP/2 framing, HPACK, flow control and the stream states
#                                      (http/h2/): the codec curl, Apache httpd and nghttpx use, with
#                                      the flood limits (rapid reset, CONTINUATION) patched in Debian
#   libgtest-dev libbenchmark-dev      tests and microbenchmarks
#   python3-prometheus-client          parses /metrics in the tests with a real parser
#   wrk nginx-light haproxy            the end-to-end load comparison (bench/compare), over TLS too
#   openssl (--bench, --test)          the openssl tool: certificates for the benchmarks, s_time for
#                                      handshake rates, s_server as a TLS backend in tests
#   testssl.sh (--bench)               the TLS listener's audit (scripts/tls-audit.sh)
#   h2o (--bench)                      the fourth HTTP/2 proxy of bench/compare/h2.sh (issue 16's peers)
#   python3-xxhash                     golden ring mappings computed outside our code
#                                      (Debian's /usr/bin/python3, not the PATH's)
#   curl                               demo script and integration helpers (HTTP/2 too: --http2)
#   nghttp2-client python3-h2 (--test) HTTP/2 clients against the proxy: nghttp, h2load, and Python's
#                                      h2 state machine for the hostile-client tests and the HTTP/2 test
#                                      node (tests/integration/h2_node.py)
#   python3-grpcio (--test)            gRPC end to end through the proxy: a real gRPC server and client
#                                      (tests/integration/grpc_node.py, grpc_client.py; raw bytes, no protoc)
#   chromium (--test)                  renders the admin status page in a test (headless)
#   iproute2 (--test)                  ip netns: the gossip partition test's namespaces
#   nginx-light (--test)               a real nginx beside ringproxy: placement = "nginx" must match it;
#                                      also the round-robin tier in examples/cache-tier and its test
#                                      and the TLS backends of tests/integration/upstream_tls_test.cc
#                                      and an HTTP/2 node (h2c, h2) for the h2 backend tests
#                                      (tests/integration/nginx_h2c.py)
#   dnsmasq-base (--test)              a real DNS server on 127.0.0.1 for the resolver's tests (the binary
#                                      alone: the dnsmasq package would start a system service)
#   varnish (--test)                   three real Varnish caches behind ringproxy (examples/cache-tier,
#                                      tests/integration/cache_tier_test.cc): hit ratios through churn
#   clang libclang-rt-14-dev (--fuzz)  libFuzzer and clang's sanitizers (scripts/fuzz.sh)
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libuv1-dev libxxhash-dev libtomlplusplus-dev node-llhttp nlohmann-json3-dev libssl-dev libc-ares-dev libnghttp2-dev
  libgtest-dev libbenchmark-dev
  python3 python3-xxhash python3-prometheus-client curl
)
for arg in "$@"; do
  case "$arg" in
    --bench) PKGS+=(wrk nginx-light haproxy openssl testssl.sh nghttp2-client h2o) ;;
    --test) PKGS+=(chromium iproute2 nginx-light varnish openssl dnsmasq-base nghttp2-client python3-h2 python3-grpcio) ;;
    --fuzz) PKGS+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps: unknown option $arg (use --test, --bench, --fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

stamp=/var/lib/apt/periodic/update-success-stamp
lists_fresh=0
if compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then
  if [[ -f $stamp ]] && (( $(date +%s) - $(stat -c %Y "$stamp") < 86400 )); then
    lists_fresh=1
  elif [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mmin -1440 | head -n1) ]]; then
    lists_fresh=1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# nginx, HAProxy, Varnish and h2o are installed as tools, not services: on a systemd machine their
# packages would start a daemon listening on every address (port 80). Debian's
# policy-rc.d convention (exit 101: action forbidden) keeps any service from starting
# during this install; ours is removed afterwards, an existing one left alone.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
if ((lists_fresh == 0)) || ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
