# Bundles: create/list/info/destroy, help and exit codes, the writer lock,
# run/stop/--save resume, and the upgrade rehearsal (stopped and running
# revert).
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN

# --- help, usage errors (2), failures (1)
for sub in create list info destroy stop check clone snapshot; do
  "$C" $sub --help | grep -q Usage || fail "$sub --help"
done
"$C" run --help | grep -q -- "--kernel" || fail "plain run --help"
"$C" create >/dev/null 2>&1; [ $? = 2 ] || fail "create without NAME must exit 2"
"$C" create "$TMP/x" --kernel "$TESTOS" >/dev/null 2>&1; [ $? = 2 ] || fail "create without disk: 2"
"$C" info "$TMP/nope" 2>"$TMP/err"; [ $? = 1 ] || fail "info of a missing bundle: 1"
grep -q "$TMP/nope" "$TMP/err" || fail "error must name the bundle: $(cat "$TMP/err")"
pass "help and exit codes"

# --- create from a raw disk (converted) and from a size
dd if=/dev/zero of="$TMP/base.raw" bs=1M count=64 status=none
"$BUILDDIR/guest/diskpat" write "$TMP/base.raw" 20 5 >/dev/null || fail diskpat
mk web --disk "$TMP/base.raw" --cmdline "diskverify 20 5; shell"
mk empty --disk-size 32M
"$C" list "$TMP" | grep -q "^web .*stopped" || fail "list"
"$C" list "$TMP" --json | python3 -c "import json,sys; assert len(json.load(sys.stdin))==2" || fail "list --json"
"$C" info "$TMP/web" --json | python3 -c "
import json,sys; d=json.load(sys.stdin)
assert d['version']==2 and d['state']=='stopped' and len(d['machine_id'])==32, d" || fail "info --json"
qemu-img info "$TMP/web/disks/disk0.qcow2" | grep -q "file format: qcow2" || fail "base not qcow2"
"$C" create "$TMP/web" --kernel "$TESTOS" --disk-size 1M 2>/dev/null && fail "create over a bundle"
"$C" destroy "$TMP/empty" || fail destroy
[ ! -e "$TMP/empty" ] || fail "destroy left the directory"
pass "create / list / info / destroy"

# --- a directory that is no bundle is never taken for the remains of an
# interrupted create: check --repair and destroy used to make a lock file
# in it and then remove it with everything in it
mkdir "$TMP/photos"; echo precious >"$TMP/photos/a.jpg"
"$C" check --repair "$TMP/photos" 2>"$TMP/err"; [ $? = 1 ] || fail "check --repair of a plain directory"
"$C" destroy "$TMP/photos" 2>>"$TMP/err"; [ $? = 1 ] || fail "destroy of a plain directory"
"$C" snapshot create "$TMP/photos" s 2>>"$TMP/err"; [ $? = 1 ] || fail "snapshot of a plain directory"
[ "$(cat "$TMP/photos/a.jpg" 2>/dev/null)" = precious ] || fail "a plain directory was removed"
[ "$(ls "$TMP/photos")" = a.jpg ] || fail "cairn left files in a plain directory: $(ls "$TMP/photos")"
grep -q "not a VM bundle" "$TMP/err" || fail "the refusal: $(cat "$TMP/err")"
touch "$TMP/photos/lock"  # a stray lock file does not make it one either
"$C" destroy "$TMP/photos" 2>/dev/null && fail "destroy of a directory with a stray lock file"
[ -f "$TMP/photos/a.jpg" ] || fail "a directory with a stray lock file was removed"
# what an interrupted destroy leaves (the lock, disks/; or nothing at all) goes
mkdir -p "$TMP/half/disks" "$TMP/gone"; touch "$TMP/half/lock"
"$C" check --repair "$TMP/half" >/dev/null || fail "check --repair of an interrupted destroy"
"$C" destroy "$TMP/gone" || fail "destroy of an empty directory (a destroy's last step failed)"
[ ! -e "$TMP/half" ] && [ ! -e "$TMP/gone" ] || fail "the remains of a destroy stayed"
pass "a plain directory is refused, the remains of a destroy are removed"

# --- a raw disk referenced read-only: never written, even when the root goes
sum0=$(md5sum <"$TMP/base.raw")
mk ref --disk "$TMP/base.raw" --reference --cmdline "diskverify 20 5; diskfill 10 6; exit 0"
qemu-img info -U "$TMP/ref/disks/disk0.qcow2" | grep -q "backing file: $TMP/base.raw" ||
  fail "--reference: base not the backing file"
"$C" snapshot create "$TMP/ref" root >/dev/null || fail "ref: snapshot"
"$C" run "$TMP/ref" </dev/null >"$TMP/ref.out" 2>&1 || { cat "$TMP/ref.out"; fail "ref: foreground run"; }
grep -q "diskverify ok n=20" "$TMP/ref.out" || fail "ref: base content"
"$C" snapshot create "$TMP/ref" second >/dev/null || fail "ref: snapshot 2"
"$C" snapshot delete "$TMP/ref" root >/dev/null || fail "ref: delete the root"
check_ok ref; qcheck_all ref
[ "$(md5sum <"$TMP/base.raw")" = "$sum0" ] || fail "the referenced raw disk changed"
"$C" destroy "$TMP/ref" || fail "ref: destroy"
[ "$(md5sum <"$TMP/base.raw")" = "$sum0" ] && [ -f "$TMP/base.raw" ] || fail "destroy touched the raw disk"
pass "--reference: a raw disk as the read-only bottom layer stays untouched; foreground run"

# --- the writer lock names its holder
exec 9>"$TMP/web/lock"; flock 9; echo "4242 cairn test-holder" >&9
"$C" snapshot create "$TMP/web" x 2>"$TMP/err" && fail "second writer got in"
grep -q "4242 cairn test-holder" "$TMP/err" || fail "lock holder not named: $(cat "$TMP/err")"
exec 9>&-
pass "one writer: the holder is named"

# --- upgrade rehearsal, stopped VM (disk-only snapshot)
"$C" snapshot create "$TMP/web" pre-upgrade --description "before" || fail "snapshot (stopped)"
up web
wait_for "$TMP/web/console.log" "diskverify ok n=20" 10 || fail "base content"
con web "diskfill 20 9" "diskfill n=20 seed=9 ok"
"$C" stop "$TMP/web" >/dev/null || fail stop
"$C" snapshot revert "$TMP/web" pre-upgrade >/dev/null || fail "revert (stopped)"
: >"$TMP/web/console.log"
up web
wait_for "$TMP/web/console.log" "diskverify ok n=20" 10 || fail "revert did not bring the disk back"
pass "upgrade rehearsal, stopped: diskverify with the old seed passes"

# --- whole-machine snapshot of the running VM, then a running revert
con web "memfill 8 3" "memfill mb=8 seed=3"
"$C" snapshot create "$TMP/web" running-1 --json >"$TMP/snap.json" || fail "snapshot (running)"
grep -q '"memory": true' "$TMP/snap.json" || fail "running snapshot has no memory"
"$C" snapshot create "$TMP/web" running-disk --disk-only --json >"$TMP/snap.json" ||
  fail "--disk-only snapshot (running)"
grep -q '"memory": false' "$TMP/snap.json" || fail "--disk-only kept memory"
id=$(python3 -c "import json; print(json.load(open('$TMP/snap.json'))['id'])")
[ ! -e "$TMP/web/snapshots/$id" ] || fail "--disk-only left memory files"
check_ok web
"$C" snapshot delete "$TMP/web" running-disk >/dev/null 2>"$TMP/err" && fail "delete under the running VM"
con web "diskfill 20 11" "seed=11 ok"
con web "memfill 8 4" "memfill mb=8 seed=4"
con web "echo after-snapshot" "after-snapshot"
pid_before=$(head -n1 "$TMP/web/run.lock")
"$C" snapshot revert "$TMP/web" running-1 --save-current discarded-state --json >"$TMP/rev.json" ||
  fail "revert (running)"
grep -q '"in_place": true' "$TMP/rev.json" || fail "running revert not in place: $(cat "$TMP/rev.json")"
[ "$(head -n1 "$TMP/web/run.lock")" = "$pid_before" ] || fail "the VM process changed"
"$C" info "$TMP/web" --json | grep -q '"state": "running"' || fail "not running after revert"
con web "memverify" "memverify ok"
con web "diskverify 20 5" "diskverify ok n=20"
pass "running revert: memory and disk back, the guest continues from the snapshot"
"$C" snapshot list "$TMP/web" | grep -q "discarded-state" || fail "--save-current not kept"

# --- stop --save, run resumes
con web "memfill 8 6" "seed=6"
"$C" stop "$TMP/web" --save >/dev/null || fail "stop --save"
"$C" info "$TMP/web" --json | grep -q '"state": "suspended"' || fail "not suspended"
check_ok web
up web
con web "memverify" "memverify ok"
"$C" snapshot revert "$TMP/web" discarded-state >/dev/null || fail "revert to --save-current"
con web "diskverify 20 11" "diskverify ok n=20"
con web "memverify" "memverify ok"
pass "stop --save / run resumes; --save-current snapshot restores"

# a running VM reverted to a disk-only snapshot boots again from its disk
nv=$(grep -c "ready" "$TMP/web/console.log")
"$C" snapshot revert "$TMP/web" pre-upgrade --json >"$TMP/rev.json" || fail "revert to disk-only (running)"
grep -q '"restarted": true' "$TMP/rev.json" || fail "not restarted: $(cat "$TMP/rev.json")"
for ((i = 0; i < 100; i++)); do
  [ "$(grep -c ready "$TMP/web/console.log")" -gt "$nv" ] &&
    tail -n 3 "$TMP/web/console.log" | grep -q "diskverify ok n=20" && break
  sleep 0.1
done
[ $i -lt 100 ] || { tail "$TMP/web/console.log"; fail "not booted on pre-upgrade's disk"; }
pass "running VM reverted to a disk-only snapshot boots on its disk"

"$C" run "$TMP/web" --detach 2>"$TMP/err" && fail "second run"
grep -q "already running" "$TMP/err" || fail "second run message: $(cat "$TMP/err")"
"$C" destroy "$TMP/web" 2>/dev/null && fail "destroy of a running VM"
"$C" stop "$TMP/web" >/dev/null || fail stop
check_ok web
qcheck_all web
"$C" snapshot list "$TMP/web" --json | python3 -c "
import json,sys; d=json.load(sys.stdin); assert d['state']=='stopped' and len(d['snapshots'])==5, d" ||
  fail "snapshot list --json"
pass "bundle consistent at the end"

# names that would break a listing are refused, and nothing changes
cp "$TMP/web/vm.json" "$TMP/vm.json.before"
for bad in $'two\nlines' $'tab\there' $'bell\a' 'a/b' '.hidden' ''; do
  "$C" snapshot create "$TMP/web" "$bad" 2>"$TMP/err" && fail "snapshot name $(printf %q "$bad") accepted"
  grep -q "snapshot name" "$TMP/err" || fail "no clear error for $(printf %q "$bad"): $(cat "$TMP/err")"
done
cmp -s "$TMP/vm.json.before" "$TMP/web/vm.json" || fail "a refused name changed vm.json"
"$C" snapshot create "$TMP/web" "prêt à partir" >/dev/null || fail "a UTF-8 name was refused"
"$C" snapshot list "$TMP/web" | grep -q "prêt à partir" || fail "the UTF-8 name is not listed"
pass "snapshot names with control characters, '/' or a leading '.' are refused; UTF-8 is fine"

# a running VM snapshotted many times: every overlay's name stays within NAME_MAX
# (each used to add "-<id>" to the last: the 26th snapshot failed, "File name too
# long"); --json carries the VM's reply (first image full, then layers)
mk many --disk-size 16M --cmdline "memfill 8 1; shell"
up many
for ((i = 1; i <= 30; i++)); do
  "$C" snapshot create "$TMP/many" "s$i" --json >"$TMP/snap.json" || fail "snapshot $i of a running VM"
  python3 -c "
import json,sys; d=json.load(open('$TMP/snap.json'))['vmm']
want = 'full' if $i == 1 else 'layer'
assert d['memory'] == want and d['total_ms'] > 0 and 'memory_depth' in d, d" ||
    fail "snapshot $i: the VM's reply in --json: $(cat "$TMP/snap.json")"
done
for f in "$TMP/many"/disks/*.qcow2; do
  [ "$(basename "$f" | wc -c)" -le 150 ] || fail "layer name too long: $f"
done
con many "memverify" "memverify ok"
"$C" stop "$TMP/many" >/dev/null || fail "stop many"
check_ok many
pass "30 snapshots of a running VM: layer names bounded, --json has the VM's reply"
