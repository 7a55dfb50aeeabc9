/* VM Generation ID (Microsoft's "Virtual Machine Generation ID"
 * specification, as QEMU documents it in docs/specs/vmgenid.rst): 16 bytes
 * in reserved guest RAM that change whenever the machine may have been
 * duplicated.  The ACPI device that tells the guest where they are, and
 * the Generic Event Device whose interrupt makes the guest look again, are
 * in the DSDT (arch/x86/acpi.c).
 *
 * A new ID is written, then the interrupt raised, by the device's
 * `restored` hook (devices/device.h), which vm_snapshot_loaded() runs after
 * every restore of machine state: a new process restoring a snapshot (so
 * every clone resume), and every in-place revert. */
#ifndef CAIRN_DEVICES_VMGENID_H
#define CAIRN_DEVICES_VMGENID_H

#include <stdint.h>

struct vm;
struct devices_config;

#define VMGENID_LEN 16

int vmgenid_init(struct vm *vm, const struct devices_config *cfg);

#endif
