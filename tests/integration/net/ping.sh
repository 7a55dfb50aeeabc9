#!/bin/bash
# The test guest pings the user-mode network's gateway (10.0.2.2) and DNS
# address (10.0.2.3), both answered by libslirp; an address nobody has gets
# no ARP reply and the job fails; without a NIC the job says so.
. "$SRCDIR/tests/integration/lib.sh"
need_kvm
need_testos
# Under the sanitizers, UBSan reports only print: any in cairn's output fails the test.
no_ub() { ! grep -h "runtime error:" "$TMP"/*out* 2>/dev/null || { echo "FAIL: UBSan report"; return 1; }; }
trap 'rc=$?; [ $rc = 0 ] && { no_ub || rc=1; }; rm -rf "$TMP"; exit $rc' EXIT

rc=0
timeout 60 "$CAIRN" run --kernel "$TESTOS" --net user \
  --cmdline "ping 10.0.2.2 3; ping 10.0.2.3; exit 0" </dev/null >"$TMP/out1" 2>&1 || rc=$?
tr -d '\r' <"$TMP/out1" >"$TMP/o"
[ "$rc" = 0 ] || { cat "$TMP/o"; fail "cairn exited $rc"; }
grep -q "^cpu0: ping 10.0.2.2 sent=3 received=3$" "$TMP/o" || { cat "$TMP/o"; fail "gateway ping"; }
grep -q "^cpu0: ping 10.0.2.3 sent=1 received=1$" "$TMP/o" || { cat "$TMP/o"; fail "DNS ping"; }
[ "$(grep -c "^cpu0: ping 10.0.2.2 seq=[123] bytes=32 ttl=[0-9]* time=[0-9]*us$" "$TMP/o")" = 3 ] ||
  { cat "$TMP/o"; fail "three replies from the gateway"; }
pass "the gateway answers 3 of 3 pings"

rc=0
timeout 60 "$CAIRN" run --kernel "$TESTOS" --net user \
  --cmdline "ping 10.0.2.99; exit 0" </dev/null >"$TMP/out2" 2>&1 || rc=$?
[ "$rc" = 112 ] || { cat "$TMP/out2"; fail "ping of nobody: exit $rc, expected 112"; }
grep -q "ping FAILED (no reply from 10.0.2.99)" "$TMP/out2" || { cat "$TMP/out2"; fail "ping of nobody"; }
pass "a ping of an address nobody has fails"

rc=0
timeout 60 "$CAIRN" run --kernel "$TESTOS" --net none \
  --cmdline "ping 10.0.2.2; exit 0" </dev/null >"$TMP/out3" 2>&1 || rc=$?
[ "$rc" = 112 ] || { cat "$TMP/out3"; fail "--net none: exit $rc, expected 112"; }
grep -q "ping FAILED (no virtio-net PCI device" "$TMP/out3" || { cat "$TMP/out3"; fail "--net none"; }
pass "--net none gives no NIC"
