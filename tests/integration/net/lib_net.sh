# Sourced by the net tests that start VMs through lib_snap.sh: KVM and the
# test guest required, $here is this directory, and the exit trap cleans up
# and fails the test on any UBSan report in cairn's output.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos
here="$SRCDIR/tests/integration/net"
# Under the sanitizers, UBSan reports only print: any in cairn's output fails the test.
no_ub() { ! grep -h "runtime error:" "$TMP"/*out* 2>/dev/null || { echo "FAIL: UBSan report"; return 1; }; }
trap 'rc=$?; [ $rc = 0 ] && { no_ub || rc=1; }; snap_cleanup 2>/dev/null || rm -rf "$TMP"; exit $rc' EXIT
