/* virtio-blk (virtio 1.x §5.2) over PCI, one device per --disk, backed by
 * the block layer (raw or qcow2). */
#ifndef CAIRN_DEVICES_VIRTIO_BLK_H
#define CAIRN_DEVICES_VIRTIO_BLK_H

#include <stdbool.h>

struct vm;
struct devices_config;

/* One disk: the image behind it (strings are read during init only). */
struct virtio_blk_disk {
	const char *path;
	const char *format; /* NULL: detect */
	bool readonly;
	const char *serial; /* GET_ID; NULL: "cairn-vdX" */
};

int virtio_blk_init(struct vm *vm, const struct devices_config *cfg);

#endif
