#!/bin/bash
# virtio-net with user-mode networking: the host sends UDP datagrams to a
# forwarded port and the test guest's udpecho sends each one back; the
# payloads must come back unchanged.  Two NICs: the guest uses the first.
. "$SRCDIR/tests/integration/net/lib_net.sh"

port=$(python3 "$here/free_port.py")
# udpecho forever: a datagram the client sends again (no echo within 1 s on
# a loaded host) is echoed twice, so the guest's count is not the client's.
start_vm a --kernel "$TESTOS" --net "user,hostfwd=udp::$port-:7" --net user \
  --cmdline "udpecho 7"
wait_for "$TMP/a.out" "udpecho port=7 ready" 20 || fail "udpecho did not start"
grep -qE "virtio-net 00:0.\.0 mac=52:54:00:12:34:56 queue=.* link=up announce=yes offered=278020([^0-9a-f]|$)" \
  "$TMP/a.out" || { cat "$TMP/a.out"; fail "no device line for the first NIC (no offloads on user)"; }
python3 "$here/udp_client.py" "$port" 40 first >"$TMP/client" 2>&1 ||
  { cat "$TMP/client" "$TMP/a.out"; fail "the echo failed"; }
cat "$TMP/client"
ctl a '{"cmd":"quit"}'
wait_vm a 0
grep -q FAILED "$TMP/a.out" && { cat "$TMP/a.out"; fail "a job failed"; }
pass "40 datagrams of 1-1400 bytes echoed through a forwarded UDP port"

rc=0
"$CAIRN" run --kernel "$TESTOS" --net "user,hostfwd=udp::$port-:7" \
  --cmdline "udpecho 7 1; exit 0" </dev/null >"$TMP/out" 2>&1 &
pid=$!
wait_for "$TMP/out" "udpecho port=7 ready" 20 || { kill $pid; fail "udpecho did not start"; }
python3 "$here/udp_client.py" "$port" 1 once >"$TMP/client" 2>&1 ||
  { cat "$TMP/client"; kill $pid; cat "$TMP/out"; fail "the echo failed"; }
timeout 30 tail --pid=$pid -f /dev/null
wait $pid || rc=$?
[ "$rc" = 0 ] || { cat "$TMP/out"; fail "cairn exited $rc"; }
grep -q "udpecho port=7 n=1 done" "$TMP/out" || { cat "$TMP/out"; fail "udpecho did not finish"; }
pass "udpecho 1 ends after one datagram"

# A port nobody forwards gets nothing back: the echo is the guest's.
other=$(python3 "$here/free_port.py")
"$CAIRN" run --kernel "$TESTOS" --net "user,hostfwd=udp::$port-:9" \
  --cmdline "udpecho 7 1; exit 0" </dev/null >"$TMP/out2" 2>&1 &
pid=$!
wait_for "$TMP/out2" "udpecho port=7 ready" 20 || { kill $pid; fail "udpecho did not start"; }
if python3 "$here/udp_client.py" "$port" 1 wrongport >"$TMP/client2" 2>&1; then
  kill $pid; fail "a datagram for guest port 9 was echoed by a job on port 7"
fi
kill $pid; wait $pid 2>/dev/null
pass "a datagram to another guest port is not echoed"

# Bad --net options are usage errors; a forward to a port in use fails at start.
for bad in "tap" "user,hostfwd=udp::0-:7" "user,hostfwd=sctp::5-:7" "user,mac=01:00:00:00:00:01" \
           "user,bogus" "none,hostfwd=udp::5-:7"; do
  rc=0; "$CAIRN" run --kernel "$TESTOS" --net "$bad" </dev/null >"$TMP/bad" 2>&1 || rc=$?
  [ "$rc" = 2 ] || { cat "$TMP/bad"; fail "--net $bad: exit $rc, expected 2"; }
done
python3 -c "
import socket,subprocess,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',0))
p=s.getsockname()[1]
r=subprocess.run([sys.argv[1],'run','--kernel',sys.argv[2],'--net','user,hostfwd=udp::%d-:7'%p,
  '--cmdline','exit 0'],stdin=subprocess.DEVNULL,capture_output=True,text=True)
print(r.stderr.strip()); sys.exit(0 if r.returncode==1 and 'in use' in r.stderr else 1)
" "$CAIRN" "$TESTOS" || fail "a forward from a port in use was not refused"
pass "bad --net options refused"
