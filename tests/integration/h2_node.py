#!/usr/bin/python3
"""An HTTP/2 backend node for the integration tests of ringproxy's HTTP/2 client side
(backends with protocol = "h2c" or "h2", SPEC "HTTP/2 and gRPC"): the proxy talks to it
as to any node, and the tests ask it what it saw.

Debian's /usr/bin/python3 and python3-h2 4.1 (its hpack and hyperframe); one thread, one
selectors loop: many connections, many concurrent streams each, timers in the loop (no
sleep ever blocks another stream), bodies generated and hashed on the fly (a 1 GiB body
either way stays in flat memory). A client resetting a stream, closing mid-body or
breaking the protocol costs only its stream or its connection: exceptions are logged to
stderr and the node keeps serving. Used by the h2 backend tests
(tests/integration/h2_upstream_test.cc).

usage: h2_node.py --port N --name NAME [--max-streams N] [--goaway-after N]
                  [--rst-path PREFIX] [--tls CERT KEY] [--window BYTES] [--log]

  --port N          listens on 127.0.0.1:N; 0 takes an ephemeral port
  --name NAME       the node's name, in every answer (JSON "node", header x-node)
  --max-streams N   SETTINGS_MAX_CONCURRENT_STREAMS advertised (default 128; 0 allows
                    none, RFC 9113 6.5.2; /max-streams changes it). A stream opened
                    beyond it is refused (RST_STREAM REFUSED_STREAM) and counted in
                    /stats as max_streams_violations, or max_streams_early when the peer
                    had not ACKed our SETTINGS saying it yet (never a connection error).
                    Control requests (/stats, /release, /goaway-all, /max-streams) are
                    never refused: curl sends them before it reads our SETTINGS
  --goaway-after N  on each connection, right after the N-th request's header block:
                    GOAWAY(NO_ERROR, last_stream_id = that request's stream id); streams
                    up to it are answered, streams above it are ignored (as RFC 9113 6.8
                    lets the sender of GOAWAY) and counted as "refused"; once the last
                    kept stream is answered, the node closes the connection (after a
                    FIN and draining what the peer still sends, up to 2 s)
  --rst-path PREFIX requests whose path starts with PREFIX get RST_STREAM REFUSED_STREAM
                    at once (as /rst does), repeatable
  --tls CERT KEY    TLS on the port, ALPN "h2" (for protocol = "h2" backends); a client
                    that negotiates no ALPN is served HTTP/2 all the same, and /stats
                    says what it negotiated
  --window BYTES    SETTINGS_INITIAL_WINDOW_SIZE advertised and the connection window
                    (default 65535, the protocol's default)
  --log             one stdout line per request: "REQ <conn> <stream> <METHOD> <path>"

SIGUSR1 writes every open connection's state (streams, windows, queued bytes) to stderr.

Writes "READY\\n" to stdout once listening ("READY <port>\\n" when --port 0).

Paths (every request's body is read whole, hashed incrementally and acknowledged as it
arrives, so flow control never stalls an upload; the answer comes at the request's end):
  any path        200, content-type application/json, headers x-node, x-connection,
                  x-stream-id; body JSON {"node", "method", "path", "headers",
                  "header_list", "violations", "trailers", "body_len", "body_sha256",
                  "stream_id", "connection"}: "headers" maps each lowercased name
                  (pseudo-headers included) to its value (repeats joined by ", ", cookie
                  crumbs by "; "); "header_list" is the block as sent, in order;
                  "violations" lists what RFC 9113 8.2 and 8.3 forbid in the request's
                  block (connection-specific fields, te other than "trailers", uppercase
                  names, pseudo-headers after regular ones or unknown or repeated,
                  missing :method/:scheme/:path), [] for a well-formed one; "trailers"
                  the request's trailers, or null. The node checks nothing itself: the
                  headers are taken as sent (python3-h2's validation off) so the tests see
                  what the proxy did. /health is such a path (health checks over h2)
  /upload         the same (body_len and body_sha256 are the point)
  /trailers       200 without content-length, the JSON body, then trailers
                  x-checksum: <sha256 hex of the request body> and x-trailer: yes
  /big?bytes=N    200, content-length N, N body bytes, byte i = 'a' + i % 26, generated
                  as the peer's windows allow (never held); &trailers=1 adds a trailer
                  x-checksum: <sha256 of the body sent>; &nolength=1 drops content-length
  /slow?ms=N      the JSON answer N ms later (a timer in the loop)
  /stall          never answered (the stream stays open until the peer resets it or
                  closes the connection)
  /hold           the JSON answer once /release has come: held until then (counted in
                  /stats as "held"), answered at once after it. Lets a test pile streams
                  up on the node's connections without a clock
  /release        answers every held stream and every later /hold at once; its own
                  answer is {"released": N}. A control request, as /stats
  /goaway-all     GOAWAY(NO_ERROR, last_stream_id = the last stream it received) now on
                  every other open connection that carried requests and had none yet;
                  each then behaves as under --goaway-after. Answer {"goaways": N}. A
                  control request, as /stats
  /max-streams?n=N  the limit becomes N: SETTINGS_MAX_CONCURRENT_STREAMS N now on every
                  open connection, and on new ones. Answer {"max_streams": N,
                  "connections": how many were told}. A control request, as /stats
  /rst            RST_STREAM REFUSED_STREAM as soon as the header block arrives, no answer
  /rst-internal   RST_STREAM INTERNAL_ERROR likewise
  /status/CODE    the JSON answer with status CODE (e.g. /status/503)
  /goaway         GOAWAY(NO_ERROR, last_stream_id = this stream) now, then the JSON answer;
                  the connection then behaves as under --goaway-after
  /stats          JSON, below; a connection that has carried only control requests (/stats,
                  /release, /goaway-all, /max-streams) (the test's own, e.g. curl --http2-prior-knowledge) is a
                  "control" connection and left out of the counts, and those requests
                  are not streams counted

/stats, one JSON object:
  node, max_streams_advertised (the limit now)
  connections_accepted     TCP connections so far, control ones excepted
  connections_open         of those, still open
  control_connections      connections that carried only control requests
  held                     /hold streams waiting for /release now
  max_connections_open     the most connections open at once that carried requests (a
                           connection counts from its first request other than a control
                           one or /health: control connections and health checks left
                           out)
  total_streams            request header blocks, /stats excepted (refused ones included,
                           those ignored after a GOAWAY not)
  max_concurrent_streams   the most streams open at once on one connection (a stream is open
                           from its header block until its answer ends or a reset)
  refused_streams          streams ignored after our GOAWAY (above its last_stream_id)
  max_streams_violations   streams refused for opening beyond --max-streams after the peer
                           ACKed our SETTINGS (a client bug)
  max_streams_early        the same before that ACK (RFC 9113 allows it: the peer may not
                           have seen the limit yet; nghttp2 assumes 100 until it has)
  goaways_sent, resets_received (RST_STREAM from the peer), responses (answers completed)
  per_connection           [{connection (index from 0 in accept order), peer, open, control,
                           alpn (null on h2c), streams (header blocks, /stats included),
                           active, max_concurrent, refused, violations, early_refused,
                           resets_received, goaway_last_stream (null: no GOAWAY sent),
                           peer_goaway (the peer's GOAWAY error code, or null), paths
                           ({path without query: count}, at most 32 paths)}]
"""
import argparse
import hashlib
import heapq
import itertools
import json
import selectors
import signal
import socket
import ssl
import sys
import time
import traceback
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState
from hyperframe.frame import GoAwayFrame, SettingsFrame

# Byte i of a generated body is 'a' + i % 26 (as the demo backend's /bytes/N and
# h2_client.py's bodies).
MAX_CHUNK = 65536
PATTERN = bytes(ord("a") + i % 26 for i in range(MAX_CHUNK + 26))
# Generated DATA stops while this much is queued for the socket (bounded memory).
OUT_HIGH = 256 * 1024
PUMP_BUDGET = 4 * 1024 * 1024
LINGER_S = 2.0
CONTROL_PATHS = ("/stats", "/release", "/goaway-all", "/max-streams")
CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
REQUEST_PSEUDO = {b":method", b":scheme", b":path", b":authority", b":protocol"}


def log(msg):
    sys.stderr.write("h2_node: %s\n" % msg)
    sys.stderr.flush()


def violations_of(block):
    out = []
    seen_regular = False
    seen_pseudo = set()
    for name, value in block:
        if name != name.lower():
            out.append("uppercase name %s" % name.decode("latin-1"))
        n = name.lower()
        if n.startswith(b":"):
            if seen_regular:
                out.append("pseudo-header %s after a regular field" % n.decode("latin-1"))
            if n not in REQUEST_PSEUDO:
                out.append("unknown pseudo-header %s" % n.decode("latin-1"))
            if n in seen_pseudo:
                out.append("repeated pseudo-header %s" % n.decode("latin-1"))
            seen_pseudo.add(n)
        else:
            seen_regular = True
            if n in CONNECTION_SPECIFIC:
                out.append("connection-specific field %s" % n.decode("latin-1"))
            elif n == b"te" and value.strip().lower() != b"trailers":
                out.append("te: %s" % value.decode("latin-1"))
    method = dict(block).get(b":method")
    need = [b":method"] if method == b"CONNECT" else [b":method", b":scheme", b":path"]
    for p in need:
        if p not in seen_pseudo:
            out.append("missing %s" % p.decode())
    return out


def header_map(block):
    m = {}
    for name, value in block:
        k = name.decode("latin-1").lower()
        v = value.decode("latin-1")
        if k in m:
            m[k] += ("; " if k == "cookie" else ", ") + v
        else:
            m[k] = v
    return m


class Stream:
    __slots__ = ("sid", "block", "method", "path", "body_len", "sha", "trailers", "active",
                 "remaining", "offset", "body", "end_trailers", "out_sha", "ended")

    def __init__(self, sid, block):
        self.sid = sid
        self.block = block
        d = dict((n.lower(), v) for n, v in block)
        self.method = d.get(b":method", b"").decode("latin-1")
        self.path = d.get(b":path", b"").decode("latin-1")
        self.body_len = 0
        self.sha = hashlib.sha256()
        self.trailers = None
        self.active = True      # counted as open (until answered or reset)
        self.ended = False      # request END_STREAM seen
        # What remains to send: a bytes body (body, offset) or a generated one (remaining).
        self.body = None
        self.offset = 0
        self.remaining = 0
        self.end_trailers = None
        self.out_sha = None


class Node:
    def __init__(self, args):
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.timers = []
        self.seq = itertools.count()
        self.conns = []          # every connection ever accepted, by index
        self.dirty = set()
        self.again = set()       # connections with more to send at once (pump budget spent)
        self.held = []           # (connection, stream id) of /hold streams not yet released
        self.released = False
        self.max_streams = args.max_streams  # the limit advertised now (/max-streams)
        self.stats = {"total_streams": 0, "refused_streams": 0, "max_streams_violations": 0,
                      "max_streams_early": 0, "max_connections_open": 0,
                      "goaways_sent": 0, "resets_received": 0, "responses": 0}
        self.ctx = None
        if args.tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(args.tls[0], args.tls[1])
            self.ctx.set_alpn_protocols(["h2"])
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", args.port))
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.sel.register(self.lsock, selectors.EVENT_READ, None)

    def at(self, delay_s, fn):
        heapq.heappush(self.timers, (time.monotonic() + delay_s, next(self.seq), fn))

    def run(self):
        while True:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            if self.again:
                timeout = 0
                self.dirty |= self.again
                self.again.clear()
            for key, mask in self.sel.select(timeout):
                if key.data is None:
                    self.accept()
                    continue
                c = key.data
                try:
                    c.on_event(mask)
                except Exception:
                    log("connection %d: %s" % (c.index, traceback.format_exc()))
                    c.close()
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                try:
                    fn()
                except Exception:
                    log("timer: %s" % traceback.format_exc())
            while self.dirty:
                c = self.dirty.pop()
                if c.sock is None:
                    continue
                try:
                    c.pump()
                except Exception:
                    log("connection %d: %s" % (c.index, traceback.format_exc()))
                    c.close()

    def accept(self):
        for _ in range(64):
            try:
                s, peer = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log("accept: %s" % e)
                return
            try:
                c = Conn(self, s, peer, len(self.conns))
            except Exception:
                log("accept: %s" % traceback.format_exc())
                s.close()
                continue
            self.conns.append(c)

    def release(self):
        """/release: every held stream answered (those whose connection or stream went
        meanwhile skipped), and /hold answered at once from now on."""
        self.released = True
        held, self.held = self.held, []
        for c, sid in held:
            c.answer_if_open(sid)
        return len(held)

    def set_max_streams(self, n):
        """/max-streams: the new limit, in SETTINGS on every open connection (hand-written,
        as the first: python3-h2 enforces its own local settings, which stay open-ended);
        how many connections were told."""
        self.max_streams = n
        told = 0
        for c in self.conns:
            if c.sock is None or c.lingering:
                continue
            f = SettingsFrame(0)
            f.settings = {SettingsFrame.MAX_CONCURRENT_STREAMS: n}
            c.outbuf += c.h2.data_to_send()
            c.outbuf += f.serialize()
            c.settings_unacked += 1
            c.settings_acked = False
            if not c.handshaking:  # else it goes after the handshake, with the rest
                c.flush()
            told += 1
        return told

    def dump(self, *_):
        """SIGUSR1: every open connection's state to stderr (for a stuck test)."""
        for c in self.conns:
            if c.sock is None:
                continue
            streams = []
            for sid, s in c.streams.items():
                try:
                    window = c.h2.local_flow_control_window(sid)
                except Exception:
                    window = None
                streams.append("%d %s ended=%s sending=%s left=%d window=%s" % (
                    sid, s.path, s.ended, sid in c.sending,
                    (len(s.body) - s.offset) if s.body is not None else s.remaining, window))
            log("dump connection %d peer %s outbuf=%d mask=%d lingering=%s goaway=%s streams: %s" % (
                c.index, c.peer, len(c.outbuf), c.mask, c.lingering, c.goaway_last, "; ".join(streams)))

    def stats_json(self):
        per = []
        data_conns = [c for c in self.conns if not c.control()]
        for c in self.conns:
            per.append({"connection": c.index, "peer": c.peer, "open": c.sock is not None, "control": c.control(),
                        "alpn": c.alpn, "streams": c.streams_total, "active": c.active,
                        "max_concurrent": c.max_active, "refused": c.refused, "violations": c.violations, "early_refused": c.early_refused,
                        "resets_received": c.resets, "goaway_last_stream": c.goaway_last,
                        "peer_goaway": c.peer_goaway, "paths": c.paths})
        j = {"node": self.args.name, "max_streams_advertised": self.max_streams,
             "connections_accepted": len(data_conns),
             "connections_open": sum(1 for c in data_conns if c.sock is not None),
             "control_connections": len(self.conns) - len(data_conns),
             "held": sum(1 for c, sid in self.held if c.sock is not None and sid in c.streams),
             "max_concurrent_streams": max([c.max_active for c in data_conns] or [0])}
        j.update(self.stats)
        j["per_connection"] = per
        return j


class Conn:
    def __init__(self, node, sock, peer, index):
        self.node = node
        self.index = index
        self.peer = "%s:%d" % peer
        self.alpn = None
        self.raw = sock
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.handshaking = False
        if node.ctx is not None:
            sock = node.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            self.handshaking = True
        self.sock = sock
        self.outbuf = bytearray()
        self.streams = {}
        self.sending = {}        # sid -> Stream with body left to send (insertion ordered)
        self.ignored = set()     # streams above our GOAWAY's last id
        self.active = 0
        self.max_active = 0
        self.streams_total = 0   # request header blocks (any path)
        self.stats_requests = 0
        self.data = False        # has carried a request that is not a control one
        self.refused = 0
        self.violations = 0
        self.early_refused = 0
        self.settings_acked = False
        self.settings_unacked = 1  # our SETTINGS frames the peer has not ACKed yet
        self.resets = 0
        self.paths = {}
        self.goaway_last = None
        self.last_sid = 0        # the highest stream id received
        self.peer_goaway = None
        self.lingering = False
        self.linger_deadline = 0.0
        self.mask = 0
        a = node.args
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                        validate_inbound_headers=False, normalize_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(cfg)
        # python3-h2 would enforce MAX_CONCURRENT_STREAMS as a connection error, and from
        # the first byte; the node advertises --max-streams but enforces it itself, per
        # stream, so a breach is counted, not fatal.
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: a.window,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 2**20,
        })
        self.h2.initiate_connection()
        self.h2.data_to_send()
        f = SettingsFrame(0)
        f.settings = {SettingsFrame.MAX_CONCURRENT_STREAMS: node.max_streams,
                      SettingsFrame.INITIAL_WINDOW_SIZE: a.window,
                      SettingsFrame.MAX_HEADER_LIST_SIZE: 2**20}
        self.outbuf += f.serialize()
        if a.window > 65535:
            self.h2.increment_flow_control_window(a.window - 65535)
            self.outbuf += self.h2.data_to_send()
        self.update_mask()
        if not self.handshaking:
            self.flush()

    def control(self):
        return self.streams_total > 0 and self.streams_total == self.stats_requests

    def update_mask(self):
        want = selectors.EVENT_READ
        if self.outbuf or self.handshaking_wants_write():
            want |= selectors.EVENT_WRITE
        if want != self.mask:
            if self.mask == 0:
                self.node.sel.register(self.sock, want, self)
            else:
                self.node.sel.modify(self.sock, want, self)
            self.mask = want

    def handshaking_wants_write(self):
        return self.handshaking and getattr(self, "_hs_write", False)

    def close(self):
        if self.sock is None:
            return
        try:
            self.node.sel.unregister(self.sock)
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.sock = None
        for s in self.streams.values():
            if s.active:
                s.active = False
                self.active -= 1
        self.streams.clear()
        self.sending.clear()

    # ---- socket events ----

    def on_event(self, mask):
        if self.handshaking:
            self.handshake()
            return
        if self.lingering:
            self.drain_linger()
            return
        if mask & selectors.EVENT_READ:
            self.read()
        if self.sock is not None and mask & selectors.EVENT_WRITE:
            self.flush()
        if self.sock is not None:
            self.node.dirty.add(self)

    def handshake(self):
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._hs_write = False
            self.update_mask()
            return
        except ssl.SSLWantWriteError:
            self._hs_write = True
            self.update_mask()
            return
        except (ssl.SSLError, OSError) as e:
            log("connection %d: TLS handshake: %s" % (self.index, e))
            self.close()
            return
        self.handshaking = False
        self.alpn = self.sock.selected_alpn_protocol()
        self.update_mask()
        self.flush()

    def read(self):
        while self.sock is not None:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:
                return
            except (ConnectionError, OSError, ssl.SSLError):
                self.close()
                return
            if not data:
                self.close()
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                log("connection %d: protocol error: %s" % (self.index, e))
                self.outbuf += self.h2.data_to_send()
                self.flush()
                self.close()
                return
            for ev in events:
                if self.sock is None:
                    return
                self.on_h2_event(ev)
            if len(data) < 65536 and self.node.ctx is None:
                return

    def flush(self):
        if self.sock is None:
            return
        self.outbuf += self.h2.data_to_send()
        while self.outbuf:
            try:
                n = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                break
            except (ConnectionError, OSError, ssl.SSLError):
                self.close()
                return
            del self.outbuf[:n]
        self.update_mask()

    # ---- HTTP/2 ----

    def on_h2_event(self, ev):
        node = self.node
        if isinstance(ev, h2.events.RequestReceived):
            self.on_request(ev.stream_id, ev.headers)
            if ev.stream_ended is not None:
                self.on_end(ev.stream_id)
        elif isinstance(ev, h2.events.DataReceived):
            try:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            except h2.exceptions.StreamClosedError:
                pass
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.body_len += len(ev.data)
                s.sha.update(ev.data)
            if ev.stream_ended is not None:
                self.on_end(ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.trailers = header_map(ev.headers)
            if ev.stream_ended is not None:
                self.on_end(ev.stream_id)
        elif isinstance(ev, h2.events.SettingsAcknowledged):
            # ACKs come in the order of our SETTINGS: the limit in force is the peer's
            # once every one is ACKed.
            self.settings_unacked = max(0, self.settings_unacked - 1)
            self.settings_acked = self.settings_unacked == 0
        elif isinstance(ev, h2.events.StreamReset):
            if ev.remote_reset:
                self.resets += 1
                node.stats["resets_received"] += 1
            self.finish(ev.stream_id)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.peer_goaway = int(ev.error_code)
            if ev.error_code != 0:
                self.flush()
                self.close()
                return
            # python3-h2 takes a GOAWAY as the connection's end and would refuse to send
            # anything more; the streams the peer already opened still get their answers.
            self.h2.state_machine.state = ConnectionState.SERVER_OPEN
            self.maybe_done()

    def on_request(self, sid, block):
        node = self.node
        a = node.args
        if self.goaway_last is not None and sid > self.goaway_last:
            self.ignored.add(sid)
            self.refused += 1
            node.stats["refused_streams"] += 1
            return
        s = Stream(sid, block)
        self.streams[sid] = s
        self.streams_total += 1
        path_only = s.path.split("?", 1)[0]
        self.last_sid = max(self.last_sid, sid)
        control = path_only in CONTROL_PATHS
        if control:
            self.stats_requests += 1
        else:
            node.stats["total_streams"] += 1
            if not self.data and path_only != "/health":
                # A data connection from its first request: the peak of those open at once.
                self.data = True
                open_now = sum(1 for c in node.conns if c.data and c.sock is not None)
                node.stats["max_connections_open"] = max(node.stats["max_connections_open"], open_now)
        if path_only in self.paths or len(self.paths) < 32:
            self.paths[path_only] = self.paths.get(path_only, 0) + 1
        if a.log:
            sys.stdout.write("REQ %d %d %s %s\n" % (self.index, sid, s.method, s.path))
            sys.stdout.flush()
        if self.active >= node.max_streams and not control:
            # Before the peer ACKed our SETTINGS it may not know the limit (RFC 9113
            # 6.5.3): refused all the same (as nghttp2 does), but counted apart.
            if self.settings_acked:
                self.violations += 1
                node.stats["max_streams_violations"] += 1
            else:
                self.early_refused += 1
                node.stats["max_streams_early"] += 1
            s.active = False
            self.reset(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        self.active += 1
        s.active = True
        self.max_active = max(self.max_active, self.active)
        if a.goaway_after and self.streams_total == a.goaway_after and self.goaway_last is None:
            self.send_goaway(sid)
        if path_only == "/rst" or any(s.path.startswith(p) for p in a.rst_path):
            self.reset(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif path_only == "/rst-internal":
            self.reset(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path_only == "/goaway" and self.goaway_last is None:
            self.send_goaway(sid)

    def send_goaway(self, last):
        # Written by hand: python3-h2's close_connection() ends the connection's state
        # machine, and the streams up to `last` still have to be answered.
        self.goaway_last = last
        self.node.stats["goaways_sent"] += 1
        self.outbuf += self.h2.data_to_send()
        self.outbuf += GoAwayFrame(0, last_stream_id=last, error_code=0).serialize()

    def reset(self, sid, code):
        try:
            self.h2.reset_stream(sid, code)
        except h2.exceptions.StreamClosedError:
            pass
        self.finish(sid)

    def finish(self, sid):
        """The stream is done (answered or reset): no longer counted open."""
        self.sending.pop(sid, None)
        s = self.streams.pop(sid, None)
        self.ignored.discard(sid)
        if s is not None and s.active:
            s.active = False
            self.active -= 1
        self.maybe_done()

    def on_end(self, sid):
        s = self.streams.get(sid)
        if s is None:
            return
        s.ended = True
        path, _, query = s.path.partition("?")
        q = parse_qs(query)
        if path in ("/stall",):
            return
        if path == "/slow":
            ms = int(q.get("ms", ["0"])[0])
            self.node.at(ms / 1000.0, lambda: self.answer_if_open(sid))
            return
        if path == "/big":
            self.answer_big(s, int(q.get("bytes", ["0"])[0]), q.get("trailers", ["0"])[0] == "1",
                            q.get("nolength", ["0"])[0] == "1")
            return
        if path == "/trailers":
            self.answer(s, 200, trailers=[("x-checksum", s.sha.hexdigest()), ("x-trailer", "yes")])
            return
        if path == "/stats":
            body = (json.dumps(self.node.stats_json()) + "\n").encode()
            self.respond(s, 200, body)
            return
        if path == "/hold" and not self.node.released:
            self.node.held.append((self, sid))
            return
        if path == "/goaway-all":
            n = 0
            for c in self.node.conns:
                if c is not self and c.sock is not None and c.data and c.goaway_last is None and c.last_sid > 0:
                    c.send_goaway(c.last_sid)
                    c.flush()
                    c.maybe_done()
                    n += 1
            self.respond(s, 200, (json.dumps({"goaways": n}) + "\n").encode())
            return
        if path == "/max-streams":
            n = self.node.set_max_streams(int(q.get("n", ["0"])[0]))
            self.respond(s, 200, (json.dumps({"max_streams": self.node.max_streams, "connections": n}) + "\n").encode())
            return
        if path == "/release":
            n = self.node.release()
            self.respond(s, 200, (json.dumps({"released": n}) + "\n").encode())
            return
        status = 200
        if path.startswith("/status/"):
            try:
                status = int(path[len("/status/"):])
            except ValueError:
                status = 400
        self.answer(s, status)

    def answer_if_open(self, sid):
        """The JSON answer to a stream still open (a timer's, or a release's)."""
        if self.sock is None:
            return
        s = self.streams.get(sid)
        if s is not None:
            self.answer(s, 200)
            self.node.dirty.add(self)

    def info(self, s):
        return {"node": self.node.args.name, "method": s.method, "path": s.path,
                "headers": header_map(s.block),
                "header_list": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in s.block],
                "violations": violations_of(s.block), "trailers": s.trailers,
                "body_len": s.body_len, "body_sha256": s.sha.hexdigest(),
                "stream_id": s.sid, "connection": self.index}

    def answer(self, s, status, trailers=None):
        body = (json.dumps(self.info(s)) + "\n").encode()
        self.respond(s, status, body, trailers)

    def base_headers(self, s, status):
        return [(":status", str(status)), ("x-node", self.node.args.name),
                ("x-connection", str(self.index)), ("x-stream-id", str(s.sid))]

    def respond(self, s, status, body, trailers=None):
        h = self.base_headers(s, status) + [("content-type", "application/json")]
        if trailers is None:
            h.append(("content-length", str(len(body))))
        try:
            self.h2.send_headers(s.sid, h)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
            log("connection %d stream %d: %s" % (self.index, s.sid, e))
            self.finish(s.sid)
            return
        s.body = body
        s.offset = 0
        s.end_trailers = trailers
        self.sending[s.sid] = s

    def answer_big(self, s, n, with_trailers, no_length):
        h = self.base_headers(s, 200) + [("content-type", "application/octet-stream")]
        if not no_length:
            h.append(("content-length", str(n)))
        try:
            self.h2.send_headers(s.sid, h)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
            log("connection %d stream %d: %s" % (self.index, s.sid, e))
            self.finish(s.sid)
            return
        s.remaining = n
        s.offset = 0
        if with_trailers:
            s.out_sha = hashlib.sha256()
            s.end_trailers = []
        self.sending[s.sid] = s

    def pump(self):
        """Sends what the windows and the output bound allow, then flushes. At most
        PUMP_BUDGET bytes per call: a connection with more to send (its windows open, the
        socket taking it) is pumped again after the next select, so no connection starves
        the others."""
        if self.sock is None or self.handshaking or self.lingering:
            return
        budget = PUMP_BUDGET
        while self.sending and budget > 0:
            generated = 0
            progress = True
            while progress and self.sending and len(self.outbuf) < OUT_HIGH:
                progress = False
                for sid, s in list(self.sending.items()):
                    try:
                        if self.send_some(s):
                            progress = True
                    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
                        log("connection %d stream %d: %s" % (self.index, sid, e))
                        self.finish(sid)
                        progress = True
                data = self.h2.data_to_send()
                self.outbuf += data
                generated += len(data)
            budget -= generated
            self.flush()
            if self.sock is None:
                return
            if self.outbuf or generated == 0:
                break
        self.flush()
        if self.sock is None:
            return
        # What wakes this connection next: a write event while bytes are queued (flush
        # registers it), a WINDOW_UPDATE when the windows are closed, or else the next
        # turn of the loop.
        if self.sending and not self.outbuf and self.can_send():
            self.node.again.add(self)
        self.maybe_done()

    def can_send(self):
        for sid, s in self.sending.items():
            left = (len(s.body) - s.offset) if s.body is not None else s.remaining
            if left == 0 or self.h2.local_flow_control_window(sid) > 0:
                return True
        return False

    def send_some(self, s):
        """One frame's worth for stream s; True when something happened."""
        sid = s.sid
        if s.body is not None:
            left = len(s.body) - s.offset
        else:
            left = s.remaining
        if left > 0:
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size, MAX_CHUNK)
            if window <= 0:
                return False
            n = min(window, left)
            if s.body is not None:
                chunk = s.body[s.offset:s.offset + n]
                s.offset += n
            else:
                start = s.offset % 26
                chunk = PATTERN[start:start + n]
                s.offset += n
                s.remaining -= n
                if s.out_sha is not None:
                    s.out_sha.update(chunk)
            last = n == left and s.end_trailers is None
            self.h2.send_data(sid, chunk, end_stream=last)
            if last:
                self.done(s)
            return True
        # Nothing left (or an empty body): end the stream.
        if s.end_trailers is not None:
            t = list(s.end_trailers)
            if s.out_sha is not None:
                t.append(("x-checksum", s.out_sha.hexdigest()))
            self.h2.send_headers(sid, t, end_stream=True)
        else:
            self.h2.end_stream(sid)
        self.done(s)
        return True

    def done(self, s):
        self.node.stats["responses"] += 1
        self.finish(s.sid)

    def maybe_done(self):
        """After our GOAWAY (or the peer's): close once every kept stream is answered."""
        if self.sock is None or self.lingering:
            return
        if self.goaway_last is None and self.peer_goaway is None:
            return
        if any(sid <= (self.goaway_last if self.goaway_last is not None else 2**31) for sid in self.streams):
            return
        self.flush()
        if self.outbuf:
            return  # again once the socket drained (pump runs after each write event)
        self.start_linger()

    def start_linger(self):
        # FIN, then read and drop what the peer still sends: close() with unread data
        # would send a TCP RST, and a RST can destroy our last answer in the peer's
        # receive queue.
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.lingering = True
        self.node.sel.modify(self.sock, selectors.EVENT_READ, self)
        self.mask = selectors.EVENT_READ
        self.node.at(LINGER_S, self.close)

    def drain_linger(self):
        while True:
            try:
                data = socket.socket.recv(self.sock, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if not data:
                self.close()
                return


def main():
    p = argparse.ArgumentParser(description="HTTP/2 test node (see the header comment)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--max-streams", type=int, default=128)
    p.add_argument("--goaway-after", type=int, default=0)
    p.add_argument("--rst-path", action="append", default=[])
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--window", type=int, default=65535)
    p.add_argument("--log", action="store_true")
    args = p.parse_args()
    node = Node(args)
    signal.signal(signal.SIGUSR1, node.dump)
    if args.port == 0:
        sys.stdout.write("READY %d\n" % node.lsock.getsockname()[1])
    else:
        sys.stdout.write("READY\n")
    sys.stdout.flush()
    try:
        node.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
