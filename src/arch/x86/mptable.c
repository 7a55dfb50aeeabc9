#include "arch/x86/mptable.h"
#include "arch/x86/layout.h"
#include "kvm/vm.h"
#include "util/err.h"

#include <errno.h>
#include <string.h>

#define MP_BUS_PCI 0
#define MP_BUS_ISA 1
#define MP_IRQ_FLAGS_PCI 0x0f /* level, active low */

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;
	while (len--)
		s += *p++;
	return (uint8_t)-s;
}

static uint8_t *mp_put(uint8_t *p, const void *v, size_t len)
{
	memcpy(p, v, len);
	return p + len;
}

static uint8_t *mp_irq(uint8_t *p, uint8_t type, uint16_t flags, uint8_t bus, uint8_t busirq,
		       uint8_t apic, uint8_t pin)
{
	uint8_t e[8] = {type, 0, (uint8_t)flags, (uint8_t)(flags >> 8), bus, busirq, apic, pin};
	return mp_put(p, e, 8);
}

int x86_mptable_write(struct vm *vm, int ncpus, const struct mp_pci_irq *pci, unsigned npci)
{
	const size_t max = 0x10000;
	uint8_t *base = vm_gpa_to_hva(vm, MPTABLE_ADDR, max);
	if (!base)
		return err_set(ENOMEM, "no guest memory for the MP table");
	memset(base, 0, max);
	uint8_t *fp = base, *cfg = base + 16, *p = cfg + 44;
	uint16_t count = 0;
	const uint8_t ioapic_id = (uint8_t)ncpus;

	for (int i = 0; i < ncpus; i++) {
		uint8_t e[20] = {0, (uint8_t)i, 0x14, (uint8_t)(1 | (i == 0 ? 2 : 0))};
		const uint32_t sig = 0x600, feat = 0x201; /* FPU, APIC */
		memcpy(e + 4, &sig, 4);
		memcpy(e + 8, &feat, 4);
		p = mp_put(p, e, 20);
		count++;
	}
	const uint8_t bus_pci[8] = {1, MP_BUS_PCI, 'P', 'C', 'I', ' ', ' ', ' '};
	const uint8_t bus_isa[8] = {1, MP_BUS_ISA, 'I', 'S', 'A', ' ', ' ', ' '};
	p = mp_put(p, bus_pci, 8);
	p = mp_put(p, bus_isa, 8);
	uint8_t ioapic[8] = {2, ioapic_id, 0x11, 1};
	const uint32_t ioapic_addr = (uint32_t)IOAPIC_ADDR;
	memcpy(ioapic + 4, &ioapic_addr, 4);
	p = mp_put(p, ioapic, 8);
	count += 3;
	/* ISA IRQ n is IOAPIC pin n, as KVM routes GSIs by default. */
	for (uint8_t irq = 0; irq < 16; irq++, count++)
		p = mp_irq(p, 3, 0, MP_BUS_ISA, irq, ioapic_id, irq);
	for (unsigned i = 0; i < npci; i++, count++)
		p = mp_irq(p, 3, MP_IRQ_FLAGS_PCI, MP_BUS_PCI,
			   (uint8_t)(pci[i].slot << 2 | (pci[i].pin - 1)), ioapic_id, pci[i].irq);
	p = mp_irq(p, 4, 0, MP_BUS_ISA, 0, 0xff, 0); /* ExtINT on LINT0 */
	p = mp_irq(p, 4, 0, MP_BUS_ISA, 0, 0xff, 1); /* NMI on LINT1 */
	count += 2;
	if ((size_t)(p - base) > max)
		return err_set(E2BIG, "MP table too large");

	uint16_t len = (uint16_t)(p - cfg);
	uint32_t lapic = (uint32_t)LAPIC_ADDR;
	memcpy(cfg, "PCMP", 4);
	memcpy(cfg + 4, &len, 2);
	cfg[6] = 4;
	memcpy(cfg + 8, "CAIRN   ", 8);
	memcpy(cfg + 16, "KVM MACHINE ", 12);
	memcpy(cfg + 34, &count, 2);
	memcpy(cfg + 36, &lapic, 4);
	cfg[7] = mp_checksum(cfg, len);

	uint32_t cfg_addr = (uint32_t)MPTABLE_ADDR + 16;
	memcpy(fp, "_MP_", 4);
	memcpy(fp + 4, &cfg_addr, 4);
	fp[8] = 1;
	fp[9] = 4;
	fp[10] = mp_checksum(fp, 16);
	return 0;
}
