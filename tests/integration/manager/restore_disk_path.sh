#!/bin/bash
# cairn run --restore DIR --disk-path OLD=NEW: a snapshot's disk files moved
# elsewhere are restored from where they are (the guest's diskverify
# passes); an OLD the snapshot does not have is a usage error naming it; a
# NEW of the wrong size, format or snapshot, or a copy that lost its frozen
# mark, is refused naming the file, and nothing is made.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN

mk dp --disk-size 32M --net none --cmdline "echo up; shell"
up dp
con dp "diskfill 50 7" "seed=7 ok"
"$C" snapshot create "$TMP/dp" s1 >/dev/null || fail "s1"
con dp "diskfill 20 8" "seed=8 ok"
"$C" snapshot create "$TMP/dp" s2 >/dev/null || fail "s2"
"$C" stop "$TMP/dp" >/dev/null
id1=$(snap_ids dp | awk '$2 == "s1" {print $1}'); id2=$(snap_ids dp | awk '$2 == "s2" {print $1}')
l1=$(layer_of dp s1); l2=$(layer_of dp s2)
# the VM named the layers by absolute path when it froze them
o1=$(realpath "$l1"); o2=$(realpath "$l2")
mkdir -p "$TMP/rd"
mv "$TMP/dp/disks" "$TMP/elsewhere" || fail "mv"
n1=$TMP/elsewhere/$(basename "$l1"); n2=$TMP/elsewhere/$(basename "$l2")

# restore SNAPID ARGS...: a restore with its console on a FIFO; output in $TMP/r.out
restore() {
  local id=$1; shift
  rm -f "$TMP/r.in"; mkfifo "$TMP/r.in"
  "$C" run --restore "$TMP/dp/snapshots/$id" --disk-dir "$TMP/rd" "$@" <"$TMP/r.in" >"$TMP/r.out" 2>&1 &
  RPID=$!
  exec 7>"$TMP/r.in"
}
# typed CMD PATTERN: type into the restored guest, wait for PATTERN
typed() {
  printf '%s\n' "$1" >&7
  wait_for "$TMP/r.out" "$2" 20 || fail "restored guest: '$1' did not print /$2/"
}
finish() {
  typed "exit 0" "exit code=0"
  exec 7>&-
  wait $RPID || { cat "$TMP/r.out"; fail "restore exited non-zero"; }
}

rc=0; "$C" run --restore "$TMP/dp/snapshots/$id2" --disk-dir "$TMP/rd" </dev/null >"$TMP/r.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "$o2: No such file" "$TMP/r.out" || fail "moved without --disk-path: rc $rc, $(cat "$TMP/r.out")"

restore "$id2" --disk-path "$o2=$n2"
typed "diskverify 20 8" "diskverify ok n=20"
finish
restore "$id1" --disk-path "$o1=$n1"
typed "diskverify 50 7" "diskverify ok n=50"
finish
pass "moved layers restore with --disk-path (s2 on its moved backing file, s1): diskverify passes"
rm -f "$TMP"/rd/*

rc=0; "$C" run --restore "$TMP/dp/snapshots/$id2" --disk-path "/no/such.qcow2=$n2" </dev/null 2>"$TMP/err" || rc=$?
[ $rc = 2 ] && grep -q -- "--disk-path /no/such.qcow2: snapshot .* has no disk there (its disks: $o2)" "$TMP/err" ||
  fail "unknown OLD: rc $rc, $(cat "$TMP/err")"
rc=0; "$C" run --kernel "$TESTOS" --disk-path "a=b" </dev/null 2>"$TMP/err" || rc=$?
[ $rc = 2 ] || fail "--disk-path without --restore: rc $rc"
rc=0; "$C" run --restore "$TMP/dp/snapshots/$id2" --disk-path "nothing" </dev/null 2>"$TMP/err" || rc=$?
[ $rc = 2 ] && grep -q "OLD=NEW" "$TMP/err" || fail "--disk-path without '=': rc $rc"
pass "an OLD the snapshot does not name is a usage error naming it"

# refused: refuse ID NEW PATTERN
refuse() {
  local rc=0
  "$C" run --restore "$TMP/dp/snapshots/$id2" --disk-dir "$TMP/rd" --disk-path "$o2=$1" \
    </dev/null >"$TMP/r.out" 2>&1 || rc=$?
  [ $rc = 1 ] && grep -qF "$1" "$TMP/r.out" && grep -qE "$2" "$TMP/r.out" ||
    fail "$3: rc $rc, $(cat "$TMP/r.out")"
  [ -z "$(ls "$TMP/rd")" ] || fail "$3: a refused restore made $(ls "$TMP/rd")"
}
refuse "$n1" "frozen by snapshot .*$id1, not by" "another snapshot's layer"
qemu-img create -q -f qcow2 "$TMP/big.qcow2" 64M
python3 -c "import os,sys; os.setxattr(sys.argv[2], 'user.cairn.frozen', os.getxattr(sys.argv[1], 'user.cairn.frozen'))" \
  "$n2" "$TMP/big.qcow2"
refuse "$TMP/big.qcow2" "67108864 bytes, the snapshot's disk \($o2\) was 33554432" "wrong size"
qemu-img convert -O raw "$n2" "$TMP/raw.img"
refuse "$TMP/raw.img" "a raw image, the snapshot's disk .* is qcow2" "raw image"
cp "$n2" "$TMP/plaincopy.qcow2"
refuse "$TMP/plaincopy.qcow2" "not marked frozen by snapshot" "a copy without the mark"
# a copy without its backing file beside it: refused naming that
cp -a "$n2" "$TMP/kept.qcow2"
rc=0; "$C" run --restore "$TMP/dp/snapshots/$id2" --disk-dir "$TMP/rd" --disk-path "$o2=$TMP/kept.qcow2" \
  </dev/null >"$TMP/r.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "backing file $TMP/$(basename "$n1"): No such file" "$TMP/r.out" ||
  fail "missing backing file: rc $rc, $(cat "$TMP/r.out")"
[ -z "$(ls "$TMP/rd")" ] || fail "a restore refused for its backing file left $(ls "$TMP/rd")"
mkdir "$TMP/third" && cp -a "$TMP/elsewhere/." "$TMP/third/"
restore "$id2" --disk-path "$o2=$TMP/third/$(basename "$n2")"
typed "diskverify 20 8" "diskverify ok n=20"
finish
pass "wrong snapshot's layer, wrong size, raw image, unmarked copy, missing backing file refused naming the file; a cp -a copy of the chain restores"
