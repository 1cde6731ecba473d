#!/usr/bin/python3
"""Starts Debian's nginx (/usr/sbin/nginx 1.22, nginx-light has http_v2) as an HTTP/2
backend node for ringproxy's h2 backend tests: a second real HTTP/2 server beside
tests/integration/h2_node.py. Cleartext h2 by prior knowledge (h2c: nginx 1.22's
`listen ... http2` without ssl speaks only HTTP/2 on that port), or TLS with ALPN h2.

usage: nginx_h2c.py --port N --name NAME --dir DIR [--max-streams N]
                    [--keepalive-requests N] [--tls CERT KEY] [--print]

Writes DIR/nginx-NAME.conf (every path nginx writes is under DIR: pid file, error log,
temp directories) and execs nginx in the foreground (`daemon off; master_process off;`:
one process, so the pid the caller started is nginx's and SIGKILL by that pid stops it;
run as root, nginx stays root with master_process off). nginx prints no ready line: poll
the port (harness.h's wait_for_port). --print writes the config to stdout and exits.

  --port N                 listens on 127.0.0.1:N (a free_port(); nginx takes no port 0)
  --name NAME              in every answer (header x-node, body)
  --max-streams N          http2_max_concurrent_streams (nginx's default 128)
  --keepalive-requests N   requests (streams) per connection before nginx sends GOAWAY
                           and closes it (nginx's default is 1000, and since 1.19.7 it
                           applies to HTTP/2 too; here 100000 unless set: a test of the
                           proxy's GOAWAY handling can set it low)
  --tls CERT KEY           `listen ... ssl http2` with that certificate: ALPN h2

Every request (any method, any path, /health included) is answered 200 with the body
"NAME <server_port> <request_uri>\\n" and headers x-node: NAME, x-port: <server_port>,
x-connection: <nginx's connection serial number>, x-connection-requests: <streams so
far on that connection>, x-protocol: <server_protocol, HTTP/2.0>; a request body is read
and discarded. The access log goes to stdout, one line per request:
  <connection> <connection_requests> <server_protocol> <method> <request_uri> "<te>"
  "<user agent>" <request_length>
so a test counts upstream connections (distinct first fields) and sees the requests.
Written for the h2 backend tests (tests/integration/h2_upstream_test.cc).
"""
import argparse
import os
import sys

TEMPLATE = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx-{name}.pid;
error_log {dir}/nginx-{name}-error.log info;
events {{ worker_connections 1024; }}
http {{
  log_format seen '$connection $connection_requests $server_protocol $request_method $request_uri '
                  '"$http_te" "$http_user_agent" $request_length';
  access_log /dev/stdout seen;
  client_body_temp_path {dir}/nginx-{name}-body;
  proxy_temp_path {dir}/nginx-{name}-proxy;
  fastcgi_temp_path {dir}/nginx-{name}-fastcgi;
  uwsgi_temp_path {dir}/nginx-{name}-uwsgi;
  scgi_temp_path {dir}/nginx-{name}-scgi;
  keepalive_requests {keepalive_requests};
  keepalive_timeout 300s;
  http2_max_concurrent_streams {max_streams};
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port}{ssl} http2;
{tls}    location / {{
      add_header x-node {name} always;
      add_header x-port $server_port always;
      add_header x-connection $connection always;
      add_header x-connection-requests $connection_requests always;
      add_header x-protocol $server_protocol always;
      return 200 "{name} $server_port $request_uri\\n";
    }}
  }}
}}
"""


def main():
    p = argparse.ArgumentParser(description="nginx as an h2c/h2 test node (see the header comment)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--max-streams", type=int, default=128)
    p.add_argument("--keepalive-requests", type=int, default=100000)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--print", action="store_true")
    a = p.parse_args()
    d = os.path.abspath(a.dir)
    tls = ""
    if a.tls:
        tls = "    ssl_certificate %s;\n    ssl_certificate_key %s;\n" % (os.path.abspath(a.tls[0]),
                                                                       os.path.abspath(a.tls[1]))
    conf = TEMPLATE.format(dir=d, name=a.name, port=a.port, max_streams=a.max_streams,
                           keepalive_requests=a.keepalive_requests, ssl=" ssl" if a.tls else "", tls=tls)
    if a.print:
        sys.stdout.write(conf)
        return
    path = os.path.join(d, "nginx-%s.conf" % a.name)
    with open(path, "w") as f:
        f.write(conf)
    sys.stdout.flush()
    os.execv("/usr/sbin/nginx", ["/usr/sbin/nginx", "-p", d, "-e", os.path.join(d, "nginx-%s-error.log" % a.name),
                                 "-c", path])


if __name__ == "__main__":
    main()
