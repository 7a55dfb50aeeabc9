# Relocatable bundles: vm.json names the bundle's own files relative to the
# bundle directory and every layer names its backing file relative to its
# own directory, so a bundle moved with mv checks clean, runs, reverts and
# passes qemu-img check where it now is.  A bundle written with absolute
# paths (as older cairn wrote them) still opens and runs.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN

# no absolute path into the bundle in vm.json nor in a layer's backing name
relative_only() {
  python3 -c "
import json,sys; d=json.load(open(sys.argv[1]))
paths = (d['active'] or []) + [p for s in d['snapshots'].values() for p in s['layers']] + \
        [k['path'] for k in d['config']['disks']]
assert not [p for p in paths if p.startswith('/')], paths" "$TMP/$1/vm.json" ||
    fail "$1: vm.json names a layer by absolute path"
  local f
  for f in "$TMP/$1"/disks/*.qcow2; do
    qemu-img info -U --output=json "$f" | python3 -c "
import json,sys; b=json.load(sys.stdin).get('backing-filename')
assert b is None or not b.startswith('/'), b" || fail "$f: absolute backing file name"
  done
}

mk web --disk-size 64M --cmdline "echo up; shell"
"$C" snapshot create "$TMP/web" empty >/dev/null || fail "snapshot (stopped)"
up web
con web "diskfill 20 5" "diskfill n=20 seed=5 ok"
"$C" snapshot create "$TMP/web" filled-5 --disk-only >/dev/null || fail "disk-only snapshot (running)"
con web "memfill 8 3" "memfill mb=8 seed=3"
"$C" snapshot create "$TMP/web" whole >/dev/null || fail "whole-machine snapshot (running)"
con web "diskfill 20 7" "diskfill n=20 seed=7 ok"
"$C" stop "$TMP/web" >/dev/null || fail stop
"$C" snapshot create "$TMP/web" stopped-7 >/dev/null || fail "snapshot (stopped, after running)"
check_ok web
relative_only web
pass "vm.json and the layers name the bundle's files relative to it"

mkdir "$TMP/elsewhere"
mv "$TMP/web" "$TMP/elsewhere/web"
W=elsewhere/web
check_ok $W
qcheck_all $W
for s in empty filled-5 whole stopped-7; do
  qemu-img check -q "$(layer_of $W $s)" || fail "qemu-img check of $s's layer after the move"
done
up $W
con $W "diskverify 20 7" "diskverify ok n=20"
# a whole-machine snapshot from before the move: its state.bin (written by
# the VMM) names the layers where they were; the manager hands the VMM the
# layers where they are now, so it reverts in place and verifies
"$C" snapshot revert "$TMP/$W" whole >/dev/null || fail "revert to a whole-machine snapshot from before the move"
con $W "memverify" "memverify ok"
con $W "diskverify 20 5" "diskverify ok n=20"
"$C" snapshot revert "$TMP/$W" filled-5 >/dev/null || fail "revert after the move"
wait_for "$TMP/$W/console.log" 'cairn> ' 10 || fail "no boot after the revert"
con $W "diskverify 20 5" "diskverify ok n=20"
con $W "memfill 8 4" "memfill mb=8 seed=4"
"$C" snapshot create "$TMP/$W" moved >/dev/null || fail "whole-machine snapshot after the move"
con $W "diskfill 20 9" "seed=9 ok"
"$C" snapshot revert "$TMP/$W" moved >/dev/null || fail "in-place revert after the move"
con $W "memverify" "memverify ok"
con $W "diskverify 20 5" "diskverify ok n=20"
"$C" stop "$TMP/$W" >/dev/null || fail "stop after the move"
check_ok $W
qcheck_all $W
relative_only $W
"$C" snapshot revert "$TMP/$W" stopped-7 >/dev/null || fail "revert (stopped) after the move"
up $W
con $W "diskverify 20 7" "diskverify ok n=20"
"$C" stop "$TMP/$W" >/dev/null || fail "stop"
pass "moved bundle: check clean, qemu-img check, run, revert (running and stopped), snapshots"

# a linked clone moved: its layers move with it, its origin is told where
# it is now (by run, or check --repair) and keeps refusing to drop its snapshot
"$C" clone "$TMP/$W" stopped-7 "$TMP/web2" >/dev/null || fail "linked clone"
mv "$TMP/web2" "$TMP/elsewhere/web2"
"$C" check "$TMP/elsewhere/web2" >"$TMP/check.out" 2>&1 && fail "check of a moved clone: the origin names its old place"
grep -q "does not name this linked clone" "$TMP/check.out" || fail "check: $(cat "$TMP/check.out")"
up elsewhere/web2
con elsewhere/web2 "diskverify 20 7" "diskverify ok n=20"
"$C" stop "$TMP/elsewhere/web2" >/dev/null || fail "stop the clone"
check_ok elsewhere/web2
check_ok $W
qcheck_all elsewhere/web2
"$C" snapshot delete "$TMP/$W" stopped-7 2>"$TMP/err" && fail "deleted what the moved clone uses"
grep -q "linked clone $TMP/elsewhere/web2" "$TMP/err" || fail "refusal must name the clone where it is: $(cat "$TMP/err")"
"$C" destroy "$TMP/elsewhere/web2" || fail "destroy the moved clone"
grep -q web2 "$TMP/$W/vm.json" && fail "the moved clone is still registered"
check_ok $W
pass "a moved linked clone runs; its origin names it where it is now"

# an old bundle: absolute paths in vm.json (opened where it was written)
python3 - "$TMP/$W" <<'PY' || fail "rewrite vm.json with absolute paths"
import json, os, sys
b = sys.argv[1]
p = f"{b}/vm.json"
d = json.load(open(p))
a = lambda x: os.path.join(b, x)
d["active"] = [a(x) for x in d["active"]]
for s in d["snapshots"].values():
    s["layers"] = [a(x) for x in s["layers"]]
for k in d["config"]["disks"]:
    k["path"] = a(k["path"])
json.dump(d, open(p, "w"), indent=2)
PY
grep -q "\"$TMP/$W/disks/" "$TMP/$W/vm.json" || fail "vm.json not absolute"
check_ok $W
up $W
con $W "diskverify 20 7" "diskverify ok n=20"
"$C" snapshot create "$TMP/$W" old-format >/dev/null || fail "snapshot of an old-format bundle"
"$C" stop "$TMP/$W" >/dev/null || fail "stop"
check_ok $W
relative_only $W
pass "a bundle with absolute paths opens, runs, and is written back relative"
