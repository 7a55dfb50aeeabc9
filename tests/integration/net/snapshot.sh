#!/bin/bash
# A VM with a NIC is snapshotted while its guest serves UDP echo, and
# restored in a new process (`cairn run --restore`): with another host port
# forwarded (--net at restore replaces the backend), the echo works again
# without the guest doing anything (its driver and its queues come back
# from the snapshot; the new user-mode stack is fresh).  A revert in place
# keeps the backend; a restore without --net reattaches the recorded one; a
# wrong number of --net is refused.
. "$SRCDIR/tests/integration/net/lib_net.sh"

p1=$(python3 "$here/free_port.py")
start_vm a --kernel "$TESTOS" --net "user,hostfwd=udp::$p1-:7" --net user,mac=52:54:00:aa:bb:cc \
  --cmdline "udpecho 7"
wait_for "$TMP/a.out" "udpecho port=7 ready" 20 || fail "udpecho did not start"
python3 "$here/udp_client.py" "$p1" 10 before || { cat "$TMP/a.out"; fail "echo before the snapshot"; }
ctl a '{"cmd":"snapshot","path":"'"$TMP/snap"'","then":"quit"}'
wait_vm a 0
pass "echo before the snapshot; snapshot taken"

# The NIC count is the snapshot's: two --net for two NICs, or one none.
rc=0; "$CAIRN" run --restore "$TMP/snap" --net user </dev/null >"$TMP/bad" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "the snapshot has 2 NICs" "$TMP/bad" || { cat "$TMP/bad"; fail "one --net for two NICs"; }
rc=0; "$CAIRN" run --restore "$TMP/snap" --net user --net user,mac=52:54:00:00:00:01 \
  </dev/null >"$TMP/bad" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "MAC address is the snapshot's 52:54:00:aa:bb:cc" "$TMP/bad" ||
  { cat "$TMP/bad"; fail "another MAC at restore"; }
pass "restores with the wrong NICs refused"

p2=$(python3 "$here/free_port.py")
start_vm b --restore "$TMP/snap" --net "user,hostfwd=udp::$p2-:7" --net none
python3 "$here/udp_client.py" "$p2" 10 after >"$TMP/client" 2>&1 ||
  { cat "$TMP/client" "$TMP/b.out"; fail "echo after the restore"; }
cat "$TMP/client"
grep -q "ready" "$TMP/b.out" && { cat "$TMP/b.out"; fail "the restored guest booted again"; }
pass "echo through a new port after a restore in a new process"

# Revert in place: the device state goes back, the running backend stays.
ctl b '{"cmd":"revert","path":"'"$TMP/snap"'"}'
python3 "$here/udp_client.py" "$p2" 5 reverted >"$TMP/client" 2>&1 ||
  { cat "$TMP/client" "$TMP/b.out"; fail "echo after a revert in place"; }
pass "echo after a revert in place"
ctl b '{"cmd":"snapshot","path":"'"$TMP/snap2"'","then":"quit"}'
wait_vm b 0

# Restored without --net: the snapshot's backends (p2 forwarded).
start_vm c --restore "$TMP/snap2"
python3 "$here/udp_client.py" "$p2" 5 again >"$TMP/client" 2>&1 ||
  { cat "$TMP/client" "$TMP/c.out"; fail "echo after a restore with the recorded backend"; }
pass "a restore without --net reattaches the recorded backend"

# A revert needs the same NICs: a snapshot of a machine with one is refused.
start_vm e --kernel "$TESTOS" --net user --cmdline "sleep 100000"
wait_for "$TMP/e.out" "cairn-guest: ready" 20 || fail "VM e did not start"
ctl e '{"cmd":"snapshot","path":"'"$TMP/snap1nic"'","then":"quit"}'
wait_vm e 0
reply=$("$CAIRN" control "$TMP/c.sock" '{"cmd":"revert","path":"'"$TMP/snap1nic"'"}') &&
  fail "revert to a snapshot with another NIC count: $reply"
case "$reply" in *"has 1 NICs, this VM 2"*) ;; *) fail "revert refusal: $reply" ;; esac
python3 "$here/udp_client.py" "$p2" 2 stillthere >/dev/null 2>&1 || fail "echo after a refused revert"
ctl c '{"cmd":"quit"}'
wait_vm c 0
pass "a revert to a machine with other NICs is refused; the VM goes on"

# --net none at restore: the NICs stay, their link is down, nothing echoes.
start_vm d --restore "$TMP/snap" --net none
if python3 "$here/udp_client.py" "$p1" 1 none >/dev/null 2>&1; then
  fail "a datagram was echoed with --net none"
fi
ctl d '{"cmd":"quit"}'
wait_vm d 0
pass "--net none at restore disconnects the NICs"
