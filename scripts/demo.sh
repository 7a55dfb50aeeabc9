#!/bin/bash
# The README's main job: build cairn and show it working on the test guest.
# (Grows with the project: snapshots, revert and the snapshot tree come with
# the snapshot issues.)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
CAIRN=build/cairn
TESTOS=build/guest/testos.elf
if [ ! -w /dev/kvm ]; then
  echo "demo: /dev/kvm is missing or not writable: cairn needs KVM" >&2
  exit 1
fi
work=$(mktemp -d /tmp/cairn-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. Boot the test guest on 2 vCPUs with a 64 MiB disk; fill memory on both vCPUs and write 1000 checksummed blocks"
truncate -s 64M "$work/disk.img"
start=$(date +%s%N)
$CAIRN run -v --kernel $TESTOS --cpus 2 --mem 512M --disk "$work/disk.img" \
  --cmdline "@1 memfill 128 42; @1 memverify; @0 diskfill 1000 7; @0 sleep 1500; @0 exit 0" </dev/null
echo "(ran in $(( ($(date +%s%N) - start) / 1000000 )) ms, guest exit status $?)"

say "2. The host checks the blocks the guest wrote"
build/guest/diskpat verify "$work/disk.img" 1000 7

say "3. Break the disk behind the guest's back (one byte of block 500), boot again: the guest catches it"
printf 'X' | dd of="$work/disk.img" bs=1 seek=$((500 * 4096 + 64)) conv=notrunc status=none
set +e
$CAIRN run --kernel $TESTOS --disk "$work/disk.img" --cmdline "diskverify 1000 7; exit 0" </dev/null
rc=$?
set -e
echo "(guest exit status $rc: non-zero because a verify failed)"
[ $rc -ne 0 ]

say "4. Repair the block from the host and boot once more: all 1000 blocks verify"
build/guest/diskpat write "$work/disk.img" 1000 7 >/dev/null
$CAIRN run --kernel $TESTOS --disk "$work/disk.img" --cmdline "diskverify 1000 7; exit 0" </dev/null
say "demo finished: the guest booted, worked on both vCPUs, and its disk state was checked, broken and restored"
