#!/usr/bin/python3
"""An independent implementation of SPEC.md "The ring", for golden tests and tooling.

It shares no code with ring/: points come from python3-xxhash (Debian), and lookups
from a plain bisect. Run with Debian's /usr/bin/python3 (the PATH's python3 may lack
the module).

  ring_reference.py golden             print the golden table used by tests/ring/ring_test.cc
  ring_reference.py map NODE[:W]... -- KEY...
                                       print "KEY NODE" for each key (vnodes from $VNODES, 160)
"""
import bisect
import os
import sys

import xxhash


def build(nodes, vnodes=160):
    """nodes: list of (name, weight). Returns sorted [(hash, name)]."""
    points = []
    for name, weight in nodes:
        for j in range(vnodes * weight):
            points.append((xxhash.xxh3_64_intdigest(f"{name}#{j}".encode()), name))
    points.sort()  # equal hashes: the smaller name first, as SPEC says
    return points


def lookup(points, key):
    if not points:
        return None
    h = xxhash.xxh3_64_intdigest(key.encode() if isinstance(key, str) else key)
    i = bisect.bisect_left(points, (h, ""))
    return points[i % len(points)][1]


GOLDEN_NODES = [("cache-a", 1), ("cache-b", 1), ("cache-c", 2), ("cache-d", 1), ("cache-e", 0)]
GOLDEN_KEYS = ["/", "/index.html", "/a", "/b", "/c", "/users/42", "/users/43",
               "/img/logo.png?v=3", "/api/v1/items?page=2", "key-0", "key-1", "key-2",
               "key-3", "key-4", "key-5", "key-6", "key-7", "key-8", "key-9",
               "session=abc123", "127.0.0.1", "::1", "\u00fcnicode/\u00e9t\u00e9", ""]


def walk(points, key):
    """The distinct nodes in ring order from the key's hash: retries and fallbacks."""
    if not points:
        return []
    h = xxhash.xxh3_64_intdigest(key.encode() if isinstance(key, str) else key)
    i = bisect.bisect_left(points, (h, ""))
    seen = []
    for k in range(len(points)):
        name = points[(i + k) % len(points)][1]
        if name not in seen:
            seen.append(name)
    return seen


def main(argv):
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
            name, _, w = spec.partition(":")
            nodes.append((name, int(w or 1)))
        points = build(nodes, int(os.environ.get("VNODES", "160")))
        for key in argv[sep + 1:]:
            print(key, lookup(points, key))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
