#!/bin/bash
# Incremental memory (issue 15 §5): snapshot memory images are layers that
# hold the pages changed since the snapshot the VM descends from.
#  1. A chain of 10: a full image, then layers after memfill of 2 MiB at a
#     new offset with a new seed (7), a disk read into RAM by the device
#     (diskread: only the VMM writes guest RAM), scattered one-word writes
#     (memscatter); each reply says "layer" with the depth growing, and
#     memory_bytes about what changed (not the RAM).
#  2. A changed or missing parent: the child's restore (and revert) is
#     refused naming the parent, and no guest runs.
#  3. Every snapshot of the chain restores in a new process and in place
#     (revert), and memverify gives the sum of what was filled at it; the
#     snapshot after a revert is a layer on the snapshot reverted to.
#  4. {"memory":"full"} gives a full image.
#  5. Two vCPUs writing all the time: layers taken meanwhile restore, and
#     both vCPUs' memverify runs pass in the restored VM.
#  6. A layer that fails (no room) gives its changed pages back: the next
#     layer on the same parent holds them, and restores.
#  7. Consolidation (docs/snapshots.md): the 16th layer since the full image
#     stands on it (depth 1, holding the pages of the layers between), the
#     32nd on the 16th (depth 2), the ones between are plain layers on their
#     parent; the layers at and around each step restore with their sums.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos
DISKPAT="$BUILDDIR/guest/diskpat"
MIB=1048576

# snap VM NAME [JSON MEMBERS]: snapshot of VM into $TMP/NAME; sets KIND DEPTH
# BYTES.  meta.json records the pause too, whichever writer wrote it (the
# forked one, after a revert, recorded 0).
snap() {
  ctl "$1" '{"cmd":"snapshot","path":"'"$TMP/$2"'"'"${3:+,$3}"'}'
  KIND=$(jget memory) DEPTH=$(jget memory_depth) BYTES=$(jget memory_bytes)
  local pause
  pause=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stats"]["pause_us"])' "$TMP/$2/meta.json")
  [ "$pause" -gt 0 ] || fail "$2: meta.json says pause_us $pause; the reply: $REPLY_JSON"
}

# expect_layer NAME DEPTH MIN MAX: the last snap was a layer of DEPTH with
# memory_bytes in [MIN, MAX]
expect_layer() {
  [ "$KIND" = layer ] && [ "$DEPTH" = "$2" ] || fail "$1: memory $KIND depth $DEPTH, expected a layer of depth $2: $REPLY_JSON"
  [ "$BYTES" -ge "$3" ] && [ "$BYTES" -le "$4" ] ||
    fail "$1: memory_bytes $BYTES, expected $3..$4: $REPLY_JSON"
}

# sum64 A +/- B ...: 64-bit wrapping arithmetic on hex sums
sum64() { python3 -c '
import sys
a = sys.argv[1:]; v = int(a[0], 16)
for op, x in zip(a[1::2], a[2::2]): v = v + int(x, 16) if op == "+" else v - int(x, 16)
print("%016x" % (v % 2**64))' "$@"; }

T0=$SECONDS
# ---- 1. the chain ----
"$CAIRN" img create -f qcow2 "$TMP/disk.qcow2" 64M >/dev/null || fail "img create"
mkfifo "$TMP/a.in"
"$CAIRN" run --kernel "$TESTOS" --mem 256M --disk "$TMP/disk.qcow2" --control "$TMP/a.sock" \
  --cmdline "memfill 64 1; diskfill 256 7; shell" <"$TMP/a.in" >"$TMP/a.out" 2>&1 &
PID_a=$!
exec 7>"$TMP/a.in"
wait_for "$TMP/a.out" "diskfill n=256 seed=7 ok" 60 || fail "guest did not fill"
wait_for "$TMP/a.out" "cairn> " 10 || fail "no shell"
# What the later fills replace, as sums of seed 1's words there (a fill of
# seed 1 over seed 1 writes the same words), taken before the first snapshot:
# from them and the later fills' sums, the memverify sum at every snapshot.
declare -A OLD NEW SUM
for k in 1 2 3 4 5 6 7; do
  OLD[$k]=$(sum_of "$(type_wait a "memfill 2 1 $((4 * k))" "memfill mb=2 seed=1 off=$((4 * k)) " 20)")
done
OLD[8]=$(sum_of "$(type_wait a "memfill 1 1 40" "memfill mb=1 seed=1 off=40 " 20)")
OLD50=$(sum_of "$(type_wait a "memfill 1 1 50" "memfill mb=1 seed=1 off=50 " 20)")
# the disk blocks diskread will put at 40 MiB, summed from the host tool's copy
"$DISKPAT" write "$TMP/blocks" 256 7 >/dev/null || fail "diskpat write"
NEW[8]=$(python3 -c 'import array,sys; a=array.array("Q"); a.frombytes(open(sys.argv[1],"rb").read()); print("%016x" % (sum(a) % 2**64))' "$TMP/blocks")

snap a s0
[ "$KIND" = full ] && [ "$DEPTH" = 0 ] && [ -n "$(jget memory_full_why)" ] ||
  fail "s0: the first snapshot after a boot must be full: $REPLY_JSON"
full_bytes=$BYTES
pass "s0: full after the boot ($(jget memory_full_why)), memory_bytes $full_bytes"
for k in 1 2 3 4 5 6 7; do
  line=$(type_wait a "memfill 2 $((100 + k)) $((4 * k))" "memfill mb=2 seed=$((100 + k)) " 20)
  NEW[$k]=$(sum_of "$line")
  snap a "s$k"
  # 2 MiB written; the guest's own bookkeeping (stack, job state) adds a few pages
  expect_layer "s$k" "$k" $((2 * MIB)) $((2 * MIB + 64 * 1024))
done
pass "s1..s7: layers of depth 1..7 after 2 MiB memfills, memory_bytes $((2 * MIB))..$((2 * MIB + 65536)) (last $BYTES; the full one $full_bytes)"
# 8: the guest only has the device read 1 MiB of disk into RAM (and checks it)
type_wait a "diskread 256 7 40" "diskread n=256 seed=7 off=40 ok|FAILED" 30 | grep -q ok || fail "diskread"
snap a s8
# the virtqueue's pages and the guest's stack come with it
expect_layer s8 8 $((1 * MIB)) $((1 * MIB + 128 * 1024))
pass "s8: the device's writes into guest RAM are in the layer (memory_bytes $BYTES)"
# 9: one word in each of 1000 pages spread over the 64 MiB (every 2 MiB chunk)
type_wait a "memscatter 1000 9" "memscatter n=1000 seed=9 pages=1000" 20 >/dev/null
snap a s9
expect_layer s9 9 $((1000 * 4096)) $((1000 * 4096 + 64 * 1024))
pass "s9: 1000 scattered one-word writes: memory_bytes $BYTES (1000 pages = $((1000 * 4096)))"
# The sums: memverify here (after the last snapshot) gives s9's; memscatter's
# change of it is computed from its documented pages and words (docs/guest.md,
# "What memverify checks") and the words it replaced; then back fill by fill.
SUM[9]=$(sum_of "$(type_wait a memverify "memverify (ok|FAILED)" 30)")
[ -n "${SUM[9]}" ] || fail "memverify in the running VM failed"
SUM[8]=$(python3 - "${SUM[9]}" "$TMP/blocks" <<'PY'
import array, math, sys
M = 2**64
def mix(z):
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9 % M
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb % M
    return z ^ (z >> 31)
def pat(seed, k): return mix((seed + (k + 1) * 0x9e3779b97f4a7c15) % M)
blocks = array.array("Q"); blocks.frombytes(open(sys.argv[2], "rb").read())
def word_at_s8(p, w):  # the region as s8 has it
    mb = p // 256
    if mb == 40: return blocks[(p - 40 * 256) * 512 + w]
    if mb in (4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29): return pat(100 + mb // 4, p * 512 + w)
    return pat(1, p * 512 + w)
seed, n, P = 9, 1000, 64 * 256
a = ((P * 0x9e3779b9) >> 32) + pat(seed, 0) % (P // 16 + 1)
while math.gcd(a % P, P) != 1: a += 1
a %= P; b = pat(seed, 1) % P
delta, p = 0, b
for i in range(n):
    v = pat(seed ^ 0x5ca77e4ed5ca77e4, i) | 1
    delta += v - word_at_s8(p, v >> 55)
    p = (p + a) % P
print("%016x" % ((int(sys.argv[1], 16) - delta) % M))
PY
)
for k in 8 7 6 5 4 3 2 1; do SUM[$((k - 1))]=$(sum64 "${SUM[$k]}" - "${NEW[$k]}" + "${OLD[$k]}"); done
echo "chain built in $((SECONDS - T0)) s"

# ---- 2. a missing or changed parent ----
# refused RESTORE_DIR REGEX WHAT: cairn run --restore fails with REGEX, no guest ran
refused() {
  timeout 60 "$CAIRN" run --restore "$1" </dev/null >"$TMP/x.out" 2>&1
  local rc=$?
  [ $rc = 1 ] && grep -qE -- "$2" "$TMP/x.out" || { cat "$TMP/x.out"; fail "$3: exit $rc, no /$2/"; }
  ! grep -q "cairn-guest\|cpu0:" "$TMP/x.out" || fail "$3: the guest ran"
  pass "$3: refused before the guest ran: $(tr '\n' ' ' <"$TMP/x.out" | head -c 240)"
}
mv "$TMP/s4/memory.img" "$TMP/s4.memory.img"
refused "$TMP/s5" "s4/memory.img" "restore of s5 with its parent s4's memory.img missing"
refused "$TMP/s7" "s4/memory.img" "restore of s7 (three above s4) with s4's memory.img missing"
if "$CAIRN" control "$TMP/a.sock" '{"cmd":"revert","path":"'"$TMP/s6"'"}' >"$TMP/a.reply"; then
  fail "revert to s6 with s4's memory missing succeeded"
fi
grep -q "s4/memory.img" "$TMP/a.reply" || fail "revert refusal does not name the parent: $(cat "$TMP/a.reply")"
line=$(type_wait a memverify "memverify (ok|FAILED)" 30)
[ "$(sum_of "$line")" = "${SUM[9]}" ] || fail "the VM changed after a refused revert: $line"
pass "revert to s6 refused naming s4 ($(head -c 200 "$TMP/a.reply")); the VM runs on as it was"
cp "$TMP/s2/memory.img" "$TMP/s4/memory.img"
refused "$TMP/s5" "s4/memory.img" "restore of s5 with s4's memory.img replaced by s2's"
mv "$TMP/s4.memory.img" "$TMP/s4/memory.img"

# ---- 3. every snapshot restores, in a new process and in place ----
# restore_verify DIR SUM [disk]: cairn run --restore DIR, memverify gives SUM
# (and diskverify of the 256 blocks passes), exit 0.  RMODE: --restore-mode.
restore_verify() {
  rm -f "$TMP/r.in"; mkfifo "$TMP/r.in"
  "$CAIRN" run --restore "$1" --restore-mode "${RMODE:-map}" <"$TMP/r.in" >"$TMP/r.out" 2>&1 &
  local pid=$! rc=0 line
  exec 8>"$TMP/r.in"
  line=$(type_wait r memverify "memverify (ok|FAILED)" 60)
  [ "$(sum_of "$line")" = "$2" ] || { exec 8>&-; fail "restore of $1: '$line', expected sum=$2"; }
  if [ -n "${3:-}" ]; then type_wait r "diskverify 256 7" "diskverify ok n=256" 30 >/dev/null; fi
  printf 'exit 0\r' >&8
  timeout 30 tail -s 0.05 --pid=$pid -f /dev/null || fail "restore of $1 did not end"
  wait $pid || rc=$?
  exec 8>&-
  [ $rc = 0 ] || { tail "$TMP/r.out"; fail "restore of $1 exited $rc"; }
}
t=$SECONDS
for k in 0 1 2 3 4 5 6 7 8 9; do
  RMODE=map; [ $((k % 2)) = 1 ] && RMODE=copy
  restore_verify "$TMP/s$k" "${SUM[$k]}" $([ $k -ge 8 ] && echo disk)
done
RMODE=
pass "s0..s9 each restored in a new process (even ones mapped, odd ones copied): memverify gives each its own sum, s8/s9 diskverify ok ($((SECONDS - t)) s)"
# After a restore in a new process the VM descends from that snapshot: its
# next snapshot is a layer on it with only what changed since.
for mode in map copy; do
  rm -f "$TMP/q.in"; mkfifo "$TMP/q.in"
  "$CAIRN" run --restore "$TMP/s5" --restore-mode $mode --control "$TMP/q.sock" <"$TMP/q.in" >"$TMP/q.out" 2>&1 &
  PID_q=$!
  exec 6>"$TMP/q.in"
  line=$(type_wait q "memfill 1 78 50" "memfill mb=1 seed=78 off=50 " 30)
  snap q "q$mode"
  expect_layer "q$mode" 6 $MIB $((MIB + 64 * 1024))
  ctl q quit
  exec 6>&-
  wait_vm q 0
  restore_verify "$TMP/q$mode" "$(sum64 "${SUM[5]}" - "$OLD50" + "$(sum_of "$line")")"
done
pass "restored from s5 (depth 5) mapped and copied, a 1 MiB fill: each next snapshot is a layer of depth 6 on s5 (memory_bytes $BYTES) and restores"
t=$SECONDS
for k in 5 0 9 3 8 1 7 2 6 4; do
  ctl a '{"cmd":"revert","path":"'"$TMP/s$k"'"}'
  line=$(type_wait a memverify "memverify (ok|FAILED)" 30)
  [ "$(sum_of "$line")" = "${SUM[$k]}" ] || fail "revert to s$k: '$line', expected sum=${SUM[$k]}"
done
pass "s0..s9 each reverted in place (in mixed order): memverify gives each its sum ($((SECONDS - t)) s)"
# the next snapshot after a revert is a layer on the snapshot reverted to
ctl a '{"cmd":"revert","path":"'"$TMP/s3"'"}'
line=$(type_wait a "memfill 1 77 50" "memfill mb=1 seed=77 off=50 " 20)
snap a r3
expect_layer r3 4 $MIB $((MIB + 64 * 1024))
restore_verify "$TMP/r3" "$(sum64 "${SUM[3]}" - "$OLD50" + "$(sum_of "$line")")"
pass "after a revert to s3 (depth 3), a 1 MiB fill, the snapshot is a layer of depth 4 on it (memory_bytes $BYTES) and restores"

# ---- 4. {"memory":"full"} ----
ctl a '{"cmd":"revert","path":"'"$TMP/s9"'"}'
snap a sfull '"memory":"full"'
why=$(jget memory_full_why)
[ "$KIND" = full ] && [ "$DEPTH" = 0 ] && [ "$why" = "asked for" ] || fail "memory full: $REPLY_JSON"
[ "$BYTES" -ge $((64 * MIB)) ] || fail "a full image of 64 MiB filled holds $BYTES bytes"
snap a sfull2
expect_layer sfull2 1 0 $((64 * 1024))
restore_verify "$TMP/sfull" "${SUM[9]}" disk
restore_verify "$TMP/sfull2" "${SUM[9]}" disk
pass "{\"memory\":\"full\"}: a full image ($why); the next snapshot a layer of depth 1 on it; both restore"
# the memory parent gone, or the new snapshot in another directory: full
rm -rf "$TMP/sfull2"
snap a gone1
why=$(jget memory_full_why)
[ "$KIND" = full ] && [ -n "$why" ] || fail "with the memory parent removed: $REPLY_JSON"
mkdir "$TMP/sub"
snap a sub/other1
why2=$(jget memory_full_why)
[ "$KIND" = full ] && [ -n "$why2" ] || fail "a snapshot in another directory than its memory parent: $REPLY_JSON"
restore_verify "$TMP/sub/other1" "${SUM[9]}" disk
pass "the memory parent removed: full ($why); in another directory: full ($why2), and restores"
ctl a quit
exec 7>&-
wait_vm a 0

# ---- 5. two vCPUs writing all the time ----
# Each vCPU fills 1 MiB at a new offset, scatters 64 words and verifies, in a
# loop; at the end of it each sleeps and verifies once more, so a restore of a
# snapshot taken during the loops runs verifies on both.
jobs="memfill 24 1; @1 memfill 24 2"
for i in $(seq 1 28); do
  jobs+="; memfill 1 $((1000 + i)) $((i % 20)); memscatter 64 $i; memverify; sleep 150"
  jobs+="; @1 memfill 1 $((2000 + i)) $(((i * 7) % 20)); @1 memscatter 64 $((100 + i)); @1 memverify; @1 sleep 150"
done
jobs+="; @1 sleep 1500; @1 memverify; sleep 2000; memverify; exit 0"
start_vm b --kernel "$TESTOS" --mem 256M --cpus 2 --cmdline "$jobs"
nver() { tr -d '\r' <"$TMP/b.out" | grep -c "^cpu$1: memverify ok"; }
for k in 0 1 2; do
  for ((i = 0; i < 300; i++)); do [ "$(nver 1)" -ge $((3 + 5 * k)) ] && break; sleep 0.1; done
  snap b "m$k"
  if [ $k = 0 ]; then want=full; else want=layer; fi
  [ "$KIND" = $want ] && [ "$DEPTH" = $k ] || fail "m$k with two vCPUs writing: $REPLY_JSON"
  echo "m$k: $KIND depth $DEPTH, memory_bytes $BYTES, after $(nver 0)/$(nver 1) verifies on cpu0/cpu1"
done
grep -q "cpu1: memverify ok" "$TMP/b.out" && [ "$(nver 1)" -lt 29 ] ||
  echo "note: cpu1 finished its loop before the last snapshot (a slow machine); the restores still check its memory"
wait_vm b 0
! grep -q FAILED "$TMP/b.out" || fail "a verify failed in the running VM"
for k in 1 2; do
  timeout 60 "$CAIRN" run --restore "$TMP/m$k" </dev/null >"$TMP/m.out" 2>&1 || { tail "$TMP/m.out"; fail "restore of m$k"; }
  ! grep -q FAILED "$TMP/m.out" && grep -q "cpu0: memverify ok" "$TMP/m.out" && grep -q "cpu1: memverify ok" "$TMP/m.out" ||
    { tr -d '\r' <"$TMP/m.out" | grep -E "FAILED|memverify|exit" | tail -n 8; fail "m$k: memory not as at the snapshot"; }
  pass "m$k (a layer taken while both vCPUs wrote) restores: $(grep -c 'cpu0: memverify ok' "$TMP/m.out")/$(grep -c 'cpu1: memverify ok' "$TMP/m.out") memverify runs on cpu0/cpu1 pass after it"
done

# ---- 6. a failed layer gives its pages back ----
mkdir -p "$TMP/small"
if mount -t tmpfs -o size=40m tmpfs "$TMP/small" 2>/dev/null; then
  trap 'umount "$TMP/small" 2>/dev/null; snap_cleanup' EXIT
  rm -f "$TMP/c.in"; mkfifo "$TMP/c.in"
  "$CAIRN" run --kernel "$TESTOS" --mem 64M --control "$TMP/c.sock" \
    --cmdline "memfill 16 1; shell" <"$TMP/c.in" >"$TMP/c.out" 2>&1 &
  PID_c=$!
  exec 9>"$TMP/c.in"
  wait_for "$TMP/c.out" "memfill mb=16 seed=1" 30 || fail "guest c did not fill"
  wait_for "$TMP/c.out" "cairn> " 10 || fail "no shell on c"
  snap c small/f0
  [ "$KIND" = full ] || fail "f0: $REPLY_JSON"
  type_wait c "memfill 8 2 4" "memfill mb=8 seed=2 off=4 " 20 >/dev/null
  # leave 2 MiB: the 8 MiB layer cannot be written
  avail=$(df -B1 --output=avail "$TMP/small" | tail -n 1)
  fallocate -l $((avail - 2 * MIB)) "$TMP/small/filler" || fail "fallocate"
  if "$CAIRN" control "$TMP/c.sock" '{"cmd":"snapshot","path":"'"$TMP/small/f1"'"}' >"$TMP/c.reply"; then
    fail "a layer without room succeeded: $(cat "$TMP/c.reply")"
  fi
  rm -f "$TMP/small/filler"
  type_wait c "memfill 1 3 14" "memfill mb=1 seed=3 off=14 " 20 >/dev/null
  snap c small/f2
  # the 8 MiB of the failed layer and the 1 MiB since
  expect_layer f2 1 $((9 * MIB)) $((9 * MIB + 128 * 1024))
  sumc=$(sum_of "$(type_wait c memverify "memverify (ok|FAILED)" 30)")
  [ -n "$sumc" ] || fail "memverify in VM c"
  ctl c quit
  exec 9>&-
  wait_vm c 0
  restore_verify "$TMP/small/f2" "$sumc"
  pass "a layer that failed for want of room ($(head -c 120 "$TMP/c.reply")) gave its pages back: the next layer holds them too (memory_bytes $BYTES) and restores"
else
  echo "note: no tmpfs could be mounted (needs root): the failed-layer case is not run"
fi

# ---- 7. consolidation: every 16th layer ----
t=$SECONDS
rm -f "$TMP/d.in"; mkfifo "$TMP/d.in"
"$CAIRN" run --kernel "$TESTOS" --mem 64M --control "$TMP/d.sock" \
  --cmdline "memfill 16 1; shell" <"$TMP/d.in" >"$TMP/d.out" 2>&1 &
PID_d=$!
exec 9>"$TMP/d.in"
wait_for "$TMP/d.out" "memfill mb=16 seed=1" 30 || fail "guest d did not fill"
wait_for "$TMP/d.out" "cairn> " 10 || fail "no shell on d"
declare -A DSUM
snap d k0
for k in $(seq 1 33); do
  type_wait d "memfill 1 $((300 + k)) $((k % 16))" "memfill mb=1 seed=$((300 + k)) off=" 20 >/dev/null
  snap d "k$k"
  case $k in
  16) want=1 ;;
  32) want=2 ;;
  *) if [ $k -lt 16 ]; then want=$k; elif [ $k -lt 32 ]; then want=$((k - 15)); else want=$((k - 30)); fi ;;
  esac
  [ "$KIND" = layer ] && [ "$DEPTH" = $want ] || fail "k$k: expected a layer of depth $want: $REPLY_JSON"
  [ $k = 16 ] && k16=$BYTES
  [ $k = 32 ] && k32=$BYTES
  DSUM[$k]=$(sum_of "$(type_wait d memverify "memverify (ok|FAILED)" 30)")
done
# k1..k16 each changed their own 1 MiB, 16 different MiB in all; so did k17..k32
[ "$k16" -ge $((16 * MIB)) ] || fail "the consolidated k16 holds $k16 bytes, less than the 16 MiB it and the layers under it changed"
[ "$k32" -ge $((16 * MIB)) ] || fail "the consolidated k32 holds $k32 bytes, less than the 16 MiB it and the layers under it changed"
grep -qaF '../k0/memory.img' "$TMP/k16/memory.img" || fail "k16 does not name k0 as its parent"
grep -qaF '../k16/memory.img' "$TMP/k17/memory.img" || fail "k17 does not name k16 as its parent"
grep -qaF '../k16/memory.img' "$TMP/k32/memory.img" || fail "k32 does not name k16 as its parent"
ctl d quit
exec 9>&-
wait_vm d 0
for k in 15 16 17 31 32 33; do restore_verify "$TMP/k$k" "${DSUM[$k]}"; done
pass "consolidation: k16 is a layer of depth 1 on the full k0 ($k16 bytes: the pages of k1..k15 and its own), k17..k31 plain on it, k32 depth 2 on k16 ($k32 bytes), k33 depth 3; k15, k16, k17, k31, k32 and k33 restore with their sums ($((SECONDS - t)) s)"
echo "total $((SECONDS - T0)) s"
