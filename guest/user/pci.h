/* PCI configuration space and BARs, for the guest's virtio drivers. */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdint.h>

uint32_t pci_r32(uint32_t bdf, uint32_t off);
void pci_w32(uint32_t bdf, uint32_t off, uint32_t v);
/* BAR's address; one the firmware left at 0 is sized and placed below
   0xfec00000 (and below every BAR already there). 0: not a memory BAR. */
uint64_t pci_bar_addr(uint32_t bdf, unsigned bar);
/* Whether pci_bar_addr placed any BAR itself. */
int pci_bars_assigned(void);

#endif
