# The defects the kill campaign with a running VM (kill_running.py) found,
# each made to happen on purpose: the VM's process stopped (SIGSTOP) so that
# a command waits on it, then the command or the VM killed at that point.
#  1. a revert of the running VM killed, and its VM, before it reverted:
#     check --repair took an older restore overlay of the same layer (by
#     then another snapshot's frozen layer) for the revert's, made it the
#     active layer and removed the VM's real one.
#  2. `stop --save` killed once the VM has its request: the VM saves and
#     ends, but check --repair settled while it still ran and did not mark
#     the save to be resumed (the next run booted afresh).
#  3. a command coming in while the ending VM holds the writer lock for a
#     moment (as it names its layers relative) was refused.
#  4. a snapshot of a VM whose memory is written by a forked child (a VM
#     resumed from a memory image), the command and the VM killed, the
#     child after them (while check --repair asked the VM where its disks
#     are): the repair took the failed question for "the disks did not
#     move", dropped the snapshot and left the active layer frozen by it
#     (`cairn run` refused it; `check` said all was well).
# (The fourth, overlay names that grew past what a file name may be, is
# test_snapdir's.)
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN

vm_pid() { head -n1 "$TMP/$1/run.lock"; }
# wait_pending NAME: vm.json records an operation under way
wait_pending() {
  local i
  for ((i = 0; i < 200; i++)); do
    grep -q '"pending": {' "$TMP/$1/vm.json" && return 0
    sleep 0.02
  done
  fail "$1: no operation was recorded as pending"
}
# killed PID: PID ends, killed by SIGKILL (it is the child of this shell)
killed() {
  local rc=0
  kill -9 "$1"; wait "$1" || rc=$?
  [ "$rc" = 137 ] || fail "pid $1 ended with $rc, not by SIGKILL"
}
layer_names() { # every snapshot's layer, one a line
  python3 -c "
import json,os
d=json.load(open('$TMP/$1/vm.json'))
for s in d['snapshots'].values(): print(os.path.join('$TMP/$1', s['layers'][0]))"
}

# --- 1. revert in place, the VM killed before it reverted
mk vm --disk-size 16M --cmdline "echo up; shell"
up vm
con vm "diskfill 500 1" "seed=1 ok"
"$C" snapshot create "$TMP/vm" A >/dev/null || fail "snapshot A"
"$C" snapshot revert "$TMP/vm" A >/dev/null || fail "revert A" # a restore overlay of A's layer
con vm "diskfill 500 2" "seed=2 ok"
"$C" snapshot create "$TMP/vm" B >/dev/null || fail "snapshot B" # ... frozen as B's layer
con vm "diskfill 500 3" "seed=3 ok"
hB=$(diskhash vm B)
pid=$(vm_pid vm)
kill -STOP "$pid"
"$C" snapshot revert "$TMP/vm" A >/dev/null 2>"$TMP/err" &
cli=$!
wait_pending vm
killed $cli # both gone, as in a crash of the host: check settles it
kill -9 "$pid"
timeout 10 tail -s 0.05 --pid="$pid" -f /dev/null || fail "the VM did not die"
"$C" check --repair "$TMP/vm" >"$TMP/rep" || { cat "$TMP/rep"; fail "repair after the killed revert"; }
check_ok vm
act=$(layer_of vm active)
layer_names vm | grep -qx "$act" && fail "the active layer is a snapshot's layer: $act"
[ "$(diskhash vm B)" = "$hB" ] || fail "snapshot B changed"
up vm
con vm "diskfill 500 4" "seed=4 ok"
"$C" stop "$TMP/vm" >/dev/null || fail "stop after the killed revert"
[ "$(diskhash vm B)" = "$hB" ] || fail "snapshot B changed once the VM ran"
check_ok vm; qcheck_all vm
pass "revert killed with its VM before it reverted: no other snapshot's layer taken for its overlay"

# --- 2. stop --save killed after the VM took the request
up vm
con vm "memfill 8 5; memverify" "memverify ok"
pid=$(vm_pid vm)
kill -STOP "$pid"
"$C" stop "$TMP/vm" --save >/dev/null 2>"$TMP/err" &
cli=$!
wait_pending vm
sleep 0.3 # the request is in the VM's socket
killed $cli
"$C" check --repair "$TMP/vm" >"$TMP/rep" 2>&1 &
rep=$!
sleep 0.3 # check asks the stopped VM where its disks are
kill -CONT "$pid"
wait $rep || { cat "$TMP/rep"; fail "repair after the killed stop --save"; }
check_ok vm
timeout 10 tail -s 0.05 --pid="$pid" -f /dev/null || fail "the VM did not end with its save"
grep -q '"resume": null' "$TMP/vm/vm.json" && { cat "$TMP/rep"; fail "the VM was saved and ended, but nothing is to be resumed"; }
up vm
con vm "memverify" "memverify ok"
grep -c "cairn-guest: ready" "$TMP/vm/console.log" | grep -qx 1 || fail "the VM booted afresh, not resumed"
"$C" stop "$TMP/vm" >/dev/null || fail stop
check_ok vm; qcheck_all vm
pass "stop --save killed after the VM took it: the saved VM is resumed"

# --- 3. a writer waits for a short holder of the lock
(exec 9>>"$TMP/vm/lock"; flock 9; sleep 0.5) &
holder=$!
sleep 0.1
"$C" snapshot create "$TMP/vm" C >/dev/null 2>"$TMP/err" || fail "refused while the lock was held for a moment: $(cat "$TMP/err")"
wait $holder
check_ok vm; qcheck_all vm
pass "a command waits for a holder of the lock that is gone within a moment"

# --- 4. the VM and its snapshot writer killed while check --repair asks
mk w --disk-size 16M --cmdline "echo up; shell"
up w
con w "diskfill 300 1; memfill 8 1" "memfill mb=8"
"$C" stop "$TMP/w" --save >/dev/null || fail "w: stop --save"
up w # resumed: its memory is mapped from the image, so snapshots fork a writer
python3 - "$C" "$TMP/w" <<'EOF' || fail "the VM and its snapshot writer killed"
import os, signal, subprocess, sys, time
C, B = sys.argv[1], sys.argv[2]
def children(pid):
    out = []
    for e in os.listdir("/proc"):
        try:
            st = open(f"/proc/{e}/stat").read() if e.isdigit() else ""
        except OSError:
            continue
        if st and int(st[st.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(e))
    return out
for attempt in range(5):
    vm = int(open(f"{B}/run.lock").readline())
    os.kill(vm, signal.SIGSTOP)
    # --full: a layer of the little that changed would be written before
    # the writer could be caught at work
    cli = subprocess.Popen([C, "snapshot", "create", B, f"x{attempt}", "--full"],
                           stderr=subprocess.DEVNULL)
    while '"pending": {' not in open(f"{B}/vm.json").read():
        time.sleep(0.005)
    time.sleep(0.1)  # the request is in the VM's socket
    cli.kill()
    cli.wait()
    os.kill(vm, signal.SIGCONT)
    writer, t = None, time.time() + 5
    while not writer and time.time() < t:
        writer = (children(vm) or [None])[0]
    if writer:
        os.kill(writer, signal.SIGSTOP)  # it holds the run lock and the socket
    missed = not writer or not [e for e in os.listdir(f"{B}/snapshots") if ".tmp-" in e]
    os.kill(vm, signal.SIGKILL)
    if not missed:
        rep = subprocess.Popen([C, "check", "--repair", B], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)  # it asks the VM (the stopped writer holds its socket)
        os.kill(writer, signal.SIGKILL)
        out = rep.communicate()[0]
        print(out, end="")
        sys.exit("check --repair failed" if rep.returncode else 0)
    # the writer was done before it was caught: again
    if writer:
        os.kill(writer, signal.SIGCONT)
    time.sleep(0.5)
    subprocess.run([C, "check", "--repair", B], check=True, capture_output=True)
    subprocess.run([C, "run", B, "--detach"], check=True)
sys.exit("the snapshot writer was never caught at work")
EOF
check_ok w
"$C" run "$TMP/w" --detach 2>"$TMP/err" || fail "the VM does not run again: $(cat "$TMP/err")"
con w "diskverify 300 1" "diskverify ok"
"$C" stop "$TMP/w" >/dev/null || fail "w: stop"
check_ok w; qcheck_all w
pass "VM and snapshot writer killed during check --repair: snapshot kept disk only, the VM runs"

# --- check --repair: a stopped VM's active layer left frozen is thawed
python3 - "$TMP/vm" <<'EOF'
import json, os, sys
d = json.load(open(f"{sys.argv[1]}/vm.json"))
a = os.path.join(sys.argv[1], d["active"][0])
os.setxattr(a, "user.cairn.frozen", b"/nowhere/snapshots/x")
os.chmod(a, 0o444)
EOF
"$C" check "$TMP/vm" >"$TMP/out" 2>&1 && fail "check took a frozen active layer"
grep -q "is frozen (/nowhere/snapshots/x)" "$TMP/out" || fail "check said: $(cat "$TMP/out")"
"$C" check --repair "$TMP/vm" >"$TMP/out" || fail "repair of a frozen active layer: $(cat "$TMP/out")"
check_ok vm
up vm
"$C" stop "$TMP/vm" >/dev/null || fail stop
pass "check --repair thaws a stopped VM's frozen active layer"

# --- check: an active layer that is a snapshot's layer is a problem
python3 - "$TMP/vm/vm.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s = [s for s in d["snapshots"].values() if s["name"] == "B"][0]
d["active"] = list(s["layers"])
d["current"] = s["parent"]
json.dump(d, open(sys.argv[1], "w"))
EOF
"$C" check "$TMP/vm" >"$TMP/out" 2>&1 && fail "check took an active layer that is a snapshot's"
grep -q 'is the layer of snapshot "B"' "$TMP/out" || fail "check said: $(cat "$TMP/out")"
pass "check: an active layer shared with a snapshot is reported"
