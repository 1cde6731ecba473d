#!/usr/bin/python3
"""One pass of GETs over PREFIX0 .. PREFIX(N-1) through a proxy, counting cache hits.

Used by run.sh. Standard library only. Each URI is requested once; CONCURRENCY
keep-alive connections share the list. A response counts as a hit when its X-Cache
header says HIT (cache.vcl sets it from obj.hits). Prints one line:

    hits H/N = R  misses M  errors E  by node: cache-a=.. cache-b=.. cache-c=..

and with --misses FILE writes the URIs that missed, one a line. --shuffle SEED sends
the URIs in a random order (fixed by SEED) instead of 0..N-1: a round-robin balancer
that sees the same order twice would send each URI to the same node again by accident
(N divisible by the node count), which real traffic never does.
"""
import argparse
import http.client
import random
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--shuffle", type=int, default=None)
    ap.add_argument("--misses", default=None)
    a = ap.parse_args()

    uris = [f"{a.prefix}{i}" for i in range(a.count)]
    if a.shuffle is not None:
        random.Random(a.shuffle).shuffle(uris)
    lock = threading.Lock()
    next_index = [0]
    hits, misses, errors = [0], [], [0]
    by_node = {}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        while True:
            with lock:
                if next_index[0] >= len(uris):
                    break
                uri = uris[next_index[0]]
                next_index[0] += 1
            try:
                conn.request("GET", uri)
                r = conn.getresponse()
                r.read()
                cache, node, status = r.getheader("X-Cache", ""), r.getheader("X-Cache-Node", "?"), r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                cache, node, status = "", "?", 0
            with lock:
                if status != 200:
                    errors[0] += 1
                    misses.append(uri)
                elif cache == "HIT":
                    hits[0] += 1
                else:
                    misses.append(uri)
                by_node[node] = by_node.get(node, 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n = len(uris)
    nodes = " ".join(f"{k}={v}" for k, v in sorted(by_node.items()))
    print(f"hits {hits[0]}/{n} = {hits[0] / n:.3f}  misses {len(misses)}  errors {errors[0]}  by node: {nodes}")
    if a.misses:
        with open(a.misses, "w") as f:
            f.writelines(u + "\n" for u in sorted(misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
