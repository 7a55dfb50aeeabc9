/* virtio-blk (modern virtio-pci) driven from user mode. */
#ifndef GUEST_VBLK_H
#define GUEST_VBLK_H

#include <stdint.h>

/* Both print their own result line ("cpuN: ...") and return 0 when ok. */
int vblk_diskfill(uint64_t n, uint64_t seed);
int vblk_diskverify(uint64_t n, uint64_t seed);

#endif
