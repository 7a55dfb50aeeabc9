#!/bin/bash
# A guest that misbehaves (issue 14 section 4): the test guest's vhostile job
# sends thousands of malformed virtio-blk requests (loops, over-long chains,
# buffers outside RAM, lengths near 4 GiB and sums over it, wrong directions,
# bad indices, avail idx jumps, short headers, unknown types, indirect
# descriptors not negotiated, writes to a read-only disk...) mixed with valid
# ones whose data it checks, and fails on any outcome other than the one
# cairn documents (docs/guest.md).  Then, on the same VM, diskfill and
# diskverify.  cairn must exit with the guest's status, print no sanitizer
# report, and leave an image that qemu-img check accepts and that holds
# what the valid writes wrote.
. "$SRCDIR/tests/integration/lib.sh"
need_kvm
need_testos
command -v qemu-img >/dev/null || { echo "SKIP: qemu-img not installed"; exit 77; }
DISKPAT="$BUILDDIR/guest/diskpat"
[ -x "$DISKPAT" ] || fail "$DISKPAT not built"
N=${HOSTILE_N:-3000}
total_valid=0
total_hostile=0

# run_vm NAME CMDLINE DISK: runs the VM, checks its exit status and stderr.
run_vm() {
  local name=$1 cmd=$2 disk=$3 start=$SECONDS
  timeout 240 "$CAIRN" run --kernel "$TESTOS" --cmdline "$cmd" --disk "$disk" \
    </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err"
  local rc=$?
  tr -d '\r' <"$TMP/$name.out" >"$TMP/$name.txt"
  if [ "$rc" != 0 ]; then
    grep -v "^cpu0: virtio-blk" "$TMP/$name.txt" | tail -n 20
    tail -n 20 "$TMP/$name.err"
    [ "$rc" = 124 ] && fail "$name: cairn or the guest hung (timeout)"
    fail "$name: cairn exited $rc, expected 0"
  fi
  if grep -qE "Sanitizer|runtime error|Segmentation|Aborted|internal error" "$TMP/$name.err"; then
    cat "$TMP/$name.err"
    fail "$name: cairn reported a crash or undefined behaviour"
  fi
  echo "$name: $((SECONDS - start)) s"
}

# count_requests NAME SEED...: every run of vhostile finished and passed.
count_requests() {
  local name=$1 seed line; shift
  for seed in "$@"; do
    line=$(grep -E "^cpu0: vhostile seed=$seed n=$N ok:" "$TMP/$name.txt") ||
      { cat "$TMP/$name.txt"; fail "$name: vhostile $seed did not pass"; }
    echo "$line"
    [[ $line =~ valid=([0-9]+)\ hostile=([0-9]+) ]] || fail "$name: cannot read the counts"
    total_valid=$((total_valid + BASH_REMATCH[1]))
    total_hostile=$((total_hostile + BASH_REMATCH[2]))
  done
}

expect_line() {
  grep -qE "$2" "$TMP/$1.txt" || { cat "$TMP/$1.txt"; fail "$1: no line /$2/"; }
}

# A qcow2 disk larger than 4 GiB, so that a request of more than 4 GiB is
# within it and only the 4 GiB limit on a chain refuses it.
img="$TMP/h.qcow2"
qemu-img create -q -f qcow2 "$img" 6G || fail "qemu-img create"
run_vm qcow2 "vhostile 1 $N; vhostile 2 $N; vhostile 3 $N; diskfill 400 7; diskverify 400 7; echo alive; exit 0" "$img"
count_requests qcow2 1 2 3
expect_line qcow2 "^cpu0: diskfill n=400 seed=7 ok"
expect_line qcow2 "^cpu0: diskverify ok n=400"
expect_line qcow2 "^cpu0: alive$"
grep -q "malformed request" "$TMP/qcow2.err" || fail "cairn did not report a malformed request"
pass "qcow2: $((3 * N)) requests, the device went on serving, diskfill/diskverify afterwards"

qemu-img check "$img" >"$TMP/check.out" 2>&1 || { cat "$TMP/check.out"; fail "qemu-img check failed"; }
size=$(qemu-img info --output=json "$img" | sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p')
[ "$size" = $((6 << 30)) ] || fail "virtual size changed to $size"
qemu-img convert -O raw "$img" "$TMP/h.raw" || fail "qemu-img convert"
"$DISKPAT" verify "$TMP/h.raw" 400 7 || fail "the host does not find diskfill's blocks"
rm -f "$TMP/h.raw"
pass "qcow2 image: qemu-img check clean, same size, the valid writes are there"

# A new VM on the same image: the data is there, and the device serves it.
run_vm again "diskverify 400 7; vhostile 4 $N; exit 0" "$img"
count_requests again 4
expect_line again "^cpu0: diskverify ok n=400"
qemu-img check "$img" >"$TMP/check.out" 2>&1 || { cat "$TMP/check.out"; fail "qemu-img check failed (second VM)"; }
pass "a second VM on the image verifies and survives another run"

# A read-only raw disk: every write refused, the file unchanged.
ro="$TMP/ro.img"
truncate -s 64M "$ro"
"$DISKPAT" write "$ro" 256 5 >/dev/null || fail "diskpat write"
cp "$ro" "$TMP/ro.before"
run_vm ro "vhostile 5 $N; vhostile 6 $N; diskverify 256 5; echo alive; exit 0" "$ro,readonly"
count_requests ro 5 6
expect_line ro "^cpu0: diskverify ok n=256"
expect_line ro "^cpu0: alive$"
cmp -s "$ro" "$TMP/ro.before" || fail "the read-only disk was modified"
pass "read-only raw disk: unchanged, still readable"

echo "hostile: sent $total_hostile hostile and $total_valid valid requests in $((6 * N)); all passed"
