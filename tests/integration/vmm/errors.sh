#!/bin/bash
# cairn run: every error of issue 3 §2 exits 1 (2 for usage) with a message
# naming the cause; a guest's debug-exit code becomes cairn's exit status.
. "$SRCDIR/tests/integration/lib.sh"

expect() { # expect STATUS REGEX -- cairn args...
  local want=$1 pat=$2; shift 3
  timeout 30 "$CAIRN" "$@" </dev/null >"$TMP/out" 2>&1
  local rc=$?
  [ "$rc" = "$want" ] || { cat "$TMP/out"; fail "cairn $* exited $rc, expected $want"; }
  [ -z "$pat" ] || grep -qE -- "$pat" "$TMP/out" || { cat "$TMP/out"; fail "cairn $*: no /$pat/ in its output"; }
  pass "cairn $* -> $rc, /$pat/"
}

# Usage errors need no KVM.
expect 2 "--kernel is required" -- run
expect 2 "invalid --mem" -- run --kernel x --mem 12Q
expect 2 "--cpus takes 1 to 64" -- run --kernel x --cpus 0
expect 2 "unknown or incomplete option" -- run --kernel x --bogus
expect 2 "unknown command" -- frobnicate
expect 0 "Usage: cairn run" -- run --help

need_kvm
python3 "$SRCDIR/tests/integration/vmm/mkpvh.py" "$TMP/exit42.elf" "b02aba01050000eeebfe" # mov al,42; mov edx,0x501; out dx,al; jmp $
expect 1 "$TMP/nope: No such file" -- run --kernel "$TMP/nope"
echo "not a kernel" >"$TMP/junk"
expect 1 "$TMP/junk: not a kernel cairn can boot" -- run --kernel "$TMP/junk"
printf '\x7fELF\x01\x01\x01' >"$TMP/trunc.elf"; head -c 60 /dev/zero >>"$TMP/trunc.elf"
expect 1 "trunc.elf: ELF (for machine|file without)" -- run --kernel "$TMP/trunc.elf"
expect 1 "memory size .* is outside" -- run --kernel "$TMP/exit42.elf" --mem 2T
expect 1 "missing.img: No such file" -- run --kernel "$TMP/exit42.elf" --disk "$TMP/missing.img"
expect 42 "" -- run --kernel "$TMP/exit42.elf"

# A KVM internal error reports the exit and the registers.  On PVM hosts
# int3 at CPL 0 is such an error when cairn does not complete it.
if [ -e /sys/module/kvm_pvm ]; then
  python3 "$SRCDIR/tests/integration/vmm/mkpvh.py" "$TMP/int3.elf" "90cc"
  expect 1 "KVM internal error.*" -- run --kernel "$TMP/int3.elf" --no-pvm-quirks
  grep -q "rip=0000000000100001" "$TMP/out" || fail "register dump does not show RIP at the int3"
  pass "KVM internal error shows the registers"
fi
echo "errors: all passed"
