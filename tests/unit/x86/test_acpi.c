/* The ACPI tables cairn writes into guest memory: every table's checksum,
 * RSDP -> XSDT -> FADT/MADT -> DSDT links, the MADT's processors, and a walk
 * of the DSDT's AML that finds PCI0 (with one _PRT entry per PCI device,
 * pointing at the GSI the MP table names) and COM1 (IRQ 4), for 0, 3 and 31
 * devices and 1 to 200 vCPUs; and the VM generation ID's device (its ADDR
 * package) with the GED that notifies it, present only when asked for.  The AML was also checked once by hand with
 * `iasl -d` (acpica-tools); this test keeps the shape from drifting. */
#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "kvm/vm.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RAM (2u << 20)

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

/* A table at GPA: its signature and a zero checksum over its length. */
static const uint8_t *table(const uint8_t *ram, uint64_t gpa, const char *sig)
{
	CHECK(gpa > 0 && gpa + 36 < RAM);
	if (!(gpa > 0 && gpa + 36 < RAM))
		return NULL;
	const uint8_t *t = ram + gpa;
	CHECK(!memcmp(t, sig, 4));
	uint32_t len = rd32(t + 4);
	CHECK(len >= 36 && gpa + len <= RAM);
	CHECK_EQ(sum(t, len), 0);
	return t;
}

/* PkgLength at P: the length it encodes, and how many bytes it takes. */
static size_t pkg_len(const uint8_t *p, size_t *bytes)
{
	unsigned follow = p[0] >> 6;
	size_t n = follow ? p[0] & 0x0f : p[0] & 0x3f;
	for (unsigned i = 0; i < follow; i++)
		n |= (size_t)p[1 + i] << (follow ? 4 + 8 * i : 0);
	*bytes = 1 + follow;
	return n;
}

/* The first occurrence of a 4-byte name in [p, p + n), or NULL. */
static const uint8_t *find(const uint8_t *p, size_t n, const char *name)
{
	for (size_t i = 0; i + 4 <= n; i++)
		if (!memcmp(p + i, name, 4))
			return p + i;
	return NULL;
}

static void check_prt(const uint8_t *aml, size_t n, const struct mp_pci_irq *pci, unsigned npci)
{
	const uint8_t *prt = find(aml, n, "_PRT");
	if (!npci) {
		CHECK(prt == NULL);
		return;
	}
	CHECK(prt != NULL);
	if (!prt)
		return;
	CHECK_EQ(prt[-1], 0x08); /* NameOp */
	CHECK_EQ(prt[4], 0x12);  /* PackageOp */
	size_t lb, len = pkg_len(prt + 5, &lb);
	const uint8_t *p = prt + 5 + lb, *end = prt + 5 + len;
	CHECK(end <= aml + n);
	CHECK_EQ(*p++, npci);
	for (unsigned i = 0; i < npci && p < end; i++) {
		CHECK_EQ(p[0], 0x12);
		size_t elb, elen = pkg_len(p + 1, &elb);
		const uint8_t *e = p + 1 + elb;
		CHECK_EQ(e[0], 4);    /* four elements */
		CHECK_EQ(e[1], 0x0c); /* DWord address */
		CHECK_EQ(rd32(e + 2), (uint32_t)pci[i].slot << 16 | 0xffff);
		CHECK_EQ(e[6], 0x0a);
		CHECK_EQ(e[7], pci[i].pin - 1);
		CHECK_EQ(e[8], 0x00); /* no link device */
		CHECK_EQ(e[9], 0x0a);
		CHECK_EQ(e[10], pci[i].irq);
		p += 1 + elen;
	}
	CHECK(p == end);
}

/* VGEN's ADDR package holds GPA, the GED's _CRS names VMGENID_GSI and its
 * _EVT notifies VGEN; without a generation ID neither device is there. */
static void check_vmgenid(const uint8_t *aml, size_t n, uint64_t gpa)
{
	const uint8_t *vgen = find(aml, n, "VGEN"), *ged = find(aml, n, "GED0");
	if (!gpa) {
		CHECK(vgen == NULL && ged == NULL);
		return;
	}
	CHECK(vgen && ged);
	static const uint8_t cid[] = "\x08_CID\x0dVM_GEN_COUNTER";
	const uint8_t *c = NULL;
	for (size_t i = 0; i + sizeof(cid) <= n && !c; i++)
		if (!memcmp(aml + i, cid, sizeof(cid))) /* the ASCIIZ's 0 included */
			c = aml + i;
	CHECK(c != NULL);
	const uint8_t *addr = find(aml, n, "ADDR");
	CHECK(addr && addr[-1] == 0x08 && addr[4] == 0x12);
	if (addr) {
		CHECK_EQ(addr[6], 2);	 /* two elements */
		CHECK_EQ(addr[7], 0x0c); /* DWord: low half */
		CHECK_EQ(rd32(addr + 8), (uint32_t)gpa);
		CHECK_EQ(addr[12], 0x0c);
		CHECK_EQ(rd32(addr + 13), (uint32_t)(gpa >> 32));
	}
	/* Extended Interrupt: consumer, edge, active high, exclusive, one GSI */
	static const uint8_t irq[] = {0x89, 0x06, 0x00, 0x03, 0x01, VMGENID_GSI, 0, 0, 0};
	int found = 0;
	for (size_t i = 0; i + sizeof(irq) <= n; i++)
		found |= !memcmp(aml + i, irq, sizeof(irq));
	CHECK(found);
	static const uint8_t notify[] = {0x86, 0x5c, 0x2e, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', 0x0a, 0x80};
	found = 0;
	for (size_t i = 0; i + sizeof(notify) <= n; i++)
		found |= !memcmp(aml + i, notify, sizeof(notify));
	CHECK(found);
}

static void check_tables(int ncpus, const struct mp_pci_irq *pci, unsigned npci, uint64_t vmgenid)
{
	struct vm vm;
	memset(&vm, 0, sizeof(vm));
	vm.ram_size = RAM;
	vm.ram = calloc(1, RAM);
	vm.nslots = 1;
	vm.slots[0] = (struct vm_mem_slot){0, 0, RAM, vm.ram};
	uint64_t rsdp = 0;
	CHECK_EQ(x86_acpi_write(&vm, ncpus, pci, npci, vmgenid, &rsdp), 0);
	const uint8_t *r = vm.ram + rsdp;
	CHECK(!memcmp(r, "RSD PTR ", 8));
	CHECK_EQ(sum(r, 20), 0);
	CHECK_EQ(sum(r, 36), 0);
	const uint8_t *xsdt = table(vm.ram, rd64(r + 24), "XSDT");
	const uint8_t *fadt = NULL, *madt = NULL;
	if (xsdt) {
		uint32_t n = (rd32(xsdt + 4) - 36) / 8;
		CHECK_EQ(n, 2);
		for (uint32_t i = 0; i < n; i++) {
			uint64_t a = rd64(xsdt + 36 + 8 * i);
			if (!memcmp(vm.ram + a, "FACP", 4))
				fadt = table(vm.ram, a, "FACP");
			else
				madt = table(vm.ram, a, "APIC");
		}
	}
	CHECK(fadt && madt);
	if (madt) { /* one enabled LAPIC entry per vCPU, then the IOAPIC */
		const uint8_t *p = madt + 44, *end = madt + rd32(madt + 4);
		int cpus = 0, ioapics = 0;
		for (; p + 2 <= end && p[1] >= 2; p += p[1]) {
			if (p[0] == 0)
				CHECK_EQ(p[3], cpus++);
			ioapics += p[0] == 1;
		}
		CHECK(p == end);
		CHECK_EQ(cpus, ncpus);
		CHECK_EQ(ioapics, 1);
	}
	const uint8_t *dsdt = fadt ? table(vm.ram, rd64(fadt + 140), "DSDT") : NULL;
	if (dsdt) {
		CHECK_EQ(rd32(fadt + 40), rd64(fadt + 140));
		const uint8_t *aml = dsdt + 36;
		size_t n = rd32(dsdt + 4) - 36;
		const uint8_t *com1 = find(aml, n, "COM1"), *pci0 = find(aml, n, "PCI0");
		CHECK(com1 && pci0);
		/* COM1: _HID PNP0501, IO 0x3f8, IRQ mask with bit 4 */
		CHECK(find(aml, n, "\x41\xd0\x05\x01") != NULL);
		static const uint8_t io[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,
					     0x22, 0x10, 0x00};
		int found = 0;
		for (size_t i = 0; i + sizeof(io) <= n; i++)
			found |= !memcmp(aml + i, io, sizeof(io));
		CHECK(found);
		check_prt(aml, n, pci, npci);
		check_vmgenid(aml, n, vmgenid);
	}
	free(vm.ram);
}

int main(void)
{
	struct mp_pci_irq pci[31];
	for (unsigned i = 0; i < 31; i++)
		pci[i] = (struct mp_pci_irq){(uint8_t)(i + 1), 1, (uint8_t)(16 + i % 8)};
	check_tables(1, pci, 0, 0);
	check_tables(2, pci, 3, VMGENID_ADDR);
	check_tables(4, pci, 1, 0);
	check_tables(200, pci, 31, VMGENID_ADDR);
	check_tables(3, pci, 5, 0x123456789000ULL);
	TEST_DONE();
}
