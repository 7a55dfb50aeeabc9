#!/bin/bash
# Crash safety: a writer killed (SIGKILL) at random points.  Afterwards
# `qemu-img check` finds at most leaked clusters, every write acknowledged
# by a completed flush reads back, and the image takes new writes.  The
# same for commit and stream killed half-way: the content seen through the
# top image never changes.  Each kill is confirmed: the process must have
# been ended by that SIGKILL, not have finished first.
. "$SRCDIR/tests/integration/lib.sh"
command -v qemu-img >/dev/null || { echo "SKIP: qemu-img not installed"; exit 77; }
cd "$TMP"
C() { "$CAIRN" img "$@"; }
RANDOM=${CAIRN_SEED:-777}
SLOTS=1190
STRIDE=49152   # 1190 slots in 56 MiB (1200 ran past the end: the last writes failed)

check_ok() { # exit 0 (clean) or 3 (leaks only) are fine; corruptions are not
  qemu-img check "$1" >check.out 2>&1; local rc=$?
  [ $rc = 0 ] || [ $rc = 3 ] || { grep -v "^Leaked" check.out | head -12; fail "$2: qemu-img check exit $rc"; }
  [ $rc = 3 ] && leaks=$((leaks + 1))
  return 0
}

# kill_after MS: SIGKILL $pid after MS milliseconds and make sure that kill
# is what ended it (exit 137).  Returns 1 when it had finished by itself
# (successfully: the caller tries again with less time); fails the test
# when it ended any other way.
kill_after() {
  sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; local rc=$?
  [ $rc = 137 ] && return 0
  [ $rc = 0 ] || { cat op.err; fail "$WHAT: ended by itself with exit $rc, not by the kill"; }
  echo "$WHAT: finished within $1 ms, before the kill: again with less time"
  return 1
}

leaks=0
for round in $(seq 1 10); do
  cs=$(( round % 3 == 0 ? 4096 : round % 3 == 1 ? 65536 : 512 ))
  WHAT="round $round (cluster $cs)"; max_ms=600
  for attempt in 1 2 3 4 5 6; do
    rm -f img.qcow2 base.qcow2
    if (( round % 2 )); then
      C create -o cluster_size=$cs img.qcow2 56M || fail "round $round: create"
    else
      qemu-img create -q -f qcow2 base.qcow2 56M || fail "round $round: qemu-img create"
      qemu-io -c "write -P 0xee 0 56M" base.qcow2 >/dev/null || fail "round $round: qemu-io"
      C create -b base.qcow2 -F qcow2 -o cluster_size=$cs img.qcow2 || fail "round $round: create"
    fi
    cmds=(); offs=(); lens=()
    for ((i = 0; i < SLOTS; i++)); do
      off=$(( i * STRIDE + RANDOM % 4096 )); len=$(( 1 + RANDOM % (STRIDE - 4096) ))
      offs+=($off); lens+=($len)
      cmds+=(-c "write -P $(( i % 250 + 1 )) $off $len")
      (( i % 16 == 15 )) && cmds+=(-c "flush")
    done
    "$CAIRN" img io -v "${cmds[@]}" img.qcow2 >acks.txt 2>op.err &
    pid=$!
    kill_after $(( RANDOM % max_ms )) && break
    max_ms=$(( max_ms / 2 + 1 ))
    [ $attempt = 6 ] && fail "$WHAT: the writer always finished before the kill"
  done
  check_ok img.qcow2 "round $round (cluster $cs)"
  # The last acknowledged flush: every write before it must be there.
  last=$(tail -n 1 acks.txt | awk '{print $2}'); last=${last:--1}
  durable=0; idx=0; w=0
  for ((k = 0; k <= last; k++)); do
    if [[ "${cmds[2 * k + 1]}" == flush ]]; then durable=$w; fi
    [[ "${cmds[2 * k + 1]}" == write* ]] && w=$((w + 1))
  done
  verify=()
  for ((i = 0; i < durable; i++)); do
    verify+=(-c "read -P $(( i % 250 + 1 )) ${offs[i]} ${lens[i]}")
  done
  if [ ${#verify[@]} -gt 0 ]; then
    C io "${verify[@]}" img.qcow2 || fail "round $round: a flushed write was lost"
  fi
  # The image stays usable.
  C io -c "write -P 1 0 200k" -c "read -P 1 0 200k" img.qcow2 || fail "round $round: image unusable after the crash"
  check_ok img.qcow2 "round $round after new writes"
  echo "round $round: cluster $cs, killed after $((last + 1)) commands, $durable writes verified"
done
pass "writer killed at random points: no corruption ($leaks rounds with leaks only), flushed data intact"

# Commit and stream killed half-way: the top image reads the same.  Each
# is timed once on copies, so that the kill falls within it.
qemu-img create -q -f qcow2 b.qcow2 64M || fail "qemu-img create b.qcow2"
qemu-io -c "write -P 0x21 0 64M" b.qcow2 >/dev/null || fail "qemu-io b.qcow2"
make_top() {
  rm -f t.qcow2
  C create -b b.qcow2 -F qcow2 -o cluster_size=4096 t.qcow2 >/dev/null || fail "create t.qcow2"
  C io -c "write -P 0x42 0 40M" -c "write -z 50M 2M" t.qcow2 || fail "write t.qcow2"
}
declare -A took_ms
for op in commit stream; do
  rm -rf timing; mkdir timing && cp b.qcow2 timing/ || fail "copy for timing"
  (cd timing && make_top) || fail "$op (timing run set-up)"
  t0=$(date +%s%N)
  (cd timing && C $op t.qcow2 >/dev/null) || fail "$op (timing run)"
  took_ms[$op]=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "$op: about ${took_ms[$op]} ms here"
done
rm -rf timing
for round in 1 2 3 4; do
  if (( round % 2 )); then op=(commit t.qcow2); else op=(stream t.qcow2); fi
  WHAT="${op[0]} round $round"; max_ms=${took_ms[${op[0]}]}
  for attempt in 1 2 3 4 5 6; do
    make_top
    qemu-img convert -O raw t.qcow2 before.raw || fail "qemu-img convert t.qcow2"
    "$CAIRN" img "${op[@]}" >/dev/null 2>op.err & pid=$!
    kill_after $(( RANDOM % (max_ms + 1) )) && break
    max_ms=$(( max_ms / 2 ))
    [ $attempt = 6 ] && fail "$WHAT: ${op[0]} always finished before the kill"
  done
  check_ok t.qcow2 "${op[0]} round $round (top)"
  check_ok b.qcow2 "${op[0]} round $round (base)"
  C compare t.qcow2 before.raw >/dev/null || fail "${op[0]} killed: the top no longer reads the same"
done
pass "commit and stream killed half-way keep the content seen through the top"
