# diskfill/diskverify against the host tool diskpat on QEMU q35 with a modern
# virtio-blk-pci disk: host-written blocks verify in the guest, guest-written
# blocks verify on the host, and a changed block is found.
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"

img=$TMP/disk.img
truncate -s 16M "$img"
disk=(-drive "file=$img,if=none,id=d0,format=raw" -device virtio-blk-pci,drive=d0,disable-legacy=on)

"$DISKPAT" write "$img" 300 77 >/dev/null || fail "diskpat write"
rc=$(run_qemu q35 50 "$TMP/a.log" "diskverify 300 77; diskfill 200 5; diskverify 200 5; exit 0" "${disk[@]}")
expect "$TMP/a.log" "cpu0: diskverify ok n=300"
expect "$TMP/a.log" "cpu0: diskfill n=200 seed=5 ok"
expect "$TMP/a.log" "cpu0: diskverify ok n=200"
[ "$rc" = "$(qemu_status 0)" ] || fail "status $rc"
pass "host-written blocks verify in the guest; guest fill verifies in the guest"

# diskread: the device reads blocks straight into the memfill region, and
# memverify checks them there with the rest of the region
rc=$(run_qemu q35 50 "$TMP/r.log" "memfill 8 1; diskread 200 5 2; memverify; diskread 4 5 9; memverify; exit 0" "${disk[@]}")
expect "$TMP/r.log" "cpu0: diskread n=200 seed=5 off=2 ok"
expect "$TMP/r.log" "cpu0: diskread n=4 seed=5 off=9 ok"
[ "$(grep -c '^cpu0: memverify ok' "$TMP/r.log.txt")" = 2 ] || { cat "$TMP/r.log.txt"; fail "memverify after diskread"; }
[ "$rc" = "$(qemu_status 0)" ] || fail "status $rc"
pass "diskread into the memfill region; memverify checks the blocks there"

"$DISKPAT" verify "$img" 200 5 || fail "diskpat verify of the guest's blocks"
"$DISKPAT" verify "$img" 300 77 >/dev/null && fail "diskpat verify should see seed 5 blocks"
pass "guest-written blocks verify on the host"

# change one byte of block 37
printf '\xff' | dd of="$img" bs=1 seek=$((37 * 4096 + 1000)) conv=notrunc status=none
out=$("$DISKPAT" verify "$img" 200 5) && fail "diskpat missed the change"
[ "$out" = "diskpat: verify FAILED block 37 (bad checksum)" ] || fail "diskpat said: $out"
rc=$(run_qemu q35 50 "$TMP/b.log" "diskverify 200 5; exit 0" "${disk[@]}")
expect "$TMP/b.log" "cpu0: diskverify FAILED block 37 \(bad checksum\)"
[ "$rc" = "$(qemu_status 112)" ] || fail "status $rc, expected $(qemu_status 112)"
pass "changed block 37 detected by the guest"

# qboot leaves the 64-bit virtio BARs unassigned on q35: the guest places them itself.
qboot=/usr/share/qemu/qboot.rom
if [ -f "$qboot" ]; then
  img2=$TMP/disk2.img
  truncate -s 4M "$img2"
  rc=$(run_qemu q35 30 "$TMP/q.log" "diskfill 50 8; diskverify 50 8; exit 0" -bios "$qboot" \
    -drive "file=$img2,if=none,id=d0,format=raw" -device virtio-blk-pci,drive=d0,disable-legacy=on)
  expect "$TMP/q.log" "cpu0: virtio-blk 00:01.0 blocks=1024 .* \(BARs assigned by the guest\)"
  expect "$TMP/q.log" "cpu0: diskverify ok n=50"
  [ "$rc" = "$(qemu_status 0)" ] || fail "qboot: status $rc"
  "$DISKPAT" verify "$img2" 50 8 >/dev/null || fail "qboot: host check"
  pass "BARs left unassigned by the firmware are assigned by the guest"
else
  echo "note: $qboot missing: BAR assignment not tested"
fi
