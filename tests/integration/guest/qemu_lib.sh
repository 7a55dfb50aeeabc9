# Helpers for the test guest's QEMU tests (source after lib.sh).
# QEMU's isa-debug-exit turns the guest's `exit CODE` into status (CODE<<1)|1.
need_testos
command -v qemu-system-x86_64 >/dev/null || {
  echo "SKIP: qemu-system-x86_64 is not installed"; exit 77; }
if [ "${GUEST_QEMU_ACCEL:-}" = tcg ]; then   # by hand: check the TCG path
  ACCEL=(-accel tcg)
elif [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  ACCEL=(-enable-kvm)
else
  echo "note: /dev/kvm is missing: running QEMU with TCG"
  ACCEL=(-accel tcg)
fi
DISKPAT="$BUILDDIR/guest/diskpat"

# qemu_status CODE: the status QEMU exits with after the guest's `exit CODE`
qemu_status() { echo $(( ($1 << 1) | 1 )); }

# run_qemu MACHINE SECONDS LOG CMDLINE [QEMU ARGS...]: runs to the end (stdin
# is the serial input when it is not a terminal); prints QEMU's exit status.
run_qemu() {
  local machine=$1 secs=$2 log=$3 cmdline=$4 rc
  shift 4
  timeout "$secs" qemu-system-x86_64 "${ACCEL[@]}" -M "$machine" -m 256M \
    -nodefaults -display none -serial stdio -no-reboot \
    -device isa-debug-exit,iobase=0x501,iosize=1 \
    -kernel "$TESTOS" -append "$cmdline" "$@" >"$log" 2>"$log.err"
  rc=$?
  tr -d '\r' <"$log" >"$log.txt"
  echo "$rc"
}

# expect LOG REGEX: the guest printed a line matching REGEX (whole line)
expect() {
  grep -qxE -- "$2" "$1.txt" || { echo "--- $1:"; cat "$1.txt"; cat "$1.err"; fail "no line /$2/"; }
}

# start_qemu MACHINE LOG CMDLINE [QEMU ARGS...]: in the background; sets QPID
start_qemu() {
  local machine=$1 log=$2 cmdline=$3
  shift 3
  timeout 60 qemu-system-x86_64 "${ACCEL[@]}" -M "$machine" -m 256M \
    -nodefaults -display none -serial stdio -no-reboot \
    -device isa-debug-exit,iobase=0x501,iosize=1 \
    -kernel "$TESTOS" -append "$cmdline" "$@" </dev/null >"$log" 2>"$log.err" &
  QPID=$!
}
