#!/bin/bash
# Network benchmark (issue 17 §7): cairn beside QEMU 7.2 on the same test guest in
# the same run, user-mode networking and TAP (see bench/net.py for what is measured).
#   bench/net.sh [RUNS] [MB]      default 3 runs, 64 MiB per throughput figure
# BUILD=DIR uses another build directory (default build/); OUT=FILE writes the
# results there (default bench/results-net.md; OUT= to write none).
# Runs as root: it makes a network namespace with a TAP device and removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT-bench/results-net.md}
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is needed" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench/net.sh makes a network namespace and TAP devices: run it as root" >&2; exit 1; }
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
meson compile -C "$BUILD" >/dev/null || { meson compile -C "$BUILD" 2>&1 | tail -20; exit 1; }
timeout -k 10 1800 python3 bench/net.py "$BUILD/cairn" "$BUILD/guest/testos.elf" \
  --runs "${1:-3}" --mb "${2:-64}" --out "$OUT"
