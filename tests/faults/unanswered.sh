# A running VM that does not answer (its control socket gone for a while)
# is never guessed at by check --repair (fault finding F6): an in-place
# revert whose outcome could not be recorded (the shim fails its second
# vm.json update) stays pending, and the restore overlay the VM now writes
# to is not removed as a leftover.  Before the fix check --repair recorded
# "the interrupted revert had not happened", kept vm.json on the old layer
# and deleted the overlay under the VM; the next check said "the running
# VM writes to ..., vm.json names ...".
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
SHIM=${SHIM:?the fault shim}
# a sanitizer runtime the binary links must come first (as campaign.py does)
PRE=$(ldd "$CAIRN" | grep -oE '/[^ ]*lib(asan|ubsan)\.so[.0-9]*' | tr '\n' ':')$SHIM
C=$CAIRN
B=$TMP/vm

mk vm --disk-size 16M --cmdline "echo up; shell"
up vm
con vm "diskfill 300 1" "seed=1 ok"
"$C" snapshot create "$B" m1 >/dev/null || fail m1
con vm "diskfill 300 2" "seed=2 ok"
# the revert: the VM moves onto a restore overlay, the record of it fails
CAIRN_FAULT="path=$B/vm.json.tmp,op=rename,nth=2,errno=EIO" LD_PRELOAD=$PRE \
  "$C" snapshot revert "$B" m1 2>"$TMP/err" && fail "the revert's record should have failed"
grep -q "stays recorded as pending" "$TMP/err" || fail "the revert's message: $(cat "$TMP/err")"
grep -q '"pending"' "$B/vm.json" || fail "no pending revert"
ov=$("$C" control "$B/control.sock" '{"cmd":"status"}' |
  python3 -c "import json,sys; print(json.load(sys.stdin)['disks'][0])")
[ -f "$ov" ] || fail "the VM's disk $ov"

# the VM cannot be asked: nothing is settled, nothing removed
mv "$B/control.sock" "$B/control.sock.away"
"$C" check --repair "$B" >"$TMP/out" 2>&1 && fail "check --repair settled without asking the VM"
grep -q "cannot ask the running VM where it writes" "$TMP/out" || fail "check --repair: $(cat "$TMP/out")"
[ -f "$ov" ] || fail "check --repair removed the disk the running VM writes to"
grep -q '"pending"' "$B/vm.json" || fail "the pending revert was dropped"
"$C" check "$B" >/dev/null 2>&1 && fail "check is clean although the VM cannot be asked"

# answered again: settled from what the VM says
mv "$B/control.sock.away" "$B/control.sock"
"$C" check --repair "$B" >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "check --repair"; }
grep -q "recorded the interrupted revert" "$TMP/out" || fail "the revert was not recorded: $(cat "$TMP/out")"
check_ok vm
con vm "diskverify 300 1" "diskverify ok"
"$C" stop "$B" >/dev/null || fail stop
check_ok vm; qcheck_all vm
pass "a running VM that does not answer is not guessed at; answered, its revert is recorded"
