/* PCI: a host bridge on the conf1 ports (0xcf8/0xcfc) and bus 0 with
 * BARs pre-assigned in the MMIO window, as firmware would leave them. */
#ifndef CAIRN_DEVICES_PCI_H
#define CAIRN_DEVICES_PCI_H

#include "kvm/iobus.h"

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct devices_config;

#define PCI_CFG_SIZE 256
#define PCI_NUM_BARS 6

#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_ID 0x2e
#define PCI_CAP_PTR 0x34
#define PCI_INT_LINE 0x3c
#define PCI_INT_PIN 0x3d
#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEM 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_STATUS_INTERRUPT 0x08

struct pci_dev;

struct pci_bar {
	uint32_t size; /* 0: unused; a power of two >= 4 KiB */
	uint64_t addr; /* where it is decoded now (0: not mapped) */
	const struct io_ops *ops;
	void *opaque;
	/* Called after the BAR moved (old 0: was unmapped, new 0: unmapped). */
	void (*moved)(struct pci_dev *dev, int bar, uint64_t old_addr, uint64_t new_addr);
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE]; /* bits the guest may write */
	struct pci_bar bars[PCI_NUM_BARS];
	uint8_t slot, irq;
	uint8_t cap_next; /* where the next capability goes */
	struct vm *vm;
	void *opaque;
	/* Called after the guest wrote config bytes [off, off+len). */
	void (*cfg_written)(struct pci_dev *dev, unsigned off, unsigned len);
};

/* Fill in the standard header (type 0). */
void pci_dev_init(struct pci_dev *dev, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);
/* Add a capability with BODY (LEN bytes, after the id/next bytes) and
 * WMASK for its writable bytes (may be NULL); returns its offset. */
int pci_add_cap(struct pci_dev *dev, uint8_t id, const void *body, const void *wmask,
		unsigned len);
/* Put DEV on bus 0: it gets a slot, an INTx IRQ, and its BARs an address. */
int pci_register(struct vm *vm, struct pci_dev *dev);
/* Save or restore DEV's configuration space; a restore re-maps its BARs. */
struct state_buf;
int pci_dev_snapshot(struct pci_dev *dev, struct state_buf *sb);
/* Assert or deassert INTx (level). */
void pci_set_intx(struct pci_dev *dev, int level);

int pci_init(struct vm *vm, const struct devices_config *cfg);
/* The (slot, IRQ) pairs of the registered devices, for the MP table. */
struct mp_pci_irq;
unsigned pci_irq_table(struct vm *vm, struct mp_pci_irq *out, unsigned max);

#endif
