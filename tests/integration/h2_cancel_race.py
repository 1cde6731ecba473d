#!/usr/bin/python3
"""HEADERS + RST_STREAM in one write to the proxy (h2c prior knowledge).
mode crosstalk: then open stream 3 on the same connection and print what it gets.
mode close: then close the connection at once (the proxy frees the exchange)."""
import socket, sys, time, json
import h2.config, h2.connection, h2.events
port = int(sys.argv[1]); mode = sys.argv[2]
p1 = sys.argv[3] if len(sys.argv) > 3 else "/slow?ms=400"
p3 = sys.argv[4] if len(sys.argv) > 4 else "/slow?ms=1500"
s = socket.create_connection(("127.0.0.1", port), timeout=10)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
c.initiate_connection(); s.sendall(c.data_to_send())
# wait for the proxy's SETTINGS
s.settimeout(2)
try:
    c.receive_data(s.recv(65535)); s.sendall(c.data_to_send())
except socket.timeout:
    pass
def hdrs(p): return [(":method","GET"),(":scheme","http"),(":authority","x.test"),(":path",p)]
c.send_headers(1, hdrs(p1), end_stream=True)
c.reset_stream(1)
s.sendall(c.data_to_send())
if mode == "close":
    s.close(); print("closed"); sys.exit(0)
time.sleep(0.05)
c.send_headers(3, hdrs(p3), end_stream=True); s.sendall(c.data_to_send())
s.settimeout(10)
got = {"headers": None, "body": b""}
done = False
t0 = time.time()
while not done and time.time() - t0 < 10:
    try:
        d = s.recv(65535)
    except socket.timeout:
        break
    if not d: break
    for ev in c.receive_data(d):
        if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 3: got["headers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == 3:
            got["body"] += ev.data; c.acknowledge_received_data(ev.flow_controlled_length, 3)
        elif isinstance(ev, (h2.events.StreamEnded,)) and ev.stream_id == 3: done = True
        elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == 3: print("stream 3 reset", ev.error_code); done = True
    s.sendall(c.data_to_send())
print("stream 3 asked", p3)
print("headers", got["headers"])
try:
    j = json.loads(got["body"]); print("body path:", j.get("path"), "node stream id:", j.get("stream_id"))
except Exception:
    print("body", got["body"][:200])
