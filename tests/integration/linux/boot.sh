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
[ $rc -eq 124 ] && fail "cairn did not finish within ${CAIRN_LINUX_TIMEOUT:-1440}s"
grep -q "cannot complete instruction" "$TMP/cairn.log" && fail "an instruction cairn cannot complete"
# Known PVM limitation (docs/pvm.md, docs/guest.md): a non-PVM-aware guest's
# user-mode `syscall` arrives at LSTAR still at CPL 3, so the first system
# call of /init faults in entry_SYSCALL_64 and the kernel panics.  Everything
# up to /init was checked above; say so loudly rather than pass.
if grep -q "RIP: 0033:entry_SYSCALL_64" "$TMP/cairn.log" && grep -q "Run /init as init process" "$TMP/cairn.log"; then
  grep -m1 "^pvm: completed" "$TMP/cairn.log" || true
  echo "################################################################"
  echo "SKIP: Linux $(cat "$GUEST/kernel-version") booted under cairn to /init in ${secs}s, but"
  echo "its first user-mode syscall arrived at LSTAR at CPL 3 (PVM host limitation,"
  echo "docs/pvm.md): cairn-guest: ready is out of reach on this host"
  echo "################################################################"
  exit 77
fi
[ $rc -eq 0 ] || fail "cairn exited with $rc"
check_console "$TMP/cairn.log" "cairn"
grep -m1 "^pvm: completed" "$TMP/cairn.log" || true
pass "Linux $(cat "$GUEST/kernel-version") booted under cairn, read its virtio-blk disk and exited 0 in ${secs}s"
