/* MSI-X for a PCI device: the capability, the vector table and PBA (in a
 * BAR), and delivery with KVM_SIGNAL_MSI from the thread that raises the
 * interrupt (synchronous: see vm_signal_msi). */
#ifndef CAIRN_DEVICES_MSIX_H
#define CAIRN_DEVICES_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct pci_dev;

#define MSIX_MAX_VECTORS 64
#define MSIX_ENTRY_SIZE 16

struct msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl; /* the table entry, as the guest sees it */
	bool pending;
};

struct msix {
	struct pci_dev *pci;
	pthread_mutex_t lock;
	unsigned nvec;
	int cap_off;
	struct msix_vector vec[MSIX_MAX_VECTORS];
};

/* Add the capability (table at TABLE_OFF, PBA at PBA_OFF of BAR); every
 * vector starts masked. */
int msix_init(struct msix *m, struct pci_dev *pci, unsigned nvec, int bar, uint32_t table_off,
	      uint32_t pba_off);
void msix_destroy(struct msix *m);
bool msix_enabled(struct msix *m);
/* Deliver VECTOR (or set its pending bit while masked). */
void msix_notify(struct msix *m, unsigned vector);
/* Table and PBA accesses (OFF relative to the table / the PBA). */
void msix_table_read(struct msix *m, uint64_t off, void *data, unsigned len);
void msix_table_write(struct msix *m, uint64_t off, const void *data, unsigned len);
void msix_pba_read(struct msix *m, uint64_t off, void *data, unsigned len);
/* Save or restore the vector table and pending bits. */
struct state_buf;
int msix_snapshot(struct msix *m, struct state_buf *sb);
/* The guest wrote the capability's control word (enable / function mask). */
void msix_control_written(struct msix *m);

#endif
