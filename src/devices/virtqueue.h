/* Split virtqueues (virtio 1.x §2.7): the descriptor table, the driver's
 * available ring and the device's used ring, all in guest memory.  Every
 * index and address read from the guest is checked before use. */
#ifndef CAIRN_DEVICES_VIRTQUEUE_H
#define CAIRN_DEVICES_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct vm;

#define VQ_MAX_SIZE 256
#define VQ_MAX_SEGS 256

struct virtqueue {
	struct vm *vm;
	uint16_t size;  /* negotiated number of entries */
	bool ready;     /* queue_enable written by the driver */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t last_avail; /* next available entry the device will take */
	uint16_t used_idx;   /* next used entry the device will fill */
	uint16_t msix_vector;
	bool indirect; /* VIRTIO_F_INDIRECT_DESC negotiated (set by the transport) */
};

/* One request: a descriptor chain split into device-readable (out) and
 * device-writable (in) host buffers. */
struct vq_elem {
	uint16_t head;
	unsigned nout, nin;
	struct iovec out[VQ_MAX_SEGS];
	struct iovec in[VQ_MAX_SEGS];
};

void vq_reset(struct virtqueue *vq);
/* 1: an element was taken; 0: ring empty.
 * -EBADMSG: the chain at elem->head is bad (a next index out of range, a
 * loop or more descriptors than the queue size, a buffer outside guest RAM,
 * more than 4 GiB - 1 in all, a device-readable buffer after a
 * device-writable one, an indirect descriptor not negotiated or malformed,
 * too many segments).  The entry is taken: the device completes it, with an
 * error where vq_bad_chain_status() finds a byte for one, else with used.len
 * 0 (virtio 1.x lets a device fail a request; it must not act on it).
 * Other <0: the queue itself is broken (avail idx more than the queue size
 * ahead, a head index out of range, rings outside guest RAM): the device
 * must stop serving it until the driver resets it (DEVICE_NEEDS_RESET). */
int vq_pop(struct virtqueue *vq, struct vq_elem *elem);
/* For a chain vq_pop refused: the last byte of its last descriptor when
 * that one is device-writable, not indirect and in guest RAM (where
 * virtio-blk keeps the status byte), else NULL (a loop, an index out of
 * range, a device-readable or unmapped last buffer). */
uint8_t *vq_bad_chain_status(struct virtqueue *vq, uint16_t head);
/* Return HEAD to the driver with LEN bytes written (at most the chain's
 * device-writable bytes, which vq_pop keeps below 4 GiB). */
void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len);
/* Return N chains at once (USED[i] = {head, len}), publishing the used
 * index once: the driver sees all of them or none (a received frame that
 * spans several buffers). */
void vq_push_many(struct virtqueue *vq, const uint32_t (*used)[2], unsigned n);
/* Whether the driver wants an interrupt now (VRING_AVAIL_F_NO_INTERRUPT). */
bool vq_should_notify(struct virtqueue *vq);
/* Ask the driver for notifications of new buffers or not
 * (VRING_USED_F_NO_NOTIFY, advisory): off while the device drains the queue
 * anyway.  Turned back on, the device must look once more (vq_pending): a
 * buffer may have come while they were off. */
void vq_set_notify(struct virtqueue *vq, bool on);
/* Whether the driver has made buffers available the device has not taken. */
bool vq_pending(struct virtqueue *vq);

#endif
