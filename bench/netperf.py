#!/usr/bin/env python3
"""Host side of the guest's netsend/netrecv/udpecho jobs (docs/guest.md).

  netperf.py recv PORT [--idle S] [--json]
      counts the "cnb1" datagrams a guest's `netsend` sends to 127.0.0.1:PORT
      until its end marker (or S seconds idle): bytes, datagrams, lost (gaps in
      the sequence numbers, or the sender's count), MiB/s from the first to the
      last datagram, and how many arrived after the largest gap.
  netperf.py send PORT MB [--addr A]
      sends MB MiB of numbered datagrams to A:PORT (127.0.0.1) as fast as the
      socket takes them, then the end marker (several copies, 50 ms apart).
  netperf.py rtt PORT N [--addr A]
      N round trips of a 32-byte datagram through a guest's `udpecho`:
      median, p10, p90, p99, max in microseconds.
Results go to stdout as one line of JSON.
"""
import argparse
import json
import os
import socket
import struct
import sys
import time

PAYLOAD = 1400
HDR = struct.Struct(">4sIQ")
MAGIC = b"cnb1"
MIB = 1 << 20


def cmd_recv(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 64 * MIB)  # SO_RCVBUFFORCE (root)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * MIB)
    s.bind((a.addr, a.port))
    if a.ready:
        open(a.ready, "w").close()
    s.settimeout(a.idle)
    buf = bytearray(65536)
    got = nbytes = lost = nxt = 0
    t_first = t_last = None
    end = False
    gap_max, gap_at, after_gap = 0, None, 0
    marked, after_mark, last_before_mark, first_after_mark = False, 0, None, None
    while True:
        try:
            n = s.recv_into(buf)
        except socket.timeout:
            break
        if n < HDR.size:
            continue
        magic, kind, seq = HDR.unpack_from(buf)
        if magic != MAGIC:
            continue
        if kind == 1:
            if seq > nxt:
                lost += seq - nxt
            end = True
            break
        now = time.monotonic()
        if a.mark and not marked:
            marked = os.path.exists(a.mark)
        if marked:
            after_mark += 1
            if first_after_mark is None:
                first_after_mark = seq
        else:
            last_before_mark = seq
        if t_first is None:
            t_first = now
            if a.first:
                open(a.first, "w").close()
        t_last = now
        got += 1
        nbytes += n
        if seq >= nxt:
            if seq - nxt > gap_max:
                gap_max, gap_at, after_gap = seq - nxt, nxt, 0
            lost += seq - nxt
            nxt = seq + 1
        elif lost:
            lost -= 1
        if gap_at is not None and seq > gap_at:
            after_gap += 1
    secs = (t_last - t_first) if got > 1 else 0.0
    rate = (nbytes - nbytes / got) / secs / MIB if secs > 0 else 0.0
    print(json.dumps({"bytes": nbytes, "datagrams": got, "lost": lost, "end": end,
                      "secs": round(secs, 4), "MiBps": round(rate, 2),
                      "largest_gap": gap_max, "gap_at": gap_at,
                      "after_largest_gap": after_gap, "after_mark": after_mark,
                      "last_before_mark": last_before_mark,
                      "first_after_mark": first_after_mark}), flush=True)
    return 0 if got else 1


def cmd_send(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dst = (a.addr, a.port)
    count = (a.mb * MIB + PAYLOAD - 1) // PAYLOAD
    d = bytearray(bytes(range(256)) * (PAYLOAD // 256 + 1))[:PAYLOAD]
    t0 = time.monotonic()
    for seq in range(count):
        HDR.pack_into(d, 0, MAGIC, 0, seq)
        while True:
            try:
                s.sendto(d, dst)
                break
            except BlockingIOError:
                pass
    secs = time.monotonic() - t0
    for _ in range(5):
        s.sendto(HDR.pack(MAGIC, 1, count), dst)
        time.sleep(0.05)
    print(json.dumps({"bytes": count * PAYLOAD, "datagrams": count, "secs": round(secs, 4),
                      "MiBps": round(count * PAYLOAD / secs / MIB, 2)}), flush=True)
    return 0


def cmd_rtt(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    dst = (a.addr, a.port)
    times, lost = [], 0
    for i in range(a.n):
        msg = b"rtt:%08d:" % i + b"x" * 19
        t0 = time.perf_counter()
        s.sendto(msg, dst)
        try:
            while s.recv(2048) != msg:
                pass  # a late echo of an earlier, timed-out one
            times.append((time.perf_counter() - t0) * 1e6)
        except socket.timeout:
            lost += 1
    if not times:
        print(json.dumps({"n": a.n, "lost": lost}))
        return 1
    times.sort()
    q = lambda f: round(times[min(len(times) - 1, int(f * len(times)))], 1)
    print(json.dumps({"n": a.n, "lost": lost, "median_us": q(0.5), "p10_us": q(0.1),
                      "p90_us": q(0.9), "p99_us": q(0.99), "max_us": round(times[-1], 1)}))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv")
    r.add_argument("port", type=int)
    r.add_argument("--idle", type=float, default=10.0)
    r.add_argument("--addr", default="127.0.0.1")
    r.add_argument("--ready", help="a file to create once the socket is bound")
    r.add_argument("--first", help="a file to create when the first datagram arrives")
    r.add_argument("--mark", help="datagrams that arrive once this file exists are "
                   "counted apart (after_mark, first_after_mark)")
    sd = sub.add_parser("send")
    sd.add_argument("port", type=int)
    sd.add_argument("mb", type=int)
    sd.add_argument("--addr", default="127.0.0.1")
    t = sub.add_parser("rtt")
    t.add_argument("port", type=int)
    t.add_argument("n", type=int)
    t.add_argument("--addr", default="127.0.0.1")
    a = p.parse_args()
    return {"recv": cmd_recv, "send": cmd_send, "rtt": cmd_rtt}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
