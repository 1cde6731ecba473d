#!/usr/bin/python3
"""Writes the seed corpus of fuzz_h2_frames (fuzz/h2_frames.cc) into fuzz/corpus/fuzz_h2_frames/.

Each seed is what an HTTP/2 client sends after the 24-byte preface (the harness sends
the preface itself). Frames are built by hand, header blocks with python3-h2's HPACK
encoder (the hpack module, one encoder per seed: its dynamic table is the connection's),
so that padding, priority and CONTINUATION splits are exactly as written here. The
backend of the harness answers a path holding "big" with a body over the initial window,
"chunk" chunked, "close" with Connection: close.

    /usr/bin/python3 fuzz/gen_h2_corpus.py [OUTDIR]   (Debian's python3-h2 brings hpack)
"""
import os
import struct
import sys

import hpack

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def request_fields(method="GET", path="/", authority="fuzz", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)] + list(extra)


class Conn:
    def __init__(self):
        self.enc = hpack.Encoder()

    def block(self, fields):
        return self.enc.encode(fields)

    def headers(self, stream, fields, end_stream=True, pad=None, priority=None):
        payload = self.block(fields)
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        if priority is not None:
            dep, weight, exclusive = priority
            payload = struct.pack(">I", dep | (0x80000000 if exclusive else 0)) + bytes([weight]) + payload
            flags |= PRIO
        if pad is not None:
            payload = bytes([pad]) + payload + b"\0" * pad
            flags |= PADDED
        return frame(HEADERS, flags, stream, payload)


def data(stream, payload, end_stream=False, pad=None):
    flags = END_STREAM if end_stream else 0
    if pad is not None:
        payload = bytes([pad]) + payload + b"\0" * pad
        flags |= PADDED
    return frame(DATA, flags, stream, payload)


def window_update(stream, n):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", n))


def rst(stream, code):
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def ping(opaque=b"fuzzping", ack=False):
    return frame(PING, ACK if ack else 0, 0, opaque)


def priority(stream, dep, weight, exclusive=False):
    return frame(PRIORITY, 0, stream, struct.pack(">I", dep | (0x80000000 if exclusive else 0)) + bytes([weight]))


def goaway(last, code=0, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


def seeds():
    out = {}
    c = Conn()
    out["get"] = settings() + c.headers(1, request_fields())

    c = Conn()
    out["get_settings_ack"] = (settings((3, 100), (4, 65535)) + settings(ack=True) +
                               c.headers(1, request_fields(path="/a?k=1", extra=[("x-key", "a")])))

    c = Conn()
    out["post_data"] = (settings() + c.headers(1, request_fields("POST", "/upload", extra=[("content-length", "11")]),
                                               end_stream=False) +
                        data(1, b"hello") + data(1, b" world", end_stream=True))

    c = Conn()
    out["post_no_length"] = (settings() + c.headers(1, request_fields("POST", "/chunked-up"), end_stream=False) +
                             data(1, b"one,") + data(1, b"two,") + data(1, b"three", end_stream=True))

    c = Conn()
    out["several_streams"] = (settings() +
                              c.headers(1, request_fields(path="/one", extra=[("cookie", "sid=1"), ("cookie", "b=2")])) +
                              c.headers(3, request_fields("HEAD", "/two")) +
                              c.headers(5, request_fields("PUT", "/three", extra=[("x-key", "z")]), end_stream=False) +
                              c.headers(7, request_fields(path="/four/chunk")) +
                              data(5, b"put body", end_stream=True) +
                              c.headers(9, request_fields("DELETE", "/five/close")))

    c = Conn()
    out["ping"] = settings() + ping() + c.headers(1, request_fields()) + ping(b"\0" * 8) + ping(b"acked!!!", ack=True)

    c = Conn()
    out["window_update"] = (settings((4, 16)) + c.headers(1, request_fields(path="/big")) +
                            window_update(0, 100000) + window_update(1, 65536) + window_update(1, 10000))

    c = Conn()
    out["big_chunked"] = (settings() + c.headers(1, request_fields(path="/big/chunk")) +
                          c.headers(3, request_fields(path="/big")) + window_update(1, 70000))

    c = Conn()
    out["rst_stream"] = (settings() + c.headers(1, request_fields("POST", "/cancel"), end_stream=False) +
                         data(1, b"partial") + rst(1, 8) + c.headers(3, request_fields(path="/after")) + rst(3, 0))

    c = Conn()
    block = c.block(request_fields(path="/continued", extra=[("x-long", "v" * 60), ("x-key", "k"), ("accept", "*/*")]))
    third = len(block) // 3
    out["continuation"] = (settings() + frame(HEADERS, END_STREAM, 1, block[:third]) +
                           frame(CONTINUATION, 0, 1, block[third:2 * third]) +
                           frame(CONTINUATION, END_HEADERS, 1, block[2 * third:]))

    c = Conn()
    out["padding"] = (settings() + c.headers(1, request_fields("POST", "/padded"), end_stream=False, pad=7) +
                      data(1, b"abc", pad=3) + data(1, b"", end_stream=True, pad=10))

    c = Conn()
    out["priority"] = (settings() + c.headers(1, request_fields(path="/p1"), priority=(0, 200, False)) +
                       priority(3, 1, 16) + c.headers(3, request_fields(path="/p3"), priority=(1, 32, True)) +
                       priority(5, 0, 255, True))

    c = Conn()
    out["trailers"] = (settings() + c.headers(1, request_fields("POST", "/trailers", extra=[("te", "trailers")]),
                                              end_stream=False) +
                       data(1, b"body before trailers") +
                       c.headers(1, [("x-checksum", "abc")], end_stream=True))

    c = Conn()
    out["goaway"] = settings() + c.headers(1, request_fields(path="/g")) + goaway(1)

    c = Conn()
    out["connect_refused"] = settings() + c.headers(1, [(":method", "CONNECT"), (":authority", "example.com:443")])

    c = Conn()
    out["large_head"] = settings() + c.headers(1, request_fields(path="/large", extra=[("x-pad", "p" * 700)]))

    c = Conn()
    out["expect_continue"] = (settings() + c.headers(1, request_fields("POST", "/expect", extra=[
        ("expect", "100-continue"), ("content-length", "4")]), end_stream=False) + data(1, b"body", end_stream=True))

    c = Conn()
    out["host_and_authority"] = (settings() +
                                 c.headers(1, request_fields(path="/h", extra=[("host", "other")])) +
                                 c.headers(3, [(":method", "GET"), (":scheme", "http"), (":path", "/nohost"),
                                               ("host", "only-host")]) +
                                 c.headers(5, [(":method", "GET"), (":scheme", "http"), (":path", "/none")]))

    c = Conn()
    out["settings_zero_window"] = (settings((4, 0), (5, 16384), (1, 0)) + c.headers(1, request_fields(path="/z")) +
                                   window_update(1, 2))

    c = Conn()
    out["many_streams"] = settings() + b"".join(
        c.headers(i, request_fields(path="/m%d" % i, extra=[("x-key", str(i))])) for i in range(1, 24, 2))

    c = Conn()
    out["empty_data_run"] = (settings() + c.headers(1, request_fields("POST", "/empty"), end_stream=False) +
                             b"".join(data(1, b"") for _ in range(20)) + data(1, b"x", end_stream=True))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "fuzz_h2_frames")
    os.makedirs(outdir, exist_ok=True)
    for name, body in sorted(seeds().items()):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(body)
    print("%d seeds in %s" % (len(seeds()), outdir))


if __name__ == "__main__":
    main()
