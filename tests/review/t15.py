from h import *
def hd(c,d):
    c.sendall(b'HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok'); time.sleep(2)
bp,log=raw_backend(hd)
port,p=proxy([('a',bp)])
s=conn(port); s.sendall(b'GET / HTTP/1.1\r\nHost: h\r\n\r\n'); print('response-side:', recvall(s,1))
a=demo('a'); port2,p2=proxy([('a',a)],path='/tmp/rv-review-cfg2.toml',log='/tmp/rv-review-p2.log')
s=conn(port2)
s.sendall(b'POST /sink HTTP/1.1\r\nHost: h\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nGET /smuggled-te HTTP/1.1\r\nX: \r\n\r\n0\r\n\r\n')
print('request-side TE:', recvall(s,1))
