#!/usr/bin/env python3
"""Sends datagrams to 127.0.0.1:PORT (or HOST:PORT) and checks that each comes
back unchanged.

udp_client.py [HOST:]PORT COUNT [TAG]: COUNT datagrams of varied sizes (1 to 1400
bytes) whose payloads name TAG and their number; each is sent again (up to 5
times, 1 s apart) until its echo arrives: the first one after a restore may
be lost while the new user-mode stack learns the guest's MAC.  Exits 0 and
prints "echoed COUNT ok (R resends)", else 1 with the first mismatch.
"""
import socket
import sys


def payload(tag, i):
    size = [1, 17, 64, 512, 1400][i % 5]
    base = f"{tag}:{i}:".encode()
    return (base * (size // len(base) + 1))[:size]


def main():
    host, _, port = sys.argv[1].rpartition(":")
    host, port, count = host or "127.0.0.1", int(port), int(sys.argv[2])
    tag = sys.argv[3] if len(sys.argv) > 3 else "cairn"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    resends = 0
    for i in range(count):
        want = payload(tag, i)
        for attempt in range(5):
            s.sendto(want, (host, port))
            try:
                while True:
                    got, _ = s.recvfrom(65536)
                    if got == want:
                        break
                    # an echo of an earlier resend: skip it
                    if not got.startswith(f"{tag}:".encode()):
                        print(f"datagram {i}: got {got[:40]!r}, want {want[:40]!r}")
                        return 1
                break
            except socket.timeout:
                resends += 1
        else:
            print(f"datagram {i}: no echo after 5 tries")
            return 1
    print(f"echoed {count} ok ({resends} resends)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
