# Helpers for snapshot tests: a VM in the background with a control socket.
. "$SRCDIR/tests/integration/lib.sh"

# A failing test must not leave its VMs running.
snap_cleanup() {
  local pids
  pids=$(jobs -p)
  [ -n "$pids" ] && kill $pids 2>/dev/null
  rm -rf "$TMP"
}
trap snap_cleanup EXIT

# start_vm NAME ARGS...: cairn run ARGS with --control $TMP/NAME.sock; output in $TMP/NAME.out
start_vm() {
  local name=$1; shift
  rm -f "$TMP/$name.sock"
  "$CAIRN" run --control "$TMP/$name.sock" "$@" </dev/null >"$TMP/$name.out" 2>&1 &
  eval "PID_$name=$!"
  local i
  for ((i = 0; i < 100; i++)); do
    [ -S "$TMP/$name.sock" ] && return 0
    sleep 0.05
  done
  cat "$TMP/$name.out"; fail "VM $name did not open its control socket"
}

# ctl NAME REQUEST: one control request; the reply in $REPLY_JSON; fails unless ok
ctl() {
  REPLY_JSON=$("$CAIRN" control "$TMP/$1.sock" "$2") || { echo "$REPLY_JSON"; cat "$TMP/$1.out"; fail "control $2 on $1 failed"; }
}

# wait_vm NAME EXPECTED_STATUS: the background VM must end with that status
wait_vm() {
  local pid; eval "pid=\$PID_$1"
  local rc=0
  timeout 60 tail -s 0.05 --pid="$pid" -f /dev/null || fail "VM $1 did not end"
  wait "$pid" || rc=$?
  [ "$rc" = "$2" ] || { cat "$TMP/$1.out"; fail "VM $1 exited $rc, expected $2"; }
}

# ticks_consecutive CPU FILE...: the guest's console is one stream across a
# snapshot and its restore (a line cut by the snapshot is finished by the
# restored guest), so the tick=N lines of cpuCPU in FILEs joined must count
# up by one with no gap and no repeat.  Prints the first and last tick.
ticks_consecutive() {
  local cpu=$1; shift
  cat "$@" | tr -d '\r' | sed -n "s/^cpu${cpu}: tick=\([0-9]*\)$/\1/p" |
    awk 'NR > 1 && $1 != prev + 1 { print "gap after " prev ": " $1; bad = 1 }
         NR == 1 { first = $1 } { prev = $1 }
         END { if (bad || NR < 2) exit 1; print first " " prev }'
}

# complete_lines FILE: FILE without a last line that has no newline yet.  A
# snapshot can stop the guest in the middle of "cpu0: tick=214", and the
# cut "cpu0: tick=21" is not a tick (the restored guest prints the "4").
complete_lines() {
  if [ -n "$(tail -c 1 "$1")" ]; then sed '$d' "$1"; else cat "$1"; fi | tr -d '\r'
}

# last_tick FILE [CPU]: the last whole tick=N line printed by cpuCPU
last_tick() {
  complete_lines "$1" | sed -n "s/^cpu${2:-0}: tick=\([0-9]*\)$/\1/p" | tail -n 1
}
first_tick() {
  complete_lines "$1" | sed -n "s/^cpu${2:-0}: tick=\([0-9]*\)$/\1/p" | head -n 1
}

# jget KEY: the value of KEY in $REPLY_JSON ("" when absent)
jget() {
  python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' \
    "$REPLY_JSON" "$1"
}

# For a VM whose shell reads the FIFO $TMP/NAME.in (held open by the test).
# type_wait NAME CMD REGEX SECS: type CMD into NAME's shell, wait for a new
# whole line matching REGEX; prints that line (without \r).  Only whole
# lines: the guest writes a line 16 bytes at a time, and a match on
# "memfill mb=2 seed=1 off=4 " could come before its sum.
type_wait() {
  local out="$TMP/$1.out" n i
  n=$(wc -l <"$out")
  printf '%s\r' "$2" >"$TMP/$1.in"
  for ((i = 0; i < $4 * 10; i++)); do
    # read stops before a last line without its newline
    if tail -n +"$((n + 1))" "$out" | while IFS= read -r l; do printf '%s\n' "${l%$'\r'}"; done |
      grep -m1 -E -- "$3"; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$out"; fail "$1: '$2' did not print /$3/ within $4 s"
}
# sum_of LINE: the 16 hex digits after sum=
sum_of() { sed -n 's/.*sum=\([0-9a-f]\{16\}\).*/\1/p' <<<"$1"; }

# shell_vm NAME ARGS...: cairn run ARGS with a control socket, its console
# input the FIFO $TMP/NAME.in (held open here) for type_wait.
shell_vm() {
  local name=$1 fd; shift
  rm -f "$TMP/$name.sock"; mkfifo "$TMP/$name.in"
  "$CAIRN" run --control "$TMP/$name.sock" "$@" <"$TMP/$name.in" >"$TMP/$name.out" 2>&1 &
  eval "PID_$name=$!"
  exec {fd}>"$TMP/$name.in"
  # a restored guest prints nothing until typed to
  [ "$1" = --restore ] || wait_for "$TMP/$name.out" "cairn-guest: ready" 20 || fail "VM $name did not boot"
  local i
  for ((i = 0; i < 100; i++)); do [ -S "$TMP/$name.sock" ] && return 0; sleep 0.05; done
  fail "VM $name did not open its control socket"
}
