#!/usr/bin/env python3
"""Writes a minimal 32-bit ELF with a PVH entry note whose code is the
given hex bytes, loaded at 1 MiB: a guest for testing the VMM's own
reactions (KVM internal errors, debug exit) without the test guest.
Usage: mkpvh.py OUT HEXBYTES"""
import struct
import sys

out, code = sys.argv[1], bytes.fromhex(sys.argv[2])
LOAD = 0x100000
ehdr_size, phdr_size = 52, 32
note_name = b"Xen\0"
note = struct.pack("<III", len(note_name), 4, 18) + note_name + struct.pack("<I", LOAD)
phoff = ehdr_size
note_off = phoff + 2 * phdr_size
code_off = (note_off + len(note) + 15) & ~15
ehdr = struct.pack("<16sHHIIIIIHHHHHH",
                   b"\x7fELF\x01\x01\x01" + b"\0" * 9, 2, 3, 1, LOAD, phoff, 0, 0,
                   ehdr_size, phdr_size, 2, 0, 0, 0)
ph_load = struct.pack("<IIIIIIII", 1, code_off, LOAD, LOAD, len(code), len(code), 5, 0x1000)
ph_note = struct.pack("<IIIIIIII", 4, note_off, 0, 0, len(note), len(note), 4, 4)
img = bytearray(ehdr + ph_load + ph_note + note)
img += b"\0" * (code_off - len(img)) + code
open(out, "wb").write(img)
