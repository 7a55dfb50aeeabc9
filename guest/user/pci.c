/* PCI configuration mechanism #1 from user mode (through the kernel's port
 * system calls) and BAR placement for the virtio drivers. */
#include "pci.h"
#include "ulib.h"

static uint64_t pci_top = 0xfec00000; /* BARs left unassigned get space below this */
static int assigned;

uint32_t pci_r32(uint32_t bdf, uint32_t off)
{
	outl(0xcf8, 0x80000000u | bdf << 8 | (off & 0xfc));
	return inl(0xcfc);
}

void pci_w32(uint32_t bdf, uint32_t off, uint32_t v)
{
	outl(0xcf8, 0x80000000u | bdf << 8 | (off & 0xfc));
	outl(0xcfc, v);
}

static int pci_scanned;

static void pci_scan_window(void)
{
	pci_scanned = 1;
	for (uint32_t dev = 0; dev < 32; dev++) {
		for (uint32_t fn = 0; fn < 8; fn++) {
			uint32_t bdf = dev << 3 | fn;
			if ((pci_r32(bdf, 0) & 0xffff) == 0xffff) {
				if (!fn)
					break;
				continue;
			}
			uint32_t n = ((pci_r32(bdf, 0xc) >> 16) & 0x7f) == 0 ? 6 : 2;
			for (uint32_t b = 0; b < n; b++) {
				uint32_t v = pci_r32(bdf, 0x10 + 4 * b);
				uint64_t a = v & ~0xfull;
				if (v & 1)
					continue;
				if (((v >> 1) & 3) == 2)
					a |= (uint64_t)pci_r32(bdf, 0x10 + 4 * ++b) << 32;
				if (a >= 0xc0000000 && a < pci_top && v != 0xffffffff)
					pci_top = a;
			}
			if (!fn && !(pci_r32(bdf, 0xc) & 0x800000))
				break; /* not multi-function */
		}
	}
}

uint64_t pci_bar_addr(uint32_t bdf, unsigned bar)
{
	uint32_t off = 0x10 + 4 * bar, lo = pci_r32(bdf, off);
	if (bar > 5 || (lo & 1))
		return 0;
	int is64 = ((lo >> 1) & 3) == 2;
	uint64_t a = lo & ~0xfull;
	if (is64)
		a |= (uint64_t)pci_r32(bdf, off + 4) << 32;
	if (a)
		return a;
	/* no firmware assigned it: size it and take space from the top of the window,
	   below every memory BAR already placed there */
	if (!pci_scanned)
		pci_scan_window();
	pci_w32(bdf, off, 0xffffffff);
	uint64_t mask = pci_r32(bdf, off) & ~0xfull;
	if (is64) {
		pci_w32(bdf, off + 4, 0xffffffff);
		mask |= (uint64_t)pci_r32(bdf, off + 4) << 32;
	} else {
		mask |= 0xffffffff00000000ull;
	}
	uint64_t size = ~mask + 1;
	if (!size || size > 0x10000000)
		return 0;
	a = (pci_top - size) & ~(size - 1);
	pci_top = a;
	assigned = 1;
	pci_w32(bdf, off, (uint32_t)a | (lo & 0xf));
	if (is64)
		pci_w32(bdf, off + 4, (uint32_t)(a >> 32));
	return a;
}

int pci_bars_assigned(void)
{
	return assigned;
}
