#!/usr/bin/python3
"""A recording HTTP/1.1 backend for bench/smuggling/compare.sh.

Listens on 127.0.0.1:PORT (the data port) and answers every request it can frame with
"200 ok" (Content-Length: 2); counts every byte received. A second port, CONTROL, takes
one line per connection:
  "sync"  read everything the kernel holds for us (pending accepts too), then answer
          "BYTES REQUESTS ERRORS" (totals since start), so a caller can diff two syncs
          without racing the proxy's writes;
  "dump"  as sync, then the raw bytes of every data connection since the last dump;
  "quit"  exit.
Framing is read leniently on purpose (the recorder must see what a proxy lets through,
not refuse it): a head ends at an empty line (CRLF or bare LF), then Content-Length
bytes or a chunked body; a stream it cannot frame is counted as an error and dropped.
Exits by itself after --lifetime seconds. Everything is on 127.0.0.1.
"""
import argparse
import os
import selectors
import socket
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


HEALTH = b"GET /__bench_health "  # ringproxy's health checks: answered, not counted


class Stream:
    def __init__(self):
        self.buf = b""
        self.raw = b""
        self.health = None  # decided by the first bytes

    def take_requests(self):
        """Frames whole requests off self.buf; returns (count, error or None)."""
        n = 0
        while True:
            b = self.buf.lstrip(b"\r\n")
            end = -1
            for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n"):
                i = b.find(sep)
                if i >= 0 and (end < 0 or i + len(sep) < end):
                    end = i + len(sep)
            if end < 0:
                return n, None
            head = b[:end].decode("latin-1")
            lines = head.replace("\r\n", "\n").split("\n")
            cl, chunked = None, False
            for line in lines[1:]:
                if ":" not in line:
                    continue
                name, value = line.split(":", 1)
                name = name.strip().lower()
                if name == "content-length":
                    try:
                        cl = int(value.strip())
                    except ValueError:
                        return n, "bad content-length"
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            rest = b[end:]
            if chunked:
                pos = 0
                while True:
                    eol = rest.find(b"\n", pos)
                    if eol < 0:
                        return n, None
                    size_text = rest[pos:eol].split(b";")[0].strip()
                    try:
                        size = int(size_text, 16)
                    except ValueError:
                        return n, "bad chunk size"
                    pos = eol + 1
                    if size == 0:
                        # trailers up to an empty line
                        while True:
                            eol = rest.find(b"\n", pos)
                            if eol < 0:
                                return n, None
                            line = rest[pos:eol].strip(b"\r")
                            pos = eol + 1
                            if not line:
                                break
                        break
                    if len(rest) < pos + size + 1:
                        return n, None
                    pos += size
                    if rest[pos:pos + 2] == b"\r\n":
                        pos += 2
                    elif rest[pos:pos + 1] == b"\n":
                        pos += 1
                    else:
                        return n, "bad chunk end"
                self.buf = rest[pos:]
            else:
                length = cl or 0
                if len(rest) < length:
                    return n, None
                self.buf = rest[length:]
            n += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--lifetime", type=float, default=600)
    a = ap.parse_args()
    sel = selectors.DefaultSelector()
    data = socket.create_server(("127.0.0.1", a.port), backlog=256)
    ctl = socket.create_server(("127.0.0.1", a.control), backlog=16)
    for s in (data, ctl):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    streams = {}
    totals = {"bytes": 0, "requests": 0, "errors": 0}
    dumped = []

    def read_conn(c):
        st = streams[c]
        while True:
            try:
                chunk = c.recv(65536)
            except BlockingIOError:
                return True
            except OSError:
                chunk = b""
            if not chunk:
                return False
            if st.health is None:
                st.health = chunk.startswith(HEALTH)
            st.buf += chunk
            n, err = st.take_requests()
            if not st.health:
                totals["bytes"] += len(chunk)
                st.raw += chunk
                totals["requests"] += n
            try:
                c.sendall(OK * n)
            except OSError:
                return False
            if err:
                totals["errors"] += 1
                return False

    def drop(c):
        dumped.append(streams.pop(c).raw)
        sel.unregister(c)
        c.close()

    def accept_all():
        while True:
            try:
                c, _ = data.accept()
            except BlockingIOError:
                return
            c.setblocking(False)
            streams[c] = Stream()
            sel.register(c, selectors.EVENT_READ)

    def drain_all():
        accept_all()
        for c in list(streams):
            if not read_conn(c):
                drop(c)

    print("recorder listening 127.0.0.1:%d control %d" % (a.port, a.control), flush=True)
    deadline = time.monotonic() + a.lifetime
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            if s is data:
                accept_all()
            elif s is ctl:
                try:
                    cc, _ = ctl.accept()
                except BlockingIOError:
                    continue
                cc.settimeout(5)
                try:
                    cmd = cc.makefile("rb").readline().strip()
                    drain_all()
                    reply = b"%d %d %d\n" % (totals["bytes"], totals["requests"], totals["errors"])
                    if cmd == b"dump":
                        raws = dumped + [st.raw for st in streams.values()]
                        dumped.clear()
                        for st in streams.values():
                            st.raw = b""
                        reply += b"".join(raws)
                    cc.sendall(reply)
                except OSError:
                    pass
                cc.close()
                if cmd == b"quit":
                    return 0
            elif s in streams:
                if not read_conn(s):
                    drop(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
