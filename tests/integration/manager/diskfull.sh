# A full file system (a 96 MiB tmpfs made for the test): operations fail
# with a message naming the problem and leave the bundle as it was (vm.json
# unchanged, cairn check clean); once space is back everything works.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN
MGR_MNT=$TMP/fs
mkdir -p "$MGR_MNT"
mount -t tmpfs -o size=96m tmpfs "$MGR_MNT" 2>/dev/null ||
  { echo "SKIP: cannot mount a size-limited tmpfs (needs root)"; MGR_MNT=; exit 77; }
B=$MGR_MNT/vm

mk fs/vm --disk-size 64M --cmdline "echo up; shell"
up fs/vm
con fs/vm "diskfill 1000 1" "seed=1 ok"
"$C" snapshot create "$B" A >/dev/null || fail A
con fs/vm "diskfill 600 2" "seed=2 ok"
"$C" snapshot create "$B" B >/dev/null || fail B
con fs/vm "diskfill 300 3" "seed=3 ok"
"$C" snapshot create "$B" C >/dev/null || fail C
"$C" stop "$B" >/dev/null || fail stop
check_ok fs/vm

fill() { # leave about $1 KiB free
  rm -f "$MGR_MNT/fill"
  local avail; avail=$(df -k --output=avail "$MGR_MNT" | tail -n1)
  [ "$avail" -gt "$1" ] && fallocate -l "$(((avail - $1) * 1024))" "$MGR_MNT/fill"
  return 0
}
same_as_before() {
  cmp -s "$B/vm.json" "$TMP/vm.json.before" || fail "$1: vm.json changed"
  check_ok fs/vm
}
cp "$B/vm.json" "$TMP/vm.json.before"

fill 0
"$C" snapshot create "$B" X 2>"$TMP/err" && fail "snapshot on a full file system"
grep -q "No space left" "$TMP/err" || fail "message: $(cat "$TMP/err")"
grep -q "$B" "$TMP/err" || fail "message must name the file: $(cat "$TMP/err")"
same_as_before "snapshot create"
pass "disk-only snapshot on a full file system: $(cat "$TMP/err")"

"$C" snapshot revert "$B" A 2>"$TMP/err"; rc=$?
[ $rc = 0 ] || grep -q "No space left" "$TMP/err" || fail "revert message: $(cat "$TMP/err")"
[ $rc = 0 ] && { check_ok fs/vm; cp "$B/vm.json" "$TMP/vm.json.before"; } || same_as_before "revert"
pass "revert on a full file system: exit $rc"

fill 512
"$C" snapshot delete "$B" B 2>"$TMP/err" && fail "delete with no room to merge"
grep -qE "needs about [0-9]+ bytes" "$TMP/err" || fail "message: $(cat "$TMP/err")"
same_as_before "delete"
"$C" clone "$B" C "$MGR_MNT/full" --full 2>"$TMP/err" && fail "full clone with no room"
grep -q "needs about" "$TMP/err" || fail "message: $(cat "$TMP/err")"
[ ! -e "$MGR_MNT/full" ] || fail "full clone left a directory"
same_as_before "clone --full"
pass "delete and full clone refused up front: $(cat "$TMP/err")"

# a whole-machine snapshot whose memory does not fit: the VM freezes its
# disks before it writes memory; when the memory fails it merges them back,
# so there is no snapshot and the bundle's layers are as they were
rm -f "$MGR_MNT/fill"
"$C" snapshot revert "$B" C >/dev/null || fail "revert C"
up fs/vm
con fs/vm "memfill 16 5" "seed=5" 60
fill 4096
cp "$B/vm.json" "$TMP/vm.json.M"
"$C" snapshot create "$B" M 2>"$TMP/err" && fail "memory snapshot on a full file system"
# (the VMM's snapshot writer may die of SIGBUS instead of reporting ENOSPC)
grep -qE "No space left|writer .* died" "$TMP/err" || fail "message: $(cat "$TMP/err")"
check_ok fs/vm
"$C" snapshot list "$B" --json | python3 -c "
import json,sys; s=[x for x in json.load(sys.stdin)['snapshots'] if x['name']=='M']
assert not s, s" || { grep -a "stays on\|cairn:" "$B/console.log" | tail -5; fail "M must be absent: $(cat "$TMP/err")"; }
python3 -c "
import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); assert a['active']==b['active'], (a['active'],b['active'])" \
  "$TMP/vm.json.M" "$B/vm.json" || fail "the active layers changed"
con fs/vm "diskverify 300 3" "diskverify ok"
pass "memory snapshot on a full file system: $(cat "$TMP/err")"

rm -f "$MGR_MNT/fill"
"$C" snapshot create "$B" N >/dev/null 2>"$TMP/err" || fail "snapshot once space is back: $(cat "$TMP/err")"
con fs/vm "memverify" "memverify ok" 60
"$C" stop "$B" >/dev/null
"$C" snapshot delete "$B" B >/dev/null || fail "delete once space is back"
check_ok fs/vm; qcheck_all fs/vm; restore_all fs/vm
pass "space back: snapshot, delete, check, $RESTORED restores"
