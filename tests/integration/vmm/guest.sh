#!/bin/bash
# cairn run with the test guest: boot, exit codes, reset, 2 vCPUs doing
# work on both, console input through the 16550A.
. "$SRCDIR/tests/integration/lib.sh"
need_kvm
need_testos

# run_guest EXPECTED_STATUS CMDLINE [cairn args...]: output in $TMP/out
run_guest() {
  local want=$1 cmd=$2; shift 2
  timeout 60 "$CAIRN" run --kernel "$TESTOS" --cmdline "$cmd" "$@" </dev/null >"$TMP/out" 2>&1
  local rc=$?
  [ "$rc" = "$want" ] || { cat "$TMP/out"; fail "guest '$cmd' ($*) exited $rc, expected $want"; }
}

run_guest 7 "echo booted; exit 7"
grep -q "^cairn-guest: ready" "$TMP/out" || fail "no ready line"
grep -q "cpu0: booted" "$TMP/out" || fail "job output missing"
pass "boots to ready; debug-exit code 7 becomes cairn's exit status"

run_guest 0 "reset"
pass "i8042 reset ends the VM with status 0"

run_guest 0 "exit 0" --mem 3584M
grep -q "mem=35[0-9][0-9]MiB" "$TMP/out" || { cat "$TMP/out"; fail "guest did not see 3.5 GiB (RAM split around the PCI hole)"; }
pass "3.5 GiB of RAM is seen by the guest across the PCI hole"

# Two vCPUs, each filling its own memory at the same time.
run_guest 0 "@0 memfill 32 1; @0 memverify; @1 memfill 32 2; @1 memverify; @0 sleep 300; @0 exit 0" --cpus 2
grep -q "cairn-guest: cpus=2" "$TMP/out" || fail "guest did not find 2 CPUs"
for c in 0 1; do
  grep -q "cpu$c: memfill mb=32 seed=$((c + 1)) sum=" "$TMP/out" || { cat "$TMP/out"; fail "no memfill on cpu$c"; }
  grep -q "cpu$c: memverify ok" "$TMP/out" || { cat "$TMP/out"; fail "no memverify on cpu$c"; }
done
pass "2 vCPUs: work runs on both"

run_guest 0 "exit 0" --cpus 4
grep -q "cairn-guest: cpus=4" "$TMP/out" || { cat "$TMP/out"; fail "guest did not find 4 CPUs"; }
pass "4 vCPUs come up through INIT/SIPI"

# Console input: a pipe into the guest's shell.
(sleep 0.5; printf 'echo typed-in\r'; sleep 0.3; printf 'exit 4\r') |
  timeout 30 "$CAIRN" run --kernel "$TESTOS" >"$TMP/out" 2>&1
rc=$?
[ $rc = 4 ] || { cat "$TMP/out"; fail "shell over the console exited $rc"; }
grep -q "cpu0: typed-in" "$TMP/out" || { cat "$TMP/out"; fail "console input did not reach the guest"; }
pass "console input reaches the guest shell"

# A user-mode fault in the guest is reported by the guest, not a hang.
run_guest 113 "fault" || true
grep -q "EXCEPTION" "$TMP/out" || { cat "$TMP/out"; fail "no exception report"; }
pass "guest user-mode fault is reported and the VM ends"
echo "guest: all passed"
