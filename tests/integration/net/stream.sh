#!/bin/bash
# A UDP stream goes on through a snapshot and a restore in a new process
# (issue 17 §6): the guest's `netsend` streams numbered datagrams to a host
# receiver through user-mode networking; mid-stream the VM is snapshotted
# and quits, and a new process restores it.  The receiver keeps counting:
# the stream must end (the guest's end marker arrives), datagrams sent after
# the restore must arrive, and every datagram is either received or counted
# lost (in flight at the snapshot) — the receiver's count plus the loss is
# what the guest says it sent.
. "$SRCDIR/tests/integration/net/lib_net.sh"

port=$(python3 "$here/free_port.py")
# 6 MiB at 2 MiB/s: about 3 s of stream, the snapshot half a second into it
python3 "$SRCDIR/bench/netperf.py" recv "$port" --idle 30 --ready "$TMP/rx.ready" \
  --first "$TMP/rx.first" --mark "$TMP/restoring" >"$TMP/rx.json" 2>"$TMP/rx.err" &
rx=$!
for ((i = 0; i < 100; i++)); do [ -e "$TMP/rx.ready" ] && break; sleep 0.1; done
[ -e "$TMP/rx.ready" ] || { cat "$TMP/rx.err"; fail "the receiver did not start"; }
start_vm a --kernel "$TESTOS" --net user --cmdline "netsend 10.0.2.2 $port 6 2048"
wait_for "$TMP/a.out" "virtio-net 00:" 20 || fail "the guest's NIC did not come up"
for ((i = 0; i < 200; i++)); do [ -e "$TMP/rx.first" ] && break; sleep 0.05; done
[ -e "$TMP/rx.first" ] || { cat "$TMP/a.out"; fail "no datagram reached the host receiver"; }
sleep 0.5
ctl a '{"cmd":"snapshot","path":"'"$TMP/snap"'","then":"quit"}'
wait_vm a 0
grep -q "netsend to=" "$TMP/a.out" && { cat "$TMP/a.out"; fail "the stream ended before the snapshot"; }
pass "snapshot taken mid-stream"

touch "$TMP/restoring"
start_vm b --restore "$TMP/snap" --net user
wait_for "$TMP/b.out" "netsend to=10.0.2.2:$port " 60 || { cat "$TMP/b.out"; fail "the stream did not finish after the restore"; }
ctl b '{"cmd":"quit"}'
wait_vm b 0
grep -q "cairn-guest: ready" "$TMP/b.out" && { cat "$TMP/b.out"; fail "the restored guest booted again"; }
grep -q FAILED "$TMP/b.out" && { cat "$TMP/b.out"; fail "netsend failed after the restore"; }
timeout 40 tail -s 0.1 --pid=$rx -f /dev/null
wait $rx || { cat "$TMP/rx.json" "$TMP/rx.err"; fail "the receiver got nothing"; }
line=$(tr -d '\r' <"$TMP/b.out" | grep "netsend to=")
echo "guest: $line"
echo "host:  $(cat "$TMP/rx.json")"
sent=$(sed -n 's/.* datagrams=\([0-9]*\) .*/\1/p' <<<"$line")
REPLY_JSON=$(cat "$TMP/rx.json")
[ "$(jget end)" = True ] || fail "the receiver did not see the end marker"
got=$(jget datagrams) lost=$(jget lost) after=$(jget after_mark)
before=$(jget last_before_mark) first=$(jget first_after_mark)
[ "$sent" = 4494 ] || fail "the guest sent $sent datagrams, not 4494"
[ "$((got + lost))" = "$sent" ] || fail "received $got + lost $lost != sent $sent"
[ "$after" -gt 0 ] && [ "$first" -gt "$before" ] ||
  fail "no datagram sent after the restore arrived (after=$after first=$first before=$before)"
[ "$lost" -lt 200 ] || fail "$lost datagrams lost: more than were in flight at the snapshot"
pass "stream went on after the restore: $got received ($after after the restore, from #$first), $lost lost in flight"
