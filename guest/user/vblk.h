/* virtio-blk (modern virtio-pci) driven from user mode. */
#ifndef GUEST_VBLK_H
#define GUEST_VBLK_H

#include <stdint.h>

/* Both print their own result line ("cpuN: ...") and return 0 when ok. */
int vblk_diskfill(uint64_t n, uint64_t seed);
int vblk_diskverify(uint64_t n, uint64_t seed);
/* Queue notifications as 16-bit writes (the default, what drivers do) or
 * 32-bit ones, which miss a VMM's 2-byte ioeventfd and take its trapped
 * path: a test of that path.  Prints its line; 0 when BITS is 16 or 32. */
int vblk_set_notify_bits(uint64_t bits);

#endif
