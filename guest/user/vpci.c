/* Modern virtio-pci transport set-up for the guest's drivers (vpci.h). */
#include "vpci.h"
#include "../layout.h"
#include "pci.h"
#include "ulib.h"

void vpci_find_caps(uint32_t bdf, struct vpci_caps *c)
{
	*c = (struct vpci_caps){0};
	uint32_t cmd = pci_r32(bdf, 4) & 0xffff;
	pci_w32(bdf, 4, cmd & ~0x2u); /* memory decoding off while BARs are checked */
	for (uint32_t p = pci_r32(bdf, 0x34) & 0xfc; p; p = (pci_r32(bdf, p) >> 8) & 0xfc) {
		uint32_t d0 = pci_r32(bdf, p);
		if ((d0 & 0xff) == 0x11 && !c->msix_cap)
			c->msix_cap = p;
		if ((d0 & 0xff) != 0x09)
			continue;
		uint8_t type = (uint8_t)(d0 >> 24);
		uint64_t base = pci_bar_addr(bdf, pci_r32(bdf, p + 4) & 0xff);
		uint64_t a = base ? base + pci_r32(bdf, p + 8) : 0;
		if (type == 1 && !c->common)
			c->common = a;
		else if (type == 2 && !c->notify) {
			c->notify = a;
			c->notify_mult = pci_r32(bdf, p + 16);
		} else if (type == 4 && !c->devcfg)
			c->devcfg = a;
	}
	if (c->msix_cap) {
		uint32_t t = pci_r32(bdf, c->msix_cap + 4);
		uint64_t base = pci_bar_addr(bdf, t & 7);
		c->msix_table = base ? base + (t & ~7u) : 0;
	}
	pci_w32(bdf, 4, cmd | 0x6); /* memory decoding and bus mastering */
}

void vpci_msix_enable(uint32_t bdf, const struct vpci_caps *c)
{
	mmio_w32(c->msix_table + 12, 1); /* masked while it is written */
	mmio_w32(c->msix_table + 8, VEC_DISK);
	mmio_w32(c->msix_table + 4, 0);
	mmio_w32(c->msix_table, 0xfee00000);
	mmio_w32(c->msix_table + 12, 0);
	uint32_t d0 = pci_r32(bdf, c->msix_cap);
	pci_w32(bdf, c->msix_cap, (d0 & ~(1u << 30)) | (1u << 31));
}

void vpci_msix_retarget(uint64_t entry, uint32_t apic)
{
	mmio_w32(entry + 12, 1); /* masked while it is written */
	mmio_w32(entry, 0xfee00000 | apic << 12);
	mmio_w32(entry + 12, 0);
}

const char *vpci_negotiate(uint64_t cc, uint32_t mask, uint32_t *offered)
{
	mmio_w8(cc + CC_STATUS, 0);
	for (int i = 0; i < 1000000 && mmio_r8(cc + CC_STATUS); i++)
		cpu_relax();
	mmio_w8(cc + CC_STATUS, 1);	/* ACKNOWLEDGE */
	mmio_w8(cc + CC_STATUS, 1 | 2); /* DRIVER */
	mmio_w32(cc + CC_DFSELECT, 0);
	uint32_t f0 = mmio_r32(cc + CC_DF);
	mmio_w32(cc + CC_DFSELECT, 1);
	if (!(mmio_r32(cc + CC_DF) & 1))
		return "device lacks VIRTIO_F_VERSION_1";
	*offered = f0;
	mmio_w32(cc + CC_GFSELECT, 0);
	mmio_w32(cc + CC_GF, f0 & mask);
	mmio_w32(cc + CC_GFSELECT, 1);
	mmio_w32(cc + CC_GF, 1);	    /* VERSION_1 */
	mmio_w8(cc + CC_STATUS, 1 | 2 | 8); /* FEATURES_OK */
	if (!(mmio_r8(cc + CC_STATUS) & 8))
		return "device refused our features";
	return 0;
}

uint16_t vpci_queue_size(uint64_t cc, uint16_t q, uint16_t max)
{
	mmio_w16(cc + CC_QSELECT, q);
	uint16_t qmax = mmio_r16(cc + CC_QSIZE), qs = 1;
	while (qs * 2 <= qmax && qs * 2 <= max)
		qs *= 2;
	return qs;
}

void vpci_queue_addrs(uint64_t cc, uint64_t desc, uint64_t avail, uint64_t used)
{
	mmio_w32(cc + CC_QDESC, (uint32_t)desc);
	mmio_w32(cc + CC_QDESC + 4, (uint32_t)(desc >> 32));
	mmio_w32(cc + CC_QDRIVER, (uint32_t)avail);
	mmio_w32(cc + CC_QDRIVER + 4, (uint32_t)(avail >> 32));
	mmio_w32(cc + CC_QDEVICE, (uint32_t)used);
	mmio_w32(cc + CC_QDEVICE + 4, (uint32_t)(used >> 32));
}
