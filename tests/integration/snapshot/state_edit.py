#!/usr/bin/env python3
"""Rewrite one record of a state.bin (docs/state-format.md) and recompute
every checksum, so that a reader's checksum tests pass and only its checks
of the records' contents can refuse the file.

  state_edit.py FILE TAG INSTANCE shorten N   drop the payload's last N bytes
  state_edit.py FILE TAG INSTANCE flip OFF    flip the bits of payload byte OFF
"""
import struct
import sys
import zlib

HEADER = 24


def main():
    path, tag, inst, op, arg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    data = open(path, 'rb').read()
    out = bytearray(data[:HEADER])
    off, count, found = HEADER, 0, False
    while True:
        rtag, ver, rinst, length, _crc = struct.unpack_from('<IHHII', data, off)
        if rtag == 0:
            break
        payload = bytearray(data[off + 16:off + 16 + length])
        if (rtag, rinst) == (tag, inst):
            found = True
            if op == 'shorten':
                payload = payload[:max(0, len(payload) - arg)]
            elif op == 'flip':
                payload[arg] ^= 0xff
            else:
                sys.exit('unknown operation ' + op)
        out += struct.pack('<IHHII', rtag, ver, rinst, len(payload), zlib.crc32(payload))
        out += payload + b'\0' * (-len(payload) % 8)
        off += 16 + length + (-length % 8)
        count += 1
    if not found:
        sys.exit('no record with tag %d instance %d' % (tag, inst))
    end_off = len(out)
    body = struct.pack('<QII', end_off, count, zlib.crc32(bytes(out)))
    out += struct.pack('<IHHII', 0, 1, 0, 16, zlib.crc32(body)) + body
    open(path, 'wb').write(out)


main()
