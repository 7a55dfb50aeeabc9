#!/bin/bash
# Interop with qemu-utils as the independent checker: images and chains
# that cairn writes pass `qemu-img check` and read the same through
# qemu-img; images that qemu-img/qemu-io write (random patterns, zero
# clusters, discards, compressed clusters, other cluster sizes, v2,
# extended L2, internal snapshots) read the same through cairn.
. "$SRCDIR/tests/integration/lib.sh"
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
  { echo "SKIP: qemu-utils (qemu-img, qemu-io) not installed"; exit 77; }
cd "$TMP"
C() { "$CAIRN" img "$@"; }
qcheck() { qemu-img check -q "$1" || fail "qemu-img check $1: $(qemu-img check "$1" 2>&1 | tail -3)"; }
same() { # same IMG_A IMG_B: both tools agree the contents are identical
  qemu-img compare -q "$1" "$2" || fail "qemu-img compare $1 $2 differ"
  C compare "$1" "$2" >/dev/null || fail "cairn img compare $1 $2 differ"
}
RANDOM=4242

# Random ops as pairs of command lists: $OPS_C for cairn img io, $OPS_Q for
# qemu-io on a raw reference.  Discards only on whole clusters.
gen_ops() { # gen_ops SIZE_MB CLUSTER N
  local size=$(($1 << 20)) cs=$2 n=$3 i off len pat
  OPS_C=(); OPS_Q=()
  for ((i = 0; i < n; i++)); do
    off=$(( (RANDOM * 32768 + RANDOM) % size )); len=$(( 1 + (RANDOM * 7) % 200000 ))
    (( off + len > size )) && len=$((size - off))
    pat=$(( 1 + RANDOM % 255 ))
    case $((RANDOM % 8)) in
      0|1) OPS_C+=(-c "write -z $off $len"); OPS_Q+=(-c "write -z $off $len") ;;
      2) off=$(( off / cs * cs )); len=$(( (len + cs - 1) / cs * cs ));
         (( off + len > size )) && len=$((size - off))
         OPS_C+=(-c "discard $off $len"); OPS_Q+=(-c "write -z $off $len") ;;
      *) OPS_C+=(-c "write -P $pat $off $len"); OPS_Q+=(-c "write -P $pat $off $len") ;;
    esac
  done
}

# 1. cairn writes, qemu checks and reads: every cluster size.
for cs in 512 4096 65536 2097152; do
  C create -o cluster_size=$cs c$cs.qcow2 24M || fail "create cs=$cs"
  qemu-img create -q -f raw ref$cs.raw 24M || fail "qemu-img create ref$cs.raw"
  gen_ops 24 $cs 150
  C io "${OPS_C[@]}" c$cs.qcow2 || fail "cairn io cs=$cs"
  qemu-io -f raw "${OPS_Q[@]}" ref$cs.raw >/dev/null || fail "qemu-io cs=$cs"
  qcheck c$cs.qcow2
  same c$cs.qcow2 ref$cs.raw
  [ "$(qemu-img info --output=json c$cs.qcow2 | jq '.["cluster-size"]')" = $cs ] || fail "cluster size $cs"
done
pass "cairn-written images, cluster sizes 512 B..2 MiB: qemu-img check clean, content agrees"

# 2. A chain written by cairn (mixed cluster sizes, qcow2 and raw base).
qemu-img create -q -f raw base.raw 32M || fail "qemu-img create base.raw"
qemu-io -f raw -c "write -P 7 0 32M" base.raw >/dev/null || fail "qemu-io base.raw"
cp base.raw ref.raw || fail "cp base.raw"
prev=base.raw; pfmt=raw
for i in 1 2 3 4 5; do
  cs=$(( 4096 << (i % 3 * 2) ))
  C create -f qcow2 -b $prev -F $pfmt -o cluster_size=$cs L$i.qcow2 || fail "overlay $i"
  gen_ops 32 $cs 60
  C io "${OPS_C[@]}" L$i.qcow2 || fail "io L$i"
  qemu-io -f raw "${OPS_Q[@]}" ref.raw >/dev/null || fail "qemu-io ref.raw (layer $i)"
  qcheck L$i.qcow2
  prev=L$i.qcow2; pfmt=qcow2
done
same L5.qcow2 ref.raw
[ "$(qemu-img info --backing-chain --output=json L5.qcow2 | jq length)" = 6 ] || fail "chain length"
C convert -O qcow2 L5.qcow2 flat.qcow2 || fail "convert to qcow2"
qcheck flat.qcow2; same flat.qcow2 ref.raw
C convert -O raw L5.qcow2 flat.raw && cmp -s flat.raw ref.raw || fail "convert to raw"
C convert -O qcow2 -B L2.qcow2 -F qcow2 L5.qcow2 part.qcow2 || fail "convert -B"
qcheck part.qcow2; same part.qcow2 ref.raw
[ "$(qemu-img info --output=json part.qcow2 | jq -r '.["backing-filename"]')" = L2.qcow2 ] || fail "convert -B backing"
[ $(stat -c %s part.qcow2) -lt $(stat -c %s flat.qcow2) ] || fail "convert -B should store only the differences"
pass "5-layer chain on a raw base written by cairn: each layer clean, chain reads agree, convert flattens or keeps a backing file"

# 3. Commit, stream and rebase: cairn against qemu-img on copies.
mkdir q c
for d in q c; do cp base.raw L1.qcow2 L2.qcow2 L3.qcow2 L4.qcow2 L5.qcow2 $d/; done
(cd q && qemu-img commit -q L5.qcow2) || fail "qemu-img commit"
(cd c && C commit L5.qcow2 >/dev/null) || fail "cairn img commit"
for f in L4.qcow2 L5.qcow2; do qcheck c/$f; done
same c/L4.qcow2 q/L4.qcow2
same c/L5.qcow2 ref.raw
(cd q && qemu-img rebase -q -b L2.qcow2 -F qcow2 L5.qcow2) || fail "qemu-img rebase"
(cd c && C rebase -b L2.qcow2 -F qcow2 L5.qcow2) || fail "cairn img rebase"
qcheck c/L5.qcow2; same c/L5.qcow2 q/L5.qcow2; same c/L5.qcow2 ref.raw
[ "$(qemu-img info --output=json c/L5.qcow2 | jq -r '.["backing-filename"]')" = L2.qcow2 ] || fail "rebase backing name"
(cd c && C commit -b L1.qcow2 L5.qcow2 >/dev/null) || fail "cairn img commit -b"
qcheck c/L1.qcow2; qcheck c/L5.qcow2; same c/L5.qcow2 ref.raw; same c/L1.qcow2 ref.raw
(cd c && C stream L5.qcow2) || fail "cairn img stream"
qcheck c/L5.qcow2; same c/L5.qcow2 ref.raw
[ "$(qemu-img info --output=json c/L5.qcow2 | jq -r '.["backing-filename"]')" = null ] || fail "stream left a backing file"
pass "commit, commit -b, safe rebase and stream agree with qemu-img and keep the content"

# 4. qemu writes, cairn reads: patterns, zeroes, discards, compression,
#    v2, extended L2, zstd, internal snapshots.
check_q() { # check_q IMG: cairn reads what qemu-img reads, and check agrees
  qemu-img convert -O raw "$1" "$1.ref" || fail "qemu-img convert $1"
  C compare "$1" "$1.ref" >/dev/null || fail "cairn reads $1 differently from qemu"
  C check "$1" >/dev/null || fail "cairn img check $1: exit $?"
  C convert -O qcow2 "$1" "$1.re.qcow2" || fail "cairn img convert $1"
  qcheck "$1.re.qcow2"; same "$1.re.qcow2" "$1.ref"
}
for opts in "cluster_size=512" "cluster_size=4096" "cluster_size=65536" "cluster_size=2M" \
            "compat=0.10" "extended_l2=on,cluster_size=65536" "refcount_bits=1" "refcount_bits=64"; do
  f=q-${opts//[=,]/_}.qcow2
  qemu-img create -q -f qcow2 -o "$opts" $f 16M || fail "qemu-img create $opts"
  gen_ops 16 65536 80
  qemu-io "${OPS_Q[@]}" -c "discard 1M 3M" -c "write -z -u 5M 1M" -c "write -P 9 5M 100" $f >/dev/null ||
    fail "qemu-io $opts"
  check_q $f
done
qemu-img convert -c -O qcow2 c65536.qcow2 comp-zlib.qcow2 || fail "qemu-img convert zlib"
qemu-img convert -c -O qcow2 -o compression_type=zstd c65536.qcow2 comp-zstd.qcow2 ||
  fail "qemu-img convert zstd"
qemu-img convert -c -O qcow2 -o cluster_size=4096 c65536.qcow2 comp-4k.qcow2 ||
  fail "qemu-img convert 4k"
for f in comp-zlib.qcow2 comp-zstd.qcow2 comp-4k.qcow2; do check_q $f; same $f ref65536.raw; done
# Writing over compressed clusters allocates plain ones; qemu agrees.
cp comp-zlib.qcow2 comp-w.qcow2 && cp ref65536.raw comp-w.raw || fail "cp comp-w"
C io -c "write -P 3 1000 70000" -c "write -z 300k 10k" comp-w.qcow2 || fail "write over compressed"
qemu-io -f raw -c "write -P 3 1000 70000" -c "write -z 300k 10k" comp-w.raw >/dev/null ||
  fail "qemu-io comp-w.raw"
qcheck comp-w.qcow2; same comp-w.qcow2 comp-w.raw
qemu-img snapshot -c snap1 c4096.qcow2 || fail "qemu-img snapshot"
qemu-io -c "write -P 1 0 1M" c4096.qcow2 >/dev/null || fail "qemu-io after an internal snapshot"
check_q c4096.qcow2
C io -c "write 0 1" c4096.qcow2 2>/dev/null && fail "wrote to an image with internal snapshots"
pass "qemu-written images (5 cluster sizes, v2, extended L2, refcount widths, zlib/zstd compression, snapshots) read identically"

# 5. Relative backing names resolve against the image's directory.
mkdir -p sub/deep
qemu-img create -q -f qcow2 sub/deep/b.qcow2 8M || fail "qemu-img create sub/deep/b.qcow2"
qemu-io -c "write -P 5 0 1M" sub/deep/b.qcow2 >/dev/null || fail "qemu-io sub/deep/b.qcow2"
C create -b deep/b.qcow2 -F qcow2 sub/t.qcow2 || fail "create with a relative backing name"
C io -c "read -P 5 0 1M" sub/t.qcow2 || fail "relative backing read from another directory"
qemu-io -c "read -P 5 0 1M" sub/t.qcow2 >/dev/null || fail "qemu reads our relative backing"
pass "relative backing names"

# 6. CLI: exit codes and JSON.
C create x.qcow2 8M || fail "create x.qcow2"
C check x.qcow2 >/dev/null; [ $? = 0 ] || fail "check clean exit"
# A leak: the header cluster's refcount (rb at 0x20000) set to 2.
printf '\x00\x02' | dd of=x.qcow2 bs=1 seek=$((0x20000)) conv=notrunc status=none
C check x.qcow2 >/dev/null 2>&1; [ $? = 3 ] || fail "check with a leak should exit 3"
qemu-img check x.qcow2 >/dev/null 2>&1; [ $? = 3 ] || fail "qemu-img sees the leak too"
[ "$(C check --output=json x.qcow2 2>/dev/null | jq .leaks)" = 1 ] || fail "check json leaks"
C check -r leaks x.qcow2 >/dev/null 2>&1; [ $? = 0 ] || fail "check -r leaks should repair"
qcheck x.qcow2
# A corruption: a data cluster's refcount cleared.
C io -c "write 0 64k" x.qcow2 || fail "write x.qcow2"
printf '\x00\x00' | dd of=x.qcow2 bs=1 seek=$((0x20000 + 2 * 5)) conv=notrunc status=none
C check x.qcow2 >/dev/null 2>&1; [ $? = 2 ] || fail "check with a corruption should exit 2"
C info nonexistent.qcow2 2>err.txt; [ $? = 1 ] && grep -q nonexistent.qcow2 err.txt || fail "missing file"
C info 2>/dev/null; [ $? = 2 ] || fail "usage error exit"
C frobnicate 2>/dev/null; [ $? = 2 ] || fail "unknown command exit"
[ "$(C info --json L5.qcow2 | jq '.["virtual-size"]')" = $((32 << 20)) ] || fail "info json"
[ "$(C info --backing-chain --output=json L5.qcow2 | jq length)" = 6 ] || fail "info chain json"
C compare L5.qcow2 base.raw >/dev/null; [ $? = 1 ] || fail "compare different exit 1"
# map agrees with qemu-img map on the fields both report.
sel='[.[] | {start, length, depth, zero, data, offset}]'
diff <(C map --output=json L5.qcow2 | jq -c "$sel") <(qemu-img map --output=json L5.qcow2 | jq -c "$sel") >/dev/null ||
  fail "map differs from qemu-img map"
qemu-img create -q -f qcow2 m0.qcow2 4M || fail "qemu-img create m0.qcow2"
qemu-io -c "write 0 64k" m0.qcow2 >/dev/null || fail "qemu-io m0.qcow2"
C create -b m0.qcow2 -F qcow2 m1.qcow2 || fail "create m1.qcow2"
C io -c "write 1M 64k" -c "write -z 2M 64k" m1.qcow2 || fail "write m1.qcow2"
sel='[.[] | {start, length, depth, present, zero, data, offset}]'
diff <(C map --output=json m1.qcow2 | jq -c "$sel") <(qemu-img map --output=json m1.qcow2 | jq -c "$sel") >/dev/null ||
  fail "map of a chain with unallocated ranges differs from qemu-img map"
C commit --help | grep -q Usage || fail "--help"
pass "CLI exit codes (check 0/2/3, compare, usage), JSON info/check/map agree with qemu-img"
