/* Intel MultiProcessor Specification 1.4 tables: how the guest learns of
 * its CPUs, the IOAPIC and interrupt routing without ACPI. */
#ifndef CAIRN_ARCH_X86_MPTABLE_H
#define CAIRN_ARCH_X86_MPTABLE_H

#include <stdint.h>

struct vm;

struct mp_pci_irq {
	uint8_t slot; /* device number on bus 0 */
	uint8_t pin;  /* 1 = INTA .. 4 = INTD */
	uint8_t irq;  /* IOAPIC pin */
};

int x86_mptable_write(struct vm *vm, int ncpus, const struct mp_pci_irq *pci, unsigned npci);

#endif
