# memfill/memverify agree; a flipped byte makes memverify fail and the exit
# code EXIT_VERIFY_FAILED (0x70).
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"

rc=$(run_qemu microvm 30 "$TMP/ok.log" "memfill 64 12345; memverify; memfill 16 0x10; memverify; exit 0")
expect "$TMP/ok.log" "cpu0: memfill mb=64 seed=12345 sum=[0-9a-f]{16}"
sum=$(sed -n 's/^cpu0: memfill mb=64 seed=12345 sum=//p' "$TMP/ok.log.txt")
expect "$TMP/ok.log" "cpu0: memverify ok sum=$sum"
expect "$TMP/ok.log" "cpu0: memfill mb=16 seed=16 sum=[0-9a-f]{16}"
[ "$rc" = "$(qemu_status 0)" ] || fail "status $rc, expected $(qemu_status 0)"
# the documented pattern (docs/guest.md), computed independently
[ "$sum" = e9fbb2dd24715a19 ] || fail "memfill 64 12345: sum $sum, expected e9fbb2dd24715a19"
pass "memfill/memverify ok, sum $sum"

# The same seed gives the same sum on every boot.
rc=$(run_qemu microvm 30 "$TMP/again.log" "memfill 64 12345; exit 0")
expect "$TMP/again.log" "cpu0: memfill mb=64 seed=12345 sum=$sum"
pass "memfill is deterministic"

rc=$(run_qemu microvm 30 "$TMP/flip.log" "memfill 32 7; flip; memverify; exit 0")
expect "$TMP/flip.log" "cpu0: flip offset=0x[0-9a-f]+"
off=$(sed -n 's/^cpu0: flip offset=//p' "$TMP/flip.log.txt")
expect "$TMP/flip.log" "cpu0: memverify FAILED at offset $off"
[ "$rc" = "$(qemu_status 112)" ] || fail "status $rc after a failed verify, expected $(qemu_status 112)"
pass "flip at $off detected; exit code 112"
