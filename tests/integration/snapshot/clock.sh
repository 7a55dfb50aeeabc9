#!/bin/bash
# The guest's clock after a restore (docs/snapshots.md, "The guest's
# clocks"): kvmclock goes on from the snapshot's value (no jump for the
# time spent saved), and {"cmd":"clock-sync"} steps it forward by that time,
# once; a booted VM is in step already.
. "$SRCDIR/tests/integration/snapshot/lib_snap.sh"
need_kvm
need_testos

kclock() { type_wait "$1" clock 'clock kvmclock_ms=' 20 | sed -n 's/.*kvmclock_ms=\([0-9]*\).*/\1/p'; }
stepped() { python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["stepped_ms"]))' "$REPLY_JSON"; }

shell_vm a --kernel "$TESTOS" --mem 64M --cmdline "shell"
ctl a '{"cmd":"clock-sync"}'
s=$(stepped)
[ "$s" -le 50 ] || fail "a booted VM's clock-sync stepped ${s} ms"
k0=$(kclock a)
ctl a '{"cmd":"snapshot","path":"'"$TMP/s1"'","then":"quit"}'
wait_vm a 0
pass "booted VM: clock-sync steps ${s} ms; kvmclock ${k0} ms at the snapshot"

sleep 3
shell_vm b --restore "$TMP/s1"
k1=$(kclock b)
[ -n "$k1" ] && [ "$k1" -ge "$k0" ] && [ $((k1 - k0)) -lt 2000 ] ||
  fail "restored kvmclock ${k1} ms after ${k0} ms at the snapshot: not continuing from it"
ctl b '{"cmd":"clock-sync"}'
s=$(stepped)
[ "$s" -ge 2800 ] && [ "$s" -le 30000 ] || fail "clock-sync after 3 s in the snapshot stepped ${s} ms"
k2=$(kclock b)
[ $((k2 - k1)) -ge 2800 ] || fail "kvmclock ${k1} -> ${k2} ms: not stepped by the ${s} ms reported"
ctl b '{"cmd":"clock-sync"}'
s2=$(stepped)
[ "$s2" -le 50 ] || fail "a second clock-sync stepped ${s2} ms"
pass "restored 3 s later: kvmclock went on (${k0} -> ${k1} ms), clock-sync stepped ${s} ms (${k1} -> ${k2} ms), again ${s2} ms"

# A snapshot of the synced VM carries the reference: its restore lags only
# by its own time in the snapshot.
ctl b '{"cmd":"snapshot","path":"'"$TMP/s2"'","then":"quit"}'
wait_vm b 0
sleep 1
shell_vm c --restore "$TMP/s2"
ctl c '{"cmd":"clock-sync"}'
s3=$(stepped)
[ "$s3" -ge 800 ] && [ "$s3" -le 2800 ] || fail "second restore: clock-sync stepped ${s3} ms, want about 1 s"
ctl c quit
wait_vm c 0
pass "a snapshot of the stepped VM restored 1 s later steps ${s3} ms"
