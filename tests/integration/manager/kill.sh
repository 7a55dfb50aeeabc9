# kill -9 campaigns (docs/manager.md, "Tests"):
#  - kill_campaign.py: SIGKILL at random points of snapshot create / revert /
#    delete, clone and create of a stopped VM: no committed snapshot is ever
#    lost, check --repair always brings the bundle back, memory snapshots
#    keep restoring.  KILL_TARGET kill points (200) within KILL_SECS (150).
#  - kill_running.py: the VM runs the test guest, which fills and verifies
#    its disk and memory; SIGKILL goes to the command (snapshot create /
#    revert / delete, clone, stop --save) or to the VM's own process, at
#    points spread over each operation's run time; then check --repair, no
#    snapshot lost, every new or changed snapshot restored and verified in
#    the guest, qemu-img check, and the VM runs again in the state the
#    operation's outcome says.  KILL_RUN_POINTS confirmed kills (30, three per
#    operation and target) within KILL_RUN_SECS (200; fewer points under a
#    sanitizer or a loaded machine, at least 10).
# SEED makes a run repeatable (each script prints its seed).  kill-full.sh
# runs both at full size: 300 + 1000 kill points.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
command -v qemu-io >/dev/null || { echo "SKIP: qemu-io is needed"; exit 77; }

mk vm --disk-size 16M --cmdline "echo up; shell"
up vm
con vm "diskfill 1500 1" "seed=1 ok"
"$CAIRN" snapshot create "$TMP/vm" m1 >/dev/null || fail m1
con vm "diskfill 700 2" "seed=2 ok"
"$CAIRN" snapshot create "$TMP/vm" m2 >/dev/null || fail m2
con vm "diskfill 300 3" "seed=3 ok"
"$CAIRN" stop "$TMP/vm" >/dev/null || fail stop
"$CAIRN" snapshot create "$TMP/vm" d1 >/dev/null || fail d1
export TESTOS
python3 "$SRCDIR/tests/integration/manager/kill_campaign.py" "$CAIRN" "$TMP" \
  "${KILL_SECS:-150}" "${KILL_TARGET:-200}" || fail "kill campaign (stopped VM)"
qcheck_all vm
pass "kill campaign, stopped VM"

DISKPAT="$BUILDDIR/guest/diskpat" python3 "$SRCDIR/tests/integration/manager/kill_running.py" \
  "$CAIRN" "$TMP" "${KILL_RUN_POINTS:-30}" "${KILL_RUN_SECS:-200}" ||
  fail "kill campaign (running VM)"
qcheck_all rv
pass "kill campaign, running VM"
