# Helpers for snapshot-manager tests: bundles in $TMP driven through the
# cairn CLI; a detached VM's console is $B/console.log, its input the FIFO
# $B/console.in.
. "$SRCDIR/tests/integration/lib.sh"

# VMs still running at the end are killed before $TMP goes.
mgr_cleanup() {
  local f pid pids=
  for f in "$TMP"/*/run.lock "$TMP"/*/*/run.lock; do
    [ -f "$f" ] || continue
    pid=$(head -n1 "$f" 2>/dev/null)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && pids="$pids $pid"
  done
  for pid in $pids; do timeout 10 tail -s 0.05 --pid="$pid" -f /dev/null; done
  [ -n "${MGR_MNT:-}" ] && { umount "$MGR_MNT" 2>/dev/null || umount -l "$MGR_MNT"; }
  rm -rf "$TMP"
}
trap mgr_cleanup EXIT

# mk NAME ARGS...: a bundle $TMP/NAME on the test guest
mk() {
  local name=$1; shift
  "$CAIRN" create "$TMP/$name" --kernel "$TESTOS" --mem 64M "$@" >/dev/null ||
    fail "create $name"
}

# up NAME: run detached, wait for the shell prompt
up() {
  local fresh=0
  grep -q '"resume": null' "$TMP/$1/vm.json" && { fresh=1; : >"$TMP/$1/console.log" 2>/dev/null; }
  "$CAIRN" run "$TMP/$1" --detach || fail "run $1"
  # the run lock names the process that runs the VM (cleanup kills it by that)
  local pid; pid=$(head -n1 "$TMP/$1/run.lock")
  grep -q cairn "/proc/$pid/cmdline" 2>/dev/null || fail "run.lock of $1 names pid $pid, not the VM's process"
  # a booting guest takes input once its shell prompts (a resumed one is there)
  [ $fresh = 0 ] || wait_for "$TMP/$1/console.log" 'cairn> |ready' 10 || fail "$1 did not boot"
}

# con NAME CMD PATTERN [SECS]: type CMD into the guest's shell, wait for PATTERN
# printed after it
con() {
  local log="$TMP/$1/console.log" n
  n=$(wc -l <"$log")
  wait_for "$log" 'cairn> ' 10 || fail "no shell prompt on $1"
  printf '%s\n' "$2" >"$TMP/$1/console.in"
  local i
  for ((i = 0; i < ${4:-20} * 20; i++)); do
    tail -n +"$((n + 1))" "$log" | grep -qE -- "$3" && return 0
    sleep 0.05
  done
  tail -n 20 "$log"; fail "$1: '$2' did not print /$3/"
}

# diskhash NAME SNAPID: checksum of what a snapshot's (or "active") disk reads as
layer_of() { # NAME SNAPNAME -> the snapshot's frozen layer
  python3 -c "
import json,sys,os
d=json.load(open('$TMP/$1/vm.json'))
j=lambda p: os.path.join('$TMP/$1', p)  # relative: inside the bundle
if '$2' == 'active': print(j(d['active'][0])); sys.exit(0)
for i,s in d['snapshots'].items():
    if s['name']=='$2': print(j(s['layers'][0]))"
}
diskhash() {
  local l; l=$(layer_of "$1" "$2")
  [ -n "$l" ] || fail "no layer for $1/$2"
  qemu-img convert -U -O raw "$l" "$TMP/hash.raw" || fail "convert $l"
  md5sum <"$TMP/hash.raw" | cut -d' ' -f1
  rm -f "$TMP/hash.raw"
}

# every layer of bundle NAME passes qemu-img check
qcheck_all() {
  local f
  for f in "$TMP/$1"/disks/*.qcow2; do
    qemu-img check -U -q "$f" || fail "qemu-img check $f"
  done
}

check_ok() {
  "$CAIRN" check "$TMP/$1" >"$TMP/check.out" 2>&1 || { cat "$TMP/check.out"; fail "cairn check $1"; }
}

# snap_ids NAME: "id name memory" per snapshot
snap_ids() {
  python3 -c "
import json
d=json.load(open('$TMP/$1/vm.json'))
for i,s in d['snapshots'].items(): print(i, s['name'], 1 if s['memory'] else 0)"
}

# restore_all NAME: every whole-machine snapshot restores (in a throw-away
# process, its overlays in a scratch directory) and answers on its socket
restore_all() {
  local id name mem n=0
  mkdir -p "$TMP/rd"
  while read -r id name mem; do
    [ "$mem" = 1 ] || continue
    rm -f "$TMP/rd.sock"
    "$CAIRN" run --restore "$TMP/$1/snapshots/$id" --control "$TMP/rd.sock" --disk-dir "$TMP/rd" \
      </dev/null >"$TMP/rd.out" 2>&1 &
    local pid=$! i
    for ((i = 0; i < 200; i++)); do [ -S "$TMP/rd.sock" ] && break; sleep 0.05; done
    "$CAIRN" control "$TMP/rd.sock" '{"cmd":"quit"}' >/dev/null 2>&1 ||
      { kill -9 $pid; cat "$TMP/rd.out"; fail "$1: snapshot $name ($id) does not restore"; }
    wait $pid || { cat "$TMP/rd.out"; fail "$1: restore of $name exited non-zero"; }
    rm -f "$TMP"/rd/*
    n=$((n + 1))
  done < <(snap_ids "$1")
  RESTORED=$n
}

du_b() { du -sB1 "$TMP/$1" | cut -f1; }
