from h import *
a=demo('a')
port,p=proxy([('a',a)], proxyextra='idle_timeout_ms = 1000\nupstream_timeout_ms = 5000')
# 4: active websocket tunnel killed by idle timer
s=conn(port)
s.sendall(b'GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
print('T4 head:', s.recv(4096)[:80])
got=0; t0=time.time()
try:
    for i in range(30):
        s.sendall(b'ping%02d'%i); d=s.recv(100)
        if not d: print('T4 closed after', round(time.time()-t0,2),'s of continuous traffic, msgs', i); break
        time.sleep(0.1)
    else: print('T4 tunnel survived 3s')
except Exception as e: print('T4 exc after', round(time.time()-t0,2), e)
# 5: slow but continuous upload longer than idle_timeout
s=conn(port)
s.sendall(b'POST /sink HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n\r\n')
t0=time.time()
try:
    for i in range(30):
        s.sendall(b'x'); time.sleep(0.1)
except Exception as e: print('T5 send exc', e)
print('T5 slow upload:', round(time.time()-t0,2), recvall(s,2)[:200])
# 6: Expect 100-continue
s=conn(port)
s.sendall(b'POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n')
time.sleep(0.3); print('T6 interim:', s.recv(4096))
s.sendall(b'hello'); print('T6 final:', recvall(s,1.5))
