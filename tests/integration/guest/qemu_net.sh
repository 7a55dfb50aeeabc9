# The guest's virtio-net driver and IPv4 stack against QEMU's virtio-net-pci
# and user-mode networking (q35, the device modern-only, no option ROM): an
# independent check of what tests/integration/net/ run under cairn.
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/guest/qemu_lib.sh"
here="$SRCDIR/tests/integration/net"

port=$(python3 "$here/free_port.py")
nic=(-netdev "user,id=n0,hostfwd=udp::$port-:7" -device virtio-net-pci,netdev=n0,disable-legacy=on,romfile=)
start_qemu q35 "$TMP/a.log" "ping 10.0.2.2 2; udpecho 7" "${nic[@]}"
wait_for "$TMP/a.log" "udpecho port=7 ready" 50 || { kill $QPID; cat "$TMP/a.log.err"; fail "udpecho did not start"; }
python3 "$here/udp_client.py" "$port" 10 qemu >"$TMP/client" || { cat "$TMP/client" "$TMP/a.log"; kill $QPID; fail "echo through QEMU's user-mode network"; }
cat "$TMP/client"
kill $QPID; wait $QPID 2>/dev/null
tr -d '\r' <"$TMP/a.log" >"$TMP/a.log.txt"
expect "$TMP/a.log" "cpu0: virtio-net 00:0[0-9a-f]\.0 mac=52:54:00:12:34:56 queue=[0-9]+ msix=yes mrg_rxbuf=yes link=up announce=yes offered=[0-9a-f]+"
expect "$TMP/a.log" "cpu0: ping 10.0.2.2 sent=2 received=2"
grep -q FAILED "$TMP/a.log.txt" && { cat "$TMP/a.log.txt"; fail "a job failed"; }
pass "QEMU: ping of the gateway, 10 datagrams echoed"
