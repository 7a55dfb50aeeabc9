#!/bin/bash
# The kill -9 campaigns of kill.sh at full size, outside CI (about an hour
# on a 2-core machine): 300 kill points on a stopped VM (kill_campaign.py)
# and 1000 with the VM running (kill_running.py: the command or the VM's
# own process killed, about 100 per operation and target), under nice -n 10.
#   tests/integration/manager/kill-full.sh [BUILDDIR]    (default: build/, built)
# KILL_TARGET, KILL_SECS, KILL_RUN_POINTS, KILL_RUN_SECS and SEED as kill.sh.
# Exit 0 and "PASS" lines, or the first failure with its seed.
set -uo pipefail
SRCDIR=$(cd "$(dirname "$0")/../../.." && pwd)
BUILDDIR=$(cd "${1:-$SRCDIR/build}" && pwd) || exit 2
export SRCDIR BUILDDIR CAIRN="$BUILDDIR/cairn" TESTOS="$BUILDDIR/guest/testos.elf"
[ -x "$CAIRN" ] || { echo "no $CAIRN: build first (scripts/test.sh, or meson compile -C $BUILDDIR)"; exit 2; }
export KILL_TARGET=${KILL_TARGET:-300} KILL_SECS=${KILL_SECS:-1800}
export KILL_RUN_POINTS=${KILL_RUN_POINTS:-1000} KILL_RUN_SECS=${KILL_RUN_SECS:-14400}
start=$(date +%s)
nice -n 10 bash "$SRCDIR/tests/integration/manager/kill.sh"
rc=$?
echo "kill-full.sh: exit $rc after $(($(date +%s) - start)) s"
exit $rc
