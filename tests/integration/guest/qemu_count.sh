# `count HZ` prints tick=1,2,... at HZ from the timer.
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"

start_qemu microvm "$TMP/c.log" "count 20; @0 echo never"
wait_for "$TMP/c.log" "cairn-guest: ready" 20 || fail "no ready"
t0=$(date +%s%N)
wait_for "$TMP/c.log" "cpu0: tick=5\b" 10 || fail "no tick=5"
t5=$(date +%s%N)
wait_for "$TMP/c.log" "cpu0: tick=25\b" 10 || fail "no tick=25"
t25=$(date +%s%N)
kill "$QPID" 2>/dev/null; wait "$QPID" 2>/dev/null
ms=$(( (t25 - t5) / 1000000 ))
echo "20 ticks took $ms ms (expected ~1000)"
[ "$ms" -ge 700 ] && [ "$ms" -le 2500 ] || fail "tick rate off: 20 ticks in $ms ms"
tr -d '\r' <"$TMP/c.log" | grep -E '^cpu0: tick=' | head -25 | awk -F= '$2 != NR { exit 1 }' ||
  fail "ticks not numbered 1,2,3..."
grep -q "never" "$TMP/c.log" && fail "a job after count ran"
pass "count ticks at 20 Hz"
