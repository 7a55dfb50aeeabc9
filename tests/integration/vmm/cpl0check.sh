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
for insn in int3 fwait clac stac popcnt cmpxchg16b ldmxcsr stmxcsr; do
  echo "$line" | grep -qE "[:,] $insn [1-9]" || fail "no $insn completion counted: $line"
done
pass "PVM host: cairn ${line#pvm: }"

"$CAIRN" run --no-pvm-quirks --kernel "$TESTOS" --cmdline "$JOB" </dev/null >"$TMP/off.log" 2>&1
rc=$?
[ $rc -eq 1 ] || { cat "$TMP/off.log"; fail "--no-pvm-quirks: exit status $rc, expected 1"; }
grep -q "cpl0check ok" "$TMP/off.log" && fail "--no-pvm-quirks: cpl0check passed without the fallback?"
grep -q "KVM internal error" "$TMP/off.log" || { cat "$TMP/off.log"; fail "--no-pvm-quirks: no KVM internal error reported"; }
pass "without the fallback (--no-pvm-quirks) the refused instruction ends the VM with exit 1"
