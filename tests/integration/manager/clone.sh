# Clones that boot (--boot; clone_resume.sh has those that resume): linked
# (shares the frozen layers, recorded in the origin, which refuses to delete
# them) and --full; new identity; origin and clones run at
# the same time.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN

mk web --disk-size 64M --cmdline "echo up; shell"
up web
con web "diskfill 100 3" "seed=3 ok"
"$C" snapshot create "$TMP/web" golden >/dev/null || fail golden
con web "diskfill 50 4" "seed=4 ok"

cd "$TMP"
"$C" clone web golden web2 --boot --json >"$TMP/clone.json" || fail "linked clone (origin running)"
"$C" clone "$TMP/web" golden "$TMP/web3" --full --boot >/dev/null || fail "full clone"
grep -q '"linked": true' "$TMP/clone.json" || fail "not linked"
python3 - "$TMP" <<'PY' || fail "clone identities"
import json, sys, os
t = sys.argv[1]
d = {n: json.load(open(f"{t}/{n}/vm.json")) for n in ("web", "web2", "web3")}
ids = {n: d[n]["machine_id"] for n in d}
assert len(set(ids.values())) == 3, ids
ser = {n: d[n]["config"]["disks"][0]["serial"] for n in d}
assert len(set(ser.values())) == 3, ser
assert d["web2"]["seed"] != d["web3"]["seed"]
assert d["web2"]["origin"]["bundle"] == f"{t}/web" and d["web3"]["origin"] is None
assert [c["path"] for c in d["web"]["clones"]] == [f"{t}/web2"], d["web"]["clones"]
# the linked clone's layer sits on the origin's frozen layer, the full one stands alone
import subprocess
bk = lambda f: json.loads(subprocess.check_output(["qemu-img", "info", "-U", "--output=json", f])).get("backing-filename")
at = lambda n, p: os.path.join(f"{t}/{n}", p)  # vm.json: relative inside the bundle
assert bk(at("web2", d["web2"]["active"][0])) == at("web", d["web"]["snapshots"][d["web2"]["origin"]["snapshot"]]["layers"][0])
assert bk(at("web3", d["web3"]["active"][0])) is None
PY
pass "linked and full clones: new machine id, serial, seed"

up web2
up web3
for n in web2 web3; do
  seed=$(python3 -c "import json; print(json.load(open('$TMP/$n/vm.json'))['seed'])")
  wait_for "$TMP/$n/console.log" "cairn.seed=$seed" 10 || fail "$n: seed not on the command line"
  con $n "diskverify 100 3" "diskverify ok n=100"
done
con web "diskverify 50 4" "diskverify ok n=50"
con web2 "diskfill 30 8" "seed=8 ok"
con web3 "diskfill 30 9" "seed=9 ok"
con web "diskverify 50 4" "diskverify ok n=50"
con web2 "diskverify 30 8" "diskverify ok"
con web3 "diskverify 30 9" "diskverify ok"
"$C" list "$TMP" | grep -c running | grep -q 3 || fail "three VMs should run"
pass "origin, linked clone and full clone run at the same time, each on its own disk"

"$C" snapshot delete "$TMP/web" golden 2>"$TMP/err" && fail "deleted a layer a clone uses"
grep -q "linked clone $TMP/web2" "$TMP/err" || fail "refusal must name the clone: $(cat "$TMP/err")"
"$C" destroy "$TMP/web" 2>"$TMP/err" && fail "destroyed an origin"
grep -q "web2" "$TMP/err" || fail "destroy refusal: $(cat "$TMP/err")"
pass "the origin refuses to delete what a clone uses, naming it"

for n in web web2 web3; do "$C" stop "$TMP/$n" >/dev/null || fail "stop $n"; done
check_ok web; check_ok web2; check_ok web3
qcheck_all web2; qcheck_all web3
"$C" destroy "$TMP/web2" || fail "destroy clone"
grep -q web2 "$TMP/web/vm.json" && fail "clone still registered in the origin"
"$C" snapshot delete "$TMP/web" golden >/dev/null || fail "delete after the clone went"
check_ok web
up web3
con web3 "diskverify 30 9" "diskverify ok"
"$C" stop "$TMP/web3" >/dev/null
"$C" destroy "$TMP/web" || fail "destroy origin"
pass "after the clone is destroyed the origin may delete and be destroyed; the full clone lives on"
