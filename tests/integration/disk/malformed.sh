#!/bin/bash
# Malformed images through the real binary: targeted damage (tables and
# entries pointing outside the file, truncation, absurd sizes, backing
# loops) and random byte flips in metadata.  Every run must end with an
# exit status and, on failure, a message naming the file: never a crash
# (signal, sanitizer report) or a hang.
. "$SRCDIR/tests/integration/lib.sh"
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
cd "$TMP"
C() { timeout 20 "$CAIRN" img "$@"; }
RANDOM=${CAIRN_SEED:-99}

survive() { # survive WHAT CMD...: the command ends by itself with 0..3
  "$@" >out.txt 2>err.txt; local rc=$?
  if { [ $rc -gt 3 ] && [ $rc != 63 ]; } || grep -q "Sanitizer\|runtime error" err.txt; then
    cat err.txt | head -20; fail "$WHAT: '$*' exit $rc"
  fi
  if [ $rc = 1 ] && ! grep -q "$IMG" err.txt; then
    cat err.txt; fail "$WHAT: the message does not name the file"
  fi
  return 0
}
patch() { # patch FILE OFFSET HEXBYTES
  python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2],0)); f.write(bytes.fromhex(sys.argv[3]))" "$@"
}
# Read, write and check IMG: each ends cleanly.  A write that was
# acknowledged must read back as written (a damaged image may refuse the
# write, never scramble it).
rw_cmds() {
  survive C info "$IMG"; survive C check "$IMG"
  survive C io -c "read 0 512k" -c "read 1M 1M" -c "read 3M 1M" "$IMG"
  survive C io -v -c "write -P 1 4096 70000" -c flush -c "read -P 1 4096 70000" "$IMG"
  if grep -q "^done 0" out.txt && grep -q "pattern mismatch" err.txt; then
    cat err.txt; fail "$WHAT: an acknowledged write reads back differently"
  fi
  survive C check "$IMG"
}
all_cmds() {
  rw_cmds
  survive C map "$IMG"; survive C convert -O raw "$IMG" out.raw
}

C create good.qcow2 4M
C io -c "write -P 5 0 300k" -c "write -P 6 2M 64k" good.qcow2
# Layout: header 0, refcount table 0x10000, block 0x20000, L1 0x30000,
# first L2 at 0x40000.
IMG=bad.qcow2
while read -r what off hex; do
  WHAT=$what; cp good.qcow2 $IMG; patch $IMG $off $hex; all_cmds
done <<'LIST'
l1-outside 0x30000 8000f00000000000
l1-misaligned 0x30000 8000000000040123
l1-reserved 0x30000 8100000000040000
l2-outside 0x40000 800000f000000000
l2-misaligned 0x40000 8000000000050100
l2-compressed-garbage 0x40000 4000000000050000
rt-outside 0x10000 0000f00000000000
rb-zeroed 0x20000 0000000000000000
refcount-max 0x20008 ffff
size-absurd 24 7fffffffffffffff
l1-size-huge 36 7fffffff
l1-size-zero 36 00000000
cluster-bits-31 20 0000001f
header-length 100 00000068ffff
backing-huge 8 00000000000000780000ffff
backing-self 8 0000000000000078000000096261642e71636f7732
LIST
pass "targeted damage: clear errors, no crash"
# backing-self above has a name at 0x78 that does not exist yet: make a loop.
cp good.qcow2 loopa.qcow2; cp good.qcow2 loopb.qcow2
python3 - <<'PY'
import struct
for a, b in (("loopa.qcow2", b"loopb.qcow2"), ("loopb.qcow2", b"loopa.qcow2")):
    with open(a, "r+b") as f:
        f.seek(8); f.write(struct.pack(">QI", 0x200, len(b)))
        f.seek(0x200); f.write(b)
PY
IMG=loopa.qcow2 WHAT=loop; survive C info --backing-chain loopa.qcow2; survive C io -c "read 0 4k" loopa.qcow2
grep -q loop err.txt || fail "a backing loop should be named"
head -c 100 good.qcow2 > trunc1.qcow2; head -c 200000 good.qcow2 > trunc2.qcow2
for IMG in trunc1.qcow2 trunc2.qcow2; do WHAT=truncated; all_cmds; done
pass "backing loops and truncated files"

# Random byte flips in the first 0x60000 bytes (header, tables, first data).
for ((i = 0; i < 80; i++)); do
  IMG=flip.qcow2; WHAT="flip $i"; cp good.qcow2 $IMG
  n=$((1 + RANDOM % 4))
  for ((j = 0; j < n; j++)); do
    case $((RANDOM % 3)) in
      0) off=$((RANDOM % 112)) ;;
      1) off=$((0x10000 + RANDOM % 64)) ;;
      *) off=$((0x20000 + (RANDOM % 3) * 0x10000 + RANDOM % 64)) ;;
    esac
    patch $IMG $off $(printf %02x $((RANDOM % 256)))
  done
  rw_cmds
done
pass "80 images with random metadata damage read, written and checked: no crash, no hang"
