#!/bin/bash
# Identity after a restore (issue 17 §4): the VM generation ID changes on
# every restore of a snapshot (each in a new process) and on every in-place
# revert, and virtio-rng gives each restored machine its own random bytes.
# The test guest finds the ID through the ACPI tables (RSDP -> XSDT -> FADT
# -> DSDT, the VMGENCTR device's ADDR package) and reads virtio-rng.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos

genid() { type_wait "$1" vmgenid 'vmgenid (addr|FAILED)' 20 | sed -n 's/.*id=\([0-9a-f]\{32\}\).*/\1/p'; }
rngsum() { type_wait "$1" "rng $2" "rng $2 .*fnv=|rng FAILED" 20 | sed -n 's/.*bytes=\([0-9]*\) .*fnv=\([0-9a-f]\{16\}\).*/\1 \2/p'; }

# 1. The origin: an ID and random bytes, then a snapshot of the running guest.
shell_vm a --kernel "$TESTOS" --mem 128M --cmdline "shell"
line=$(type_wait a vmgenid 'vmgenid (addr|FAILED)' 20)
g0=$(sed -n 's/.*id=\([0-9a-f]\{32\}\).*/\1/p' <<<"$line")
[ ${#g0} = 32 ] || fail "origin: no generation ID: $line"
[ "$g0" != 00000000000000000000000000000000 ] || fail "origin: the generation ID is zero"
r0=$(rngsum a 4096)
[ "${r0%% *}" = 4096 ] || fail "origin: rng 4096 read '${r0}'"
ctl a '{"cmd":"snapshot","path":"'"$TMP/s1"'","then":"quit"}'
wait_vm a 0
pass "origin: vmgenid $g0 found through the ACPI tables ($line), rng 4096 read"

# 2. Two restores of the one snapshot, each in a new process.
shell_vm b --restore "$TMP/s1"
shell_vm c --restore "$TMP/s1"
! grep -q "cairn-guest: ready" "$TMP/b.out" "$TMP/c.out" || fail "a restore booted afresh"
gb=$(genid b); gc=$(genid c)
[ ${#gb} = 32 ] && [ ${#gc} = 32 ] || fail "restores: no generation ID ('$gb', '$gc')"
[ "$gb" != "$g0" ] && [ "$gc" != "$g0" ] || fail "a restore kept the origin's ID $g0 ($gb, $gc)"
[ "$gb" != "$gc" ] || fail "two restores of one snapshot have the same ID $gb"
rb=$(rngsum b 4096); rc=$(rngsum c 4096)
[ "${rb%% *}" = 4096 ] && [ "${rc%% *}" = 4096 ] || fail "restores: rng 4096 read '$rb' / '$rc'"
[ "${rb#* }" != "${rc#* }" ] || fail "two restores read the same random bytes (fnv ${rb#* })"
[ "${rb#* }" != "${r0#* }" ] || fail "a restore read the origin's random bytes"
pass "two restores: IDs $gb and $gc (origin $g0), rng 4096 digests ${rb#* } and ${rc#* }"

# 3. In-place revert, twice: a new ID each time.
ctl b '{"cmd":"revert","path":"'"$TMP/s1"'"}'
g1=$(genid b)
ctl b '{"cmd":"revert","path":"'"$TMP/s1"'"}'
g2=$(genid b)
for g in "$g1" "$g2"; do
  [ ${#g} = 32 ] || fail "revert: no generation ID"
  for old in "$g0" "$gb" "$gc"; do [ "$g" != "$old" ] || fail "a revert gave an ID seen before ($g)"; done
done
[ "$g1" != "$g2" ] || fail "two reverts gave the same ID $g1"
ctl b quit; ctl c quit
wait_vm b 0; wait_vm c 0
pass "in-place reverts: IDs $g1 then $g2, each new"

# 4. --rng none: no virtio-rng in the machine nor in its snapshot's; the ID
#    is there all the same and still changes on a restore.
shell_vm d --kernel "$TESTOS" --mem 64M --rng none --cmdline "shell"
type_wait d "rng 16" 'rng FAILED \(no virtio-rng' 20 >/dev/null
gd=$(genid d)
ctl d '{"cmd":"snapshot","path":"'"$TMP/s2"'","then":"quit"}'
wait_vm d 0
shell_vm e --restore "$TMP/s2"
type_wait e "rng 16" 'rng FAILED \(no virtio-rng' 20 >/dev/null
ge=$(genid e)
[ ${#ge} = 32 ] && [ "$ge" != "$gd" ] || fail "--rng none: restore kept ID $gd ($ge)"
ctl e quit
wait_vm e 0
"$CAIRN" run --restore "$TMP/s2" --rng none </dev/null >"$TMP/x.out" 2>&1 && fail "--restore took --rng"
grep -q -- "--rng" "$TMP/x.out" || { cat "$TMP/x.out"; fail "no clear error for --restore --rng"; }
pass "--rng none: no device before or after a restore, the ID still changes ($gd -> $ge)"
