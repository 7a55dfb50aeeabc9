#!/bin/bash
# 100 snapshot/restore cycles in a chain (each restore snapshotted again),
# run under ASan in CI: no leak, no growth, the guest's count goes on.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos
N=${CYCLES:-100}
start_vm v0 --kernel "$TESTOS" --mem 32M --cmdline "count 50"
wait_for "$TMP/v0.out" "tick=2" 20 || fail "guest not counting"
prev=0
for ((i = 0; i < N; i++)); do
  ctl "v$i" '{"cmd":"snapshot","path":"'"$TMP/c$i"'","then":"quit"}'
  wait_vm "v$i" 0
  t=$(last_tick "$TMP/v$i.out")
  [ -n "$t" ] && [ "$t" -ge "$prev" ] || fail "cycle $i: count went from $prev to ${t:-nothing}"
  prev=$t
  # each snapshot is a memory layer on the one before (consolidated every
  # 16): all are kept, as a chain needs its parents
  start_vm "v$((i + 1))" --restore "$TMP/c$i" --no-verify
  wait_for "$TMP/v$((i + 1)).out" "tick=$((t + 2))" 20 || fail "cycle $i: restored guest does not count"
done
ctl "v$N" quit
wait_vm "v$N" 0
files=()
for ((i = 0; i <= N; i++)); do files+=("$TMP/v$i.out"); done
range=$(ticks_consecutive 0 "${files[@]}") || { echo "$range"; fail "ticks not consecutive across the cycles"; }
pass "$N snapshot/restore cycles; ticks $range with no gap and no repeat"
