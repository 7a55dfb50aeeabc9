# Image locks, as QEMU takes them: an image a cairn VM writes is refused to
# a second cairn VM and to QEMU's tools (without -U), QEMU's write lock
# keeps cairn out, readers share, and a snapshot's frozen layer cannot be
# opened for writing even by root (the file mode alone did not stop root).
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos

"$CAIRN" img create -f qcow2 "$TMP/d.qcow2" 64M >/dev/null || fail "img create"
start_vm a --kernel "$TESTOS" --mem 64M --disk "$TMP/d.qcow2" --cmdline "count 1000"
wait_for "$TMP/a.out" "tick=1" 20 || fail "guest not counting"

# a second writer: refused, and the first VM's disk is untouched by it
timeout 20 "$CAIRN" run --kernel "$TESTOS" --mem 64M --disk "$TMP/d.qcow2" --cmdline "exit 0" \
  </dev/null >"$TMP/b.out" 2>&1 && fail "a second VM opened the disk a VM writes"
grep -q 'd.qcow2: failed to get "write" lock' "$TMP/b.out" || { cat "$TMP/b.out"; fail "no lock error"; }
# QEMU's tools see cairn's lock; -U reads anyway
qemu-img info "$TMP/d.qcow2" >"$TMP/qi.out" 2>&1 && fail "qemu-img info ignored cairn's write lock"
grep -qi 'lock' "$TMP/qi.out" || { cat "$TMP/qi.out"; fail "qemu-img: no lock error"; }
qemu-img info -U "$TMP/d.qcow2" >/dev/null || fail "qemu-img info -U"
qemu-io -c 'write 0 4k' "$TMP/d.qcow2" >"$TMP/qio.out" 2>&1 && ! grep -qi lock "$TMP/qio.out" &&
  fail "qemu-io wrote the image a cairn VM writes"
"$CAIRN" img info "$TMP/d.qcow2" >"$TMP/ci.out" 2>&1 && fail "cairn img info without -U on an image in use"
"$CAIRN" img info -U "$TMP/d.qcow2" >/dev/null || fail "cairn img info -U"
"$CAIRN" img check -U "$TMP/d.qcow2" >/dev/null 2>&1; [ $? -le 3 ] || fail "cairn img check -U"
pass "a running VM's disk: a second VM, qemu-img and qemu-io are refused; -U reads"

# a snapshot freezes the layer: readers share it, a writer never gets it, not even root
ctl a '{"cmd":"snapshot","path":"'"$TMP/s1"'"}'
qemu-img info "$TMP/d.qcow2" >/dev/null 2>&1 || fail "the frozen layer is locked against readers"
timeout 20 "$CAIRN" run --kernel "$TESTOS" --mem 64M --disk "$TMP/d.qcow2" --cmdline "exit 0" \
  </dev/null >"$TMP/c.out" 2>&1 && fail "a VM opened a frozen layer for writing"
grep -qE "failed to get|frozen layer" "$TMP/c.out" || { cat "$TMP/c.out"; fail "no clear error"; }
ctl a quit
wait_vm a 0
timeout 20 "$CAIRN" run --kernel "$TESTOS" --mem 64M --disk "$TMP/d.qcow2" --cmdline "exit 0" \
  </dev/null >"$TMP/c.out" 2>&1 && fail "a VM wrote a snapshot's frozen layer (as $(id -un))"
grep -q "d.qcow2: a frozen layer (of snapshot $TMP/s1)" "$TMP/c.out" || { cat "$TMP/c.out"; fail "no frozen-layer error"; }
"$CAIRN" img commit "$TMP/d-s1.qcow2" >"$TMP/cm.out" 2>&1 && fail "commit into a frozen layer"
grep -q "frozen layer" "$TMP/cm.out" || { cat "$TMP/cm.out"; fail "commit: no frozen-layer error"; }
# the snapshot still restores, on a new overlay over the untouched layer
timeout 30 "$CAIRN" run --restore "$TMP/s1" --disk-dir "$TMP" </dev/null >"$TMP/r.out" 2>&1 &
rp=$!
wait_for "$TMP/r.out" "tick=" 20 || fail "restore"
kill -TERM $rp; wait $rp
qemu-img check -q "$TMP/d.qcow2" || fail "qemu-img check of the frozen layer"
pass "a frozen layer: readers share it, a writer (root too) and a commit into it are refused; it restores"

# QEMU writing an image keeps cairn out
"$CAIRN" img create -f qcow2 "$TMP/q.qcow2" 16M >/dev/null
qemu-system-x86_64 -accel tcg -M microvm -m 64M -nodefaults -display none -no-reboot \
  -drive file="$TMP/q.qcow2",format=qcow2,if=none,id=d0 -device virtio-blk-device,drive=d0 \
  -kernel "$TESTOS" -append "count 1000" -serial null </dev/null >"$TMP/qemu.out" 2>&1 &
qp=$!
for i in $(seq 1 100); do
  qemu-img info "$TMP/q.qcow2" >/dev/null 2>&1 || break
  sleep 0.1
done
timeout 20 "$CAIRN" run --kernel "$TESTOS" --mem 64M --disk "$TMP/q.qcow2" --cmdline "exit 0" \
  </dev/null >"$TMP/d.out" 2>&1 && { kill $qp; fail "cairn wrote an image QEMU writes"; }
kill $qp; wait $qp 2>/dev/null
grep -q 'q.qcow2: failed to get "write" lock' "$TMP/d.out" || { cat "$TMP/d.out" "$TMP/qemu.out"; fail "no lock error against QEMU"; }
pass "an image QEMU writes is refused to cairn"
