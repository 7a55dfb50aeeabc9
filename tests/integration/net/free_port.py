#!/usr/bin/env python3
"""Prints a UDP port free on 127.0.0.1 now (the kernel's choice)."""
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
