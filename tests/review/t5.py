from h import *
import sys
st=sys.argv[1]
def hd(c,d):
    reqs=1
    c.sendall(b'HTTP/1.1 '+st.encode()+b' X\r\nETag: "x"\r\nContent-Length: 1234\r\n\r\n')
    try:
        d=c.recv(65536); print('backend: next request on same conn:', d[:40])
        if d: c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond')
        time.sleep(3)
    except Exception as e: print('backend', e)
bp,log=raw_backend(hd)
port,p=proxy([('a',bp)], proxyextra='idle_timeout_ms = 2000')
s=conn(port)
t0=time.time()
s.sendall(b'GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: "x"\r\n\r\n')
print(st, 'first:', recvall(s,1))
s.sendall(b'GET /2 HTTP/1.1\r\nHost: h\r\n\r\n')
print(st, 'second:', recvall(s,3), round(time.time()-t0,2))
