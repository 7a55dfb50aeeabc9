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

# Fills at offsets and scattered writes: memverify checks all of them
# (docs/guest.md, "What memverify checks"); a flip in a later fill is seen.
rc=$(run_qemu microvm 60 "$TMP/scat.log" "memfill 32 1; memfill 4 2 8; memscatter 1000 5; memverify; memfill 2 3 40; memscatter 20000 6; memverify; memfill 1 4 1; memverify; flip; memverify; exit 0")
expect "$TMP/scat.log" "cpu0: memfill mb=4 seed=2 off=8 sum=[0-9a-f]{16}"
expect "$TMP/scat.log" "cpu0: memscatter n=1000 seed=5 pages=1000"
expect "$TMP/scat.log" "cpu0: memscatter n=20000 seed=6 pages=10752"
[ "$(grep -c '^cpu0: memverify ok sum=' "$TMP/scat.log.txt")" = 3 ] || { cat "$TMP/scat.log.txt"; fail "memverify after fills at offsets and scatters"; }
off=$(sed -n 's/^cpu0: flip offset=//p' "$TMP/scat.log.txt")
expect "$TMP/scat.log" "cpu0: memverify FAILED at offset $off"
[ "$rc" = "$(qemu_status 112)" ] || fail "status $rc after the flip, expected $(qemu_status 112)"
pass "memfill at offsets, memscatter: memverify ok; a flip at $off detected"
