#!/bin/bash
# Boot benchmark, cairn beside QEMU on the same test guest (see boot.py).
#   bench/boot.sh [RUNS] [MEM]     default 20 runs, 512M
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
python3 bench/boot.py build/cairn build/guest/testos.elf "${1:-20}" "${2:-512M}"
