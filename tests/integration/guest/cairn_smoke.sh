# The test guest under cairn itself: 2 vCPUs, a disk, memory and disk jobs,
# the debug-exit code as cairn's exit status.
. "$SRCDIR/tests/integration/lib.sh"
need_kvm
need_testos
# cairn run is what this tests: a broken one is a failure, not a skip.
"$CAIRN" run --help >"$TMP/help.txt" 2>&1 || { cat "$TMP/help.txt"; fail "$CAIRN run --help failed"; }
DISKPAT="$BUILDDIR/guest/diskpat"
img=$TMP/disk.img
truncate -s 16M "$img"
"$DISKPAT" write "$img" 64 11 >/dev/null || fail "diskpat write"

timeout 30 "$CAIRN" run --kernel "$TESTOS" --mem 256M --cpus 2 --disk "$img" \
  --cmdline "@1 memfill 32 4; @1 memverify; diskverify 64 11; diskfill 100 12; memfill 16 1; memverify; sleep 300; exit 6" \
  </dev/null >"$TMP/c.log" 2>"$TMP/c.err"
rc=$?
tr -d '\r' <"$TMP/c.log" >"$TMP/c.txt"
cat "$TMP/c.txt"
for re in "cairn-guest: cpus=2" "cairn-guest: ready" "cpu0: diskverify ok n=64" \
  "cpu0: diskfill n=100 seed=12 ok" "cpu0: memverify ok sum=[0-9a-f]{16}" \
  "cpu1: memverify ok sum=[0-9a-f]{16}"; do
  grep -qxE -- "$re" "$TMP/c.txt" || { cat "$TMP/c.err"; fail "no line /$re/"; }
done
[ "$rc" = 6 ] || { cat "$TMP/c.err"; fail "cairn exit status $rc, expected 6"; }
"$DISKPAT" verify "$img" 100 12 || fail "host check of the guest's blocks"
pass "test guest under cairn: SMP, memory, disk, exit code"

timeout 20 "$CAIRN" run --kernel "$TESTOS" --mem 128M --cmdline "fault" </dev/null >"$TMP/f.log" 2>&1
rc=$?
grep -qE "cairn-guest: EXCEPTION #PF vector=14 cpu=0 mode=user" "$TMP/f.log" || { cat "$TMP/f.log"; fail "no exception report"; }
[ "$rc" = 113 ] || fail "fault: cairn exit status $rc, expected 113"
pass "user-mode fault under cairn reported, exit 113"
