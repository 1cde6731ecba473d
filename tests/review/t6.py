from h import *
import json, sys
variant=sys.argv[1]
def slowclose(c,d):
    time.sleep(1.5)  # then close without answering: 'closed before responding' (retryable)
bp,log=raw_backend(slowclose)
c=demo('c'); a=demo('a')
aport=freeport()
port,p=proxy([('b',bp),('c',c)], extra='', proxyextra='retries = 1\nlog_level = "debug"')
# find a key owned by b: try paths via ring hash using admin? no admin: use the retry log instead
cfg=open('/tmp/rv-review-cfg.toml').read()
def key_for_b():
    for i in range(200):
        s=conn(port); s.sendall(b'GET /k%d HTTP/1.1\r\nHost: h\r\n\r\n'%i)
        t0=time.time(); r=s.recv(100)
        if time.time()-t0>1.2: return i
    return None
k=key_for_b(); print('key owned by b: /k%d'%k)
s=conn(port); s.sendall(b'GET /k%d HTTP/1.1\r\nHost: h\r\n\r\n'%k)
time.sleep(0.5)
if variant=='shrink':
    new=cfg.split('[[backend]]')[0]+'[[backend]]\nname = "c"\naddress = "127.0.0.1:%d"\n'%c
else:
    new=cfg.split('[[backend]]')[0]+'[[backend]]\nname = "a"\naddress = "127.0.0.1:%d"\n[[backend]]\nname = "b"\naddress = "127.0.0.1:%d"\n[[backend]]\nname = "c"\naddress = "127.0.0.1:%d"\n'%(a,bp,c)
open('/tmp/rv-review-cfg.toml','w').write(new); p.send_signal(signal.SIGHUP)
print('retried answer:', recvall(s,3)[:120])
time.sleep(0.3)
print('proxy alive:', p.poll() is None)
if variant=='grow':
    # now a request for the same key goes to b per the new ring: which backend answers?
    s=conn(port); s.sendall(b'GET /k%d HTTP/1.1\r\nHost: h\r\n\r\n'%k); t0=time.time()
    n0=len(log); r=s.recv(200); print('after reload, key owned by b answered by:', r[:90], 'ttfb', round(time.time()-t0,2), 'b saw it:', len(log)>n0)
