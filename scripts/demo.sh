#!/bin/bash
# The README's main job: build cairn, boot the test guest, take a
# whole-machine snapshot, break the machine (disk and memory), restore the
# snapshot in a new process and show that disk and memory came back.
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
cleanup() { exec 3>&- 2>/dev/null || true; pkill -f "$work/vm.sock" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
guest() { printf '%s\r' "$1" >&3; sleep "${2:-0.5}"; }   # type a line into the guest's console
show() { tr -d '\r' <"$work/console" | tail -n +"$1"; }

say "1. Boot the test guest (2 vCPUs, 512 MiB, a 64 MiB qcow2 disk) with a control socket"
$CAIRN img create -f qcow2 "$work/disk.qcow2" 64M
mkfifo "$work/in"
$CAIRN run --kernel $TESTOS --cpus 2 --mem 512M --disk "$work/disk.qcow2" \
  --control "$work/vm.sock" --cmdline "shell" <"$work/in" >"$work/console" 2>&1 &
exec 3>"$work/in"
sleep 0.5
guest "memfill 128 42" 2
guest "diskfill 1000 7" 1
show 1

say "2. Snapshot the running machine: memory, vCPUs, devices and disk, at one instant"
$CAIRN control "$work/vm.sock" '{"cmd":"snapshot","path":"'"$work/before-upgrade"'"}'
ls -l "$work/before-upgrade"
echo "disk layers: the snapshot froze disk.qcow2; the VM now writes to disk-before-upgrade.qcow2"
n=$(wc -l <"$work/console")

say "3. Break the machine: overwrite the disk with other data and corrupt memory"
guest "diskfill 1000 99" 1
guest "flip" 0.5
guest "memverify" 1
guest "diskverify 1000 7" 1
show $((n + 1))
$CAIRN control "$work/vm.sock" quit >/dev/null
exec 3>&-
wait || true

say "4. Restore the snapshot in a new process and check memory and disk"
(sleep 0.5; printf 'memverify\r'; sleep 1; printf 'diskverify 1000 7\r'; sleep 1; printf 'exit 0\r') |
  $CAIRN run --restore "$work/before-upgrade" | tr -d '\r' | tee "$work/restored"
grep -q "memverify ok" "$work/restored" && grep -q "diskverify ok n=1000" "$work/restored"
say "demo finished: the snapshot brought back the guest's memory (same checksum) and its disk (all 1000 blocks)"
