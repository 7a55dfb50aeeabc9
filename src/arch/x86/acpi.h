/* Minimal ACPI tables (hardware-reduced): RSDP, XSDT, FADT, an empty DSDT
 * and the MADT, so guests that only know ACPI (Debian's cloud kernel has
 * no MP-table support) find their CPUs and the IOAPIC. */
#ifndef CAIRN_ARCH_X86_ACPI_H
#define CAIRN_ARCH_X86_ACPI_H

#include <stdint.h>

struct vm;

/* Writes the tables below 1 MiB; returns the RSDP's guest address in
 * *rsdp (also found by the standard scan of 0xe0000-0xfffff). */
int x86_acpi_write(struct vm *vm, int ncpus, uint64_t *rsdp);

#endif
