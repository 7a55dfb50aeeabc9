/* The VM generation ID, found the way an OS finds it: RSDP -> XSDT (or
 * RSDT) -> FADT -> DSDT, the device whose _CID is "VM_GEN_COUNTER", its ADDR
 * package, then the 16 bytes there. */
#ifndef GUEST_VMGENID_H
#define GUEST_VMGENID_H

/* Prints "cpuN: vmgenid addr=0x... id=32 hex digits", or "vmgenid FAILED
   (reason)"; 0 when found.  DUMP_DSDT: first the DSDT, as "dsdt OFFSET
   HEX" lines of 32 bytes (`vmgenid dsdt`, for iasl on the host). */
int vmgenid_print(int dump_dsdt);

#endif
