#!/bin/bash
# Whole-machine snapshots (issue 5): a running guest is snapshotted and
# restored in a new process, and goes on exactly where it was.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos
DISKPAT="$BUILDDIR/guest/diskpat"

# 1. Counting and memory: ticks continue from the snapshot, memverify passes.
"$CAIRN" img create -f qcow2 "$TMP/disk.qcow2" 64M >/dev/null || fail "img create"
start_vm a --kernel "$TESTOS" --mem 256M --disk "$TMP/disk.qcow2" --cmdline "memfill 64 5; count 20"
wait_for "$TMP/a.out" "tick=5" 20 || fail "guest not counting"
ctl a '{"cmd":"snapshot","path":"'"$TMP/s1"'","then":"quit"}'
wait_vm a 0
before=$(last_tick "$TMP/a.out")
[ -f "$TMP/s1/state.bin" ] && [ -f "$TMP/s1/memory.img" ] && [ -f "$TMP/s1/meta.json" ] || fail "snapshot files missing"
[ "$(stat -c %a "$TMP/disk.qcow2")" = 444 ] || fail "frozen layer not read-only"
"$CAIRN" img io -c "write 0 512" "$TMP/disk.qcow2" >/dev/null 2>&1 && fail "frozen layer writable (as $(id -un))"
start_vm b --restore "$TMP/s1"
wait_for "$TMP/b.out" "tick=$((before + 4))" 20 || fail "restored guest does not count on"
ctl b quit
wait_vm b 0
range=$(ticks_consecutive 0 "$TMP/a.out" "$TMP/b.out") || { echo "$range"; fail "ticks not consecutive across the restore"; }
pass "count goes on across a restore in a new process, ticks $range with no gap (the clock continues from the snapshot)"

# 2. Memory and console input: memverify in the restored guest; two
#    restores with the same input print the same.
start_vm c --kernel "$TESTOS" --mem 256M --cmdline "memfill 100 9; shell"
wait_for "$TMP/c.out" "memfill mb=100" 20 || fail "memfill did not run"
sum=$(tr -d '\r' <"$TMP/c.out" | sed -n 's/.*memfill mb=100 seed=9 sum=\([0-9a-f]*\).*/\1/p')
ctl c '{"cmd":"snapshot","path":"'"$TMP/s2"'","then":"quit"}'
wait_vm c 0
for run in 1 2; do
  (sleep 0.3; printf 'memverify\r'; sleep 0.5; printf 'echo second-line\r'; sleep 0.3; printf 'exit 0\r') |
    timeout 30 "$CAIRN" run --restore "$TMP/s2" >"$TMP/r$run.out" 2>&1 || { cat "$TMP/r$run.out"; fail "restore $run failed"; }
  grep -q "memverify ok sum=$sum" "$TMP/r$run.out" || { cat "$TMP/r$run.out"; fail "memverify after restore $run"; }
done
cmp -s "$TMP/r1.out" "$TMP/r2.out" || { diff "$TMP/r1.out" "$TMP/r2.out"; fail "two restores printed differently"; }
pass "memverify passes after restore; two restores give the same console output"

# 3. A byte flipped in the memory image is caught before the guest runs.
cp -r "$TMP/s2" "$TMP/s2bad"
off=$((50 * 1024 * 1024 + 4096 * 7 + 11))
printf '\x5a' | dd of="$TMP/s2bad/memory.img" bs=1 seek=$off conv=notrunc status=none
timeout 30 "$CAIRN" run --restore "$TMP/s2bad" </dev/null >"$TMP/bad.out" 2>&1
rc=$?
[ $rc = 1 ] || { cat "$TMP/bad.out"; fail "corrupt memory image: exit $rc"; }
grep -q "memory.img" "$TMP/bad.out" && ! grep -q "cairn-guest\|cpu0:" "$TMP/bad.out" || { cat "$TMP/bad.out"; fail "corrupt memory not refused before the guest ran"; }
pass "a flipped byte in memory.img is refused before the guest runs: $(head -c 200 "$TMP/bad.out")"
# Without the check, the guest's own verification finds it (the facility works).
(sleep 0.3; printf 'memverify\r'; sleep 0.5; printf 'exit 0\r') |
  timeout 30 "$CAIRN" run --restore "$TMP/s2bad" --no-verify >"$TMP/bad2.out" 2>&1
grep -q "memverify FAILED" "$TMP/bad2.out" || { cat "$TMP/bad2.out"; fail "flip not seen by the guest"; }
pass "with --no-verify the guest's memverify catches the flip"

# 4. State files: corrupt, truncated, wrong version, wrong memory image.
refuse() { # refuse WHAT REGEX: restore of $TMP/sx must fail with REGEX
  timeout 30 "$CAIRN" run --restore "$TMP/sx" </dev/null >"$TMP/x.out" 2>&1
  local rc=$?
  [ $rc = 1 ] && grep -qiE -- "$2" "$TMP/x.out" || { cat "$TMP/x.out"; fail "$1: exit $rc"; }
  grep -q "cairn-guest" "$TMP/x.out" && fail "$1: guest ran"
  pass "$1 refused: $(tr '\n' ' ' <"$TMP/x.out" | head -c 160)"
}
rm -rf "$TMP/sx"; cp -r "$TMP/s2" "$TMP/sx"
printf '\xff' | dd of="$TMP/sx/state.bin" bs=1 seek=200 conv=notrunc status=none
refuse "altered state.bin" "state.bin.*(checksum|crc)"
rm -rf "$TMP/sx"; cp -r "$TMP/s2" "$TMP/sx"
truncate -s -100 "$TMP/sx/state.bin"
refuse "truncated state.bin" "state.bin.*(truncat|end)"
rm -rf "$TMP/sx"; cp -r "$TMP/s2" "$TMP/sx"
printf '\x07' | dd of="$TMP/sx/state.bin" bs=1 seek=8 conv=notrunc status=none
refuse "state.bin of another format version" "state.bin.*version"
rm -rf "$TMP/sx"; cp -r "$TMP/s2" "$TMP/sx"
truncate -s -4096 "$TMP/sx/memory.img"
refuse "truncated memory.img" "memory.img"
rm -rf "$TMP/sx"; cp -r "$TMP/s2" "$TMP/sx"; cp "$TMP/s1/memory.img" "$TMP/sx/memory.img"
refuse "memory.img of another snapshot" "memory.img"
# A device record 8 bytes short, every checksum right: refused by the record's
# own checks, and the restore's new overlay (made before) is removed again.
"$CAIRN" img create -f qcow2 "$TMP/d4.qcow2" 16M >/dev/null
start_vm d4 --kernel "$TESTOS" --mem 64M --disk "$TMP/d4.qcow2" --cmdline "count 200"
wait_for "$TMP/d4.out" "tick=2" 20 || fail "guest not counting"
ctl d4 '{"cmd":"snapshot","path":"'"$TMP/s4dev"'","then":"quit"}'
wait_vm d4 0
rm -rf "$TMP/sx"; cp -r "$TMP/s4dev" "$TMP/sx"
dev=
for inst in $(seq 0 15); do
  cp "$TMP/s4dev/state.bin" "$TMP/sx/state.bin"
  python3 "$SRCDIR/tests/integration/snapshot/state_edit.py" "$TMP/sx/state.bin" 4 "$inst" shorten 8 2>/dev/null &&
    { dev=$inst; break; }
done
[ -n "$dev" ] || fail "no device record to shorten"
refuse "a device record 8 bytes short (checksums recomputed)" "device|short|state"
[ -z "$(ls "$TMP" | grep -E '^d4-r[0-9a-f]{8}\.qcow2$')" ] || fail "the failed restore left its overlay: $(ls "$TMP" | grep d4-r)"
pass "the failed restore removed the overlay it had made"
# The frozen layer resized behind cairn's back (qemu-img ignores the frozen
# mark, root the mode): the restore refuses the size it did not record.
qemu-img resize -q -f qcow2 "$TMP/d4.qcow2" 32M || fail "qemu-img resize"
rm -rf "$TMP/sx"; cp -r "$TMP/s4dev" "$TMP/sx"
refuse "a disk of another size than the snapshot's" "disk 0 .* is 33554432 bytes, the snapshot was taken with 16777216"
[ -z "$(ls "$TMP" | grep -E '^d4-r[0-9a-f]{8}\.qcow2$')" ] || fail "the refused restore left an overlay"

# 5. Disk I/O in flight: snapshot in the middle of diskfill; the restored
#    guest finishes it and every block verifies.
"$CAIRN" img create -f qcow2 "$TMP/d2.qcow2" 64M >/dev/null
jobs=""
for ((k = 0; k < 40; k++)); do jobs+="diskfill 8000 3; "; done
start_vm d --kernel "$TESTOS" --mem 128M --disk "$TMP/d2.qcow2" --cmdline "${jobs}diskverify 8000 3; exit 0"
wait_for "$TMP/d.out" "diskfill n=8000" 20 || fail "diskfill did not start"
ctl d '{"cmd":"snapshot","path":"'"$TMP/s3"'","then":"quit"}'
wait_vm d 0
grep -q "diskverify" "$TMP/d.out" && echo "note: the disk work finished before the snapshot (machine too fast); the test still checks the restore"
timeout 60 "$CAIRN" run --restore "$TMP/s3" </dev/null >"$TMP/d3.out" 2>&1
rc=$?
[ $rc = 0 ] && grep -q "diskverify ok n=8000" "$TMP/d3.out" || { cat "$TMP/d3.out"; fail "diskverify after a snapshot taken during disk I/O (exit $rc)"; }
pass "snapshot during diskfill: the restored guest completes it and diskverify passes"

# 5b. The same with the VM running on (the writer thread, or the fork): the
#     disks freeze after the vCPUs resume but before another request is
#     served; the running VM finishes on its overlay, the snapshot's restore
#     on its own, and both verify.
"$CAIRN" img create -f qcow2 "$TMP/d4.qcow2" 64M >/dev/null
jobs=""
for ((k = 0; k < 6; k++)); do jobs+="diskfill 8000 $((k % 2 + 3)); "; done
start_vm d4 --kernel "$TESTOS" --mem 128M --disk "$TMP/d4.qcow2" \
  --cmdline "${jobs}diskverify 8000 4; exit 0"
wait_for "$TMP/d4.out" "diskfill n=8000" 20 || fail "diskfill did not start"
ctl d4 '{"cmd":"snapshot","path":"'"$TMP/s3b"'"}'
wait_vm d4 0
grep -q "diskverify ok n=8000" "$TMP/d4.out" || { tail -5 "$TMP/d4.out"; fail "the VM that ran on lost disk writes"; }
timeout 60 "$CAIRN" run --restore "$TMP/s3b" </dev/null >"$TMP/d5.out" 2>&1
rc=$?
[ $rc = 0 ] && grep -q "diskverify ok n=8000" "$TMP/d5.out" || { tail -5 "$TMP/d5.out"; fail "diskverify after a live snapshot taken during disk I/O (exit $rc)"; }
qemu-img check -q "$TMP/d4.qcow2" && qemu-img check -q "$TMP/d4-s3b.qcow2" || fail "qemu-img check of the layers"
pass "live snapshot during diskfill ($(echo "$REPLY_JSON" | grep -o '"writer":"[a-z]*"')): the VM and the restore both complete and verify"

# 6. Two vCPUs: both keep counting after the restore.
start_vm e --kernel "$TESTOS" --cpus 2 --mem 128M --cmdline "@0 count 10; @1 count 10"
wait_for "$TMP/e.out" "cpu1: tick=3" 20 || fail "cpu1 not counting"
ctl e '{"cmd":"snapshot","path":"'"$TMP/s4"'","then":"quit"}'
wait_vm e 0
b0=$(last_tick "$TMP/e.out" 0); b1=$(last_tick "$TMP/e.out" 1)
start_vm f --restore "$TMP/s4"
wait_for "$TMP/f.out" "cpu1: tick=$((b1 + 4))" 20 || fail "cpu1 stopped after restore"
wait_for "$TMP/f.out" "cpu0: tick=$((b0 + 4))" 20 || fail "cpu0 stopped after restore"
ctl f status
echo "$REPLY_JSON" | grep -q '"cpus":2' || fail "status: $REPLY_JSON"
ctl f quit
wait_vm f 0
pass "2 vCPUs both count on after the restore (from $b0 and $b1)"

# 7. A VM that keeps running after a snapshot writes to a new overlay; the
#    snapshot's disk content stays as it was.
"$CAIRN" img create -f qcow2 "$TMP/d5.qcow2" 64M >/dev/null
start_vm g --kernel "$TESTOS" --mem 64M --disk "$TMP/d5.qcow2" --cmdline "diskfill 50 1; shell"
wait_for "$TMP/g.out" "diskfill n=50 seed=1 ok" 20 || fail "diskfill"
ctl g '{"cmd":"snapshot","path":"'"$TMP/s5"'"}'
ctl g status
echo "$REPLY_JSON" | grep -q "d5-s5.qcow2" || fail "running VM is not on the new overlay: $REPLY_JSON"
ctl g quit
wait_vm g 0
(sleep 0.3; printf 'diskfill 50 2\r'; sleep 1; printf 'exit 0\r') | timeout 30 "$CAIRN" run --restore "$TMP/s5" >"$TMP/g2.out" 2>&1
(sleep 0.3; printf 'diskverify 50 1\r'; sleep 1; printf 'exit 0\r') | timeout 30 "$CAIRN" run --restore "$TMP/s5" >"$TMP/g3.out" 2>&1
grep -q "diskverify ok n=50" "$TMP/g3.out" || { cat "$TMP/g3.out"; fail "snapshot's disk content changed by an earlier restore"; }
qemu-img check -q "$TMP/d5.qcow2" && qemu-img check -q "$TMP/d5-s5.qcow2" || fail "qemu-img check of the layers"
pass "restores write to their own overlays; the snapshot's disk stays as it was"
# 8. A raw disk cannot be frozen: the snapshot is refused, the VM runs on.  The
#    qcow2 disk before it had its overlay made (before the pause): it must go.
truncate -s 16M "$TMP/raw.img"
"$CAIRN" img create -f qcow2 "$TMP/d8.qcow2" 16M >/dev/null
start_vm h --kernel "$TESTOS" --mem 64M --disk "$TMP/d8.qcow2" --disk "$TMP/raw.img" \
  --cmdline "count 20"
wait_for "$TMP/h.out" "tick=2" 20 || fail "guest not counting"
if "$CAIRN" control "$TMP/h.sock" '{"cmd":"snapshot","path":"'"$TMP/s6"'"}' >"$TMP/h.reply"; then
  fail "snapshot with a raw disk succeeded"
fi
grep -q "raw disk cannot be snapshotted" "$TMP/h.reply" || { cat "$TMP/h.reply"; fail "no clear error"; }
[ -z "$(ls "$TMP" | grep -E '^s6')" ] && [ ! -e "$TMP/d8-s6.qcow2" ] ||
  fail "refused snapshot left files: $(ls "$TMP" | grep -E 's6|d8')"
[ -w "$TMP/d8.qcow2" ] || fail "the qcow2 disk was left read-only"
t=$(last_tick "$TMP/h.out")
wait_for "$TMP/h.out" "tick=$((t + 2))" 20 || fail "VM stopped after a refused snapshot"
ctl h quit
wait_vm h 0
pass "raw disk: snapshot refused ($(cut -c1-120 "$TMP/h.reply")), nothing left behind, the VM runs on"
# 9. Revert a running VM in place, twice: memory and disk come back each time.
"$CAIRN" img create -f qcow2 "$TMP/d9.qcow2" 64M >/dev/null
mkfifo "$TMP/in9"
"$CAIRN" run --kernel "$TESTOS" --mem 128M --disk "$TMP/d9.qcow2" --control "$TMP/r.sock" \
  --cmdline "memfill 32 4; diskfill 100 5; shell" <"$TMP/in9" >"$TMP/r.out" 2>&1 &
PID_r=$!
exec 7>"$TMP/in9"
wait_for "$TMP/r.out" "diskfill n=100 seed=5 ok" 20 || fail "guest did not fill"
ctl r '{"cmd":"snapshot","path":"'"$TMP/s9"'"}'
# new_lines_match FROM PATTERN SECONDS: a line after line FROM of r.out matches
new_lines_match() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    tail -n +"$(($1 + 1))" "$TMP/r.out" | grep -qE -- "$2" && return 0
    sleep 0.1
  done
  cat "$TMP/r.out"; return 1
}
for round in 1 2; do
  n=$(wc -l <"$TMP/r.out")
  printf 'flip\r' >&7; printf 'diskfill 100 6\r' >&7
  new_lines_match "$n" "diskfill n=100 seed=6 ok" 20 || fail "guest did not overwrite (round $round)"
  ctl r '{"cmd":"revert","path":"'"$TMP/s9"'"}'
  n=$(wc -l <"$TMP/r.out")
  printf 'memverify\r' >&7; printf 'diskverify 100 5\r' >&7
  new_lines_match "$n" "diskverify (ok|FAILED)" 20 || fail "no diskverify after revert $round"
  new_lines_match "$n" "memverify ok" 1 || fail "memory not back after revert $round"
  new_lines_match "$n" "diskverify ok n=100" 1 || fail "disk not back after revert $round"
done
# A snapshot of another machine shape is refused and the VM runs on.
if "$CAIRN" control "$TMP/r.sock" '{"cmd":"revert","path":"'"$TMP/s1"'"}' >"$TMP/r.reply"; then
  fail "revert to a snapshot of a 256 MiB machine succeeded on a 128 MiB one"
fi
grep -q "is not this VM" "$TMP/r.reply" || { cat "$TMP/r.reply"; fail "no clear error"; }
ctl r status
ctl r quit
exec 7>&-
wait_vm r 0
pass "a running VM reverted in place twice: memory and disk back each time; another machine's snapshot refused"
# 10. A guest that writes its memory all through the snapshot's write: the image
#     holds RAM as it was at the pause.  cpu1 fills and verifies 192 MiB in a
#     loop, above cpu0's 600 MiB, so the writer reaches it last and the guest
#     writes there first.  Both writers: the in-process one (userfaultfd view of
#     RAM, where the kernel allows it) and the forked child.
jobs="memfill 600 9; count 1000"
for k in $(seq 1 30); do jobs+="; @1 memfill 192 $k; @1 memverify"; done
jobs+="; @1 exit 0"
for writer in default fork; do
  if [ $writer = fork ]; then export CAIRN_SNAPSHOT_WRITER=fork; fi
  start_vm w --kernel "$TESTOS" --mem 1G --cpus 2 --cmdline "$jobs"
  wait_for "$TMP/w.out" "cpu1: memverify ok" 30 || fail "cpu1 loop did not start"
  ctl w '{"cmd":"snapshot","path":"'"$TMP/s10$writer"'"}'
  unset CAIRN_SNAPSHOT_WRITER
  wait_vm w 0
  reply10=$REPLY_JSON
  case $writer in
  fork) echo "$reply10" | grep -q '"writer":"fork"' || fail "not the forked writer: $reply10" ;;
  *) if echo "$reply10" | grep -q '"writer":"thread"'; then
       copies=$(echo "$reply10" | sed -n 's/.*"cow_copies":\([0-9]*\).*/\1/p')
       [ "${copies:-0}" -gt 0 ] || fail "the guest wrote no chunk ahead of the writer: $reply10"
     else
       echo "note: userfaultfd unavailable here, the default writer forked: $reply10"
     fi ;;
  esac
  timeout 60 "$CAIRN" run --restore "$TMP/s10$writer" </dev/null >"$TMP/w2.out" 2>&1 ||
    { tail -5 "$TMP/w2.out"; fail "restore of a snapshot written while the guest wrote ($writer)"; }
  ! grep -q "FAILED" "$TMP/w2.out" && grep -q "cpu1: memverify ok" "$TMP/w2.out" ||
    { grep -m3 -E "FAILED|memverify" "$TMP/w2.out"; fail "memory torn in the snapshot ($writer)"; }
  pass "$writer writer: RAM written by the guest during the save is as at the pause" \
    "($(echo "$reply10" | grep -o '"writer":"[a-z]*"\(,"cow_copies":[0-9]*\)\?'), $(grep -c 'cpu1: memverify ok' "$TMP/w2.out") verifies after the restore)"
  rm -rf "$TMP/s10$writer"
done
# 11. Files that cairn did not make are never removed: a PATH.tmp that holds
#     somebody's files (or is a symlink to a directory that does) stays as it
#     is; the reply names the overlays the VM now writes to.
"$CAIRN" img create -f qcow2 "$TMP/d11.qcow2" 16M >/dev/null
mkdir "$TMP/s11.tmp" "$TMP/elsewhere"
echo keep >"$TMP/s11.tmp/memory.img"
echo keep >"$TMP/elsewhere/state.bin"
ln -s "$TMP/elsewhere" "$TMP/s12.tmp"
start_vm k --kernel "$TESTOS" --mem 64M --disk "$TMP/d11.qcow2" --cmdline "count 200"
wait_for "$TMP/k.out" "tick=2" 20 || fail "guest not counting"
ctl k '{"cmd":"snapshot","path":"'"$TMP/s11"'"}'
echo "$REPLY_JSON" | grep -q "\"overlays\":\[\"$TMP/d11-s11.qcow2\"\]" || fail "reply does not name the overlay: $REPLY_JSON"
[ -f "$TMP/d11-s11.qcow2" ] || fail "the overlay the reply names is not there"
ctl k '{"cmd":"snapshot","path":"'"$TMP/s12"'"}'
# the overlay's name is taken by somebody's file: refused, the file unchanged
echo precious >"$TMP/d11-s11-s12-s15.qcow2"
"$CAIRN" control "$TMP/k.sock" '{"cmd":"snapshot","path":"'"$TMP/s15"'"}' >"$TMP/k.reply" &&
  fail "a snapshot replaced an unrelated file: $(cat "$TMP/k.reply")"
grep -q "d11-s11-s12-s15.qcow2: a file of that name exists" "$TMP/k.reply" || fail "no clear error: $(cat "$TMP/k.reply")"
[ "$(cat "$TMP/d11-s11-s12-s15.qcow2")" = precious ] && [ ! -e "$TMP/s15" ] || fail "the clash changed files"
ctl k '{"cmd":"status"}'
echo "$REPLY_JSON" | grep -q "d11-s11-s12.qcow2" || fail "the VM moved off its disk: $REPLY_JSON"
ctl k quit
wait_vm k 0
[ "$(cat "$TMP/s11.tmp/memory.img")" = keep ] && [ "$(cat "$TMP/elsewhere/state.bin")" = keep ] ||
  fail "a snapshot removed or replaced files it did not make"
[ -f "$TMP/s11/state.bin" ] && [ -f "$TMP/s12/state.bin" ] && [ -z "$(ls "$TMP" | grep -E '^s1[12]\.tmp-')" ] ||
  fail "snapshots s11/s12 not committed cleanly: $(ls "$TMP")"
pass "PATH.tmp of somebody else's (a directory, a symlink) left alone; an overlay name taken by another file is refused; the reply lists the overlays"
# 12. Snapshot files and disks that are not regular files (a FIFO, a
#     directory) are refused with a message naming them; the event loop never
#     waits on them (a FIFO state.bin hung the VMM: no reply, SIGTERM ignored).
mkdir "$TMP/s13"
cp "$TMP/s11/memory.img" "$TMP/s11/meta.json" "$TMP/s13/"
mkfifo "$TMP/s13/state.bin"
mkdir "$TMP/s14"
cp "$TMP/s11/state.bin" "$TMP/s11/meta.json" "$TMP/s14/"
mkdir "$TMP/s14/memory.img"
"$CAIRN" img create -f qcow2 "$TMP/d13.qcow2" 16M >/dev/null
start_vm m --kernel "$TESTOS" --mem 64M --disk "$TMP/d13.qcow2" --cmdline "count 200"
wait_for "$TMP/m.out" "tick=2" 20 || fail "guest not counting"
timeout 10 "$CAIRN" control "$TMP/m.sock" '{"cmd":"revert","path":"'"$TMP/s13"'"}' >"$TMP/m.reply" &&
  fail "revert to a FIFO state.bin succeeded"
grep -q "state.bin: a FIFO, not a regular file" "$TMP/m.reply" || { cat "$TMP/m.reply"; fail "FIFO state.bin: no clear error"; }
timeout 10 "$CAIRN" control "$TMP/m.sock" '{"cmd":"revert","path":"'"$TMP/s14"'"}' >"$TMP/m.reply" &&
  fail "revert to a directory memory.img succeeded"
grep -q "memory.img: a directory, not a regular file" "$TMP/m.reply" || { cat "$TMP/m.reply"; fail "directory memory.img: no clear error"; }
t=$(last_tick "$TMP/m.out")
wait_for "$TMP/m.out" "tick=$((t + 2))" 20 || fail "VM stopped after refused reverts"
kill -TERM "$PID_m"
wait_vm m 0
timeout 10 "$CAIRN" run --restore "$TMP/s13" </dev/null >"$TMP/n.out" 2>&1 && fail "restore from a FIFO state.bin succeeded"
grep -q "a FIFO, not a regular file" "$TMP/n.out" || { cat "$TMP/n.out"; fail "restore: no clear error"; }
mkfifo "$TMP/fifo.disk"
timeout 10 "$CAIRN" run --kernel "$TESTOS" --disk "$TMP/fifo.disk" --cmdline "exit 0" </dev/null >"$TMP/o.out" 2>&1 &&
  fail "a FIFO disk was accepted"
grep -q "fifo.disk: a FIFO, not a regular file or block device" "$TMP/o.out" || { cat "$TMP/o.out"; fail "FIFO disk: no clear error"; }
pass "FIFO and directory snapshot files and a FIFO disk are refused at once, the VM runs on and obeys SIGTERM"
# 13. A revert that fails late (a device record 8 bytes short, checksums
#     recomputed) changes nothing: the VM goes on as it was (it used to exit).
"$CAIRN" img create -f qcow2 "$TMP/d17.qcow2" 16M >/dev/null
start_vm r --kernel "$TESTOS" --mem 64M --disk "$TMP/d17.qcow2" --cmdline "memfill 16 4; count 1000"
wait_for "$TMP/r.out" "tick=2" 20 || fail "guest not counting"
ctl r '{"cmd":"snapshot","path":"'"$TMP/s17"'"}'
for inst in $(seq 0 15); do
  rm -rf "$TMP/s17bad"; cp -r "$TMP/s17" "$TMP/s17bad"
  python3 "$SRCDIR/tests/integration/snapshot/state_edit.py" "$TMP/s17bad/state.bin" 4 "$inst" shorten 8 2>/dev/null &&
    break
done
t=$(last_tick "$TMP/r.out")
"$CAIRN" control "$TMP/r.sock" '{"cmd":"revert","path":"'"$TMP/s17bad"'"}' >"$TMP/r.reply" &&
  fail "revert to a short device record succeeded"
grep -q "the VM goes on as it was" "$TMP/r.reply" || { cat "$TMP/r.reply"; fail "no clear error"; }
wait_for "$TMP/r.out" "tick=$((t + 3))" 20 || fail "the VM did not go on after the refused revert"
ctl r '{"cmd":"status"}'
echo "$REPLY_JSON" | grep -q '"state":"running"' || fail "status after the refused revert: $REPLY_JSON"
[ -z "$(ls "$TMP" | grep -E '^d17-s17-r[0-9a-f]{8}\.qcow2$')" ] || fail "the refused revert left an overlay"
ctl r '{"cmd":"revert","path":"'"$TMP/s17"'"}'
ctl r quit
wait_vm r 0
pass "a revert refused late (short device record) leaves the VM running as it was; the good snapshot reverts"
echo "snapshot: all passed"
