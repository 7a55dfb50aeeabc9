# The test guest's cpl0check (docs/guest.md) runs, in its kernel at CPL 0,
# each instruction that KVM's emulator refuses on PVM hosts and that cairn
# completes (docs/pvm.md), and checks the results in user mode.  QEMU TCG is
# the reference; on a PVM host cairn must pass it with its fallback and fail
# (exit 1, never a wrong answer) without it.
. "$SRCDIR/tests/integration/lib.sh"
need_kvm
need_testos

JOB="cpl0check; cpl0check; exit 0"

if command -v qemu-system-x86_64 >/dev/null; then
  timeout 120 qemu-system-x86_64 -accel tcg -cpu max -M microvm -m 256M -nodefaults \
    -display none -serial stdio -no-reboot -device isa-debug-exit,iobase=0x501,iosize=1 \
    -kernel "$TESTOS" -append "$JOB" </dev/null >"$TMP/qemu.log" 2>&1
  rc=$?
  grep -q "cpl0check ok: 7 checks" "$TMP/qemu.log" || { cat "$TMP/qemu.log"; fail "QEMU TCG: cpl0check did not pass"; }
  [ $rc -eq 1 ] || fail "QEMU TCG: exit status $rc, expected 1 (guest exit 0)"
  pass "QEMU TCG (the reference) passes cpl0check"
else
  echo "note: qemu-system-x86_64 is missing: no reference run"
fi

"$CAIRN" run -v --kernel "$TESTOS" --cmdline "$JOB" </dev/null >"$TMP/cairn.log" 2>&1
rc=$?
cat "$TMP/cairn.log"
[ $rc -eq 0 ] || fail "cairn: exit status $rc"
[ "$(grep -c "cpl0check ok: [0-9]* checks" "$TMP/cairn.log")" = 2 ] || fail "cairn: cpl0check did not pass twice"
grep -q "cpl0check.*FAILED" "$TMP/cairn.log" && fail "cairn: a check failed"
pass "cairn passes cpl0check"

if ! grep -q "/dev/kvm is PVM" "$TMP/cairn.log"; then
  pass "not a PVM host: the instructions ran natively, nothing to complete"
  exit 0
fi
# Every completion was cairn's, twice over (the second run hits the
# same paths with other operands).
line=$(grep "^pvm: completed" "$TMP/cairn.log") || fail "no completion counts (-v)"
# The guest runs a check only where its CPUID has the instruction
# (guest/kernel.h CPL0_RUN_*: 1 popcnt, 2 cmpxchg16b, 4 SMAP, 8 MXCSR; the
# CPUID a PVM guest sees in user mode is the host's, which differs between
# machines): expect completions of what it ran, and at least int3 and fwait.
run=$(grep -o "cpl0check seed=[^ ]* run=0x[0-9a-f]*" "$TMP/cairn.log" | head -1 | sed 's/.*run=//')
[ -n "$run" ] || fail "the guest did not say which checks it ran"
insns="int3 fwait"
(( run & 1 )) && insns+=" popcnt"
(( run & 2 )) && insns+=" cmpxchg16b"
(( run & 4 )) && insns+=" clac stac"
(( run & 8 )) && insns+=" ldmxcsr stmxcsr"
want=$(( 2 + (run & 1) + (run >> 1 & 1) * 2 + (run >> 2 & 1) + (run >> 3 & 1) ))
grep -q "cpl0check ok: $want checks" "$TMP/cairn.log" || fail "cairn: expected $want checks for run=$run"
for insn in $insns; do
  echo "$line" | grep -qE "[:,] $insn [1-9]" || fail "no $insn completion counted: $line"
done
pass "PVM host: cairn ${line#pvm: }"

"$CAIRN" run --no-pvm-quirks --kernel "$TESTOS" --cmdline "$JOB" </dev/null >"$TMP/off.log" 2>&1
rc=$?
[ $rc -eq 1 ] || { cat "$TMP/off.log"; fail "--no-pvm-quirks: exit status $rc, expected 1"; }
grep -q "cpl0check ok" "$TMP/off.log" && fail "--no-pvm-quirks: cpl0check passed without the fallback?"
grep -q "KVM internal error" "$TMP/off.log" || { cat "$TMP/off.log"; fail "--no-pvm-quirks: no KVM internal error reported"; }
pass "without the fallback (--no-pvm-quirks) the refused instruction ends the VM with exit 1"
