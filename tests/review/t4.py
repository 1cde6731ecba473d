from h import *
import sys
which=sys.argv[1]
if which=='101':
    def hd(c,d):
        c.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\nRAWDATA'); time.sleep(1)
elif which=='304cl':
    def hd(c,d):
        c.sendall(b'HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n'); time.sleep(0.3)
        c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'); time.sleep(1)
elif which=='103':
    def hd(c,d):
        c.sendall(b'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'); time.sleep(1)
elif which=='closedelim':
    def hd(c,d):
        c.sendall(b'HTTP/1.1 200 OK\r\n\r\nclose-delimited body'); 
elif which=='http10':
    def hd(c,d):
        print('backend got:', d); time.sleep(0.3); print('backend more:', c.recv(1000))
        c.sendall(b'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok')
bp,log=raw_backend(hd)
port,p=proxy([('a',bp)], proxyextra='upstream_timeout_ms = 2000')
s=conn(port)
if which=='http10':
    s.sendall(b'POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')
else:
    s.sendall(b'GET / HTTP/1.1\r\nHost: h\r\n\r\n')
print(which, recvall(s,1.5))
if which=='304cl':
    s=conn(port); s.sendall(b'GET / HTTP/1.1\r\nHost: h\r\n\r\n'); print('second conn', recvall(s,1))
