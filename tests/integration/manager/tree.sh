# A three-level tree with branches (whole-machine and disk-only snapshots);
# each node deleted in turn: every other snapshot's disk content stays
# byte-identical (checksums through its layer chain), every layer passes
# qemu-img check, cairn check is clean, memory snapshots still restore,
# and the space really comes back.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN
B=$TMP/vm

mk vm --disk-size 64M --cmdline "echo up; shell"
up vm
con vm "diskfill 200 1" "seed=1 ok"
"$C" snapshot create "$B" A >/dev/null || fail A
con vm "diskfill 120 2" "seed=2 ok"
"$C" snapshot create "$B" B >/dev/null || fail B
con vm "diskfill 40 3" "seed=3 ok"
"$C" snapshot create "$B" C >/dev/null || fail C
"$C" snapshot revert "$B" A >/dev/null || fail "revert A"
con vm "diskfill 160 4" "seed=4 ok"
"$C" snapshot create "$B" D >/dev/null || fail D
con vm "diskfill 60 5" "seed=5 ok"
"$C" snapshot create "$B" E >/dev/null || fail E
"$C" snapshot revert "$B" B >/dev/null || fail "revert B"
con vm "diskfill 20 6" "seed=6 ok"
"$C" snapshot create "$B" F >/dev/null || fail F
con vm "diskfill 10 7" "seed=7 ok"
"$C" stop "$B" >/dev/null || fail stop
# disk-only snapshots of the stopped VM: G under F, then H on top of G
"$C" snapshot create "$B" G --disk-only >/dev/null || fail G
"$C" snapshot list "$B"
"$C" snapshot list "$B" --json | python3 -c "
import json,sys
t={s['name']:s for s in json.load(sys.stdin)['snapshots']}
par=lambda n: [s['name'] for s in t.values() if s['id']==t[n]['parent']]
assert par('B')==['A'] and par('C')==['B'] and par('D')==['A'] and par('E')==['D']
assert par('F')==['B'] and par('G')==['F'] and t['G']['current'] and not t['G']['memory']
assert t['A']['memory'] and t['A']['depth']==0 and t['C']['depth']==2" || fail "tree shape"
pass "tree: A(B(C,F(G)),D(E)), G current"

declare -A H
hash_all() {
  local n
  for n in $(snap_ids vm | cut -d' ' -f2) active; do H[$n]=$(diskhash vm "$n"); done
}
verify_all() {
  local n h
  for n in $(snap_ids vm | cut -d' ' -f2) active; do
    h=$(diskhash vm "$n")
    [ "$h" = "${H[$n]}" ] || fail "after deleting $1: $n's disk changed"
  done
}
hash_all
[ "${H[A]}" != "${H[B]}" ] && [ "${H[B]}" != "${H[C]}" ] && [ "${H[D]}" != "${H[E]}" ] ||
  fail "snapshots should differ"

total=0
# inner with one child (D), branch point (B), root (A), leaf (E), current (G)...
for n in D B A E C G; do
  before=$(du_b vm)
  "$C" snapshot delete "$B" "$n" --json >"$TMP/del.json" || fail "delete $n"
  after=$(du_b vm)
  freed=$(python3 -c "import json; print(json.load(open('$TMP/del.json'))['freed_bytes'])")
  diff=$((before - after))
  [ $((freed - diff)) -le 65536 ] && [ $((diff - freed)) -le 65536 ] ||
    fail "delete $n: reported $freed bytes freed, du says $diff"
  snap_ids vm | grep -q " $n " && fail "$n still listed"
  verify_all "$n"
  qcheck_all vm
  check_ok vm
  restore_all vm
  total=$((total + diff))
  echo "deleted $n: freed $freed bytes (du: $diff), $RESTORED memory snapshot(s) restore"
done
[ "$total" -gt 0 ] || fail "no space came back"
pass "every delete kept the others byte-identical; $total bytes came back"

# the last one (F): the VM still boots on its disk
"$C" snapshot list "$B" --json | python3 -c "
import json,sys; s=json.load(sys.stdin)['snapshots']; assert [x['name'] for x in s]==['F'], s" ||
  fail "F should be left"
up vm
con vm "diskverify 10 7" "diskverify ok n=10"
# delete while running: not allowed under the running VM's own layer...
"$C" snapshot create "$B" I >/dev/null || fail I
"$C" snapshot delete "$B" I 2>"$TMP/err" && fail "delete under the running VM's layer"
grep -q "running VM" "$TMP/err" || fail "message: $(cat "$TMP/err")"
# ...but an inner node whose child is frozen is streamed while it runs
"$C" snapshot create "$B" J >/dev/null || fail J
hI=$(diskhash vm I)
"$C" snapshot delete "$B" F >/dev/null || fail "delete F while running"
"$C" snapshot delete "$B" I >/dev/null || fail "delete I while running"
con vm "diskverify 10 7" "diskverify ok n=10"
"$C" stop "$B" >/dev/null
[ "$(diskhash vm J)" = "$hI" ] || fail "J changed"
check_ok vm; qcheck_all vm; restore_all vm
pass "delete while running (streamed into frozen children)"
