#!/bin/bash
# Many VMs from one snapshot (issue 16 §3): N concurrent restores of one snapshot,
# cairn beside QEMU 7.2's -incoming in the same run (bench/restore-many.py says
# what is measured).
#   bench/restore-many.sh                       512 MiB, N = 1, 10, 50; QEMU N = 1, 10
#   MEM_MB=256 NS=1,4 QEMU_NS=1 bench/restore-many.sh     a quick run
# BUILD=DIR another build directory (default build/); OUT=FILE also writes the table there;
# CAIRN_OPTS="--no-verify" adds options to each cairn restore.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
for t in qemu-system-x86_64 qemu-img; do
  command -v $t >/dev/null || { echo "$t is needed (qemu-system-x86, qemu-utils)" >&2; exit 1; }
done
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
meson compile -C "$BUILD" >/dev/null || { meson compile -C "$BUILD" 2>&1 | tail -20; exit 1; }
timeout -k 10 3600 python3 bench/restore-many.py "$BUILD/cairn" "$BUILD/guest/testos.elf" \
  --mem "${MEM_MB:-512}" --n "${NS:-1,10,50}" --qemu-n "${QEMU_NS:-1,10}" \
  --touch "${TOUCH_MB:-16}" --out "${OUT:-}" --cairn-opts "${CAIRN_OPTS:-}"
