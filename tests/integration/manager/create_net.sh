#!/bin/bash
# cairn create gives a bundle one user-mode NIC by default (a network
# without root): the test guest pings the slirp gateway; --net none gives
# none; --net SPEC is checked as cairn run checks it; info shows the NICs.
. "$SRCDIR/tests/integration/manager/lib_mgr.sh"
need_kvm; need_testos
C=$CAIRN

mk net --disk-size 16M --cmdline "echo up; shell"
"$C" info "$TMP/net" --json >"$TMP/info.json" || fail "info"
python3 - "$TMP/info.json" <<'PY' || fail "default NIC in vm.json: $(cat "$TMP/info.json")"
import json, re, sys
n = json.load(open(sys.argv[1]))["config"]["nics"]
assert len(n) == 1 and n[0]["backend"] == "user", n
assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", n[0]["mac"]), n
PY
"$C" info "$TMP/net" | grep -q "^nic 0: *user, mac 52:54:00:" || fail "info: $("$C" info "$TMP/net")"
up net
con net "ping 10.0.2.2 2" "ping 10.0.2.2 sent=2 received=2"
mac=$(python3 -c "import json; print(json.load(open('$TMP/info.json'))['config']['nics'][0]['mac'])")
grep -q "virtio-net 00:02.0 mac=$mac" "$TMP/net/console.log" || fail "the guest's NIC has another MAC than vm.json's $mac"
"$C" stop "$TMP/net" >/dev/null
pass "a created bundle has a user-mode NIC ($mac): the guest pings the gateway"

mk nonet --disk-size 16M --cmdline "echo up; shell" --net none
grep -q '"nics"' "$TMP/nonet/vm.json" && fail "--net none recorded a NIC"
"$C" info "$TMP/nonet" | grep -q "^nic: *none" || fail "info of --net none"
up nonet
con nonet "ping 10.0.2.2" "ping FAILED \(no virtio-net PCI device"
con nonet "diskfill 5 1" "seed=1 ok"
"$C" stop "$TMP/nonet" >/dev/null
pass "--net none: no NIC"

mk two --disk-size 16M --net user --net user,mac=52:54:00:aa:bb:cc
python3 - "$TMP/two/vm.json" <<'PY' || fail "two NICs: $(cat "$TMP/two/vm.json")"
import json, sys
n = json.load(open(sys.argv[1]))["config"]["nics"]
assert [x["backend"] for x in n] == ["user", "user,mac=52:54:00:aa:bb:cc"], n
assert n[1]["mac"] == "52:54:00:aa:bb:cc" and n[0]["mac"] != n[1]["mac"], n
PY
rc=0; "$C" create "$TMP/bad" --kernel "$TESTOS" --disk-size 16M --net bogus 2>"$TMP/err" || rc=$?
[ $rc = 2 ] && [ ! -e "$TMP/bad" ] || fail "--net bogus: exit $rc, $(cat "$TMP/err")"
rc=0; "$C" create "$TMP/bad" --kernel "$TESTOS" --disk-size 16M --net none --net user 2>"$TMP/err" || rc=$?
[ $rc = 2 ] && [ ! -e "$TMP/bad" ] || fail "--net none --net user: exit $rc"
pass "--net SPEC repeatable with mac=; a bad spec is a usage error and makes nothing"
