#!/bin/bash
# Snapshot benchmark (issue 5 §6), cairn beside QEMU 7.2 on the same test guest in
# the same run (see bench/snapshot.py for what is measured and how).
#   bench/snapshot.sh [RUNS] [SIZE...]     default 5 runs, 512M 2G
# BUILD=DIR uses another build directory (default build/; CAIRN_REV=TEXT then names
# its source in the results); OUT=FILE writes the results elsewhere (default
# bench/results-snapshot.md; OUT= to write none).
# Needs qemu-system-x86_64 and qemu-img.  About 5 minutes here.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT-bench/results-snapshot.md}
RUNS=${1:-5}
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(512M 2G)
for t in qemu-system-x86_64 qemu-img; do
  command -v $t >/dev/null || { echo "$t is needed (qemu-system-x86, qemu-utils)" >&2; exit 1; }
done
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
meson compile -C "$BUILD" >/dev/null || { meson compile -C "$BUILD" 2>&1 | tail -20; exit 1; }
# at most 15 minutes; snapshot.py kills its VMs and removes its files on the way out
timeout -k 10 900 python3 bench/snapshot.py "$BUILD/cairn" "$BUILD/guest/testos.elf" "$RUNS" \
  "${SIZES[@]}" --out "$OUT"
