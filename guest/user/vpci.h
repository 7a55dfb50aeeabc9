/* The modern virtio-pci transport's set-up, shared by the guest's virtio
 * drivers (vblk.c, vnet.c): capabilities, MSI-X entry 0, the reset and
 * feature handshake, a queue's size and ring addresses. */
#ifndef GUEST_VPCI_H
#define GUEST_VPCI_H

#include <stdint.h>

/* common configuration structure offsets */
#define CC_DFSELECT 0
#define CC_DF 4
#define CC_GFSELECT 8
#define CC_GF 12
#define CC_MSIX 16
#define CC_STATUS 20
#define CC_QSELECT 22
#define CC_QSIZE 24
#define CC_QMSIX 26
#define CC_QENABLE 28
#define CC_QNOTIFYOFF 30
#define CC_QDESC 32
#define CC_QDRIVER 40
#define CC_QDEVICE 48
#define STATUS_NEEDS_RESET 0x40

struct vpci_caps {
	uint64_t common, notify, devcfg; /* 0: capability missing */
	uint32_t notify_mult;
	uint32_t msix_cap;   /* 0: no MSI-X capability */
	uint64_t msix_table; /* 0: none, or its BAR unplaced */
};

/* Walks bdf's capability list with memory decoding off while its BARs are
   placed, then turns memory decoding and bus mastering on. */
void vpci_find_caps(uint32_t bdf, struct vpci_caps *c);
/* MSI-X entry 0 -> VEC_DISK on every CPU (the drivers retarget it), and
   MSI-X enabled, unmasked. */
void vpci_msix_enable(uint32_t bdf, const struct vpci_caps *c);
/* Points an enabled MSI-X entry at the local APIC apic. */
void vpci_msix_retarget(uint64_t entry, uint32_t apic);
/* Resets the device (waiting for it), ACKNOWLEDGE, DRIVER; accepts the
   offered features 0-31 in mask and VERSION_1, FEATURES_OK.  *offered:
   features 0-31.  NULL or why it failed. */
const char *vpci_negotiate(uint64_t cc, uint32_t mask, uint32_t *offered);
/* Selects queue q and returns the power of 2 it gets: at most its maximum
   and max. */
uint16_t vpci_queue_size(uint64_t cc, uint16_t q, uint16_t max);
/* The selected queue's ring addresses. */
void vpci_queue_addrs(uint64_t cc, uint64_t desc, uint64_t avail, uint64_t used);

#endif
