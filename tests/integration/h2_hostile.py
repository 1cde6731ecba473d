#!/usr/bin/python3
"""Hostile HTTP/2 clients for tests/integration/h2_hostile_test.cc.

Run with Debian's /usr/bin/python3 (python3-h2 and its hpack). Usage:

    h2_hostile.py MODE PORT [ARGS...]

Each mode connects to 127.0.0.1:PORT with HTTP/2 by prior knowledge (h2c), drives one
attack, bounded in frames sent and in time (it stops by itself within a few seconds:
every mode has a deadline), and prints exactly one line to stdout, a JSON object saying
what the server did:

  mode         the mode
  goaway       null, or {"code": N, "error": NAME, "last_stream": N} of the first GOAWAY
  rst          {ERROR_NAME: count} of the RST_STREAMs received
  responses    {STATUS: count} of the response heads received (per stream, final ones)
  statuses     {stream id: status} (at most the first 64)
  data_bytes   DATA payload bytes received, all streams
  closed       whether the server closed the connection (EOF or reset)
  close_kind   "eof", "reset" or "open" (still open when the mode stopped)
  bytes_read   bytes read from the socket
  bytes_sent   bytes written to the socket
  frames_sent  frames written (the hostile ones and the rest)
  ...          and per mode extras (documented below)

The attack frames are written by hand (9-byte header and payload, RFC 9113 4.1), HPACK
by the hpack module (python3-h2's dependency): python3-h2 refuses to build most of them.
The "get" mode is an ordinary client on python3-h2's H2Connection, for "is it still
serving". Exit status: 0 whenever a result line was printed (what the server did is for
the caller to judge), 2 on bad usage.

Modes:
  get PATH                      an ordinary request with python3-h2; extras: status,
                                body (first 200 bytes), body_bytes
  post PATH SIZE                an ordinary POST of SIZE bytes with python3-h2, as fast as
                                the windows allow; extras as get, and body_sent
  ping_burst N                  N PINGs in one write while reading: every one should be
                                ACKed (ping_acks); not an attack, the control for floods
  rapid_reset N [paced]         N streams (HEADERS with END_STREAM, then RST_STREAM
                                CANCEL at once), sent while reading; stops at a GOAWAY or
                                a close; "paced": a PING after every 100 streams and
                                its ACK awaited before the next (so each burst is read
                                whole); extras: streams_sent
  continuation N [end]          HEADERS without END_HEADERS, then up to N CONTINUATION
                                frames (one header field each), never END_HEADERS
                                ("end": the Nth has it, a legitimate split head);
                                extras: continuations_sent
  hpack_bomb REFS               one HEADERS (GET /bomb) that inserts a 4,000-byte field
                                into the dynamic table, then references it REFS times
                                (one byte each: 4 MB of header list per 1,000 bytes);
                                then a normal GET /after-bomb on stream 3 on the same
                                connection; extras: block_bytes, decoded_bytes
  settings_flood N              N empty SETTINGS frames with a tiny receive buffer and
                                nothing read while sending (every one wants an ACK);
                                extras: flood_frames_sent, send_blocked
  ping_flood N                  the same with PING frames
  empty_data N                  POST /sink (no END_STREAM), then N empty DATA frames
                                without END_STREAM; extras: data_frames_sent
  zero_window SIZE SECONDS      SETTINGS_INITIAL_WINDOW_SIZE 0, GET /bytes/SIZE, never a
                                WINDOW_UPDATE; reads for up to SECONDS until the stream
                                is reset or the connection closed; after a reset, a PING
                                tells whether the connection still works, then it waits
                                (up to SECONDS in all) for the server to close; extras:
                                stream_reset_code, ping_ok_after_rst
  too_many_streams N PATH       N GETs for PATH sent in one write right after the
                                preface, before reading anything (SETTINGS ACKed once
                                read); reads until every stream is answered or reset;
                                extras: answered, refused
  never_end_head SECONDS        a complete GET /first on stream 1, then HEADERS on stream
                                3 without END_HEADERS and silence; reads for up to
                                SECONDS until the connection closes
"""
import json
import select
import socket
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

SETTINGS_INITIAL_WINDOW_SIZE = 0x4

ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
          "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
          "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]


def error_name(code):
    return ERRORS[code] if code < len(ERRORS) else "0x%x" % code


def frame(ftype, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id & 0x7FFFFFFF) + payload


def settings_frame(entries=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in entries))


def rst_frame(stream_id, code):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def request_fields(method, path, authority="h2.test"):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority)]


class Peer:
    """A raw HTTP/2 client connection: writes frames as given, parses what comes back."""

    def __init__(self, port, rcvbuf=None, ack_settings=True, window_updates=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.ack_settings = ack_settings
        self.window_updates = window_updates
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 30
        self.inbuf = b""
        self.outbuf = b""  # frames written by the parser (ACKs, WINDOW_UPDATEs) not yet sent
        # While a header block is open (HEADERS without END_HEADERS) nothing else may be
        # sent on the connection (RFC 9113 6.10): the replies wait.
        self.hold_replies = False
        self.header_block = {}  # stream id -> (fragments so far, flags of the HEADERS)
        self.goaway = None
        self.rst = {}  # stream id -> error code
        self.statuses = {}  # stream id -> final status
        self.ended = set()  # streams the server ended (END_STREAM or RST_STREAM)
        self.data_bytes = 0
        self.data_by_stream = {}
        self.ping_acks = 0
        self.settings_seen = 0
        self.closed = False
        self.close_kind = "open"
        self.bytes_read = 0
        self.bytes_sent = 0
        self.frames_sent = 0
        self.decode_error = None

    # ---- writing ----

    def send(self, data, deadline, read_meanwhile=True, frames=1):
        """Writes all of `data` unless the deadline passes or the connection closes; True
        when all was written. Reads meanwhile (so a server that writes while we write
        cannot deadlock us) unless told not to; replies to what was read (ACKs) go
        after `data`, never inside it."""
        view = memoryview(data)
        while view:
            if self.closed or time.monotonic() >= deadline:
                return False
            rl = [self.sock] if read_meanwhile else []
            left = max(0.0, deadline - time.monotonic())
            r, w, _ = select.select(rl, [self.sock], [], min(left, 0.2))
            if r:
                self.read_once()
            if w:
                try:
                    n = self.sock.send(view)
                except BlockingIOError:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    self.mark_closed("reset")
                    return False
                self.bytes_sent += n
                view = view[n:]
        self.frames_sent += frames
        self.flush_replies()
        return True

    def flush_replies(self):
        """Sends the queued replies whole (a frame is never left cut, for the next
        write to land inside it); an error (OSError) if the server takes them not within
        2 s."""
        if not self.outbuf or self.closed or self.hold_replies:
            return
        data, self.outbuf = self.outbuf, b""
        view = memoryview(data)
        give_up = time.monotonic() + 2.0
        while view and not self.closed:
            left = give_up - time.monotonic()
            if left <= 0:
                raise OSError("the server took no reply (ACK, WINDOW_UPDATE) for 2 s")
            _, w, _ = select.select([], [self.sock], [], min(left, 0.2))
            if not w:
                continue
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                self.mark_closed("reset")
                return
            self.bytes_sent += n
            view = view[n:]

    def headers(self, stream_id, fields, end_stream=True, end_headers=True):
        block = self.encoder.encode(fields)
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, stream_id, block)

    # ---- reading ----

    def mark_closed(self, kind):
        if not self.closed:
            self.closed = True
            self.close_kind = kind

    def read_once(self):
        """One recv of what is there; parses complete frames."""
        if self.closed:
            return
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            self.mark_closed("reset")
            return
        if not chunk:
            self.mark_closed("eof")
            return
        self.bytes_read += len(chunk)
        self.inbuf += chunk
        self.parse()

    def pump(self, until, deadline):
        """Reads until until() holds, the connection closes or the deadline passes."""
        while not self.closed and not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], min(left, 0.2))
            if r:
                self.read_once()
                self.flush_replies()
        return until()

    def parse(self):
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + length:
                return
            ftype, flags = self.inbuf[3], self.inbuf[4]
            sid = int.from_bytes(self.inbuf[5:9], "big") & 0x7FFFFFFF
            payload = self.inbuf[9:9 + length]
            self.inbuf = self.inbuf[9 + length:]
            self.on_frame(ftype, flags, sid, payload)

    def on_frame(self, ftype, flags, sid, payload):
        if ftype == SETTINGS:
            if not flags & ACK:
                self.settings_seen += 1
                if self.ack_settings:
                    self.outbuf += frame(SETTINGS, ACK, 0)
        elif ftype == PING:
            if flags & ACK:
                self.ping_acks += 1
            else:
                self.outbuf += frame(PING, ACK, 0, payload)
        elif ftype == GOAWAY:
            if self.goaway is None and len(payload) >= 8:
                last, code = struct.unpack(">II", payload[:8])
                self.goaway = {"code": code, "error": error_name(code), "last_stream": last & 0x7FFFFFFF,
                               "debug": payload[8:80].decode("latin-1")}
        elif ftype == RST_STREAM:
            code = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else -1
            self.rst[sid] = code
            self.ended.add(sid)
        elif ftype == DATA:
            body = payload
            if flags & PADDED and body:
                pad = body[0]
                body = body[1:len(body) - pad]
            self.data_bytes += len(body)
            self.data_by_stream[sid] = self.data_by_stream.get(sid, 0) + len(body)
            if self.window_updates and payload:
                self.outbuf += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload)))
                self.outbuf += frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(payload)))
            if flags & END_STREAM:
                self.ended.add(sid)
        elif ftype == HEADERS:
            block = payload
            if flags & PADDED:
                pad = block[0]
                block = block[1:len(block) - pad]
            if flags & PRIORITY_FLAG:
                block = block[5:]
            self.header_block[sid] = ([block], flags)
            if flags & END_HEADERS:
                self.end_block(sid)
        elif ftype == CONTINUATION:
            if sid in self.header_block:
                self.header_block[sid][0].append(payload)
                if flags & END_HEADERS:
                    self.end_block(sid)

    def end_block(self, sid):
        fragments, flags = self.header_block.pop(sid)
        try:
            fields = self.decoder.decode(b"".join(fragments))
        except Exception as e:  # noqa: BLE001 - reported, not raised
            self.decode_error = repr(e)
            return
        status = None
        for name, value in fields:
            if name in (":status", b":status"):
                status = int(value)
        if status is not None and status >= 200:
            self.statuses[sid] = status
        if flags & END_STREAM:
            self.ended.add(sid)

    def drain_until_close(self, deadline):
        self.pump(lambda: False, deadline)

    def result(self, mode, **extra):
        responses = {}
        for status in self.statuses.values():
            responses[str(status)] = responses.get(str(status), 0) + 1
        rst = {}
        for code in self.rst.values():
            rst[error_name(code)] = rst.get(error_name(code), 0) + 1
        out = {
            "mode": mode,
            "goaway": self.goaway,
            "rst": rst,
            "responses": responses,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())[:64]},
            "data_bytes": self.data_bytes,
            "closed": self.closed,
            "close_kind": self.close_kind,
            "bytes_read": self.bytes_read,
            "bytes_sent": self.bytes_sent,
            "frames_sent": self.frames_sent,
            "ping_acks": self.ping_acks,
        }
        if self.decode_error:
            out["decode_error"] = self.decode_error
        out.update(extra)
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def emit(result):
    print(json.dumps(result, sort_keys=True), flush=True)


def start(peer, deadline, settings=()):
    peer.send(PREFACE + settings_frame(settings), deadline, frames=1)


# ---- modes ----

def mode_get(port, path, seconds=5.0):
    import h2.config
    import h2.connection
    import h2.events

    deadline = time.monotonic() + seconds
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_fields("GET", path), end_stream=True)
    sock.sendall(conn.data_to_send())
    status, body, ended, goaway, reset, closed = None, b"", False, None, None, False
    while not ended and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not data:
            closed = True
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                ended = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                reset = error_name(ev.error_code)
                ended = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                goaway = error_name(ev.error_code)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    sock.close()
    emit({"mode": "get", "status": status, "body": body[:200].decode("latin-1"), "body_bytes": len(body),
          "ended": ended, "reset": reset, "goaway": goaway, "closed": closed})


def mode_post(port, path, size, seconds=8.0):
    """An ordinary POST of SIZE bytes with python3-h2, sent as fast as the flow control
    windows allow (16 KB DATA frames: several land in one read of the server's)."""
    import h2.config
    import h2.connection
    import h2.events

    deadline = time.monotonic() + seconds
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_fields("POST", path) + [("content-length", str(size))])
    sock.sendall(conn.data_to_send())
    left = size
    status, body, ended, reset, goaway, closed = None, b"", False, None, None, False
    chunk = b"p" * 16384
    while not ended and not closed and time.monotonic() < deadline:
        while left > 0:
            window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if window <= 0:
                break
            n = min(left, window, len(chunk))
            conn.send_data(sid, chunk[:n], end_stream=(n == left))
            left -= n
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not data:
            closed = True
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                ended = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                reset = error_name(ev.error_code)
                ended = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                goaway = error_name(ev.error_code)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    sock.close()
    emit({"mode": "post", "status": status, "body": body[:200].decode("latin-1"), "body_bytes": len(body),
          "body_sent": size - left, "ended": ended, "reset": reset, "goaway": goaway, "closed": closed})


def mode_ping_burst(port, n, seconds=5.0):
    """N PINGs in one write, everything read meanwhile: a polite burst, every PING
    answered (a server that reads on sends N ACKs)."""
    deadline = time.monotonic() + seconds
    peer = Peer(port)
    start(peer, deadline)
    peer.send(b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(n)), deadline, frames=n)
    peer.pump(lambda: peer.ping_acks >= n, deadline)
    emit(peer.result("ping_burst", pings_sent=n))
    peer.close()


def mode_rapid_reset(port, n, paced=False, seconds=6.0):
    deadline = time.monotonic() + seconds
    peer = Peer(port)
    start(peer, deadline)
    sent = 0
    batch = []
    sid = 1
    for i in range(n):
        batch.append(peer.headers(sid, request_fields("GET", "/rr/%d" % i)) + rst_frame(sid, 8))
        sid += 2
        if len(batch) == 100 or i == n - 1:
            if paced:
                # A PING after each batch, and its ACK awaited: the server has read the
                # batch before the next is sent (each burst about 3 KB).
                batch.append(frame(PING, 0, 0, struct.pack(">Q", i)))
            if not peer.send(b"".join(batch), deadline, frames=2 * len(batch)):
                break
            sent += min(len(batch), 100)
            batch = []
            if paced:
                acks = peer.ping_acks
                peer.pump(lambda: peer.ping_acks > acks or peer.goaway is not None, deadline)
            else:
                peer.pump(lambda: True, deadline)  # a look, without waiting
            if peer.goaway is not None or peer.closed:
                break
    # What follows the attack: the GOAWAY and the close, or an idle connection.
    peer.pump(lambda: peer.goaway is not None and peer.closed, min(deadline, time.monotonic() + 3.0))
    emit(peer.result("rapid_reset", streams_sent=sent))
    peer.close()


def mode_continuation(port, n, end=False, seconds=5.0):
    deadline = time.monotonic() + seconds
    peer = Peer(port, window_updates=True)
    start(peer, deadline)
    block = peer.encoder.encode(request_fields("GET", "/continuation"))
    peer.hold_replies = True
    peer.send(frame(HEADERS, END_STREAM, 1, block), deadline)
    sent = 0
    # One literal field without indexing per frame (RFC 7541 6.2.2): no table state.
    fragment = b"\x00" + bytes([5]) + b"x-pad" + bytes([8]) + b"12345678"
    for i in range(n):
        flags = END_HEADERS if end and i == n - 1 else 0
        if flags:
            peer.hold_replies = False
        if not peer.send(frame(CONTINUATION, flags, 1, fragment), deadline):
            break
        sent += 1
        if sent % 16 == 0:
            peer.pump(lambda: True, deadline)
            if peer.goaway is not None or peer.closed:
                break
    peer.pump(lambda: peer.closed or 1 in peer.ended, min(deadline, time.monotonic() + 3.0))
    emit(peer.result("continuation", continuations_sent=sent))
    peer.close()


def mode_hpack_bomb(port, refs, seconds=5.0):
    deadline = time.monotonic() + seconds
    peer = Peer(port, window_updates=True)
    start(peer, deadline)
    value = b"b" * 4000
    name = b"x-bomb"
    # The request's fields, then the big one with incremental indexing (literal name,
    # 7-bit length prefixes > 127 use the multi-byte integer form), then REFS indexed
    # references to it: dynamic table index 62 (0x80 | 62 = 0xbe).
    head = peer.encoder.encode(request_fields("GET", "/bomb"))
    literal = b"\x40" + hpack_string(name) + hpack_string(value)
    block = head + literal + b"\xbe" * refs
    # Frames of at most 16,384 bytes (the default SETTINGS_MAX_FRAME_SIZE): HEADERS and
    # as few CONTINUATIONs as needed.
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = []
    for i, c in enumerate(chunks):
        last = i == len(chunks) - 1
        flags = END_HEADERS if last else 0
        frames.append(frame(HEADERS if i == 0 else CONTINUATION, flags | (END_STREAM if i == 0 else 0), 1, c))
    peer.send(b"".join(frames), deadline, frames=len(frames))
    peer.pump(lambda: 1 in peer.ended, deadline)
    # The same connection, a normal request: HPACK state must still agree. The encoder
    # does not know of the server-side entry our hand-made literal added, so this block
    # uses no dynamic table (a fresh encoder with table size 0 would need a size update;
    # literals without indexing are simplest).
    fields = request_fields("GET", "/after-bomb")
    plain = b"".join(b"\x00" + hpack_string(k.encode()) + hpack_string(v.encode()) for k, v in fields)
    peer.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, plain), deadline)
    peer.pump(lambda: 3 in peer.ended, deadline)
    emit(peer.result("hpack_bomb", block_bytes=len(block), decoded_bytes=refs * (len(name) + len(value))))
    peer.close()


def hpack_string(s):
    """An HPACK string literal without Huffman coding (RFC 7541 5.2)."""
    return hpack_int(len(s), 7, 0) + s


def hpack_int(value, prefix_bits, first_byte_flags):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = [first_byte_flags | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def mode_flood(port, n, kind, seconds=6.0):
    """SETTINGS or PING frames, nothing read while sending, with a small receive buffer
    so the server's ACKs back up in its own queue."""
    deadline = time.monotonic() + seconds
    send_deadline = time.monotonic() + seconds / 2
    peer = Peer(port, rcvbuf=4096, ack_settings=False)
    peer.send(PREFACE + settings_frame(), deadline, read_meanwhile=False)
    one = settings_frame() if kind == "settings" else frame(PING, 0, 0, b"12345678")
    per_write = 1000
    sent = 0
    blocked = False
    while sent < n:
        k = min(per_write, n - sent)
        if not peer.send(one * k, send_deadline, read_meanwhile=False, frames=k):
            blocked = not peer.closed
            break
        sent += k
    # Now read: what the server sent before it gave up, and its close.
    peer.pump(lambda: False, deadline)
    emit(peer.result(kind + "_flood", flood_frames_sent=sent, send_blocked=blocked))
    peer.close()


def mode_empty_data(port, n, seconds=5.0):
    deadline = time.monotonic() + seconds
    peer = Peer(port)
    start(peer, deadline)
    peer.send(peer.headers(1, request_fields("POST", "/sink"), end_stream=False), deadline)
    sent = 0
    for _ in range(n):
        if not peer.send(frame(DATA, 0, 1), deadline):
            break
        sent += 1
    peer.pump(lambda: peer.goaway is not None and peer.closed, min(deadline, time.monotonic() + 3.0))
    emit(peer.result("empty_data", data_frames_sent=sent))
    peer.close()


def mode_zero_window(port, size, seconds):
    deadline = time.monotonic() + seconds
    peer = Peer(port)
    start(peer, deadline, settings=[(SETTINGS_INITIAL_WINDOW_SIZE, 0)])
    peer.send(peer.headers(1, request_fields("GET", "/bytes/%d" % size)), deadline)
    peer.pump(lambda: 1 in peer.ended, deadline)
    ping_ok = None
    if 1 in peer.rst and not peer.closed:
        before = peer.ping_acks
        peer.send(frame(PING, 0, 0, b"zerowind"), deadline)
        ping_ok = peer.pump(lambda: peer.ping_acks > before, min(deadline, time.monotonic() + 2.0))
        # Then nothing: the idle connection is ended by the server (or the deadline).
        peer.drain_until_close(deadline)
    emit(peer.result("zero_window", stream_reset_code=(error_name(peer.rst[1]) if 1 in peer.rst else None),
                     ping_ok_after_rst=ping_ok))
    peer.close()


def mode_too_many_streams(port, n, path, seconds=6.0):
    deadline = time.monotonic() + seconds
    peer = Peer(port, window_updates=True)
    out = PREFACE + settings_frame()
    for i in range(n):
        out += peer.headers(1 + 2 * i, request_fields("GET", "%s/%d" % (path, i)))
    peer.send(out, deadline, read_meanwhile=False, frames=n + 1)
    ids = [1 + 2 * i for i in range(n)]
    peer.pump(lambda: all(s in peer.ended for s in ids), deadline)
    answered = sum(1 for s in ids if s in peer.statuses and s not in peer.rst)
    refused = sum(1 for s in ids if peer.rst.get(s) == 7)
    emit(peer.result("too_many_streams", answered=answered, refused=refused,
                     refused_ids=[s for s in ids if peer.rst.get(s) == 7][:8],
                     answered_ids=[s for s in ids if s in peer.statuses][:8]))
    peer.close()


def mode_never_end_head(port, seconds):
    deadline = time.monotonic() + seconds
    peer = Peer(port, window_updates=True)
    start(peer, deadline)
    peer.send(peer.headers(1, request_fields("GET", "/first")), deadline)
    peer.pump(lambda: 1 in peer.ended, deadline)
    peer.hold_replies = True
    peer.send(peer.headers(3, request_fields("GET", "/never-ends"), end_stream=True, end_headers=False), deadline)
    opened = time.monotonic()
    peer.drain_until_close(deadline)
    emit(peer.result("never_end_head", open_after_head_ms=int((time.monotonic() - opened) * 1000)))
    peer.close()


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    mode, port, args = argv[1], int(argv[2]), argv[3:]
    try:
        if mode == "get":
            mode_get(port, args[0] if args else "/")
        elif mode == "post":
            mode_post(port, args[0], int(args[1]))
        elif mode == "ping_burst":
            mode_ping_burst(port, int(args[0]) if args else 2000)
        elif mode == "rapid_reset":
            mode_rapid_reset(port, int(args[0]) if args else 20000, len(args) > 1 and args[1] == "paced")
        elif mode == "continuation":
            mode_continuation(port, int(args[0]) if args else 10000, len(args) > 1 and args[1] == "end")
        elif mode == "hpack_bomb":
            mode_hpack_bomb(port, int(args[0]) if args else 12000)
        elif mode == "settings_flood":
            mode_flood(port, int(args[0]) if args else 100000, "settings")
        elif mode == "ping_flood":
            mode_flood(port, int(args[0]) if args else 100000, "ping")
        elif mode == "empty_data":
            mode_empty_data(port, int(args[0]) if args else 100)
        elif mode == "zero_window":
            mode_zero_window(port, int(args[0]) if args else 10000000, float(args[1]) if len(args) > 1 else 5.0)
        elif mode == "too_many_streams":
            mode_too_many_streams(port, int(args[0]) if args else 50, args[1] if len(args) > 1 else "/s")
        elif mode == "never_end_head":
            mode_never_end_head(port, float(args[0]) if args else 5.0)
        else:
            sys.stderr.write("unknown mode %r\n%s" % (mode, __doc__))
            return 2
    except (OSError, ValueError) as e:
        emit({"mode": mode, "error": repr(e)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
