from h import *
a=demo('a', delay=2000)
port,p=proxy([('a',a)])
s=conn(port); s.sendall(b'GET /slow HTTP/1.1\r\nHost: h\r\n\r\n'); time.sleep(0.3)
p.send_signal(signal.SIGTERM); time.sleep(0.3)
p.send_signal(signal.SIGUSR1)   # e.g. logrotate's postrotate during the drain
r=recvall(s,3)
print('in-flight response:', r[:60]); time.sleep(0.3); print('proxy exit code:', p.poll())
