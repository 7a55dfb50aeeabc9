/* vhostile: hostile virtio-blk requests mixed with checked valid ones. */
#ifndef GUEST_VHOSTILE_H
#define GUEST_VHOSTILE_H

#include <stdint.h>

/* Prints its result line ("cpuN: vhostile ...") and returns 0 when every
   request had the outcome expected of it and the data verified. */
int vhostile_run(uint64_t seed, uint64_t n);

#endif
