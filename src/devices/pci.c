#include "devices/pci.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "devices/device.h"
#include "kvm/vm.h"
#include "snapshot/state_buf.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PCI_MAX_SLOTS 32

struct pci_host {
	struct vm *vm;
	pthread_mutex_t lock;
	uint32_t conf_addr;
	struct pci_dev *slots[PCI_MAX_SLOTS];
	struct pci_dev bridge;
	uint64_t mmio_next; /* bump allocator for BARs */
};

static const struct device_ops pci_host_ops;

/* The host bridge (one per VM) is found on the VM's device list. */
static struct pci_host *pci_host_of(struct vm *vm)
{
	return device_find(vm, &pci_host_ops);
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(d->cfg, 0, sizeof(d->cfg));
	memset(d->wmask, 0, sizeof(d->wmask));
	put16(d->cfg + PCI_VENDOR_ID, vendor);
	put16(d->cfg + PCI_DEVICE_ID, device);
	d->cfg[PCI_REVISION] = revision;
	d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	d->cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	d->cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	put16(d->cfg + PCI_SUBSYS_VENDOR, subsys_vendor);
	put16(d->cfg + PCI_SUBSYS_ID, subsys_id);
	put16(d->wmask + PCI_COMMAND,
	      PCI_COMMAND_IO | PCI_COMMAND_MEM | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	d->wmask[PCI_INT_LINE] = 0xff;
	d->cap_next = 0x40;
}

int pci_add_cap(struct pci_dev *d, uint8_t id, const void *body, const void *wmask,
		unsigned len)
{
	unsigned off = d->cap_next;
	if (off + 2 + len > PCI_CFG_SIZE)
		return -ENOSPC;
	d->cfg[off] = id;
	d->cfg[off + 1] = d->cfg[PCI_CAP_PTR];
	memcpy(d->cfg + off + 2, body, len);
	if (wmask)
		memcpy(d->wmask + off + 2, wmask, len);
	d->cfg[PCI_CAP_PTR] = (uint8_t)off;
	d->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	d->cap_next = (uint8_t)((off + 2 + len + 3) & ~3u);
	return (int)off;
}

/* Map or unmap each BAR to match the command register and BAR values. */
static void pci_update_bars(struct pci_dev *d)
{
	bool mem_on = get32(d->cfg + PCI_COMMAND) & PCI_COMMAND_MEM;
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &d->bars[i];
		if (!b->size)
			continue;
		uint64_t want = get32(d->cfg + PCI_BAR0 + 4 * i) & ~0xfULL;
		/* While the guest sizes a BAR it holds all ones: not an address. */
		if (!mem_on || !want || want + b->size > PCI_MMIO_END || want < BIOS_END)
			want = 0;
		if (want == b->addr)
			continue;
		uint64_t old = b->addr;
		if (old)
			iobus_unregister(&d->vm->mmio, old, b->opaque);
		if (want && iobus_register(&d->vm->mmio, want, b->size, b->ops, b->opaque) < 0) {
			log_warn("PCI %02x.0: BAR%d at %#llx overlaps another device; not mapped",
				 d->slot, i, (unsigned long long)want);
			want = 0;
		}
		b->addr = want;
		if (b->moved)
			b->moved(d, i, old, want);
	}
}

static void pci_cfg_write(struct pci_dev *d, unsigned off, uint32_t val, unsigned len)
{
	for (unsigned i = 0; i < len && off + i < PCI_CFG_SIZE; i++) {
		uint8_t m = d->wmask[off + i];
		uint8_t v = (uint8_t)(val >> (8 * i));
		d->cfg[off + i] = (uint8_t)((d->cfg[off + i] & ~m) | (v & m));
	}
	if (off < PCI_BAR0 + 4 * PCI_NUM_BARS && off + len > PCI_COMMAND)
		pci_update_bars(d);
	if (d->cfg_written)
		d->cfg_written(d, off, len);
}

static struct pci_dev *pci_conf_target(struct pci_host *h, unsigned *reg)
{
	uint32_t a = h->conf_addr;
	if (!(a & 0x80000000u) || ((a >> 16) & 0xff) || ((a >> 8) & 7))
		return NULL; /* disabled, or not bus 0 function 0 */
	*reg = a & 0xfc;
	return h->slots[(a >> 11) & 0x1f];
}

static void pci_conf_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct pci_host *h = opaque;
	uint32_t v = 0xffffffff;
	pthread_mutex_lock(&h->lock);
	if (off < 4) {
		v = h->conf_addr >> (8 * off);
	} else {
		unsigned reg;
		struct pci_dev *d = pci_conf_target(h, &reg);
		unsigned o = reg + (unsigned)(off - 4);
		if (d && o + len <= PCI_CFG_SIZE)
			memcpy(&v, d->cfg + o, len);
	}
	pthread_mutex_unlock(&h->lock);
	memcpy(data, &v, len);
}

static void pci_conf_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct pci_host *h = opaque;
	uint32_t v = 0;
	memcpy(&v, data, len > 4 ? 4 : len);
	pthread_mutex_lock(&h->lock);
	if (off == 0 && len == 4) {
		h->conf_addr = v;
	} else if (off >= 4) {
		unsigned reg;
		struct pci_dev *d = pci_conf_target(h, &reg);
		if (d)
			pci_cfg_write(d, reg + (unsigned)(off - 4), v, len);
	}
	pthread_mutex_unlock(&h->lock);
}

static const struct io_ops pci_conf_io = {pci_conf_read, pci_conf_write};

/* Put D in the first free slot of H's bus. */
static int pci_host_add(struct pci_host *h, struct vm *vm, struct pci_dev *d)
{
	unsigned slot = 0;
	while (slot < PCI_MAX_SLOTS && h->slots[slot])
		slot++;
	if (slot == PCI_MAX_SLOTS)
		return err_set(ENOSPC, "no free PCI slot");
	d->vm = vm;
	d->slot = (uint8_t)slot;
	if (slot) {
		d->irq = (uint8_t)(PCI_IRQ_FIRST + (slot - 1) % (PCI_IRQ_LAST - PCI_IRQ_FIRST + 1));
		d->cfg[PCI_INT_LINE] = d->irq;
		d->cfg[PCI_INT_PIN] = 1;
	}
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &d->bars[i];
		if (!b->size)
			continue;
		uint64_t addr = (h->mmio_next + b->size - 1) & ~((uint64_t)b->size - 1);
		if (addr + b->size > PCI_MMIO_END)
			return err_set(ENOSPC, "PCI MMIO window full");
		h->mmio_next = addr + b->size;
		put32(d->cfg + PCI_BAR0 + 4 * i, (uint32_t)addr);
		put32(d->wmask + PCI_BAR0 + 4 * i, ~(b->size - 1) & ~0xfu);
	}
	/* Decoding on, as firmware leaves devices it assigned. */
	put16(d->cfg + PCI_COMMAND, PCI_COMMAND_MEM | PCI_COMMAND_MASTER);
	pthread_mutex_lock(&h->lock);
	h->slots[slot] = d;
	pci_update_bars(d);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

int pci_register(struct vm *vm, struct pci_dev *d)
{
	struct pci_host *h = pci_host_of(vm);
	if (!h)
		return err_set(ENODEV, "PCI device: no PCI host bridge");
	return pci_host_add(h, vm, d);
}

int pci_dev_snapshot(struct pci_dev *d, struct state_buf *sb)
{
	struct pci_host *h = pci_host_of(d->vm);
	pthread_mutex_lock(&h->lock);
	STATE_FIELD(sb, d->cfg);
	if (sb->restoring && !sb->err)
		pci_update_bars(d);
	pthread_mutex_unlock(&h->lock);
	return sb->err;
}

void pci_set_intx(struct pci_dev *d, int level)
{
	bool disabled = get32(d->cfg + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
	if (!d->irq)
		return; /* not on the bus yet */
	if (level)
		d->cfg[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
	else
		d->cfg[PCI_STATUS] &= (uint8_t)~PCI_STATUS_INTERRUPT;
	vm_irq_line(d->vm, d->irq, level && !disabled);
}

unsigned pci_irq_table(struct vm *vm, struct mp_pci_irq *out, unsigned max)
{
	struct pci_host *h = pci_host_of(vm);
	if (!h)
		return 0;
	unsigned n = 0;
	for (unsigned s = 1; s < PCI_MAX_SLOTS && n < max; s++)
		if (h->slots[s])
			out[n++] = (struct mp_pci_irq){(uint8_t)s, 1, h->slots[s]->irq};
	return n;
}

static void pci_host_destroy(void *priv)
{
	struct pci_host *h = priv;
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int pci_host_snapshot(void *priv, struct state_buf *sb)
{
	struct pci_host *h = priv;
	pthread_mutex_lock(&h->lock);
	STATE_FIELD(sb, h->conf_addr);
	pthread_mutex_unlock(&h->lock);
	return sb->err ? sb->err : pci_dev_snapshot(&h->bridge, sb);
}

static const struct device_ops pci_host_ops = {
	.name = "pci-host", .snapshot = pci_host_snapshot, .destroy = pci_host_destroy};

int pci_init(struct vm *vm, const struct devices_config *cfg)
{
	(void)cfg;
	struct pci_host *h = calloc(1, sizeof(*h));
	if (!h)
		return err_set(ENOMEM, "PCI host bridge");
	h->vm = vm;
	h->mmio_next = PCI_MMIO_START;
	pthread_mutex_init(&h->lock, NULL);
	int r = iobus_register(&vm->pio, PCI_CONF1_ADDR_PORT, 8, &pci_conf_io, h);
	if (r < 0) {
		pci_host_destroy(h);
		return err_set(-r, "PCI configuration ports");
	}
	/* Slot 0: the host bridge (Intel vendor id, class 06.00 host bridge). */
	pci_dev_init(&h->bridge, 0x8086, 0x0d57, 0x060000, 0, 0, 0);
	if ((r = pci_host_add(h, vm, &h->bridge)) < 0)
		return r;
	return device_add(vm, &pci_host_ops, h);
}
