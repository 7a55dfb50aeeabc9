#!/bin/bash
# The whole injected-fault campaign: every fault point of every operation,
# with EIO and with ENOSPC (tests/faults/README.md).  Prints the points per
# operation, the faults injected and the outcomes (clean-fail / ok /
# not-reached / BUG / XFAIL).  Takes about 10-15 minutes here; runs niced.
#   tests/faults/run-full.sh [BUILDDIR] [campaign.py options, e.g. --only rsnap -v]
# FAULT_SEED picks the sample when --points limits it.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
[ -x "$build/cairn" ] && [ -f "$build/tests/faults/libfaultshim.so" ] ||
  { echo "build first: meson compile -C $build"; exit 2; }
exec nice python3 "$src/tests/faults/campaign.py" --cairn "$build/cairn" \
  --shim "$build/tests/faults/libfaultshim.so" --testos "$build/guest/testos.elf" \
  --json "$build/faults-full.json" "$@"
