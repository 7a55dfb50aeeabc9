# With 2 vCPUs both CPUs come up and run their own jobs.
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"

rc=$(run_qemu microvm 30 "$TMP/s.log" \
  "@1 memfill 32 2; @1 memverify; @1 echo one done; memfill 32 1; memverify; sleep 500; cpus; exit 3" -smp 2)
expect "$TMP/s.log" "cairn-guest: cpus=2"
expect "$TMP/s.log" "cpu1: memfill mb=32 seed=2 sum=[0-9a-f]{16}"
expect "$TMP/s.log" "cpu1: memverify ok sum=[0-9a-f]{16}"
expect "$TMP/s.log" "cpu1: one done"
expect "$TMP/s.log" "cpu0: memverify ok sum=[0-9a-f]{16}"
expect "$TMP/s.log" "cpu0: cpus=2"
[ "$rc" = "$(qemu_status 3)" ] || fail "status $rc"
a=$(sed -n 's/^cpu0: memfill mb=32 seed=1 sum=//p' "$TMP/s.log.txt")
b=$(sed -n 's/^cpu1: memfill mb=32 seed=2 sum=//p' "$TMP/s.log.txt")
[ "$a" != "$b" ] || fail "both CPUs report the same sum"
pass "two vCPUs run their own jobs"

# a job for a CPU that does not exist is reported
rc=$(run_qemu microvm 30 "$TMP/w.log" "@3 echo x; exit 0")
expect "$TMP/w.log" "cairn-guest: warning: no cpu3 for job 'echo x'"
pass "jobs for missing CPUs are reported"

# without ACPI the CPUs come from the Intel MP table (qboot's has an entry count of 0)
rc=$(run_qemu microvm,acpi=off 30 "$TMP/mp.log" "@1 cpus; sleep 300; exit 0" -smp 2)
expect "$TMP/mp.log" "cairn-guest: mem=.* cpu-table=mptable .*"
expect "$TMP/mp.log" "cairn-guest: cpus=2"
expect "$TMP/mp.log" "cpu1: cpus=2"
[ "$rc" = "$(qemu_status 0)" ] || fail "status $rc"
pass "CPUs found in the MP table"
