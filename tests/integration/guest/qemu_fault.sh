# A user-mode exception is reported (vector, RIP, CPU) and ends the VM with
# EXIT_EXCEPTION (0x71), never a hang.
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"

for k in pf:14 gp:13 ud:6 de:0; do
  kind=${k%:*} vec=${k#*:}
  rc=$(run_qemu microvm 20 "$TMP/$kind.log" "fault $kind; echo after")
  [ "$rc" != 124 ] || fail "fault $kind: guest hung"
  expect "$TMP/$kind.log" "cairn-guest: EXCEPTION #[A-Z]+ vector=$vec cpu=0 mode=user rip=0x[0-9a-f]+ .*"
  [ "$rc" = "$(qemu_status 113)" ] || fail "fault $kind: status $rc, expected $(qemu_status 113)"
  grep -q "cpu0: after" "$TMP/$kind.log" && fail "fault $kind: job continued"
  pass "fault $kind reported as vector $vec"
done

# a fault in kernel mode (a system call handed an unmapped buffer)
rc=$(run_qemu microvm 20 "$TMP/k.log" "fault kernel")
expect "$TMP/k.log" "cairn-guest: EXCEPTION #PF vector=14 cpu=0 mode=kernel .*"
[ "$rc" = "$(qemu_status 113)" ] || fail "status $rc"
pass "kernel-mode fault reported"

# on another CPU too
rc=$(run_qemu microvm 20 "$TMP/smp.log" "@1 fault" -smp 2)
expect "$TMP/smp.log" "cairn-guest: EXCEPTION #PF vector=14 cpu=1 mode=user .*"
[ "$rc" = "$(qemu_status 113)" ] || fail "status $rc"
pass "fault on cpu1 reported"
