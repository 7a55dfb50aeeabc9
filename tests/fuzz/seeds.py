#!/usr/bin/env python3
"""Seed corpora for the fuzz harnesses: seeds.py KIND DIR (KIND: virtio or
control).  Writes small valid inputs (and a few broken ones) into DIR;
exits non-zero on any failure."""
import os
import struct
import sys

# ---- virtio-blk (fuzz_virtio_blk.c) ----
# struct fuzz_hdr: flags u8, bump u8, qsize u16, desc/avail/used u32, then
# guest memory slot 0 (16 KiB at 0) and slot 1 (4 KiB at 4 GiB + bit 31).
NEXT, WRITE, INDIRECT = 1, 2, 4
DESC, AVAIL, USED, HDR, EXTRA, STATUS, DATA, ITABLE = (
    0x0, 0x100, 0x200, 0x300, 0x310, 0x340, 0x400, 0x1400)


def desc(addr, length, flags, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def virtio_seed(flags, chains, heads, hdrs, extra=b"", bump=0, qsize=16, itable=b""):
    """CHAINS: list of descriptor table entries; HEADS: avail ring;
    HDRS: (type, sector) per request header slot (one header at HDR + 16 * i)."""
    mem = bytearray(0x2000)
    table = b"".join(desc(*d) for d in chains)
    mem[DESC:DESC + len(table)] = table
    mem[AVAIL:AVAIL + 4] = struct.pack("<HH", 0, len(heads))
    for i, h in enumerate(heads):
        mem[AVAIL + 4 + 2 * i:AVAIL + 6 + 2 * i] = struct.pack("<H", h)
    for i, (t, sector) in enumerate(hdrs):
        mem[HDR + 16 * i:HDR + 16 * i + 16] = struct.pack("<IIQ", t, 0, sector)
    mem[EXTRA:EXTRA + len(extra)] = extra
    mem[ITABLE:ITABLE + len(itable)] = itable
    for i in range(0x1000):
        mem[DATA + i] = (i * 7 + 3) & 0xff
    hdr = struct.pack("<BBHIII", flags, bump, qsize, DESC, AVAIL, USED)
    return hdr + bytes(mem)


def rw_chain(t, sector, n=4096):
    if t == 0:  # read: data is device-writable
        return [(HDR, 16, NEXT, 1), (DATA, n, WRITE | NEXT, 2), (STATUS, 1, WRITE)]
    return [(HDR, 16, NEXT, 1), (DATA, n, NEXT, 2), (STATUS, 1, WRITE)]


def virtio_seeds():
    s = {}
    s["read"] = virtio_seed(2, rw_chain(0, 8), [0], [(0, 8)])
    s["write"] = virtio_seed(2, rw_chain(1, 16), [0], [(1, 16)])
    s["write-qcow2"] = virtio_seed(3, rw_chain(1, 2040, 2048), [0], [(1, 2040)], bump=1)
    s["read-qcow2"] = virtio_seed(3, rw_chain(0, 0), [0], [(0, 0)])
    s["write-ro"] = virtio_seed(7, rw_chain(1, 0), [0], [(1, 0)])
    s["flush"] = virtio_seed(3, [(HDR, 16, NEXT, 1), (STATUS, 1, WRITE)], [0], [(4, 0)])
    s["get-id"] = virtio_seed(3, [(HDR, 16, NEXT, 1), (DATA, 20, WRITE | NEXT, 2),
                                  (STATUS, 1, WRITE)], [0], [(8, 0)])
    for name, t in (("discard", 11), ("write-zeroes", 13)):
        s[name] = virtio_seed(3, [(HDR, 16, NEXT, 1), (EXTRA, 16, NEXT, 2), (STATUS, 1, WRITE)],
                              [0], [(t, 0)], extra=struct.pack("<QII", 8, 64, 0))
    # Several requests in the ring, split segments, odd lengths.
    chains = rw_chain(1, 0) + [(HDR + 16, 16, NEXT, 4), (DATA, 512, WRITE | NEXT, 5),
                               (DATA + 512, 512, WRITE | NEXT, 6), (STATUS + 1, 1, WRITE)]
    s["two"] = virtio_seed(3, chains, [0, 3], [(1, 0), (0, 0)], bump=2)
    # Indirect table of three descriptors.
    itable = b"".join(desc(*d) for d in rw_chain(0, 4))
    s["indirect"] = virtio_seed(2, [(ITABLE, len(itable), INDIRECT)], [0], [(0, 4)],
                                itable=itable)
    # Broken ones: a loop, an index out of range, a descriptor outside memory,
    # a wrapped avail index, rings in slot 1.
    s["loop"] = virtio_seed(2, [(HDR, 16, NEXT, 1), (DATA, 16, NEXT, 0)], [0], [(0, 0)])
    s["bad-next"] = virtio_seed(2, [(HDR, 16, NEXT, 200)], [0], [(0, 0)])
    s["outside"] = virtio_seed(2, [(HDR, 16, NEXT, 1), (0x3ff0, 4096, WRITE | NEXT, 2),
                                   (STATUS, 1, WRITE)], [0], [(0, 0)])
    s["wrap"] = virtio_seed(2, rw_chain(0, 0), [0], [(0, 0)], bump=0xff, qsize=4)
    # Rings in slot 1 (at 4 GiB): avail at +0x400, used at +0x800.
    hi = bytearray(virtio_seed(2, rw_chain(0, 0), [0], [(0, 0)]))
    hi[4:16] = struct.pack("<III", DESC, 0x80000400, 0x80000800)
    slot1 = bytearray(0x1000)
    slot1[0x400:0x406] = struct.pack("<HHH", 0, 1, 0)
    s["slot1"] = bytes(hi) + bytes(0x4000 - 0x2000) + bytes(slot1)
    return s


# ---- control (fuzz_control.c) ----
# Byte 0 seeds the chunking; \x00 switches between the two clients; \x02
# stands for 16 KiB of 'a' (over-long lines).
def control_seeds():
    lines = {
        "help": b'{"cmd":"help"}\n',
        "echo": b'{"cmd":"echo","id":1,"value":{"a":[1,2.5,"x"]}}\n{"cmd":"echo"}\r\n',
        "errors": b'{"cmd":"fail","id":"x"}\n{"cmd":"nope"}\n{"cmd":3}\n{}\n[1]\n{bad\n  \n',
        "slow": b'{"cmd":"slow","id":1}\n{"cmd":"echo","id":2}\n{"cmd":"slow","status":-5}\n',
        "release": b'{"cmd":"slow","id":1}\n\x00{"cmd":"release"}\n{"cmd":"echo"}\n',
        "defer-odd": b'{"cmd":"now"}\n{"cmd":"undecided"}\n{"cmd":"nohandle"}\n'
                     b'{"cmd":"override","id":7}\n{"cmd":"release"}\n',
        "big": b'{"cmd":"big","size":400000}\n{"cmd":"echo"}\n',
        "long": b'{"cmd":"echo","value":"\x02\x02\x02\x02\x02"}\n{"cmd":"help"}\n',
        "close": b'{"cmd":"slow"}\n\x00{"cmd":"close"}\n{"cmd":"echo"}\n',
        "dup": b'{"cmd":"echo","cmd":"echo"}\n{"cmd":"echo","id":null}\nnull\n"str"\n',
        "odd-cmds": b'{"cmd":"wrong_handle"}\n{"cmd":"fail_plain"}\n{"cmd":"badstatus"}\n'
                    b'{"cmd":"undecided","status":-28}\n{"cmd":"now","status":-5}\n',
        "last-line": b'{"cmd":"echo","value":1}',
    }
    return {k: bytes([i * 37 & 0xff]) + v for i, (k, v) in enumerate(lines.items())}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("virtio", "control"):
        sys.exit("usage: seeds.py virtio|control DIR")
    seeds = virtio_seeds() if sys.argv[1] == "virtio" else control_seeds()
    os.makedirs(sys.argv[2], exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(sys.argv[2], f"seed-{name}"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
