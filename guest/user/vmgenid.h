/* The VM generation ID, found the way an OS finds it: RSDP -> XSDT (or
 * RSDT) -> FADT -> DSDT, the device whose _HID is "VMGENCTR", its ADDR
 * package, then the 16 bytes there. */
#ifndef GUEST_VMGENID_H
#define GUEST_VMGENID_H

/* Prints "cpuN: vmgenid addr=0x... id=32 hex digits", or "vmgenid FAILED
   (reason)"; 0 when found. */
int vmgenid_print(void);

#endif
