from h import *
accepts=[0]
def ka(c,d):
    accepts[0]+=1
    buf=d
    while True:
        while b'\r\n\r\n' in buf:
            req,buf=buf.split(b'\r\n\r\n',1)
            c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
        x=c.recv(65536)
        if not x: return
        buf+=x
bp,log=raw_backend(ka)
other=demo('z')
port,p=proxy([('a',bp)])
def burst(n=5):
    for i in range(n):
        s=conn(port); s.sendall(b'GET /%d HTTP/1.1\r\nHost: h\r\n\r\n'%i); s.recv(100); s.close(); time.sleep(0.05)
burst(); print('before: 5 requests ->', accepts[0], 'backend connections')
cfg=open('/tmp/rv-review-cfg.toml').read()
open('/tmp/rv-review-cfg.toml','w').write(cfg.replace('name = "a"\naddress = "127.0.0.1:%d"'%bp, 'name = "z"\naddress = "127.0.0.1:%d"'%other)); p.send_signal(signal.SIGHUP); time.sleep(0.5)
open('/tmp/rv-review-cfg.toml','w').write(cfg); p.send_signal(signal.SIGHUP); time.sleep(0.5)
accepts[0]=0; burst(); print('after remove+re-add: 5 requests ->', accepts[0], 'backend connections')
