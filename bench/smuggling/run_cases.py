#!/usr/bin/python3
"""Sends every case of tests/corpus/smuggling to each proxy and prints a markdown table.

  run_cases.py CORPUS_DIR CONTROL_PORT NAME=PORT [NAME=PORT ...]

For each proxy and case: a fresh connection, the file's bytes in one send, then every
byte the proxy answers until it closes, falls silent for 0.3 s after answering, or 3 s
pass with nothing. The statuses are the status lines found in that answer; "forwarded"
is whether any byte reached the recording backend (bench/smuggling/recorder.py, asked
through its control port before and after, so nothing races). Bounded: at most ~3 s per
case and proxy.
"""
import re
import socket
import sys
import time


def control(port, cmd):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(cmd + b"\n")
        out = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            out += b
    first = out.split(b"\n", 1)[0].split()
    return int(first[0]), int(first[1])


def send_case(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    out, end = b"", "timeout"
    try:
        s.sendall(data)
        deadline = time.monotonic() + 3.0
        while True:
            wait = 0.3 if out else max(0.01, deadline - time.monotonic())
            s.settimeout(wait)
            try:
                b = s.recv(65536)
            except socket.timeout:
                end = "open" if out else "timeout"
                break
            if not b:
                end = "closed"
                break
            out += b
    except ConnectionResetError:
        end = "reset"
    except BrokenPipeError:
        end = "reset"
    finally:
        s.close()
    statuses = re.findall(rb"(?:^|\r?\n)HTTP/\d\.\d (\d{3})", out)
    return [x.decode() for x in statuses], end


def main():
    corpus, ctl = sys.argv[1], int(sys.argv[2])
    proxies = [a.split("=", 1) for a in sys.argv[3:]]
    cases = []
    for line in open(corpus + "/MANIFEST"):
        if line.strip() and not line.startswith("#"):
            name, expected = line.split()[:2]
            cases.append((name, expected))
    rows = {}
    for pname, port in proxies:
        for name, _ in cases:
            data = open(corpus + "/" + name, "rb").read()
            b0, r0 = control(ctl, b"sync")
            statuses, end = send_case(int(port), data)
            b1, r1 = control(ctl, b"sync")
            if statuses:
                status = statuses[0] if len(set(statuses)) == 1 and len(statuses) == 1 else " ".join(statuses)
            else:
                status = "none (%s)" % end
            fwd = "yes, %d req" % (r1 - r0) if b1 > b0 else "no"
            if b1 > b0 and r1 == r0:
                fwd = "yes, %d bytes, 0 req" % (b1 - b0)
            rows.setdefault(name, []).append("%s, %s" % (status, fwd))
    print("| case | expected (ringproxy) | " + " | ".join("%s status, forwarded?" % p for p, _ in proxies) + " |")
    print("|---|---|" + "---|" * len(proxies))
    for name, expected in cases:
        print("| %s | %s | %s |" % (name, expected, " | ".join(rows[name])))


if __name__ == "__main__":
    main()
