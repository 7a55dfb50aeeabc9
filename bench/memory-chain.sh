#!/bin/bash
# Incremental-memory benchmark (issue 15 §6): a chain of restore points, each after
# the guest dirtied 1 % of its RAM in scattered 4 KiB pages, cairn beside QEMU 7.2's
# savevm in the same run (see bench/memory-chain.py for what is measured and how).
#   bench/memory-chain.sh                   2 GiB, 100 restore points, 10 QEMU savevms
#   MEM_MB=512 N=20 QEMU_N=4 RUNS=2 bench/memory-chain.sh     a quick run
# MEM_MB guest RAM in MiB (default 2048); N restore points (100); QEMU_N savevms kept
# in QEMU's qcow2 (10; cut to what the free space holds with 8 GiB to spare; 0: no
# QEMU); RUNS restores of each kind (3); DIRTY_PCT of RAM dirtied per round (1);
# DELETE_ORDER of the middle half's deletes, newest (default) or oldest first; VERIFY=0
# skips the memverify of two restores after the deletes (each reads all of RAM).
# BUILD=DIR uses another build directory (default build/; CAIRN_REV=TEXT then names
# its source in the results); OUT=FILE writes the results elsewhere (default
# bench/results-memory.md; OUT= to write none); RAW=FILE keeps every figure as JSON
# (memory-chain.py --render FILE makes the report again). Work files go to $TMPDIR
# (default /tmp): at 2 GiB about 12 GiB for cairn and 2 GiB per QEMU savevm, all
# removed at the end.
# On a file system mounted with `discard` (this machine's /), freeing a 4 KiB extent costs
# ~2 ms: removing a layer of scattered pages takes seconds, and the deletes and the destroy
# at the end take most of the run.
# Needs qemu-system-x86_64 and qemu-img.  About 5 minutes for the quick run; at 2 GiB an
# hour or more here.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT-bench/results-memory.md}
for t in qemu-system-x86_64 qemu-img; do
  command -v $t >/dev/null || { echo "$t is needed (qemu-system-x86, qemu-utils)" >&2; exit 1; }
done
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
meson compile -C "$BUILD" >/dev/null || { meson compile -C "$BUILD" 2>&1 | tail -20; exit 1; }
strings "$BUILD/guest/testos.elf" | grep -w memscatter >/dev/null ||
  { echo "the test guest has no memscatter job (docs/guest.md): rebuild from a newer tree" >&2; exit 1; }
# at most 4 hours; memory-chain.py kills its VMs and removes its files on the way out
timeout -k 10 14400 python3 bench/memory-chain.py "$BUILD/cairn" "$BUILD/guest/testos.elf" \
  --mem "${MEM_MB:-2048}" --n "${N:-100}" --qemu-n "${QEMU_N:-10}" --runs "${RUNS:-3}" \
  --dirty-pct "${DIRTY_PCT:-1}" --delete-order "${DELETE_ORDER:-newest}" \
  --verify "${VERIFY:-1}" --out "$OUT" --raw "${RAW:-}"
