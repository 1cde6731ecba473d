#!/usr/bin/python3
# HTTP/1.1 GET with a tiny receive buffer, read slowly: the proxy's writes to it queue.
import socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
rate = int(sys.argv[3]) if len(sys.argv) > 3 else 200000  # bytes/s
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.sendall(("GET %s HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n" % path).encode())
n = 0; t0 = time.time(); s.settimeout(20)
while True:
    try: d = s.recv(4096)
    except socket.timeout: print("timeout"); break
    if not d: break
    n += len(d)
    time.sleep(len(d) / rate)
    if time.time() - t0 > 60: break
print("read", n, "bytes in %.1fs" % (time.time() - t0))
