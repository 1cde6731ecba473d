#!/usr/bin/python3
# An HTTP/2 client for the integration tests (Debian's python3-h2): several requests as
# concurrent streams of one connection, by prior knowledge (h2c) or over TLS with ALPN
# h2. Prints one JSON line per request, in argument order:
#   {"path": P, "status": S, "headers": {...}, "body_len": N, "body": "<first 4 KiB>",
#    "reset": ERROR_CODE or null}
# then {"goaway": CODE or null, "closed": true|false}.
#
# usage: h2_client.py [--tls] [--header NAME:VALUE]... [--method M] [--body-bytes N]
#                     [--no-length] [--chunk BYTES] PORT PATH...
# --body-bytes N sends N bytes ('a'..'z' repeating) as each request's body, in DATA
# frames of --chunk bytes; with a content-length unless --no-length. Bounded: the
# whole run stops after 30 s.
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events


def main():
    args = sys.argv[1:]
    tls = False
    headers = []
    method = "GET"
    body_bytes = 0
    no_length = False
    chunk = 16384
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--tls":
            tls = True
        elif opt == "--header":
            name, _, value = args.pop(0).partition(":")
            headers.append((name.strip().lower(), value.strip()))
        elif opt == "--method":
            method = args.pop(0)
        elif opt == "--body-bytes":
            body_bytes = int(args.pop(0))
        elif opt == "--no-length":
            no_length = True
        elif opt == "--chunk":
            chunk = int(args.pop(0))
        else:
            sys.exit("unknown option " + opt)
    port = int(args[0])
    paths = args[1:]

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        if sock.selected_alpn_protocol() != "h2":
            sys.exit("ALPN chose %r" % sock.selected_alpn_protocol())
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    # A large window: the test reads everything the proxy sends.
    conn.increment_flow_control_window(16 * 1024 * 1024)
    sock.sendall(conn.data_to_send())

    results = {}
    order = []
    pending_body = {}
    for path in paths:
        sid = conn.get_next_available_stream_id()
        h = [(":method", method), (":path", path), (":scheme", "https" if tls else "http"),
             (":authority", "localhost:%d" % port)] + headers
        if body_bytes and not no_length:
            h.append(("content-length", str(body_bytes)))
        conn.send_headers(sid, h, end_stream=body_bytes == 0)
        results[sid] = {"path": path, "status": None, "headers": {}, "body_len": 0, "body": "", "reset": None}
        order.append(sid)
        if body_bytes:
            pending_body[sid] = 0
    sock.sendall(conn.data_to_send())

    # Byte i of a body is 'a' + i % 26 (as the demo backend's /bytes/N).
    pattern = bytes(ord("a") + i % 26 for i in range(chunk + 16384 + 26))
    done = set()
    goaway = None
    closed = False
    deadline = time.time() + 30
    while len(done) < len(order) and time.time() < deadline:
        # Body bytes as far as the windows allow.
        for sid, sent in list(pending_body.items()):
            while sent < body_bytes:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                n = min(chunk, window, body_bytes - sent)
                piece = pattern[sent % 26:sent % 26 + n]
                conn.send_data(sid, piece)
                sent += n
            pending_body[sid] = sent
            if sent >= body_bytes:
                conn.end_stream(sid)
                del pending_body[sid]
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            closed = True
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                r = results[ev.stream_id]
                for k, v in ev.headers:
                    if k == ":status":
                        r["status"] = int(v)
                    else:
                        r["headers"][k] = v
            elif isinstance(ev, h2.events.DataReceived):
                r = results[ev.stream_id]
                r["body_len"] += len(ev.data)
                if len(r["body"]) < 4096:
                    r["body"] += ev.data[:4096 - len(r["body"])].decode("latin-1")
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                results[ev.stream_id]["trailers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                done.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                if ev.stream_id in results:
                    results[ev.stream_id]["reset"] = int(ev.error_code)
                    done.add(ev.stream_id)
                    pending_body.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                goaway = int(ev.error_code)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    for sid in order:
        print(json.dumps(results[sid]))
    print(json.dumps({"goaway": goaway, "closed": closed}))
    sys.stdout.flush()
    sock.close()


if __name__ == "__main__":
    main()
