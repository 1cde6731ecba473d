#!/usr/bin/python3
"""An independent implementation of SPEC.md "The ring", for golden tests and tooling.

It shares no code with ring/: points come from python3-xxhash (Debian), and lookups
from a plain bisect. Run with Debian's /usr/bin/python3 (the PATH's python3 may lack
the module).

  ring_reference.py golden             print the golden table used by tests/ring/ring_test.cc
  ring_reference.py map NODE[:W]... -- KEY...
                                       print "KEY NODE" for each key (vnodes from $VNODES, 160);
                                       W is a trailing ":DIGITS", so a NODE with a ':' in its
                                       name gives W: 127.0.0.1:9001:1, [::1]:9001:1
  ring_reference.py golden-nginx       the same table for [ring] placement = "nginx"
  ring_reference.py map --placement nginx NAME@ADDRESS[,W]... -- KEY...
                                       print "KEY NAME" for each key, placed as nginx's
                                       `hash KEY consistent` places it (below)

`--placement xxh3` names the default placement explicitly; NODE[:W] is then as above.

The nginx placement (what nginx's `upstream { hash $key consistent; }` does, written
here from its documented behaviour and the algorithm, not from its code). It uses the
standard library's zlib.crc32 (CRC-32/ISO-HDLC) only, so it runs without python3-xxhash:
- A node is NAME@ADDRESS[,W]: NAME is what is printed (a [[backend]] name), ADDRESS
  the server string exactly as nginx's `server` line and the [[backend]] address write
  it (e.g. 127.0.0.1:9001, [::1]:9001); it is the only thing hashed. The first '@'
  ends the name (backend names never contain '@'); a trailing ",DIGITS" is the weight
  (default 1; no address contains ','). Example: cache-c@127.0.0.1:9003,2
- ADDRESS is split at its last ':' when only digits (or nothing) follow it: host before, port
  after; otherwise host = ADDRESS, port = "" (and "unix:PATH" is host PATH, no port).
- base = the CRC-32 state after host bytes, one NUL byte, port bytes (the state is
  carried on between feeds, not finalised).
- Point j (0 .. 160*W - 1) = CRC-32 finalised after feeding base the 4 little-endian
  bytes of point j-1 (point -1 = 0). zlib.crc32(data, crc) un-finalises crc before it
  continues and finalises after, so chaining finalised values continues the state.
- A key sits at zlib.crc32(KEY); its node owns the first point >= that, wrapping.
  Equal points from different servers: nginx keeps one of them, which one depends on
  its sort; here the smaller (hash, name) wins and a warning goes to stderr (rare:
  about 1 in 13,000 rings of 800 points has such a tie).
nginx itself always uses 160 points per unit of weight; $VNODES changes it here too.
nginx refuses weight=0 and sends an empty key round robin; here weight 0 owns no points
and the empty key hashes to 0 like any other.
"""
import bisect
import os
import sys
import zlib

try:  # only the default placement needs it; the nginx one is stdlib only
    import xxhash
except ImportError:
    xxhash = None


def build(nodes, vnodes=160):
    """nodes: list of (name, weight). Returns sorted [(hash, name)]."""
    points = []
    for name, weight in nodes:
        for j in range(vnodes * weight):
            points.append((xxhash.xxh3_64_intdigest(f"{name}#{j}".encode()), name))
    points.sort()  # equal hashes: the smaller name first, as SPEC says
    return points


def lookup_in(points, h):
    """The owner of the first point >= h, wrapping; None on an empty ring."""
    if not points:
        return None
    return points[bisect.bisect_left(points, (h, "")) % len(points)][1]


def walk_in(points, h):
    """The distinct names in ring order from hash h: retries and fallbacks."""
    if not points:
        return []
    i = bisect.bisect_left(points, (h, ""))
    seen = []
    for k in range(len(points)):
        name = points[(i + k) % len(points)][1]
        if name not in seen:
            seen.append(name)
    return seen


def key_hash(key):
    """SPEC's key hash: XXH3_64 of the key's bytes."""
    return xxhash.xxh3_64_intdigest(key.encode() if isinstance(key, str) else key)


def lookup(points, key):
    return lookup_in(points, key_hash(key))


GOLDEN_NODES = [("cache-a", 1), ("cache-b", 1), ("cache-c", 2), ("cache-d", 1), ("cache-e", 0)]
GOLDEN_KEYS = ["/", "/index.html", "/a", "/b", "/c", "/users/42", "/users/43",
               "/img/logo.png?v=3", "/api/v1/items?page=2", "key-0", "key-1", "key-2",
               "key-3", "key-4", "key-5", "key-6", "key-7", "key-8", "key-9",
               "session=abc123", "127.0.0.1", "::1", "\u00fcnicode/\u00e9t\u00e9", ""]


def walk(points, key):
    """The distinct nodes in ring order from the key's hash: retries and fallbacks."""
    return walk_in(points, key_hash(key))


def nginx_split(address):
    """(host bytes, port bytes) as nginx splits a server string for its points."""
    a = address.encode()
    if a[:5].lower() == b"unix:":
        return a[5:], b""
    colon = a.rfind(b":")
    if colon >= 0 and a[colon + 1:].isdigit():
        return a[:colon], a[colon + 1:]
    if colon >= 0 and colon == len(a) - 1:  # "host:" : nothing after the colon
        return a[:colon], b""
    return a, b""


def nginx_points(address, weight, vnodes=160):
    """The ring points (CRC-32 values) of one server of weight `weight`."""
    host, port = nginx_split(address)
    base = zlib.crc32(port, zlib.crc32(b"\0", zlib.crc32(host)))
    out = []
    prev = 0
    for _ in range(vnodes * weight):
        prev = zlib.crc32(prev.to_bytes(4, "little"), base)
        out.append(prev)
    return out


def build_nginx(nodes, vnodes=160):
    """nodes: list of (name, address, weight). Returns sorted [(hash, name)], one per hash."""
    points = []
    for name, address, weight in nodes:
        points.extend((h, name) for h in nginx_points(address, weight, vnodes))
    points.sort()
    kept = []
    for h, name in points:
        if kept and kept[-1][0] == h:
            if kept[-1][1] != name:
                print(f"ring_reference: warning: {kept[-1][1]} and {name} share point 0x{h:08x}; "
                      f"nginx keeps either", file=sys.stderr)
            continue
        kept.append((h, name))
    return kept


def nginx_key_hash(key):
    return zlib.crc32(key.encode() if isinstance(key, str) else key)


def parse_nginx_node(spec):
    """NAME@ADDRESS[,W] -> (name, address, weight)."""
    name, at, rest = spec.partition("@")
    if not at or not name or not rest:
        raise ValueError(f"{spec!r}: want NAME@ADDRESS[,W]")
    address, comma, w = rest.rpartition(",")
    if not comma or not w.isdigit():
        address, w = rest, "1"
    return name, address, int(w)


GOLDEN_NGINX_NODES = [("cache-a", "127.0.0.1:9001", 1), ("cache-b", "127.0.0.1:9002", 1),
                      ("cache-c", "127.0.0.1:9003", 2), ("cache-d", "[::1]:9004", 1),
                      ("cache-e", "127.0.0.1:9005", 0)]


def main(argv):
    if len(argv) >= 2 and argv[1] == "golden-nginx":
        points = build_nginx(GOLDEN_NGINX_NODES)
        for key in GOLDEN_KEYS:
            h = nginx_key_hash(key)
            order = ", ".join(f'"{n}"' for n in walk_in(points, h))
            print(f'    {{"{key}", 0x{h:08x}ULL, {{{order}}}}},')
        return 0
    if len(argv) >= 3 and argv[1] == "map" and argv[2].startswith("--placement"):
        if argv[2] == "--placement" and len(argv) >= 4:
            placement, rest = argv[3], argv[4:]
        else:
            placement, rest = argv[2].partition("=")[2], argv[3:]
        if placement == "xxh3":
            return main(argv[:2] + rest)
        if placement != "nginx" or "--" not in rest:
            print(__doc__, file=sys.stderr)
            return 2
        sep = rest.index("--")
        try:
            nodes = [parse_nginx_node(spec) for spec in rest[:sep]]
        except ValueError as e:
            print(f"ring_reference: {e}", file=sys.stderr)
            return 2
        points = build_nginx(nodes, int(os.environ.get("VNODES", "160")))
        for key in rest[sep + 1:]:
            print(key, lookup_in(points, nginx_key_hash(key)))
        return 0
    if xxhash is None:
        print("ring_reference: the default placement needs python3-xxhash "
              "(Debian's /usr/bin/python3; scripts/install-deps.sh)", file=sys.stderr)
        return 1

    if len(argv) >= 2 and argv[1] == "golden":
        points = build(GOLDEN_NODES)
        for key in GOLDEN_KEYS:
            h = xxhash.xxh3_64_intdigest(key.encode())
            order = ", ".join(f'"{n}"' for n in walk(points, key))
            print(f'    {{"{key}", 0x{h:016x}ULL, {{{order}}}}},')
        return 0
    if len(argv) >= 2 and argv[1] == "map":
        sep = argv.index("--")
        nodes = []
        for spec in argv[2:sep]:
            # The weight is a trailing ":DIGITS", split at the last ':' (not the first:
            # node names may hold ':', e.g. "127.0.0.1:9001", "[::1]:9001" or a
            # discovered "be1.test:9001"); such a name must carry its weight,
            # "127.0.0.1:9001:1", or its port would be read as the weight.
            name, colon, w = spec.rpartition(":")
            if not colon or not w.isdigit():
                name, w = spec, "1"
            nodes.append((name, int(w)))
        points = build(nodes, int(os.environ.get("VNODES", "160")))
        for key in argv[sep + 1:]:
            print(key, lookup(points, key))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
