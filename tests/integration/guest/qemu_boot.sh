# The test guest boots to "cairn-guest: ready" on QEMU microvm and q35 and runs
# its command line; `exit N` ends QEMU with the debug-exit status.
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"

for m in microvm q35; do
  rc=$(run_qemu $m 50 "$TMP/$m.log" "echo hello  world; cpus; exit 7")
  expect "$TMP/$m.log" "cairn-guest: cpus=1"
  expect "$TMP/$m.log" "cairn-guest: ready"
  [ "$(grep -c 'cairn-guest: ready' "$TMP/$m.log.txt")" = 1 ] || fail "$m: ready printed more than once"
  expect "$TMP/$m.log" "cpu0: hello  world"
  expect "$TMP/$m.log" "cpu0: cpus=1"
  [ "$rc" = "$(qemu_status 7)" ] || fail "$m: QEMU exit status $rc, expected $(qemu_status 7)"
  pass "$m boots, runs jobs, exits with the debug-exit code"
done

# Unknown commands are reported, not fatal; `reset` ends the VM (status 0 with -no-reboot).
rc=$(run_qemu microvm 30 "$TMP/r.log" "frobnicate; reset")
expect "$TMP/r.log" "cpu0: unknown command or wrong arguments: 'frobnicate'.*"
[ "$rc" = 0 ] || fail "reset: QEMU status $rc, expected 0"
pass "reset ends the VM"
