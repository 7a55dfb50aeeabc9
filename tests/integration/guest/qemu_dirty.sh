# `dirty MB RATE` keeps writing pages at RATE per second and reports every second.
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"

start_qemu microvm "$TMP/d.log" "dirty 16 2000; @1 dirty 8 0" -smp 2
wait_for "$TMP/d.log" "cpu0: dirty mb=16 pages=[0-9]+ pages_per_s=[0-9]+" 20 || fail "no progress line"
wait_for "$TMP/d.log" "cpu1: dirty mb=8 pages=[0-9]+ pages_per_s=[0-9]+" 10 || fail "no progress line on cpu1"
sleep 2.2
kill "$QPID" 2>/dev/null; wait "$QPID" 2>/dev/null
tr -d '\r' <"$TMP/d.log" >"$TMP/d.txt"
grep -qx "cpu0: dirty mb=16 rate=2000 started" "$TMP/d.txt" || fail "no start line"
# full seconds after the first: about 2000 pages each
rates=$(sed -n 's/^cpu0: dirty mb=16 pages=[0-9]* pages_per_s=//p' "$TMP/d.txt" | tail -n +2 | tr '\n' ' ')
[ -n "$rates" ] || fail "fewer than 2 progress lines"
for r in $rates; do
  [ "$r" -ge 1500 ] && [ "$r" -le 2500 ] || fail "rate $r pages/s, expected ~2000 (all: $rates)"
done
fast=$(sed -n 's/^cpu1: dirty mb=8 pages=[0-9]* pages_per_s=//p' "$TMP/d.txt" | tail -1)
[ "${fast:-0}" -gt 100000 ] || fail "dirty RATE 0 only did $fast pages/s"
pass "dirty at 2000 pages/s ($rates) and unthrottled ($fast pages/s)"
