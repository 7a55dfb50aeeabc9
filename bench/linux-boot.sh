#!/bin/bash
# Benchmark (not a test): the Linux guest (scripts/build-linux-guest.sh, PVH
# vmlinux + uncompressed initramfs) from process start to "cairn-guest: ready"
# and to VM exit, under cairn and, in the same run, under QEMU TCG booting the
# same files; plus cairn's completion counts per instruction (docs/pvm.md).
# Medians and the ratio go to bench/results-linux.md (appended, dated).
#
# Usage: bench/linux-boot.sh [CAIRN_RUNS [QEMU_RUNS]]   (default 1 and 5:
#        one cairn boot takes minutes on a PVM host)
# Environment: CAIRN (default build/cairn), GUEST (default build/linux-guest),
# RESULTS (default bench/results-linux.md).
set -uo pipefail
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
CAIRN=${CAIRN:-$SRCDIR/build/cairn}
GUEST=${GUEST:-$SRCDIR/build/linux-guest}
CAIRN_RUNS=${1:-1}
QEMU_RUNS=${2:-5}
OUT=${RESULTS:-$SRCDIR/bench/results-linux.md}
TMP=$(mktemp -d /tmp/cairn-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

[ -x "$CAIRN" ] || { echo "no cairn binary at $CAIRN (set CAIRN=...)"; exit 1; }
"$SRCDIR/scripts/build-linux-guest.sh" "$GUEST" || exit 1
CMDLINE="console=ttyS0 reboot=k panic=-1 ipv6.disable=1 init_on_alloc=0 rodata=off cryptomgr.notests initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init,tracer_init_tracefs,crypto_kdf108_init cairn_run=true"

# timed LOG CMD...: runs CMD, prints "READY EXIT" seconds after start (READY
# is "-" when the guest never got there); the console goes to LOG.
timed() {
  local log=$1; shift
  local start ready=- now
  start=$(date +%s%N)
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$log"
    if [ "$ready" = - ] && [[ $line == *"cairn-guest: ready"* ]]; then
      now=$(date +%s%N)
      ready=$(awk "BEGIN { printf \"%.2f\", ($now - $start) / 1e9 }")
    fi
  done < <("$@" </dev/null 2>&1)
  now=$(date +%s%N)
  echo "$ready $(awk "BEGIN { printf \"%.2f\", ($now - $start) / 1e9 }")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$TMP/cairn.times"
: >"$TMP/qemu.times"
for ((i = 1; i <= QEMU_RUNS; i++)); do
  t=$(timed "$TMP/qemu.$i.log" timeout 300 qemu-system-x86_64 -M q35 -m 512 -nographic -no-reboot \
        -kernel "$GUEST/vmlinux" -initrd "$GUEST/initramfs.cpio" -append "$CMDLINE")
  echo "qemu tcg run $i: ready/exit $t s"
  echo "$t" >>"$TMP/qemu.times"
done
for ((i = 1; i <= CAIRN_RUNS; i++)); do
  t=$(timed "$TMP/cairn.$i.log" timeout 1800 "$CAIRN" run -v --kernel "$GUEST/vmlinux" \
        --initrd "$GUEST/initramfs.cpio" --mem 512M --cmdline "$CMDLINE")
  echo "cairn run $i: ready/exit $t s"
  echo "$t" >>"$TMP/cairn.times"
  grep -m1 "^pvm: completed" "$TMP/cairn.$i.log" | tr -d '\r' >"$TMP/pvm.$i" || true
  cat "$TMP/pvm.$i"
done

cr=$(cut -d' ' -f1 "$TMP/cairn.times" | grep -v - | median)
ce=$(cut -d' ' -f2 "$TMP/cairn.times" | median)
qr=$(cut -d' ' -f1 "$TMP/qemu.times" | grep -v - | median)
qe=$(cut -d' ' -f2 "$TMP/qemu.times" | median)
ratio=-
if [ "$cr" != - ] && [ "$qr" != - ]; then
  ratio=$(awk -v a="$cr" -v b="$qr" 'BEGIN { printf "%.0f", a / b }')
fi
host=$( [ -d /sys/module/kvm_pvm ] && echo "PVM (kvm_pvm)" || echo "hardware KVM or none")

{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC'), $(cat "$GUEST/kernel-version"), host /dev/kvm: $host, $(nproc) CPUs"
  echo
  echo "| guest: PVH vmlinux + initramfs, 512 MiB, 1 vCPU | runs | to \`cairn-guest: ready\` (median) | to exit (median) |"
  echo "|---|---|---|---|"
  echo "| cairn | $CAIRN_RUNS | ${cr} s | ${ce} s |"
  echo "| QEMU 7.2 TCG (q35) | $QEMU_RUNS | ${qr} s | ${qe} s |"
  echo
  echo "cairn / QEMU TCG, to ready: ${ratio}x."
  echo
  echo "Completions (cairn -v, per run):"
  echo
  for f in "$TMP"/pvm.*; do [ -s "$f" ] && echo "    $(cat "$f")"; done
} | tee -a "$OUT"
