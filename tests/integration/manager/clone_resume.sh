#!/bin/bash
# Clones of a whole-machine snapshot resume its running machine: no boot,
# the guest's memory and disk as at the snapshot, each clone on its own
# disk layers and its own user-mode network, surviving the deletion of the
# snapshot and its memory parent in the origin; --boot boots afresh; a TAP
# NIC is not shared; kill -9 during a clone is repaired.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN

# rcon NAME CMD PATTERN: like con, for a resumed guest whose console.log
# starts empty (its prompt was printed before the snapshot)
rcon() {
  local log="$TMP/$1/console.log" n i
  n=$(wc -l <"$log")
  printf '%s\n' "$2" >"$TMP/$1/console.in"
  for ((i = 0; i < 400; i++)); do
    tail -n +"$((n + 1))" "$log" | grep -qE -- "$3" && return 0
    sleep 0.05
  done
  tail -n 20 "$log"; fail "$1: '$2' did not print /$3/"
}
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

mk web --disk-size 64M --cmdline "echo up; shell"
up web
con web "diskfill 50 3" "seed=3 ok"
"$C" snapshot create "$TMP/web" s0 >/dev/null || fail "s0"
con web "memfill 16 5" "memfill mb=16 seed=5 sum="
sum=$(tr -d '\r' <"$TMP/web/console.log" | sed -n 's/.*memfill mb=16 seed=5 sum=\([0-9a-f]*\).*/\1/p' | tail -n1)
[ -n "$sum" ] || fail "no memfill sum"
con web "vmgenid" "vmgenid addr="
"$C" snapshot create "$TMP/web" s1 --json >"$TMP/s1.json" || fail "s1"
grep -q '"memory": "layer"' "$TMP/s1.json" || fail "s1's memory should be a layer on s0's: $(cat "$TMP/s1.json")"
con web "diskfill 50 4" "seed=4 ok"   # the origin goes on after s1

cd "$TMP"
"$C" clone web s1 c1 --json >"$TMP/c1.json" || fail "linked clone"
"$C" clone web s1 c2 --full >/dev/null || fail "full clone"
"$C" clone web s1 c3 --boot --json >"$TMP/c3.json" || fail "clone --boot"
grep -q '"resume": true' "$TMP/c1.json" || fail "c1 should resume: $(cat "$TMP/c1.json")"
grep -q '"resume": false' "$TMP/c3.json" || fail "c3 should boot: $(cat "$TMP/c3.json")"
for n in c1 c2; do
  [ "$(jq_ "$TMP/$n/vm.json" 'd["active"]')" = None ] || fail "$n: a clone to resume has no active layer yet"
  # the clone's memory is its own full image: nothing of the origin's chain
  m=$(ls "$TMP/$n"/snapshots/*/memory.img) || fail "$n: no memory image"
  python3 - "$m" <<'PY' || fail "$n: its memory image must be a full one"
import sys
f = open(sys.argv[1], "rb"); f.seek(-16, 2)
assert f.read(16)[:8] != b"CAIRNPK3", "a packed layer"
PY
done
[ "$(jq_ "$TMP/c1/vm.json" 'd["config"]["nics"][0]["mac"]')" = \
  "$(jq_ "$TMP/web/vm.json" 'd["config"]["nics"][0]["mac"]')" ] || fail "a resumed clone keeps its MAC"
[ "$(jq_ "$TMP/c3/vm.json" 'd["config"]["nics"][0]["mac"]')" != \
  "$(jq_ "$TMP/web/vm.json" 'd["config"]["nics"][0]["mac"]')" ] || fail "a booted clone gets a new MAC"
python3 - "$TMP" <<'PY' || fail "identities"
import json, sys
t = sys.argv[1]
d = {n: json.load(open(f"{t}/{n}/vm.json")) for n in ("web", "c1", "c2", "c3")}
assert len({x["machine_id"] for x in d.values()}) == 4
assert len({x.get("seed") for x in d.values()}) == 4
PY
pass "linked, full and --boot clones of a running snapshot: own memory copy, new identities, MACs as documented"

# the origin deletes s0, s1's memory parent (s1's image absorbs it), before
# any clone has run
"$C" stop "$TMP/web" >/dev/null || fail "stop web"
"$C" snapshot delete "$TMP/web" s0 >/dev/null || fail "delete s0 in the origin"

up c1
up c2
for n in c1 c2; do
  rcon $n "memverify" "memverify ok sum=$sum"
  rcon $n "diskverify 50 3" "diskverify ok n=50"
  grep -qE "cairn-guest: ready|cpu0: up" "$TMP/$n/console.log" && fail "$n booted: $(head -5 "$TMP/$n/console.log")"
done
pass "linked and full clones resume s1's machine (no boot; memverify sum=$sum, diskverify) after s0 went"

rcon c1 "diskfill 30 8" "seed=8 ok"
rcon c2 "diskfill 30 9" "seed=9 ok"
rcon c1 "diskverify 30 8" "diskverify ok n=30"
rcon c2 "diskverify 30 9" "diskverify ok n=30"
rcon c1 "diskverify 30 9" "diskverify FAILED"
rcon c1 "ping 10.0.2.2 2" "ping 10.0.2.2 sent=2 received=2"
rcon c2 "ping 10.0.2.2 2" "ping 10.0.2.2 sent=2 received=2"
pass "two resumed clones run at once, each on its own disk and its own user-mode network"

# identity: each resumed clone has a generation ID of its own (not the
# origin's at s1, not the other clone's) and its own entropy
# last_of NAME PATTERN: the last console line of NAME matching PATTERN's capture
last_of() { tr -d '\r' <"$TMP/$1/console.log" | sed -n "s/.*$2.*/\1/p" | tail -n1; }
for n in c1 c2; do
  rcon $n "vmgenid" "vmgenid addr="
  rcon $n "rng 4096" "rng 4096 bytes=4096"
done
g0=$(last_of web 'vmgenid addr=[0-9a-fx]* id=\([0-9a-f]*\)')
g1=$(last_of c1 'vmgenid addr=[0-9a-fx]* id=\([0-9a-f]*\)')
g2=$(last_of c2 'vmgenid addr=[0-9a-fx]* id=\([0-9a-f]*\)')
r1=$(last_of c1 'rng 4096 bytes=4096 .*fnv=\([0-9a-f]*\)')
r2=$(last_of c2 'rng 4096 bytes=4096 .*fnv=\([0-9a-f]*\)')
[ -n "$g0" ] && [ -n "$g1" ] && [ -n "$g2" ] && [ -n "$r1" ] && [ -n "$r2" ] ||
  fail "identity lines missing: origin '$g0', c1 '$g1' '$r1', c2 '$g2' '$r2'"
[ "$g1" != "$g0" ] && [ "$g2" != "$g0" ] && [ "$g1" != "$g2" ] ||
  fail "generation IDs must differ: origin $g0, c1 $g1, c2 $g2"
[ "$r1" != "$r2" ] || fail "the clones' rng digests are the same: $r1"
pass "resumed clones: generation IDs $g1 and $g2 (origin $g0), rng digests differ"

# the clone's own snapshot is a snapshot like any: an in-place revert to it
"$C" snapshot revert "$TMP/c1" s1 >/dev/null || fail "in-place revert of c1 to its own s1"
rcon c1 "memverify" "memverify ok sum=$sum"
rcon c1 "diskverify 30 8" "diskverify FAILED"
rcon c1 "diskverify 50 3" "diskverify ok n=50"
rcon c2 "diskverify 30 9" "diskverify ok n=30"
pass "a running clone reverts in place to its own copy of s1; the other clone is untouched"

up c3
seed=$(jq_ "$TMP/c3/vm.json" 'd["seed"]')
wait_for "$TMP/c3/console.log" "cairn.seed=$seed" 10 || fail "c3: seed not on the command line"
con c3 "diskverify 50 3" "diskverify ok n=50"
con c3 "memverify" "memverify FAILED: no memfill on this cpu"
pass "clone --boot boots afresh from s1's disk"

for n in c1 c2 c3; do "$C" stop "$TMP/$n" >/dev/null || fail "stop $n"; done
for n in web c1 c2 c3; do check_ok $n; qcheck_all $n; done
"$C" destroy "$TMP/c1" && "$C" destroy "$TMP/c3" || fail "destroy the linked clones"
"$C" snapshot delete "$TMP/web" s1 >/dev/null || fail "delete s1 in the origin"
"$C" snapshot revert "$TMP/c2" s1 >/dev/null || fail "revert c2 to its own s1"
: >"$TMP/c2/console.log"
up c2
rcon c2 "memverify" "memverify ok sum=$sum"
rcon c2 "diskverify 50 3" "diskverify ok n=50"
"$C" stop "$TMP/c2" >/dev/null
check_ok c2; check_ok web
pass "the full clone resumes its own copy of s1 after the origin deleted s1 and s0"

# a TAP NIC is the origin's own: a clone must be given another backend
"$C" snapshot create "$TMP/web" t0 >/dev/null || fail "t0"
python3 - "$TMP/web/vm.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["config"]["nics"][0]["backend"] = "tap=cairnt0"
json.dump(d, open(sys.argv[1], "w"))
PY
"$C" clone web t0 ct 2>"$TMP/err" && fail "a clone shared the origin's TAP"
grep -q "TAP 'tap=cairnt0'" "$TMP/err" || fail "TAP refusal: $(cat "$TMP/err")"
[ ! -e "$TMP/ct" ] || fail "a refused clone left a directory"
grep -q '"clones": \[\]' "$TMP/web/vm.json" || fail "a refused clone stays registered"
"$C" clone web t0 ct --net none >/dev/null || fail "clone with --net none"
[ "$(jq_ "$TMP/ct/vm.json" 'd["config"]["nics"][0]["backend"]')" = none ] || fail "--net none"
"$C" destroy "$TMP/ct" || fail "destroy ct"
python3 - "$TMP/web/vm.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["config"]["nics"][0]["backend"] = "user"
json.dump(d, open(sys.argv[1], "w"))
PY
pass "a clone of a TAP machine is refused naming the TAP, and made with --net"

# kill -9 at a few points during a resuming clone (linked and full): check
# --repair leaves either no clone or a whole one that resumes
up web
con web "memfill 24 11" "memfill mb=24 seed=11 sum="
ksum=$(tr -d '\r' <"$TMP/web/console.log" | sed -n 's/.*memfill mb=24 seed=11 sum=\([0-9a-f]*\).*/\1/p' | tail -n1)
"$C" snapshot create "$TMP/web" k >/dev/null || fail "k"
"$C" stop "$TMP/web" >/dev/null
# the kill points are spread over the clone's usual run time, measured here
# (sanitizer builds and a busy machine are slower)
t0=$(date +%s%N)
"$C" clone "$TMP/web" k "$TMP/ktime" --full >/dev/null || fail "clone k"
t1=$(date +%s%N)
"$C" destroy "$TMP/ktime" || fail "destroy ktime"
whole=0 gone=0
for f in 0.03 0.1 0.25 0.5 0.8 1.5; do
  d=$(python3 -c "print(round($f * ($t1 - $t0) / 1e9, 4))")
  for full in "" --full; do
    t=$TMP/k${f#0.}$full
    "$C" clone "$TMP/web" k "$t" $full >/dev/null 2>&1 &
    pid=$!
    sleep "$d"; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    if [ -d "$t" ]; then "$C" check --repair "$t" >/dev/null 2>&1; fi
    "$C" check --repair "$TMP/web" >/dev/null 2>&1
    check_ok web
    if [ -f "$t/vm.json" ]; then
      check_ok "${t#$TMP/}"
      up "${t#$TMP/}"
      rcon "${t#$TMP/}" "memverify" "memverify ok sum=$ksum"
      "$C" stop "$t" >/dev/null
      "$C" destroy "$t" || fail "destroy $t"
      whole=$((whole + 1))
    else
      [ ! -e "$t" ] || fail "check --repair left $t: $(ls -R "$t")"
      gone=$((gone + 1))
    fi
    grep -q '"clones": \[\]' "$TMP/web/vm.json" || fail "$t: the origin still names a clone after repair"
  done
done
[ $whole -gt 0 ] || fail "no kill point let a clone finish"
pass "kill -9 during clone at 12 points over its $(((t1 - t0) / 1000000)) ms: $gone repaired to nothing, $whole whole and resumed"
