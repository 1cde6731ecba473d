#!/usr/bin/python3
"""A hostile DNS server for tests/integration/discovery_hostile_test.cc.

Standard library only. Listens on 127.0.0.1 (UDP, and TCP with --tcp) on the port given
(0: an ephemeral one), prints "ready UDP_PORT" on stdout once bound (the TCP port is the
same number), and answers every query as MODE says:

  valid      a correct answer: SRV records (--srv N of them, targets be.test), A 127.0.0.1
             for be.test, empty for AAAA
  huge       valid, with --srv records (hundreds): over 512 bytes, sent whole over UDP
             without the TC bit (a resolver that honours the 512-byte limit may refuse it)
  huge-tc    over 512 bytes: UDP gets a truncated answer with TC set (no records), TCP
             (with --tcp) the whole answer; without --tcp the retry finds no server
  cut        a valid answer cut in the middle of a record
  wrong-id   a valid answer with another query ID
  wrong-q    a valid answer, for another question (name _other._tcp.elsewhere.test)
  slow       a valid answer, sent --delay-ms later (beyond dns.timeout_ms)
  garbage    random bytes (the query ID kept or not, at random)
  loop       an answer whose record name is a compression pointer to itself
  servfail   rcode SERVFAIL, no records
  refused    rcode REFUSED, no records
  silent     no answer at all

A/AAAA questions for be.test are answered validly in every mode except --all-hostile,
so that SRV targets resolve and only the SRV answers misbehave. Each query is noted on
stderr as "query NAME TYPE".
"""
import argparse
import os
import random
import select
import socket
import struct
import sys
import threading
import time

T_A, T_AAAA, T_SRV = 1, 28, 33


def parse_question(msg):
    """(id, flags, qname labels as bytes, qtype, qclass, end of question) or None."""
    if len(msg) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd < 1:
        return None
    pos = 12
    labels = []
    while True:
        if pos >= len(msg):
            return None
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:
            return None
        labels.append(msg[pos:pos + n])
        pos += n
    if pos + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack("!HH", msg[pos:pos + 4])
    return qid, flags, labels, qtype, qclass, pos + 4


def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(qid, rd, rcode, an, tc=False):
    flags = 0x8000 | 0x0400 | (0x0100 if rd else 0) | 0x0080 | rcode  # QR AA RD RA
    if tc:
        flags |= 0x0200
    return struct.pack("!HHHHHH", qid, flags, 1, an, 0, 0)


def srv_records(count, base_port, ttl):
    recs = []
    for i in range(count):
        rdata = struct.pack("!HHH", 10, 1, base_port + i) + encode_name("be.test")
        # owner: a pointer to the question name (offset 12)
        recs.append(b"\xc0\x0c" + struct.pack("!HHIH", T_SRV, 1, ttl, len(rdata)) + rdata)
    return recs


def a_record(ttl):
    return b"\xc0\x0c" + struct.pack("!HHIH", T_A, 1, ttl, 4) + socket.inet_aton("127.0.0.1")


def answer(msg, args, over_tcp):
    """The bytes to send back for `msg`, or None for no answer."""
    q = parse_question(msg)
    if q is None:
        return None
    qid, flags, labels, qtype, qclass, qend = q
    rd = bool(flags & 0x0100)
    question = msg[12:qend]
    name = b".".join(labels).decode("ascii", "replace").lower()
    sys.stderr.write("query %s %d %s\n" % (name, qtype, "tcp" if over_tcp else "udp"))
    sys.stderr.flush()
    mode = args.mode

    def valid(records):
        return header(qid, rd, 0, len(records)) + question + b"".join(records)

    if qtype in (T_A, T_AAAA) and not args.all_hostile:
        if qtype == T_A and name == "be.test":
            return valid([a_record(args.ttl)])
        return valid([])

    if qtype != T_SRV:
        return valid([])
    records = srv_records(args.srv, args.base_port, args.ttl)
    if mode == "valid" or mode == "huge":
        return valid(records)
    if mode == "huge-tc":
        if over_tcp:
            return valid(records)
        return header(qid, rd, 0, 0, tc=True) + question
    if mode == "cut":
        whole = valid(records)
        # past the question, into the middle of the first record's RDATA
        return whole[:len(header(qid, rd, 0, 0)) + len(question) + 15]
    if mode == "wrong-id":
        return header((qid + 1) & 0xFFFF, rd, 0, len(records)) + question + b"".join(records)
    if mode == "wrong-q":
        other = encode_name("_other._tcp.elsewhere.test") + struct.pack("!HH", T_SRV, 1)
        return header(qid, rd, 0, len(records)) + other + b"".join(records)
    if mode == "slow":
        time.sleep(args.delay_ms / 1000.0)
        return valid(records)
    if mode == "garbage":
        junk = os.urandom(random.randint(1, 600))
        if random.random() < 0.5 and len(junk) >= 2:
            junk = struct.pack("!H", qid) + junk[2:]
        return junk
    if mode == "loop":
        # One answer record whose owner name is a pointer to itself.
        off = 12 + len(question)
        rr = struct.pack("!H", 0xC000 | off) + struct.pack("!HHIH", T_SRV, 1, args.ttl, 0)
        return header(qid, rd, 0, 1) + question + rr
    if mode == "servfail":
        return header(qid, rd, 2, 0) + question
    if mode == "refused":
        return header(qid, rd, 5, 0) + question
    if mode == "silent":
        return None
    raise SystemExit("unknown mode " + mode)


def serve_udp(sock, args):
    while True:
        msg, peer = sock.recvfrom(65535)
        if args.mode == "slow":
            threading.Thread(target=lambda m=msg, p=peer: reply_udp(sock, m, p, args), daemon=True).start()
        else:
            reply_udp(sock, msg, peer, args)


def reply_udp(sock, msg, peer, args):
    out = answer(msg, args, False)
    if out is not None:
        sock.sendto(out, peer)


def serve_tcp_conn(conn, args):
    try:
        buf = b""
        while True:
            data = conn.recv(65535)
            if not data:
                return
            buf += data
            while len(buf) >= 2:
                n = struct.unpack("!H", buf[:2])[0]
                if len(buf) < 2 + n:
                    break
                msg, buf = buf[2:2 + n], buf[2 + n:]
                out = answer(msg, args, True)
                if out is not None:
                    conn.sendall(struct.pack("!H", len(out)) + out)
    except OSError:
        pass
    finally:
        conn.close()


def serve_tcp(lsock, args):
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=serve_tcp_conn, args=(conn, args), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tcp", action="store_true", help="answer over TCP as well")
    p.add_argument("--srv", type=int, default=3, help="SRV records per answer")
    p.add_argument("--base-port", type=int, default=20000, help="the first SRV record's port")
    p.add_argument("--ttl", type=int, default=1)
    p.add_argument("--delay-ms", type=int, default=3000)
    p.add_argument("--all-hostile", action="store_true", help="A/AAAA questions get MODE too")
    args = p.parse_args()

    # With --tcp, the TCP port first (an ephemeral TCP port may be taken by another
    # connection's local end), then UDP on the same number; tried again if that is taken.
    for attempt in range(50):
        tcp = None
        if args.tcp:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", args.port))
        port = tcp.getsockname()[1] if tcp else args.port
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
            break
        except OSError:
            udp.close()
            if tcp:
                tcp.close()
            if args.port or attempt == 49:
                raise
    port = udp.getsockname()[1]
    threads = [threading.Thread(target=serve_udp, args=(udp, args), daemon=True)]
    if tcp:
        tcp.listen(16)
        threads.append(threading.Thread(target=serve_tcp, args=(tcp, args), daemon=True))
    for t in threads:
        t.start()
    print("ready %d" % port, flush=True)
    # Until killed.
    while True:
        select.select([], [], [], 3600)


if __name__ == "__main__":
    main()
