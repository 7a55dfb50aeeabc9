#!/bin/bash
# The README's main job: build cairn, make a VM bundle with the test guest,
# write data to its disk and memory, take a whole-machine snapshot, destroy
# the data, revert, show it back (verified), and list the snapshot tree.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
CAIRN=$PWD/build/cairn
TESTOS=$PWD/build/guest/testos.elf
if [ ! -w /dev/kvm ]; then
  echo "demo: /dev/kvm is missing or not writable: cairn needs KVM" >&2
  exit 1
fi
work=$(mktemp -d /tmp/cairn-demo.XXXXXX)
vm=$work/web
cleanup() { "$CAIRN" stop "$vm" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
mark=0
guest() { # type a line into the guest's console, wait, show what it printed
  printf '%s\r' "$1" >"$vm/console.in"
  sleep "${2:-0.5}"
  tr -d '\r' <"$vm/console.log" | tail -n +"$((mark + 1))"
  mark=$(wc -l <"$vm/console.log")
}

say "1. A VM bundle: the test guest, 2 vCPUs, 512 MiB, a 64 MiB qcow2 disk; boot it"
"$CAIRN" create "$vm" --kernel "$TESTOS" --disk-size 64M --mem 512M --cpus 2 --cmdline "shell"
"$CAIRN" run "$vm" --detach
sleep 0.5
guest "cpus" 0.3

say "2. Write data: 128 MiB of memory and 1000 checksummed disk blocks"
guest "memfill 128 42" 2
guest "diskfill 1000 7" 1

say "3. Snapshot the running machine (memory, vCPUs, devices, disk) as 'pre-upgrade'"
"$CAIRN" snapshot create "$vm" pre-upgrade

say "4. Destroy the data: overwrite the disk, corrupt memory; the guest sees both broken"
guest "diskfill 1000 99" 1
guest "flip" 0.3
guest "memverify" 1
guest "diskverify 1000 7" 1

say "5. Revert the running VM to 'pre-upgrade' and check memory and disk again"
"$CAIRN" snapshot revert "$vm" pre-upgrade
guest "memverify" 1
guest "diskverify 1000 7" 1
out=$(tr -d '\r' <"$vm/console.log" | tail -n 4)
grep -q "memverify ok" <<<"$out" && grep -q "diskverify ok n=1000" <<<"$out" ||
  { echo "demo: the state did not come back" >&2; exit 1; }

say "6. The snapshot tree"
"$CAIRN" snapshot create "$vm" after-check
"$CAIRN" snapshot list "$vm"
"$CAIRN" stop "$vm"
say "demo finished: the revert brought back the guest's memory (same checksum) and disk (all 1000 blocks)"
