#!/usr/bin/python3
"""Writes the seed corpus of fuzz_h2_client (fuzz/h2_client.cc) into fuzz/corpus/fuzz_h2_client/.

Each seed is two option bytes (h2_client.cc's header comment says what each bit does),
then what an HTTP/2 node sends to the proxy's client session: its SETTINGS, then frames
to the streams the harness opened, 1 (GET /get), 3 (POST /post, 600 bytes of body),
5 (POST /grpc, te: trailers) and, when byte 1 has bit 3, 7 (GET /late, submitted after
the first read); an unprocessed stream submitted again takes the next odd id. Frames are
built by hand and header blocks with python3-h2's HPACK encoder (the hpack module, one
encoder per seed: its dynamic table is the connection's), as fuzz/gen_h2_corpus.py does
for the server side. Each scenario is written with a few option bytes, so the same
frames meet queued writes, pinned bodies, deadlines, a client going away and a drain.

    /usr/bin/python3 fuzz/gen_h2_client_corpus.py [OUTDIR]   (Debian's python3-h2 brings hpack)
"""
import os
import struct
import sys

import hpack

# The frame builders and constants of the server side's generator, shared.
from gen_h2_corpus import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED, PING,  # noqa: F401
                           PRIO, PRIORITY, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE, data, frame, goaway,
                           rst, settings, window_update)
from gen_h2_corpus import ping as any_ping

HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = \
    range(1, 7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = \
    0, 1, 2, 3, 7, 8, 11


def ping(opaque=b"nodeping", ack=False):
    return any_ping(opaque, ack)


class Node:
    def __init__(self):
        self.enc = hpack.Encoder()

    def block(self, fields):
        return self.enc.encode(fields)

    def headers(self, stream, fields, end_stream=False, pad=None, priority=None):
        payload = self.block(fields)
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        if priority is not None:
            payload = struct.pack(">I", priority) + bytes([16]) + payload
            flags |= PRIO
        if pad is not None:
            payload = bytes([pad]) + payload + b"\0" * pad
            flags |= PADDED
        return frame(HEADERS, flags, stream, payload)

    def response(self, stream, status=200, extra=(), end_stream=False):
        return self.headers(stream, [(":status", str(status)), ("x-node", "fuzz")] + list(extra), end_stream)


def preface(*pairs):
    """The node's SETTINGS, and its ACK of ours."""
    return settings(*pairs) + settings(ack=True)


def scenarios():
    out = {}

    n = Node()
    out["all_answered"] = (preface((MAX_CONCURRENT_STREAMS, 100)) +
                           n.response(1, extra=[("content-length", "2")]) + data(1, b"ok", end_stream=True) +
                           n.response(3) + data(3, b"posted") + data(3, b"", end_stream=True) +
                           n.response(5, extra=[("content-type", "application/grpc")]) +
                           data(5, b"\0\0\0\0\x02hi") + n.headers(5, [("grpc-status", "0")], end_stream=True))

    n = Node()
    out["bodiless"] = preface() + n.response(1, 204, end_stream=True) + n.response(3, 304, end_stream=True)

    n = Node()
    out["interim"] = (preface() + n.response(3, 100) + window_update(0, 1 << 20) + window_update(3, 1 << 16) +
                      n.response(1, 103, extra=[("link", "</a>; rel=preload")]) + n.response(1, end_stream=True) +
                      n.response(3, 201) + data(3, b"created", end_stream=True))

    n = Node()
    out["refused"] = (preface() + rst(3, REFUSED_STREAM) + rst(5, REFUSED_STREAM) +
                      n.response(1, end_stream=True) + n.response(7, end_stream=True) +
                      rst(9, REFUSED_STREAM) + n.response(11, end_stream=True))

    n = Node()
    out["goaway_unprocessed"] = (preface() + goaway(1) + n.response(1) + data(1, b"last", end_stream=True))

    n = Node()
    out["goaway_after_all"] = (preface() + n.response(1, end_stream=True) + n.response(3, end_stream=True) +
                               n.response(5, end_stream=True) + goaway(5) + ping())

    n = Node()
    out["goaway_error"] = preface() + n.response(1) + goaway(0, ENHANCE_YOUR_CALM, b"calm down") + data(1, b"x")

    n = Node()
    out["max_streams_one"] = (settings((MAX_CONCURRENT_STREAMS, 1)) + settings(ack=True) +
                              n.response(1, end_stream=True) + n.response(3, end_stream=True) +
                              n.response(5, end_stream=True))

    n = Node()
    out["max_streams_zero"] = (settings((MAX_CONCURRENT_STREAMS, 0)) + settings(ack=True) + ping() +
                               settings((MAX_CONCURRENT_STREAMS, 2)) + n.response(1, end_stream=True))

    n = Node()
    out["small_window"] = (settings((INITIAL_WINDOW_SIZE, 16), (MAX_FRAME_SIZE, 16384)) + settings(ack=True) +
                           window_update(3, 100) + window_update(3, 200) + window_update(0, 1000) +
                           settings((INITIAL_WINDOW_SIZE, 1000)) + n.response(3) + data(3, b"thanks", end_stream=True))

    n = Node()
    out["zero_window_then_flood"] = (settings((INITIAL_WINDOW_SIZE, 0)) + settings(ack=True) +
                                     b"".join(window_update(3, 1) for _ in range(120)) + window_update(0, 1))

    n = Node()
    out["window_overflow"] = preface() + window_update(3, 0x7fffffff) + window_update(3, 0x7fffffff)

    n = Node()
    out["ping_flood"] = preface() + b"".join(ping(struct.pack(">Q", i)) for i in range(200))

    n = Node()
    out["settings_flood"] = settings() + b"".join(settings((HEADER_TABLE_SIZE, 4096 + i)) for i in range(150))

    n = Node()
    out["push_promise"] = (preface() + n.response(1) +
                           frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) +
                                 n.block([(":method", "GET"), (":scheme", "http"), (":path", "/pushed"),
                                          (":authority", "node.test")])) + data(1, b"x", end_stream=True))

    n = Node()
    block = n.block([(":status", "200"), ("x-long", "v" * 200), ("x-more", "w" * 50), ("content-length", "3")])
    third = len(block) // 3
    out["continuation"] = (preface() + frame(HEADERS, 0, 1, block[:third]) +
                           frame(CONTINUATION, 0, 1, block[third:2 * third]) +
                           frame(CONTINUATION, END_HEADERS, 1, block[2 * third:]) + data(1, b"abc", end_stream=True))

    n = Node()
    bomb = n.block([(":status", "200"), ("x-bomb", "b" * 3000)])
    again = n.block([("x-bomb", "b" * 3000)])  # indexed now: one byte each
    out["hpack_bomb"] = preface() + frame(HEADERS, END_HEADERS, 1, bomb + again * 40) + data(1, b"", end_stream=True)

    n = Node()
    out["continuation_flood"] = (preface() + frame(HEADERS, 0, 1, n.block([(":status", "200")])) +
                                 b"".join(frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b") for _ in range(200)))

    n = Node()
    out["hpack_garbage"] = (preface() + frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\x0f") +
                            frame(HEADERS, END_HEADERS, 3, b"\x3f\xe1\xff\x03" + b"\x88"))

    n = Node()
    out["table_size_update"] = (settings((HEADER_TABLE_SIZE, 0)) + settings(ack=True) +
                                n.headers(1, [(":status", "200"), ("x-a", "1")]) +
                                frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\x20\x3f\xe1\x1f\x88"))

    n = Node()
    out["data_before_headers"] = preface() + data(1, b"early") + n.response(1, end_stream=True) + data(3, b"x")

    n = Node()
    out["data_after_end"] = (preface() + n.response(1) + data(1, b"one", end_stream=True) + data(1, b"two") +
                             n.response(1, end_stream=True))

    n = Node()
    out["two_final_heads"] = (preface() + n.response(1) + n.response(1, 201) + data(1, b"x", end_stream=True) +
                              n.response(3, extra=[("content-length", "1")]) + n.response(3, 202, end_stream=True))

    n = Node()
    out["content_length_mismatch"] = (preface() + n.response(1, extra=[("content-length", "2")]) +
                                      data(1, b"toolong", end_stream=True) +
                                      n.response(3, extra=[("content-length", "10")]) + data(3, b"short", end_stream=True))

    n = Node()
    out["trailers_without_end"] = (preface() + n.response(5) + data(5, b"m") + n.headers(5, [("grpc-status", "0")]) +
                                   data(5, b"after", end_stream=True))

    n = Node()
    out["interim_end_stream"] = (preface() + n.response(1, 100, end_stream=True) +
                                 n.response(3, 101) + n.response(5, 199) + n.response(5, 200, end_stream=True))

    n = Node()
    out["malformed_status"] = (preface() + n.headers(1, [(":status", "2000")], end_stream=True) +
                               n.headers(3, [(":status", "abc")], end_stream=True) +
                               n.headers(5, [("x-no-status", "1")], end_stream=True))

    n = Node()
    out["uppercase_and_connection"] = (preface() + n.headers(1, [(":status", "200"), ("X-Upper", "1")]) +
                                       n.headers(3, [(":status", "200"), ("connection", "close")]) +
                                       n.headers(5, [(":status", "200"), (":path", "/x")]))

    n = Node()
    out["even_stream_and_idle"] = (preface() + n.response(2, end_stream=True) + data(9, b"idle") + rst(11, CANCEL) +
                                   window_update(13, 5))

    n = Node()
    out["padding"] = (preface() + n.headers(1, [(":status", "200")], pad=20) + data(1, b"padded", pad=9) +
                      data(1, b"", end_stream=True, pad=255) + data(3, b"", pad=0))

    n = Node()
    out["bad_padding"] = preface() + n.response(1) + frame(DATA, PADDED, 1, b"\x09abc")

    n = Node()
    out["priority_frames"] = (preface() + frame(PRIORITY, 0, 1, struct.pack(">I", 3) + b"\x10") +
                              n.headers(1, [(":status", "200")], priority=0, end_stream=True) +
                              frame(PRIORITY, 0, 3, struct.pack(">I", 3) + b"\x10"))

    n = Node()
    out["reset_mid_body"] = (preface() + n.response(1) + data(1, b"partial") + rst(1, INTERNAL_ERROR) +
                             n.response(3) + rst(3, NO_ERROR) + n.response(5) + data(5, b"m") + rst(5, CANCEL))

    n = Node()
    big = b"z" * 1500  # two over the small limits' 1024-byte window
    out["big_body"] = preface() + n.response(1) + data(1, big) + data(1, big) + data(1, b"end", end_stream=True)

    n = Node()
    # A length over SETTINGS_MAX_FRAME_SIZE is an error as soon as the frame header is read.
    out["frame_too_large"] = preface() + n.response(1) + struct.pack(">I", 16385)[1:] + bytes([DATA, 0]) + \
        struct.pack(">I", 1) + b"q" * 64

    n = Node()
    out["unknown_frames"] = (preface() + frame(0x42, 0xff, 0, b"ext") + frame(0x0a, 0, 0, b"\0\x04host") +
                             n.response(1, end_stream=True))

    n = Node()
    out["no_settings_first"] = n.response(1, end_stream=True) + settings()

    n = Node()
    out["settings_bad"] = (settings((ENABLE_PUSH, 2)) + settings((INITIAL_WINDOW_SIZE, 0x80000000)) +
                           settings((MAX_FRAME_SIZE, 100)))

    n = Node()
    out["late_request"] = (preface() + n.response(1, end_stream=True) + n.response(3, end_stream=True) +
                           n.response(5, end_stream=True) + n.response(7) + data(7, b"late", end_stream=True))
    return out


# Option bytes per scenario: as is; queued writes and pinned bodies; deadlines with a
# client gone and a drain; small limits with a late request and the ends cancelled;
# connected first with the node's limit assumed 1, over 3 reads.
OPTIONS = [b"\x04\x00", b"\x0d\x01", b"\x74\x02", b"\x06\x2c", b"\x8c\x12"]


def seeds():
    out = {}
    for name, body in scenarios().items():
        for i, opts in enumerate(OPTIONS):
            out["%s_%d" % (name, i)] = opts + body
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "fuzz_h2_client")
    os.makedirs(outdir, exist_ok=True)
    all_seeds = seeds()
    for name, body in sorted(all_seeds.items()):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(body)
    print("%d seeds in %s" % (len(all_seeds), outdir))


if __name__ == "__main__":
    main()
