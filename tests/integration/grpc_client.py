#!/usr/bin/python3
"""A gRPC client for ringproxy's gRPC tests, on Debian's python3-grpcio (1.51,
/usr/bin/python3): calls tests/integration/grpc_node.py's methods (service ring.Test, raw
bytes, no protoc) directly or through the proxy, and says what came back. Written for the
gRPC tests of the h2 backend work (tests/integration/h2_upstream_test.cc).

usage: grpc_client.py --target 127.0.0.1:PORT --method Unary|Bidi|Slow|Hang|Fail
                      [--metadata KEY=VALUE]... [--count N] [--timeout S]
                      [--message TEXT] [--burst] [--progress] [--authority HOST]
                      [--tls-ca FILE [--server-name NAME]]

  --target          where to connect (the proxy's listener, or a node)
  --method          Unary, Slow, Fail: --count calls, one after the other, each sending
                    TEXT (for Slow, TEXT is the milliseconds to wait; for Fail,
                    CODE[:DETAILS]). Bidi: one call sending --count messages TEXT-0,
                    TEXT-1, ...; by default each after the previous reply arrived
                    (ping-pong: a proxy that buffers a stream instead of passing it on
                    stalls it), all at once with --burst. Hang: one call sending TEXT,
                    reading replies until the call ends
  --metadata K=V    request metadata, repeatable (keys lowercase, as gRPC wants)
  --count N         default 1
  --timeout S       each call's deadline in seconds (float; default 10)
  --message TEXT    default "hello"
  --progress        also print {"progress": REPLY} as each streamed reply arrives (Bidi,
                    Hang), flushed at once, so a test can act mid-stream (kill the node)
  --authority HOST  the :authority sent (grpc.default_authority)
  --tls-ca FILE     TLS, trusting FILE (PEM); --server-name overrides the name checked
                    (grpc.ssl_target_name_override)

Prints one JSON line per call, in order:
  {"method": M, "code": "OK" or the grpc.StatusCode name (e.g. "UNAVAILABLE",
   "DEADLINE_EXCEEDED"), "details": the status message or null, "replies": [each reply
   decoded as UTF-8], "initial": {initial metadata}, "trailing": {trailing metadata},
   "elapsed_ms": N}
Metadata maps keep the last value of a repeated key; -bin values are shown as hex.
Exits 0 whenever it printed its lines, whatever the calls' statuses (the JSON says);
2 on bad usage. The environment's http_proxy is ignored (grpc.enable_http_proxy = 0).
"""
import argparse
import json
import queue
import sys
import time

import grpc


def md_dict(md):
    out = {}
    for k, v in md or ():
        out[k] = v.hex() if isinstance(v, bytes) else v
    return out


def text(b):
    return b.decode("utf-8", "replace")


def emit(result):
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def unary_call(channel, method, message, metadata, timeout):
    stub = channel.unary_unary("/ring.Test/" + method)
    r = {"method": method, "code": "OK", "details": None, "replies": [], "initial": {}, "trailing": {}}
    t0 = time.monotonic()
    try:
        reply, call = stub.with_call(message.encode(), timeout=timeout, metadata=metadata)
        r["replies"].append(text(reply))
        r["initial"] = md_dict(call.initial_metadata())
        r["trailing"] = md_dict(call.trailing_metadata())
        r["details"] = call.details() or None
    except grpc.RpcError as e:
        r["code"] = e.code().name
        r["details"] = e.details()
        r["initial"] = md_dict(e.initial_metadata())
        r["trailing"] = md_dict(e.trailing_metadata())
    r["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
    return r


def streaming_call(channel, method, messages, metadata, timeout, pingpong, progress):
    stub = channel.stream_stream("/ring.Test/" + method)
    r = {"method": method, "code": "OK", "details": None, "replies": [], "initial": {}, "trailing": {}}
    q = queue.Queue()
    DONE = object()

    def requests():
        while True:
            m = q.get()
            if m is DONE:
                return
            yield m

    if pingpong:
        if messages:
            q.put(messages[0])
        else:
            q.put(DONE)
        next_index = 1
    else:
        for m in messages:
            q.put(m)
        q.put(DONE)
    t0 = time.monotonic()
    call = stub(requests(), timeout=timeout, metadata=metadata)
    try:
        for reply in call:
            r["replies"].append(text(reply))
            if progress:
                emit({"progress": text(reply)})
            if pingpong:
                if next_index < len(messages):
                    q.put(messages[next_index])
                    next_index += 1
                elif next_index == len(messages):
                    q.put(DONE)
                    next_index += 1
        r["initial"] = md_dict(call.initial_metadata())
        r["trailing"] = md_dict(call.trailing_metadata())
        r["details"] = call.details() or None
    except grpc.RpcError as e:
        r["code"] = e.code().name
        r["details"] = e.details()
        r["initial"] = md_dict(e.initial_metadata())
        r["trailing"] = md_dict(e.trailing_metadata())
    finally:
        q.put(DONE)  # the request generator ends (it is gRPC's thread that reads it)
    r["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
    return r


def main():
    p = argparse.ArgumentParser(description="gRPC test client (see the header comment)")
    p.add_argument("--target", required=True)
    p.add_argument("--method", required=True, choices=["Unary", "Bidi", "Slow", "Hang", "Fail"])
    p.add_argument("--metadata", action="append", default=[])
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--message", default="hello")
    p.add_argument("--burst", action="store_true")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--authority")
    p.add_argument("--tls-ca")
    p.add_argument("--server-name")
    args = p.parse_args()

    metadata = []
    for kv in args.metadata:
        k, sep, v = kv.partition("=")
        if not sep:
            p.error("--metadata wants KEY=VALUE, not %r" % kv)
        metadata.append((k.strip().lower(), v))
    options = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        if args.server_name:
            options.append(("grpc.ssl_target_name_override", args.server_name))
        channel = grpc.secure_channel(args.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(args.target, options=options)

    with channel:
        if args.method in ("Unary", "Slow", "Fail"):
            for _ in range(args.count):
                emit(unary_call(channel, args.method, args.message, metadata, args.timeout))
        elif args.method == "Bidi":
            messages = [("%s-%d" % (args.message, i)).encode() for i in range(args.count)]
            emit(streaming_call(channel, "Bidi", messages, metadata, args.timeout, not args.burst, args.progress))
        else:
            emit(streaming_call(channel, "Hang", [args.message.encode()], metadata, args.timeout, False,
                                args.progress))
    return 0


if __name__ == "__main__":
    sys.exit(main())
