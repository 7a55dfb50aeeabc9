#!/bin/bash
# virtio-net on TAP devices, in a network namespace this test makes (root:
# CI runs as root; it talks only to addresses inside the namespace).  The
# host side of a TAP is 10.0.2.2/24, the test guest's gateway, so its fixed
# 10.0.2.15 works unchanged.
# - a missing TAP (cairn without CAP_NET_ADMIN) and a TUN device fail the
#   start with a message naming the interface; TAPs cairn creates (two
#   NICs) go when it exits, a persistent one stays;
# - UDP echo through tap0; snapshot; restore in a new process onto tap1
#   (another device, the same host-side MAC and address): echo again, and
#   the guest is asked to announce itself (it prints so and acknowledges);
#   a revert in place asks again;
# - tap1 deleted under the running VM: the link goes down, the VM lives.
. "$SRCDIR/tests/integration/net/lib_net.sh"

[ "$(id -u)" = 0 ] || fail "needs root (ip netns, TAP devices): CI runs as root"
command -v ip >/dev/null || fail "needs iproute2's ip"
NS=cairn-tap-$$
ip netns add "$NS" || fail "ip netns add $NS"
trap 'rc=$?; [ $rc = 0 ] && { no_ub || rc=1; }; snap_cleanup 2>/dev/null || rm -rf "$TMP";
      ip netns del "$NS" 2>/dev/null; exit $rc' EXIT
ip -n "$NS" link set lo up
HOSTMAC=02:00:00:00:00:02
# mk_tap NAME: a persistent TAP in the namespace, the guest's gateway.
mk_tap() {
  ip -n "$NS" tuntap add "$1" mode tap &&
    ip -n "$NS" link set "$1" address $HOSTMAC up &&
    ip -n "$NS" addr add 10.0.2.2/24 dev "$1" || fail "making TAP $1"
}
inns() { ip netns exec "$NS" "$@"; }
# cairn itself runs in the namespace (start_vm and ctl call $CAIRN)
REAL_CAIRN=$CAIRN
CAIRN=$TMP/cairn-in-ns
printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS" "$REAL_CAIRN" >"$CAIRN"
chmod +x "$CAIRN"

# ---- start-up errors ----
rc=0
inns setpriv --inh-caps -net_admin --bounding-set -net_admin "$REAL_CAIRN" run --kernel "$TESTOS" \
  --net tap=nosuch0 --cmdline "exit 0" </dev/null >"$TMP/missing" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "TAP nosuch0: no such interface" "$TMP/missing" ||
  { cat "$TMP/missing"; fail "missing TAP without CAP_NET_ADMIN: exit $rc"; }
grep -q "cairn-guest" "$TMP/missing" && fail "the VM started without its TAP"
ip -n "$NS" link show nosuch0 >/dev/null 2>&1 && fail "nosuch0 was created without CAP_NET_ADMIN"
ip -n "$NS" tuntap add tun9 mode tun || fail "making TUN tun9"
rc=0
inns "$REAL_CAIRN" run --kernel "$TESTOS" --net tap=tun9 --cmdline "exit 0" </dev/null \
  >"$TMP/tun" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "TAP tun9: not a TAP device" "$TMP/tun" ||
  { cat "$TMP/tun"; fail "a TUN device as a TAP: exit $rc"; }
pass "a missing TAP and a TUN device fail the start, naming the interface"

# ---- TAPs cairn creates go with it (two NICs) ----
start_vm m --kernel "$TESTOS" --net tap=made0 --net tap=made1,mac=52:54:00:00:00:77 \
  --cmdline "sleep 100000"
wait_for "$TMP/m.out" "cairn-guest: ready" 20 || fail "VM m did not start"
for t in made0 made1; do
  ip -n "$NS" link show $t >/dev/null 2>&1 || { cat "$TMP/m.out"; fail "$t was not created"; }
done
ctl m '{"cmd":"quit"}'
wait_vm m 0
for t in made0 made1; do
  ip -n "$NS" link show $t >/dev/null 2>&1 && fail "$t outlived cairn"
done
pass "two NICs on TAPs cairn created; they go when it exits"

# ---- echo, snapshot, restore onto another TAP ----
mk_tap tap0
start_vm a --kernel "$TESTOS" --net tap=tap0 --cmdline "udpecho 7"
wait_for "$TMP/a.out" "udpecho port=7 ready" 20 || fail "udpecho did not start"
# offered: MAC STATUS MRG_RXBUF CTRL_VQ CTRL_RX GUEST_ANNOUNCE and, with the
# TAP's vnet header, CSUM GUEST_CSUM GUEST_TSO4/6 GUEST_ECN HOST_TSO4/6 HOST_ECN
grep -qE "mac=52:54:00:12:34:56 .*link=up announce=yes offered=27bba3([^0-9a-f]|$)" "$TMP/a.out" ||
  { cat "$TMP/a.out"; fail "device line (features offered on a TAP)"; }
inns python3 "$here/udp_client.py" 10.0.2.15:7 20 tap0 >"$TMP/client" 2>&1 ||
  { cat "$TMP/client" "$TMP/a.out"; fail "echo through tap0"; }
cat "$TMP/client"
ctl a '{"cmd":"snapshot","path":"'"$TMP/snap"'","then":"quit"}'
wait_vm a 0
ip -n "$NS" link show tap0 >/dev/null 2>&1 || fail "the persistent tap0 was removed"
grep -q "virtio-net announce n=" "$TMP/a.out" && fail "an announce before any restore"
pass "UDP echo through tap0; a persistent TAP stays after cairn exits"

ip -n "$NS" link del tap0
mk_tap tap1
start_vm b --restore "$TMP/snap" --net tap=tap1
wait_for "$TMP/b.out" "virtio-net announce n=1 ack=0 status=1" 20 ||
  { cat "$TMP/b.out"; fail "no announce after the restore"; }
inns python3 "$here/udp_client.py" 10.0.2.15:7 20 tap1 >"$TMP/client" 2>&1 ||
  { cat "$TMP/client" "$TMP/b.out"; fail "echo through tap1 after the restore"; }
cat "$TMP/client"
grep -q "ready" "$TMP/b.out" && { cat "$TMP/b.out"; fail "the restored guest booted again"; }
pass "restored onto tap1: the guest announced itself (acknowledged), echo works"

ctl b '{"cmd":"revert","path":"'"$TMP/snap"'"}'
# the reverted guest counts from the snapshot's 0 again: a second n=1 line
announces() { grep -c 'virtio-net announce n=1 ack=0 status=1' "$TMP/b.out"; }
for ((i = 0; i < 200 && $(announces) < 2; i++)); do sleep 0.1; done
[ "$(announces)" = 2 ] || { cat "$TMP/b.out"; fail "no announce after the revert in place"; }
inns python3 "$here/udp_client.py" 10.0.2.15:7 5 reverted >"$TMP/client" 2>&1 ||
  { cat "$TMP/client" "$TMP/b.out"; ip -n "$NS" neigh; ip -n "$NS" -s link show tap1; fail "echo after the revert"; }
pass "a revert in place asks for an announce again"

# ---- the TAP vanishes under the running VM ----
ip -n "$NS" link del tap1
wait_for "$TMP/b.out" "TAP tap1: .*link is down" 10 || { cat "$TMP/b.out"; fail "no link-down"; }
ctl b '{"cmd":"status"}'
case "$REPLY_JSON" in *'"state":"running"'*) ;; *) fail "status after the TAP vanished: $REPLY_JSON" ;; esac
ctl b '{"cmd":"quit"}'
wait_vm b 0
pass "tap1 deleted at run time: link down, the VM ran on and quit cleanly"
