#!/bin/bash
# The DSDT cairn writes, as the test guest finds it in its memory (RSDP ->
# XSDT -> FADT -> DSDT; `vmgenid dsdt` prints it in hex), disassembled by
# ACPICA's iasl and compiled back without errors or warnings: the VM
# generation ID device (_CID VM_GEN_COUNTER, ADDR package) and the GED whose
# interrupt notifies it are there in the shape Linux's drivers expect.
. "$SRCDIR/tests/integration/lib.sh"
need_kvm
need_testos
command -v iasl >/dev/null || fail "iasl (Debian acpica-tools, scripts/install-deps.sh) is not installed"

timeout 30 "$CAIRN" run --kernel "$TESTOS" --mem 64M --cmdline "vmgenid dsdt; exit 0" \
  </dev/null >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "guest run failed"; }
addr=$(tr -d '\r' <"$TMP/out" | sed -n 's/^cpu0: vmgenid addr=\(0x[0-9a-f]*\) id=.*/\1/p')
[ -n "$addr" ] || { cat "$TMP/out"; fail "the guest did not find the generation ID"; }
tr -d '\r' <"$TMP/out" | sed -n 's/^cpu0: dsdt [0-9a-f]\{4\} //p' |
  python3 -c 'import sys; open(sys.argv[1], "wb").write(bytes.fromhex("".join(sys.stdin.read().split())))' \
    "$TMP/dsdt.dat" || fail "no DSDT dump"
cd "$TMP" || fail "cd"
iasl -d dsdt.dat >iasl-d.log 2>&1 || { cat iasl-d.log; fail "iasl -d failed"; }
dsl=dsdt.dsl
for want in 'Device (VGEN)' 'Name (_CID, "VM_GEN_COUNTER")' 'Name (ADDR, Package (0x02)' \
  'Device (GED0)' 'Name (_HID, "ACPI0013"' 'Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive' \
  'Method (_EVT, 1' 'Notify (\_SB.VGEN, 0x80)' 'Device (PCI0)' 'Device (COM1)'; do
  grep -qF -- "$want" "$dsl" || { cat "$dsl"; fail "disassembly lacks: $want"; }
done
# ADDR's two elements are the address the guest used; the GED's GSI is 5
lo=$(sed -n '/Name (ADDR/,/})/p' "$dsl" | grep -o '0x[0-9A-F]\{8\}' | head -n 1)
[ "$((lo))" = "$((addr))" ] || fail "ADDR low word $lo, the guest read $addr"
sed -n '/Interrupt (ResourceConsumer/,/}/p' "$dsl" | grep -q '0x00000005' || fail "GED not on GSI 5"
iasl -p recompiled "$dsl" >iasl-c.log 2>&1 || { cat iasl-c.log; fail "the disassembly does not compile back"; }
grep -q 'Compilation successful. 0 Errors, 0 Warnings' iasl-c.log || { cat iasl-c.log; fail "iasl warnings"; }
pass "iasl disassembles the DSDT the guest sees and compiles it back with no errors or warnings; VGEN's ADDR = $addr, GED on GSI 5"
