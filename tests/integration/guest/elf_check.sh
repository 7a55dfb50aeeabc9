# testos.elf keeps to what PVM's instruction emulator can run (docs/guest.md):
# no SSE/AVX/x87, int3, popcnt, XSAVE family, cmpxchg16b or SMAP instructions
# anywhere but in kernel_cpl0check (the `cpl0check` job, which runs them on
# purpose), and it carries the PVH entry note (Xen, type 18) pointing at 1 MiB.
. "$SRCDIR/tests/integration/lib.sh"
need_testos
command -v objdump >/dev/null && command -v readelf >/dev/null || {
  echo "SKIP: binutils (objdump, readelf) not installed"; exit 77; }

objdump -d --no-show-raw-insn "$TESTOS" >"$TMP/dis" || fail "objdump failed"
# the 16-bit trampoline disassembles as 64-bit garbage: skip it; and
# kernel_cpl0check up to the next function
awk '/<tramp_start>:/ { skip = 1 } /<gdt>:|<tramp_end>:/ { skip = 0 }
     /^[0-9a-f]+ <[^>]+>:$/ { cpl0 = ($0 ~ /<kernel_cpl0check>:/) }
     !skip && !cpl0' "$TMP/dis" >"$TMP/dis2"
grep -q "<kernel_cpl0check>:" "$TMP/dis" || fail "no kernel_cpl0check in testos.elf"
bad=$(awk -F'\t' 'NF >= 2 { print $2 }' "$TMP/dis2" |
  grep -E '^(int3|popcnt|xsave|xrstor|cmpxchg16b|clac|stac|fwait|wait |f[a-z0-9]+( |$)|vzeroupper|ldmxcsr|stmxcsr|fxsave|fxrstor)|%[xyz]mm|%st' | sort | uniq -c)
[ -z "$bad" ] || fail "instructions PVM's emulator refuses, or FPU/SSE use: $bad"
pass "no SSE/x87/int3/popcnt/xsave/cmpxchg16b/clac/stac"

readelf -nW "$TESTOS" >"$TMP/notes"
grep -qE 'Xen +0x00000004.*0x00000012|Xen +0x00000004.*PHYS32_ENTRY' "$TMP/notes" || { cat "$TMP/notes"; fail "no PVH note"; }
grep -q 'description data: 00 00 10 00' "$TMP/notes" || { cat "$TMP/notes"; fail "PVH entry is not 0x100000"; }
readelf -lW "$TESTOS" | grep -q 'NOTE' || fail "no PT_NOTE segment"
pass "PVH entry note present (entry 0x100000, PT_NOTE)"
