from h import *
a=demo('a')
port,p=proxy([('a',a)])
# 1: GET then half-close, fresh connection (no pool)
s=conn(port); s.sendall(b'GET /x HTTP/1.1\r\nHost: h\r\n\r\n'); s.shutdown(socket.SHUT_WR)
print('T1 halfclose GET:', recvall(s,3)[:200])
# 1b: POST with body then half-close
s=conn(port); s.sendall(b'POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello'); s.shutdown(socket.SHUT_WR)
print('T1b halfclose POST:', recvall(s,3)[:300])
# 2: Connection: content-length smuggling
s=conn(port)
body=b'GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'
s.sendall(b'POST /echo HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: %d\r\n\r\n'%len(body)+body)
print('T2 conn:content-length:', recvall(s,2)[:600])
s=conn(port)
s.sendall(b'GET /headers HTTP/1.1\r\nHost: h\r\nConnection: host, x-forwarded-for\r\n\r\n')
print('T2b:', recvall(s,1)[:600])
# 3: upgrade declined then second request
s=conn(port)
s.sendall(b'GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n')
time.sleep(0.5)
s.sendall(b'GET /second HTTP/1.1\r\nHost: h\r\n\r\n')
print('T3 upgrade declined:', recvall(s,2)[:800])
