/* virtio-blk (virtio 1.x §5.2) over PCI, one device per --disk, backed by
 * the block layer (raw or qcow2). */
#ifndef CAIRN_DEVICES_VIRTIO_BLK_H
#define CAIRN_DEVICES_VIRTIO_BLK_H

struct vm;
struct vm_config;

int virtio_blk_init(struct vm *vm, const struct vm_config *cfg);

#endif
