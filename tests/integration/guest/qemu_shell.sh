# With no jobs, cpu0 runs the serial shell: lines typed on COM1 run as jobs.
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"

fifo=$TMP/in
mkfifo "$fifo"
timeout 30 qemu-system-x86_64 "${ACCEL[@]}" -M microvm -m 256M -nodefaults -display none \
  -serial stdio -no-reboot -device isa-debug-exit,iobase=0x501,iosize=1 \
  -kernel "$TESTOS" <"$fifo" >"$TMP/sh.log" 2>"$TMP/sh.err" &
qpid=$!
exec 3>"$fifo"
wait_for "$TMP/sh.log" "cairn> " 20 || fail "no prompt"
printf 'echo typed in\r' >&3
wait_for "$TMP/sh.log" "cpu0: typed in" 10 || fail "echo did not run"
printf 'memfill 8 3; memverify\n' >&3
wait_for "$TMP/sh.log" "cpu0: memverify ok" 10 || fail "memverify did not run"
printf 'exit 9\n' >&3
wait "$qpid"
rc=$?
exec 3>&-
[ "$rc" = "$(qemu_status 9)" ] || { cat "$TMP/sh.log"; fail "status $rc"; }
[ "$(grep -c 'cairn> ' "$TMP/sh.log")" -ge 3 ] || fail "prompts missing"
pass "shell runs typed commands"
