/* Minimal ACPI tables (hardware-reduced): RSDP, XSDT, FADT, a DSDT with the
 * PCI root bridge (and its INTx routing), COM1 and the VM generation ID
 * device with the GED that signals its changes, and the MADT, so guests
 * that only know ACPI (Debian's cloud kernel has no MP-table support) find
 * their CPUs, the IOAPIC, PCI and the serial port. */
#ifndef CAIRN_ARCH_X86_ACPI_H
#define CAIRN_ARCH_X86_ACPI_H

#include "arch/x86/mptable.h"

#include <stdint.h>

struct vm;

/* Writes the tables below 1 MiB; returns the RSDP's guest address in
 * *rsdp (also found by the standard scan of 0xe0000-0xfffff).  PCI: the
 * INTx routing of the devices on bus 0 (the same as the MP table's).
 * VMGENID: the generation ID's guest address (devices/vmgenid.h), 0 for
 * none; its GED interrupt is VMGENID_GSI. */
int x86_acpi_write(struct vm *vm, int ncpus, const struct mp_pci_irq *pci, unsigned npci,
		   uint64_t vmgenid, uint64_t *rsdp);

#endif
