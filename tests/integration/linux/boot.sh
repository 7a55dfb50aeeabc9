#!/bin/bash
# Long test: Debian's cloud kernel (PVH vmlinux, uncompressed initramfs, see
# scripts/build-linux-guest.sh) boots under cairn to "cairn-guest: ready",
# loads its virtio modules, mounts its virtio-blk disk, reads a file and a
# checksum from it, and the VM ends with exit status 0.
#
# On a PVM host (environment.md) guest kernel code is emulated by KVM and
# cairn completes what the emulator refuses (docs/pvm.md): this takes minutes
# here; the time is printed.  QEMU TCG boots the same files first, as the
# reference for what the guest prints (skipped when QEMU is missing).
#
# Environment: CAIRN_LINUX_TIMEOUT (seconds, default 1440).
. "$SRCDIR/tests/integration/lib.sh"
need_kvm

GUEST=$BUILDDIR/linux-guest
if ! "$SRCDIR/scripts/build-linux-guest.sh" "$GUEST" >"$TMP/build.log" 2>&1; then
  cat "$TMP/build.log"
  if grep -q "apt-get download" "$TMP/build.log"; then
    echo "################################################################"
    echo "SKIP: the Debian kernel package could not be downloaded"
    echo "################################################################"
    exit 77
  fi
  fail "scripts/build-linux-guest.sh failed"
fi
command -v mkfs.ext4 >/dev/null || fail "mkfs.ext4 is missing (e2fsprogs)"

# The disk: an ext4 file system with a text file and 1 MiB of random data
# whose checksum the guest must print.
mkdir -p "$TMP/fs"
echo "hello from cairn's virtio-blk disk" >"$TMP/fs/hello.txt"
head -c 1048576 /dev/urandom >"$TMP/fs/data.bin"
want_sum=$(sha256sum "$TMP/fs/data.bin" | cut -d' ' -f1)
truncate -s 64M "$TMP/disk.img"
mkfs.ext4 -q -F -d "$TMP/fs" "$TMP/disk.img" || fail "mkfs.ext4"

RUN='mount -o ro /dev/vda /mnt && cat /mnt/hello.txt && sha256sum /mnt/data.bin && grep -c ^virtio /proc/modules'
# cryptomgr.notests and initcall_blacklist: boot-time self-tests and tracing
# housekeeping that take minutes when kernel code is emulated (docs/pvm.md,
# "Making Linux boot faster here").
CMDLINE="console=ttyS0 reboot=k panic=-1 ipv6.disable=1 init_on_alloc=0 rodata=off cryptomgr.notests initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init,tracer_init_tracefs,crypto_kdf108_init cairn_run=\"$RUN\""

check_console() {  # LOG WHO
  local log=$1 who=$2
  grep -q "cairn-guest: ready" "$log" || fail "$who: no 'cairn-guest: ready'"
  grep -q "insmod .* failed" "$log" && fail "$who: a module did not load"
  grep -q "hello from cairn's virtio-blk disk" "$log" || fail "$who: the disk's file was not read"
  grep -q "$want_sum" "$log" || fail "$who: the checksum of data.bin is not $want_sum"
  grep -qE $'^6\r?$' "$log" || fail "$who: not all 6 virtio modules are loaded"
  grep -q "cairn-guest: exit 0" "$log" || fail "$who: the command did not exit 0"
}

if command -v qemu-system-x86_64 >/dev/null; then
  timeout 120 qemu-system-x86_64 -M q35 -m 512 -nographic -no-reboot -kernel "$GUEST/vmlinux" \
    -initrd "$GUEST/initramfs.cpio" -append "$CMDLINE" \
    -drive "file=$TMP/disk.img,format=raw,if=none,id=d0,readonly=on" -device virtio-blk-pci,drive=d0 \
    </dev/null >"$TMP/qemu.log" 2>&1
  check_console "$TMP/qemu.log" "QEMU TCG"
  pass "QEMU TCG boots the same files (reference)"
else
  echo "note: qemu-system-x86_64 missing; no reference run"
fi

start=$(date +%s.%N)
timeout "${CAIRN_LINUX_TIMEOUT:-1440}" "$CAIRN" run -v --kernel "$GUEST/vmlinux" \
  --initrd "$GUEST/initramfs.cpio" --disk "$TMP/disk.img,readonly" --mem 512M --cmdline "$CMDLINE" \
  </dev/null >"$TMP/cairn.log" 2>&1
rc=$?
end=$(date +%s.%N)
secs=$(awk "BEGIN { printf \"%.1f\", $end - $start }")
echo "--- cairn console (last 40 lines) ---"
tail -n 40 "$TMP/cairn.log"
echo "---"
# What must hold on any host: the kernel started, printed its banner and
# command line, and cairn neither met an instruction it cannot complete nor
# failed (exit 1).  Those are regressions, and fail the test.
grep -q "Linux version" "$TMP/cairn.log" || fail "no kernel banner on the console"
grep -q "Command line:" "$TMP/cairn.log" || fail "the kernel did not print its command line"
grep -q "cannot complete instruction" "$TMP/cairn.log" && fail "an instruction cairn cannot complete"
[ $rc -eq 1 ] && fail "cairn failed (exit 1)"
pass "the kernel printed its banner and command line under cairn"
grep -m1 "^pvm: completed" "$TMP/cairn.log" || true
if [ $rc -eq 0 ] && (check_console "$TMP/cairn.log" "cairn") >"$TMP/check.out"; then
  pass "Linux $(cat "$GUEST/kernel-version") booted under cairn, read its virtio-blk disk and exited 0 in ${secs}s"
  exit 0
fi
# Not all the way: on a PVM host guest kernel code is emulated (about 20
# minutes to /init here) and two VMM gaps remain (issues 3 and 8 are open:
# no PCI root bridge in cairn's ACPI tables, so Linux finds no virtio disk;
# user-space console output through the 8250's interrupts does not appear).
# Say how far it got, loudly, rather than pass.
reached="the kernel's banner"
grep -q "Run /init as init process" "$TMP/cairn.log" && reached="/init (user space)"
grep -q "cairn-guest: ready" "$TMP/cairn.log" && reached="cairn-guest: ready"
echo "################################################################"
echo "SKIP: Linux $(cat "$GUEST/kernel-version") under cairn reached $reached in ${secs}s"
echo "(cairn exit status $rc); booting to a read of its virtio-blk disk is not done yet"
echo "on this host: docs/pvm.md, issues 3 and 8"
echo "################################################################"
exit 77
