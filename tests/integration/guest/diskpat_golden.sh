# Pins the documented block and memory patterns (docs/guest.md): the guest and
# diskpat share guest/diskpat.h, so only fixed values catch a format change.
# The values were cross-checked with an independent implementation of the text.
. "$SRCDIR/tests/integration/lib.sh"
DISKPAT="$BUILDDIR/guest/diskpat"
[ -x "$DISKPAT" ] || fail "$DISKPAT was not built"

"$DISKPAT" write "$TMP/g.img" 3 42 >/dev/null || fail "diskpat write"
sum=$(sha256sum "$TMP/g.img" | cut -d' ' -f1)
[ "$sum" = 2e58d96c06520d9fba48cf2930283efbfb5fb09a625e32cbd6df572f8e77b7ef ] ||
  fail "block layout changed: sha256 of 3 blocks of seed 42 is $sum"
pass "3 blocks of seed 42 match the documented layout"

"$DISKPAT" verify "$TMP/g.img" 3 42 >/dev/null || fail "verify of fresh blocks"
out=$("$DISKPAT" verify "$TMP/g.img" 3 43) && fail "wrong seed accepted"
[ "$out" = "diskpat: verify FAILED block 0 (wrong seed)" ] || fail "said: $out"
out=$("$DISKPAT" verify "$TMP/g.img" 4 42) && fail "missing block accepted"
[ "$out" = "diskpat: verify FAILED block 3 (short read)" ] || fail "said: $out"
# a block copied to the wrong place
dd if="$TMP/g.img" of="$TMP/g.img" bs=4096 count=1 seek=2 conv=notrunc status=none
out=$("$DISKPAT" verify "$TMP/g.img" 3 42) && fail "misplaced block accepted"
[ "$out" = "diskpat: verify FAILED block 2 (wrong sequence number)" ] || fail "said: $out"
"$DISKPAT" write "$TMP/g.img" 1 >/dev/null 2>&1
[ $? = 2 ] || fail "usage error should exit 2"
pass "diskpat reports wrong seed, short file, misplaced block; usage exit 2"

# seeds: a disk whose fill was cut short holds runs of seeds, each block intact
"$DISKPAT" write "$TMP/s.img" 10 5 >/dev/null && "$DISKPAT" write "$TMP/s.img" 4 6 >/dev/null ||
  fail "diskpat write"
out=$("$DISKPAT" seeds "$TMP/s.img" 10) || fail "seeds of intact blocks: $out"
[ "$out" = "diskpat: seeds 0-3:6 4-9:5" ] || fail "said: $out"
printf '\377' | dd of="$TMP/s.img" bs=1 seek=$((6 * 4096 + 100)) conv=notrunc status=none
out=$("$DISKPAT" seeds "$TMP/s.img" 10) && fail "a damaged block accepted"
[ "$out" = "diskpat: seeds 0-3:6 FAILED block 6 (bad checksum)" ] || fail "said: $out"
# memsum: the sum memfill prints (1 MiB of seed 42: checked in Python from the
# text; 16 MiB of seed 1: what the guest printed)
[ "$("$DISKPAT" memsum 1 42)" = 33beac291503c620 ] || fail "memsum 1 42"
[ "$("$DISKPAT" memsum 16 1)" = ce0e14fcb25867c4 ] || fail "memsum 16 1"
pass "diskpat seeds (runs of intact blocks, a damaged one) and memsum"
