#!/usr/bin/python3
"""A gRPC backend node for ringproxy's gRPC tests (SPEC "HTTP/2 and gRPC": gRPC end to
end through the proxy, trailers, deadlines, a node dying mid-stream), on Debian's
python3-grpcio (1.51, /usr/bin/python3). No protoc: generic handlers over raw bytes
(identity serializers), so any client sending bytes can call it, grpc_client.py first.
Written for the gRPC tests of the h2 backend work (tests/integration/h2_upstream_test.cc),
paired with tests/integration/grpc_client.py.

usage: grpc_node.py --port N --name NAME [--tls CERT KEY] [--max-streams N] [--log]

  --port N          listens on 127.0.0.1:N (h2c, gRPC's "insecure"); 0 takes an ephemeral
                    port
  --name NAME       the node's name, in every answer
  --tls CERT KEY    TLS (ALPN h2) instead of cleartext, for protocol = "h2" backends
  --max-streams N   SETTINGS_MAX_CONCURRENT_STREAMS (grpc.max_concurrent_streams);
                    default: gRPC's (unlimited)
  --log             one stdout line per call: "CALL <method> <peer>" (peer as gRPC says it,
                    e.g. ipv4:127.0.0.1:41234, so a test can count upstream connections)

Writes "READY\\n" to stdout once serving ("READY <port>\\n" when --port 0).

Methods (service ring.Test; requests and replies are raw bytes):
  /ring.Test/Unary  unary: replies NAME:<request>; trailing metadata x-node: NAME and
                    x-request-metadata: the call's metadata as JSON ({key: value}, binary
                    -bin keys left out), so a test sees what the proxy passed on
  /ring.Test/Bidi   bidirectional streaming: one reply NAME:<msg> per request message, as
                    each arrives, until the client ends its side; trailing metadata x-node
  /ring.Test/Slow   unary: the request is a number of milliseconds; waits that long (or
                    until the call is cancelled or its deadline passes), then replies
                    NAME:<request> (deadline tests)
  /ring.Test/Hang   bidirectional: replies NAME:<first request message> at once, then never
                    again and never ends (until the client cancels or the node is killed:
                    the "node dies mid-stream gives UNAVAILABLE" test)
  /ring.Test/Fail   unary: the request is CODE or CODE:DETAILS (a grpc.StatusCode name, e.g.
                    NOT_FOUND:gone); ends the call with that status, trailing metadata
                    x-node: NAME (status and trailers passing through the proxy)
Any other method: UNIMPLEMENTED (gRPC's own answer).

Calls run on a pool of 256 threads; each Hang or Slow call holds one until it ends.
"""
import argparse
import json
import sys
import threading
from concurrent import futures

import grpc

NAME = "node"
LOG = False


def log_call(method, context):
    if LOG:
        sys.stdout.write("CALL %s %s\n" % (method, context.peer()))
        sys.stdout.flush()


def metadata_json(context):
    m = {}
    for k, v in context.invocation_metadata():
        if k.endswith("-bin") or not isinstance(v, str):
            continue
        m[k] = v if k not in m else m[k] + ", " + v
    return json.dumps(m, sort_keys=True)


def ended_event(context):
    """An Event set when the call ends (cancelled, deadline, connection gone)."""
    ev = threading.Event()
    context.add_callback(ev.set)
    return ev


def unary(request, context):
    log_call("Unary", context)
    context.set_trailing_metadata((("x-node", NAME), ("x-request-metadata", metadata_json(context))))
    return NAME.encode() + b":" + request


def bidi(request_iterator, context):
    log_call("Bidi", context)
    context.set_trailing_metadata((("x-node", NAME),))
    for msg in request_iterator:
        yield NAME.encode() + b":" + msg


def slow(request, context):
    log_call("Slow", context)
    try:
        ms = int(request.decode() or "0")
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Slow wants a number of milliseconds")
    ended_event(context).wait(ms / 1000.0)
    context.set_trailing_metadata((("x-node", NAME),))
    return NAME.encode() + b":" + request


def hang(request_iterator, context):
    log_call("Hang", context)
    ended = ended_event(context)
    first = next(request_iterator, None)
    if first is None:
        return
    yield NAME.encode() + b":" + first
    ended.wait()


def fail(request, context):
    log_call("Fail", context)
    code_name, _, details = request.decode("utf-8", "replace").partition(":")
    code = getattr(grpc.StatusCode, code_name.strip().upper(), None)
    if code is None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no status code %r" % code_name)
    context.set_trailing_metadata((("x-node", NAME),))
    context.abort(code, details)


def main():
    global NAME, LOG
    p = argparse.ArgumentParser(description="gRPC test node (see the header comment)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--max-streams", type=int, default=0)
    p.add_argument("--log", action="store_true")
    args = p.parse_args()
    NAME = args.name
    LOG = args.log

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Hang": grpc.stream_stream_rpc_method_handler(hang),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    options = [("grpc.so_reuseport", 0)]
    if args.max_streams:
        options.append(("grpc.max_concurrent_streams", args.max_streams))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=256), options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("ring.Test", handlers),))
    address = "127.0.0.1:%d" % args.port
    if args.tls:
        with open(args.tls[0], "rb") as f:
            cert = f.read()
        with open(args.tls[1], "rb") as f:
            key = f.read()
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        sys.stderr.write("grpc_node: cannot listen on %s\n" % address)
        sys.exit(1)
    server.start()
    sys.stdout.write("READY\n" if args.port else "READY %d\n" % port)
    sys.stdout.flush()
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)


if __name__ == "__main__":
    main()
