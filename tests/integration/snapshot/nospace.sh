#!/bin/bash
# A whole-machine snapshot whose memory does not fit (the snapshot
# directory on a 16 MiB tmpfs, 64 MiB of guest memory filled): the request
# fails naming the problem, no snapshot directory is left, and the disks are
# back on their layers as before it (the overlay made at the freeze is
# merged back and removed, with what the guest wrote meanwhile: cpu1 fills
# and verifies its disk in a loop throughout); the guest runs on, its disk
# intact, and the next snapshot, with room, works and restores.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos
DISKPAT="$BUILDDIR/guest/diskpat"
mkdir -p "$TMP/small"
mount -t tmpfs -o size=16m tmpfs "$TMP/small" 2>/dev/null ||
  { echo "SKIP: cannot mount a size-limited tmpfs (needs root)"; exit 77; }
trap 'umount "$TMP/small" 2>/dev/null; snap_cleanup' EXIT

"$CAIRN" img create -f qcow2 "$TMP/disk.qcow2" 64M >/dev/null || fail "img create"
loop=""
for k in 1 2 3 4 5 6 7 8 9 10 11 12; do loop="$loop; @1 diskfill 4000 $k; @1 diskverify 4000 $k"; done
start_vm a --kernel "$TESTOS" --mem 256M --cpus 2 --disk "$TMP/disk.qcow2" \
  --cmdline "memfill 64 5; count 20$loop; @1 echo disk-loop-done"
wait_for "$TMP/a.out" "diskfill n=4000 seed=2 ok" 30 || { cat "$TMP/a.out"; fail "guest not writing"; }
# cpu0's 64 MiB too (first touches are slow on PVM: on a busy host cpu1's
# disk loop got there first, and 12 MiB of memory fitted in the 16 MiB)
wait_for "$TMP/a.out" "memfill mb=64 seed=5" 60 || fail "cpu0 did not fill its memory"

REPLY_JSON=$("$CAIRN" control "$TMP/a.sock" '{"cmd":"snapshot","path":"'"$TMP/small/s1"'"}') &&
  fail "a snapshot that cannot fit succeeded: $REPLY_JSON"
echo "reply: $REPLY_JSON"
echo "$REPLY_JSON" | grep -qE "No space left|writer .* died" || fail "the error does not say why: $REPLY_JSON"
echo "$REPLY_JSON" | grep -q "back on their layers" || fail "the disks did not go back: $REPLY_JSON"
[ -z "$(ls "$TMP/small" | grep -E '^s1')" ] || fail "a failed snapshot left files: $(ls "$TMP/small")"
[ ! -e "$TMP/disk-s1.qcow2" ] || fail "the overlay of the failed snapshot is still there"
ctl a '{"cmd":"status"}'
echo "$REPLY_JSON" | grep -q "\"$TMP/disk.qcow2\"" || fail "the VM does not write to disk.qcow2 again: $REPLY_JSON"
t=$(last_tick "$TMP/a.out")
wait_for "$TMP/a.out" "tick=$((t + 3))" 20 || fail "the guest stopped after the failed snapshot"
wait_for "$TMP/a.out" "disk-loop-done" 60 || fail "cpu1's disk loop did not finish"
grep -q FAILED "$TMP/a.out" && { cat "$TMP/a.out"; fail "a diskverify failed"; }
pass "snapshot without room: refused with the reason, nothing left, disks back on their layers (12 fill+verify rounds on cpu1 through it), guest runs on"

# The next snapshot has room; the guest's disk content is all there.
ctl a '{"cmd":"snapshot","path":"'"$TMP/s2"'","then":"quit"}'
wait_vm a 0
[ -f "$TMP/disk-s2.qcow2" ] || fail "no overlay for s2"
"$CAIRN" img convert -O raw "$TMP/disk.qcow2" "$TMP/flat.raw" || fail "convert"
"$DISKPAT" verify "$TMP/flat.raw" 4000 12 || fail "the disk lost the guest's writes"
qemu-img check "$TMP/disk.qcow2" >/dev/null || fail "qemu-img check disk.qcow2"
start_vm b --restore "$TMP/s2"
wait_for "$TMP/b.out" "tick=" 20 || fail "restore of s2 does not run"
ctl b quit
wait_vm b 0
pass "the next snapshot, with room, is taken and restores; qemu-img check clean, disk verified"
