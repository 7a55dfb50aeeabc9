# kill -9 at random points of snapshot create / revert / delete, clone and
# create (kill_campaign.py): no committed snapshot is ever lost, check
# --repair always brings the bundle back, memory snapshots keep restoring.
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
  "${KILL_SECS:-150}" "${KILL_TARGET:-200}" || fail "kill campaign"
qcheck_all vm
pass "kill campaign"
