/* virtio-rng (virtio 1.x §5.4, "entropy device") over PCI: one request
 * queue whose device-writable buffers are filled from the host's
 * getrandom().  In every new VM unless `--rng none`; a snapshot's
 * configuration says whether its machine has one. */
#ifndef CAIRN_DEVICES_VIRTIO_RNG_H
#define CAIRN_DEVICES_VIRTIO_RNG_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct devices_config;

/* At most this many bytes per request: a driver asking for more gets this
 * many (used.len says so, as §5.4.6 allows), so one request never holds
 * the I/O thread long. */
#define VIRTIO_RNG_MAX_REQUEST 65536u

int virtio_rng_init(struct vm *vm, const struct devices_config *cfg);

#endif
