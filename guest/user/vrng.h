/* virtio-rng (modern virtio-pci, 1af4:1044) driven from user mode: one
 * request queue, one 4 KiB buffer at a time, polled. */
#ifndef GUEST_VRNG_H
#define GUEST_VRNG_H

#include <stdint.h>

/* Reads N bytes from the device and prints "cpuN: rng N bytes=N
   requests=R fnv=DIGEST" (64-bit FNV-1a of the bytes), or "rng FAILED
   (reason)"; 0 when all N bytes came. */
int vrng_read(uint64_t n);

#endif
