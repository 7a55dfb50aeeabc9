#!/bin/bash
# Incremental memory through the manager (issue 15 §4-5): a chain of
# snapshots of a running bundle are memory layers; `snapshot create --full`
# writes a full image; deleting middle snapshots (and the chain's full image)
# moves their pages into the layers on them, frees space, and every remaining
# snapshot restores (new process, and `snapshot revert` in place) with the
# memverify sum it had; kill -9 of `snapshot delete` during its memory merge
# and of the VM during a layer write: `check --repair` converges and every
# committed snapshot still restores and verifies.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN
B=$TMP/vm
T0=$SECONDS

# jf FILE KEY: a value of a JSON file ("" when absent); KEY a.b for a member of a member
jf() { python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1" "$2"; }
# last_sum: the sum of the last memverify ok in the console
last_sum() { tr -d '\r' <"$B/console.log" | sed -n 's/^cpu0: memverify ok sum=\([0-9a-f]\{16\}\)$/\1/p' | tail -n 1; }
# verify_now: memverify in the running VM; its sum in VSUM
verify_now() {
  local n; n=$(grep -c "memverify ok" "$B/console.log")
  # the whole sum: the guest writes a line 16 bytes at a time
  con vm memverify "memverify ok sum=[0-9a-f]{16}|memverify FAILED" 30
  [ "$(grep -c "memverify ok" "$B/console.log")" -gt "$n" ] || fail "memverify failed in the running VM"
  VSUM=$(last_sum)
}
declare -A SUM ID
# msnap NAME [FLAGS]: snapshot create --json; sets KIND DEPTH, records the
# snapshot's id and the memverify sum it holds
msnap() {
  local name=$1; shift
  "$C" snapshot create "$B" "$name" --json "$@" >"$TMP/snap.json" || fail "snapshot create $name $*"
  KIND=$(jf "$TMP/snap.json" vmm.memory) DEPTH=$(jf "$TMP/snap.json" vmm.memory_depth)
  ID[$name]=$(jf "$TMP/snap.json" id)
  verify_now
  SUM[$name]=$VSUM
}
# restore_verify NAME: its snapshot in a new process (overlays in $TMP/rd):
# memverify gives SUM[NAME]
restore_verify() {
  local dir=$B/snapshots/${ID[$1]} pid rc=0 i
  mkdir -p "$TMP/rd"; rm -f "$TMP/rd.in"; mkfifo "$TMP/rd.in"
  "$C" run --restore "$dir" --disk-dir "$TMP/rd" <"$TMP/rd.in" >"$TMP/rd.out" 2>&1 &
  pid=$!
  exec 8>"$TMP/rd.in"
  printf 'memverify\r' >&8
  for ((i = 0; i < 600; i++)); do grep -q "memverify \(ok\|FAILED\)" "$TMP/rd.out" && break; sleep 0.1; done
  printf 'exit 0\r' >&8
  timeout 30 tail -s 0.05 --pid=$pid -f /dev/null || kill -9 $pid
  wait $pid || rc=$?
  exec 8>&-
  rm -f "$TMP"/rd/*
  grep -q "memverify ok sum=${SUM[$1]}" "$TMP/rd.out" && [ $rc = 0 ] ||
    { tail -n 5 "$TMP/rd.out"; fail "restore of $1 (${ID[$1]}): exit $rc, expected memverify ok sum=${SUM[$1]}"; }
}
# restore_remaining: every memory snapshot in vm.json restores and verifies;
# their number in NREST
restore_remaining() {
  local id name mem
  NREST=0
  while read -r id name mem; do
    [ "$mem" = 1 ] || continue
    [ -n "${SUM[$name]:-}" ] || fail "snapshot $name ($id) was not made by this test"
    ID[$name]=$id
    restore_verify "$name"
    NREST=$((NREST + 1))
  done < <(snap_ids vm)
}
# delete NAME: snapshot delete --json, freed_bytes (in FREED) > 0
delete() {
  "$C" snapshot delete "$B" "$1" --json >"$TMP/del.json" || fail "snapshot delete $1"
  FREED=$(jf "$TMP/del.json" freed_bytes)
  [ "${FREED:-0}" -gt 0 ] || fail "delete of $1 freed ${FREED:-nothing}: $(cat "$TMP/del.json")"
  unset "SUM[$1]"
}

"$C" create "$B" --kernel "$TESTOS" --mem 128M --disk-size 16M --cmdline "memfill 32 1; shell" >/dev/null ||
  fail create
up vm
wait_for "$B/console.log" "memfill mb=32 seed=1" 60 || fail "memfill at boot"

# ---- a chain of layers, and --full ----
msnap c1
[ "$KIND" = full ] || fail "c1, the first snapshot after the boot, is $KIND: $(cat "$TMP/snap.json")"
for k in 2 3 4 5 6; do
  con vm "memfill 2 $((10 + k)) $((2 * k))" "memfill mb=2 seed=$((10 + k))"
  msnap "c$k"
  [ "$KIND" = layer ] && [ "$DEPTH" = $((k - 1)) ] || fail "c$k: $(cat "$TMP/snap.json")"
done
pass "c1 full, c2..c6 layers of depth 1..5 (the --json report's vmm.memory/memory_depth)"
con vm "memfill 64 5" "memfill mb=64 seed=5" 60
msnap cf --full
[ "$KIND" = full ] && [ "$(jf "$TMP/snap.json" vmm.memory_full_why)" = "asked for" ] ||
  fail "snapshot create --full: $(cat "$TMP/snap.json")"
con vm "memfill 2 7 40" "memfill mb=2 seed=7 off=40"
msnap c7
[ "$KIND" = layer ] && [ "$DEPTH" = 1 ] || fail "c7 on cf: $(cat "$TMP/snap.json")"
"$C" snapshot create "$B" x --full --disk-only >"$TMP/err" 2>&1 && fail "--full --disk-only accepted"
grep -q "disk-only" "$TMP/err" || fail "--full --disk-only: $(cat "$TMP/err")"
pass "snapshot create --full: a full image (memory_full_why \"asked for\"); the next snapshot is a layer on it; --full --disk-only refused"
# a disk-only snapshot of the running VM drops its memory image: the VM's
# memory parent stays c7, so the next snapshot is a layer of depth 2, not full
"$C" snapshot create "$B" dk1 --disk-only >"$TMP/err" 2>&1 || fail "snapshot create --disk-only: $(cat "$TMP/err")"
msnap c8
[ "$KIND" = layer ] && [ "$DEPTH" = 2 ] || fail "c8 after a disk-only snapshot: $(cat "$TMP/snap.json")"
pass "after a disk-only snapshot of the running VM the next one is still a layer on c7 (depth 2)"
"$C" snapshot list "$B" --json >"$TMP/list.json" || fail "snapshot list"
python3 - "$TMP/list.json" <<'PY' || fail "snapshot list: memory bytes"
import json, sys
s = {e["name"]: e for e in json.load(open(sys.argv[1]))["snapshots"]}
for n in ("c2", "c6", "c7"):
    assert s[n]["memory_own_bytes"] > 0 and s[n]["memory_shared_bytes"] >= s["c1" if n != "c7" else "cf"]["memory_own_bytes"], (n, s[n])
assert s["c1"]["memory_shared_bytes"] == 0 and s["cf"]["memory_shared_bytes"] == 0, s
PY
pass "snapshot list: memory_own_bytes, and memory_shared_bytes counting the chain below"

# ---- deletes: middle snapshots and the chain's full image ----
delete c3; f3=$FREED
delete c5; f5=$FREED
delete c1; f1=$FREED
check_ok vm
restore_remaining
pass "deleted c3 ($f3 bytes freed), c5 ($f5), the full c1 ($f1); cairn check ok; the $NREST remaining snapshots restore in new processes, each with its memverify sum"
"$C" snapshot revert "$B" c4 --json >"$TMP/rev.json" || fail "revert to c4"
verify_now; [ "$VSUM" = "${SUM[c4]}" ] || fail "memverify after the revert to c4"
"$C" snapshot revert "$B" c2 >/dev/null || fail "revert to c2"
verify_now; [ "$VSUM" = "${SUM[c2]}" ] || fail "memverify after the revert to c2"
con vm "memfill 1 8 20" "memfill mb=1 seed=8 off=20"
msnap r2
[ "$KIND" = layer ] || fail "the snapshot after a revert to c2 is not a layer: $(cat "$TMP/snap.json")"
restore_verify r2
pass "cairn snapshot revert in place to c4 and c2 (now a full image: it took in c1's pages): memverify sums back; the next snapshot a layer on c2 (depth $DEPTH)"

# ---- kill -9 of snapshot delete during its memory merge ----
# cf (full, ~100 MiB) goes: c7 takes in every page of it that it does not hold
"$C" snapshot delete "$B" cf >"$TMP/kdel.out" 2>&1 &
kpid=$!
for ((i = 0; i < 3000; i++)); do
  compgen -G "$B/snapshots/${ID[c7]}/memory.img.tmp" >/dev/null && break
  kill -0 $kpid 2>/dev/null || break
  sleep 0.01
done
if kill -9 $kpid 2>/dev/null; then
  wait $kpid
  compgen -G "$B/snapshots/${ID[c7]}/memory.img.tmp" >/dev/null &&
    echo "killed snapshot delete while it wrote c7's memory.img.tmp"
else
  wait $kpid; echo "note: the delete ended before the kill ($(cat "$TMP/kdel.out"))"
fi
"$C" check "$B" --repair >"$TMP/rep.out" 2>&1 || { cat "$TMP/rep.out"; fail "check --repair after the killed delete"; }
check_ok vm
[ -z "$(snap_ids vm | grep ' cf ')" ] || fail "check --repair did not finish the delete of cf"
[ ! -e "$B/snapshots/${ID[c7]}/memory.img.tmp" ] || fail "memory.img.tmp left after the repair"
unset "SUM[cf]"
restore_verify c7
pass "kill -9 of snapshot delete in its memory merge: check --repair finished it ($(tr '\n' ' ' <"$TMP/rep.out" | head -c 160)); c7, which took in cf's pages, restores and verifies"

# ---- kill -9 of the VM while it writes a layer ----
con vm "memfill 64 9" "memfill mb=64 seed=9 sum=[0-9a-f]{16}" 60
# a plain memfill starts memverify's record over: its sum is big's
SUM[big]=$(tr -d '\r' <"$B/console.log" | sed -n 's/^cpu0: memfill mb=64 seed=9 sum=//p' | tail -n 1)
"$C" snapshot create "$B" big >"$TMP/kbig.out" 2>&1 &
kpid=$!
vpid=$(head -n1 "$B/run.lock")
for ((i = 0; i < 3000; i++)); do
  compgen -G "$B/snapshots/*.tmp-*/memory.img.tmp" >/dev/null && break
  kill -0 $kpid 2>/dev/null || break
  sleep 0.01
done
# the VM and its children: after a revert its RAM is mapped from images, and
# a forked child writes the snapshot (docs/snapshots.md)
kids=$(pgrep -P "$vpid")
if compgen -G "$B/snapshots/*.tmp-*/memory.img.tmp" >/dev/null; then
  kill -9 "$vpid" $kids; echo "killed the VM (and its writer) while they wrote the layer of snapshot big"
else
  echo "note: the snapshot was written before the kill"; kill -9 "$vpid" $kids
fi
wait $kpid; echo "snapshot create: $(tr '\n' ' ' <"$TMP/kbig.out" | head -c 200)"
timeout 10 tail -s 0.05 --pid="$vpid" -f /dev/null
"$C" check "$B" --repair >"$TMP/rep.out" 2>&1 || { cat "$TMP/rep.out"; fail "check --repair after the killed VM"; }
check_ok vm
[ -z "$(compgen -G "$B/snapshots/*.tmp-*")" ] || fail "a snapshot's temporary directory is left: $(ls "$B/snapshots")"
snap_ids vm >"$TMP/ids"
if grep -q ' big 1$' "$TMP/ids"; then
  echo "note: snapshot big was committed before the kill landed: it must restore whole"
fi
pass "kill -9 of the VM and its forked writer during a layer write: check --repair converges; big is $(grep -q ' big 1$' "$TMP/ids" && echo 'whole' || { grep -q ' big ' "$TMP/ids" && echo 'kept disk only' || echo 'gone'; })"

# The same with the writer thread (a VM that booted, its RAM not mapped from
# an image): the VM boots again, a full snapshot, then a layer it dies writing.
up vm
wait_for "$B/console.log" "memfill mb=32 seed=1" 60 || fail "memfill at the new boot"
msnap d1
[ "$KIND" = full ] || fail "d1, after a boot, is $KIND"
con vm "memfill 64 3" "memfill mb=64 seed=3 sum=[0-9a-f]{16}" 60
SUM[big2]=$(tr -d '\r' <"$B/console.log" | sed -n 's/^cpu0: memfill mb=64 seed=3 sum=//p' | tail -n 1)
vpid=$(head -n1 "$B/run.lock")
"$C" snapshot create "$B" big2 >"$TMP/kbig.out" 2>&1 &
kpid=$!
for ((i = 0; i < 3000; i++)); do
  compgen -G "$B/snapshots/*.tmp-*/memory.img.tmp" >/dev/null && break
  kill -0 $kpid 2>/dev/null || break
  sleep 0.01
done
[ -z "$(pgrep -P "$vpid")" ] || echo "note: the VM has children: $(pgrep -P "$vpid" | tr '\n' ' ')"
compgen -G "$B/snapshots/*.tmp-*/memory.img.tmp" >/dev/null && echo "killing the VM while its writer thread writes big2's layer"
kill -9 "$vpid"
wait $kpid; echo "snapshot create: $(tr '\n' ' ' <"$TMP/kbig.out" | head -c 200)"
timeout 10 tail -s 0.05 --pid="$vpid" -f /dev/null
"$C" check "$B" --repair >"$TMP/rep.out" 2>&1 || { cat "$TMP/rep.out"; fail "check --repair after the killed VM"; }
check_ok vm
[ -z "$(compgen -G "$B/snapshots/*.tmp-*")" ] || fail "a snapshot's temporary directory is left: $(ls "$B/snapshots")"
snap_ids vm >"$TMP/ids"
restore_remaining
pass "kill -9 of the VM while its writer thread wrote a layer: check --repair converges; big2 is $(grep -q ' big2 1$' "$TMP/ids" && echo 'whole' || { grep -q ' big2 ' "$TMP/ids" && echo 'kept disk only' || echo 'gone'; }); all $NREST memory snapshots left restore and verify"
"$C" snapshot create "$B" x --full >"$TMP/err" 2>&1 && fail "--full of a stopped VM accepted"
grep -q "not running" "$TMP/err" || fail "--full of a stopped VM: $(cat "$TMP/err")"
pass "snapshot create --full of a stopped VM is refused: $(cat "$TMP/err")"
echo "total $((SECONDS - T0)) s"
