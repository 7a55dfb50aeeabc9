#!/bin/bash
# Incremental memory (issue 15): a layer holds the pages that changed, not
# the pages the guest only read.  For each snapshot writer (the thread
# through userfaultfd write protection, and the forked child):
#  1. After a full snapshot of 64 MiB filled, a snapshot with nothing done
#     in between gives the cost of an idle interval (the guest's stack and
#     bookkeeping: a few pages).  A memverify of the 64 MiB (reads only)
#     then a snapshot: the layer costs no more than that plus a margin,
#     twice in a row (after a full image, and after a layer).
#  2. Rewriting 2 MiB with the words they already hold: nothing changed,
#     the layer stays small.  Then other words there (kept), then the first
#     words again (kept too: the layer's parent holds the second ones).
#  3. After a revert (to the full image), a 2 MiB fill is kept, and the next
#     read-only interval is small again.
#  4. Every one of these snapshots restores in a new process with the
#     memverify sum the VM had when it was taken.
#  5. A VM restored in a new process in copy mode (its RAM anonymous: the
#     thread writer): a 2 MiB fill is kept, reading is small, both restore.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos
MIB=1048576
MARGIN=$((64 * 1024))

# snap VM NAME: snapshot into $TMP/NAME; sets KIND BYTES
snap() {
  ctl "$1" '{"cmd":"snapshot","path":"'"$TMP/$2"'"}'
  KIND=$(jget memory) BYTES=$(jget memory_bytes) SAME=$(jget memory_unchanged_pages)
}
verify() { sum_of "$(type_wait "$1" memverify "memverify (ok|FAILED)" 30)"; }
# small NAME: the last snapshot was a layer no bigger than an idle one's
small() {
  [ "$KIND" = layer ] && [ "$BYTES" -le $((IDLE + MARGIN)) ] ||
    fail "$W $1: memory $KIND, $BYTES bytes; an idle interval costs $IDLE (allowed $((IDLE + MARGIN))): $REPLY_JSON"
}
# holds NAME MIN: the last snapshot was a layer of at least MIN bytes
holds() {
  [ "$KIND" = layer ] && [ "$BYTES" -ge "$2" ] ||
    fail "$W $1: memory $KIND, $BYTES bytes, expected a layer of at least $2: $REPLY_JSON"
}
# restore_verify DIR SUM: cairn run --restore DIR; memverify gives SUM
restore_verify() {
  rm -f "$TMP/r.in"; mkfifo "$TMP/r.in"
  "$CAIRN" run --restore "$1" <"$TMP/r.in" >"$TMP/r.out" 2>&1 &
  local pid=$! rc=0 s
  exec 8>"$TMP/r.in"
  s=$(verify r)
  [ "$s" = "$2" ] || { exec 8>&-; fail "restore of $1: sum=$s, expected sum=$2"; }
  printf 'exit 0\r' >&8
  timeout 30 tail -s 0.05 --pid=$pid -f /dev/null || fail "restore of $1 did not end"
  wait $pid || rc=$?
  exec 8>&-
  [ $rc = 0 ] || { tail "$TMP/r.out"; fail "restore of $1 exited $rc"; }
}

for W in thread fork; do
  if [ $W = fork ]; then export CAIRN_SNAPSHOT_WRITER=fork; else unset CAIRN_SNAPSHOT_WRITER; fi
  rm -f "$TMP/a.in"; mkfifo "$TMP/a.in"
  "$CAIRN" run --kernel "$TESTOS" --mem 256M --control "$TMP/a.sock" \
    --cmdline "memfill 64 1; shell" <"$TMP/a.in" >"$TMP/a.out" 2>&1 &
  PID_a=$!
  exec 7>"$TMP/a.in"
  wait_for "$TMP/a.out" "cairn> " 30 || fail "no shell"
  declare -A SUM=()
  # ---- 1. read-only intervals ----
  snap a $W-s0
  [ "$KIND" = full ] || fail "$W s0: $REPLY_JSON"
  writer=$(jget writer)
  [ "$writer" = $W ] || echo "note: asked for the $W writer, the reply says '$writer'"
  sleep 0.3
  snap a $W-idle
  IDLE=$BYTES
  [ "$KIND" = layer ] && [ "$IDLE" -lt $MIB ] || fail "$W: an idle interval gave $REPLY_JSON"
  SUM[s0]=$(verify a)
  snap a $W-v1
  small v1
  v1="$BYTES bytes ($SAME pages left out)"
  [ "$(verify a)" = "${SUM[s0]}" ] || fail "$W: memverify changed"
  snap a $W-v2
  small v2
  pass "$W writer: after reading 64 MiB the layer holds $v1, then $BYTES bytes (an idle interval: $IDLE)"
  # ---- 2. the same words rewritten, other words, the first words again ----
  type_wait a "memfill 2 1 4" "memfill mb=2 seed=1 off=4 " 20 >/dev/null
  [ "$(verify a)" = "${SUM[s0]}" ] || fail "$W: memfill 2 1 4 changed the sum"
  snap a $W-a1
  small a1
  a1="$BYTES bytes ($SAME pages left out)"
  type_wait a "memfill 2 2 4" "memfill mb=2 seed=2 off=4 " 20 >/dev/null
  SUM[b1]=$(verify a)
  snap a $W-b1
  holds b1 $((2 * MIB))
  b1=$BYTES
  type_wait a "memfill 2 1 4" "memfill mb=2 seed=1 off=4 " 20 >/dev/null
  [ "$(verify a)" = "${SUM[s0]}" ] || fail "$W: back to seed 1, memverify differs from s0"
  snap a $W-c1
  holds c1 $((2 * MIB))
  pass "$W writer: 2 MiB rewritten with the words they held: $a1; other words: $b1; the first again: $BYTES"
  # ---- 3. after a revert ----
  ctl a '{"cmd":"revert","path":"'"$TMP/$W-s0"'"}'
  type_wait a "memfill 2 3 8" "memfill mb=2 seed=3 off=8 " 20 >/dev/null
  SUM[d1]=$(verify a)
  snap a $W-d1
  holds d1 $((2 * MIB))
  d1=$BYTES
  [ "$(verify a)" = "${SUM[d1]}" ] || fail "$W: memverify changed after d1"
  snap a $W-d2
  small d2
  pass "$W writer: after a revert, a 2 MiB fill: $d1 bytes; then reading: $BYTES"
  ctl a quit
  exec 7>&-
  wait_vm a 0
  # ---- 4. restores ----
  for s in v1:s0 v2:s0 a1:s0 b1:b1 c1:s0 d1:d1 d2:d1; do
    restore_verify "$TMP/$W-${s%%:*}" "${SUM[${s##*:}]}"
  done
  pass "$W writer: v1 v2 a1 b1 c1 d1 d2 each restore with their memverify sums"
done
unset CAIRN_SNAPSHOT_WRITER

# ---- 5. after a restore in copy mode ----
rm -f "$TMP/e.in"; mkfifo "$TMP/e.in"
"$CAIRN" run --restore "$TMP/thread-b1" --restore-mode copy --control "$TMP/e.sock" \
  <"$TMP/e.in" >"$TMP/e.out" 2>&1 &
PID_e=$!
exec 7>"$TMP/e.in"
W=copy
[ "$(verify e)" = "${SUM[b1]}" ] || fail "copy restore of b1: memverify"
snap e e-idle
IDLE=$BYTES
type_wait e "memfill 2 4 12" "memfill mb=2 seed=4 off=12 " 20 >/dev/null
SUM[e1]=$(verify e)
snap e e1
holds e1 $((2 * MIB))
e1=$BYTES
[ "$(verify e)" = "${SUM[e1]}" ] || fail "memverify changed after e1"
snap e e2
[ "$(jget writer)" = thread ] || echo "note: the restored VM's writer: $(jget writer)"
small e2
ctl e quit
exec 7>&-
wait_vm e 0
restore_verify "$TMP/e1" "${SUM[e1]}"
restore_verify "$TMP/e2" "${SUM[e1]}"
pass "restored in copy mode: a 2 MiB fill: $e1 bytes, then reading: $BYTES ($SAME pages left out); both restore"
unset CAIRN_SNAPSHOT_WRITER
