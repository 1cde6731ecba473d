import socket, subprocess, time, os, signal, sys, threading
B=os.environ.get('RP_BUILD','/tmp/rv/asan')
PROXY=os.environ.get('PROXY', B+'/proxy/ringproxy')
DEMO=B+'/examples/demo-backend/ringproxy-demo-backend'
procs=[]
def demo(name, mode='normal', delay=0):
    p=subprocess.Popen([DEMO,'--name',name,'--listen','127.0.0.1:0','--mode',mode]+(['--delay-ms',str(delay)] if delay else []),stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
    line=p.stdout.readline().strip(); procs.append(p)
    return int(line.rsplit(':',1)[1])
def freeport():
    s=socket.socket(); s.bind(('127.0.0.1',0)); p=s.getsockname()[1]; s.close(); return p
def proxy(backends, extra='', proxyextra='', path='/tmp/rv-review-cfg.toml', log='/tmp/rv-review-proxy.log'):
    port=freeport()
    cfg=f'[proxy]\nlisten = "127.0.0.1:{port}"\nworkers = 1\n{proxyextra}\n[admin]\nlisten = ""\n{extra}\n'
    for n,bp in backends:
        cfg+=f'[[backend]]\nname = "{n}"\naddress = "127.0.0.1:{bp}"\n'
    open(path,'w').write(cfg)
    p=subprocess.Popen([PROXY,'-c',path],stdout=open(log,'w'),stderr=subprocess.STDOUT)
    procs.append(p)
    for _ in range(100):
        try: socket.create_connection(('127.0.0.1',port),timeout=1).close(); break
        except OSError: time.sleep(0.05)
    return port, p
def conn(port, timeout=5):
    s=socket.create_connection(('127.0.0.1',port)); s.settimeout(timeout); return s
def recvall(s, limit=10):
    out=b''; end=time.time()+limit
    try:
        while time.time()<end:
            d=s.recv(65536)
            if not d: out+=b'<EOF>'; break
            out+=d
    except socket.timeout: out+=b'<TIMEOUT>'
    except ConnectionResetError: out+=b'<RST>'
    return out
def cleanup():
    for p in procs:
        try: p.send_signal(signal.SIGKILL)
        except Exception: pass
    for p in procs:
        try: p.wait(timeout=3)
        except Exception: pass
import atexit; atexit.register(cleanup)
def raw_backend(handler):
    """handler(conn, first_request_bytes) runs in a thread per connection."""
    ls=socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,1); ls.bind(('127.0.0.1',0)); ls.listen(64)
    log=[]
    def loop():
        while True:
            try: c,_=ls.accept()
            except OSError: return
            def run(c=c):
                try:
                    c.settimeout(5); data=b''
                    while b'\r\n\r\n' not in data:
                        d=c.recv(65536)
                        if not d: return
                        data+=d
                    log.append(data)
                    handler(c,data)
                except Exception as e: log.append(('exc',e))
                finally:
                    try: c.close()
                    except Exception: pass
            threading.Thread(target=run,daemon=True).start()
    threading.Thread(target=loop,daemon=True).start()
    return ls.getsockname()[1], log
