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
