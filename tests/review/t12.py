from h import *
a=demo('a')
port,p=proxy([('a',a)])
s=conn(port)
s.sendall(b'GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
time.sleep(0.2); print(s.recv(4096)[:40])
s.sendall(b'x'*200000); s.shutdown(socket.SHUT_WR)
out=recvall(s,2); print('echoed back', len(out.replace(b'<EOF>',b'').replace(b'<RST>',b'')), 'of 200000', out[-6:])
